"""Rows as JSON. ``schemas.py`` holds the JSON Schema of each shape; the tests check
every answer against it, so the two cannot drift apart unnoticed."""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from .. import cron
from ..models import CronSchedule, PausedQueue, ScheduledTask
from ..stats import flow

UPCOMING = 5


def seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def task_summaries(tasks: list[ScheduledTask]) -> list[dict[str, Any]]:
    """A page of ``task_summary``: why its pending tasks wait is read for all of them at once."""
    waiting = flow.waiting_reasons(tasks)
    return [task_summary(task, waiting.get(task.pk)) for task in tasks]


def task_summary(task: ScheduledTask, waiting: str | None) -> dict[str, Any]:
    """What a list shows of a task: everything but the traceback and the attempt history.

    ``waiting``: the task's ``stats.flow.waiting_reason``, read by the caller (for a
    whole page at once)."""
    duration = task.duration
    concurrency, rate = flow.own_limits(task)
    return {
        "id": task.pk,
        "job": task.identifier,
        "status": task.status,
        "queue": task.queue,
        "priority": task.priority,
        "description": task.description,
        "args": task.args,
        "kwargs": task.kwargs,
        "scheduled_at": task.scheduled_at,
        "attempt": task.attempt,
        "retry_count": task.retry_count,
        "max_retries": task.max_retries,
        "started_at": task.started_at,
        "executed_at": task.executed_at,
        "failed_at": task.failed_at,
        "duration_ms": None if duration is None else round(duration.total_seconds() * 1000, 3),
        "error_message": task.error_message,
        "result": task.result,
        "progress": task.progress,
        "worker_id": task.worker_id,
        "unique_key": task.unique_key,
        "concurrency_key": task.concurrency_key,
        "concurrency_limit": concurrency,
        "rate_key": task.rate_key,
        "rate": None if rate is None else flow.rate_text(rate.limit, rate.period),
        "waiting": waiting,
        "owner": owner_name(task),
        "cron_schedule": task.cron_schedule_id,
        "cron_fire_time": task.cron_fire_time,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }


def task_detail(task: ScheduledTask) -> dict[str, Any]:
    """Everything about one task, with the traceback and one entry per failed attempt."""
    return {
        **task_summary(task, flow.waiting_reason(task)),
        "traceback": task.traceback,
        "attempts": task.attempt_log,
        "retry_delay": seconds(task.retry_delay),
        "backoff": task.backoff,
        "timeout": seconds(task.timeout),
    }


def schedule(row: CronSchedule) -> dict[str, Any]:
    return {
        "id": row.pk,
        "name": row.name,
        "job": row.job_name,
        "expression": row.expression,
        "timezone": row.timezone,
        "args": row.args,
        "kwargs": row.kwargs,
        "queue": row.queue,
        "priority": row.priority,
        "enabled": row.enabled,
        "description": row.description,
        "metadata": row.metadata,
        "last_run": row.last_run,
        "next_run": row.next_run,
        "overlap": row.overlap,
        "skipped_fires": row.skipped_fires,
        "last_skipped_at": row.last_skipped_at,
        "waiting_fires": row.waiting_fires,
        "upcoming": upcoming(row),
        "owner": owner_name(row),
        "declared_in_code": row.declared_in_code,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def upcoming(row: CronSchedule) -> list[Any]:
    """The next fire times (empty when disabled), so a client sees what it set up."""
    if not row.enabled:
        return []
    try:
        return cron.upcoming(row.expression, row.timezone, timezone.now(), UPCOMING)
    except (ValidationError, ValueError):  # a row edited behind the model's back
        return []


def paused_queue(row: PausedQueue) -> dict[str, Any]:
    return {
        "queue": row.queue,
        "paused_at": row.paused_at,
        "paused_by": row.paused_by.get_username() if row.paused_by is not None else None,
        "reason": row.reason,
    }


def job(name: str, registered: Any) -> dict[str, Any]:
    """A registered job: what a client needs to schedule it."""
    return {
        "name": name,
        "queue": registered.resolved_queue,
        "priority": registered.priority,
        "max_retries": registered.resolved_max_retries,
        "timeout": seconds(registered.timeout),
        "cron": registered.cron,
        "parameters": [str(parameter.replace(annotation=inspect.Parameter.empty))
                       for parameter in registered.call_signature.parameters.values()],
    }


def owner_name(row: Any) -> str | None:
    """The username of a task's or schedule's owner; None for one without."""
    return row.owner.get_username() if row.owner is not None else None
