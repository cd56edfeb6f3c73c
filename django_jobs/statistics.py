"""Counts and rates over the task table, for ``get_statistics`` and ``jobs_stats``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F
from django.utils import timezone

from .models import ScheduledTask
from .queues import all_paused, paused_queues

STATUSES = [status.value for status in ScheduledTask.Status]


def get_statistics(queue: str | None = None) -> dict[str, Any]:
    """Counts by status, ``success_rate`` and ``failure_rate`` (completed or failed /
    finished, or None), ``average_duration_ms`` of completed tasks, ``by_job`` /
    ``by_queue`` breakdowns of counts by status, the ``paused_queues`` and whether
    ``pause_all`` is in force (``all_paused``). In the
    seeds' words too: ``waiting`` (pending and due), ``delayed`` (pending, due later),
    ``active`` (running). ``queue`` limits the counts to one queue."""
    rows = ScheduledTask.objects.all()
    if queue is not None:
        rows = rows.filter(queue=queue)
    grouped = list(rows.order_by().values("identifier", "queue", "status").annotate(count=Count("id")))
    totals = count_by(grouped, key=None)
    finished = totals["completed"] + totals["failed"]
    delayed = rows.filter(status=ScheduledTask.Status.PENDING, scheduled_at__gt=timezone.now()).count()
    return {
        **totals,
        "total": sum(totals.values()),
        "waiting": totals["pending"] - delayed,
        "delayed": delayed,
        "active": totals["running"],
        "success_rate": round(totals["completed"] / finished, 4) if finished else None,
        "failure_rate": round(totals["failed"] / finished, 4) if finished else None,
        "average_duration_ms": average_duration_ms(rows),
        "by_job": count_by(grouped, key="identifier"),
        "by_queue": count_by(grouped, key="queue"),
        "paused_queues": paused_queues(),
        "all_paused": all_paused() is not None,
    }


def count_by(grouped: Sequence[Mapping[str, Any]], key: str | None) -> Any:
    if key is None:
        totals = dict.fromkeys(STATUSES, 0)
        for row in grouped:
            totals[row["status"]] += row["count"]
        return totals
    breakdown: dict[str, dict[str, int]] = {}
    for row in grouped:
        counts = breakdown.setdefault(row[key], dict.fromkeys(STATUSES, 0))
        counts[row["status"]] += row["count"]
    return breakdown


def average_duration_ms(rows) -> float | None:
    duration = ExpressionWrapper(F("executed_at") - F("started_at"), output_field=DurationField())
    completed = rows.filter(status=ScheduledTask.Status.COMPLETED, started_at__isnull=False, executed_at__isnull=False)
    average = completed.aggregate(average=Avg(duration))["average"]
    if average is None:
        return None
    seconds = average.total_seconds() if hasattr(average, "total_seconds") else float(average) / 1_000_000
    return round(seconds * 1000, 3)
