"""A worker's lease on its tasks: its ``Worker`` row, kept fresh by a heartbeat.

While the row beats, the tasks ``running`` under this worker are its own; once it
stops beating for HEARTBEAT_TIMEOUT, any other worker recovers them. The heartbeat
thread also reports what the worker holds, gives back what could not be recorded,
and recovers the tasks of workers that stopped beating.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable

# django.db.Error covers InterfaceError ("connection already closed") as well as
# DatabaseError: both happen when the server restarts under a worker.
from django.db import Error as DatabaseError
from django.db import IntegrityError, connections
from django.utils import timezone

from ..conf import jobs_settings
from ..models import Worker
from ..resilience import TRANSIENT_ERRORS, reconnect, worker_error
from .holdings import Holdings
from .options import WorkerOptions
from .recovery import recover_lost_tasks

logger = logging.getLogger(__name__)


class Lease:
    def __init__(self, options: WorkerOptions, holdings: Holdings, healthy: Callable[[], bool],
                 finished: threading.Event) -> None:
        self.options = options
        self.worker_id = options.worker_id
        self.holdings = holdings
        self.healthy = healthy      # False once a thread of the worker died: let the lease run out
        self.finished = finished
        # Monotonic time since which every heartbeat got through (None: the last one failed).
        # A worker that starts with the database up may recover others' tasks at once.
        self.beating_since: float | None = -math.inf

    # -- the row ------------------------------------------------------------------------------
    def register(self) -> None:
        # Update, else insert: no read-then-write transaction, which SQLite in WAL
        # mode may refuse at once ("database is locked") when other workers write.
        now = timezone.now()
        fields = {"hostname": socket.gethostname(), "pid": os.getpid(), "started_at": now, "last_heartbeat": now,
                  "queues": ",".join(self.options.queues or []), "concurrency": self.options.concurrency}
        if Worker.objects.filter(worker_id=self.worker_id).update(**fields):
            return
        try:
            Worker.objects.create(worker_id=self.worker_id, **fields)
        except IntegrityError:
            Worker.objects.filter(worker_id=self.worker_id).update(**fields)

    def register_at_start(self) -> None:
        try:
            self.register()
        except TRANSIENT_ERRORS:
            self.beating_since = None  # started during an outage: others missed beats too
            raise

    def unregister(self) -> None:
        try:
            Worker.objects.filter(worker_id=self.worker_id).delete()
        except DatabaseError as error:
            worker_error(self.worker_id, "stop", error, "could not unregister")

    # -- the heartbeat thread -------------------------------------------------------------------
    def run(self) -> None:
        """The heartbeat thread's body: beat, give back the unrecorded, recover others' tasks."""
        interval = jobs_settings.HEARTBEAT_INTERVAL
        while self.healthy():
            try:
                self.beat()
                self.holdings.release_unrecorded()
                if self.may_recover():
                    recover_lost_tasks()
            except Exception as error:
                if isinstance(error, TRANSIENT_ERRORS):
                    self.beating_since = None
                worker_error(self.worker_id, "heartbeat", error, "will try again")
                reconnect()
            if self.finished.wait(interval):
                break
        connections.close_all()

    def beat(self) -> None:
        if not Worker.objects.beat(self.worker_id, timezone.now(), holding=self.holdings.count(),
                                   stalled_for=self.holdings.stalled_for()):
            # Our row was removed as dead (we were cut off too long): come back.
            logger.warning("Worker %s was presumed dead; registering again", self.worker_id)
            self.register()
        if self.beating_since is None:
            self.beating_since = time.monotonic()

    def may_recover(self) -> bool:
        """Recover others' tasks only after beating without a break for HEARTBEAT_TIMEOUT.

        When the database itself was away, every worker missed its beats: the first one
        back must not take the tasks of the others, which are alive and still running
        them. Each gets a whole HEARTBEAT_TIMEOUT after the outage to beat again.
        """
        since = self.beating_since
        return since is not None and time.monotonic() - since >= jobs_settings.HEARTBEAT_TIMEOUT
