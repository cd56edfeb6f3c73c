"""``run_jobworker --processes N``: a supervisor and its worker processes, all real.

The supervisor's children are found the way an operator would: processes whose parent
is the supervisor (``/proc``), ``Worker`` rows, the pids the ``tests.record`` job
writes, and the supervisor's log. Every test stops what it started; children still
alive at the end are killed, so that a broken supervisor fails the test and no more.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from django_jobs.management.commands.run_jobworker import Command, process_count
from django_jobs.models import ScheduledTask, Worker
from django_jobs.resilience import EXIT_THREAD_DIED
from django_jobs.worker.supervisor import MAX_DELAY, STABLE_AFTER, RestartBackoff, WorkerCommand, command_line
from tests.conftest import REPO, queue_database_name, wait_until
from tests.processes import Watched, table
from tests.testapp import jobs
from tests.testapp.models import Execution

COMPLETED = ScheduledTask.Status.COMPLETED
PENDING = ScheduledTask.Status.PENDING
GRACE = settings.DJANGO_JOBS["SHUTDOWN_GRACE"]
STARTED = re.compile(r"worker process \d+ started, pid=(\d+)")


def starts_processes(test):
    """A test that starts real processes on the real (committed) test database."""
    return pytest.mark.slow(pytest.mark.django_db(transaction=True)(test))


# -- processes as the operating system sees them ---------------------------------------------
def stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, parent = text.rpartition(")")[2].split()[:2]
    return state, int(parent)


def alive(pid: int) -> bool:
    found = stat(pid)
    return found is not None and found[0] != "Z"   # a zombie has exited, its parent not reaped it yet


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := stat(int(entry))) and info[1] == pid and info[0] != "Z":
            found.add(int(entry))
    return found


class Supervised:
    """A running ``run_jobworker --processes``: its output read as it comes, its children tracked."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.watched = Watched(process, "supervisor")
        self.process = process
        self.seen: set[int] = set()

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> set[int]:
        found = children_of(self.pid)
        self.seen |= found
        return found

    def log(self) -> str:
        return "".join(self.watched.lines)

    def started(self) -> list[int]:
        """Pids of the children the supervisor says it started, in order."""
        return [int(pid) for pid in STARTED.findall(self.log())]

    def explain(self, what: str) -> str:
        return f"{what}\n{table()}\nworkers: {list(Worker.objects.values_list('worker_id', 'pid'))}\n" \
               f"{self.watched.output(last=80)}"

    def wait_registered(self, count: int, timeout: float = 90) -> set[int]:
        """Wait for ``count`` children with a Worker row each (past start-up); return their pids."""
        def registered():
            pids = self.children()
            rows = set(Worker.objects.filter(pid__in=pids).values_list("pid", flat=True))
            return rows if len(pids) == count and rows == pids else None
        return wait_until(registered, timeout=timeout, interval=0.1, check=self.still_running,
                          explain=lambda: self.explain(f"{count} registered children not seen in {timeout}s"))

    def still_running(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(self.explain("the supervisor exited early"))

    def exit_code(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(self.explain(f"supervisor still running after {timeout}s"))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for the supervisor and any child of it still alive."""
        if self.process.poll() is None:
            self.children()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(GRACE + 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for pid in self.seen:
            if alive(pid) and b"run_jobworker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(pid) for pid in self.seen), timeout=30)


def environment(**extra: str) -> dict[str, str]:
    """What ``WorkerProcesses.start`` gives a worker, and the supervisor's INFO lines."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        "DJANGO_JOBS_TEST_DB_NAME": connection.settings_dict["NAME"],
        **queue_database_name(),
        "PYTHONPATH": str(REPO),
        "DJANGO_JOBS_LOG_LEVEL": "INFO",
        **extra,
    }


@pytest.fixture
def supervisor(workers):
    """Starts ``run_jobworker --processes ...`` (``python -m django`` by default) and stops it at the end."""
    started: list[Supervised] = []

    def start(*arguments: str, env: dict[str, str] | None = None, launcher: str = "python -m django",
              cwd: Path = REPO) -> Supervised:
        environment_ = environment(**(env or {}))
        if launcher == "python -m django":
            command = [sys.executable, "-m", "django"]
        elif launcher == "manage.py":
            command = [sys.executable, str(REPO / "manage.py")]
            del environment_["PYTHONPATH"]   # the project is found beside manage.py, as in a project
        else:
            command = [str(Path(sys.executable).parent / "django-admin")]
        process = subprocess.Popen([*command, "run_jobworker", *arguments], cwd=cwd, env=environment_,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        workers.processes.append(process)
        started.append(Supervised(process))
        return started[-1]

    yield start
    for supervised in started:
        supervised.stop()


# -- draining ---------------------------------------------------------------------------------
@starts_processes
@pytest.mark.parametrize("launcher", ["python -m django", "manage.py", "django-admin"])
def test_two_burst_children_drain_the_queue_and_the_supervisor_exits_0(supervisor, launcher, tmp_path):
    # Long enough that the second child starts before the first has drained them all.
    tasks = [jobs.record.enqueue(label=str(number), pause=0.5) for number in range(16)]

    # Started from another directory: the children find the project as the supervisor did.
    running = supervisor("--processes", "2", "--burst", "--concurrency", "1", "--batch-size", "1", "--no-cron",
                         launcher=launcher, cwd=tmp_path)

    assert running.exit_code() == 0, running.explain("exit status")
    assert set(ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks]).values_list("status", flat=True)) \
        == {COMPLETED}, running.explain("not every task completed")
    children = running.started()
    assert len(children) == 2, running.explain("a burst child was restarted, or one never started")
    assert set(Execution.objects.values_list("pid", flat=True)) == set(children), running.explain("who ran what")
    assert running.log().count("drained the queues and exited") == 2


