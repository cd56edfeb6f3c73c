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

from . import validation
from .models import PausedQueue
from .validation import ALL_QUEUES


def pause_queue(name: str, *, by: Any = None, reason: str = "") -> bool:
    """Pause ``name``; return False if it was paused already. ``by`` is the user."""
    validation.queue(name)
    try:
        with transaction.atomic(using=router.db_for_write(PausedQueue)):
            PausedQueue.objects.create(queue=name, paused_by=by if getattr(by, "pk", None) else None, reason=reason)
    except IntegrityError:
        return False
    return True


def resume_queue(name: str) -> bool:
    """Resume ``name``; return False if it was not paused. Idle workers are woken."""
    from .enqueueing import notify_workers

    deleted, _ = PausedQueue.objects.filter(queue=name).delete()
    if deleted:
        notify_workers({name})  # delivered on commit
    return bool(deleted)


def pause_all(*, by: Any = None, reason: str = "") -> bool:
    """Stop claims from every queue, and cron firing; False if already paused. Queue pauses stay as they are."""
    try:
        with transaction.atomic(using=router.db_for_write(PausedQueue)):
            PausedQueue.objects.create(queue=ALL_QUEUES, paused_by=by if getattr(by, "pk", None) else None,
                                       reason=reason)
    except IntegrityError:
        return False
    return True


def resume_all() -> bool:
    """Undo ``pause_all``; False if it was not in force. Queues paused one by one stay paused."""
    from .enqueueing import notify_workers

    deleted, _ = PausedQueue.objects.filter(queue=ALL_QUEUES).delete()
    if deleted:
        notify_workers({ALL_QUEUES})  # every idle worker, whatever its queues, on commit
    return bool(deleted)


def all_paused() -> PausedQueue | None:
    """The global pause (who, when, why), or None."""
    return PausedQueue.objects.filter(queue=ALL_QUEUES).first()


def paused_queues() -> list[str]:
    """Names of the queues paused one by one, sorted (``all_paused()`` tells of a global pause)."""
    return list(PausedQueue.objects.exclude(queue=ALL_QUEUES).order_by("queue").values_list("queue", flat=True))


def paused_names() -> set[str]:
    """What a worker checks: the paused queues, with ``*`` among them when everything is paused."""
    return set(PausedQueue.objects.values_list("queue", flat=True))


def is_paused(name: str) -> bool:
    """Whether ``name`` is paused, by itself or by ``pause_all`` (``is_paused("*")``: only the latter)."""
    return PausedQueue.objects.filter(queue__in=(name, ALL_QUEUES)).exists()
