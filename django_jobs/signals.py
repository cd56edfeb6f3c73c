"""Lifecycle signals. All are sent with ``send_robust`` after the state change is
committed, so a receiver that raises never changes a task's outcome.

The sender is always the ``ScheduledTask`` class.
"""

import logging

from django.db import router, transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# task: the new ScheduledTask row (sent after the enqueueing transaction commits).
job_enqueued = Signal()

# task: the row, now ``running``; attempt: 1 for the first run.
job_started = Signal()

# task: the row, now ``completed``; result: the job's return value.
job_completed = Signal()

# task: the row; exception: what the job raised; will_retry: True when the task
# went back to ``pending`` for another attempt, False when it is now ``failed``.
job_failed = Signal()

# task: the row, now ``cancelled``.
job_cancelled = Signal()

# An error of a worker itself, not of a job: a lost database, a failed claim, heartbeat,
# recording, cron tick or pruning, a thread that died. Sent at once (there is nothing to
# commit), robustly, from the thread that hit it; the sender is the ``Worker`` model.
# worker_id: the worker's id; stage: "start-up", "claim", "run", "record", "heartbeat",
# "cron", "retention", "listener", "thread" or "stop"; error: the exception; transient: True for
# an outage the worker rides out by retrying (OperationalError, InterfaceError), False
# for anything else (a bug, bad data), which is logged with its traceback.
worker_error = Signal()


def send_after_commit(signal: Signal, **kwargs) -> None:
    """Send ``signal`` robustly once the current transaction commits (at once outside one).

    Receivers that raise are logged, never propagated: a broken receiver must not
    turn a committed outcome into an error.
    """
    alias = app_alias()
    if in_transaction(alias):
        transaction.on_commit(lambda: _send_robust(signal, kwargs), using=alias)
    else:
        _send_robust(signal, kwargs)


def send_each_after_commit(signal: Signal, tasks: list) -> None:
    """``send_after_commit(signal, task=task)`` for each task, with one commit hook for all."""
    alias = app_alias()
    if in_transaction(alias):
        transaction.on_commit(lambda: _send_each(signal, tasks), using=alias)
    else:
        _send_each(signal, tasks)


def app_alias() -> str:
    """The database of the app's tables, whose commit the signals wait for (``DJANGO_JOBS["DATABASE"]``)."""
    from .models import ScheduledTask  # the models import this module to send signals

    return router.db_for_write(ScheduledTask)


def in_transaction(alias: str) -> bool:
    """Inside ``atomic()`` on the app's database: the send waits for the commit.

    Outside one, ``on_commit`` would send at once, after asking the connection whether
    it is in autocommit mode, which opens a connection: during a database outage that
    raised in a job thread and killed it. Sending directly needs no database at all.
    Skipping the hook also spares a worker registering one twice per job, a cost that
    showed in the drain's profile while the send itself is next to free (``send_robust``
    returns at once when nobody listens; figures: bench/README.md, "Measured design
    choices").
    """
    return transaction.get_connection(alias).in_atomic_block


def _send_each(signal: Signal, tasks: list) -> None:
    from .models import ScheduledTask  # the models import this module to send signals

    if signal.has_listeners(ScheduledTask):  # asked at commit: a receiver connected meanwhile counts
        for task in tasks:
            _send_robust(signal, {"task": task})


def _send_robust(signal: Signal, kwargs: dict) -> None:
    from .models import ScheduledTask  # the models import this module to send signals

    for receiver, response in signal.send_robust(sender=ScheduledTask, **kwargs):
        if isinstance(response, Exception):
            logger.error("Signal receiver %r raised %r", receiver, response, exc_info=response)
