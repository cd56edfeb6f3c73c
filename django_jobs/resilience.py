"""Keeping a worker's threads alive through database outages, and noticing when one dies anyway.

A worker is several threads (claim loop, job threads, recorder, heartbeat, cron,
retention, listener). A thread that dies silently is the worst failure a worker can
have: the heartbeat goes on renewing the lease of tasks nobody runs, so nothing ever
recovers them. So every step that touches the database retries after a transient
error, and every thread runs under a guard that reports its death, upon which the
worker stops and exits non-zero for its supervisor to restart it.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError, connections

from .models import Worker
from .signals import worker_error as signal

logger = logging.getLogger(__name__)

# What a restarting server, a failover or a killed connection raises: the operation may
# succeed once the connection is reopened. Any other database error is a bug or bad data.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)

# The exit status of a worker that stopped because one of its own threads died.
EXIT_THREAD_DIED = 3


@dataclass
class Backoff:
    """Pauses of first, 2 x first, 4 x first ... up to ``cap`` seconds; ``reset()`` after a success."""

    first: float = 0.5
    cap: float = 5.0
    current: float = 0.0

    def next(self) -> float:
        self.current = min(self.cap, max(self.first, self.current * 2))
        return self.current

    def reset(self) -> None:
        self.current = 0.0


def worker_error(worker_id: str, stage: str, error: BaseException, message: str = "") -> None:
    """Log an error of the worker itself (not a job's) and send ``signals.worker_error``.

    An outage is one line without a traceback; anything else is logged with its traceback.
    ``message`` says what happens next ("retrying in 2.0 s").
    """
    transient = isinstance(error, TRANSIENT_ERRORS)
    fields = {"worker_id": worker_id, "stage": stage}
    text = f"Worker {worker_id}: {stage} failed ({first_line(error)})" + (f"; {message}" if message else "")
    if transient:
        logger.warning(text, extra=fields)
    else:
        logger.error(text, exc_info=error, extra=fields)
    for receiver, response in signal.send_robust(sender=Worker, worker_id=worker_id, stage=stage, error=error,
                                                 transient=transient):
        if isinstance(response, Exception):
            logger.error("worker_error receiver %r raised %r", receiver, response, exc_info=response)


def reconnect() -> None:
    """Close this thread's connections; Django opens fresh ones on the next query."""
    connections.close_all()


def wait_for_database(operation: Callable[[], object], what: str, stop: threading.Event, cap: float,
                      worker_id: str) -> bool:
    """Run ``operation`` until it gets through a transient database error; False if stopped first.

    One log line per try, without a traceback: an outage is not a bug, and a worker
    started while the server is down must not flood its log.
    """
    backoff = Backoff(cap=cap)
    while not stop.is_set():
        try:
            operation()
            return True
        except TRANSIENT_ERRORS as error:
            pause = backoff.next()
            worker_error(worker_id, "start-up", error, f"database unavailable while {what}; trying again in {pause:.1f} s")
            reconnect()
            stop.wait(pause)
    return False


def is_transient(error: OperationalError) -> bool:
    """A deadlock (MariaDB) or "database is locked" (SQLite): the same statement may pass if tried again."""
    text = str(error).lower()
    return "deadlock" in text or "locked" in text or "lock wait timeout" in text


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass
class ThreadWatch:
    """Starts the worker's threads and keeps a record of any that died of an exception."""

    on_death: Callable[[], None]
    worker_id: str
    died: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        # Daemon threads: a forced stop must not wait for a job that will not end.
        thread = threading.Thread(target=self.guarded(target, name), name=name, daemon=True)
        thread.start()
        return thread

    def guarded(self, target: Callable[[], None], name: str) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as error:  # noqa: BLE001 - a dying thread must be noticed, whatever killed it
                self.report(name, error)

        return run

    def report(self, name: str, error: BaseException) -> None:
        with self.lock:
            self.died.append(name)
        logger.critical("Worker thread %s died; the worker stops claiming, gives back what it has not started "
                        "and exits with status %d\n%s", name, EXIT_THREAD_DIED,
                        "".join(traceback.format_exception(error)))
        self.on_death()
        try:
            worker_error(self.worker_id, "thread", error, f"thread {name} died")
        except BaseException:  # noqa: BLE001 - the report must not be what stops the worker stopping
            logger.exception("Could not report the death of thread %s", name)

    @property
    def healthy(self) -> bool:
        return not self.died
