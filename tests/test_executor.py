"""Running a claimed task: outcome, retries, backoff, recorded errors, signals."""

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from django_jobs import backoff
from django_jobs.execution.executor import run_claimed, run_inline
from django_jobs.models import ScheduledTask
from django_jobs.signals import job_completed, job_failed, job_started
from django_jobs.testing import run_pending_jobs
from tests.factories import ScheduledTaskFactory
from tests.helpers import capture_signal, connected
from tests.testapp import jobs

# Real transactions: signals are sent on commit, as in a worker.
pytestmark = pytest.mark.django_db(transaction=True)


LIFECYCLE = {job_started: "started", job_completed: "completed", job_failed: "failed"}


@pytest.fixture
def signals():
    """Every lifecycle signal sent during the test, as (name, kwargs)."""
    with capture_signal(*LIFECYCLE, pick=lambda signal, sender, **kwargs: (LIFECYCLE[signal], kwargs)) as sent:
        yield sent


def test_success_records_result_and_times(signals):
    task = jobs.add.enqueue(2, 3)
    run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.COMPLETED
    assert task.result == 5
    assert task.started_at <= task.executed_at
    assert task.worker_id.startswith("inline:")
    assert [name for name, _ in signals] == ["started", "completed"]
    assert signals[1][1]["result"] == 5


def test_async_jobs_run():
    task = jobs.async_add.enqueue(1, 2)
    run_inline(task)
    task.refresh_from_db()
    assert (task.status, task.result) == ("completed", 3)


def test_a_failure_with_retries_left_goes_back_to_pending_with_backoff(signals):
    task = jobs.always_fails.enqueue()  # max_retries=2, retry_delay=10s, exponential
    before = timezone.now()
    run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.PENDING
    assert task.retry_count == 1
    assert task.error_message == "ValueError: this job always fails"
    assert "Traceback" in task.traceback and "always_fails" in task.traceback
    delay = (task.scheduled_at - before).total_seconds()
    assert 10 * (1 - backoff.JITTER) - 1 <= delay <= 10 * (1 + backoff.JITTER) + 1
    assert signals[-1][0] == "failed" and signals[-1][1]["will_retry"] is True
    assert isinstance(signals[-1][1]["exception"], ValueError)


def test_retry_count_and_final_failure(signals):
    task = jobs.always_fails.enqueue()
    delays = []
    for expected_retry_count in (1, 2):
        run_inline(task)
        task.refresh_from_db()
        assert (task.status, task.retry_count) == ("pending", expected_retry_count)
        delays.append(task.scheduled_at - task.failed_at)
        ScheduledTask.objects.filter(pk=task.pk).update(scheduled_at=timezone.now())
        task.refresh_from_db()
    run_inline(task)  # third attempt = max_retries (2) exhausted
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.FAILED
    assert task.retry_count == 2
    assert task.failed_at is not None
    # exponential: the second delay is about twice the first (10 s then 20 s, +/- jitter)
    assert dt.timedelta(seconds=8) <= delays[0] <= dt.timedelta(seconds=12)
    assert dt.timedelta(seconds=16) <= delays[1] <= dt.timedelta(seconds=24)
    assert [kwargs["will_retry"] for name, kwargs in signals if name == "failed"] == [True, True, False]


def test_fixed_backoff_and_context_attempt_across_retries():
    task = jobs.fail_until.enqueue(3)  # fixed backoff, retry_delay 0
    ran = run_pending_jobs()
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.COMPLETED
    assert task.result == 3  # it succeeded on attempt 3
    assert task.retry_count == 2
    assert ran[0].pk == task.pk


def test_custom_backoff_callable():
    task = jobs.custom_backoff.enqueue()
    run_inline(task)
    task.refresh_from_db()
    assert task.backoff == "custom"
    assert dt.timedelta(seconds=6) <= task.scheduled_at - task.failed_at <= dt.timedelta(seconds=8)


@override_settings(DJANGO_JOBS={"MAX_RETRY_DELAY": 60})
def test_exponential_backoff_is_capped():
    delay = backoff.exponential_delay(dt.timedelta(seconds=1), 1000)
    assert delay <= dt.timedelta(seconds=60)


