"""The JSON API's queue endpoints: pause, resume, and the list of paused queues."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_jobs.models import PausedQueue, ScheduledTask
from django_jobs.testing import run_pending_jobs
from tests.api_support import ApiClient, errors, make_user
from tests.factories import PausedQueueFactory, ScheduledTaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator():
    return make_user("operator", "view_pausedqueue", "add_pausedqueue", "delete_pausedqueue")


@pytest.fixture
def api(operator):
    return ApiClient(operator)


def test_pause_stops_claims_from_the_queue_and_resume_lets_them_run(api):
    mail = ScheduledTaskFactory(queue="mail", identifier="tests.noop")
    other = ScheduledTaskFactory(queue="default", identifier="tests.noop")

    paused = api.post("/queues/mail/pause", {"reason": "SMTP outage"})
    ran_while_paused = {task.pk for task in run_pending_jobs()}
    resumed = api.post("/queues/mail/resume")
    ran_after = {task.pk for task in run_pending_jobs()}

    assert paused.json() == {"queue": "mail", "paused": True, "changed": True}
    assert ran_while_paused == {other.pk}
    assert resumed.json() == {"queue": "mail", "paused": False, "changed": True}
    assert ran_after == {mail.pk}
    assert ScheduledTask.objects.filter(status="completed").count() == 2


def test_pause_records_who_and_why_and_lists_it(api):
    api.post("/queues/reports/pause", {"reason": "month end"})

    listed = api.get("/queues/paused").json()["results"]

    assert [(row["queue"], row["paused_by"], row["reason"]) for row in listed] == [("reports", "operator", "month end")]
    assert PausedQueue.objects.get().paused_by.username == "operator"


def test_pause_and_resume_are_idempotent_and_say_whether_they_changed_anything(api):
    assert api.post("/queues/mail/pause").json()["changed"] is True
    assert api.post("/queues/mail/pause").json()["changed"] is False
    assert api.post("/queues/mail/resume").json()["changed"] is True
    assert api.post("/queues/mail/resume").json()["changed"] is False
    assert not PausedQueue.objects.exists()


def test_unicode_queue_names_round_trip(api):
    assert api.post("/queues/%C3%A9t%C3%A9/pause").json()["queue"] == "été"
    assert api.get("/queues/paused").json()["results"][0]["queue"] == "été"


@override_settings(DJANGO_JOBS={"QUEUES": ["default", "mail"]})
def test_pausing_a_queue_outside_the_allowed_queues_is_a_400(api):
    response = api.post("/queues/reports/pause")

    assert response.status_code == 400 and "reports" in errors(response)["name"][0]
    assert not PausedQueue.objects.exists()


@pytest.mark.parametrize(("path", "field"), [
    ("/queues/" + "q" * 101 + "/pause", "name"),
    ("/queues/bad%00name/pause", "name"),
])
def test_bad_queue_names_are_a_400(api, path, field):
    response = api.post(path)

    assert response.status_code == 400 and list(errors(response)) == [field]


def test_a_long_reason_is_a_400(api):
    assert list(errors(api.post("/queues/mail/pause", {"reason": "x" * 501}))) == ["reason"]


def test_pause_needs_add_and_resume_needs_delete_permission():
    pauser = ApiClient(make_user("pauser", "add_pausedqueue"))
    resumer = ApiClient(make_user("resumer", "delete_pausedqueue"))

    assert pauser.post("/queues/mail/pause").status_code == 200
    assert pauser.post("/queues/mail/resume").status_code == 403
    assert resumer.post("/queues/mail/pause").status_code == 403
    assert resumer.post("/queues/mail/resume").status_code == 200


# -- everything at once (the seeds' POST scheduler/pause|resume) ---------------------------------
def test_scheduler_pause_stops_every_queue_and_resume_lets_them_run(api, operator):
    tasks = [ScheduledTaskFactory(queue=queue, identifier="tests.noop") for queue in ("mail", "default")]

    paused = api.post("/scheduler/pause", {"reason": "database migration"})
    again = api.post("/scheduler/pause", {})
    ran_while_paused = run_pending_jobs()
    listed = api.get("/queues/paused").json()
    statistics = ApiClient(make_user("root", superuser=True)).get("/statistics").json()
    resumed = api.post("/scheduler/resume")
    ran_after = {task.pk for task in run_pending_jobs()}

    assert (paused.status_code, paused.json()["paused"], paused.json()["changed"]) == (200, True, True)
    assert paused.json()["pause"]["reason"] == "database migration"
    assert paused.json()["pause"]["paused_by"] == "operator"
    assert (again.json()["paused"], again.json()["changed"]) == (True, False)
    assert ran_while_paused == []
    assert listed["results"] == [] and listed["all"]["reason"] == "database migration"
    assert statistics["all_paused"] is True and statistics["paused_queues"] == []
    assert resumed.json() == {"paused": False, "changed": True, "pause": None}
    assert ran_after == {task.pk for task in tasks}
    assert api.post("/scheduler/resume").json()["changed"] is False
    assert api.get("/queues/paused").json() == {"results": [], "all": None}


def test_scheduler_resume_leaves_queues_paused_one_by_one(api):
    PausedQueueFactory(queue="mail", reason="SMTP")
    api.post("/scheduler/pause")
    api.post("/scheduler/resume")
    assert [row["queue"] for row in api.get("/queues/paused").json()["results"]] == ["mail"]


def test_scheduler_pause_and_resume_need_their_permissions():
    viewer = ApiClient(make_user("viewer", "view_pausedqueue"))
    assert viewer.post("/scheduler/pause").status_code == 403
    assert viewer.post("/scheduler/resume").status_code == 403
    assert not PausedQueue.objects.exists()


def test_scheduler_pause_checks_its_reason(api):
    response = api.post("/scheduler/pause", {"reason": "x" * 501})
    assert response.status_code == 400 and "At most 500 characters" in errors(response)["reason"][0]
    assert not PausedQueue.objects.exists()
