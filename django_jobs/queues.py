"""Pausing and resuming queues: workers claim nothing from a paused queue.

A pause is a row in ``PausedQueue``; the claim statement itself excludes paused
queues, so every worker honours a pause from its next claim on. Tasks already
claimed keep running; a worker gives back the ones still waiting in its buffer
within one poll interval. ``pause_all`` is a row under the reserved name ``*``
(no queue may be called so): it stops claims from every queue and cron firing;
missed cron fires run once after ``resume_all``, as after any downtime.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, router, transaction
from django.utils import timezone

from . import validation
from .conf import jobs_settings
from .models import PausedQueue, ScheduledTask, TaskEvent
from .notify import wake_workers
from .users import with_users
from .validation import ALL_QUEUES


def pause_queue(name: str, *, by: Any = None, reason: str = "") -> bool:
    """Pause ``name``; return False if it was paused already. ``by`` is the user."""
    validation.queue(name)
    return add_pause(name, by, reason)


def add_pause(name: str, by: Any, reason: str) -> bool:
    user = by if getattr(by, "pk", None) else None
    try:
        with transaction.atomic(using=router.db_for_write(PausedQueue)):
            PausedQueue.objects.create(queue=name, paused_by=user, reason=reason)
            record_event(TaskEvent.Kind.PAUSED, name, reason, user)
    except IntegrityError:
        return False
    return True


def record_event(kind: str, queue: str, reason: str = "", user: Any = None) -> None:
    """A queue's pause or resume on the event trail (tasks' events are written by triggers)."""
    if jobs_settings.EVENTS:
        who = f"by {user}" if user is not None else ""
        message = "; ".join(part for part in (who, reason) if part)
        TaskEvent.objects.create(kind=kind, queue=queue, at=timezone.now(), message=message)


def resume_queue(name: str) -> bool:
    """Resume ``name``; return False if it was not paused. Idle workers are woken."""
    with transaction.atomic(using=router.db_for_write(PausedQueue)):
        deleted, _ = PausedQueue.objects.filter(queue=name).delete()
        if deleted:
            record_event(TaskEvent.Kind.RESUMED, name)
            wake_workers({name}, router.db_for_write(ScheduledTask))  # delivered on commit
    return bool(deleted)


def pause_all(*, by: Any = None, reason: str = "") -> bool:
    """Stop claims from every queue, and cron firing; False if already paused. Queue pauses stay as they are."""
    return add_pause(ALL_QUEUES, by, reason)


def resume_all() -> bool:
    """Undo ``pause_all``; False if it was not in force. Queues paused one by one stay paused."""
    with transaction.atomic(using=router.db_for_write(PausedQueue)):
        deleted, _ = PausedQueue.objects.filter(queue=ALL_QUEUES).delete()
        if deleted:
            record_event(TaskEvent.Kind.RESUMED, ALL_QUEUES)
            wake_workers({ALL_QUEUES}, router.db_for_write(ScheduledTask))  # every idle worker, whatever its queues, on commit
    return bool(deleted)


def all_paused() -> PausedQueue | None:
    """The global pause (who, when, why), or None."""
    return with_users(PausedQueue.objects.filter(queue=ALL_QUEUES), "paused_by").first()


def paused_queues() -> list[str]:
    """Names of the queues paused one by one, sorted (``all_paused()`` tells of a global pause)."""
    return list(PausedQueue.objects.exclude(queue=ALL_QUEUES).order_by("queue").values_list("queue", flat=True))


def paused_names() -> set[str]:
    """What a worker checks: the paused queues, with ``*`` among them when everything is paused."""
    return set(PausedQueue.objects.values_list("queue", flat=True))


def is_paused(name: str) -> bool:
    """Whether ``name`` is paused, by itself or by ``pause_all`` (``is_paused("*")``: only the latter)."""
    return PausedQueue.objects.filter(queue__in=(name, ALL_QUEUES)).exists()
