"""Live workers: their heartbeats, as the task list, the dashboard and their own admin show them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib import admin
from django.db.models import Count
from django.utils import timezone
from django.utils.html import format_html

from ..conf import jobs_settings
from ..models import ScheduledTask, Worker
from ..stats.live import is_stalled
from .display import human_duration

LIVE, LATE, STALE, STALLED = "live", "late", "stale", "stalled"
LATE_AFTER_BEATS = 3  # missed this many heartbeats: late; HEARTBEAT_TIMEOUT: stale (tasks get recovered)


def liveness(last_heartbeat: datetime, now: datetime) -> str:
    """``live``; ``late`` (missed a few beats); ``stale`` (presumed dead, its tasks are recovered)."""
    silence = (now - last_heartbeat).total_seconds()
    if silence >= jobs_settings.HEARTBEAT_TIMEOUT:
        return STALE
    if silence >= LATE_AFTER_BEATS * jobs_settings.HEARTBEAT_INTERVAL:
        return LATE
    return LIVE


def worker_state(worker: Worker, now: datetime) -> str:
    """``liveness``, or ``stalled``: beating, holding tasks, and no outcome written for STALLED_AFTER."""
    state = liveness(worker.last_heartbeat, now)
    if state == LIVE and is_stalled(worker, now):
        return STALLED
    return state


def live_worker_ids(now: datetime | None = None) -> set[str]:
    cutoff = (now or timezone.now()) - timedelta(seconds=jobs_settings.HEARTBEAT_TIMEOUT)
    return set(Worker.objects.live(cutoff).values_list("worker_id", flat=True))


def running_counts() -> dict[str, int]:
    """Running tasks per worker id, in one grouped query."""
    rows = ScheduledTask.objects.filter(status=ScheduledTask.Status.RUNNING).order_by().values("worker_id")
    return {row["worker_id"]: row["count"] for row in rows.annotate(count=Count("pk"))}


@dataclass(frozen=True)
class WorkerState:
    """A worker as the dashboard shows it."""

    worker_id: str
    hostname: str
    pid: int
    concurrency: int
    queue_names: str
    state: str
    silence: str
    running: int


def workers_with_state(now: datetime) -> list[WorkerState]:
    """Every registered worker, with its liveness and how many tasks it runs."""
    running = running_counts()
    return [
        WorkerState(worker_id=worker.worker_id, hostname=worker.hostname, pid=worker.pid,
                    concurrency=worker.concurrency, queue_names=", ".join(q for q in worker.queues.split(",") if q),
                    state=worker_state(worker, now), silence=silence_text(now - worker.last_heartbeat),
                    running=running.get(worker.worker_id, 0))
        for worker in Worker.objects.order_by("hostname", "worker_id")
    ]


def silence_text(silence: timedelta) -> str:
    return "just now" if silence.total_seconds() < 1 else f"{human_duration(silence)} ago"


def state_badge(state: str) -> str:
    return format_html('<span class="djj-badge djj-worker-{}">{}</span>', state, state)


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the workers themselves."""

    list_display = ("worker_id", "state", "last_heartbeat", "holding", "progressed_at", "hostname", "pid",
                    "queue_list", "concurrency", "started_at")
    search_fields = ("worker_id", "hostname")
    ordering = ("hostname", "worker_id")

    class Media:
        css = {"all": ("django_jobs/admin.css",)}

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="state")
    def state(self, worker: Worker) -> str:
        return state_badge(worker_state(worker, timezone.now()))

    @admin.display(description="queues", ordering="queues")
    def queue_list(self, worker: Worker) -> str:
        return worker.queues or "all"
