"""``run_jobworker`` as users run it: real processes on the real test database.

Each test starts worker processes with the ``workers`` fixture and judges them by
what they leave in the database: task rows, and the ``Execution`` rows the
``tests.record`` job writes on every call (pid, start and end time).
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from django_jobs.models import ScheduledTask, Worker
from tests.conftest import wait_until
from tests.processes import assert_exit, finish, statuses, table, wait_for
from tests.testapp import jobs
from tests.testapp.models import Execution

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # every test starts workers

PENDING = ScheduledTask.Status.PENDING
RUNNING = ScheduledTask.Status.RUNNING
COMPLETED = ScheduledTask.Status.COMPLETED


def executions_of(task: ScheduledTask) -> list[Execution]:
    return list(Execution.objects.filter(task_id=task.pk).order_by("started"))


def running_on(task: ScheduledTask):
    """The task's Execution row once its job has started (the job writes it first thing)."""
    return Execution.objects.filter(task_id=task.pk).first()


# -- exactly once under contention ------------------------------------------------------
TASK_COUNT = 2000


def test_three_burst_workers_run_every_task_exactly_once(workers):
    jobs.record.enqueue_many([((), {"label": str(number)}) for number in range(TASK_COUNT)])
    task_ids = set(ScheduledTask.objects.values_list("id", flat=True))
    assert len(task_ids) == TASK_COUNT

    processes = {
        "w1": workers.start("--burst", "--concurrency", "2", "--batch-size", "20", "--worker-id", "w1"),
        "w2": workers.start("--burst", "--concurrency", "2", "--batch-size", "10", "--worker-id", "w2"),
        "w3": workers.start("--burst", "--concurrency", "3", "--batch-size", "25", "--worker-id", "w3"),
    }
    for process in processes.values():
        assert_exit(process, 0, timeout=150)

    not_completed = ScheduledTask.objects.exclude(status=COMPLETED)
    assert not not_completed.exists(), (
        f"{not_completed.count()} not completed, e.g. {list(not_completed.values_list('id', 'status')[:10])}")
    assert not ScheduledTask.objects.exclude(retry_count=0).exists(), "a task failed an attempt"

    per_task = dict(Execution.objects.values("task_id").annotate(runs=Count("id")).values_list("task_id", "runs"))
    duplicated = {task_id: runs for task_id, runs in per_task.items() if runs != 1}
    assert not duplicated, f"tasks run more than once: {dict(list(duplicated.items())[:10])}"
    missing, unknown = sorted(task_ids - set(per_task)), sorted(set(per_task) - task_ids)
    assert not missing and not unknown, f"never ran: {missing[:10]} ({len(missing)}); not tasks: {unknown[:10]}"
    assert Execution.objects.count() == TASK_COUNT
    assert not Execution.objects.filter(ended__isnull=True).exists()

    execution_pids = set(Execution.objects.values_list("pid", flat=True).distinct())
    assert len(execution_pids) >= 2, f"only pids {execution_pids} ran tasks: no contention exercised"
    completed_by = set(ScheduledTask.objects.values_list("worker_id", flat=True).distinct())
    assert len(completed_by) >= 2, f"only workers {completed_by} completed tasks"
    # The worker recorded as completing each task is the process that ran it.
    pid_of = {worker_id: process.pid for worker_id, process in processes.items()}
    ran = set(Execution.objects.values_list("task_id", "pid"))
    recorded = {(task_id, pid_of.get(worker_id))
                for task_id, worker_id in ScheduledTask.objects.values_list("id", "worker_id")}
    assert ran == recorded


# -- what a worker claims -------------------------------------------------------------------
def test_a_worker_serves_only_its_queues(workers):
    in_a = [jobs.record.using(queue="a").enqueue(label=f"a{number}") for number in range(3)]
    in_b = [jobs.record.using(queue="b").enqueue(label=f"b{number}") for number in range(3)]

    assert_exit(workers.start("--queues", "a", "--burst"), 0)

    assert statuses(*in_a) == [COMPLETED] * 3
    assert statuses(*in_b) == [PENDING] * 3
    assert sorted(Execution.objects.values_list("label", flat=True)) == ["a0", "a1", "a2"]
    assert set(ScheduledTask.objects.filter(queue="b").values_list("worker_id", flat=True)) == {""}


