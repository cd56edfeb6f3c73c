"""Behind PgBouncer in transaction pooling mode (PostgreSQL).

A real ``pgbouncer`` (``tests/pgbouncer.py``) with a pool of two server connections
in front of the test database; web processes and workers reach the database only
through it, with ``DISABLE_SERVER_SIDE_CURSORS`` (how Django, and django_jobs, know of
a pooler). Single enqueues, enqueues in a transaction, bulk enqueues, claims,
heartbeats, cron and retention all run at once, from several processes sharing the two
server connections.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_jobs.models import CronSchedule, ScheduledTask, Worker
from tests.conftest import REPO
from tests.pgbouncer import PgBouncer
from tests.processes import Watched, wait_for
from tests.testapp.jobs import noop

pytestmark = [
    pytest.mark.skipif(os.environ.get("DJANGO_JOBS_TEST_DB") != "postgres", reason="PgBouncer pools PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

PER_CLIENT = 300
# What a prepared statement or a session state left on a shared server connection raises.
POOLING_ERRORS = ("prepared statement", "does not exist", "already exists", "Traceback", "rror")


@pytest.fixture
def bouncer():
    with PgBouncer() as started:
        yield started


def through(bouncer: PgBouncer, **overrides) -> dict[str, str]:
    """The environment of a process that reaches the database through ``bouncer`` only."""
    return {"PGPORT": str(bouncer.port), "DJANGO_JOBS_TEST_POOLED": "1",
            "DJANGO_JOBS_TEST_OVERRIDES": json.dumps(overrides)}


def start_client(bouncer: PgBouncer, go_file: str, label: str) -> subprocess.Popen:
    env = {**os.environ, **through(bouncer), "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DJANGO_JOBS_TEST_DB_NAME": connection.settings_dict["NAME"], "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tests.pgbouncer_client", go_file, label, str(PER_CLIENT)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_enqueue_claim_heartbeat_cron_and_retention_through_pgbouncer(bouncer, workers, tmp_path):
    old = noop.enqueue("old")
    ScheduledTask.objects.filter(pk=old.pk).update(status="completed", executed_at=timezone.now() - timedelta(days=3))
    schedule = CronSchedule.objects.create(name="through the bouncer", job_name="tests.noop", expression="* * * * *")
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() - timedelta(seconds=1))
    settings = {"RETENTION": {"completed": "1d"}, "RETENTION_INTERVAL": 1, "POLL_INTERVAL": 0.1}
    drainers = [Watched(workers.start("--concurrency", "4", env=through(bouncer, **settings)), f"worker {n}")
                for n in range(2)]
    go = tmp_path / "go"
    clients = [start_client(bouncer, str(go), label) for label in ("A", "B")]
    go.touch()
    for client in clients:
        output, _ = client.communicate(timeout=120)
        assert client.returncode == 0 and output.strip().endswith(f"prepared=0 enqueued={PER_CLIENT}"), output

    expected = 2 * PER_CLIENT
    wait_for(lambda: ScheduledTask.objects.filter(status="completed", args__0__0__in=["A", "B"]).count() == expected,
             *[drainer.process for drainer in drainers], timeout=120, what="every enqueued task completed")
    wait_for(lambda: ScheduledTask.objects.filter(cron_schedule=schedule, status="completed").exists(),
             *[drainer.process for drainer in drainers], what="the schedule's task ran")
    wait_for(lambda: not ScheduledTask.objects.filter(pk=old.pk).exists(),
             *[drainer.process for drainer in drainers], what="retention pruned the old task")
    beats = dict(Worker.objects.values_list("worker_id", "last_heartbeat"))
    time.sleep(2.5)  # two heartbeat intervals (tests/settings.py)
    assert all(after > beats[worker] for worker, after in Worker.objects.values_list("worker_id", "last_heartbeat")
               if worker in beats), "heartbeats stopped"
    for drainer in drainers:
        drainer.process.send_signal(signal.SIGTERM)
    for drainer in drainers:
        drainer.process.wait(timeout=60)
        text = "".join(drainer.lines)
        assert drainer.process.returncode == 0, text
        assert not [error for error in POOLING_ERRORS if error in text], text

    # Every row is the job its client enqueued: no statement prepared by one client ran
    # with another's arguments on a shared server connection.
    rows = list(ScheduledTask.objects.filter(args__0__0__in=["A", "B"]).values_list("identifier", "priority", "args"))
    assert len(rows) == expected
    wrong = [row for row in rows if row[0] != ("tests.collect" if row[2][0][0] == "A" else "tests.noop")
             or row[1] != row[2][0][1] // 3 % 3]
    assert not wrong, f"{len(wrong)} rows with another client's job or options, e.g. {wrong[:5]}"
    assert sorted(args[0][1] for _, _, args in rows if args[0][0] == "A") == list(range(PER_CLIENT))


def test_a_worker_behind_a_pooler_polls_and_says_so_once(bouncer, workers):
    worker = Watched(workers.start("--burst", "--no-cron", env=through(bouncer)), "worker")
    worker.process.wait(timeout=60)
    text = "".join(worker.lines)
    assert worker.process.returncode == 0, text
    assert text.count("polls for new tasks") == 1 and "LISTEN_DATABASE_URL" in text, text


def test_listen_database_url_gives_the_listener_a_direct_connection(bouncer, workers):
    direct = (f"postgresql://{connection.settings_dict['USER']}@{connection.settings_dict['HOST']}:"
              f"{connection.settings_dict['PORT']}/{connection.settings_dict['NAME']}")
    # Polling once a minute: a task run within seconds was heard, not polled for.
    worker = Watched(workers.start("--no-cron", env=through(bouncer, LISTEN_DATABASE_URL=direct, POLL_INTERVAL=60)),
                     "worker")
    wait_for(lambda: Worker.objects.exists(), worker.process, what="the worker registered")
    time.sleep(1)  # its listener connected
    task = noop.enqueue("heard")
    wait_for(lambda: ScheduledTask.objects.get(pk=task.pk).status == "completed", worker.process, timeout=20,
             what="the task ran long before the next poll")
    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=60)
    assert "polls for new tasks" not in "".join(worker.lines)
