"""Calling a job's function with a task's arguments, whatever it raises.

Shared by the job thread (in-process) and the child process of a job with a timeout
(``isolation``), so both turn a call into an ``Outcome`` the same way.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync

from .outcome import Outcome, failure

if TYPE_CHECKING:
    from ..models import ScheduledTask
    from ..registry import Job


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


def call(job: Job[Any, Any], task: ScheduledTask, worker_id: str) -> Any:
    func = job.func
    if inspect.iscoroutinefunction(func):
        func = async_to_sync(func)
    if job.takes_context:
        return func(job.context_for(task, worker_id), *task.args, **task.kwargs)
    return func(*task.args, **task.kwargs)
