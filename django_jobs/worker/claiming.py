"""Taking due tasks for one worker, so that no task is ever held by two.

The claim itself is the database engine's (``django_jobs.db``): ``FOR UPDATE SKIP
LOCKED`` where there are row locks (one ``UPDATE … RETURNING`` on PostgreSQL), a
conditional ``UPDATE ... WHERE status = 'pending'`` on SQLite. Either way the claim
transaction is tiny: select, mark running, commit. Paused queues are read in the same
transaction, so a pause holds from the next claim on. Here: retrying what is transient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime

from django.db import OperationalError, router
from django.utils import timezone

from ..db import engine
from ..db.flow import Flow
from ..models import ScheduledTask
from ..registry import declared_limits
from ..resilience import is_transient

logger = logging.getLogger(__name__)

# Deadlocks (MariaDB) and "database is locked" (SQLite) are transient: try again.
CLAIM_ATTEMPTS = 5
CLAIM_RETRY_PAUSE = 0.05


def new_flow() -> Flow:
    """A worker's flow control: ``QUEUE_LIMITS`` and the jobs' declared limits as this
    process has them (read once: a change takes effect when the worker starts again)."""
    return Flow.from_settings(declared_limits)


def claim(worker_id: str, queues: Iterable[str] | None, limit: int, now: datetime | None = None,
          flow: Flow | None = None) -> list[ScheduledTask]:
    """Mark up to ``limit`` due tasks ``running`` for ``worker_id`` and return them.

    ``flow``: the worker's flow control (its ``QUEUE_LIMITS`` and round of keys), kept
    from claim to claim; None reads the settings afresh."""
    if limit <= 0:
        return []
    database = engine(router.db_for_write(ScheduledTask))
    queues = list(queues) if queues else None
    for attempt in range(1, CLAIM_ATTEMPTS + 1):
        try:
            return database.claim(worker_id, queues, limit, now or timezone.now(), flow or new_flow())
        except OperationalError as error:
            if attempt == CLAIM_ATTEMPTS or not is_transient(error):
                raise
            logger.info("Claim hit a transient database error (%s); retrying", error)
            time.sleep(CLAIM_RETRY_PAUSE * attempt)
    return []
