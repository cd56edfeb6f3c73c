"""The JSON API's cron schedules: create, read, update, enable, disable, run now,
delete, and who sees which (owners; others' schedules are 404)."""

from __future__ import annotations

from datetime import datetime

import pytest

from django_jobs.models import CronSchedule, ScheduledTask
from tests.api_support import ApiClient, errors, make_user
from tests.factories import CronScheduleFactory

pytestmark = pytest.mark.django_db

MANAGE = ("view_cronschedule", "add_cronschedule", "change_cronschedule", "delete_cronschedule")
DAILY = {"name": "nightly", "job": "tests.add", "expression": "30 2 * * *", "args": [1, 2]}


@pytest.fixture
def alice():
    return make_user("alice", *MANAGE)


@pytest.fixture
def api(alice):
    return ApiClient(alice)


# -- create and read ---------------------------------------------------------------------
def test_create_sets_the_owner_and_the_next_run(api, alice):
    response = api.post("/schedules", {**DAILY, "timezone": "Europe/Berlin", "metadata": {"team": "ops"}})

    assert response.status_code == 201
    body = response.json()
    row = CronSchedule.objects.get(pk=body["id"])
    assert row.owner == alice and body["owner"] == "alice"
    assert (row.job_name, row.expression, row.timezone) == ("tests.add", "30 2 * * *", "Europe/Berlin")
    assert row.args == [1, 2]
    assert row.next_run is not None and datetime.fromisoformat(body["next_run"]) == row.next_run
    assert len(body["upcoming"]) == 5 and body["upcoming"][0] == body["next_run"]
    assert body["metadata"] == {"team": "ops"} and body["enabled"] is True


def test_queue_and_priority_default_to_the_job(api):
    body = api.post("/schedules", {"name": "fails", "job": "tests.always_fails", "expression": "@hourly"}).json()
    assert (body["queue"], body["priority"]) == ("default", 0)

    body = api.post("/schedules", {**DAILY, "name": "urgent", "queue": "mail", "priority": "critical"}).json()
    assert (body["queue"], body["priority"]) == ("mail", 100)


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"expression": "61 * * * *"}, "expression", "Invalid minute field '61'"),
    ({"expression": "* * * *"}, "expression", "5 fields"),
    ({"expression": "0 0 30 2 *"}, "expression", "never fires"),
    ({"expression": "@reboot"}, "expression", "Unknown cron macro"),
    ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
    ({"job": "no.such.job"}, "job", "No job named"),
    ({"args": [1, 2, 3]}, "args", "Arguments do not fit"),
    ({"kwargs": {"c": 1}}, "kwargs", "Unexpected keyword argument(s) 'c'"),
    ({"name": ""}, "name", "empty"),
    ({"enabled": "yes"}, "enabled", "true or false"),
    ({"overlap": "never"}, "overlap", "Must be one of skip, queue, allow"),
    ({"owner": "bob"}, "owner", "Unknown field"),
])
def test_bad_input_is_a_400_naming_the_field(api, change, field, message):
    response = api.post("/schedules", {**DAILY, **change})

    assert response.status_code == 400
    assert message in errors(response)[field][0], errors(response)
    assert not CronSchedule.objects.exists()


def test_every_missing_required_field_is_named(api):
    response = api.post("/schedules", {})

    assert set(errors(response)) == {"name", "job", "expression"}


def test_a_taken_name_is_a_409(api):
    CronScheduleFactory(name="nightly")

    response = api.post("/schedules", DAILY)

    assert response.status_code == 409  # a conflict with another schedule, not bad input
    assert "already exists" in errors(response)["name"][0]


def test_read_one(api, alice):
    row = CronScheduleFactory(owner=alice, enabled=False)

    body = api.get(f"/schedules/{row.pk}").json()

    assert (body["id"], body["enabled"], body["upcoming"], body["next_run"]) == (row.pk, False, [], None)


