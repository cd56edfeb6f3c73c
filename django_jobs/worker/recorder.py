"""The recorder thread: writes outcomes as job threads hand them over, many per
statement when the queue is busy, and waits out a database outage while it may."""

from __future__ import annotations

import queue as queue_module
import threading
import time

from django.db import connections

from ..execution.outcome import Outcome
from ..execution.recording import record_outcomes
from ..models import ScheduledTask
from ..resilience import worker_error
from .holdings import Holdings
from .wakeup import Wakeup

# Outcomes written per statement at most (a busy queue writes many at once).
RECORD_BATCH = 500
# Seconds the recorder gets at shutdown to write the last outcomes.
RECORDER_GRACE = 60.0
# Seconds it gets at least after the jobs are done, even when they took the whole grace.
LAST_OUTCOMES_GRACE = 5.0


class Recorder:
    def __init__(self, worker_id: str, holdings: Holdings, wakeup: Wakeup) -> None:
        self.worker_id = worker_id
        self.holdings = holdings
        self.wakeup = wakeup
        self.outcomes: queue_module.Queue[tuple[ScheduledTask, Outcome] | None] = queue_module.Queue()
        self.thread: threading.Thread | None = None
        # Outcomes are retried until the database answers, except after this moment
        # (set at shutdown), so that a stop during an outage still ends in time.
        self.deadline: float | None = None

    def put(self, task: ScheduledTask, outcome: Outcome) -> None:
        self.outcomes.put((task, outcome))

    def run(self) -> None:
        """The thread's body: until ``finish``, take what is there and write it."""
        stopping = False
        while not stopping:
            batch = [self.outcomes.get()]
            while len(batch) < RECORD_BATCH and not self.outcomes.empty():
                batch.append(self.outcomes.get_nowait())
            stopping = None in batch
            items = [item for item in batch if item is not None]
            if items:
                self.record(items)
        connections.close_all()

    def record(self, items: list[tuple[ScheduledTask, Outcome]]) -> None:
        ids = [task.pk for task, _ in items]
        try:
            record_outcomes(items, self.worker_id, keep_trying=self.keep_trying, on_error=self.recording_error)
            written = True
        except Exception as error:
            written = False
            worker_error(self.worker_id, "record", error,
                         f"outcomes of task(s) {ids} not recorded; they will be released")
        self.holdings.recorded(ids, written=written)
        self.wakeup.set()  # a slot is free: the claim loop may take more

    def recording_error(self, error: BaseException, pause: float) -> None:
        worker_error(self.worker_id, "record", error, f"retrying in {pause:.1f} s")

    def keep_trying(self) -> bool:
        """Outcomes wait for the database to come back: a lost outcome means the job runs again."""
        return self.deadline is None or time.monotonic() < self.deadline

    def stop_trying_after(self, seconds: float) -> None:
        """From shutdown on, an outage may hold the last outcomes only this long."""
        self.deadline = time.monotonic() + seconds

    def finish(self) -> None:
        """Write what is queued (no more comes), then end the thread."""
        self.outcomes.put(None)
        if self.thread is not None:
            self.deadline = max(self.deadline or 0.0, time.monotonic() + LAST_OUTCOMES_GRACE)
            self.thread.join(RECORDER_GRACE)
