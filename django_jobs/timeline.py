"""A task's history in time order, for admin's task page and the API's ``tasks/{id}/events``.

Its event trail when it has one that reaches its present state (``django_jobs.events``);
else what the row itself records (``row``): the task written before the trail, with
``EVENTS`` off for a while, or by hand. Each entry has a ``kind``, a time and a label in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .models import ScheduledTask

Status = ScheduledTask.Status

# The kinds of event that can leave a task in each status.
STATES_AFTER: dict[str, set[str]] = {
    Status.PENDING: {"retried", "recovered", "released", "requeued"},
    Status.RUNNING: {"started"},
    Status.COMPLETED: {"completed"},
    Status.FAILED: {"failed"},
    Status.CANCELLED: {"cancelled"},
}

TRAIL_LABELS = {
    "started": "Started attempt {attempt} on {worker}",
    "completed": "Completed attempt {attempt}",
    "retried": "Attempt {attempt} failed, will retry: {message}",
    "failed": "Attempt {attempt} failed: {message}",
    "recovered": "Attempt {attempt} lost with worker {worker}; back to the queue",
    "released": "Given back unstarted by {worker}",
    "cancelled": "Cancelled",
    "requeued": "Retried by an operator",
}


@dataclass(frozen=True)
class Entry:
    """One moment of a task's history. ``kind``: ``enqueued``, ``cron_fire``, ``due``, and the
    trail's kinds (``started``, ``completed``, ``retried``, ``failed``, ``recovered``,
    ``released``, ``cancelled``, ``requeued``)."""

    at: datetime
    kind: str
    label: str
    attempt: int | None = None
    worker_id: str = ""
    message: str = ""


def task_timeline(task: ScheduledTask) -> tuple[str, list[Entry]]:
    """``("trail" | "row", entries)`` in time order."""
    events = list(task.events.order_by("at", "id"))
    if not events or events[-1].kind not in STATES_AFTER[task.status]:  # (a new task has none)
        return "row", row_entries(task)
    # The enqueue is the row itself (created_at), not an event row.
    trail = [Entry(task.created_at, "enqueued", "Enqueued"), *(trail_entry(event) for event in events)]
    if task.cron_fire_time:
        trail.append(Entry(task.cron_fire_time, "cron_fire", "Cron fire time"))
    if task.status == Status.PENDING:
        trail.append(Entry(task.scheduled_at, "due", "Due (not before)"))
    return "trail", sorted(trail, key=lambda entry: entry.at)


def trail_entry(event: Any) -> Entry:
    label = TRAIL_LABELS.get(event.kind, event.kind)
    worker = event.worker_id or "?"
    return Entry(event.at, event.kind, label.format(attempt=event.attempt, worker=worker, message=event.message),
                 attempt=event.attempt or None, worker_id=event.worker_id, message=event.message)


def row_entries(task: ScheduledTask) -> list[Entry]:
    """What the row records, in time order.

    Each failed attempt is in ``attempt_log``; the latest attempt, if it has not
    failed, is described by the row's own ``started_at`` / ``executed_at``.
    """
    logged = attempt_entries(task.attempt_log or [])
    logged_starts = {entry.at for entry in logged if entry.kind == "started"}
    candidates = [
        (task.created_at, "enqueued", "Enqueued", None, ""),
        (task.cron_fire_time, "cron_fire", "Cron fire time", None, ""),
        (task.scheduled_at, "due", "Due (not before)" if task.status == Status.PENDING else "Was due", None, ""),
        (task.executed_at, "completed", "Completed", task.attempt, task.worker_id),
    ]
    if task.started_at not in logged_starts:
        candidates.append((task.started_at, "started", f"Started attempt {task.attempt}", task.attempt,
                           task.worker_id))
    if not logged:  # a row from before attempts were logged: only its latest failure is known
        candidates.append((task.failed_at, "failed", failure_label(task), None, ""))
    if task.status == Status.CANCELLED:
        candidates.append((task.updated_at, "cancelled", "Cancelled", None, ""))
    entries = [Entry(when, kind, label, attempt, worker) for when, kind, label, attempt, worker in candidates if when]
    return sorted(entries + [entry for entry in logged if entry.at], key=lambda entry: entry.at)


def attempt_entries(attempt_log: list[dict[str, Any]]) -> list[Entry]:
    """Two entries per failed attempt: its start (with the worker) and its failure."""
    entries = []
    for item in attempt_log:
        number, worker = item.get("attempt"), item.get("worker_id") or ""
        shown = "?" if number is None else number
        attempt = number if isinstance(number, int) else None
        started, finished = parse_time(item.get("started_at")), parse_time(item.get("finished_at"))
        error = str(item.get("error", ""))
        if started:
            entries.append(Entry(started, "started", f"Started attempt {shown} on {worker or '?'}", attempt, worker))
        if finished:
            entries.append(Entry(finished, "failed", f"Attempt {shown} failed: {error}", attempt, worker, error))
    return entries


def parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):
        return None  # a hand-edited entry: leave it out rather than break the page


def failure_label(task: ScheduledTask) -> str:
    if task.status == Status.FAILED:
        return f"Failed for good (attempt {task.attempt})"
    if task.retry_count:
        return f"Attempt {task.retry_count} failed, retry scheduled"
    return "Failed (before an operator retried it)"
