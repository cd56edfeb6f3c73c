import datetime as dt

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from django_jobs.models import ScheduledTask
from django_jobs.signals import job_cancelled
from tests.factories import ScheduledTaskFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_cancel_only_pending_tasks_and_signals_it():
    cancelled = []
    job_cancelled.connect(lambda sender, task, **kw: cancelled.append(task.pk), weak=False, dispatch_uid="t")
    try:
        task = ScheduledTaskFactory()
        assert task.cancel() is True
        assert task.status == ScheduledTask.Status.CANCELLED
        assert task.cancel() is False
        running = ScheduledTaskFactory(status="running")
        assert running.cancel() is False
        assert running.status == "running"
    finally:
        job_cancelled.disconnect(dispatch_uid="t")
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
