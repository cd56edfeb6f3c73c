"""Task owners: ``using(owner=user)`` in code, the API's caller in the API; a user who is
not a superuser sees and acts only on the tasks they own (API and admin), a superuser
sees all and filters by owner."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

import django_jobs
from django_jobs import job
from django_jobs.exceptions import InvalidJobOption
from django_jobs.models import CronSchedule, ScheduledTask
from tests.api_support import ApiClient, errors, make_user
from tests.factories import CronScheduleFactory, ScheduledTaskFactory
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)

TASK_PERMISSIONS = ("view_scheduledtask", "add_scheduledtask", "cancel_scheduledtask", "retry_scheduledtask")


@pytest.fixture
def alice():
    return make_user("alice", *TASK_PERMISSIONS)


@pytest.fixture
def bob():
    return make_user("bob", *TASK_PERMISSIONS)


# -- in code: every insert path writes the owner ---------------------------------------------
def test_every_enqueue_path_writes_the_owner(alice, bob):
    single = jobs.add.using(owner=alice).enqueue(1, 2)
    delayed = jobs.add.using(owner=alice).enqueue_in(60, 1, 2)
    keyed = jobs.add.using(owner=alice, unique_key="k").enqueue(1, 2)
    many = jobs.add.using(owner=bob).enqueue_many([((1, 2), {}), ((3, 4), {})])
    by_name = django_jobs.enqueue("tests.add", [1, 2], owner=alice)
    mixed = django_jobs.enqueue_many([jobs.add.s(1, 2).using(owner=alice), jobs.add.s(5, 6),
                                      jobs.noop.s().using(owner=bob, queue="mail")])
    nobody = jobs.add.enqueue(1, 1)

    stored = dict(ScheduledTask.objects.values_list("pk", "owner_id"))
    expected = {single.pk: alice.pk, delayed.pk: alice.pk, keyed.pk: alice.pk, many[0].pk: bob.pk,
                many[1].pk: bob.pk, by_name.pk: alice.pk, mixed[0].pk: alice.pk, mixed[1].pk: None,
                mixed[2].pk: bob.pk, nobody.pk: None}
    assert stored == expected
    assert [task.owner_id for task in (single, many[0], mixed[0], mixed[1], nobody)] == \
        [alice.pk, bob.pk, alice.pk, None, None]


def test_a_retry_keeps_the_owner(alice):
    task = jobs.add.using(owner=alice).enqueue(1, 2)
    ScheduledTask.objects.filter(pk=task.pk).update(status="failed")
    assert ScheduledTask.objects.get(pk=task.pk).retry()
    assert ScheduledTask.objects.get(pk=task.pk).owner_id == alice.pk


def test_deleting_the_user_keeps_the_task_without_owner(alice):
    task = jobs.add.using(owner=alice).enqueue(1, 2)
    alice.delete()
    assert ScheduledTask.objects.get(pk=task.pk).owner_id is None


@pytest.mark.parametrize("owner", ["alice", 1, AnonymousUser(), "unsaved"])
def test_an_owner_that_is_not_a_saved_user_is_refused_and_nothing_written(owner):
    if owner == "unsaved":
        owner = get_user_model()(username="ghost")
    with pytest.raises(InvalidJobOption, match="owner must be a saved"):
        jobs.add.using(owner=owner).enqueue(1, 2)
    with pytest.raises(InvalidJobOption, match="owner must be a saved"):
        django_jobs.enqueue("tests.add", [1, 2], owner=owner)
    assert not ScheduledTask.objects.exists()


def test_owner_is_per_call_not_a_job_declaration():
    with pytest.raises(Exception, match="Unknown @job option"):
        job(name="tests.owned", owner=None)(lambda: None)
    assert isinstance(ImproperlyConfigured(), Exception)


# -- the API ----------------------------------------------------------------------------------
def test_a_task_created_through_the_api_belongs_to_the_caller(alice):
    response = ApiClient(alice).post("/tasks", {"job": "tests.add", "args": [1, 2]})
    assert response.status_code == 201 and response.json()["owner"] == "alice"
    assert ScheduledTask.objects.get(pk=response.json()["id"]).owner == alice


def test_others_tasks_are_404_and_unlisted_for_a_user_who_is_not_superuser(alice, bob):
    mine = ScheduledTaskFactory(owner=alice)
    theirs = ScheduledTaskFactory(owner=bob)
    failed = ScheduledTaskFactory(owner=bob, status="failed")
    unowned = ScheduledTaskFactory()
    api = ApiClient(alice)

    assert [row["id"] for row in api.get("/tasks").json()["results"]] == [mine.pk]
    assert api.get(f"/tasks/{mine.pk}").status_code == 200
    for task in (theirs, unowned):
        missing = api.get(f"/tasks/{task.pk}")
        # The same answer as for a task that does not exist.
        assert missing.status_code == 404 and errors(missing) == {"id": [f"No task with id {task.pk}."]}
        assert api.post(f"/tasks/{task.pk}/cancel").status_code == 404
    assert api.post(f"/tasks/{failed.pk}/retry").status_code == 404
    assert ScheduledTask.objects.get(pk=theirs.pk).status == "pending"
    assert ScheduledTask.objects.get(pk=failed.pk).status == "failed"
    assert api.get("/tasks?owner=bob").json()["results"] == []
    assert api.post(f"/tasks/{mine.pk}/cancel").status_code == 200


def test_a_superuser_sees_every_task_and_filters_by_owner(alice, bob):
    tasks = [ScheduledTaskFactory(owner=alice), ScheduledTaskFactory(owner=bob), ScheduledTaskFactory()]
    root = ApiClient(make_user("root", superuser=True))
    assert {row["id"] for row in root.get("/tasks").json()["results"]} == {task.pk for task in tasks}
    assert [row["id"] for row in root.get("/tasks?owner=bob").json()["results"]] == [tasks[1].pk]
    assert root.get("/tasks?owner=nobody").json()["results"] == []
    assert root.get(f"/tasks/{tasks[0].pk}").json()["owner"] == "alice"


def test_a_holder_of_see_all_scheduledtask_sees_and_acts_on_every_task(alice, bob):
    operator = make_user("operator", *TASK_PERMISSIONS, "see_all_scheduledtask")
    theirs = ScheduledTaskFactory(owner=bob, status="failed")
    unowned = ScheduledTaskFactory()
    api = ApiClient(operator)
    assert {row["id"] for row in api.get("/tasks").json()["results"]} == {theirs.pk, unowned.pk}
    assert api.post(f"/tasks/{theirs.pk}/retry").status_code == 200
    assert api.post(f"/tasks/{unowned.pk}/cancel").status_code == 200


def test_a_unique_key_held_by_another_users_task_is_a_409_that_reveals_nothing(alice, bob):
    theirs = jobs.add.using(owner=bob, unique_key="nightly").enqueue(1, 2)
    response = ApiClient(alice).post("/tasks", {"job": "tests.add", "args": [1, 2], "unique_key": "nightly"})
    assert response.status_code == 409
    assert str(theirs.pk) not in str(errors(response)) and "unique_key" in errors(response)
    assert ScheduledTask.objects.count() == 1
    mine = ApiClient(bob).post("/tasks", {"job": "tests.add", "args": [1, 2], "unique_key": "nightly"})
    assert (mine.status_code, mine.json()["id"]) == (200, theirs.pk)


def test_a_superuser_filters_schedules_by_owner(alice, bob):
    CronScheduleFactory(owner=alice, name="a")
    CronScheduleFactory(owner=bob, name="b")
    root = ApiClient(make_user("root", superuser=True))
    assert [row["name"] for row in root.get("/schedules?owner=alice").json()["results"]] == ["a"]
    assert CronSchedule.objects.count() == 2


# -- admin ------------------------------------------------------------------------------------
def staff(username, *codenames):
    return make_user(username, *codenames, is_staff=True)


def test_admin_shows_a_user_who_is_not_superuser_only_their_tasks(client, alice, bob):
    ann = staff("ann", *TASK_PERMISSIONS)
    mine = ScheduledTaskFactory(owner=ann)
    theirs = ScheduledTaskFactory(owner=bob, status="failed")
    client.force_login(ann)
    listing = client.get(reverse("admin:django_jobs_scheduledtask_changelist")).content.decode()
    assert f"/{mine.pk}/change/" in listing and f"/{theirs.pk}/change/" not in listing
    page = client.get(reverse("admin:django_jobs_scheduledtask_change", args=[theirs.pk]), follow=True)
    assert page.redirect_chain or page.status_code == 404  # admin: "does not exist", back to the list
    client.post(reverse("admin:django_jobs_scheduledtask_changelist"),
                {"action": "retry_tasks", "_selected_action": [theirs.pk]})
    assert ScheduledTask.objects.get(pk=theirs.pk).status == "failed"


def test_admin_gives_a_superuser_an_owner_column_and_filter(admin_client, alice, bob):
    ScheduledTaskFactory(owner=alice)
    theirs = ScheduledTaskFactory(owner=bob)
    url = reverse("admin:django_jobs_scheduledtask_changelist")
    everything = admin_client.get(url)
    assert "By owner" in everything.content.decode() and "column-owner_name" in everything.content.decode()
    assert len(everything.context["cl"].result_list) == 2
    page = admin_client.get(reverse("admin:django_jobs_scheduledtask_change", args=[theirs.pk])).content.decode()
    assert "field-owner" in page and "bob" in page
    filtered = admin_client.get(url, {"owner__id__exact": bob.pk})
    assert [task.pk for task in filtered.context["cl"].result_list] == [theirs.pk]


def test_a_schedules_tasks_belong_to_its_owner(alice):
    schedule = CronScheduleFactory(owner=alice, job_name="tests.add", args=[1, 2], overlap="allow")
    fired = schedule.run_now()
    unowned = CronScheduleFactory(job_name="tests.noop", overlap="allow").run_now()
    assert ScheduledTask.objects.get(pk=fired.pk).owner_id == alice.pk
    assert ScheduledTask.objects.get(pk=unowned.pk).owner_id is None
    # Through the API: the owner runs their schedule and may see the task it enqueued.
    alice_api = ApiClient(make_user("carol", "change_cronschedule", "view_scheduledtask"))
    carol = get_user_model().objects.get(username="carol")
    mine = CronScheduleFactory(owner=carol, job_name="tests.noop", overlap="allow")
    ran = alice_api.post(f"/schedules/{mine.pk}/run")
    assert ran.status_code == 201 and ran.json()["owner"] == "carol"
    assert alice_api.get(f"/tasks/{ran.json()['id']}").status_code == 200


def test_a_refused_retry_does_not_name_a_holder_the_caller_cannot_see(alice, bob):
    mine = jobs.add.using(owner=alice, unique_key="report").enqueue(1, 2)
    ScheduledTask.objects.filter(pk=mine.pk).update(status="failed")
    theirs = jobs.add.using(owner=bob, unique_key="report").enqueue(1, 2)
    response = ApiClient(alice).post(f"/tasks/{mine.pk}/retry")
    assert response.status_code == 409
    assert str(theirs.pk) not in errors(response)["unique_key"][0]
    assert "cannot see" in errors(response)["unique_key"][0]
    own_view = ApiClient(make_user("root", superuser=True)).post(f"/tasks/{mine.pk}/retry")
    assert str(theirs.pk) in errors(own_view)["unique_key"][0]
