"""Run one claimed task: resolve the job, call it, record the outcome, send signals.

The worker, ``IMMEDIATE`` mode and ``run_pending_jobs`` all come through here, so
there is one execution path. User code never runs inside a transaction of ours.
"""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time
import traceback as traceback_module
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connections
from django.utils import timezone

from . import metrics
from .conf import jobs_settings
from .exceptions import JobArgumentsError
from .models import ScheduledTask
from .registry import Job, registry
from .signals import job_started, send_after_commit

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one attempt came to. ``retryable`` is False for faults a retry cannot fix."""

    succeeded: bool
    result: Any = None
    exception: BaseException | None = None
    error: str = ""
    traceback: str = ""
    retryable: bool = True
    exception_class: str = ""  # dotted path, as Django's TaskError.exception_class_path
    duration: float | None = None  # seconds the attempt ran, for metrics


def run_claimed(task: ScheduledTask, worker_id: str, *, enforce_timeout: bool = False) -> Outcome:
    """Run a task this worker holds (``running``, ``worker_id``) and record the outcome.

    With ``enforce_timeout`` (workers), a task with a timeout runs in a child process.
    """
    from .recording import record_outcomes

    outcome = attempt(task, worker_id, enforce_timeout=enforce_timeout)
    record_outcomes([(task, outcome)], worker_id)
    if isinstance(outcome.exception, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        # Run in-process (IMMEDIATE, run_pending_jobs): the failure is recorded, and a
        # Ctrl-C still stops the program, as with Django's ImmediateBackend.
        raise outcome.exception
    return outcome


def attempt(task: ScheduledTask, worker_id: str, *, enforce_timeout: bool = False) -> Outcome:
    """Announce and run one attempt of a held task; the outcome is recorded by the caller."""
    TaskLog(task).info("started")
    metrics.count_started(task)
    send_after_commit(job_started, task=task, attempt=task.attempt)
    began = time.perf_counter()
    outcome = execute(task, worker_id, enforce_timeout=enforce_timeout)
    outcome.duration = time.perf_counter() - began
    release_broken_connections()
    return outcome


def execute(task: ScheduledTask, worker_id: str, *, enforce_timeout: bool = False) -> Outcome:
    try:
        job = registry.get(task.identifier)
        check_stored_arguments(task)
        job.check_arguments(task.args, task.kwargs)
    except JobArgumentsError as error:
        return failure(error, retryable=False)
    except Exception as error:
        return failure(error)
    if enforce_timeout and task.timeout:
        from .isolation import execute_in_child

        try:
            return execute_in_child(task, worker_id, task.timeout.total_seconds())
        except Exception as error:  # the child could not be started (fork failed, out of memory): retry later
            return failure(error)
    return call_and_capture(job, task, worker_id)


def call_and_capture(job: Job[Any, Any], task: ScheduledTask, worker_id: str) -> Outcome:
    """Call the job and turn whatever happens into an Outcome; never raises."""
    try:
        result = call(job, task, worker_id)
    except BaseException as error:
        # Whatever a job raises is its attempt's failure, BaseException included: a job's
        # SystemExit, KeyboardInterrupt or GeneratorExit must not stop its job thread
        # (the worker would keep beating for a task nobody runs). Signals never reach
        # job threads, so a KeyboardInterrupt here was raised by the job itself.
        return failure(error)
    try:
        stored = job.stored_result(result)
    except (TypeError, ValueError) as error:  # not storable (JobArgumentsError is a TypeError): a retry cannot fix it
        return failure(error, retryable=False)
    return Outcome(succeeded=True, result=stored)


def check_stored_arguments(task: ScheduledTask) -> None:
    """Rows written by hand (raw SQL, a bad migration) may hold any JSON."""
    if not isinstance(task.args, list) or not isinstance(task.kwargs, dict):
        raise JobArgumentsError(
            f"Stored arguments are malformed: args must be a JSON list and kwargs a JSON object, "
            f"got {type(task.args).__name__} and {type(task.kwargs).__name__}"
        )


def call(job: Job[Any, Any], task: ScheduledTask, worker_id: str) -> Any:
    func = job.func
    if inspect.iscoroutinefunction(func):
        func = async_to_sync(func)
    if job.takes_context:
        return func(job.context_for(task, worker_id), *task.args, **task.kwargs)
    return func(*task.args, **task.kwargs)


def failure(error: BaseException, *, retryable: bool = True) -> Outcome:
    return Outcome(
        succeeded=False,
        exception=error,
        error=describe(error),
        traceback=format_traceback(error),
        retryable=retryable,
        exception_class=class_path(error),
    )


def class_path(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def describe(error: BaseException) -> str:
    """``Class: message``, even for an exception whose ``__str__`` raises."""
    try:
        message = str(error)
    except Exception:
        message = "<exception message could not be rendered>"
    name = type(error).__qualname__
    return f"{name}: {message}" if message else name


def format_traceback(error: BaseException) -> str:
    text = "".join(traceback_module.format_exception(error))
    limit = jobs_settings.MAX_TRACEBACK_LENGTH
    if len(text) > limit:
        # Keep the end: it names the exception and the innermost frames.
        text = f"... ({len(text) - limit} characters cut)\n" + text[-limit:]
    return text


def release_broken_connections() -> None:
    """Close connections a job left broken; healthy ones stay open across jobs.

    Django's ``close_old_connections`` would also close by ``CONN_MAX_AGE``, which
    at its default of 0 means a reconnect per job: far too slow for a worker.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if connection.in_atomic_block:
            continue
        if connection.errors_occurred and not connection.is_usable():
            connection.close()
        else:
            connection.errors_occurred = False


def run_inline(task: ScheduledTask) -> Outcome:
    """Claim and run one task in this process (IMMEDIATE mode, test helpers)."""
    worker_id = inline_worker_id()
    now = timezone.now()
    if ScheduledTask.objects.filter(pk=task.pk).mark_running(worker_id, now) != 1:
        raise RuntimeError(f"Task {task.pk} is no longer pending; cannot run it inline.")
    task.status, task.worker_id, task.started_at = ScheduledTask.Status.RUNNING, worker_id, now
    return run_claimed(task, worker_id)


def inline_worker_id() -> str:
    return f"inline:{socket.gethostname()}:{os.getpid()}"


class TaskLog:
    """Log lines that always carry task id, job name, queue and attempt.

    In the text (``task=12 job=... queue=... attempt=1 ...``) and as record
    attributes ``task_id``, ``job``, ``queue``, ``attempt`` (``extra``), so that a
    JSON formatter can emit them as fields.
    """

    def __init__(self, task: ScheduledTask, to: logging.Logger = logger) -> None:
        self.task = task
        self.attempt = task.attempt  # fixed now: a retry changes the row's count
        self.logger = to

    def info(self, message: str, *args: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):  # skip formatting in the hot path
            self.logger.info(f"{self.prefix} {message}", *args, extra=self.fields)

    def warning(self, message: str, *args: Any) -> None:
        self.logger.warning(f"{self.prefix} {message}", *args, extra=self.fields)

    @property
    def fields(self) -> dict[str, Any]:
        task = self.task
        return {"task_id": task.pk, "job": task.identifier, "queue": task.queue, "attempt": self.attempt}

    @property
    def prefix(self) -> str:
        task = self.task
        return f"task={task.pk} job={task.identifier} queue={task.queue} attempt={self.attempt}"
