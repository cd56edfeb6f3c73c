"""The peer, side by side: django-tasks-db's ``db_worker`` on its own PostgreSQL database,
measured the way scenarios.py measures django_jobs (same jobs, counts, clocks).
"""

from __future__ import annotations

import time
import uuid
from importlib.metadata import version
from typing import Any

from django.db import connection, transaction
from django_tasks_db.models import DBTaskResult, get_date_max

from bench.benchapp.peer_tasks import mark, noop

from . import processes, tables
from .measure import latency_summary, rate, steady_window, wait_until

SUCCESSFUL = "SUCCESSFUL"


def peer_name() -> str:
    return f"django-tasks-db {version('django-tasks-db')}"


def enqueue_noops(count: int) -> None:
    """Rows exactly as the backend's enqueue writes them, in bulk (its enqueue has no bulk form)."""
    empty = {"args": [], "kwargs": {}}
    rows = [DBTaskResult(id=uuid.uuid4(), args_kwargs=empty, priority=noop.priority, task_path=noop.module_path,
                         queue_name=noop.queue_name, backend_name=noop.backend, run_after=get_date_max())
            for _ in range(count)]
    DBTaskResult.objects.bulk_create(rows, batch_size=5000)


def drain(params: dict[str, Any]) -> list[dict[str, Any]]:
    jobs, count = params["drain_jobs"], params["processes"]
    tables.truncate(DBTaskResult)
    enqueue_noops(jobs)
    # Its best case: without fresh statistics its claim sorts every ready row per task
    # (Bitmap Heap Scan + Sort) and it drains several times slower. django_jobs gets
    # no ANALYZE: its claim must hold up on any plan.
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(DBTaskResult._meta.db_table)}")
    spawned = time.time()
    workers = [processes.django_command("db_worker", "--batch", "--no-startup-delay", "--verbosity", "0",
                                        log_name=f"peer-drain-{number}") for number in range(count)]
    try:
        exited = max(processes.wait_all(workers, params["peer_drain_timeout"]))
    finally:
        processes.stop(workers)
    done = DBTaskResult.objects.filter(status=SUCCESSFUL).values_list("worker_ids", "started_at", "finished_at")
    finished = [(workers[-1], started.timestamp(), ended.timestamp())
                for workers, started, ended in done.iterator(chunk_size=10_000)]
    tables.truncate(DBTaskResult)
    completed = len(finished)
    if not finished:
        raise RuntimeError("the peer completed no task; see bench/results/logs/peer-drain-*.log")
    counted, first, last = steady_window(finished)
    wall = exited - spawned
    row = {
        "scenario": "peer drain", "config": f"{peer_name()}: {count} x db_worker", "jobs": jobs,
        "seconds": last - first, "jobs_per_s": rate(counted, last - first), "wall_s": wall,
        "notes": f"ANALYZE after enqueue; window {counted:,} jobs; N/wall {jobs / wall:,.0f}/s (wall {wall:.1f} s)",
        "metrics": {"jobs_in_window": counted, "completed": completed},
    }
    if completed < jobs:
        row["error"] = f"only {completed} of {jobs} completed"
    return [row]


def pickup(params: dict[str, Any]) -> list[dict[str, Any]]:
    tables.truncate(DBTaskResult)
    interval = params["pickup_interval"]
    worker = processes.django_command("db_worker", "--interval", f"{interval:g}", "--no-startup-delay",
                                      "--verbosity", "0", log_name="peer-pickup")
    try:
        warm = mark.enqueue()
        wait_until(lambda: DBTaskResult.objects.filter(id=warm.id, status=SUCCESSFUL).exists(),
                   timeout=60, what="the peer worker to run a warm-up task", every=0.02)
        time.sleep(0.5)
        commits = {}
        for _ in range(params["pickup_jobs"]):
            with transaction.atomic():
                result = mark.enqueue()
            commits[str(result.id)] = time.time()
            time.sleep(params["pickup_spacing"])
        wait_until(lambda: DBTaskResult.objects.filter(id__in=list(commits), status=SUCCESSFUL).count() == len(commits),
                   timeout=60 + 3 * interval, what="the peer's pickup tasks to complete", every=0.1)
    finally:
        processes.stop([worker])
    rows = DBTaskResult.objects.filter(id__in=list(commits)).values_list("id", "return_value")
    entered = {str(pk): value for pk, value in rows}
    latencies = [(entered[pk] - committed) * 1000 for pk, committed in commits.items()]
    tables.truncate(DBTaskResult)
    return [{
        "scenario": "peer pickup", "config": f"{peer_name()}: 1 idle db_worker, --interval {interval:g} (polling)",
        "jobs": len(latencies), **latency_summary(latencies),
        "notes": f"spaced {params['pickup_spacing'] * 1000:.0f} ms", "metrics": {"latencies_ms": latencies},
    }]


SCENARIOS = {"peer_drain": drain, "peer_pickup": pickup}
