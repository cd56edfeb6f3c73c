"""Taking due tasks for one worker, so that no task is ever held by two.

PostgreSQL and MariaDB/MySQL lock candidate rows with ``FOR UPDATE SKIP LOCKED``:
concurrent workers skip each other's rows instead of queueing behind them. SQLite
has no row locks; there a conditional ``UPDATE ... WHERE status = 'pending'`` is
the claim (SQLite runs one write at a time, so two workers can never both match).
Either way the claim transaction is tiny: select, mark running, commit. Paused
queues are read in the same transaction, so a pause holds from the next claim on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime

from django.db import OperationalError, connections, router, transaction
from django.utils import timezone

from .models import PausedQueue, ScheduledTask
from .querysets import mark_claimed
from .rows import column_list, reader

logger = logging.getLogger(__name__)

# Deadlocks (MariaDB) and "database is locked" (SQLite) are transient: try again.
CLAIM_ATTEMPTS = 5
CLAIM_RETRY_PAUSE = 0.05


def claim(worker_id: str, queues: Iterable[str] | None, limit: int, now: datetime | None = None) -> list[ScheduledTask]:
    """Mark up to ``limit`` due tasks ``running`` for ``worker_id`` and return them."""
    if limit <= 0:
        return []
    alias = router.db_for_write(ScheduledTask)
    queues = list(queues) if queues else None
    strategy = claim_with_row_locks if supports_skip_locked(alias) else claim_with_conditional_update
    for attempt in range(1, CLAIM_ATTEMPTS + 1):
        try:
            return strategy(alias, worker_id, queues, limit, now or timezone.now())
        except OperationalError as error:
            if attempt == CLAIM_ATTEMPTS or not is_transient(error):
                raise
            logger.info("Claim hit a transient database error (%s); retrying", error)
            time.sleep(CLAIM_RETRY_PAUSE * attempt)
    return []


def supports_skip_locked(alias: str) -> bool:
    features = connections[alias].features
    return features.has_select_for_update and features.has_select_for_update_skip_locked


def claim_with_row_locks(alias: str, worker_id: str, queues: list[str] | None, limit: int, now: datetime) -> list[ScheduledTask]:
    if connections[alias].vendor == "postgresql":
        return claim_in_one_statement(alias, worker_id, queues, limit, now)
    rows = ScheduledTask.objects.using(alias)
    with transaction.atomic(using=alias):
        walk_the_claim_index(alias)
        tasks = list(rows.due_unless_paused(now, queues).select_for_update(skip_locked=True)[:limit])
        if tasks:
            mark_claimed([task.pk for task in tasks], worker_id, now, alias)
    return [held(task, worker_id, now) for task in tasks]


def claim_in_one_statement(alias: str, worker_id: str, queues: list[str] | None, limit: int,
                           now: datetime) -> list[ScheduledTask]:
    """PostgreSQL: lock, mark and return a batch with one ``UPDATE ... RETURNING``.

    The same claim as the ORM's SELECT-then-UPDATE, in one round trip and without
    compiling two queries: the claim is most of a worker's CPU when jobs are short.
    """
    params = [*([queues] if queues else []), now, limit, worker_id, now, now]
    connection = connections[alias]
    with transaction.atomic(using=alias):
        walk_the_claim_index(alias)
        with connection.cursor() as cursor:
            cursor.execute(claim_statement(queues, column_list(connection, "t.")), params)
            claimed = cursor.fetchall()
    return sorted(reader(connection).tasks(claimed), key=claim_sort_key)


def claim_statement(queues: list[str] | None, returning: str) -> str:
    """Due rows in claim order, outside paused queues (all of them under ``pause_all``'s ``*``), locked (skipping locked ones) and
    marked running, returning the ``returning`` columns. Params: [queues], now, limit,
    worker_id, started_at, updated_at."""
    task = ScheduledTask._meta.db_table
    paused = PausedQueue._meta.db_table
    chosen = "AND c.queue = ANY(%s) " if queues else ""
    return (
        f"WITH claimed AS (SELECT c.id FROM {task} c WHERE c.status = 'pending' {chosen}"
        f"AND c.scheduled_at <= %s AND NOT EXISTS (SELECT 1 FROM {paused} p WHERE p.queue IN (c.queue, '*')) "
        f"ORDER BY c.priority DESC, c.scheduled_at, c.id LIMIT %s FOR UPDATE SKIP LOCKED) "
        f"UPDATE {task} t SET status = 'running', worker_id = %s, started_at = %s, updated_at = %s "
        f"FROM claimed WHERE t.id = claimed.id RETURNING {returning}"
    )


def walk_the_claim_index(alias: str) -> None:
    """Keep PostgreSQL on the claim index whatever its statistics say.

    After a burst of inserts the planner's statistics are stale: it expects a few due
    rows, reads all of them through a bitmap scan and sorts them, on every claim (a
    peer falls from ~600 to ~200 jobs/s this way). Walking the partial index in claim
    order and stopping at LIMIT is right at any backlog size, so the claim
    transaction rules the alternatives out, for itself only (``is_local``).
    """
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true)")


def claim_with_conditional_update(alias: str, worker_id: str, queues: list[str] | None, limit: int, now: datetime) -> list[ScheduledTask]:
    rows = ScheduledTask.objects.using(alias)
    # Another worker may take every candidate between our read and our update;
    # then read again rather than report "nothing due" while work is waiting.
    for _ in range(CLAIM_ATTEMPTS):
        candidates = list(rows.due_unless_paused(now, queues).values_list("pk", flat=True)[:limit])
        if not candidates:
            return []
        # Only rows still pending change; a row another worker took meanwhile is skipped.
        if mark_claimed(candidates, worker_id, now, alias):
            mine = rows.filter(pk__in=candidates, status=ScheduledTask.Status.RUNNING, worker_id=worker_id, started_at=now)
            return sorted(mine, key=claim_sort_key)
    return []


def held(task: ScheduledTask, worker_id: str, now: datetime) -> ScheduledTask:
    task.status, task.worker_id, task.started_at, task.updated_at = ScheduledTask.Status.RUNNING, worker_id, now, now
    return task


def claim_sort_key(task: ScheduledTask) -> tuple[int, datetime, int]:
    return (-task.priority, task.scheduled_at, task.pk)


def is_transient(error: OperationalError) -> bool:
    text = str(error).lower()
    return "deadlock" in text or "locked" in text or "lock wait timeout" in text
