"""Waking idle workers: every change that makes a task due ends here.

Enqueueing, retrying, running now, giving tasks back, recovering them, editing a
pending task and resuming a queue all call ``wake_workers``. NOTIFY is
transactional, so workers hear it when the change commits, never before; on other
databases (and with ``NOTIFY`` off) workers find the task at their next poll.
"""

from __future__ import annotations

from collections.abc import Iterable

from .conf import jobs_settings
from .db import engine

NOTIFY_CHANNEL = "django_jobs"


def wake_workers(queues: Iterable[str], alias: str) -> None:
    """NOTIFY the workers of ``queues`` (the payload is the queue; listeners filter on it).

    ``queues`` may be a lazy queryset: it is read only when there is someone to notify.
    """
    database = engine(alias)
    if database.can_notify and jobs_settings.NOTIFY:
        database.notify(sorted(set(queues)))
