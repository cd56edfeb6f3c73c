"""No worker thread dies of a database error or of what a job raises; a worker whose thread
died anyway says so and exits non-zero.

- Jobs raising ``KeyboardInterrupt``, ``GeneratorExit``, ``SystemExit`` or a custom
  ``BaseException`` fail cleanly under a real worker process: recorded, retried per
  their options, and the worker goes on to the next task and exits when idle.
- A database error injected at each database call of a worker in turn (the claim, its
  commit, the start, the recording, the heartbeat, recovery ...): every task still
  completes and no thread dies.
- A thread killed on purpose (a ``BaseException`` planted in the worker by the test
  app, ``TESTAPP_KILL_THREAD``): the worker stops claiming, gives back every task it
  has not finished, logs the traceback, and exits with status 3.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import timedelta

import pytest
from django.db import InterfaceError, OperationalError, connections
from django.db.backends.signals import connection_created
from django.test import override_settings
from django.utils import timezone

from django_jobs import retention
from django_jobs.models import CronSchedule, ScheduledTask, Worker
from django_jobs.resilience import EXIT_THREAD_DIED
from django_jobs.signals import worker_error
from django_jobs.worker import JobWorker, WorkerOptions
from django_jobs.worker.cron_ticker import CronTicker
from django_jobs.worker.wakeup import Wakeup
from tests.conftest import wait_until
from tests.factories import ScheduledTaskFactory
from tests.helpers import capture_signal
from tests.processes import finish
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)

Status = ScheduledTask.Status


# -- jobs raising BaseException ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["KeyboardInterrupt", "GeneratorExit", "SystemExit", "CustomBaseException"])
def test_a_job_raising_a_base_exception_fails_cleanly_and_the_worker_carries_on(workers, kind):
    raising = jobs.raise_base.enqueue(kind)
    behind = [jobs.add.enqueue(number, 1) for number in range(3)]  # claimed in the same batch, behind it

    process = workers.start("--burst", "--concurrency", "1", "--batch-size", "10", "--no-cron")
    _, output = finish(process, timeout=60)  # fails the test if the --burst worker does not exit

    assert process.returncode == 0, output
    raising.refresh_from_db()
    assert raising.status == Status.FAILED, (raising.status, output)
    assert raising.retry_count == 1  # max_retries=1: retried once, then failed for good
    assert raising.error_message.startswith(f"{kind}: raised by the job"), raising.error_message
    assert [entry["error"].split(":")[0] for entry in raising.attempt_log] == [kind, kind]
    assert kind in raising.traceback
    for number, task in enumerate(behind):
        task.refresh_from_db()
        assert (task.status, task.result) == (Status.COMPLETED, number + 1), output
    assert "Exception in thread" not in output, output


# -- a database error at every call ---------------------------------------------------------------
class InjectedFaults:
    """Raises OperationalError at chosen database calls, counted across every thread.

    Installed as an execute wrapper on every connection that opens while it is active
    (the worker's threads open their own), so the error comes from where a real
    outage would surface it: the cursor's execute, inside whatever transaction is open.
    """

    def __init__(self, fail_at: set[int], error: type[Exception] = OperationalError,
                 fail_first: str | None = None) -> None:
        self.fail_at = fail_at
        # Also fail the first call whose SQL starts with this (a stage no call count reaches reliably).
        self.fail_first = fail_first
        self.error = error
        self.calls = 0
        self.raised: list[str] = []
        self.lock = threading.Lock()

    def __enter__(self) -> InjectedFaults:
        self.test_thread = threading.get_ident()  # the test's own queries are not the worker's
        connection_created.connect(self.install)
        return self

    def __exit__(self, *exc_info) -> None:
        connection_created.disconnect(self.install)

    def install(self, sender, connection, **kwargs) -> None:
        if threading.get_ident() != self.test_thread and self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)

    def __call__(self, execute, sql, params, many, context):
        with self.lock:
            self.calls += 1
            fail = self.calls in self.fail_at
            if self.fail_first is not None and " ".join(sql.split()).startswith(self.fail_first):
                fail, self.fail_first = True, None
        if fail:
            self.raised.append(sql.split()[0])
            raise self.error(f"injected fault at database call {self.calls}: server closed the connection")
        return execute(sql, params, many, context)


def run_worker_in_process(**options) -> tuple[JobWorker, int]:
    worker = JobWorker(WorkerOptions(burst=True, cron=False, concurrency=2, batch_size=3, interval=0.1, **options))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(worker.run()), daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        worker.request_stop()
        thread.join(30)
        pytest.fail(f"the worker did not finish: {statuses()}")
    connections.close_all()  # this thread's connections opened under the injector
    return worker, result[0]


def statuses() -> list[tuple[int, str, object]]:
    return list(ScheduledTask.objects.order_by("pk").values_list("pk", "status", "result"))


def reported_error(stage, error, transient, **kwargs) -> tuple[str, str, bool]:
    """What a ``worker_error`` receiver is told: where, the error, whether it is transient."""
    return stage, str(error), transient


def enqueue_sums() -> list[ScheduledTask]:
    return [jobs.add.enqueue(number, 10) for number in range(5)]


@pytest.mark.slow
@pytest.mark.once_per_database
@override_settings(DJANGO_JOBS={"HEARTBEAT_INTERVAL": 0.2, "HEARTBEAT_TIMEOUT": 30})
def test_a_database_error_at_any_call_kills_no_thread_and_loses_no_task():
    # A clean run first, to learn how many database calls a worker makes for these tasks.
    enqueue_sums()
    connections.close_all()
    with InjectedFaults(set()) as clean:
        worker, code = run_worker_in_process()
    assert code == 0 and worker.threads.healthy
    assert {status for _, status, _ in statuses()} == {Status.COMPLETED}
    calls = clean.calls
    assert calls >= 10, calls  # register, claims, completions, heartbeat, release, unregister

    failures, stages = {}, set()
    for call in range(1, calls + 1):
        ScheduledTask.objects.all().delete()
        Worker.objects.all().delete()
        tasks = enqueue_sums()
        connections.close_all()
        # Both errors an outage raises: OperationalError (server gone) and InterfaceError (connection closed).
        with capture_signal(worker_error, pick=reported_error) as reported:
            with InjectedFaults({call}, OperationalError if call % 2 else InterfaceError) as faults:
                worker, code = run_worker_in_process()
        rows = {pk: (status, result) for pk, status, result in statuses()}
        expected = {task.pk: (Status.COMPLETED, task.args[0] + 10) for task in tasks}
        # Each injected error was reported once, as a transient worker error, with where it happened.
        # (A run may make fewer calls than the clean one: then nothing was injected.)
        injected = [(stage, transient) for stage, message, transient in reported if "injected fault" in message]
        wrong_reports = len(injected) != len(faults.raised) or not all(transient for _, transient in injected)
        if code != 0 or not worker.threads.healthy or rows != expected or wrong_reports:
            failures[call] = (faults.raised, code, worker.threads.died, rows, reported)
        stages.update(stage for stage, _ in injected)
    assert not failures, failures
    # A heartbeat's and the unregistering's ("stop") calls come at counts that vary with
    # the heartbeats a run happens to make: hit each by its SQL as well.
    quote = connections["default"].ops.quote_name
    table = quote(Worker._meta.db_table)
    targets = {"heartbeat": f"UPDATE {table} SET {quote('last_heartbeat')}",
               "stop": f"DELETE FROM {table} WHERE {table}.{quote('worker_id')}"}  # not forget_dead's
    for stage, sql in targets.items():
        ScheduledTask.objects.all().delete()
        Worker.objects.all().delete()
        tasks = [*enqueue_sums(), jobs.sleep.enqueue(0.5)]  # runs past a heartbeat interval
        connections.close_all()
        with capture_signal(worker_error, pick=reported_error) as seen:
            with InjectedFaults(set(), InterfaceError, fail_first=sql) as faults:
                worker, code = run_worker_in_process()
        assert len(faults.raised) == 1 and code == 0 and worker.threads.healthy, (stage, faults.raised, code)
        assert {status for _, status, _ in statuses()} == {Status.COMPLETED}, stage
        assert [(where, transient) for where, message, transient in seen if "injected fault" in message] == \
            [(stage, True)], seen
        stages.add(stage)
    assert {"start-up", "claim", "record", "heartbeat", "stop"} <= stages, stages
    print(f"\ninjected a database error at each of {calls} calls in turn: every task completed, no thread died; "
          f"worker_error stages: {sorted(stages)}")


# -- the watchdog ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("thread", ["job", "recorder"])
def test_a_worker_whose_thread_died_gives_back_its_tasks_and_exits_3(workers, thread):
    tasks = [jobs.add.enqueue(number, 1) for number in range(6)]
    ScheduledTask.objects.update(retry_delay=timedelta(0))
    process = workers.start("--concurrency", "1", "--batch-size", "6", "--no-cron", "--interval", "0.2",
                            env={"TESTAPP_KILL_THREAD": thread})
    _, output = finish(process, timeout=60)  # fails the test if the worker goes on without its thread

    assert process.returncode == EXIT_THREAD_DIED, output
    assert f"Worker thread django-jobs-{thread}" in output and "died" in output, output
    assert "ThreadKilledByTest" in output, output  # the traceback is in the log
    rows = ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks])
    assert not rows.filter(status=Status.RUNNING).exists(), list(rows.values_list("pk", "status", "worker_id"))
    assert not Worker.objects.exists()  # unregistered: nobody mistakes it for alive

    # Everything it gave back runs on a healthy worker.
    healthy = workers.start("--burst", "--no-cron")
    assert healthy.wait(60) == 0
    assert set(rows.values_list("status", flat=True)) == {Status.COMPLETED}


# -- progress in the heartbeat ------------------------------------------------------------------------
@pytest.mark.slow
def test_the_heartbeat_says_what_the_worker_holds_and_since_when_nothing_finished(workers):
    sleeping = jobs.sleep.enqueue(4)
    process = workers.start("--concurrency", "1", "--no-cron", "--worker-id", "sleepy")
    wait_until(lambda: Worker.objects.filter(worker_id="sleepy", holding=1).exists(), timeout=30)
    row = Worker.objects.get(worker_id="sleepy")
    # Progress is the last outcome written (or holding nothing): frozen while the job sleeps.
    first = row.progressed_at
    time.sleep(2.5)  # two heartbeats (HEARTBEAT_INTERVAL is 1 s in tests.settings)
    row.refresh_from_db()
    assert row.holding == 1 and row.progressed_at == pytest.approx(first, abs=timedelta(milliseconds=50))
    assert row.last_heartbeat > first + timedelta(seconds=1)
    wait_until(lambda: ScheduledTask.objects.filter(pk=sleeping.pk, status=Status.COMPLETED).exists(), timeout=30)
    wait_until(lambda: Worker.objects.filter(worker_id="sleepy", holding=0, progressed_at__gt=first).exists(),
               timeout=10)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


# -- cron and retention threads through failing calls ---------------------------------------------------
def run_thread_through_faults(body, until, fail_at: set[int], error: type[Exception]) -> InjectedFaults:
    """Run a worker thread's body with its first database calls failing; it must live and get there."""
    with InjectedFaults(fail_at, error) as faults:
        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        try:
            wait_until(until, timeout=30, interval=0.1)
            assert thread.is_alive()
        finally:
            stop.set()
            thread.join(10)
    assert len(faults.raised) == len(fail_at)
    return faults


stop = threading.Event()


@pytest.mark.slow
@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_the_cron_thread_survives_failing_calls_and_fires(error):
    stop.clear()
    schedule = CronSchedule.objects.create(name="every-minute", job_name="tests.noop", expression="* * * * *")
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() - timedelta(seconds=1))
    cron = CronTicker("cron-faults", Wakeup(), stopping=threading.Event(), finished=stop)
    connections.close_all()
    run_thread_through_faults(cron.run, lambda: ScheduledTask.objects.filter(cron_schedule=schedule).exists(),
                              {1, 2, 3}, error)
    schedule.refresh_from_db()
    assert schedule.enabled


@pytest.mark.slow
@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_the_retention_thread_survives_failing_calls_and_prunes(error):
    stop.clear()
    old = ScheduledTaskFactory(status=Status.COMPLETED, executed_at=timezone.now() - timedelta(days=30))
    connections.close_all()
    with override_settings(DJANGO_JOBS={"RETENTION": {"completed": "7d"}, "RETENTION_INTERVAL": 0.2}):
        run_thread_through_faults(lambda: retention.run_periodically(stop, threading.Event()),
                                  lambda: not ScheduledTask.objects.filter(pk=old.pk).exists(), {1, 2}, error)