# -- owners --------------------------------------------------------------------------------
def test_others_schedules_are_invisible_and_404_to_a_user_who_is_not_superuser(api, alice):
    mine = CronScheduleFactory(owner=alice)
    theirs = CronScheduleFactory(owner=make_user("bob"))
    unowned = CronScheduleFactory(owner=None)

    listed = [row["id"] for row in api.get("/schedules").json()["results"]]

    assert listed == [mine.pk]
    for row in (theirs, unowned):
        assert api.get(f"/schedules/{row.pk}").status_code == 404
        assert api.patch(f"/schedules/{row.pk}", {"description": "mine now"}).status_code == 404
        assert api.post(f"/schedules/{row.pk}/disable").status_code == 404
        assert api.post(f"/schedules/{row.pk}/run").status_code == 404
        assert api.delete(f"/schedules/{row.pk}").status_code == 404
    theirs.refresh_from_db()
    assert theirs.enabled and theirs.description == ""
    assert not ScheduledTask.objects.exists()


def test_a_superuser_sees_and_manages_every_schedule(alice):
    rows = [CronScheduleFactory(owner=alice), CronScheduleFactory(owner=None)]
    root = ApiClient(make_user("root", superuser=True))

    assert [row["id"] for row in root.get("/schedules").json()["results"]] == [row.pk for row in rows]
    assert root.post(f"/schedules/{rows[0].pk}/disable").json()["enabled"] is False
    created = root.post("/schedules", DAILY).json()
    assert created["owner"] == "root"


# -- update ----------------------------------------------------------------------------------
def test_patch_changes_only_the_given_fields_and_recomputes_the_next_run(api, alice):
    row = CronScheduleFactory(owner=alice, expression="0 9 * * *", description="keep")
    before = row.next_run

    body = api.patch(f"/schedules/{row.pk}", {"expression": "0 10 * * *", "timezone": "America/New_York"}).json()

    row.refresh_from_db()
    assert (row.expression, row.timezone, row.description) == ("0 10 * * *", "America/New_York", "keep")
    assert row.next_run != before and datetime.fromisoformat(body["next_run"]) == row.next_run


def test_patch_checks_arguments_against_a_new_job(api, alice):
    row = CronScheduleFactory(owner=alice, job_name="tests.noop", args=[1])

    response = api.patch(f"/schedules/{row.pk}", {"job": "tests.always_fails", "args": [1], "kwargs": {}})

    assert response.status_code == 400 and list(errors(response)) == ["args"]
    row.refresh_from_db()
    assert row.job_name == "tests.noop"


@pytest.mark.parametrize("body", [{"job": "tests.always_fails"}, {"args": [2]}, {"job": "tests.add", "args": [1, 2]}])
def test_patch_changes_job_args_and_kwargs_together(api, alice, body):
    # The new call is checked (and documented) as a whole, never against the stored one.
    row = CronScheduleFactory(owner=alice, job_name="tests.noop", args=[1])

    response = api.patch(f"/schedules/{row.pk}", body)

    assert response.status_code == 400
    assert set(errors(response)) == {"job", "args", "kwargs"} - set(body)
    changed = api.patch(f"/schedules/{row.pk}", {"job": "tests.add", "args": [1], "kwargs": {"b": 2}})
    assert changed.status_code == 200 and (changed.json()["job"], changed.json()["args"]) == ("tests.add", [1])


def test_patch_of_a_schedule_declared_in_code_changes_only_enabled():
    root = ApiClient(make_user("root", superuser=True))
    row = CronScheduleFactory(declared_in_code=True)

    refused = root.patch(f"/schedules/{row.pk}", {"expression": "@daily", "enabled": False})
    switched = root.patch(f"/schedules/{row.pk}", {"enabled": False})

    assert refused.status_code == 409 and list(errors(refused)) == ["expression"]
    assert switched.status_code == 200 and switched.json()["enabled"] is False
    assert root.delete(f"/schedules/{row.pk}").status_code == 409


