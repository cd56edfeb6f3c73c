"""A ScheduledTask row read as a Django ``TaskResult`` (Django >= 6.0).

The row is the only record: ``JobsBackend.get_result``, the ``TaskContext`` a task
receives and the ``task_*`` signals all build their ``TaskResult`` here, from the row
as it stands, so every process sees the same thing.

Attempts: each failed attempt is an entry of ``attempt_log`` (written by the worker
that ran it, or by the one that recovered it from a dead worker); the attempt now
running, or the one that succeeded, is described by the row itself. So
``worker_ids`` has one entry per attempt and ``TaskResult.attempts`` (its length) is
right across retries.
"""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime
from typing import Any

from django.tasks import Task, TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend

from .exceptions import DjangoJobsError, TaskCancelled
from .models import ScheduledTask

Status = ScheduledTask.Status

STATUSES: dict[str, TaskResultStatus] = {
    Status.PENDING: TaskResultStatus.READY,  # enqueued, or waiting for its next retry
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.COMPLETED: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    # Django has no "cancelled": a cancelled task will never run, so it is finished and
    # did not succeed. Its errors end with a TaskCancelled entry that says so.
    Status.CANCELLED: TaskResultStatus.FAILED,
}


def _path(kind: type[BaseException]) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def task_result(row: ScheduledTask, task: Task, backend_alias: str) -> TaskResult:
    """The ``TaskResult`` of ``row``, whose function is ``task``'s."""
    worker_ids = worker_ids_of(row)
    result: TaskResult = TaskResult(
        task=task,
        id=str(row.pk),
        status=STATUSES[row.status],
        enqueued_at=row.created_at,
        started_at=first_started_at(row),
        finished_at=finished_at(row),
        last_attempted_at=last_attempted_at(row),
        args=row.args,
        kwargs=row.kwargs,
        backend=backend_alias,
        errors=errors_of(row),
        worker_ids=worker_ids,
    )
    if row.status == Status.COMPLETED:
        object.__setattr__(result, "_return_value", row.result)
    return result


def task_for_row(task: Task, row: ScheduledTask, backend_alias: str) -> Task:
    """``task`` with the priority, queue and run_after the row was enqueued with."""
    return task_with(task, row.priority, row.queue, backend_alias, run_after_of(row))


# Signals build a result two or three times per run: a new Task is validated by its
# backend each time, far slower than a cache hit, so the few variants in use are kept.
@functools.lru_cache(maxsize=512)
def task_with(task: Task, priority: int, queue_name: str, backend: str, run_after: datetime | None) -> Task:
    """A copy of ``task`` with these values; ``task`` itself when the backend's settings no
    longer accept them (a queue removed from QUEUES): reading a result must not fail on that."""
    try:
        return dataclasses.replace(task, priority=priority, queue_name=queue_name, backend=backend, run_after=run_after)
    except (InvalidTask, InvalidTaskBackend):
        return task


def run_after_of(row: ScheduledTask) -> datetime | None:
    """The requested not-before time: ``scheduled_at`` when later than the enqueue and
    not yet moved by a retry."""
    if row.attempt_log or row.created_at is None or row.scheduled_at <= row.created_at:
        return None
    return row.scheduled_at


def in_attempt(row: ScheduledTask) -> bool:
    """Whether the row itself describes an attempt not in ``attempt_log``."""
    return row.status in (Status.RUNNING, Status.COMPLETED)


def worker_ids_of(row: ScheduledTask) -> list[str]:
    ids = [str(entry.get("worker_id", "")) for entry in row.attempt_log]
    return ids + [row.worker_id] if in_attempt(row) else ids


def first_started_at(row: ScheduledTask) -> datetime | None:
    if row.attempt_log:
        return parse_time(row.attempt_log[0].get("started_at"))
    return row.started_at if in_attempt(row) else None


def last_attempted_at(row: ScheduledTask) -> datetime | None:
    if in_attempt(row):
        return row.started_at
    return parse_time(row.attempt_log[-1].get("started_at")) if row.attempt_log else None


def finished_at(row: ScheduledTask) -> datetime | None:
    times: dict[str, datetime | None] = {
        Status.COMPLETED: row.executed_at,
        Status.FAILED: row.failed_at,
        Status.CANCELLED: row.updated_at,
    }
    return times.get(row.status)


def parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def errors_of(row: ScheduledTask) -> list[TaskError]:
    """One error per failed attempt; a failed row with no attempt says why it never ran."""
    errors = [attempt_error(entry) for entry in row.attempt_log]
    if row.status == Status.FAILED and not errors:
        # e.g. a cron schedule whose job could not be enqueued: the row is failed at birth.
        errors.append(TaskError(exception_class_path=_path(DjangoJobsError),
                                traceback=row.traceback or row.error_message))
    if row.status == Status.CANCELLED:
        errors.append(TaskError(exception_class_path=_path(TaskCancelled),
                                traceback=f"TaskCancelled: task {row.pk} was cancelled before it ran\n"))
    return errors


def attempt_error(entry: dict[str, Any]) -> TaskError:
    # A recovered attempt (worker lost) has no traceback: its error message says what happened.
    return TaskError(
        exception_class_path=entry.get("exception_class") or _path(DjangoJobsError),
        traceback=entry.get("traceback") or entry.get("error") or "",
    )