@starts_processes
@pytest.mark.once_per_database  # signals, kills and restarts: the processes' work, not Django's
def test_a_child_killed_with_sigkill_is_replaced_and_every_task_completes(supervisor):
    running = supervisor("--processes", "2", "--concurrency", "1", "--batch-size", "1", "--no-cron",
                         "--worker-id", "sup")
    first = running.wait_registered(2)
    assert set(Worker.objects.values_list("worker_id", flat=True)) == {"sup-1", "sup-2"}  # one row each
    tasks = [jobs.record.enqueue(label=str(number), pause=2) for number in range(8)]
    busy = wait_until(lambda: Execution.objects.filter(ended__isnull=True, pid__in=first).first(), timeout=60)

    os.kill(busy.pid, signal.SIGKILL)

    def replaced():
        pids = running.children()
        return pids if len(pids) == 2 and pids != first else None

    second = wait_until(replaced, timeout=60, check=running.still_running,
                        explain=lambda: running.explain("no child replaced the killed one"))
    [replacement] = second - first
    assert busy.pid not in second
    assert f"pid={busy.pid} exited with signal SIGKILL" in running.log()
    # The killed child's task is recovered once its heartbeat is old, and runs again.
    done = ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks], status=COMPLETED)
    wait_until(lambda: done.count() == len(tasks), timeout=120, check=running.still_running,
               explain=lambda: running.explain("tasks did not all complete"))
    assert Execution.objects.filter(task_id=busy.task_id).count() == 2
    running.wait_registered(2)
    assert Worker.objects.get(pid=replacement).worker_id == "sup-3"   # never the dead child's name

    running.process.send_signal(signal.SIGTERM)
    assert running.exit_code(GRACE + 30) == 0, running.explain("exit status after SIGTERM")


