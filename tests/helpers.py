"""Small helpers shared by test modules: receivers connected for one block only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.dispatch import Signal


@contextmanager
def connected(receiver: Callable[..., Any], *signals: Signal, sender: Any = None) -> Iterator[None]:
    """``receiver`` listens to each of ``signals`` inside the block, and to none of them after it,
    even when the block fails."""
    for signal in signals:
        signal.connect(receiver, sender=sender, weak=False)
    try:
        yield
    finally:
        for signal in signals:
            signal.disconnect(receiver, sender=sender)


def everything(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@contextmanager
def capture_signal(*signals: Signal, pick: Callable[..., Any] = everything, sender: Any = None) -> Iterator[list]:
    """Collect what ``pick`` makes of each sending of ``signals`` inside the block, in order.

    ``pick`` gets what a receiver gets (``signal``, ``sender`` and the signal's arguments) and
    by default keeps all of it: ``with capture_signal(job_cancelled, pick=lambda task, **_: task.pk) as pks:``.
    """
    calls: list = []

    def receiver(**kwargs: Any) -> None:
        calls.append(pick(**kwargs))

    with connected(receiver, *signals, sender=sender):
        yield calls