def test_patch_to_a_taken_name_is_a_409(api, alice):
    CronScheduleFactory(name="taken")
    row = CronScheduleFactory(owner=alice)

    response = api.patch(f"/schedules/{row.pk}", {"name": "taken"})

    assert response.status_code == 409 and list(errors(response)) == ["name"]
    assert api.patch(f"/schedules/{row.pk}", {"name": row.name}).status_code == 200  # its own name is fine


# -- enable, disable, run, delete ----------------------------------------------------------
def test_disable_then_enable(api, alice):
    row = CronScheduleFactory(owner=alice)

    disabled = api.post(f"/schedules/{row.pk}/disable").json()
    enabled = api.post(f"/schedules/{row.pk}/enable", {}).json()

    assert (disabled["enabled"], disabled["next_run"]) == (False, None)
    assert enabled["enabled"] is True and enabled["next_run"] is not None


def test_run_now_enqueues_one_task_of_the_schedule(api, alice):
    row = CronScheduleFactory(owner=alice, job_name="tests.add", args=[1, 2])

    response = api.post(f"/schedules/{row.pk}/run")

    assert response.status_code == 201
    task = ScheduledTask.objects.get()
    assert (response.json()["id"], task.cron_schedule_id, task.args) == (task.pk, row.pk, [1, 2])


def test_overlap_is_set_listed_and_a_busy_run_now_is_a_409(api, alice):
    body = api.post("/schedules", {**DAILY, "overlap": "queue"}).json()
    assert (body["overlap"], body["skipped_fires"], body["waiting_fires"]) == ("queue", 0, [])
    assert api.post("/schedules", {**DAILY, "name": "other"}).json()["overlap"] == "skip"
    assert [row["name"] for row in api.get("/schedules?overlap=queue").json()["results"]] == [DAILY["name"]]

    first = api.post(f"/schedules/{body['id']}/run")
    busy = api.post(f"/schedules/{body['id']}/run")

    assert first.status_code == 201 and busy.status_code == 409
    assert f"task {first.json()['id']} (pending)" in errors(busy)["overlap"][0]
    assert ScheduledTask.objects.filter(cron_schedule_id=body["id"]).count() == 1


def test_delete_keeps_the_tasks(api, alice):
    row = CronScheduleFactory(owner=alice)
    task = row.run_now()

    response = api.delete(f"/schedules/{row.pk}")

    assert response.status_code == 204
    assert not CronSchedule.objects.exists()
    task.refresh_from_db()
    assert task.cron_schedule_id is None


def test_change_permission_is_needed_to_enable_and_run(alice):
    viewer = make_user("viewer", "view_cronschedule")
    row = CronScheduleFactory(owner=viewer)
    api = ApiClient(viewer)

    assert api.get(f"/schedules/{row.pk}").status_code == 200
    for action in ("enable", "disable", "run"):
        assert list(errors(api.post(f"/schedules/{row.pk}/{action}"))) == ["permission"]
    assert api.delete(f"/schedules/{row.pk}").status_code == 403


# -- list ---------------------------------------------------------------------------------------
def test_list_pages_and_filters(api, alice):
    rows = [CronScheduleFactory(owner=alice, job_name="tests.add" if number % 2 else "tests.noop")
            for number in range(5)]
    rows[0].disable()

    first = api.get("/schedules?limit=3").json()
    second = api.get(first["next"]).json()

    assert [row["id"] for row in first["results"] + second["results"]] == [row.pk for row in rows]
    assert second["next"] is None
    assert [row["id"] for row in api.get("/schedules?enabled=false").json()["results"]] == [rows[0].pk]
    assert len(api.get("/schedules?job=tests.add").json()["results"]) == 2
    assert list(errors(api.get("/schedules?enabled=maybe"))) == ["enabled"]
