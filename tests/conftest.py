"""Fixtures shared by the suite: real worker processes on the real test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

REPO = Path(__file__).resolve().parent.parent

# The fault, restart and fuzz suites take minutes and test the database and the worker,
# not Django: CI runs them once per database (in the Django 5.2 cells, see tox.ini), not
# in every Django x database cell. Elsewhere they are deselected, and the summary says so.
ONCE_PER_DATABASE = os.environ.get("DJANGO_JOBS_ONCE_PER_DATABASE", "1") != "0"


# Suites that need no database at all (the DST property test) run once in all of CI:
# in the Django 5.2 SQLite cell.
ONCE_IN_ALL = ONCE_PER_DATABASE and os.environ.get("DJANGO_JOBS_TEST_DB", "sqlite") == "sqlite"


def pytest_collection_modifyitems(config, items):
    def skipped_here(item) -> bool:
        if item.get_closest_marker("once") is not None:
            return not ONCE_IN_ALL
        return item.get_closest_marker("once_per_database") is not None and not ONCE_PER_DATABASE

    deselected = [item for item in items if skipped_here(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not skipped_here(item)]


def pytest_report_header(config):
    if not ONCE_PER_DATABASE:
        return "once_per_database and once suites deselected here (DJANGO_JOBS_ONCE_PER_DATABASE=0): another cell runs them"
    if not ONCE_IN_ALL:
        return "once suites (no database needed) deselected here: the SQLite cell runs them"
    return None


# The suite of a queue on its own database runs with its own settings (tox.ini runs it
# apart); under the suite's usual settings it has no second database to run on.
collect_ignore = [] if os.environ.get("DJANGO_SETTINGS_MODULE") == "tests.settings_queue_database" else ["queue_database"]


def queue_database_name() -> dict[str, str]:
    """The environment that points a worker at the test database of the queue's alias, if any."""
    if "queue" not in settings.DATABASES:
        return {}
    return {"DJANGO_JOBS_TEST_QUEUE_DB_NAME": str(connections["queue"].settings_dict["NAME"])}


class WorkerProcesses:
    """Starts ``manage.py run_jobworker`` processes against the test database."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, *arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
            "DJANGO_JOBS_TEST_DB_NAME": connection.settings_dict["NAME"],
            **queue_database_name(),
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


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, *, check=None, explain=None):
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout.

    ``check`` runs before each poll and may fail the test at once (a worker that should live
    has exited); ``explain()`` is the message on timeout, for the state worth seeing then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(explain() if explain is not None else f"condition not met within {timeout}s: {predicate}")
