"""The worker loop: claim -> job threads -> record -> heartbeat/recover -> wait.

The main thread claims due tasks in batches (one statement for up to
``batch_size`` rows) into a buffer; ``concurrency`` job threads run them; a
recorder thread writes outcomes, many in one statement when the queue is busy.
Threads suit the usual job (I/O: mail, HTTP, queries); run more processes, on one
host or many, to use more cores. A heartbeat thread keeps this worker's lease and
recovers tasks of workers that stopped beating; a cron thread fires schedules.
"""

from __future__ import annotations

import logging
import math
import os
import queue as queue_module
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

# django.db.Error covers InterfaceError ("connection already closed") as well as
# DatabaseError: both happen when the server restarts under a worker.
from django.db import Error as DatabaseError
from django.db import IntegrityError, connections
from django.utils import timezone

from . import claiming, isolation, retention, scheduler
from .buffer import TaskBuffer
from .conf import jobs_settings
from .exceptions import WorkerLost
from .executor import Outcome, attempt
from .models import ScheduledTask, Worker
from .queues import is_paused, paused_names
from .recording import record_outcomes
from .resilience import (
    EXIT_THREAD_DIED,
    TRANSIENT_ERRORS,
    Backoff,
    ThreadWatch,
    reconnect,
    wait_for_database,
    worker_error,
)
from .validation import ALL_QUEUES
from .wakeup import NotificationListener, Wakeup

logger = logging.getLogger(__name__)

# Outcomes written per statement at most (a busy queue writes many at once).
RECORD_BATCH = 500
# Seconds every job thread must have been on its current job before the tasks
# waiting in the buffer are given back to the queue for other workers.
PREFETCH_HOLD = 1.0
# Seconds the recorder gets at shutdown to write the last outcomes.
RECORDER_GRACE = 60.0
# Cron has minute resolution; a tick a second fires within a second of the time.
CRON_TICK = 1.0
# After a database error the loop waits 0.5 s, 1 s, 2 s ... up to this, then tries again:
# short, so that the queue drains again within seconds of a server's restart.
MAX_ERROR_PAUSE = 5.0


