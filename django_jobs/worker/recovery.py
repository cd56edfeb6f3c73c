"""Taking back the tasks of workers that stopped beating, for any live worker to run."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from ..conf import jobs_settings
from ..exceptions import WorkerLost
from ..models import ScheduledTask, Worker

logger = logging.getLogger(__name__)


def recover_lost_tasks() -> int:
    """Tasks of workers silent for HEARTBEAT_TIMEOUT go back to pending (or fail)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=jobs_settings.HEARTBEAT_TIMEOUT)
    live = Worker.objects.live(cutoff).values("worker_id")
    error = f"{WorkerLost.__name__}: the worker running this task stopped sending heartbeats"
    exception_class = f"{WorkerLost.__module__}.{WorkerLost.__qualname__}"
    lost = ScheduledTask.objects.lost(live, started_before=cutoff).only(
        "pk", "worker_id", "started_at", "retry_count", "max_retries", "attempt_log")
    recovered = sum(ScheduledTask.objects.recover(task, error, exception_class, now) for task in lost)
    if recovered:
        logger.warning("Recovered %d task(s) from lost workers", recovered)
    Worker.objects.forget_dead(cutoff)
    return recovered
