"""The JSON API under real, concurrent HTTP clients: a ``runserver`` subprocess
(tests/api_server.py) and two client threads writing at once, as in issue 17.

On SQLite in its default (DEFERRED) transaction mode, a cron schedule's save (a read,
then a write, in one transaction) fails at once with "database is locked" when the
other client wrote in between. That must reach the client as the API's JSON error,
503 with Retry-After, never as Django's HTML error page; with
``transaction_mode = "IMMEDIATE"`` (the README's advice) it must not happen at all.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from tests.api_server import Answer, ApiServer
from tests.api_support import make_user, response_schema, validate
from tests.factories import ApiTokenFactory

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTS = 100  # per client, as in the report


def schedule_body(number: int) -> dict[str, Any]:
    return {"name": f"live-{number}", "job": "tests.add", "expression": "*/5 * * * *", "args": [1, 2]}


def task_body(number: int) -> dict[str, Any]:
    return {"job": "tests.add", "args": [number, 1]}


def client(server: ApiServer, token: str, path: str, body_of: Any, answers: list[tuple[str, Answer]],
           start: threading.Barrier) -> None:
    start.wait()
    for number in range(REQUESTS):
        answers.append((path, server.request("POST", path, body_of(number), token=token)))


def two_clients_at_once(server: ApiServer, token: str) -> list[tuple[str, Answer]]:
    """100 POST /tasks and 100 POST /schedules from two threads at the same time."""
    answers: list[tuple[str, Answer]] = []
    start = threading.Barrier(2)
    threads = [threading.Thread(target=client, args=(server, token, path, body_of, answers, start))
               for path, body_of in (("/jobs/api/tasks", task_body), ("/jobs/api/schedules", schedule_body))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def check_documented(path: str, answer: Answer) -> None:
    """JSON in the documented shape of its status, with Retry-After on a 503."""
    assert answer.content_type == "application/json", (answer.status, answer.body[:200])
    validate(answer.json(), response_schema("POST", path, answer.status))
    if answer.status == 503:
        assert int(answer.headers["retry-after"]) >= 0
        assert list(answer.json()["errors"]) == ["database"]


def statuses(answers: list[tuple[str, Answer]], path: str) -> list[int]:
    return [answer.status for answered, answer in answers if answered == path]


@pytest.fixture
def token():
    ApiTokenFactory(user=make_user("live", superuser=True), name="live", token="djj_live")
    return "djj_live"


def run(mode: str, token: str) -> list[tuple[str, Answer]]:
    server = ApiServer(sqlite_transaction_mode=mode)
    try:
        answers = two_clients_at_once(server, token)
    finally:
        log = server.stop()
    assert len(answers) == 2 * REQUESTS, log[-2000:]
    for path, answer in answers:
        check_documented(path, answer)
    return answers


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's DEFERRED transactions only")
def test_a_locked_sqlite_database_is_a_json_503_with_retry_after(token):
    answers = run("DEFERRED", token)

    assert set(statuses(answers, "/jobs/api/tasks")) <= {201, 503}
    assert set(statuses(answers, "/jobs/api/schedules")) <= {201, 503}
    # The lock of the report: without IMMEDIATE some schedule saves lose the race.
    assert 503 in statuses(answers, "/jobs/api/schedules"), "no schedule save met the lock this time"


def test_two_writing_clients_all_succeed_with_immediate_transactions(token):
    # IMMEDIATE is SQLite's; PostgreSQL and MariaDB wait for row locks anyway.
    answers = run("IMMEDIATE", token)

    assert statuses(answers, "/jobs/api/tasks") == [201] * REQUESTS
    assert statuses(answers, "/jobs/api/schedules") == [201] * REQUESTS
