"""The cron thread: once a second, fire the schedules that are due."""

from __future__ import annotations

import threading

from django.db import connections

from .. import scheduler
from ..queues import is_paused
from ..resilience import reconnect, worker_error
from ..validation import ALL_QUEUES
from .wakeup import Wakeup

# Cron has minute resolution; a tick a second fires within a second of the time.
CRON_TICK = 1.0


class CronTicker:
    def __init__(self, worker_id: str, wakeup: Wakeup, stopping: threading.Event, finished: threading.Event) -> None:
        self.worker_id = worker_id
        self.wakeup = wakeup
        self.stopping = stopping
        self.finished = finished

    def run(self) -> None:
        while not self.finished.wait(CRON_TICK):
            if self.stopping.is_set():
                continue
            try:
                if is_paused(ALL_QUEUES):
                    continue  # pause_all(): no fires; a missed one runs once after resume_all()
                if scheduler.tick():
                    self.wakeup.set()  # what fired is due now
            except Exception as error:
                # An outage, a bad schedule row or a bug in one tick must not end cron for this worker.
                worker_error(self.worker_id, "cron", error, "will try again")
                reconnect()
        connections.close_all()
