"""A queue on a database of its own (``DJANGO_JOBS["DATABASE"] = "queue"``), end to end.

Run with ``tests.settings_queue_database`` (tox.ini runs it apart): pytest-django
creates both test databases and migrates each through the router, as ``migrate`` and
``migrate --database queue`` would in a project: the app's tables on ``queue`` only,
users and the rest on ``default`` only, no foreign key from one to the other.
"""

from __future__ import annotations

import json
import signal
from datetime import timedelta

import django
import pytest
from django.contrib.auth import get_user_model
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connections, router, transaction
from django.test import Client, override_settings
from django.utils import timezone

import django_jobs
from django_jobs.models import ApiToken, CronSchedule, PausedQueue, ScheduledTask
from django_jobs.retention import prune
from django_jobs.signals import job_enqueued
from tests.helpers import capture_signal
from tests.processes import assert_exit, wait_for
from tests.testapp.jobs import add, noop, record

BOTH = ["default", "queue"]
pytestmark = pytest.mark.django_db(databases=BOTH)


def tables(alias: str) -> set[str]:
    with connections[alias].cursor() as cursor:
        return set(connections[alias].introspection.table_names(cursor))


def test_the_app_s_tables_are_on_the_queue_database_and_nothing_else_is():
    queue, default = tables("queue"), tables("default")
    assert {"django_jobs_scheduledtask", "django_jobs_cronschedule", "django_jobs_apitoken"} <= queue
    assert not {name for name in default if name.startswith("django_jobs_")}
    assert "auth_user" in default and "auth_user" not in queue
    assert not {name for name in queue if not name.startswith("django_jobs_") and name != "django_migrations"}


def test_the_router_sends_every_model_of_the_app_to_the_queue_and_users_stay_on_default():
    for model in (ScheduledTask, CronSchedule, ApiToken, PausedQueue):
        assert router.db_for_read(model) == router.db_for_write(model) == "queue"
    assert router.db_for_write(get_user_model()) == "default"


def test_an_enqueue_writes_its_row_on_the_queue_database():
    task = add.enqueue(2, 3)
    assert task._state.db == "queue"
    assert ScheduledTask.objects.using("queue").filter(pk=task.pk).exists()


def test_an_enqueue_joins_a_transaction_on_the_queue_database_and_not_one_on_default():
    """The README's trade-off, as it stands: rolled back with ``atomic(using="queue")``,
    kept when only the default database's transaction rolls back."""
    with pytest.raises(RuntimeError), transaction.atomic(using="queue"):
        noop.enqueue("rolled back")
        raise RuntimeError
    with pytest.raises(RuntimeError), transaction.atomic():
        noop.enqueue("kept")
        raise RuntimeError
    assert [task.args for task in ScheduledTask.objects.all()] == [["kept"]]


def test_signals_of_an_enqueue_inside_a_queue_transaction_wait_for_its_commit(django_capture_on_commit_callbacks):
    with capture_signal(job_enqueued, pick=lambda task, **_: task.pk) as sent:
        with django_capture_on_commit_callbacks(using="queue", execute=True):
            task = noop.enqueue()
            assert sent == []
        assert sent == [task.pk]


def test_a_task_s_owner_is_a_user_of_the_default_database():
    user = get_user_model().objects.create_user("ann")
    task = noop.using(owner=user).enqueue()
    read = ScheduledTask.objects.get(pk=task.pk)
    assert read.owner_id == user.pk
    assert read.owner == user and read.owner._state.db == "default"


@pytest.mark.django_db(databases=BOTH, transaction=True)  # the rows change when the deletion commits
def test_deleting_a_user_clears_their_tasks_and_schedules_and_deletes_their_tokens():
    user = get_user_model().objects.create_user("bob")
    other = get_user_model().objects.create_user("cy")
    task = noop.using(owner=user).enqueue()
    kept = noop.using(owner=other).enqueue()
    schedule = CronSchedule.objects.create(name="bob's", job_name="tests.noop", expression="* * * * *", owner=user)
    ApiToken.issue(user)
    ApiToken.issue(other)
    with transaction.atomic():  # the user's database; the app's rows change once it commits
        user.delete()
    assert ScheduledTask.objects.get(pk=task.pk).owner_id is None
    assert ScheduledTask.objects.get(pk=kept.pk).owner_id == other.pk
    assert CronSchedule.objects.get(pk=schedule.pk).owner_id is None
    assert list(ApiToken.objects.values_list("user_id", flat=True)) == [other.pk]