def test_a_worker_runs_higher_priority_first(workers):
    # Enqueued worst first, so neither id nor scheduled_at order gives the expected one.
    for name in ("low", "normal", "high", "critical"):
        jobs.record.using(priority=name).enqueue(label=name)

    assert_exit(workers.start("--concurrency", "1", "--batch-size", "1", "--burst"), 0)

    run_order = list(Execution.objects.order_by("started").values_list("label", flat=True))
    assert run_order == ["critical", "high", "normal", "low"]
    assert set(ScheduledTask.objects.values_list("status", flat=True)) == {COMPLETED}


# -- delayed tasks ----------------------------------------------------------------------------
def test_delayed_tasks_do_not_run_before_their_time(workers):
    delay = timedelta(seconds=3)
    later = jobs.record.enqueue_in(delay, label="in")
    at = jobs.record.enqueue_at(timezone.now() + delay, label="at")
    now = jobs.record.enqueue(label="now")

    assert_exit(workers.start("--burst"), 0)
    exited = timezone.now()
    assert statuses(now, later, at) == [COMPLETED, PENDING, PENDING], (
        f"burst worker exited at {exited}, the delayed tasks were due at {later.scheduled_at}")
    assert list(Execution.objects.values_list("label", flat=True)) == ["now"]

    due = max(later.scheduled_at, at.scheduled_at)
    time.sleep(max(0.0, (due - timezone.now()).total_seconds()) + 0.2)
    assert_exit(workers.start("--burst"), 0)

    assert statuses(later, at) == [COMPLETED, COMPLETED]
    for task in (later, at):
        task.refresh_from_db()
        [execution] = executions_of(task)
        assert execution.started >= task.scheduled_at.timestamp(), f"{execution.label} ran before its time"


# -- stopping ----------------------------------------------------------------------------------
def test_sigterm_finishes_running_jobs_claims_nothing_and_exits_0(workers):
    worker_id = "graceful-stop"
    process = workers.start("--concurrency", "2", "--worker-id", worker_id)
    first, second = (jobs.record.enqueue(label=label, pause=3) for label in ("first", "second"))
    wait_for(lambda: Execution.objects.filter(task_id__in=[first.pk, second.pk]).count() == 2,
             process, what="both jobs running")

    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    after = jobs.record.enqueue(label="after")

    assert_exit(process, 0, timeout=settings.DJANGO_JOBS["SHUTDOWN_GRACE"] + 10)
    assert time.monotonic() - signalled < settings.DJANGO_JOBS["SHUTDOWN_GRACE"]
    assert statuses(first, second, after) == [COMPLETED, COMPLETED, PENDING]
    for task in (first, second):
        [execution] = executions_of(task)
        assert execution.ended is not None and execution.ended - execution.started >= 3, "job was cut short"
    after.refresh_from_db()
    assert after.worker_id == "" and not executions_of(after)
    assert not ScheduledTask.objects.filter(status=RUNNING).exists()
    assert not Worker.objects.filter(worker_id=worker_id).exists()


def test_a_second_signal_stops_at_once_and_returns_the_task(workers):
    process = workers.start("--concurrency", "1")
    task = jobs.record.enqueue(label="long", pause=30)
    wait_for(lambda: running_on(task), process, what="the job running")

    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)

    code, output = finish(process, timeout=20)
    assert code != 0, output
    assert time.monotonic() - signalled < 20, output
    task.refresh_from_db()
    assert task.status == PENDING, f"{task.status}; output:\n{output}"
    assert task.retry_count == 0
    assert task.scheduled_at <= timezone.now()
    [execution] = executions_of(task)
    assert execution.ended is None


# -- limits ----------------------------------------------------------------------------------------
def test_max_jobs_exits_after_that_many_tasks(workers):
    jobs.record.enqueue_many([((), {"label": str(number)}) for number in range(10)])
    first_five = list(ScheduledTask.objects.order_by("id").values_list("id", flat=True)[:5])

    assert_exit(workers.start("--max-jobs", "5", "--concurrency", "2"), 0)

    completed = set(ScheduledTask.objects.filter(status=COMPLETED).values_list("id", flat=True))
    assert completed == set(first_five), table()
    assert ScheduledTask.objects.filter(status=PENDING).count() == 5
    assert Execution.objects.count() == 5


def test_max_seconds_stops_an_idle_worker(workers):
    process = workers.start("--max-seconds", "1")
    assert_exit(process, 0, timeout=20)


