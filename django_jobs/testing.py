"""Helpers for tests of projects that use django_jobs."""

from __future__ import annotations

from django.utils import timezone

from .execution.executor import inline_worker_id, run_claimed
from .models import ScheduledTask
from .worker import claiming

# Enough to drain any sane test backlog; a job that enqueues itself forever stops here.
MAX_ROUNDS = 10_000


def run_pending_jobs(queue: str | None = None) -> list[ScheduledTask]:
    """Run every due task in this process, in claim order, and return them (refreshed).

    Tasks that a job enqueues while this runs are run too, if due. Retries scheduled
    in the future are not due, so a failing task is run once per call.
    """
    worker_id = inline_worker_id()
    queues = [queue] if queue else None
    ran: list[ScheduledTask] = []
    seen: set[int] = set()
    for _ in range(MAX_ROUNDS):
        tasks = claiming.claim(worker_id, queues, limit=100, now=timezone.now())
        if not tasks:
            break
        for task in tasks:
            run_claimed(task, worker_id)
            if task.pk not in seen:
                seen.add(task.pk)
                ran.append(task)
    return ran
