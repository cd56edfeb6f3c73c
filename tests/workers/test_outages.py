"""A database outage under draining workers costs time, not tasks (README, "Database outages").

Two real ``run_jobworker`` processes drain a few hundred short ``tests.record`` jobs (each
writes an ``Execution`` row with its pid, start and end) on a throwaway server of the
database under test (tests/outage_servers.py), while the test:

- restarts the server twice mid-drain: ``immediate`` (a crash: PostgreSQL's
  ``pg_ctl restart -m immediate``, MariaDB's SIGKILL) and then ``fast`` (a clean
  shutdown); on SQLite another process holds the write lock for 5 s, twice;
- cuts every worker connection five times in a row (``pg_terminate_backend``,
  ``KILL CONNECTION``; SQLite has no connections to cut);
- stops the server for 20 s, longer than ``HEARTBEAT_TIMEOUT`` (5 s in tests.settings);
  on SQLite the lock is held for 20 s.

Then every task must complete, none be lost or left running, no two runs of one task
overlap, both workers must still be working (each completes tasks after the outage),
and both must exit 0 on SIGTERM. Runs of a job repeated by at-least-once delivery (a
job whose own database writes failed in the outage is retried) are counted and printed
with the time the queue took to drain after the server came back: run with ``-s``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime, timezone

import pytest
from django.conf import settings

from tests.conftest import REPO, wait_until
from tests.outage_servers import LockedSQLite, Server, ThrowawayMariaDB, ThrowawayPostgres, free_port

pytestmark = [pytest.mark.once_per_database, pytest.mark.slow]

JOBS = 300
PAUSE = 0.1  # seconds each job sleeps between writing its start and its end
WORKER_ARGS = ("--concurrency", "2", "--no-cron", "--interval", "0.5")


@pytest.fixture
def server():
    engine = settings.ENGINE
    made: Server = {"postgres": ThrowawayPostgres, "mariadb": ThrowawayMariaDB, "sqlite": LockedSQLite}[engine]()
    try:
        made.migrate()
        yield made
    finally:
        made.close()


# -- the faults ---------------------------------------------------------------------------------------
def restart_twice(server: Server, drain: Drain) -> None:
    drain.wait_for_fraction(0.25)
    outage(server, "immediate")
    drain.wait_for_fraction(0.6)
    outage(server, "fast")


def outage(server: Server, mode: str, seconds: float = 5.0) -> None:
    if isinstance(server, LockedSQLite):
        server.hold_lock(seconds).join()
    else:
        server.restart(mode)


def cut_connections_five_times(server: Server, drain: Drain) -> None:
    drain.wait_for_fraction(0.2)
    cut = [server.cut_connections() for _ in range(5) if time.sleep(1.0) is None]
    assert sum(cut) >= 5, f"expected worker connections to cut, cut {cut}"


def stop_for_twenty_seconds(server: Server, drain: Drain) -> None:
    drain.wait_for_fraction(0.25)
    if isinstance(server, LockedSQLite):
        server.hold_lock(20.0).join()
    else:
        server.stop("fast")
        time.sleep(20.0)
        server.start()


SCENARIOS = {"restarted twice": restart_twice, "connections cut 5 times": cut_connections_five_times,
             "down for 20 s": stop_for_twenty_seconds}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_an_outage_under_draining_workers_costs_time_not_tasks(server, workers, scenario):
    if scenario == "connections cut 5 times" and isinstance(server, LockedSQLite):
        pytest.skip("SQLite has no server, so no connections to cut (its lock is the outage of the other scenarios)")
    enqueue(server, JOBS, PAUSE)
    started = time.monotonic()
    ports = [free_port() for _ in range(2)]
    drain = Drain(server, [workers.start("--worker-id", f"outage-{n}", *WORKER_ARGS, "--metrics-port", str(port),
                                         "--metrics-address", "127.0.0.1", env=server.worker_env())
                           for n, port in enumerate(ports)])
    SCENARIOS[scenario](server, drain)
    back = time.time()
    drain.wait_until_finished(timeout=180)
    drained_after = time.time() - back

    report = drain.report(back)
    print(f"\n{server.engine:8} {scenario:24} completed {report['completed']}/{JOBS}  lost {report['lost']}  "
          f"stuck {report['stuck']}  repeats {report['repeats']}  overlaps {len(report['overlaps'])}  "
          f"drained {drained_after:.1f} s after the server was back  ({time.monotonic() - started:.0f} s in all)")
    assert report["completed"] == JOBS, (report, drain.output())
    assert report["stuck"] == 0 and report["lost"] == 0, report
    assert not report["overlaps"], report["overlaps"]
    assert all(report["worked_after"].values()), (report["worked_after"], drain.output())
    # The workers' Prometheus counters neither lose nor double-count across the outage.
    counted = scrape_counters(ports)
    retries = server.query("SELECT COALESCE(SUM(retry_count), 0) FROM django_jobs_scheduledtask")[0][0]
    assert counted == {"completed": JOBS, "retried": retries, "started": JOBS + retries}, (counted, retries)
    drain.stop_all()


def scrape_counters(ports: list[int]) -> dict[str, float]:
    """The sum over both workers of each outcome counter, read from their /metrics."""
    totals = {"completed": 0.0, "retried": 0.0, "started": 0.0}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            for name in totals:
                if line.startswith(f"django_jobs_{name}_total{{"):
                    totals[name] += float(line.rsplit(" ", 1)[1])
    return {name: int(value) for name, value in totals.items()}


# -- driving and judging the drain ----------------------------------------------------------------------
def enqueue(server: Server, count: int, pause: float) -> None:
    """``enqueue_many`` in a process set up for the throwaway server, as an application would."""
    # Every other job has a timeout, so it runs in a child process with a connection of its own.
    code = ("from tests.testapp import jobs; "
            "job = jobs.record.using(max_retries=50, retry_delay=0.2, backoff='fixed'); "
            f"job.enqueue_many([((), {{'label': f't{{n}}', 'pause': {pause}}}) for n in range(0, {count}, 2)]); "
            f"job.using(timeout=30).enqueue_many([((), {{'label': f't{{n}}', 'pause': {pause}}}) "
            f"for n in range(1, {count}, 2)])")
    env = {**os.environ, **server.worker_env(), "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "django", "shell", "-c", code], cwd=REPO, env=env, check=True)


class Drain:
    def __init__(self, server: Server, processes: list[subprocess.Popen]) -> None:
        self.server, self.processes = server, processes
        self.lines: dict[int, list[str]] = defaultdict(list)
        for process in processes:
            threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.lines[process.pid].append(line)

    def output(self, last: int = 30) -> str:
        return "\n".join(f"--- pid {process.pid} exit {process.poll()} ---\n" + "".join(self.lines[process.pid][-last:])
                         for process in self.processes)

    def status_counts(self) -> Counter:
        return Counter(dict(self.server.query("SELECT status, COUNT(*) FROM django_jobs_scheduledtask GROUP BY status")))

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.05) -> None:
        """``wait_until`` that fails at once if a worker exited, and shows the counts and output on timeout."""
        wait_until(predicate, timeout=timeout, interval=interval, check=self.check_alive,
                   explain=lambda: f"{what} within {timeout}s: {self.status_counts()}\n{self.output()}")

    def wait_for_fraction(self, fraction: float, timeout: float = 120) -> None:
        self.wait_for(lambda: self.status_counts()["completed"] >= fraction * JOBS, timeout,
                      f"{fraction:.0%} not completed")

    def wait_for_running(self, timeout: float = 30) -> None:
        self.wait_for(lambda: self.status_counts()["running"], timeout, "nothing running")

    def wait_until_finished(self, timeout: float) -> None:
        """Until every task completed, or nothing has changed for 30 s (stuck), or ``timeout``."""
        deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                counts = self.status_counts()
            except Exception:  # noqa: BLE001 - the server may still be recovering
                time.sleep(0.5)
                continue
            if counts["completed"] == JOBS:
                return
            if counts != last:
                last, since = counts, time.monotonic()
            elif time.monotonic() - since > 30:
                return  # judged by report(): stuck or lost
            time.sleep(0.1)

    def check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                pytest.fail(f"worker {process.pid} exited with {process.returncode} during the outage\n{self.output()}")

    def report(self, back: float) -> dict:
        counts = self.status_counts()
        runs = defaultdict(list)
        for task_id, pid, started, ended in self.server.query(
                "SELECT task_id, pid, started, ended FROM testapp_execution ORDER BY started"):
            runs[task_id].append((started, ended if ended is not None else started + PAUSE, pid))
        overlaps = [(task_id, first, second) for task_id, task_runs in runs.items()
                    for first, second in zip(task_runs, task_runs[1:]) if second[0] < first[1]]
        return {
            "completed": counts["completed"], "stuck": counts["running"],
            "lost": JOBS - counts["completed"] - counts["running"],
            "repeats": sum(len(task_runs) - 1 for task_runs in runs.values()),
            "overlaps": overlaps,
            "worked_after": self.completed_after(back),
        }

    def completed_after(self, back: float) -> dict[str, bool]:
        """Per worker id: whether it completed a task after ``back`` (jobs with a timeout run
        in a child process, so the task rows tell, not the Execution rows' pids)."""
        rows = self.server.query("SELECT worker_id, executed_at FROM django_jobs_scheduledtask WHERE status = 'completed'")
        workers = {f"outage-{number}": False for number in range(len(self.processes))}
        for worker_id, executed_at in rows:
            if worker_id in workers and epoch(executed_at) > back:
                workers[worker_id] = True
        return workers

    def stop_all(self) -> None:
        """SIGTERM: each worker finishes what it runs and exits 0."""
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                code = process.wait(60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {process.pid} still running 60 s after SIGTERM\n{self.output()}")
            assert code == 0, f"worker {process.pid} exited {code} after SIGTERM\n{self.output()}"


ENQUEUE_EVERY_WAY = """
import json
from django.db import transaction
from tests.testapp import jobs

def single():
    jobs.add.enqueue(1, 2)

def in_a_transaction():
    with transaction.atomic():
        jobs.add.enqueue(1, 2)

def many():
    jobs.add.enqueue_many([((n, 1), {}) for n in range(100)])

raised = {}
for way in (single, in_a_transaction, many):
    try:
        way()
        raised[way.__name__] = None
    except BaseException as error:
        raised[way.__name__] = f"{type(error).__module__}.{type(error).__qualname__}"
print("RAISED " + json.dumps(raised))
"""


def test_enqueue_during_an_outage_raises_to_the_caller_and_writes_nothing(server):
    env = {**os.environ, **server.worker_env(), "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "django", "shell", "-c", ENQUEUE_EVERY_WAY]
    if isinstance(server, LockedSQLite):
        holder = server.hold_lock(10.0)
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        holder.join()
    else:
        server.stop("fast")
        try:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        finally:
            server.start()
    line = next((line for line in done.stdout.splitlines() if line.startswith("RAISED ")), None)
    assert line, done.stdout + done.stderr
    import json

    raised = json.loads(line.removeprefix("RAISED "))
    # Django's own error, the one every other query raises in an outage: never a driver's, never silence.
    assert raised == dict.fromkeys(["single", "in_a_transaction", "many"], "django.db.utils.OperationalError"), raised
    assert server.query("SELECT COUNT(*) FROM django_jobs_scheduledtask")[0][0] == 0


def test_a_worker_started_during_an_outage_waits_works_once_it_is_back_and_stops_on_sigterm_in_the_next(
        server, workers):
    enqueue(server, 20, 0.0)

    def outage_begins() -> threading.Thread | None:
        if isinstance(server, LockedSQLite):
            return server.hold_lock(6.0)
        server.stop("fast")
        return None

    holder = outage_begins()
    drain = Drain(server, [workers.start("--worker-id", "early", *WORKER_ARGS, env=server.worker_env())])
    time.sleep(5.0)
    drain.check_alive()
    waiting = [line for line in drain.lines[drain.processes[0].pid] if "start-up failed" in line]
    assert waiting, drain.output()
    assert "Traceback" not in "".join(drain.lines[drain.processes[0].pid]), drain.output()  # one line a try
    if holder is None:
        server.start()
    else:
        holder.join()
    wait_until_all_completed(drain, 20)

    # The next outage, and SIGTERM in the middle of it: the worker still stops, with status 0.
    enqueue(server, 5, 3.0)  # jobs that are running when the server goes away
    drain.wait_for_running()
    holder = outage_begins() if not isinstance(server, LockedSQLite) else server.hold_lock(30.0)
    began = time.monotonic()
    process = drain.processes[0]
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(settings.DJANGO_JOBS["SHUTDOWN_GRACE"] + 15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running {time.monotonic() - began:.0f} s after SIGTERM in an outage\n{drain.output()}")
    assert code == 0, drain.output()
    print(f"\n{server.engine}: stopped {time.monotonic() - began:.1f} s after SIGTERM during an outage "
          f"(SHUTDOWN_GRACE {settings.DJANGO_JOBS['SHUTDOWN_GRACE']} s)")
    if holder is None:
        server.start()
    else:
        holder.join()


def wait_until_all_completed(drain: Drain, count: int, timeout: float = 60) -> None:
    drain.wait_for(lambda: drain.status_counts()["completed"] >= count, timeout, f"{count} not completed", interval=0.1)


def epoch(value) -> float:
    """A timestamp as PostgreSQL (aware), MariaDB (naive UTC) or SQLite (UTC text) returns it."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()