# -- heartbeats -----------------------------------------------------------------------------------
def test_a_killed_workers_task_is_recovered_and_run_by_another(workers):
    worker_a = workers.start("--concurrency", "1", "--worker-id", "doomed")
    task = jobs.record.enqueue(label="recovered", pause=60)
    wait_for(lambda: running_on(task), worker_a, what="the job running on the first worker")

    worker_a.send_signal(signal.SIGKILL)
    worker_a.wait(timeout=10)
    killed = time.time()
    # The retry need not take a minute: shorten the pause it runs with. Long enough
    # still to see the recovered row (with its error) before it completes.
    ScheduledTask.objects.filter(pk=task.pk).update(kwargs={"label": "recovered", "pause": 3})

    worker_b = workers.start("--concurrency", "1", "--worker-id", "rescuer")
    recovered = wait_for(
        lambda: ScheduledTask.objects.filter(pk=task.pk, retry_count__gte=1).first(),
        worker_b, timeout=20, what="recovery of the killed worker's task")
    assert recovered.retry_count == 1
    assert recovered.status in (PENDING, RUNNING), f"{recovered.status}: error message not observable"
    assert "heartbeat" in recovered.error_message.lower(), recovered.error_message

    wait_for(lambda: statuses(task) == [COMPLETED], worker_b, timeout=30, what="completion by the second worker")
    task.refresh_from_db()
    assert (task.worker_id, task.retry_count) == ("rescuer", 1)
    killed_run, rerun = executions_of(task)
    assert (killed_run.pid, killed_run.ended) == (worker_a.pid, None)
    assert rerun.pid == worker_b.pid and rerun.ended is not None
    assert rerun.started >= killed
    assert not Worker.objects.filter(worker_id="doomed").exists()

    worker_b.send_signal(signal.SIGTERM)
    assert_exit(worker_b, 0, timeout=30)


# -- PostgreSQL: LISTEN/NOTIFY ------------------------------------------------------------------------
def test_notify_wakes_an_idle_postgresql_worker(workers):
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY exists on PostgreSQL only; other databases rely on polling")
    process = workers.start("--interval", "30", "--worker-id", "listener")
    wait_for(lambda: Worker.objects.filter(worker_id="listener").exists(), process, what="the worker registering")
    time.sleep(1.5)  # past its first (empty) claim, into the 30 s wait

    task = jobs.record.enqueue(label="wake up")
    wait_for(lambda: statuses(task) == [COMPLETED], process, timeout=5, what="the notified worker running the task")

    process.send_signal(signal.SIGTERM)
    assert_exit(process, 0, timeout=30)


def test_a_retried_task_wakes_an_idle_postgresql_worker(workers):
    # Issue 17: ScheduledTask.retry() sent no NOTIFY, so the task waited out the
    # worker's 30 s interval (an enqueue starts in milliseconds).
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY exists on PostgreSQL only; other databases rely on polling")
    task = ScheduledTask.objects.create(identifier=jobs.record.name, kwargs={"label": "retried"},
                                        status=ScheduledTask.Status.FAILED, error_message="boom")
    process = workers.start("--interval", "30", "--worker-id", "listener")
    wait_for(lambda: Worker.objects.filter(worker_id="listener").exists(), process, what="the worker registering")
    time.sleep(1.5)  # past its first (empty) claim, into the 30 s wait

    retried_at = time.monotonic()
    assert task.retry() is True
    wait_for(lambda: statuses(task) == [COMPLETED], process, timeout=3, what="the woken worker running the task")
    assert time.monotonic() - retried_at < 3

    process.send_signal(signal.SIGTERM)
    assert_exit(process, 0, timeout=30)


def test_tasks_waiting_behind_a_slow_job_are_given_to_another_worker(workers):
    """A worker prefetches a batch; when its only thread is stuck on a slow job, the
    waiting tasks go back to the queue and another worker runs them."""
    slow = jobs.record.using(priority="critical").enqueue(label="slow", pause=6)
    quick = jobs.record.enqueue_many([((), {"label": f"quick-{n}"}) for n in range(5)])
    first = workers.start("--concurrency", "1", "--batch-size", "10", "--worker-id", "first")
    wait_until(lambda: ScheduledTask.objects.filter(worker_id="first", status="running").count() == 6, timeout=30)
    workers.start("--concurrency", "2", "--worker-id", "second")
    wait_until(lambda: ScheduledTask.objects.filter(pk__in=[t.pk for t in quick], status="completed").count() == 5,
               timeout=30)
    assert set(ScheduledTask.objects.filter(pk__in=[t.pk for t in quick]).values_list("worker_id", flat=True)) == {"second"}
    assert ScheduledTask.objects.get(pk=slow.pk).status == "running"  # the slow job is still going
    assert all(t.retry_count == 0 for t in ScheduledTask.objects.filter(pk__in=[t.pk for t in quick]))
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert ScheduledTask.objects.get(pk=slow.pk).status == "completed"
