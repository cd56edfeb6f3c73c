"""``unique_key`` under a real race: several processes enqueue one key at once.

Each contender is ``tests/unique_race_client.py`` in its own process, on the test
database; all wait for a start file, then enqueue the same key many times, half of
them in autocommit and half inside ``transaction.atomic()`` (as a view would).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from django_jobs.models import ScheduledTask
from tests.conftest import REPO

pytestmark = [pytest.mark.once_per_database, pytest.mark.django_db(transaction=True), pytest.mark.slow]

CONTENDERS = 6
ENQUEUES_EACH = 30


def start_contenders(tmp_path: Path, key: str, pause: float = 0.0) -> tuple[list[subprocess.Popen], Path]:
    go_file = tmp_path / "go"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(REPO),
           "DJANGO_JOBS_TEST_DB_NAME": connection.settings_dict["NAME"]}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.unique_race_client", str(go_file), key, str(ENQUEUES_EACH),
             "atomic" if number % 2 else "plain", str(pause)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for number in range(CONTENDERS)
    ]
    return processes, go_file


def results(processes: list[subprocess.Popen]) -> list[list[int]]:
    returned = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"contender pid={process.pid} failed:\n{err}"
        report = json.loads(out)
        assert len(report["ids"]) == ENQUEUES_EACH
        returned.append(report["ids"])
    return returned


def test_every_racing_enqueue_returns_the_one_active_task(tmp_path):
    processes, go_file = start_contenders(tmp_path, "race:one")
    go_file.touch()
    returned = results(processes)
    tasks = list(ScheduledTask.objects.filter(unique_key="race:one").values_list("pk", "status"))
    assert len(tasks) == 1, tasks
    [(task_id, status)] = tasks
    assert status == "pending"
    assert {pk for ids in returned for pk in ids} == {task_id}
    assert sum(len(ids) for ids in returned) == CONTENDERS * ENQUEUES_EACH


def test_racing_enqueues_while_the_key_changes_hands(tmp_path):
    """A worker keeps finishing the key's task: each enqueue returns the task active at
    that moment or a new one, never an error and never a second active task."""
    key = "race:handover"
    # A pause between enqueues: on SQLite six contenders in a tight loop could keep the
    # write lock from the finisher until they were all done (CI once saw one task in all).
    processes, go_file = start_contenders(tmp_path, key, pause=0.003)
    finished_rounds = []
    stop = threading.Event()

    def finisher():
        try:
            while not stop.wait(0.005):
                try:
                    finished_rounds.append(
                        ScheduledTask.objects.filter(unique_key=key, status="pending").update(status="completed")
                    )
                except OperationalError as error:  # a deadlock victim on MariaDB, as a worker may be
                    assert "deadlock" in str(error).lower(), error
        finally:
            connection.close()

    thread = threading.Thread(target=finisher)
    thread.start()
    go_file.touch()
    try:
        returned = results(processes)
    finally:
        stop.set()
        thread.join()
    rows = dict(ScheduledTask.objects.filter(unique_key=key).values_list("pk", "status"))
    active = [pk for pk, status in rows.items() if status in ("pending", "running")]
    assert len(active) <= 1
    assert {pk for ids in returned for pk in ids} <= set(rows)
    assert sum(finished_rounds) >= 1, "the finisher never took the key away: the test proved nothing"
    assert len(rows) > 1
