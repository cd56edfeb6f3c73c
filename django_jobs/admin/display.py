"""HTML fragments the task admin shows: badges, JSON, tracebacks, progress, timeline.

Each takes values already on the row, so rendering a list never queries.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.text import Truncator

from ..models import ScheduledTask

Status = ScheduledTask.Status


def status_badge(task: ScheduledTask) -> SafeString:
    """The status as a coloured badge; a pending task waiting for a retry says so."""
    if task.status == Status.PENDING and task.retry_count:
        return format_html('<span class="djj-badge djj-retrying" title="pending: attempt {} waits for its time">'
                           "retry {}</span>", task.attempt, task.retry_count)
    label = task.get_status_display()
    percent = progress_percent(task.progress)
    if task.status == Status.RUNNING and percent is not None:
        label = f"{label} {percent:.0f}%"
    return format_html('<span class="djj-badge djj-{}">{}</span>', task.status, label)


def attempts(task: ScheduledTask) -> SafeString:
    title = f"attempt {task.attempt} of at most {task.max_retries + 1}"
    return format_html('<span title="{}">{}/{}</span>', title, task.retry_count, task.max_retries)


def short_time(value: datetime | None, now: datetime | None = None) -> SafeString | str:
    """'14:25:22' today, 'Nov 23, 14:25' this year, else '2025-11-23 14:25'; in full on hover."""
    if value is None:
        return ""
    now = now or timezone.now()
    if timezone.is_aware(value):
        value, now = timezone.localtime(value), timezone.localtime(now)
    if value.date() == now.date():
        text = date_format(value, "H:i:s")
    else:
        text = date_format(value, "M j, H:i" if value.year == now.year else "Y-m-d H:i")
    return format_html('<time datetime="{}" title="{}">{}</time>', value.isoformat(), local_time(value), text)


def error_summary(task: ScheduledTask) -> SafeString | str:
    """The first line of the error, cut short; the whole message on hover."""
    if not task.error_message:
        return ""
    first_line = task.error_message.strip().splitlines()[0] if task.error_message.strip() else ""
    return format_html('<span class="djj-error-cell" title="{}">{}</span>', task.error_message,
                       Truncator(first_line).chars(80))


def overview(items: list[tuple[str, Any]]) -> SafeString:
    """Key facts of a task as a compact grid of (label, value) pairs."""
    cells = format_html_join("", '<div class="djj-fact"><dt>{}</dt><dd>{}</dd></div>',
                             ((label, value if value not in (None, "") else "—") for label, value in items))
    return format_html('<dl class="djj-overview">{}</dl>', cells)


def task_duration(task: ScheduledTask, now: datetime | None = None) -> str:
    """Run time of the latest attempt: finished, failed, or still running."""
    if not task.started_at:
        return ""
    ends: dict[str, datetime | None] = {Status.COMPLETED: task.executed_at, Status.FAILED: task.failed_at}
    end = ends.get(task.status)
    if task.status == Status.RUNNING:
        return f"{human_duration((now or timezone.now()) - task.started_at)} so far"
    return human_duration(end - task.started_at) if end and end >= task.started_at else ""


def human_duration(value: timedelta | None) -> str:
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def pretty_json(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, cls=DjangoJSONEncoder)
    return format_html('<pre class="djj-code">{}</pre>', text)


def preformatted(text: str, css: str = "djj-code") -> SafeString | str:
    return format_html('<pre class="{}">{}</pre>', css, text) if text else ""


def progress_percent(progress: Any) -> float | None:
    """``done / total`` as a percentage, if the job reported a usable total."""
    if not isinstance(progress, dict):
        return None
    done, total = progress.get("done"), progress.get("total")
    if not isinstance(done, (int, float)) or not isinstance(total, (int, float)) or total <= 0:
        return None
    return max(0.0, min(100.0, 100.0 * done / total))


def progress_bar(progress: Any) -> SafeString | str:
    if not isinstance(progress, dict):
        return ""
    percent = progress_percent(progress)
    done, total = progress.get("done"), progress.get("total")
    if percent is None:
        return format_html('<span class="djj-quiet">{} done (no total reported)</span>', done)
    return format_html(
        '<div class="djj-progress" role="progressbar" aria-valuenow="{}" aria-valuemin="0" aria-valuemax="100">'
        '<div class="djj-progress-bar" style="width: {}%"></div></div>'
        '<span class="djj-progress-label">{} / {} ({}%)</span>',
        f"{percent:.0f}", f"{percent:.1f}", done, total, f"{percent:.0f}",
    )


def timeline_events(task: ScheduledTask) -> list[tuple[datetime, str, str]]:
    """(time, label, css) of the task's history, in time order: its event trail, or, for a
    row whose trail does not reach its present state (written before the trail, with
    ``EVENTS`` off for a while, or by hand), what the row itself records."""
    events = list(task.events.order_by("at", "id"))
    if not events or events[-1].kind not in STATES_AFTER[task.status]:  # (a new task has none)
        return row_events(task)
    # The enqueue is the row itself (created_at), not an event row.
    trail = [(task.created_at, "Enqueued", "created"), *(trail_event(event) for event in events)]
    extra = [(task.cron_fire_time, "Cron fire time", "cron")]
    if task.status == Status.PENDING:
        extra.append((task.scheduled_at, "Due (not before)", "scheduled"))
    return sorted(trail + [event for event in extra if event[0]], key=lambda event: event[0])


# The kinds of event that can leave a task in each status.
STATES_AFTER = {
    Status.PENDING: {"retried", "recovered", "released", "requeued"},
    Status.RUNNING: {"started"},
    Status.COMPLETED: {"completed"},
    Status.FAILED: {"failed"},
    Status.CANCELLED: {"cancelled"},
}

TRAIL_LABELS = {
    "started": ("Started attempt {attempt} on {worker}", "started"),
    "completed": ("Completed attempt {attempt}", "completed"),
    "retried": ("Attempt {attempt} failed, will retry: {message}", "failed"),
    "failed": ("Attempt {attempt} failed: {message}", "failed"),
    "recovered": ("Attempt {attempt} lost with worker {worker}; back to the queue", "failed"),
    "released": ("Given back unstarted by {worker}", "scheduled"),
    "cancelled": ("Cancelled", "cancelled"),
    "requeued": ("Retried by an operator", "created"),
}


def trail_event(event: Any) -> tuple[datetime, str, str]:
    label, css = TRAIL_LABELS.get(event.kind, (event.kind, "scheduled"))
    return event.at, label.format(attempt=event.attempt, worker=event.worker_id or "?", message=event.message), css


def row_events(task: ScheduledTask) -> list[tuple[datetime, str, str]]:
    """(time, label, css) of what the row records, in time order.

    Each failed attempt is in ``attempt_log``; the latest attempt, if it has not
    failed, is described by the row's own ``started_at`` / ``executed_at``.
    """
    logged = attempt_events(task.attempt_log or [])
    logged_starts = {when for when, _, css in logged if css == "started"}
    candidates = [
        (task.created_at, "Enqueued", "created"),
        (task.cron_fire_time, "Cron fire time", "cron"),
        (task.scheduled_at, "Due (not before)" if task.status == Status.PENDING else "Was due", "scheduled"),
        (task.executed_at, "Completed", "completed"),
    ]
    if task.started_at not in logged_starts:
        candidates.append((task.started_at, f"Started attempt {task.attempt}", "started"))
    if not logged:  # a row from before attempts were logged: only its latest failure is known
        candidates.append((task.failed_at, failure_label(task), "failed"))
    if task.status == Status.CANCELLED:
        candidates.append((task.updated_at, "Cancelled", "cancelled"))
    events = [(when, label, css) for when, label, css in candidates + logged if when]
    return sorted(events, key=lambda event: event[0])


def attempt_events(attempt_log: list[dict]) -> list[tuple[datetime | None, str, str]]:
    """Two events per failed attempt: its start (with the worker) and its failure."""
    events = []
    for entry in attempt_log:
        number, worker = entry.get("attempt", "?"), entry.get("worker_id") or "?"
        events.append((parse_time(entry.get("started_at")), f"Started attempt {number} on {worker}", "started"))
        events.append((parse_time(entry.get("finished_at")), f"Attempt {number} failed: {entry.get('error', '')}",
                       "failed"))
    return events


def parse_time(value: str | None) -> datetime | None:
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


def timeline(task: ScheduledTask) -> SafeString:
    events = timeline_events(task)
    if not events:
        return format_html("{}", "")
    first = events[0][0]
    items = format_html_join("", EVENT, (
        (css, when.isoformat(), local_time(when), label, offset(when - first)) for when, label, css in events
    ))
    return format_html('<ol class="djj-timeline">{}</ol>', items)


EVENT = ('<li class="djj-event djj-event-{}"><time datetime="{}">{}</time> <strong>{}</strong> '
         '<span class="djj-quiet">{}</span></li>')


def offset(delta: timedelta) -> str:
    return f"+{human_duration(delta)}" if delta.total_seconds() > 0 else ""


def local_time(value: datetime | None) -> str:
    if value is None:
        return ""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return date_format(value, "Y-m-d H:i:s T" if timezone.is_aware(value) else "Y-m-d H:i:s")
