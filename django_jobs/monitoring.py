"""Live numbers for operators: queue depth, workers, recent throughput.

Read by ``manage.py jobs_stats --watch`` and by the Prometheus collector. Each is
one small query: queue depth reads only active rows (the claim indexes keep
those few), throughput reads the indexed ``executed_at`` / ``failed_at`` columns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from .conf import jobs_settings
from .models import ScheduledTask, Worker
from .queues import all_paused, paused_queues
from .statistics import STATUSES

Status = ScheduledTask.Status


@dataclass(frozen=True)
class QueueDepth:
    """Active tasks of one queue: due now, scheduled later, running; and the oldest due time."""

    queue: str
    due: int
    scheduled: int
    running: int
    oldest_due: datetime | None
    paused: bool = False

    def waiting_seconds(self, now: datetime) -> float:
        """How long the oldest due task has been waiting (0 when none is due)."""
        return max(0.0, (now - self.oldest_due).total_seconds()) if self.oldest_due else 0.0


def queue_depth(now: datetime | None = None, paused: set[str] | None = None) -> list[QueueDepth]:
    """One row per queue that has pending or running tasks or is paused, by queue name.

    ``paused``: the paused queues' names, when the caller has read them already.
    """
    now = now or timezone.now()
    paused = set(paused_queues()) if paused is None else paused
    due = Q(status=Status.PENDING, scheduled_at__lte=now)
    rows = (
        ScheduledTask.objects.filter(status__in=ScheduledTask.ACTIVE_STATUSES).order_by().values("queue")
        .annotate(due=Count("pk", filter=due), scheduled=Count("pk", filter=Q(status=Status.PENDING, scheduled_at__gt=now)),
                  running=Count("pk", filter=Q(status=Status.RUNNING)), oldest_due=Min("scheduled_at", filter=due))
        .order_by("queue")
    )
    depths = {row["queue"]: QueueDepth(**row, paused=row["queue"] in paused) for row in rows}
    for name in paused - set(depths):
        depths[name] = QueueDepth(name, 0, 0, 0, None, paused=True)
    return [depths[name] for name in sorted(depths)]


def status_counts() -> dict[str, int]:
    """Tasks per status, every status present (one grouped query)."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in ScheduledTask.objects.order_by().values("status").annotate(count=Count("pk")):
        counts[row["status"]] = row["count"]
    return counts


def is_stalled(worker: Worker, now: datetime) -> bool:
    """Beating, holding tasks, and no outcome written for STALLED_AFTER: a hung job, or a bug."""
    return worker.holding > 0 and (now - worker.progressed_at).total_seconds() >= jobs_settings.STALLED_AFTER


def live_workers(now: datetime | None = None) -> list[Worker]:
    """Workers whose heartbeat is younger than HEARTBEAT_TIMEOUT."""
    now = now or timezone.now()
    return list(Worker.objects.live(now - timedelta(seconds=jobs_settings.HEARTBEAT_TIMEOUT)).order_by("worker_id"))


def throughput(now: datetime | None = None, seconds: float = 60.0) -> dict[str, int]:
    """Tasks completed, and tasks whose latest attempt failed, in the last ``seconds``."""
    since = (now or timezone.now()) - timedelta(seconds=seconds)
    return {
        "completed": ScheduledTask.objects.filter(executed_at__gte=since, status=Status.COMPLETED).count(),
        "failed": ScheduledTask.objects.filter(failed_at__gte=since).count(),
    }


def snapshot(now: datetime | None = None) -> dict[str, Any]:
    """Everything ``jobs_stats --watch`` shows, as plain JSON-ready data."""
    now = now or timezone.now()
    return {
        "time": now.isoformat(),
        "statuses": status_counts(),
        "queues": [{**asdict(depth), "oldest_due": iso(depth.oldest_due), "waiting_seconds": round(depth.waiting_seconds(now), 3)}
                   for depth in queue_depth(now)],
        "workers": [{"worker_id": worker.worker_id, "queues": worker.queues or "*", "concurrency": worker.concurrency,
                     "last_heartbeat": iso(worker.last_heartbeat), "holding": worker.holding,
                     "progressed_at": iso(worker.progressed_at), "stalled": is_stalled(worker, now)}
                    for worker in live_workers(now)],
        "last_minute": throughput(now, 60.0),
        "all_paused": all_paused() is not None,
    }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
