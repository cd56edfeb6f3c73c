"""Run one claimed task: resolve the job, call it, record the outcome, send signals.

The worker, ``IMMEDIATE`` mode and ``run_pending_jobs`` all come through here, so
there is one execution path. User code never runs inside a transaction of ours.
Imports run one way: ``outcome`` <- ``calling`` <- ``isolation`` <- here, and
``outcome`` <- ``recording`` <- here.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from .. import metrics
from ..exceptions import JobArgumentsError
from ..models import ScheduledTask
from ..registry import registry
from ..signals import job_started, send_after_commit
from .calling import await_and_capture, call_and_capture
from .isolation import execute_in_child
from .outcome import Outcome, failure
from .recording import record_outcomes
from .task_log import TaskLog

if TYPE_CHECKING:
    from ..registry import Job


def run_claimed(task: ScheduledTask, worker_id: str, *, enforce_timeout: bool = False) -> Outcome:
    """Run a task this worker holds (``running``, ``worker_id``) and record the outcome.

    With ``enforce_timeout`` (workers), a task with a timeout runs in a child process.
    """
    outcome = attempt(task, worker_id, enforce_timeout=enforce_timeout)
    record_outcomes([(task, outcome)], worker_id)
    if isinstance(outcome.exception, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
        # Run in-process (IMMEDIATE, run_pending_jobs): the failure is recorded, and a
        # Ctrl-C still stops the program, as with Django's ImmediateBackend.
        raise outcome.exception
    return outcome


def attempt(task: ScheduledTask, worker_id: str, *, enforce_timeout: bool = False) -> Outcome:
    """Announce and run one attempt of a held task; the outcome is recorded by the caller."""
    announce(task)
    began = time.perf_counter()
    outcome = execute(task, worker_id, enforce_timeout=enforce_timeout)
    outcome.duration = time.perf_counter() - began
    release_broken_connections()
    return outcome


async def attempt_async(task: ScheduledTask, worker_id: str) -> Outcome:
    """``attempt`` of an ``async def`` job, on the worker's event loop (its async lane).

    The announcement runs on Django's thread for sync code (``sync_to_async``): receivers
    of ``job_started`` may use the ORM, which refuses to run on an event loop.
    """
    await sync_to_async(announce)(task)
    began = time.perf_counter()
    job = resolve(task)
    if isinstance(job, Outcome):
        outcome = job
    else:
        outcome = await await_and_capture(job, task, worker_id, task.timeout.total_seconds() if task.timeout else None)
    outcome.duration = time.perf_counter() - began
    return outcome


def announce(task: ScheduledTask) -> None:
    TaskLog(task).info("started")
    metrics.count_started(task)
    send_after_commit(job_started, task=task, attempt=task.attempt)


def resolve(task: ScheduledTask) -> Job[Any, Any] | Outcome:
    """The task's job, its arguments checked; or the failed outcome that says why not."""
    try:
        job = registry.get(task.identifier)
        check_stored_arguments(task)
        job.check_arguments(task.args, task.kwargs)
    except JobArgumentsError as error:
        return failure(error, retryable=False)
    except Exception as error:
        return failure(error)
    return job


def execute(task: ScheduledTask, worker_id: str, *, enforce_timeout: bool = False) -> Outcome:
    job = resolve(task)
    if isinstance(job, Outcome):
        return job
    if enforce_timeout and task.timeout:
        try:
            return execute_in_child(task, worker_id, task.timeout.total_seconds())
        except Exception as error:  # the child could not be started (fork failed, out of memory): retry later
            return failure(error)
    return call_and_capture(job, task, worker_id)


def check_stored_arguments(task: ScheduledTask) -> None:
    """Rows written by hand (raw SQL, a bad migration) may hold any JSON."""
    if not isinstance(task.args, list) or not isinstance(task.kwargs, dict):
        raise JobArgumentsError(
            f"Stored arguments are malformed: args must be a JSON list and kwargs a JSON object, "
            f"got {type(task.args).__name__} and {type(task.kwargs).__name__}"
        )


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
