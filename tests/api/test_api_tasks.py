"""The JSON API's task endpoints: schedule (now, delayed, at), status, list,
cancel, retry, statistics and the registered jobs. Every answer is checked against
the OpenAPI document by ``ApiClient``."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_jobs.models import CronSchedule, ScheduledTask, TaskEvent
from django_jobs.testing import run_pending_jobs
from django_jobs.worker import claiming
from tests.api_support import ApiClient, errors, make_user
from tests.factories import CronScheduleFactory, ScheduledTaskFactory
from tests.testapp import jobs

pytestmark = pytest.mark.django_db

Status = ScheduledTask.Status


@pytest.fixture
def api():
    return ApiClient(make_user("root", superuser=True))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- scheduling ----------------------------------------------------------------------
def test_schedule_now_returns_201_and_the_stored_task(api):
    response = api.post("/tasks", {"job": "tests.add", "args": [2], "kwargs": {"b": 3}})

    assert response.status_code == 201
    body = response.json()
    task = ScheduledTask.objects.get(pk=body["id"])
    assert (task.identifier, task.args, task.kwargs, task.status) == ("tests.add", [2], {"b": 3}, Status.PENDING)
    assert body["job"] == "tests.add" and body["status"] == "pending" and body["attempt"] == 1
    assert parse_time(body["scheduled_at"]) <= timezone.now()


def test_schedule_with_a_delay_runs_no_sooner_than_the_delay(api):
    before = timezone.now()
    body = api.post("/tasks", {"job": "tests.noop", "delay": 90}).json()

    scheduled = ScheduledTask.objects.get(pk=body["id"]).scheduled_at
    assert before + timedelta(seconds=90) <= scheduled <= timezone.now() + timedelta(seconds=90)
    assert run_pending_jobs() == []  # not due yet


def test_schedule_at_a_time_with_an_offset_stores_that_instant(api):
    body = api.post("/tasks", {"job": "tests.noop", "run_at": "2031-05-01T09:30:00+02:00"}).json()

    expected = datetime.fromisoformat("2031-05-01T07:30:00+00:00")
    assert ScheduledTask.objects.get(pk=body["id"]).scheduled_at == expected
    assert parse_time(body["scheduled_at"]) == expected


def test_schedule_with_every_option(api):
    body = api.post("/tasks", {
        "job": "tests.noop", "queue": "mail", "priority": "high", "description": "from the API",
        "max_retries": 7, "unique_key": "welcome:42",
    }).json()

    task = ScheduledTask.objects.get(pk=body["id"])
    assert (task.queue, task.priority, task.description, task.max_retries, task.unique_key) == (
        "mail", 50, "from the API", 7, "welcome:42")


def test_a_unique_key_held_by_an_active_task_returns_that_task_with_200(api):
    first = api.post("/tasks", {"job": "tests.noop", "unique_key": "k"})
    again = api.post("/tasks", {"job": "tests.noop", "unique_key": "k"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert ScheduledTask.objects.count() == 1


def test_delay_and_run_at_together_are_refused(api):
    response = api.post("/tasks", {"job": "tests.noop", "delay": 5, "run_at": "2031-01-01T00:00:00Z"})

    assert response.status_code == 400
    assert list(errors(response)) == ["delay"]


@pytest.mark.parametrize(("body", "field"), [
    ({"job": "no.such.job"}, "job"),
    ({"job": "tests.add", "args": [1, 2, 3]}, "args"),
    ({"job": "tests.add", "args": [1], "kwargs": {"c": 3}}, "kwargs"),
    ({"job": "tests.add", "args": [1]}, "args"),
    ({"job": "tests.noop", "run_at": "2031-05-01T09:30:00"}, "run_at"),
    ({"job": "tests.noop", "priority": 101}, "priority"),
    ({"job": "tests.noop", "priority": "urgent"}, "priority"),
    ({"job": "tests.noop", "delay": -1}, "delay"),
    ({"job": "tests.noop", "max_retries": -1}, "max_retries"),
    ({"job": "tests.noop", "queue": ""}, "queue"),
    ({"job": "tests.noop", "description": "x" * 501}, "description"),
])
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(api, body, field):
    response = api.post("/tasks", body)

    assert response.status_code == 400
    assert field in errors(response), errors(response)
    assert not ScheduledTask.objects.exists()


def test_a_misspelt_keyword_is_named_rather_than_the_argument_it_misses(api):
    response = api.post("/tasks", {"job": "tests.add", "kwargs": {"a": 1, "bb": 2}})

    assert errors(response) == {"kwargs": ["Unexpected keyword argument(s) 'bb': job 'tests.add' takes a, b."]}


def test_every_error_of_a_request_is_reported_at_once(api):
    response = api.post("/tasks", {"job": "no.such.job", "priority": 500, "run_at": "2031-01-01T00:00:00"})

    assert set(errors(response)) == {"job", "priority", "run_at"}


@override_settings(DJANGO_JOBS={"QUEUES": ["default", "mail"]})
def test_a_queue_outside_the_allowed_queues_is_refused(api):
    response = api.post("/tasks", {"job": "tests.noop", "queue": "reports"})

    assert response.status_code == 400
    assert "reports" in errors(response)["queue"][0]


# -- status ----------------------------------------------------------------------------
def test_status_of_a_completed_task_reports_result_and_duration(api):
    task_id = api.post("/tasks", {"job": "tests.add", "args": [20, 22]}).json()["id"]
    run_pending_jobs()

    body = api.get(f"/tasks/{task_id}").json()

    assert body["status"] == "completed"
    assert body["result"] == 42
    assert body["executed_at"] is not None and body["duration_ms"] >= 0
    assert body["attempts"] == [] and body["error_message"] == ""


def test_status_reports_progress_set_by_the_job(api):
    task_id = api.post("/tasks", {"job": "tests.progress", "args": [4]}).json()["id"]
    run_pending_jobs()

    assert api.get(f"/tasks/{task_id}").json()["progress"] == {"done": 4, "total": 4}


def test_status_of_a_failed_task_reports_error_traceback_and_every_attempt(api):
    task_id = api.post("/tasks", {"job": "tests.always_fails", "max_retries": 1}).json()["id"]
    run_pending_jobs()
    ScheduledTask.objects.filter(pk=task_id).update(scheduled_at=timezone.now())  # skip the backoff
    run_pending_jobs()

    body = api.get(f"/tasks/{task_id}").json()

    assert body["status"] == "failed" and body["attempt"] == 2
    assert "this job always fails" in body["error_message"]
    assert "ValueError" in body["traceback"]
    assert [(entry["attempt"], entry["exception_class"]) for entry in body["attempts"]] == [
        (1, "builtins.ValueError"), (2, "builtins.ValueError")]


def test_an_unknown_task_is_404(api):
    assert api.get("/tasks/999999").status_code == 404
    assert api.get("/tasks/99999999999999999999999999").status_code == 404
    assert list(errors(api.post("/tasks/999999/cancel"))) == ["id"]


# -- listing ---------------------------------------------------------------------------
def test_list_is_newest_first_and_pages_with_a_cursor(api):
    ids = [ScheduledTaskFactory().pk for _ in range(5)]

    first = api.get("/tasks?limit=2").json()
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()

    assert [task["id"] for task in first["results"]] == ids[::-1][:2]
    assert [task["id"] for task in second["results"]] == ids[::-1][2:4]
    assert [task["id"] for task in third["results"]] == ids[:1]
    assert third["next"] is None and third["next_cursor"] is None
    assert "traceback" not in first["results"][0]  # the list leaves out the heavy fields


def test_list_filters(api):
    schedule = CronScheduleFactory()
    failed = ScheduledTaskFactory(status=Status.FAILED, queue="mail", identifier="tests.add")
    ScheduledTaskFactory(status=Status.COMPLETED, queue="mail")
    ScheduledTaskFactory(status=Status.PENDING)
    fired = ScheduledTaskFactory(cron_schedule=schedule)
    keyed = ScheduledTaskFactory(unique_key="k1")

    def ids(query: str) -> list[int]:
        return [task["id"] for task in api.get(f"/tasks?{query}").json()["results"]]

    assert ids("status=failed") == [failed.pk]
    assert len(ids("status=failed,completed")) == 2
    assert len(ids("queue=mail")) == 2
    assert ids("job=tests.add") == [failed.pk]
    assert ids(f"schedule={schedule.pk}") == [fired.pk]
    assert ids("unique_key=k1") == [keyed.pk]
    assert ids("status=failed&queue=default") == []


# -- flow control ----------------------------------------------------------------------
def test_a_task_shows_its_limits_and_why_it_waits(api):
    jobs.per_account.using(rate="100/m", rate_key="stripe").enqueue_many([((7,), {})] * 3)
    claiming.claim("w1", None, 100)
    held = ScheduledTask.objects.get(status=Status.PENDING)

    body = api.get(f"/tasks/{held.pk}").json()

    assert {name: body[name] for name in ("concurrency_key", "concurrency_limit", "rate_key", "rate", "waiting")} == {
        "concurrency_key": "account:7", "concurrency_limit": 2, "rate_key": "stripe", "rate": "100/m",
        "waiting": "waiting: concurrency account:7 (2/2)"}
    running = ScheduledTask.objects.filter(status=Status.RUNNING).first()
    assert api.get(f"/tasks/{running.pk}").json()["waiting"] is None


def test_a_task_under_no_limit_has_null_flow_fields(api):
    body = api.post("/tasks", {"job": "tests.noop"}).json()

    assert [body[name] for name in ("concurrency_key", "concurrency_limit", "rate_key", "rate", "waiting")] == [
        None] * 5
    assert api.post("/tasks", {"job": "tests.rated", "args": [1]}).json()["rate"] == "3/m"


def test_the_list_reads_why_its_tasks_wait_once_per_page(api, django_assert_max_num_queries):
    jobs.per_account.enqueue_many([((0,), {})] * 3)
    claiming.claim("w1", None, 100)
    with CaptureQueriesContext(connection) as one_key:
        api.get("/tasks?status=pending")
    jobs.per_account.enqueue_many([((account,), {}) for account in range(1, 20) for _ in range(3)])
    claiming.claim("w1", None, 100)

    with django_assert_max_num_queries(len(one_key)):
        results = api.get("/tasks?status=pending").json()["results"]

    assert len(results) == 20
    assert {task["waiting"] for task in results} == {f"waiting: concurrency account:{n} (2/2)" for n in range(20)}


@pytest.mark.parametrize(("query", "field"), [
    ("status=done", "status"), ("limit=0", "limit"), ("limit=501", "limit"), ("limit=ten", "limit"),
    ("cursor=-4", "cursor"), ("colour=red", "colour"), ("queue=a&queue=b", "queue"),
])
def test_bad_query_parameters_are_a_400_naming_them(api, query, field):
    response = api.get(f"/tasks?{query}")

    assert response.status_code == 400
    assert list(errors(response)) == [field]


# -- cancel and retry ------------------------------------------------------------------
def test_cancel_a_pending_task(api):
    task = ScheduledTaskFactory()

    response = api.post(f"/tasks/{task.pk}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    task.refresh_from_db()
    assert task.status == Status.CANCELLED


@pytest.mark.parametrize("status", [Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.CANCELLED])
def test_cancel_is_409_unless_the_task_is_pending(api, status):
    task = ScheduledTaskFactory(status=status)

    response = api.post(f"/tasks/{task.pk}/cancel", {})

    assert response.status_code == 409
    assert status in errors(response)["status"][0]
    task.refresh_from_db()
    assert task.status == status


@pytest.mark.parametrize("status", [Status.FAILED, Status.CANCELLED])
def test_retry_a_failed_or_cancelled_task(api, status):
    task = ScheduledTaskFactory(status=status, retry_count=3, error_message="boom")

    body = api.post(f"/tasks/{task.pk}/retry").json()

    assert (body["status"], body["retry_count"], body["error_message"]) == ("pending", 0, "")


@pytest.mark.parametrize("status", [Status.PENDING, Status.RUNNING, Status.COMPLETED])
def test_retry_is_409_for_other_states(api, status):
    task = ScheduledTaskFactory(status=status)

    assert api.post(f"/tasks/{task.pk}/retry").status_code == 409


def test_retry_is_409_naming_the_task_that_holds_its_unique_key(api):
    blocked = ScheduledTaskFactory(status=Status.FAILED, unique_key="k", error_message="boom")
    holder = ScheduledTaskFactory(unique_key="k", scheduled_at=timezone.now() + timedelta(hours=1))

    response = api.post(f"/tasks/{blocked.pk}/retry")

    assert response.status_code == 409
    (message,) = errors(response)["unique_key"]
    assert f"Task {blocked.pk} was not retried" in message and f"active task {holder.pk} (pending)" in message
    blocked.refresh_from_db()
    assert (blocked.status, blocked.error_message) == (Status.FAILED, "boom")


def test_actions_refuse_a_body_with_fields(api):
    task = ScheduledTaskFactory()

    response = api.post(f"/tasks/{task.pk}/cancel", {"force": True})

    assert response.status_code == 400 and list(errors(response)) == ["force"]
    task.refresh_from_db()
    assert task.status == Status.PENDING


# -- statistics and jobs ---------------------------------------------------------------
def test_statistics_are_get_statistics(api):
    ScheduledTaskFactory(status=Status.COMPLETED, queue="mail")
    ScheduledTaskFactory(status=Status.FAILED)

    everything = api.get("/statistics").json()
    mail = api.get("/statistics?queue=mail").json()

    assert (everything["total"], everything["completed"], everything["failed"]) == (2, 1, 1)
    assert everything["success_rate"] == 0.5
    assert (mail["total"], list(mail["by_queue"])) == (1, ["mail"])


def test_jobs_lists_registered_jobs_with_their_parameters(api):
    jobs = {job["name"]: job for job in api.get("/jobs").json()["results"]}

    assert jobs["tests.add"]["parameters"] == ["a", "b"]
    assert jobs["tests.record"]["parameters"] == ["label=''", "pause=0.0"]  # context is not a parameter
    assert jobs["tests.always_fails"]["max_retries"] == 2


def test_a_schedule_run_through_tasks_links_back(api):
    schedule = CronSchedule.objects.create(name="s", job_name="tests.noop", expression="@daily")
    task = schedule.run_now()

    assert api.get(f"/tasks/{task.pk}").json()["cron_schedule"] == schedule.pk


# -- a task's history ------------------------------------------------------------------------
def test_events_tell_a_tasks_history_from_the_trail_or_the_row(api):
    task = ScheduledTaskFactory(identifier="tests.add", args=[1, 2])
    run_pending_jobs()

    body = api.get(f"/tasks/{task.pk}/events").json()

    kinds = [event["kind"] for event in body["results"]]
    assert body["task"] == task.pk and kinds[-1] == "completed"
    assert {"enqueued", "started"} <= set(kinds)
    assert body["source"] == "trail"
    times = [parse_time(event["at"]) for event in body["results"]]
    assert times == sorted(times)

    TaskEvent.objects.filter(task=task).delete()  # as for a task from before the trail
    body = api.get(f"/tasks/{task.pk}/events").json()
    assert body["source"] == "row" and [event["kind"] for event in body["results"]][-1] == "completed"


def test_events_of_a_missing_task_are_a_404(api):
    response = api.get("/tasks/987654/events")
    assert response.status_code == 404 and "No task with id 987654" in errors(response)["id"][0]