# -- stopping -----------------------------------------------------------------------------------
@starts_processes
@pytest.mark.once_per_database  # signals, kills and restarts: the processes' work, not Django's
def test_sigterm_lets_running_jobs_finish_stops_every_child_and_exits_0(supervisor):
    running = supervisor("--processes", "2", "--concurrency", "1", "--no-cron")
    children = running.wait_registered(2)
    long = jobs.record.enqueue(label="long", pause=3)
    wait_until(lambda: Execution.objects.filter(task_id=long.pk).exists(), timeout=60, check=running.still_running)

    running.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM (first) forwarded" in running.log(), timeout=30)
    after = jobs.record.enqueue(label="after")

    assert running.exit_code(GRACE + 30) == 0, running.explain("exit status after SIGTERM")
    long.refresh_from_db()
    after.refresh_from_db()
    assert (long.status, after.status) == (COMPLETED, PENDING), running.explain("statuses")
    [execution] = Execution.objects.filter(task_id=long.pk)
    assert execution.ended is not None and execution.ended - execution.started >= 3, "the job was cut short"
    assert not any(alive(pid) for pid in children)
    assert len(running.started()) == 2 and set(running.started()) == children   # nothing restarted
    assert not Worker.objects.exists()


@starts_processes
@pytest.mark.once_per_database  # signals, kills and restarts: the processes' work, not Django's
def test_a_second_signal_is_forwarded_and_the_children_stop_at_once(supervisor):
    running = supervisor("--processes", "2", "--concurrency", "1", "--no-cron")
    running.wait_registered(2)
    long = jobs.record.enqueue(label="long", pause=60)
    wait_until(lambda: Execution.objects.filter(task_id=long.pk).exists(), timeout=60, check=running.still_running)

    running.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM (first) forwarded" in running.log(), timeout=30)
    running.process.send_signal(signal.SIGINT)

    # The busy child stopped at once (exit 1): the supervisor says so with a non-zero status.
    assert running.exit_code(60) == 1, running.explain("exit status after two signals")
    assert "SIGINT (again) forwarded" in running.log()
    long.refresh_from_db()
    assert (long.status, long.retry_count) == (PENDING, 0), running.explain("the task was not given back")
    assert Execution.objects.get(task_id=long.pk).ended is None   # interrupted, not finished


@starts_processes
@pytest.mark.once_per_database  # signals, kills and restarts: the processes' work, not Django's
def test_children_outlive_no_supervisor_killed_with_sigkill(supervisor):
    running = supervisor("--processes", "2", "--concurrency", "1", "--no-cron")
    children = running.wait_registered(2)
    task = jobs.record.enqueue(label="running when the supervisor dies", pause=2)
    wait_until(lambda: Execution.objects.filter(task_id=task.pk).exists(), timeout=60, check=running.still_running)

    running.process.kill()

    wait_until(lambda: not any(alive(pid) for pid in children), timeout=GRACE + 30,
               explain=lambda: running.explain(f"children {children} still running without their supervisor"))
    # They stopped as if asked (SIGTERM): the running job finished, the rows are gone.
    task.refresh_from_db()
    assert task.status == COMPLETED
    assert not Worker.objects.exists()


# -- restarting with backoff ---------------------------------------------------------------------
@starts_processes
@pytest.mark.once_per_database  # signals, kills and restarts: the processes' work, not Django's
def test_children_that_keep_dying_are_restarted_after_growing_delays(supervisor):
    # Every child claims this task, its job thread dies (planted by the test app) and it
    # exits with status 3: what a broken deploy looks like to the supervisor.
    jobs.add.enqueue(1, 1)
    running = supervisor("--processes", "1", "--concurrency", "1", "--no-cron", "--interval", "0.2",
                         env={"TESTAPP_KILL_THREAD": "job"})

    lives: dict[int, list[float]] = {}          # pid -> [first seen, seen gone] (monotonic, from here)
    deadline = time.monotonic() + 120
    while len(lives) < 4 and time.monotonic() < deadline:
        running.still_running()
        now, current = time.monotonic(), running.children()
        for pid in current:
            lives.setdefault(pid, [now])
        for pid, times in lives.items():
            if len(times) == 1 and pid not in current:
                times.append(now)
        time.sleep(0.05)

    assert len(lives) == 4, running.explain(f"children seen: {lives}")
    log = running.log()
    assert f"exited with status {EXIT_THREAD_DIED}" in log, running.explain("no exit status 3 logged")
    delays = [float(delay) for delay in re.findall(r"restarting in ([\d.]+) s", log)][:3]
    assert delays == [1.0, 2.0, 4.0], running.explain("delays")
    ordered = sorted(lives.values())
    gaps = [later[0] - earlier[1] for earlier, later in zip(ordered, ordered[1:], strict=False)]
    # Seen from here the gap can only look longer, or shorter by one look (50 ms).
    assert all(gap >= delay - 0.1 for gap, delay in zip(gaps, delays, strict=True)), (gaps, delays)


