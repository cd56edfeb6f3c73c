"""An outside client against a real server: schemathesis reads the OpenAPI document the
API serves, generates requests from it (valid ones, and invalid ones that must be
refused), sends them over HTTP to ``runserver`` (tests/api_server.py) and runs every
one of its checks on each answer: no server error, a documented status, content type,
headers and body, invalid data refused, valid data accepted.

Our own fuzz test (test_api_fuzz.py) only knows the bad input we thought of, and
checks answers with our own reading of the document; this one trusts nothing of ours
but the served document. Run as a superuser (everything is allowed) and as a user
holding only the view permissions (writes are 403, which the document declares).

Run through schemathesis's own runner (what ``st run --checks all`` does: examples,
coverage, fuzzing and stateful phases), because its pytest plugin does not work with
pytest 9 yet (it sets a private attribute pytest 9 removed). Bounded: DJANGO_JOBS_SCHEMATHESIS_EXAMPLES examples per operation
(default 10) and a fixed seed (DJANGO_JOBS_SCHEMATHESIS_SEED), so that a run takes
about a minute per user and database and a failure comes back on the next run. The
figures (requests, failures) are printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import schemathesis
from django.conf import settings
from django.db import connection
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.engine import events

from tests.api_server import ApiServer
from tests.api_support import make_user
from tests.factories import ApiTokenFactory, CronScheduleFactory, ScheduledTaskFactory

pytestmark = [
    pytest.mark.once_per_database, pytest.mark.django_db(transaction=True),
    # Issue 17 asks for SQLite and PostgreSQL; CI keeps MariaDB out of it for time (0 failures
    # in 5,201 + 270 requests when it was run there by hand).
    pytest.mark.skipif(settings.ENGINE == "mariadb", reason="schemathesis runs on SQLite and PostgreSQL in CI"),
]

EXAMPLES = int(os.environ.get("DJANGO_JOBS_SCHEMATHESIS_EXAMPLES", "10"))
SEED = int(os.environ.get("DJANGO_JOBS_SCHEMATHESIS_SEED", "20261205"))
VIEW_PERMISSIONS = ("view_scheduledtask", "view_cronschedule", "view_pausedqueue")
load_all_checks()
CHECK_NAMES = [check.__name__ for check in CHECKS.get_all()]  # the command line's --checks all


def user_for(role: str):
    if role == "superuser":
        return make_user("root", superuser=True)
    return make_user("viewer", *VIEW_PERMISSIONS)


def some_rows(user) -> None:
    """A row of each kind, so that lists and ids lead somewhere."""
    ScheduledTaskFactory()
    ScheduledTaskFactory(status="failed")
    CronScheduleFactory(owner=user)


def config(token: str, role: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        # The coverage phase sends each boundary and enum value of every body field
        # (thousands of requests); a view-only user is refused every write (403) before
        # its body is read, so it runs the fuzzing and stateful phases only.
        # The superuser's coverage phase runs on PostgreSQL only: ~5,000 requests and ~5 min
        # per database (the time-zone enum alone is ~600 values), and CI has a budget; on
        # SQLite the fuzzing and stateful phases run, and tests/api/test_api_live.py covers its lock.
        "phases": {"coverage": {"enabled": role == "superuser" and settings.ENGINE == "postgres"}},
        "headers": {"Authorization": f"Bearer {token}"},
        "generation": {"max-examples": EXAMPLES},
        "checks": {name: {"enabled": True} for name in CHECK_NAMES},
        # A shared 2-core machine is slow at times; that is not what is tested here.
        "suppress-health-check": ["all"],
    })


@dataclass
class Outcome:
    """What a run saw: requests sent, and every failure with its operation."""

    requests: int
    failures: list[str]
    errors: list[str]


def run_schemathesis(url: str, token: str, role: str) -> Outcome:
    schema = schemathesis.openapi.from_url(f"{url}/jobs/api/openapi.json", config=config(token, role))
    requests, failures, errors = 0, [], []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            failures += failed_checks(event.recorder)
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            errors.append(repr(getattr(event, "value", None) or getattr(event, "exception", None)))
    return Outcome(requests, failures, errors)


def failed_checks(recorder) -> list[str]:
    found = []
    for case_id, checks in recorder.checks.items():
        for check in checks:
            if check.failure_info is not None:
                case = recorder.cases[case_id].value
                found.append(f"{check.name}: {case.operation.label} {case.as_curl_command()}\n"
                             f"  {check.failure_info.failure.title}: {check.failure_info.failure.message[:500]}")
    return found


@pytest.mark.parametrize("role", ["superuser", "view-only"])
def test_the_api_answers_an_outside_client_as_its_document_says(role, request):
    user = user_for(role)
    some_rows(user)
    token = "djj_schemathesis"
    ApiTokenFactory(user=user, name="schemathesis", token=token)
    server = ApiServer(sqlite_transaction_mode="IMMEDIATE")
    try:
        outcome = run_schemathesis(server.url, token, role)
    finally:
        server.stop()
    report(request, role, outcome)

    assert outcome.requests > 200  # it did reach the server
    assert not outcome.errors, outcome.errors
    assert not outcome.failures, "\n".join(outcome.failures)


def report(request, role: str, outcome: Outcome) -> None:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_line(f"\nschemathesis on {connection.vendor} as {role}: {outcome.requests} requests, "
                        f"{len(outcome.failures)} failed checks, {len(outcome.errors)} errors "
                        f"(checks: {', '.join(CHECK_NAMES)})")