@dataclass
class WorkerOptions:
    queues: list[str] | None = None
    concurrency: int = field(default_factory=lambda: jobs_settings.CONCURRENCY)
    interval: float = field(default_factory=lambda: jobs_settings.POLL_INTERVAL)
    batch_size: int = field(default_factory=lambda: jobs_settings.BATCH_SIZE)
    max_jobs: int | None = None
    max_seconds: float | None = None
    burst: bool = False
    worker_id: str = ""
    cron: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("concurrency and batch size must be at least 1")
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        self.worker_id = self.worker_id or default_worker_id()


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class JobWorker:
    """Run with ``JobWorker(WorkerOptions(...)).run()``; stop with ``request_stop()``."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.worker_id = options.worker_id
        self.wakeup = Wakeup()
        self.stopping = threading.Event()   # no new claims
        self.finished = threading.Event()   # helper threads end
        self.held: set[int] = set()          # claimed, not yet recorded
        self.unrecorded: set[int] = set()    # ran, but the outcome could not be written
        self.held_lock = threading.Lock()
        self.buffer = TaskBuffer()
        self.job_started: dict[str, float] = {}  # job thread -> when its current job began
        self.outcomes: queue_module.Queue[tuple[ScheduledTask, Outcome] | None] = queue_module.Queue()
        self.claimed_count = 0
        self.paused_checked_at = 0.0
        self.claim_in_doubt = False  # a claim failed: it may have committed all the same
        self.job_threads: list[threading.Thread] = []
        self.recorder: threading.Thread | None = None
        self.threads = ThreadWatch(on_death=self.request_stop, worker_id=self.worker_id)
        # Outcomes are retried until the database answers, except after this moment
        # (set at shutdown), so that a stop during an outage still ends in time.
        self.recording_deadline: float | None = None
        # Monotonic time since which every heartbeat got through (None: the last one failed).
        # A worker that starts with the database up may recover others' tasks at once.
        self.beating_since: float | None = -math.inf
        self.last_progress = time.monotonic()   # an outcome written, or nothing held

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
        logger.info("Worker %s started (queues=%s, concurrency=%d)", self.worker_id,
                    ",".join(self.options.queues or ["*"]), self.options.concurrency)
        try:
            self.loop()
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
        return wait_for_database(self.register_at_start, "registering the worker", self.stopping, MAX_ERROR_PAUSE,
                                 self.worker_id)

    def register_at_start(self) -> None:
        try:
            self.register()
        except TRANSIENT_ERRORS:
            self.beating_since = None  # started during an outage: others missed beats too
            raise

    def sync_schedules(self) -> None:
        counts = scheduler.sync_declared_schedules()
        logger.info("Cron schedules declared in code: %s", counts)

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

    def release_and_unregister(self) -> None:
        released = self.release_held()
        self.unregister()
        connections.close_all()
        logger.warning("Worker %s stopped at once; %d running task(s) returned to the queue", self.worker_id, released)

    def unregister(self) -> None:
        try:
            Worker.objects.filter(worker_id=self.worker_id).delete()
        except DatabaseError as error:
            worker_error(self.worker_id, "stop", error, "could not unregister")

    def start_threads(self) -> None:
        spawn = self.threads.spawn
        self.job_threads = [spawn(self.job_thread, f"django-jobs-job-{n}") for n in range(self.options.concurrency)]
        self.recorder = spawn(self.recorder_thread, "django-jobs-recorder")
        spawn(self.heartbeat_thread, "django-jobs-heartbeat")
        if self.options.cron:
            spawn(self.cron_thread, "django-jobs-cron")
        if jobs_settings.RETENTION:
            # A thread of its own: a long first prune must not delay heartbeats.
            spawn(lambda: retention.run_periodically(self.finished, self.stopping, self.retention_error),
                  "django-jobs-retention")
        if NotificationListener.available():
            listener = NotificationListener(self.wakeup, self.options.queues, self.finished,
                                            on_error=lambda error: worker_error(self.worker_id, "listener", error,
                                                                                "relying on polling until it is back"))
            spawn(listener.run, listener.name)

    def shut_down(self) -> None:
        """Finish or give back every held task, then leave the table clean."""
        if self.stopping.is_set():
            # Stopped by a signal: tasks that have not started go back at once
            # (or, if the database is away, with the rest of the held tasks below).
            waiting = [task.pk for task in self.buffer.take_all()]
            try:
                self.release(waiting)
            except DatabaseError as error:
                worker_error(self.worker_id, "stop", error, "could not give back waiting tasks yet")
        self.buffer.close()
        grace = jobs_settings.SHUTDOWN_GRACE
        self.recording_deadline = time.monotonic() + grace
        finished_in_time = self.wait_for_running_jobs(grace)
        if not finished_in_time:
            isolation.kill_all()
        self.outcomes.put(None)
        if self.recorder is not None:
            # At least a few seconds for the last outcomes, even when the jobs took the whole grace.
            self.recording_deadline = max(self.recording_deadline, time.monotonic() + 5.0)
            self.recorder.join(RECORDER_GRACE)
        try:
            released = self.release_held()
        except DatabaseError as error:
            # Left ``running`` under this worker: recovered by others once it stops beating.
            released = 0
            worker_error(self.worker_id, "stop", error, "could not give back held tasks; other workers will recover them")
        if not finished_in_time:
            logger.warning("Shutdown grace ran out; %d task(s) returned to the queue", released)
        self.finished.set()
        self.unregister()
        connections.close_all()
        logger.info("Worker %s stopped after claiming %d task(s)", self.worker_id, self.claimed_count)

    def wait_for_running_jobs(self, grace: float) -> bool:
        deadline = time.monotonic() + grace
        for thread in self.job_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.job_threads)

    # -- the loop --------------------------------------------------------------------
    def loop(self) -> None:
        started = time.monotonic()
        backoff = Backoff(cap=MAX_ERROR_PAUSE)
        while not self.stopping.is_set() and not self.limit_reached(started):
            # Read before claiming: a job finishing during the claim may have
            # committed a retry that this claim could not see yet.
            was_busy = bool(self.held)
            try:
                claimed = self.claim_free_slots()
                self.give_back_paused()
                backoff.reset()
            except DatabaseError as error:
                self.claim_in_doubt = True
                pause = backoff.next()
                worker_error(self.worker_id, "claim", error, f"retrying in {pause:.1f} s")
                reconnect()
                self.stopping.wait(pause)
                continue
            if claimed:
                continue
            if self.options.burst and not was_busy and not self.held and not self.unrecorded:
                logger.info("Nothing due; burst worker %s exits", self.worker_id)
                return
            self.wakeup.wait(self.wait_time(started))

    def claim_free_slots(self) -> int:
        """Top the buffer up to ``batch_size`` waiting tasks, in one claim."""
        if self.claim_in_doubt:
            self.release_orphans()
            self.claim_in_doubt = False
        if self.unrecorded:
            self.release_unrecorded()  # the heartbeat does it too; here it is at once
        if self.all_threads_stuck():
            # Nobody could start more now; what waits goes to other workers.
            if len(self.buffer):
                self.give_back_waiting()
            return 0
        if len(self.buffer) > self.options.concurrency:
            return 0  # enough waiting; claim when the threads have caught up
        limit = self.options.batch_size - len(self.buffer)
        if self.options.max_jobs is not None:
            limit = min(limit, self.options.max_jobs - self.claimed_count)
        if limit <= 0:
            return 0
        tasks = claiming.claim(self.worker_id, self.options.queues, limit)
        with self.held_lock:
            self.held.update(task.pk for task in tasks)
        self.claimed_count += len(tasks)
        self.buffer.put(tasks)
        return len(tasks)

    def release_orphans(self) -> None:
        """Give back rows marked ours by a claim that reported an error.

        A connection lost during COMMIT leaves the claim's outcome unknown: it may have
        committed. Such rows are ``running`` under this worker, which keeps beating, yet
        no thread holds them; nothing else would ever run them. Only the main thread
        claims, and it is here, so every row of ours it does not know is such a row.
        """
        with self.held_lock:
            known = list(self.held | self.unrecorded)
        orphans = ScheduledTask.objects.held_by(self.worker_id).exclude(pk__in=known)
        if released := orphans.release(self.worker_id, timezone.now()):
            logger.warning("%d task(s) claimed by a claim whose commit went unanswered returned to the queue",
                           released)

    def all_threads_stuck(self) -> bool:
        """Every job thread has been on its current job for PREFETCH_HOLD or longer."""
        starts = list(self.job_started.values())
        if len(starts) < self.options.concurrency:
            return False
        return time.monotonic() - max(starts) >= PREFETCH_HOLD

    def give_back_waiting(self) -> None:
        # Tasks would wait behind slow jobs: let other workers have them.
        ids = [task.pk for task in self.buffer.take_all()]
        try:
            released = self.release(ids)
        except DatabaseError:
            # They are out of the buffer and no thread will run them: the heartbeat
            # thread gives them back once the database answers again.
            with self.held_lock:
                self.unrecorded.update(ids)
            raise
        logger.info("Every job thread is on a slow job; %d waiting task(s) returned to the queue", released)

    def give_back_paused(self) -> None:
        """Within a poll interval of a pause, release the waiting tasks of paused queues.

        The claim already skips paused queues; this covers tasks claimed just before.
        """
        now = time.monotonic()
        if not len(self.buffer) or now - self.paused_checked_at < self.options.interval:
            return
        self.paused_checked_at = now
        paused = paused_names()
        if "*" in paused:  # pause_all(): every waiting task goes back
            paused = {task.queue for task in self.buffer.snapshot()}
        if paused and (ids := [task.pk for task in self.buffer.take_queues(paused)]):
            logger.info("Queue(s) %s paused; %d waiting task(s) returned", ",".join(sorted(paused)), self.release(ids))

    def release(self, ids: list[int]) -> int:
        """Give held tasks back to ``pending`` and stop holding them; their attempt does not count."""
        if not ids:
            return 0
        released = ScheduledTask.objects.filter(pk__in=ids).release(self.worker_id, timezone.now())
        with self.held_lock:
            self.held.difference_update(ids)
            self.unrecorded.difference_update(ids)
        return released

    def wait_time(self, started: float) -> float:
        """The poll interval, cut short so that --max-seconds is kept."""
        if self.options.max_seconds is None:
            return self.options.interval
        left = self.options.max_seconds - (time.monotonic() - started)
        return max(0.0, min(self.options.interval, left))

    def limit_reached(self, started: float) -> bool:
        if self.options.max_jobs is not None and self.claimed_count >= self.options.max_jobs:
            return True
        return self.options.max_seconds is not None and time.monotonic() - started >= self.options.max_seconds

    # -- job threads ----------------------------------------------------------------
    def job_thread(self) -> None:
        name = threading.current_thread().name
        while (task := self.buffer.take()) is not None:
            self.job_started[name] = time.monotonic()
            try:
                outcome = attempt(task, self.worker_id, enforce_timeout=True)
            except Exception as error:
                # Not the job (its exceptions are its outcome) but our plumbing around it:
                # hand the task back for another try rather than lose the thread.
                worker_error(self.worker_id, "run", error, f"task {task.pk} will be given back to the queue")
                self.give_back_later([task.pk])
                reconnect()
                continue
            finally:
                del self.job_started[name]
            self.outcomes.put((task, outcome))
        connections.close_all()

    def give_back_later(self, ids: list[int]) -> None:
        """Tasks held but not going to be recorded: the heartbeat thread releases them."""
        with self.held_lock:
            self.unrecorded.update(ids)

    def recorder_thread(self) -> None:
        """Write outcomes as they come; under load, many per statement."""
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
            record_outcomes(items, self.worker_id, keep_trying=self.keep_recording, on_error=self.recording_error)
            recorded = True
        except Exception as error:
            recorded = False
            worker_error(self.worker_id, "record", error,
                         f"outcomes of task(s) {ids} not recorded; they will be released")
        with self.held_lock:
            self.held.difference_update(ids)
            if not recorded:
                self.unrecorded.update(ids)
        self.last_progress = time.monotonic()
        self.wakeup.set()

    def retention_error(self, error: BaseException) -> None:
        worker_error(self.worker_id, "retention", error, "will try again")

    def recording_error(self, error: BaseException, pause: float) -> None:
        worker_error(self.worker_id, "record", error, f"retrying in {pause:.1f} s")

    def keep_recording(self) -> bool:
        """Outcomes wait for the database to come back: a lost outcome means the job runs again."""
        return self.recording_deadline is None or time.monotonic() < self.recording_deadline

    def release_held(self) -> int:
        """Return claimed tasks we will not finish to ``pending`` (at-least-once)."""
        with self.held_lock:
            held = list(self.held | self.unrecorded)
        return self.release(held)

    def release_unrecorded(self) -> None:
        # Otherwise such a task would stay ``running`` under a worker that still beats.
        with self.held_lock:
            unrecorded = list(self.unrecorded)
        self.release(unrecorded)

    # -- cron -------------------------------------------------------------------------------
    def cron_thread(self) -> None:
        while not self.finished.wait(CRON_TICK):
            if self.stopping.is_set():
                continue
            try:
                if is_paused(ALL_QUEUES):
                    continue  # pause_all(): no fires; a missed one runs once after resume_all()
                if scheduler.tick():
                    self.wakeup.set()
            except Exception as error:
                # An outage, a bad schedule row or a bug in one tick must not end cron for this worker.
                worker_error(self.worker_id, "cron", error, "will try again")
                reconnect()
        connections.close_all()

    # -- heartbeat and recovery -----------------------------------------------------------
    def heartbeat_thread(self) -> None:
        interval = jobs_settings.HEARTBEAT_INTERVAL
        while self.threads.healthy:  # a worker with a dead thread lets its lease run out
            try:
                self.beat()
                self.release_unrecorded()
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
        if not Worker.objects.beat(self.worker_id, timezone.now(), holding=self.holding(),
                                   stalled_for=self.stalled_for()):
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

    def holding(self) -> int:
        with self.held_lock:
            return len(self.held | self.unrecorded)

    def stalled_for(self) -> float:
        """Seconds since this worker last wrote an outcome while holding tasks (0 when it holds none)."""
        if not self.holding():
            self.last_progress = time.monotonic()
            return 0.0
        return time.monotonic() - self.last_progress


def recover_lost_tasks() -> int:
    """Tasks of workers silent for HEARTBEAT_TIMEOUT go back to pending (or fail)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=jobs_settings.HEARTBEAT_TIMEOUT)
    live = Worker.objects.live(cutoff).values("worker_id")
    error = f"{WorkerLost.__name__}: the worker running this task stopped sending heartbeats"
    exception_class = f"{WorkerLost.__module__}.{WorkerLost.__qualname__}"
    lost = ScheduledTask.objects.lost(live, started_before=cutoff).only(
        "pk", "worker_id", "started_at", "retry_count", "max_retries", "attempt_log")
    recovered = sum(ScheduledTask.objects.recover(task, error, exception_class, now) for task in lost)
    if recovered:
        logger.warning("Recovered %d task(s) from lost workers", recovered)
    Worker.objects.forget_dead(cutoff)
    return recovered
