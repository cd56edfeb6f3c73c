"""Random bad input at every write endpoint (and the query strings of the lists):
malformed JSON, wrong types, huge strings and numbers, unicode (NUL, lone
surrogates, astral characters), unknown fields and job names, odd content types,
odd ids and queue names.

A seeded generator, not a property-testing library: the cases are the same on every
run and every database, and a failure names its seed and case number. Change the seed
with DJANGO_JOBS_API_FUZZ_SEED, the number of cases with DJANGO_JOBS_API_FUZZ_CASES.

For every answer: never a 500 (Django's test client raises on one); the answer
validates against the OpenAPI document (ApiClient); an error names at least one
field, and only fields the request had (or body, content_type, ...); and a body that
the documented request schema refuses is never accepted.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest

from django_jobs.api.fields import spec_schema
from django_jobs.api.routes import OPERATIONS
from tests.api_support import ApiClient, make_user, validate
from tests.factories import CronScheduleFactory, ScheduledTaskFactory

pytestmark = [pytest.mark.django_db, pytest.mark.once_per_database]

SEED = int(os.environ.get("DJANGO_JOBS_API_FUZZ_SEED", "20261123"))
CASES = int(os.environ.get("DJANGO_JOBS_API_FUZZ_CASES", "120"))
# Names an error may use besides the request's own fields.
# ("overlap": a run-now refused while the schedule's previous task is active.)
GENERAL_FIELDS = {"body", "content_type", "id", "name", "path", "method", "status", "declared_in_code", "overlap"}

STRINGS = [
    "", " ", "tests.add", "tests.noop", "tests.progress", "no.such.job", "default", "mail", "critical", "low",
    "@daily", "@reboot", "* * * * *", "61 * * * *", "0 0 30 2 *", "*/0 * * * *", "Europe/Berlin", "Mars/Olympus",
    "2031-05-01T09:30:00+02:00", "2031-05-01T09:30:00", "2031-05-01T09:30:00Z", "9999-12-31T23:59:59-05:00",
    "0001-01-01T00:00:00+00:00", "\u0000", "a\u0000b", "\ud800", "\udfff", "é", "😀", "\u202e", "null", "true",
    "0", "-1", "1e999", "NaN", "'; DROP TABLE django_jobs_scheduledtask; --", "../../etc/passwd", "\n\t",
    "x" * 101, "y" * 256, "z" * 501, "w" * 70_000,
]
NUMBERS = [0, -1, 1, 2, 3.0, 0.5, -0.0, 100, 101, -101, 2**31, 2**31 - 1, 2**63, 2**64, 10**30, -(10**30),
           1e308, -1e308, 5e-324]
CONTENT_TYPES = ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1",
                 "multipart/form-data; boundary=x", "application/jsonx", ""]


def random_text(rng: random.Random) -> str:
    def char() -> str:
        ranges = [(0, 0x7F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF)]
        low, high = rng.choice(ranges)
        return chr(rng.randint(low, high))
    return "".join(char() for _ in range(rng.randint(0, 30)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind in (1, 2):
        return rng.choice(NUMBERS)
    if kind == 3:
        return rng.choice(STRINGS)
    if kind in (4, 5):
        return random_text(rng)
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 7:
        return {random_text(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    value: Any = "deep"
    for _ in range(rng.choice([10, 33, 60])):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def random_body(rng: random.Random, valid: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """``valid`` with one to three fields replaced, dropped or added."""
    body = dict(valid)
    for _ in range(rng.randint(1, 3)):
        action = rng.randrange(4)
        if action == 0 and body:
            body.pop(rng.choice(sorted(body)))
        elif action == 1:
            body[rng.choice(sorted(spec) + ["colour", random_text(rng)])] = random_value(rng)
        else:
            body[rng.choice(sorted(spec) or ["colour"])] = random_value(rng)
    return body


def malformed(rng: random.Random, body: dict[str, Any]) -> bytes:
    text = json.dumps(body).encode()
    choice = rng.randrange(5)
    if choice == 0:
        return text[: rng.randint(1, max(1, len(text) - 1))]
    if choice == 1:
        position = rng.randint(0, len(text))
        return text[:position] + bytes([rng.randint(0, 255)]) + text[position:]
    if choice == 2:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 60)))
    if choice == 3:
        return rng.choice([b"[]", b"null", b"42", b'"text"', b"{}{}", b"{\"a\": NaN}", b"\xef\xbb\xbf{}"])
    return b"{" + b'"k": 1, ' * rng.randint(1, 5000) + b'"k": 2}'


def encode(text: str) -> str:
    """Percent-encoded UTF-8; a lone surrogate becomes bytes that are not UTF-8 at all."""
    return quote(text, safe="", errors="surrogatepass")


def operation(method: str, path: str):
    return next(op for op in OPERATIONS if (op.method, op.path) == (method, path))


def check_error_names_fields(response: Any, sent: Any, extra: set[str]) -> None:
    """An error names at least one field, each of them one the request had."""
    if response.status_code < 400:
        return
    named = set(response.json()["errors"])
    # As the server reads them: JSON joins an escaped surrogate pair into one character.
    sent_names = {json.loads(json.dumps(name)) for name in sent} if isinstance(sent, dict) else set()
    known = GENERAL_FIELDS | extra | sent_names
    if isinstance(sent, bytes):  # malformed on purpose: whatever key the server could still read
        text = sent.decode("utf-8", "replace")
        known |= {name for name in named if json.dumps(name)[1:-1] in text or name in text}
    assert named and named <= known, f"errors name {named}, not among {known}"


def send(api: ApiClient, rng: random.Random, method: str, path: str, valid: dict[str, Any], case: int) -> Any:
    """One random request; checks what every answer must satisfy, returns it."""
    op = operation(method, path.split("?")[0] if "{" in path else path)
    spec = op.body or {}
    concrete = path.replace("{id}", str(valid.pop("__id__", 1)))
    body = random_body(rng, valid, spec)
    roll = rng.random()
    if roll < 0.15:
        raw = malformed(rng, body)
        response = api.request(method, concrete, raw=raw)
        check_error_names_fields(response, raw, set(spec))
        return response
    if roll < 0.22:
        response = api.request(method, concrete, body, content_type=rng.choice(CONTENT_TYPES))
    else:
        response = api.request(method, concrete, body)
        if response.status_code < 400:
            validate(body, spec_schema(spec, partial=op.partial))  # accepted => the document allows it
        elif not schema_allows(body, spec, op.partial):
            assert response.status_code in (400, 404, 409, 413), response.status_code
    check_error_names_fields(response, body, set(spec))
    return response


def schema_allows(body: dict[str, Any], spec: dict[str, Any], partial: bool) -> bool:
    try:
        validate(body, spec_schema(spec, partial=partial))
    except jsonschema.ValidationError:
        return False
    return True


@pytest.fixture
def api():
    return ApiClient(make_user("root", superuser=True))


def cases(name: str):
    for case in range(CASES):
        yield case, random.Random(f"{SEED}:{name}:{case}")


def test_fuzz_schedule_a_task(api):
    for case, rng in cases("tasks"):
        valid = {"job": "tests.add", "args": [1, 2], "queue": "default", "priority": 0}
        response = send(api, rng, "POST", "/tasks", valid, case)
        assert response.status_code in (200, 201, 400, 413, 415), f"seed {SEED} case {case}"


def test_fuzz_create_a_schedule(api):
    for case, rng in cases("schedules"):
        valid = {"name": f"fuzz-{case}", "job": "tests.add", "expression": "@daily", "args": [1, 2]}
        response = send(api, rng, "POST", "/schedules", valid, case)
        assert response.status_code in (201, 400, 413, 415), f"seed {SEED} case {case}"


def test_fuzz_update_a_schedule(api):
    row = CronScheduleFactory(job_name="tests.add", args=[1, 2])
    for case, rng in cases("patch"):
        valid = {"description": "changed", "__id__": row.pk}
        response = send(api, rng, "PATCH", "/schedules/{id}", valid, case)
        assert response.status_code in (200, 400, 413, 415), f"seed {SEED} case {case}"


@pytest.mark.parametrize(("method", "path"), [
    (op.method, op.path) for op in OPERATIONS if op.body is not None and op.body == {} and "{id}" in op.path
])
def test_fuzz_actions(api, method, path):
    task = ScheduledTaskFactory(identifier="tests.noop")
    schedule = CronScheduleFactory()
    target = task.pk if path.startswith("/tasks") else schedule.pk
    for case, rng in cases(path):
        valid = {"__id__": rng.choice([target, target, 0, 2**63, 2**64, 10**30])}
        response = send(api, rng, method, path, valid, case)
        assert response.status_code in (200, 201, 400, 404, 409, 413, 415), f"seed {SEED} case {case}"


def test_fuzz_queue_names(api):
    for case, rng in cases("queues"):
        name = rng.choice([random_text(rng), rng.choice(STRINGS)[:200]]) or "q"
        action = rng.choice(["pause", "resume"])
        path = f"/queues/{quote(name, safe='', errors='surrogatepass')}/{action}"
        response = api.post(path, {"reason": random_value(rng)} if action == "pause" else {})
        assert response.status_code in (200, 400, 404), f"seed {SEED} case {case}: {name!r}"
        check_error_names_fields(response, {}, {"reason", "query"})


@pytest.mark.parametrize("path", ["/tasks", "/schedules", "/statistics"])
def test_fuzz_query_strings(api, path):
    op = operation("GET", path)
    names = sorted(op.query) + ["colour"]
    for case, rng in cases(f"query{path}"):
        pairs = [(rng.choice(names), rng.choice([random_text(rng), str(rng.choice(NUMBERS)), rng.choice(STRINGS)]))
                 for _ in range(rng.randint(1, 3))]
        query = "&".join(f"{encode(key)}={encode(value[:300])}" for key, value in pairs)
        response = api.get(f"{path}?{query}")
        assert response.status_code in (200, 400), f"seed {SEED} case {case}: {query}"
        check_error_names_fields(response, dict(pairs), {"query"})


def test_fuzz_deletes(api):
    rows = [CronScheduleFactory().pk for _ in range(3)]
    for case, rng in cases("delete"):
        target = rng.choice(rows + [0, 2**63, 10**30])
        response = api.delete(f"/schedules/{target}")
        assert response.status_code in (204, 404), f"seed {SEED} case {case}"
