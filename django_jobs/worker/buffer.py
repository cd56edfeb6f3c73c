"""Claimed tasks waiting for a job thread, in claim order.

A worker claims a batch in one statement and keeps what its threads cannot start
at once here. Tasks in the buffer are held (``running`` under our worker id) but
not started, so they can be given back untouched: when every thread is stuck on a
slow job for longer than ``hold_limit``, the waiting tasks are released for other
workers instead of waiting behind it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models import ScheduledTask


class TaskBuffer:
    def __init__(self) -> None:
        self._waiting: deque[ScheduledTask] = deque()
        self._condition = threading.Condition()
        self._closed = False

    def put(self, tasks: list[ScheduledTask]) -> None:
        with self._condition:
            self._waiting.extend(tasks)
            self._condition.notify(len(tasks))

    def take(self) -> ScheduledTask | None:
        """The next task to start; None once the buffer is closed and empty."""
        with self._condition:
            while not self._waiting:
                if self._closed:
                    return None
                self._condition.wait()
            return self._waiting.popleft()

    def take_all(self) -> list[ScheduledTask]:
        """Remove every waiting task (to release them); none of them has started."""
        with self._condition:
            tasks = list(self._waiting)
            self._waiting.clear()
            return tasks

    def snapshot(self) -> list[ScheduledTask]:
        """The waiting tasks, in order, left in place."""
        with self._condition:
            return list(self._waiting)

    def take_queues(self, queues: set[str]) -> list[ScheduledTask]:
        """Remove the waiting tasks of ``queues`` (paused meanwhile), keeping the order of the rest."""
        with self._condition:
            taken = [task for task in self._waiting if task.queue in queues]
            if taken:
                self._waiting = deque(task for task in self._waiting if task.queue not in queues)
            return taken

    def close(self) -> None:
        """Let threads finish what is waiting, then stop."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def __len__(self) -> int:
        return len(self._waiting)
