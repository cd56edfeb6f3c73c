"""The async lane: ``async def`` jobs on one event loop per worker, beside the job threads.

Real worker processes on the real database; each async job writes an ``Execution``
row with its start and end times and the thread that ran it (``label@thread``).
"""

from __future__ import annotations

import signal

import pytest

from django_jobs.models import ScheduledTask
from tests.processes import assert_exit, wait_for
from tests.testapp.jobs import async_raises, async_record, async_sleep_past_timeout, record_thread
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def most_at_once(rows) -> int:
    """The largest number of rows whose [started, ended] intervals overlap."""
    edges = sorted([(row.started, 1) for row in rows] + [(row.ended, -1) for row in rows], key=lambda edge: (edge[0], edge[1]))
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_async_jobs_run_together_on_one_event_loop_and_sync_jobs_on_the_threads(workers):
    waiting = [async_record.enqueue(label=f"a{n}", pause=1.0) for n in range(20)]
    plain = [record_thread.enqueue(label=f"s{n}") for n in range(5)]
    assert_exit(workers.start("--burst", "--no-cron", "--concurrency", "1", "--async-concurrency", "20"), timeout=90)
    assert set(ScheduledTask.objects.values_list("status", flat=True)) == {"completed"}
    async_rows = list(Execution.objects.filter(label__startswith="a"))
    sync_rows = list(Execution.objects.filter(label__startswith="s"))
    assert len(async_rows) == len(waiting) and len(sync_rows) == len(plain)
    assert {row.label.split("@")[1] for row in async_rows} == {"django-jobs-async"}
    assert {row.label.split("@")[1] for row in sync_rows} == {"django-jobs-job-0"}
    # One job thread could never have run two of them at once.
    assert most_at_once(async_rows) >= 10, [(row.started, row.ended) for row in async_rows]
    # Progress written from the loop (context.aset_progress) reached the rows.
    assert {tuple(task.progress.values()) for task in ScheduledTask.objects.filter(pk__in=[t.pk for t in waiting])} == {(1, 1)}


def test_no_more_than_async_concurrency_jobs_are_in_flight(workers):
    for n in range(9):
        async_record.enqueue(label=f"a{n}", pause=0.5)
    assert_exit(workers.start("--burst", "--no-cron", "--async-concurrency", "3"), timeout=60)
    rows = list(Execution.objects.all())
    assert len(rows) == 9
    assert 2 <= most_at_once(rows) <= 3


def test_async_concurrency_0_runs_async_jobs_on_the_job_threads(workers):
    async_record.enqueue(label="a")
    assert_exit(workers.start("--burst", "--no-cron", "--async-concurrency", "0"))
    # On a job thread, through async_to_sync (which runs the coroutine on a loop of its own).
    label, thread = Execution.objects.get().label.split("@")
    assert label == "a" and thread != "django-jobs-async"


@pytest.mark.once_per_database  # stops, kills and timeouts: once per database (tox.ini)
def test_a_timeout_cancels_an_async_job_and_the_loop_goes_on(workers):
    late = async_sleep_past_timeout.enqueue(30)
    others = [async_record.enqueue(label=f"a{n}", pause=0.2) for n in range(5)]
    output = assert_exit(workers.start("--burst", "--no-cron", "--concurrency", "1"), timeout=60)
    late.refresh_from_db()
    assert late.status == "failed", output
    assert "JobTimeout" in late.error_message and "cancelled" in late.error_message
    assert set(ScheduledTask.objects.filter(pk__in=[t.pk for t in others]).values_list("status", flat=True)) == {"completed"}


@pytest.mark.parametrize("kind, exception", [("system_exit", "SystemExit"), ("value", "ValueError"),
                                             ("cancelled", "CancelledError")])
def test_whatever_an_async_job_raises_is_its_attempt_s_failure_and_it_is_retried(workers, kind, exception):
    task = async_raises.enqueue(kind)
    after = async_record.enqueue(label="after")
    assert_exit(workers.start("--burst", "--no-cron"), timeout=60)
    task.refresh_from_db()
    assert task.status == "failed" and task.retry_count == 1  # max_retries=1: two attempts
    assert task.error_message.startswith(exception)
    assert ScheduledTask.objects.get(pk=after.pk).status == "completed"


@pytest.mark.once_per_database  # stops, kills and timeouts: once per database (tox.ini)
def test_a_stopping_worker_lets_async_jobs_in_flight_finish(workers):
    tasks = [async_record.enqueue(label=f"a{n}", pause=2.0) for n in range(5)]
    worker = workers.start("--no-cron")
    wait_for(lambda: ScheduledTask.objects.filter(status="running").count() == 5, worker, what="all five started")
    worker.send_signal(signal.SIGTERM)
    assert_exit(worker, timeout=60)
    assert set(ScheduledTask.objects.filter(pk__in=[t.pk for t in tasks]).values_list("status", flat=True)) == {"completed"}
    assert Execution.objects.count() == 5


@pytest.mark.once_per_database  # stops, kills and timeouts: once per database (tox.ini)
def test_an_async_job_of_a_killed_worker_is_recovered_and_runs_again(workers):
    task = async_record.enqueue(label="survivor", pause=30)
    doomed = workers.start("--no-cron")
    wait_for(lambda: ScheduledTask.objects.get(pk=task.pk).status == "running", doomed, what="the task started")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    ScheduledTask.objects.filter(pk=task.pk).update(kwargs={"label": "survivor", "pause": 0})
    rescuer = workers.start("--no-cron")
    wait_for(lambda: ScheduledTask.objects.get(pk=task.pk).status == "completed", rescuer, timeout=60,
             what="recovered (HEARTBEAT_TIMEOUT 5 s) and run again")
    rescuer.send_signal(signal.SIGTERM)
    assert_exit(rescuer)
    assert ScheduledTask.objects.get(pk=task.pk).retry_count == 1


@pytest.mark.once_per_database  # stops, kills and timeouts: once per database (tox.ini)
def test_tasks_waiting_behind_a_full_event_loop_of_slow_jobs_go_to_other_workers(workers):
    slow = async_record.enqueue(label="slow", pause=8.0)
    quick = [async_record.enqueue(label=f"q{n}") for n in range(4)]
    busy = workers.start("--no-cron", "--async-concurrency", "1", "--batch-size", "10", "--worker-id", "busy")
    wait_for(lambda: ScheduledTask.objects.get(pk=slow.pk).status == "running", busy, what="the slow job started")
    free = workers.start("--no-cron", "--worker-id", "free")
    wait_for(lambda: ScheduledTask.objects.filter(pk__in=[t.pk for t in quick], status="completed").count() == 4,
             busy, free, timeout=30, what="the waiting tasks given back and run by the other worker")
    assert ScheduledTask.objects.get(pk=slow.pk).status == "running"  # still on its 8 s
    assert set(ScheduledTask.objects.filter(pk__in=[t.pk for t in quick]).values_list("worker_id", flat=True)) == {"free"}
    for worker in (busy, free):
        worker.send_signal(signal.SIGTERM)
    for worker in (busy, free):
        assert_exit(worker, timeout=60)
