"""Writing outcomes: each a conditional UPDATE on a task this worker still holds.

Successes without a return value, the bulk of a busy queue, are written together in
one UPDATE; everything else row by row. Signals follow the commit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import router
from django.utils import timezone

from .. import backoff, metrics
from ..models import ScheduledTask
from ..querysets import attempt_entry, complete_held
from ..registry import registry
from ..resilience import TRANSIENT_ERRORS, Backoff, first_line, reconnect
from ..signals import job_completed, job_failed, send_after_commit
from .outcome import Outcome
from .task_log import TaskLog

# Named, not ``__name__``: the name users' logging config knows from the README.
logger = logging.getLogger("django_jobs.recording")

T = TypeVar("T")
RECORD_ATTEMPTS = 10


def record_outcomes(items: Sequence[tuple[ScheduledTask, Outcome]], worker_id: str,
                    keep_trying: Callable[[], bool] | None = None,
                    on_error: Callable[[BaseException, float], None] | None = None) -> None:
    """Record every outcome, reconnecting through a database outage.

    Gives up after about half a minute, unless ``keep_trying`` (the worker's) says to go on:
    a worker keeps its outcomes until the database is back. What was written is
    counted in the metrics even if a later outcome raises.
    """
    retry = lambda operation: with_reconnect(operation, keep_trying, on_error)  # noqa: E731
    plain = [task for task, outcome in items if outcome.succeeded and outcome.result is None]
    bulk_ids: set[int] = set()
    recorded: list[tuple[ScheduledTask, Outcome]] = []
    try:
        if len(plain) > 1:
            written = retry(lambda: record_plain_successes(plain, worker_id))
            bulk_ids = {task.pk for task in plain}
            recorded = [(task, outcome) for task, outcome in items if task.pk in written]
        for task, outcome in items:
            if task.pk not in bulk_ids and retry(lambda: record(task, outcome, worker_id, TaskLog(task))):
                recorded.append((task, outcome))
    finally:
        metrics.count_recorded(recorded)


def record_plain_successes(tasks: list[ScheduledTask], worker_id: str) -> set[int]:
    """Complete these tasks in one UPDATE; return the ids this worker still held (and wrote)."""
    now = timezone.now()
    ids = [task.pk for task in tasks]
    changed = complete_held(ids, worker_id, now, router.db_for_write(ScheduledTask))
    mine: set[int] = set()
    if changed != len(tasks):
        rows = ScheduledTask.objects.filter(pk__in=ids)
        # Some were taken from us (recovered elsewhere): find out which we still wrote.
        mine = set(rows.filter(status=ScheduledTask.Status.COMPLETED, worker_id=worker_id, executed_at=now)
                   .values_list("pk", flat=True))
    written = {task.pk for task in tasks} if changed == len(tasks) else mine
    for task in tasks:
        if task.pk in written:
            announce_completed(task, None, now, TaskLog(task))
        else:
            TaskLog(task).warning(LOST)
    return written


LOST = "finished but no longer held by this worker (recovered elsewhere); outcome not recorded"


def with_reconnect(operation: Callable[[], T], keep_trying: Callable[[], bool] | None = None,
                   on_error: Callable[[BaseException, float], None] | None = None) -> T:
    """Run a database operation, reconnecting through an outage (a server's restart).

    Losing an outcome would make a finished job run again, so this waits longer
    than a claim would: about half a minute in all, or as long as ``keep_trying()``.
    Pauses stay short (at most 5 s) so that outcomes are written soon after the
    server is back.
    """
    backoff = Backoff(cap=5.0)
    attempt = 0
    while True:
        attempt += 1
        try:
            return operation()
        except TRANSIENT_ERRORS as error:
            gave_up = not keep_trying() if keep_trying is not None else attempt >= RECORD_ATTEMPTS
            if gave_up:
                raise
            pause = backoff.next()
            if on_error is not None:
                on_error(error, pause)  # the worker's report: log line and worker_error signal
            else:
                logger.warning("Database unavailable while recording (%s); retrying in %.1fs", first_line(error), pause)
            reconnect()
            pause_unless_given_up(pause, keep_trying)


def pause_unless_given_up(seconds: float, keep_trying: Callable[[], bool] | None) -> None:
    """Sleep ``seconds``, in short steps that end early once ``keep_trying()`` turns False
    (a stopping worker must not oversleep its grace)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and (keep_trying is None or keep_trying()):
        time.sleep(min(left, 0.25))


def record(task: ScheduledTask, outcome: Outcome, worker_id: str, log: TaskLog) -> bool:
    """Write the outcome if this worker still holds the task; return whether it did."""
    now = timezone.now()
    if outcome.succeeded:
        recorded = record_success(task, outcome, worker_id, log, now)
    else:
        recorded = record_failure(task, outcome, worker_id, log, now)
    if not recorded:
        log.warning(LOST)
    return recorded


def record_success(task: ScheduledTask, outcome: Outcome, worker_id: str, log: TaskLog, now: datetime) -> bool:
    if not ScheduledTask.objects.filter(pk=task.pk).complete(worker_id, outcome.result, now):
        return False
    announce_completed(task, outcome.result, now, log)
    return True


def announce_completed(task: ScheduledTask, result: Any, now: datetime, log: TaskLog) -> None:
    """After a committed completion: mirror it on the row, log it, signal it."""
    mirror(task, status=ScheduledTask.Status.COMPLETED, executed_at=now, result=result)
    log.info("completed")
    send_after_commit(job_completed, task=task, result=result)


def record_failure(task: ScheduledTask, outcome: Outcome, worker_id: str, log: TaskLog, now: datetime) -> bool:
    will_retry = outcome.retryable and task.retry_count < task.max_retries
    rows = ScheduledTask.objects.filter(pk=task.pk)
    entry = attempt_entry(task, now, outcome.error, outcome.exception_class, outcome.traceback)
    attempt_log = [*task.attempt_log, entry]
    if will_retry:
        job = registry.find(task.identifier)  # its backoff function, if custom
        retry_at = now + backoff.delay_before_retry(task, job, task.attempt)
        if not rows.retry_later(worker_id, retry_at, outcome.error, outcome.traceback, now, attempt_log):
            return False
        mirror(task, status=ScheduledTask.Status.PENDING, scheduled_at=retry_at, retry_count=task.retry_count + 1)
    else:
        if not rows.fail(worker_id, outcome.error, outcome.traceback, now, attempt_log):
            return False
        mirror(task, status=ScheduledTask.Status.FAILED)
    mirror(task, failed_at=now, error_message=outcome.error, traceback=outcome.traceback, attempt_log=attempt_log)
    log.warning("failed (%s), %s", outcome.error, "will retry" if will_retry else "no retries left")
    send_after_commit(job_failed, task=task, exception=outcome.exception, will_retry=will_retry)
    return True


def mirror(task: ScheduledTask, **fields: Any) -> None:
    """Copy a committed UPDATE onto the in-memory row, so signal receivers see the new state."""
    for name, value in fields.items():
        setattr(task, name, value)
