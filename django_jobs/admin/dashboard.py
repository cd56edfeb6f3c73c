"""The jobs dashboard: an admin page with the queue's state at a glance.

Served by ``ScheduledTaskAdmin`` at ``<admin>/django_jobs/scheduledtask/dashboard/``
(URL name ``admin:django_jobs_dashboard``) and linked from the app index and the
task list. Anyone who may view tasks may view it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone

from ..conf import jobs_settings
from ..models import PausedQueue, ScheduledTask
from ..queues import all_paused
from ..stats import counts, flow, history, live
from ..users import with_users
from ..validation import ALL_QUEUES
from . import charts
from .display import human_duration
from .queue_controls import can_control
from .workers import STALE, WorkerState, workers_with_state

REFRESH_CHOICES = (0, 10, 30, 60)  # seconds; 0 = off
# Browsers refresh this page: each status is counted up to here, not through the whole table.
COUNT_CAP = 100_000


def dashboard_view(model_admin):
    def dashboard(request):
        if not model_admin.has_view_permission(request):
            raise PermissionDenied
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Jobs dashboard",
            "opts": ScheduledTask._meta,
            **dashboard_context(choice(request, "hours", history.WINDOWS, history.DEFAULT_WINDOW),
                                choice(request, "refresh", REFRESH_CHOICES, 0)),
            "can_pause": can_control(request.user, "pause"),
            "can_resume": can_control(request.user, "resume"),
        }
        return TemplateResponse(request, "admin/django_jobs/dashboard.html", context)

    return dashboard


def choice(request, name: str, allowed, default: int) -> int:
    try:
        value = int(request.GET.get(name, default))
    except ValueError:
        return default
    return value if value in allowed else default


def dashboard_context(hours: int, refresh: int) -> dict[str, Any]:
    now = timezone.now()
    window = history.Window.ending_at(now, hours)
    by_status = counts.status_counts(cap=COUNT_CAP)
    workers = workers_with_state(now)
    queues = with_text(queue_rows(now), "waiting")
    chart = charts.throughput_chart(history.throughput(window), window.bucket)
    return {
        "now": now,
        "hours": hours,
        "hour_choices": list(history.WINDOWS),
        "bucket_minutes": int(window.bucket.total_seconds() // 60),
        "refresh": refresh,
        "refresh_choices": REFRESH_CHOICES,
        "status_tiles": status_tiles(by_status, queues, workers),
        "total": sum(by_status.values()),
        "queues": queues,
        "paused_count": sum(queue["paused"] is not None for queue in queues),
        "all_paused": all_paused(),
        "chart": chart,
        "success_rate": success_rate(chart),
        "slowest": with_text(history.slowest_jobs(window), "average", "longest"),
        "failing": history.failing_jobs(window),
        "workers": workers,
        "busy_keys": busy_key_rows(),
        "stale_workers": sum(worker.state == STALE for worker in workers),
        "heartbeat_timeout": jobs_settings.HEARTBEAT_TIMEOUT,
        "stalled_after": jobs_settings.STALLED_AFTER,
    }


def with_text(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Add ``<key>_text``, a readable form of each duration ``key``."""
    return [{**row, **{f"{key}_text": human_duration(row[key]) for key in keys}} for row in rows]


def queue_rows(now: datetime) -> list[dict[str, Any]]:
    """``live.queue_depth`` for the table: how long the oldest due task waits, and the
    PausedQueue row (who, when, why) of a paused queue, else None."""
    paused = {row.queue: row for row in with_users(PausedQueue.objects.all(), "paused_by") if row.queue != ALL_QUEUES}
    return [{"queue": depth.queue, "due": depth.due, "later": depth.scheduled, "running": depth.running,
             "waiting": now - depth.oldest_due if depth.oldest_due else None, "paused": paused.get(depth.queue)}
            for depth in live.queue_depth(now, paused=set(paused))]


# The task list's filter that shows a busy key's tasks, by the key's kind.
KEY_FILTERS = {flow.CONCURRENCY: "concurrency_key", flow.RATE: "rate_key", flow.QUEUE: "queue"}


def busy_key_rows() -> list[dict[str, Any]]:
    """``flow.busiest_keys`` for the table, each with the query string listing its tasks."""
    return [{**asdict(busy), "active": busy.active, "tasks_query": urlencode({KEY_FILTERS[busy.kind]: busy.key})}
            for busy in flow.busiest_keys()]


def status_tiles(by_status: dict[str, int], queues: list[dict[str, Any]],
                 workers: list[WorkerState]) -> list[dict[str, Any]]:
    due, later = sum(queue["due"] for queue in queues), sum(queue["later"] for queue in queues)
    beating = sum(worker.state != STALE for worker in workers)
    notes = {
        "pending": f"{due} due now · {later} later",
        "running": f"on {beating} live worker{'' if beating == 1 else 's'}",
        "failed": "out of retries",
    }
    return [{"status": status, "label": label, "count": by_status[status], "note": notes.get(status, ""),
             "shown": count_text(by_status[status])} for status, label in ScheduledTask.Status.choices]


def count_text(count: int) -> str:
    return f"{COUNT_CAP:,}+" if count > COUNT_CAP else f"{count:,}"


def success_rate(chart: charts.Chart) -> float | None:
    finished = chart.total_completed + chart.total_failed
    return round(100 * chart.total_completed / finished, 1) if finished else None
