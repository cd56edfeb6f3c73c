"""How long a failed task waits before its next attempt."""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .conf import jobs_settings, to_timedelta

if TYPE_CHECKING:
    from .models import ScheduledTask
    from .registry import Job

logger = logging.getLogger(__name__)

# Exponential delays are spread by +/-20% so that tasks that failed together
# (a database blip, an API outage) do not all come back in the same instant.
JITTER = 0.2


def delay_before_retry(task: ScheduledTask, job: Job[Any, Any] | None, failed_attempt: int) -> timedelta:
    """Delay after ``failed_attempt`` (1 = the first run failed) of ``task``."""
    if task.backoff == "fixed":
        return task.retry_delay
    if task.backoff == "custom" and job is not None and callable(job.backoff):
        custom = custom_delay(job, failed_attempt)
        if custom is not None:
            return custom
    return exponential_delay(task.retry_delay, failed_attempt)


def exponential_delay(base: timedelta, failed_attempt: int) -> timedelta:
    cap = jobs_settings.MAX_RETRY_DELAY
    # min() before the power would overflow: 2**1000 seconds is not a timedelta.
    seconds = base.total_seconds() * 2 ** min(failed_attempt - 1, 64)
    seconds = min(seconds, cap) * random.uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=min(seconds, cap))


def custom_delay(job: Job[Any, Any], failed_attempt: int) -> timedelta | None:
    try:
        delay = to_timedelta(job.backoff(failed_attempt), f"backoff of job {job.name!r}")  # type: ignore[operator]
    except Exception:
        logger.exception("Backoff function of job %s failed; using exponential backoff", job.name)
        return None
    return max(delay, timedelta(0))
