"""HTML fragments the task admin shows: badges, JSON, tracebacks, progress, timeline,
flow-control limits.

Each takes values already on the row (or read for the whole page), so rendering a list never queries.
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
from ..stats.flow import Limit
from ..timeline import task_timeline

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


def waiting_note(reason: str | None) -> SafeString | str:
    """Under a pending task's badge: the full limit that holds it back (``stats.flow``)."""
    return format_html('<div class="djj-waiting">{}</div>', reason) if reason else ""


def flow_limits(limits: list[Limit]) -> SafeString | str:
    """The limits a task is under, what each allows and what is used of it now; full ones stand out."""
    if not limits:
        return ""
    rows = format_html_join("", '<tr class="{}"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>', (
        ("djj-full" if limit.full else "", limit.label, limit.key, limit.allowed, limit.use) for limit in limits))
    return format_html('<table class="djj-table djj-flow-limits"><thead><tr><th>Limit</th><th>Key</th>'
                       "<th>At most</th><th>Now</th></tr></thead><tbody>{}</tbody></table>", rows)


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


# The timeline's colours, by the kind of its entries (``django_jobs.timeline``).
TIMELINE_CSS = {"enqueued": "created", "requeued": "created", "cron_fire": "cron", "due": "scheduled",
                "released": "scheduled", "started": "started", "completed": "completed", "retried": "failed",
                "failed": "failed", "recovered": "failed", "cancelled": "cancelled"}


def timeline_events(task: ScheduledTask) -> list[tuple[datetime, str, str]]:
    """(time, label, css) of the task's history, in time order (``timeline.task_timeline``)."""
    _, entries = task_timeline(task)
    return [(entry.at, entry.label, TIMELINE_CSS.get(entry.kind, "scheduled")) for entry in entries]


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
