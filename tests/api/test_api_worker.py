"""End to end: a task scheduled through the JSON API is run by a real
``run_jobworker`` process, and the API then reports it completed with its result."""

from __future__ import annotations

import pytest

from tests.api_support import ApiClient, make_user
from tests.processes import finish

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_worker_runs_a_task_scheduled_through_the_api(workers):
    api = ApiClient(make_user("deployer", "add_scheduledtask", "view_scheduledtask"))
    added = api.post("/tasks", {"job": "tests.add", "args": [20], "kwargs": {"b": 22}, "queue": "api"}).json()
    counted = api.post("/tasks", {"job": "tests.progress", "args": [3], "queue": "api"}).json()
    assert added["status"] == counted["status"] == "pending"

    worker = workers.start("--burst", "--queues", "api")
    _, output = finish(worker, timeout=120)
    assert worker.returncode == 0, output

    added = api.get(f"/tasks/{added['id']}").json()
    counted = api.get(f"/tasks/{counted['id']}").json()
    assert (added["status"], added["result"], added["attempt"]) == ("completed", 42, 1)
    assert added["worker_id"] and added["executed_at"] and added["duration_ms"] is not None
    assert (counted["status"], counted["result"], counted["progress"]) == ("completed", 3, {"done": 3, "total": 3})
    statistics = api.get("/statistics?queue=api").json()
    assert (statistics["completed"], statistics["total"]) == (2, 2)
