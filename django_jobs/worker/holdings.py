"""The tasks one worker holds (``running`` under its id), and giving them back.

Every thread of the worker touches this: the claim loop adds, the recorder removes,
the heartbeat reports the count and releases what could not be recorded, shutdown
releases the rest. A task is held from its claim until its outcome is written; one
that ran but whose outcome could not be written is ``unrecorded`` and is given back
(at-least-once) rather than left ``running`` under a worker that still beats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from django.utils import timezone

from ..models import ScheduledTask

logger = logging.getLogger(__name__)


class Holdings:
    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.held: set[int] = set()          # claimed, not yet recorded
        self.unrecorded: set[int] = set()    # ran, but the outcome could not be written
        self.lock = threading.Lock()
        self.last_progress = time.monotonic()  # an outcome written, or nothing held

    def claimed(self, ids: Iterable[int]) -> None:
        with self.lock:
            self.held.update(ids)

    def recorded(self, ids: list[int], *, written: bool) -> None:
        """Outcomes of ``ids`` were handed to the database: written, or given up on."""
        with self.lock:
            self.held.difference_update(ids)
            if not written:
                self.unrecorded.update(ids)
        self.last_progress = time.monotonic()

    def give_back_later(self, ids: list[int]) -> None:
        """Held, but not going to be recorded: the heartbeat thread releases them."""
        with self.lock:
            self.unrecorded.update(ids)

    def all_ids(self) -> set[int]:
        with self.lock:
            return self.held | self.unrecorded

    def count(self) -> int:
        return len(self.all_ids())

    def has_unrecorded(self) -> bool:
        return bool(self.unrecorded)

    def stalled_for(self) -> float:
        """Seconds since an outcome was last written while holding tasks (0 when holding none)."""
        if not self.count():
            self.last_progress = time.monotonic()
            return 0.0
        return time.monotonic() - self.last_progress

    # -- giving back -----------------------------------------------------------------------
    def release(self, ids: list[int]) -> int:
        """Give held tasks back to ``pending`` and stop holding them; their attempt does not count."""
        if not ids:
            return 0
        released = ScheduledTask.objects.filter(pk__in=ids).release(self.worker_id, timezone.now())
        with self.lock:
            self.held.difference_update(ids)
            self.unrecorded.difference_update(ids)
        return released

    def release_all(self) -> int:
        """Return every task we will not finish to ``pending`` (at-least-once)."""
        return self.release(list(self.all_ids()))

    def release_unrecorded(self) -> None:
        # Otherwise such a task would stay ``running`` under a worker that still beats.
        with self.lock:
            unrecorded = list(self.unrecorded)
        self.release(unrecorded)

    def release_orphans(self) -> None:
        """Give back rows marked ours by a claim that reported an error.

        A connection lost during COMMIT leaves the claim's outcome unknown: it may have
        committed. Such rows are ``running`` under this worker, which keeps beating, yet
        no thread holds them; nothing else would ever run them. Only the claim loop
        claims, and it calls this, so every row of ours it does not know is such a row.
        """
        orphans = ScheduledTask.objects.held_by(self.worker_id).exclude(pk__in=list(self.all_ids()))
        if released := orphans.release(self.worker_id, timezone.now()):
            logger.warning("%d task(s) claimed by a claim whose commit went unanswered returned to the queue",
                           released)