def test_unknown_job_on_a_row_fails_the_attempt_clearly():
    task = ScheduledTaskFactory(identifier="gone.from.code", max_retries=0)
    run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.FAILED
    assert "No job named 'gone.from.code'" in task.error_message


def test_arguments_that_no_longer_fit_fail_without_retry():
    task = ScheduledTaskFactory(identifier="tests.add", args=[1, 2, 3], max_retries=5)
    run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.FAILED
    assert task.retry_count == 0
    assert "do not fit job 'tests.add'" in task.error_message


def test_a_return_value_that_is_not_json_is_recorded_as_a_failure():
    task = jobs.returns_set.enqueue()
    run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.FAILED
    assert "return value (set) cannot be stored as JSON" in task.error_message


def test_a_broken_signal_receiver_does_not_fail_the_task():
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    with connected(broken, job_completed):
        task = jobs.add.enqueue(1, 1)
        run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.COMPLETED


def test_an_outcome_is_not_recorded_by_a_worker_that_lost_the_task():
    task = jobs.add.enqueue(1, 1)
    ScheduledTask.objects.filter(pk=task.pk).mark_running("worker-a", timezone.now())
    task.refresh_from_db()
    # Meanwhile the task was recovered and taken by another worker.
    ScheduledTask.objects.filter(pk=task.pk).update(worker_id="worker-b")
    run_claimed(task, "worker-a")
    task.refresh_from_db()
    assert (task.status, task.worker_id) == ("running", "worker-b")


def test_huge_tracebacks_are_cut_from_the_front():
    task = ScheduledTaskFactory(identifier="tests.add", args=["x" * 50_000, 1])
    with override_settings(DJANGO_JOBS={"MAX_TRACEBACK_LENGTH": 1000}):
        run_inline(task)
    task.refresh_from_db()
    assert len(task.traceback) < 1100
    assert task.traceback.rstrip().endswith("str")  # the end, with the exception, is kept


def test_progress_is_recorded():
    task = jobs.progress.enqueue(4)
    run_inline(task)
    task.refresh_from_db()
    assert task.progress == {"done": 4, "total": 4}


@pytest.mark.parametrize("args, kwargs", [({"a": 1}, {}), ([], ["x"]), ("text", {}), (5, {})])
def test_malformed_stored_arguments_fail_clearly(args, kwargs):
    task = ScheduledTaskFactory(identifier="tests.noop", max_retries=3)
    ScheduledTask.objects.filter(pk=task.pk).update(args=args, kwargs=kwargs)
    task.refresh_from_db()
    run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.FAILED
    assert "Stored arguments are malformed" in task.error_message


def test_each_failed_attempt_is_kept_in_the_attempt_log():
    task = jobs.fail_until.enqueue(3)
    run_pending_jobs()
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.COMPLETED
    assert [entry["attempt"] for entry in task.attempt_log] == [1, 2]
    first, second = task.attempt_log
    assert first["error"] == "RuntimeError: failing on attempt 1"
    assert second["error"] == "RuntimeError: failing on attempt 2"
    assert first["exception_class"] == "builtins.RuntimeError"
    assert "failing on attempt 1" in first["traceback"]
    assert first["worker_id"].startswith("inline:")
    started, finished = dt.datetime.fromisoformat(first["started_at"]), dt.datetime.fromisoformat(first["finished_at"])
    assert started <= finished <= dt.datetime.fromisoformat(second["started_at"])


def test_an_operator_retry_keeps_the_history_of_earlier_attempts():
    task = jobs.always_fails.using(max_retries=0).enqueue()
    run_inline(task)
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.FAILED and len(task.attempt_log) == 1
    assert task.retry()
    run_inline(task)
    task.refresh_from_db()
    assert [entry["attempt"] for entry in task.attempt_log] == [1, 1]  # a fresh set of attempts, history kept


def test_a_return_value_the_database_cannot_store_fails_without_retry():
    task = jobs.returns_nul.enqueue()
    run_pending_jobs()
    task.refresh_from_db()
    assert (task.status, task.retry_count) == ("failed", 0)
    assert "NUL character" in task.error_message
