"""Fixtures shared by the suite: real worker processes on the real test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parent.parent


class WorkerProcesses:
    """Starts ``manage.py run_jobworker`` processes against the test database."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, *arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_JOBS_TEST_DB_NAME": connection.settings_dict["NAME"],
            "PYTHONPATH": str(REPO),
            **(env or {}),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "run_jobworker", *arguments],
            cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.processes.append(process)
        return process

    def wait_all(self, timeout: float = 120) -> list[int]:
        deadline = time.monotonic() + timeout
        codes = []
        for process in self.processes:
            codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
        return codes

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()


@pytest.fixture
def workers():
    """Worker processes; any still running at the end of the test are killed."""
    started = WorkerProcesses()
    yield started
    started.stop_all()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s: {predicate}")
