"""Every change that makes a task due wakes idle PostgreSQL workers (NOTIFY on commit).

A LISTEN connection of its own hears what a worker would; each change is made as
users make it (model method, admin action, command, API, queue resume) and must be
heard, with the task's queue as payload, once committed and not before.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

import django_jobs
from django_jobs import UniqueKeyConflict, task_actions
from django_jobs.db import engine
from django_jobs.db.engine import Engine
from django_jobs.models import ScheduledTask
from tests.api_support import ApiClient, make_user
from tests.factories import CronScheduleFactory, PausedQueueFactory, ScheduledTaskFactory

pytestmark = pytest.mark.django_db(transaction=True)

LATER = timedelta(hours=1)


@pytest.fixture
def listener():
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY exists on PostgreSQL only; other databases rely on polling")
    with engine(connection.alias).listening() as hear:
        yield hear


def heard(hear) -> list[str]:
    """The queues notified since the last call (waits a little for stragglers)."""
    return sorted(hear(0.5))


def failed_task(queue: str) -> ScheduledTask:
    return ScheduledTaskFactory(status="failed", queue=queue, error_message="boom")


def later_task(queue: str) -> ScheduledTask:
    return ScheduledTaskFactory(queue=queue, scheduled_at=timezone.now() + LATER)


def held_task(queue: str) -> ScheduledTask:
    return ScheduledTaskFactory(status="running", queue=queue, worker_id="gone", started_at=timezone.now() - LATER)


def retry_method(queue):
    assert failed_task(queue).retry()


def retry_command(queue):
    call_command("jobs", "retry", str(failed_task(queue).pk), stdout=io.StringIO())


def retry_by_api(queue):
    task = failed_task(queue)
    assert ApiClient(make_user("root", superuser=True)).post(f"/tasks/{task.pk}/retry").status_code == 200


def retry_queryset(queue):
    task = failed_task(queue)
    assert ScheduledTask.objects.filter(pk=task.pk).retry_now() == 1


def run_now(queue):
    task = later_task(queue)
    assert ScheduledTask.objects.filter(pk=task.pk).run_now() == 1


def edit_pending(queue):
    task = later_task("elsewhere")
    assert ScheduledTask.objects.filter(pk=task.pk).edit_pending(queue=queue, scheduled_at=timezone.now()) == 1


def release(queue):
    task = held_task(queue)
    assert ScheduledTask.objects.filter(pk=task.pk).release("gone", timezone.now()) == 1


def recover(queue):
    task = held_task(queue)
    assert ScheduledTask.objects.recover(task, "lost", "WorkerLost", timezone.now()) == 1


def resume(queue):
    PausedQueueFactory(queue=queue)
    assert django_jobs.resume_queue(queue)


def cron_run_now(queue):
    CronScheduleFactory(queue=queue).run_now()


def enqueue(queue):
    django_jobs.enqueue("tests.noop", queue=queue)


MAKE_DUE = [retry_method, retry_command, retry_by_api, retry_queryset, run_now, edit_pending, release, recover,
            resume, cron_run_now, enqueue]


@pytest.mark.parametrize("make_due", MAKE_DUE, ids=[step.__name__ for step in MAKE_DUE])
def test_a_change_that_makes_a_task_due_wakes_the_workers_of_its_queue(listener, make_due):
    heard(listener)  # nothing left over from the set-up
    make_due("woken")
    assert "woken" in heard(listener)


def test_the_wake_up_comes_with_the_commit_not_before(listener):
    task = failed_task("woken")
    with transaction.atomic():
        task.retry()
        assert heard(listener) == []
    assert heard(listener) == ["woken"]


def test_a_refused_retry_wakes_nobody(listener):
    task = failed_task("woken")
    ScheduledTask.objects.filter(pk=task.pk).update(unique_key="k")
    ScheduledTaskFactory(unique_key="k", queue="other", scheduled_at=timezone.now() + LATER)
    heard(listener)
    with pytest.raises(UniqueKeyConflict):
        task.retry()
    assert heard(listener) == []


def test_changes_that_make_nothing_due_wake_nobody(listener):
    done = ScheduledTaskFactory(status="completed", queue="woken")
    heard(listener)
    assert done.retry() is False
    assert task_actions.cancel([later_task("woken").pk]).changed
    assert heard(listener) == []


def test_engines_that_cannot_listen_say_so_and_refuse_to():
    orm = Engine(connection.alias)  # what a Django backend without an engine of its own gets
    assert orm.can_listen is False
    with pytest.raises(NotImplementedError, match="cannot listen"), orm.listening():
        pass
    assert engine(connection.alias).can_listen is (connection.vendor == "postgresql")
