"""Pausing and resuming queues: workers claim nothing from a paused queue.

A pause is a row in ``PausedQueue``; the claim statement itself excludes paused
queues, so every worker honours a pause from its next claim on. Tasks already
claimed keep running; a worker gives back the ones still waiting in its buffer
within one poll interval.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, router, transaction

from . import validation
from .models import PausedQueue


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


def paused_queues() -> list[str]:
    """Names of the paused queues, sorted."""
    return list(PausedQueue.objects.order_by("queue").values_list("queue", flat=True))


def is_paused(name: str) -> bool:
    return PausedQueue.objects.filter(queue=name).exists()
