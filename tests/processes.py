"""Helpers for tests that run real worker processes: waiting, exit codes, output, statuses.

One copy, shared by every suite that starts ``run_jobworker`` (``workers`` fixture).
"""

from __future__ import annotations

import subprocess
import threading

import pytest

from django_jobs.models import ScheduledTask
from tests.conftest import wait_until


def finish(process: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str]:
    """Wait for a worker to exit; return its exit code and everything it printed."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"worker pid={process.pid} still running after {timeout}s; its output:\n{output}")
    return process.returncode, output


def outputs(*processes: subprocess.Popen) -> str:
    """Output of each process, killing those still running (for failure messages)."""
    parts = []
    for process in processes:
        if process.poll() is None:
            process.kill()
        try:
            output, _ = process.communicate(timeout=10)
        except (ValueError, subprocess.TimeoutExpired):  # already read, or stuck
            output = "<output unavailable>"
        parts.append(f"--- worker pid={process.pid} exit={process.returncode} ---\n{output}")
    return "\n".join(parts)


def table() -> str:
    rows = ScheduledTask.objects.order_by("id").values_list("id", "status", "worker_id", "retry_count", "error_message")
    return "tasks: " + "; ".join(map(str, rows)) if len(rows) <= 20 else f"tasks: {len(rows)} rows"


def wait_for(predicate, *processes: subprocess.Popen, timeout: float = 30.0, what: str = ""):
    """``wait_until`` that fails fast if a worker died, and shows worker output on failure."""

    def none_exited():
        for process in processes:
            if process.poll() is not None:
                pytest.fail(f"worker pid={process.pid} exited early while waiting for {what}\n"
                            f"{table()}\n{outputs(process)}")

    return wait_until(predicate, timeout=timeout, check=none_exited,
                      explain=lambda: f"{what or 'condition'} not met within {timeout}s\n{table()}\n{outputs(*processes)}")


def assert_exit(process: subprocess.Popen, expected: int = 0, timeout: float = 60.0) -> str:
    code, output = finish(process, timeout)
    assert code == expected, f"exit code {code}, expected {expected}; {table()}\noutput:\n{output}"
    return output


def statuses(*tasks: ScheduledTask) -> list[str]:
    by_id = dict(ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks]).values_list("pk", "status"))
    return [by_id[task.pk] for task in tasks]


class Watched:
    """A worker process whose output is read as it comes: a full pipe would block it."""

    def __init__(self, process: subprocess.Popen, name: str) -> None:
        self.process, self.name, self.lines = process, name, []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self, last: int = 40) -> str:
        return f"--- {self.name} pid={self.pid} exit={self.process.poll()} ---\n" + "".join(self.lines[-last:])
