"""The answers served whole: ``get_statistics()`` and the ``jobs_stats --watch`` frame.

``get_statistics`` is the public API (also ``jobs_stats [--json]`` and the JSON API's
``statistics``): its counts are exact, so they add up and match a query of the table,
at the price of one GROUP BY over every row. The ``--watch`` frame is exact too, as
the README says; the dashboard, refreshed by browsers, counts with a cap instead.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from ..models import ScheduledTask
from ..queues import all_paused, paused_queues
from . import counts, history, live

WATCH_WINDOW = timedelta(minutes=1)


def get_statistics(queue: str | None = None) -> dict[str, Any]:
    """Counts by status, ``success_rate`` and ``failure_rate`` (completed or failed /
    finished, or None), ``average_duration_ms`` of completed tasks, ``by_job`` /
    ``by_queue`` breakdowns of counts by status, the ``paused_queues`` and whether
    ``pause_all`` is in force (``all_paused``). In the
    seeds' words too: ``waiting`` (pending and due), ``delayed`` (pending, due later),
    ``active`` (running). ``queue`` limits the counts to one queue."""
    rows = counts.grouped("identifier", "queue", queue=queue)  # totals and breakdowns from one GROUP BY
    totals = counts.by_status(rows)
    finished = totals["completed"] + totals["failed"]
    delayed = counts.tasks(queue).filter(status=ScheduledTask.Status.PENDING, scheduled_at__gt=timezone.now()).count()
    return {
        **totals,
        "total": sum(totals.values()),
        "waiting": totals["pending"] - delayed,
        "delayed": delayed,
        "active": totals["running"],
        "success_rate": round(totals["completed"] / finished, 4) if finished else None,
        "failure_rate": round(totals["failed"] / finished, 4) if finished else None,
        "average_duration_ms": history.average_duration_ms(queue),
        "by_job": counts.by_field(rows, "identifier"),
        "by_queue": counts.by_field(rows, "queue"),
        "paused_queues": paused_queues(),
        "all_paused": all_paused() is not None,
    }


def watch_frame(now: datetime | None = None) -> dict[str, Any]:
    """Everything ``jobs_stats --watch`` shows, as plain JSON-ready data."""
    now = now or timezone.now()
    return {
        "time": now.isoformat(),
        "statuses": counts.status_counts(),
        "queues": [{**asdict(depth), "oldest_due": iso(depth.oldest_due), "waiting_seconds": round(depth.waiting_seconds(now), 3)}
                   for depth in live.queue_depth(now)],
        "workers": [{"worker_id": worker.worker_id, "queues": worker.queues or "*", "concurrency": worker.concurrency,
                     "last_heartbeat": iso(worker.last_heartbeat), "holding": worker.holding,
                     "progressed_at": iso(worker.progressed_at), "stalled": live.is_stalled(worker, now)}
                    for worker in live.live_workers(now)],
        "last_minute": history.outcomes_since(now - WATCH_WINDOW),
        "all_paused": all_paused() is not None,
    }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
