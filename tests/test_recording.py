"""Outcomes written in bulk: only rows this worker still holds change."""

import pytest
from django.utils import timezone

from django_jobs.execution.outcome import Outcome
from django_jobs.execution.recording import record_outcomes
from django_jobs.models import ScheduledTask
from django_jobs.signals import job_completed
from tests.factories import ScheduledTaskFactory
from tests.helpers import capture_signal

pytestmark = pytest.mark.django_db(transaction=True)


def held(count, worker_id="w1"):
    tasks = ScheduledTaskFactory.create_batch(count)
    ScheduledTask.objects.filter(pk__in=[t.pk for t in tasks]).mark_running(worker_id, timezone.now())
    return [ScheduledTask.objects.get(pk=t.pk) for t in tasks]


def test_plain_successes_are_written_together_and_signalled_each():
    tasks = held(5)
    with capture_signal(job_completed, pick=lambda task, **kw: task.pk) as completed:
        record_outcomes([(task, Outcome(succeeded=True)) for task in tasks], "w1")
    assert set(ScheduledTask.objects.values_list("status", flat=True)) == {"completed"}
    assert sorted(completed) == sorted(t.pk for t in tasks)
    assert all(task.status == "completed" for task in tasks)


def test_a_task_taken_by_another_worker_is_not_written_in_bulk():
    tasks = held(4)
    ScheduledTask.objects.filter(pk=tasks[0].pk).update(worker_id="w2")
    record_outcomes([(task, Outcome(succeeded=True)) for task in tasks], "w1")
    rows = dict(ScheduledTask.objects.values_list("pk", "status"))
    assert rows[tasks[0].pk] == "running"
    assert [rows[t.pk] for t in tasks[1:]] == ["completed"] * 3
    assert tasks[0].status == "running"  # the in-memory row is not mirrored either


def test_mixed_outcomes():
    tasks = held(3)
    error = RuntimeError("no")
    record_outcomes([
        (tasks[0], Outcome(succeeded=True)),
        (tasks[1], Outcome(succeeded=True, result={"n": 1})),
        (tasks[2], Outcome(succeeded=False, exception=error, error="RuntimeError: no", retryable=False)),
    ], "w1")
    rows = {row.pk: row for row in ScheduledTask.objects.all()}
    assert rows[tasks[0].pk].status == "completed"
    assert (rows[tasks[1].pk].status, rows[tasks[1].pk].result) == ("completed", {"n": 1})
    assert (rows[tasks[2].pk].status, rows[tasks[2].pk].error_message) == ("failed", "RuntimeError: no")
