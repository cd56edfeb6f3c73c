"""The job threads: each takes the next claimed task from the buffer, runs one
attempt of it, and hands the outcome to the recorder."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django.db import connections

from ..execution.executor import attempt
from ..resilience import reconnect, worker_error
from .buffer import TaskBuffer
from .holdings import Holdings
from .recorder import Recorder

# Seconds every job thread must have been on its current job before the tasks
# waiting in the buffer are given back to the queue for other workers.
PREFETCH_HOLD = 1.0


class JobThreads:
    def __init__(self, worker_id: str, count: int, buffer: TaskBuffer, holdings: Holdings,
                 recorder: Recorder) -> None:
        self.worker_id = worker_id
        self.count = count
        self.buffer = buffer
        self.holdings = holdings
        self.recorder = recorder
        self.threads: list[threading.Thread] = []
        self.started: dict[str, float] = {}  # job thread -> when its current job began

    def start(self, spawn: Callable[[Callable[[], None], str], threading.Thread]) -> None:
        self.threads = [spawn(self.run, f"django-jobs-job-{n}") for n in range(self.count)]

    def run(self) -> None:
        """One thread's body: until the buffer is closed and empty."""
        name = threading.current_thread().name
        while (task := self.buffer.take()) is not None:
            self.started[name] = time.monotonic()
            try:
                outcome = attempt(task, self.worker_id, enforce_timeout=True)
            except Exception as error:
                # Not the job (its exceptions are its outcome) but our plumbing around it:
                # hand the task back for another try rather than lose the thread.
                worker_error(self.worker_id, "run", error, f"task {task.pk} will be given back to the queue")
                self.holdings.give_back_later([task.pk])
                reconnect()
                continue
            finally:
                del self.started[name]
            self.recorder.put(task, outcome)
        connections.close_all()

    def all_stuck(self) -> bool:
        """Every job thread has been on its current job for PREFETCH_HOLD or longer."""
        starts = list(self.started.values())
        if len(starts) < self.count:
            return False
        return time.monotonic() - max(starts) >= PREFETCH_HOLD

    def wait(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for every thread to end; True if they all did."""
        deadline = time.monotonic() + grace
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)
