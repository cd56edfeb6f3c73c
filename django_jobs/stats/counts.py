"""Tasks counted by status, exactly or up to a cap, and broken down by job and queue."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import Count, QuerySet

from ..models import ScheduledTask

STATUSES: list[str] = list(ScheduledTask.Status.values)

GroupedRows = list[dict[str, Any]]


def status_counts(queue: str | None = None, cap: int | None = None) -> dict[str, int]:
    """Tasks per status, every status present; only ``queue``'s when given.

    ``cap=None`` counts exactly, with one GROUP BY that reads every row. With a
    ``cap``, each status is counted on its own and stops after ``cap + 1`` rows, so
    a big status (usually ``completed``) costs no more than the cap: a count above
    ``cap`` means "more than ``cap``". (A rare status can still be looked for
    through a whole index where none leads with ``status``: PostgreSQL, SQLite.)
    """
    if cap is None:
        return by_status(grouped(queue=queue))
    rows = tasks(queue).values("pk")
    return {status: rows.filter(status=status)[: cap + 1].count() for status in STATUSES}


def grouped(*fields: str, queue: str | None = None) -> GroupedRows:
    """One exact GROUP BY ``fields`` and status: rows of ``fields``, ``status`` and ``count``."""
    return list(tasks(queue).values(*fields, "status").annotate(count=Count("pk")))


def by_status(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Sum ``grouped`` rows per status, every status present."""
    totals = dict.fromkeys(STATUSES, 0)
    for row in rows:
        totals[row["status"]] += row["count"]
    return totals


def by_field(rows: Iterable[Mapping[str, Any]], field: str) -> dict[str, dict[str, int]]:
    """Sum ``grouped`` rows per value of ``field``, then per status."""
    breakdown: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = breakdown.setdefault(row[field], dict.fromkeys(STATUSES, 0))
        counts[row["status"]] += row["count"]
    return breakdown


def tasks(queue: str | None = None) -> QuerySet[ScheduledTask]:
    """Every task, or ``queue``'s; unordered, since counting needs no order."""
    rows = ScheduledTask.objects.order_by()
    return rows if queue is None else rows.filter(queue=queue)
