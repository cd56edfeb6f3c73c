import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from django_jobs import UniqueKeyConflict
from django_jobs.models import ScheduledTask
from django_jobs.signals import job_cancelled
from django_jobs.testing import run_pending_jobs
from tests.factories import ScheduledTaskFactory
from tests.helpers import capture_signal
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def test_cancel_only_pending_tasks_and_signals_it():
    with capture_signal(job_cancelled, pick=lambda task, **kw: task.pk) as cancelled:
        task = ScheduledTaskFactory()
        assert task.cancel() is True
        assert task.status == ScheduledTask.Status.CANCELLED
        assert task.cancel() is False
        running = ScheduledTaskFactory(status="running")
        assert running.cancel() is False
        assert running.status == "running"
    assert cancelled == [task.pk]


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_retry_puts_failed_or_cancelled_back_due_now(status):
    task = ScheduledTaskFactory(status=status, retry_count=3, error_message="boom",
                                scheduled_at=timezone.now() - dt.timedelta(days=1))
    assert task.retry() is True
    assert task.status == "pending"
    assert task.retry_count == 0 and task.error_message == ""
    assert abs((task.scheduled_at - timezone.now()).total_seconds()) < 5


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
def test_retry_leaves_other_states_alone(status):
    task = ScheduledTaskFactory(status=status)
    assert task.retry() is False
    assert task.status == status


def test_attempt_and_duration():
    now = timezone.now()
    task = ScheduledTaskFactory(retry_count=2, started_at=now, executed_at=now + dt.timedelta(seconds=3))
    assert task.attempt == 3
    assert task.duration == dt.timedelta(seconds=3)


def test_active_unique_key_is_enforced_by_the_database():
    ScheduledTaskFactory(unique_key="k", status="pending")
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            ScheduledTaskFactory(unique_key="k", status="running")
    # Finished tasks do not hold the key; many may share it.
    ScheduledTaskFactory(unique_key="k", status="completed")
    ScheduledTaskFactory(unique_key="k", status="failed")
    assert ScheduledTask.objects.filter(unique_key="k").count() == 3


# -- retry while another task holds the unique key ---------------------------------------------
def failed_then_key_taken() -> tuple[ScheduledTask, ScheduledTask]:
    """Issue 17's steps: a max_retries=0 task with unique_key "k" fails; a new task takes
    the key for an hour later."""
    first = jobs.always_fails.using(unique_key="k", max_retries=0).enqueue()
    run_pending_jobs()
    first.refresh_from_db()
    assert first.status == "failed"
    holder = jobs.noop.using(unique_key="k").enqueue_in(dt.timedelta(hours=1))
    assert holder.pk != first.pk
    return first, holder


def snapshot(*tasks: ScheduledTask) -> list[tuple]:
    rows = ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks]).order_by("pk")
    return list(rows.values_list("pk", "status", "scheduled_at", "retry_count", "error_message", "updated_at"))


def test_retry_is_refused_naming_the_task_that_holds_the_key_and_changes_nothing():
    first, holder = failed_then_key_taken()
    before = snapshot(first, holder)

    with pytest.raises(UniqueKeyConflict) as refused:
        first.retry()

    error = refused.value
    assert (error.task_id, error.unique_key, error.holder_id) == (first.pk, "k", holder.pk)
    assert f"Task {first.pk} was not retried" in str(error) and f"active task {holder.pk} (pending)" in str(error)
    assert snapshot(first, holder) == before
    assert first.status == "failed"


def test_a_refused_retry_leaves_the_callers_transaction_usable():
    first, holder = failed_then_key_taken()
    with transaction.atomic():
        with pytest.raises(UniqueKeyConflict):
            first.retry()
        holder.cancel()  # the savepoint rolled back alone: this transaction goes on
        assert first.retry() is True
    assert ScheduledTask.objects.get(pk=first.pk).status == "pending"
    assert ScheduledTask.objects.get(pk=holder.pk).status == "cancelled"


def test_retry_works_again_once_the_holder_has_finished():
    first, holder = failed_then_key_taken()
    ScheduledTask.objects.filter(pk=holder.pk).update(status="completed")
    assert first.retry() is True
    assert first.status == "pending" and first.unique_key == "k"