@pytest.mark.django_db(databases=BOTH, transaction=True)
def test_a_user_deletion_rolled_back_leaves_their_rows():
    user = get_user_model().objects.create_user("dee")
    user_id = user.pk
    task = noop.using(owner=user).enqueue()
    with pytest.raises(RuntimeError), transaction.atomic():
        user.delete()
        raise RuntimeError
    assert ScheduledTask.objects.get(pk=task.pk).owner_id == user_id


def test_admin_lists_tasks_with_owners_and_searches_tokens_by_username():
    admin = get_user_model().objects.create_superuser("root", password="pw")
    owner = get_user_model().objects.create_user("erin")
    noop.using(owner=owner).enqueue()
    ApiToken.issue(owner, name="for erin")
    client = Client()
    client.force_login(admin)
    tasks = client.get("/admin/django_jobs/scheduledtask/")
    assert tasks.status_code == 200 and b"erin" in tasks.content
    tokens = client.get("/admin/django_jobs/apitoken/", {"q": "erin"})
    assert tokens.status_code == 200 and b"for erin" in tokens.content
    for page in ("/admin/django_jobs/cronschedule/", "/admin/django_jobs/pausedqueue/", "/admin/"):
        assert client.get(page).status_code == 200, page


def test_the_api_authenticates_a_token_and_filters_tasks_by_owner_across_the_databases():
    ann = get_user_model().objects.create_superuser("ann2", password="pw")
    bob = get_user_model().objects.create_user("bob2")
    mine = noop.using(owner=ann).enqueue()
    noop.using(owner=bob).enqueue()
    _, token = ApiToken.issue(ann)
    client = Client(headers={"Authorization": f"Bearer {token}"})
    answer = client.get("/jobs/api/tasks", {"owner": "ann2"})
    assert answer.status_code == 200, answer.content
    assert [row["id"] for row in json.loads(answer.content)["results"]] == [mine.pk]
    bob.is_active = False
    bob.save()
    _, bobs = ApiToken.issue(bob)
    assert Client(headers={"Authorization": f"Bearer {bobs}"}).get("/jobs/api/tasks").status_code == 401


def test_pauses_statistics_and_retention_work_on_the_queue_database():
    user = get_user_model().objects.create_user("fay")
    assert django_jobs.pause_queue("mail", by=user, reason="test")
    assert PausedQueue.objects.using("queue").get(queue="mail").paused_by == user
    noop.enqueue()
    assert django_jobs.get_statistics()["pending"] == 1
    old = noop.enqueue()
    ScheduledTask.objects.filter(pk=old.pk).update(status="completed", executed_at=timezone.now() - timedelta(days=9))
    assert prune({"completed": "7d"}) == {"completed": 1}


def test_a_check_names_a_missing_alias_and_a_missing_router():
    with override_settings(DJANGO_JOBS={"DATABASE": "nope"}):
        assert [problem.id for problem in run_checks() if problem.id.startswith("django_jobs.E")] == ["django_jobs.E009"]
    with override_settings(DATABASE_ROUTERS=[]):
        assert [problem.id for problem in run_checks() if problem.id.startswith("django_jobs.E")] == ["django_jobs.E010"]
    assert not [problem for problem in run_checks() if problem.id.startswith("django_jobs.E")]


@pytest.mark.django_db(databases=BOTH, transaction=True)
def test_a_worker_runs_the_queue_s_tasks_and_fires_its_schedules(workers):
    done = [record.enqueue(label=f"t{n}") for n in range(5)]
    schedule = CronSchedule.objects.create(name="every minute", job_name="tests.noop", expression="* * * * *")
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() - timedelta(seconds=1))
    worker = workers.start()
    wait_for(lambda: ScheduledTask.objects.filter(status="completed").count() == 6, worker,
             what="the five tasks and the schedule's task completed")
    worker.send_signal(signal.SIGTERM)
    assert_exit(worker)
    assert set(ScheduledTask.objects.filter(pk__in=[task.pk for task in done]).values_list("status", flat=True)) == {"completed"}
    assert ScheduledTask.objects.get(cron_schedule=schedule).status == "completed"


@pytest.mark.django_db(databases=BOTH, transaction=True)
def test_manage_py_jobs_reads_the_queue_database(capsys):
    task = add.enqueue(1, 1)
    call_command("jobs", "show", str(task.pk))
    assert "tests.add" in capsys.readouterr().out


@pytest.mark.skipif(django.VERSION < (6, 0), reason="Django's Tasks framework is Django 6.0+")
def test_the_django_tasks_backend_enqueues_on_the_queue_database():
    from tests.testapp.tasks import noop_task

    result = noop_task.enqueue(1)
    assert ScheduledTask.objects.using("queue").filter(pk=int(result.id)).exists()
    assert noop_task.get_result(result.id).status == result.status
