"""The queue as it is now: what waits or runs in each queue, and the workers beating.

Each is one small query: queue depth reads only active rows (the claim indexes keep
those few, however many finished rows pile up), workers their own small table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min, Q
from django.utils import timezone

from ..conf import jobs_settings
from ..models import ScheduledTask, Worker
from ..queues import paused_queues

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


def live_workers(now: datetime | None = None) -> list[Worker]:
    """Workers whose heartbeat is younger than HEARTBEAT_TIMEOUT, by worker id."""
    now = now or timezone.now()
    return list(Worker.objects.live(now - timedelta(seconds=jobs_settings.HEARTBEAT_TIMEOUT)).order_by("worker_id"))


def is_stalled(worker: Worker, now: datetime) -> bool:
    """Beating, holding tasks, and no outcome written for STALLED_AFTER: a hung job, or a bug."""
    return worker.holding > 0 and (now - worker.progressed_at).total_seconds() >= jobs_settings.STALLED_AFTER
