"""What finished and what failed over time: throughput, run times, failing jobs.

Each is one grouped query that runs the same on PostgreSQL, MariaDB/MySQL and
SQLite, over the indexed ``executed_at`` / ``failed_at`` columns. Time series are
grouped by minute in the database (``TruncMinute`` in UTC, so MySQL needs no
time-zone tables) and re-bucketed here: at most 1,440 rows come back for a day,
however many tasks ran.

A task keeps only its latest failure time, so "failed" counts tasks whose latest
failed attempt is in the window, once each, whether or not they were retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Q, QuerySet
from django.db.models.functions import TruncMinute

from ..models import ScheduledTask

Status = ScheduledTask.Status
# Window (hours) -> bucket (minutes): at most 180 bars.
WINDOWS = {1: 1, 3: 1, 6: 2, 12: 5, 24: 10}
DEFAULT_WINDOW = 3
TOP = 8
RUN_TIME = ExpressionWrapper(F("executed_at") - F("started_at"), output_field=DurationField())


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    bucket: timedelta

    @classmethod
    def ending_at(cls, now: datetime, hours: int) -> Window:
        """The last ``hours`` up to the end of the current bucket, aligned to whole buckets."""
        bucket = timedelta(minutes=WINDOWS.get(hours, WINDOWS[DEFAULT_WINDOW]))
        minute = now.replace(second=0, microsecond=0)
        end = minute - (minute - minute.replace(hour=0, minute=0)) % bucket + bucket
        return cls(start=end - timedelta(hours=hours), end=end, bucket=bucket)

    def bucket_starts(self) -> list[datetime]:
        count = int((self.end - self.start) / self.bucket)
        return [self.start + index * self.bucket for index in range(count)]


@dataclass(frozen=True)
class Bucket:
    start: datetime
    completed: int
    failed: int


def completed_between(start: datetime, end: datetime | None = None) -> QuerySet[ScheduledTask]:
    """Tasks completed from ``start`` (until ``end``, excluded)."""
    rows = ScheduledTask.objects.filter(status=Status.COMPLETED, executed_at__gte=start).order_by()
    return rows if end is None else rows.filter(executed_at__lt=end)


def failed_between(start: datetime, end: datetime | None = None) -> QuerySet[ScheduledTask]:
    """Tasks whose latest failed attempt is from ``start`` (until ``end``, excluded)."""
    rows = ScheduledTask.objects.filter(failed_at__gte=start).order_by()
    return rows if end is None else rows.filter(failed_at__lt=end)


def outcomes_since(since: datetime) -> dict[str, int]:
    """Tasks completed, and tasks with a failed attempt, since ``since`` (two counts)."""
    return {"completed": completed_between(since).count(), "failed": failed_between(since).count()}


def throughput(window: Window) -> list[Bucket]:
    """Tasks completed and tasks with a failed attempt in each bucket of ``window``."""
    completed = per_minute(completed_between(window.start, window.end), "executed_at")
    failed = per_minute(failed_between(window.start, window.end), "failed_at")
    buckets = {start: [0, 0] for start in window.bucket_starts()}
    for series, counts in ((0, completed), (1, failed)):
        for minute, count in counts.items():
            start = window.start + ((minute - window.start) // window.bucket) * window.bucket
            if start in buckets:
                buckets[start][series] += count
    return [Bucket(start, done, failed) for start, (done, failed) in buckets.items()]


def per_minute(rows: QuerySet[ScheduledTask], field: str) -> dict[datetime, int]:
    grouped = rows.annotate(minute=TruncMinute(field, tzinfo=UTC)).values("minute").annotate(count=Count("pk"))
    return {aware(row["minute"]): row["count"] for row in grouped}


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def average_duration_ms(queue: str | None = None) -> float | None:
    """Average run time of every completed task (``queue``'s when given), in ms; None if none."""
    rows = ScheduledTask.objects.filter(status=Status.COMPLETED, started_at__isnull=False, executed_at__isnull=False)
    if queue is not None:
        rows = rows.filter(queue=queue)
    average = as_timedelta(rows.aggregate(average=Avg(RUN_TIME))["average"])
    return None if average is None else round(average.total_seconds() * 1000, 3)


def slowest_jobs(window: Window, limit: int = TOP) -> list[dict[str, Any]]:
    """Jobs by average run time of the tasks they completed in the window."""
    rows = (
        completed_between(window.start).filter(started_at__isnull=False).values("identifier")
        .annotate(runs=Count("pk"), average=Avg(RUN_TIME), longest=Max(RUN_TIME)).order_by("-average")[:limit]
    )
    return [{**row, "average": as_timedelta(row["average"]), "longest": as_timedelta(row["longest"])} for row in rows]


def as_timedelta(value: Any) -> timedelta | None:
    """Averages of durations come back as timedelta or as microseconds, by database."""
    if value is None or isinstance(value, timedelta):
        return value
    return timedelta(microseconds=float(value))


def failing_jobs(window: Window, limit: int = TOP) -> list[dict[str, Any]]:
    """Jobs with the most tasks that failed in the window, with their latest error."""
    rows: list[dict[str, Any]] = [dict(row) for row in (
        failed_between(window.start).values("identifier")
        .annotate(failures=Count("pk"), dead=Count("pk", filter=Q(status=Status.FAILED)), latest=Max("failed_at"))
        .order_by("-failures", "identifier")[:limit]
    )]
    for row in rows:  # at most ``limit`` small indexed queries
        row["error"] = (
            ScheduledTask.objects.filter(identifier=row["identifier"], failed_at=row["latest"])
            .values_list("error_message", flat=True).first() or ""
        )
    return rows
