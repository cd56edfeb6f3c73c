"""Worker processes of a scenario: start, wait with a deadline, stop, always clean up.

Every process started here is remembered; ``stop_all`` (run at exit, and by the
scenario's ``finally``) terminates, then kills, whatever is still alive. Workers
share the child's process group, so the orchestrator can kill the whole group if a
scenario overruns its time.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "bench" / "results" / "logs"

_started: list[subprocess.Popen] = []


class Timeout(Exception):
    """A wait ran past its deadline; the processes involved were killed."""


def django_command(*args: str, log_name: str) -> subprocess.Popen:
    """Start ``python -m django ARGS`` with this process's settings; output to a log file."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{log_name}.log", "ab") as log:   # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT, env=os.environ.copy(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    _started.append(process)
    return process


def wait_all(processes: list[subprocess.Popen], timeout: float) -> list[float]:
    """Wait until every process exits; return their exit times (time.time()).

    Past ``timeout`` seconds, kill them and raise Timeout.
    """
    deadline = time.monotonic() + timeout
    exits: dict[int, float] = {}
    while len(exits) < len(processes):
        for process in processes:
            if process.pid not in exits and process.poll() is not None:
                exits[process.pid] = time.time()
        if time.monotonic() > deadline:
            stop(processes, grace=0)
            raise Timeout(f"{len(processes) - len(exits)} worker(s) still running after {timeout:.0f} s; killed")
        time.sleep(0.005)
    failed = [p.returncode for p in processes if p.returncode != 0]
    if failed:
        raise RuntimeError(f"worker exit code(s) {failed}; see bench/results/logs/")
    return [exits[p.pid] for p in processes]


def stop(processes: list[subprocess.Popen], grace: float = 10.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL whatever is alive after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM if grace else signal.SIGKILL)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def stop_all() -> None:
    stop([p for p in _started if p.poll() is None], grace=5.0)


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB, from /proc/<pid>/status."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


atexit.register(stop_all)