def test_the_backoff_doubles_for_children_dying_young_and_resets_after_a_long_life():
    backoff = RestartBackoff()
    assert [backoff.delay(lived=0.5) for _ in range(7)] == [1, 2, 4, 8, 16, MAX_DELAY, MAX_DELAY]
    assert backoff.delay(lived=STABLE_AFTER) == 0
    assert backoff.delay(lived=0.5) == 1


# -- the children's command line -------------------------------------------------------------------
def test_each_child_gets_the_supervisors_options_without_processes():
    parser = Command().create_parser("django-admin", "run_jobworker")
    given = ["--queues", "a,b", "--concurrency", "3", "--async-concurrency", "0", "--interval", "0.5", "--burst", "--no-cron",
             "--worker-id", "w", "--metrics-port", "9100", "--processes", "2", "-v", "2"]
    options = vars(parser.parse_args(given))

    child = WorkerCommand(parser, options)(1, 5)

    assert child[:4] == [sys.executable, "-m", "django", "run_jobworker"]
    assert "--processes" not in child
    parsed = vars(parser.parse_args(child[4:]))
    assert parsed == {**options, "processes": None, "worker_id": "w-5", "metrics_port": 9101}
    assert command_line(parser, vars(parser.parse_args([])), set()) == []


@starts_processes
@pytest.mark.once_per_database  # signals, kills and restarts: the processes' work, not Django's
def test_each_child_serves_metrics_on_its_own_port(supervisor):
    port = free_port_pair()
    running = supervisor("--processes", "2", "--no-cron", "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    running.wait_registered(2)
    for each in (port, port + 1):
        wait_until(lambda each=each: scrapes(each), timeout=60, check=running.still_running,
                   explain=lambda each=each: running.explain(f"nothing serves metrics on {each}"))
    running.process.send_signal(signal.SIGTERM)
    assert running.exit_code(GRACE + 30) == 0


def free_port_pair() -> int:
    """A port P such that P and P + 1 are free now."""
    for _ in range(50):
        with socket.socket() as probe, socket.socket() as next_one:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
            try:
                next_one.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free ports in a row")


def scrapes(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return b"django_jobs_started_total" in response.read()
    except OSError:
        return False


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1", "x", "", "1.5"])
def test_a_bad_process_count_is_refused(value):
    with pytest.raises(CommandError, match=rf"--processes: must be a whole number of at least 1, or auto, not '{value}'"):
        call_command("run_jobworker", "--processes", value)


def test_auto_is_the_cpu_count():
    assert process_count("auto") == os.cpu_count()
    assert process_count("3") == 3


@pytest.mark.slow
def test_a_bad_process_count_on_the_command_line_starts_nothing():
    refused = subprocess.run([sys.executable, "-m", "django", "run_jobworker", "--processes", "0"], cwd=REPO,
                             env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO)},
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2, refused.stderr
    assert "argument --processes: must be a whole number of at least 1, or auto, not '0'" in refused.stderr
    assert "Supervisor" not in refused.stderr


@starts_processes
def test_bad_worker_options_are_refused_by_the_supervisor_before_any_child_starts(supervisor):
    running = supervisor("--processes", "2", "--concurrency", "0")
    assert running.exit_code(60) == 1
    assert "concurrency and batch size must be at least 1" in running.log()
    assert not running.started()
