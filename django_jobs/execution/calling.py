"""Calling a job's function with a task's arguments, whatever it raises.

Shared by the job thread (in-process) and the child process of a job with a timeout
(``isolation``), so both turn a call into an ``Outcome`` the same way.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync

from ..exceptions import JobTimeout
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
    return stored_outcome(job, result)


async def await_and_capture(job: Job[Any, Any], task: ScheduledTask, worker_id: str,
                            timeout: float | None) -> Outcome:
    """``call_and_capture`` of an ``async def`` job on the running event loop (the worker's
    async lane): awaited, not run to completion on a thread of its own; never raises.

    A timeout cancels the job's coroutine at its deadline and fails the attempt with
    ``JobTimeout``; cancellation reaches the job at its next ``await``.
    """
    try:
        result = await within(arguments_applied(job, task, worker_id), timeout)
    except BaseException as error:  # as above; CancelledError too: the job cancelled itself
        return failure(error)
    return stored_outcome(job, result)


async def within(coroutine: Coroutine[Any, Any, Any], timeout: float | None) -> Any:
    if timeout is None:
        return await coroutine
    running = asyncio.ensure_future(coroutine)
    done, _ = await asyncio.wait({running}, timeout=timeout)
    if not done:
        # Not awaited after the cancel: a job that swallows CancelledError must not keep
        # the attempt (and its slot on the loop) past its deadline.
        running.cancel()
        raise JobTimeout(f"Job ran longer than its timeout of {timeout:g} s and was cancelled")
    return running.result()


def stored_outcome(job: Job[Any, Any], result: Any) -> Outcome:
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


def arguments_applied(job: Job[Any, Any], task: ScheduledTask, worker_id: str) -> Any:
    """The coroutine of an ``async def`` job called with the task's arguments."""
    if job.takes_context:
        return job.func(job.context_for(task, worker_id), *task.args, **task.kwargs)
    return job.func(*task.args, **task.kwargs)


def is_async(job: Job[Any, Any]) -> bool:
    """Whether the job is an ``async def`` function (its calls are coroutines)."""
    return inspect.iscoroutinefunction(job.func)
