"""The numbers behind the dashboard.

Each is one grouped query that runs the same on PostgreSQL, MariaDB/MySQL and
SQLite. Time series are grouped by minute in the database (``TruncMinute`` in UTC,
so MySQL needs no time-zone tables) and re-bucketed here: at most 1,440 rows come
back for a day, however many tasks ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Q
from django.db.models.functions import TruncMinute

from ..models import ScheduledTask

Status = ScheduledTask.Status
# Window (hours) -> bucket (minutes): at most 180 bars.
WINDOWS = {1: 1, 3: 1, 6: 2, 12: 5, 24: 10}
DEFAULT_WINDOW = 3
TOP = 8
STATUS_COUNT_CAP = 100_000
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


def status_counts(cap: int | None = None) -> dict[str, int]:
    """Tasks per status, each counted through the status index and up to ``cap + 1``.

    One GROUP BY would read the whole table (250 ms for a million rows on
    PostgreSQL); this reads the small statuses whole and stops early on the big
    one, usually ``completed``, which then shows as "more than ``cap``".
    """
    cap = STATUS_COUNT_CAP if cap is None else cap
    rows = ScheduledTask.objects.order_by().values("pk")
    return {status: rows.filter(status=status)[: cap + 1].count() for status in Status.values}


def throughput(window: Window) -> list[Bucket]:
    """Tasks completed and attempts failed in each bucket of ``window``.

    A task keeps only its latest failure time, so a task that failed twice in the
    window counts once.
    """
    completed = per_minute("executed_at", window, status=Status.COMPLETED)
    failed = per_minute("failed_at", window)
    buckets = {start: [0, 0] for start in window.bucket_starts()}
    for series, counts in ((0, completed), (1, failed)):
        for minute, count in counts.items():
            start = window.start + ((minute - window.start) // window.bucket) * window.bucket
            if start in buckets:
                buckets[start][series] += count
    return [Bucket(start, done, failed) for start, (done, failed) in buckets.items()]


def per_minute(field: str, window: Window, **filters: Any) -> dict[datetime, int]:
    in_window = {f"{field}__gte": window.start, f"{field}__lt": window.end, **filters}
    rows = (
        ScheduledTask.objects.filter(**in_window).order_by()
        .annotate(minute=TruncMinute(field, tzinfo=UTC)).values("minute").annotate(count=Count("pk"))
    )
    return {aware(row["minute"]): row["count"] for row in rows}


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def slowest_jobs(window: Window, limit: int = TOP) -> list[dict[str, Any]]:
    """Jobs by average run time of the tasks they completed in the window."""
    rows = (
        ScheduledTask.objects.filter(status=Status.COMPLETED, executed_at__gte=window.start, started_at__isnull=False)
        .order_by().values("identifier")
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
        ScheduledTask.objects.filter(failed_at__gte=window.start).order_by().values("identifier")
        .annotate(failures=Count("pk"), dead=Count("pk", filter=Q(status=Status.FAILED)), latest=Max("failed_at"))
        .order_by("-failures", "identifier")[:limit]
    )]
    for row in rows:  # at most ``limit`` small indexed queries
        row["error"] = (
            ScheduledTask.objects.filter(identifier=row["identifier"], failed_at=row["latest"])
            .values_list("error_message", flat=True).first() or ""
        )
    return rows
