"""``JobWorker``: one worker process, put together from its parts and run to the end.

It starts the threads (job threads, recorder, heartbeat, cron, retention, listener),
runs the claim loop on the main thread, and on the way out finishes or gives back
every task it holds, so that a stop loses nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time

# django.db.Error covers InterfaceError ("connection already closed") as well as
# DatabaseError: both happen when the server restarts under a worker.
from django.db import Error as DatabaseError
from django.db import connections

from .. import retention, scheduler
from ..conf import jobs_settings
from ..execution import isolation
from ..resilience import EXIT_THREAD_DIED, ThreadWatch, wait_for_database, worker_error
from .async_lane import AsyncLane
from .buffer import TaskBuffer
from .claim_loop import MAX_ERROR_PAUSE, ClaimLoop
from .cron_ticker import CronTicker
from .holdings import Holdings
from .job_threads import JobThreads
from .lease import Lease
from .options import WorkerOptions
from .recorder import Recorder
from .wakeup import NotificationListener, Wakeup

logger = logging.getLogger(__name__)


class JobWorker:
    """Run with ``JobWorker(WorkerOptions(...)).run()``; stop with ``request_stop()``."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.worker_id = options.worker_id
        self.wakeup = Wakeup()
        self.stopping = threading.Event()   # no new claims
        self.finished = threading.Event()   # helper threads end
        self.threads = ThreadWatch(on_death=self.request_stop, worker_id=self.worker_id)
        self.buffer = TaskBuffer()
        self.holdings = Holdings(self.worker_id)
        self.recorder = Recorder(self.worker_id, self.holdings, self.wakeup)
        self.job_threads = JobThreads(self.worker_id, options.concurrency, self.buffer, self.holdings, self.recorder)
        self.lane = (AsyncLane(self.worker_id, options.async_concurrency, self.holdings, self.recorder,
                               prefetch=options.batch_size) if options.async_concurrency else None)
        self.lease = Lease(options, self.holdings, lambda: self.threads.healthy, self.finished)
        self.claims = ClaimLoop(options, self.buffer, self.holdings, self.job_threads, self.wakeup, self.stopping,
                                self.lane)
        self.cron = CronTicker(self.worker_id, self.wakeup, self.stopping, self.finished)

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> int:
        """Work until stopped, a limit is reached, or (``burst``) nothing is due.

        Returns 0, or ``EXIT_THREAD_DIED`` if one of the worker's own threads died (a bug):
        the worker then stops claiming and gives back what it has not started, so that
        its supervisor can restart it. Waits for the database if it is down at start-up.
        Raises ImproperlyConfigured before doing anything if a declared cron schedule is invalid.
        """
        if not self.start_up():
            logger.info("Worker %s stopped before the database answered", self.worker_id)
            return 0
        self.start_threads()
        logger.info("Worker %s started (queues=%s, concurrency=%d, async concurrency=%d)", self.worker_id,
                    ",".join(self.options.queues or ["*"]), self.options.concurrency, self.options.async_concurrency)
        try:
            self.claims.run()
        finally:
            self.shut_down()
        if not self.threads.healthy:
            logger.critical("Worker %s exits with status %d: thread(s) %s died", self.worker_id,
                            EXIT_THREAD_DIED, ", ".join(self.threads.died))
            return EXIT_THREAD_DIED
        return 0

    def start_up(self) -> bool:
        """Sync declared schedules and register, waiting while the database is down."""
        if self.options.cron and not wait_for_database(self.sync_schedules, "syncing cron schedules",
                                                       self.stopping, MAX_ERROR_PAUSE, self.worker_id):
            return False
        return wait_for_database(self.lease.register_at_start, "registering the worker", self.stopping,
                                 MAX_ERROR_PAUSE, self.worker_id)

    def sync_schedules(self) -> None:
        counts = scheduler.sync_declared_schedules()
        logger.info("Cron schedules declared in code: %s", counts)

    def start_threads(self) -> None:
        spawn = self.threads.spawn
        self.job_threads.start(spawn)
        if self.lane is not None:
            self.lane.start(spawn)
        self.recorder.thread = spawn(self.recorder.run, "django-jobs-recorder")
        spawn(self.lease.run, "django-jobs-heartbeat")
        if self.options.cron:
            spawn(self.cron.run, "django-jobs-cron")
        if jobs_settings.RETENTION:
            # A thread of its own: a long first prune must not delay heartbeats.
            spawn(lambda: retention.run_periodically(self.finished, self.stopping, self.retention_error),
                  "django-jobs-retention")
        if NotificationListener.available():
            listener = NotificationListener(self.wakeup, self.options.queues, self.finished,
                                            on_error=lambda error: worker_error(self.worker_id, "listener", error,
                                                                                "relying on polling until it is back"))
            spawn(listener.run, listener.name)
        elif reason := NotificationListener.why_not():
            logger.warning("Worker %s polls for new tasks every %ss: %s.", self.worker_id, self.options.interval, reason)

    def retention_error(self, error: BaseException) -> None:
        worker_error(self.worker_id, "retention", error, "will try again")

    # -- stopping --------------------------------------------------------------------
    def request_stop(self) -> None:
        """Claim nothing new; running jobs finish (first SIGTERM/SIGINT)."""
        self.stopping.set()
        self.wakeup.set()

    def stop_now(self) -> None:
        """Give back every held task and leave at once (second signal)."""
        isolation.kill_all()
        # A signal handler runs on the main thread, perhaps in the middle of its claim
        # transaction; a thread of its own gets a connection of its own and commits.
        farewell = threading.Thread(target=self.release_and_unregister)
        farewell.start()
        farewell.join(10)
        logging.shutdown()
        os._exit(1)

    def release_and_unregister(self) -> None:
        released = self.holdings.release_all()
        self.lease.unregister()
        connections.close_all()
        logger.warning("Worker %s stopped at once; %d running task(s) returned to the queue", self.worker_id, released)

    def shut_down(self) -> None:
        """Finish or give back every held task, then leave the table clean."""
        if self.stopping.is_set():
            # Stopped by a signal: tasks that have not started go back at once
            # (or, if the database is away, with the rest of the held tasks below).
            waiting = [task.pk for task in self.buffer.take_all()]
            waiting += [task.pk for task in self.lane.take_all()] if self.lane is not None else []
            try:
                self.holdings.release(waiting)
            except DatabaseError as error:
                worker_error(self.worker_id, "stop", error, "could not give back waiting tasks yet")
        self.buffer.close()
        if self.lane is not None:
            self.lane.close()
        grace = jobs_settings.SHUTDOWN_GRACE
        self.recorder.stop_trying_after(grace)
        deadline = time.monotonic() + grace
        finished_in_time = self.job_threads.wait(grace)
        if self.lane is not None:
            finished_in_time = self.lane.wait(max(0.0, deadline - time.monotonic())) and finished_in_time
        if not finished_in_time:
            isolation.kill_all()
        self.recorder.finish()
        try:
            released = self.holdings.release_all()
        except DatabaseError as error:
            # Left ``running`` under this worker: recovered by others once it stops beating.
            released = 0
            worker_error(self.worker_id, "stop", error, "could not give back held tasks; other workers will recover them")
        if not finished_in_time:
            logger.warning("Shutdown grace ran out; %d task(s) returned to the queue", released)
        self.finished.set()
        self.lease.unregister()
        connections.close_all()
        logger.info("Worker %s stopped after claiming %d task(s)", self.worker_id, self.claims.claimed_count)
