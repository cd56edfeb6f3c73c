"""Jobs with a ``timeout`` run in a child process, which can be stopped.

Python cannot stop a thread from outside, so a job thread that must be cut off at its
deadline hands the call to a child process and waits for its answer. On timeout the
child is killed (SIGKILL: the job gets no chance to clean up) and the attempt fails
with ``JobTimeout``. Children are forked from a forkserver that set Django up once,
so a child starts in milliseconds and inherits no threads, locks or connections.

The child only calls the function; the worker's thread records the outcome, so all
bookkeeping stays in one place. Limits: arguments and the task row are pickled to the
child; the child opens its own database connection; IMMEDIATE mode and
``run_pending_jobs`` run jobs in-process and do not enforce timeouts.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections

from ..exceptions import DjangoJobsError, JobTimeout
from .outcome import Outcome, class_path, failure

if TYPE_CHECKING:
    from ..models import ScheduledTask

logger = logging.getLogger(__name__)

_context_lock = threading.Lock()
_context: Any = None
_live: set[Any] = set()


class JobFailedInChild(DjangoJobsError):
    """Stands for an exception raised in the child that could not be pickled back."""


def job_processes() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["django_jobs.execution.child_setup"])
        return _context


def execute_in_child(task: ScheduledTask, worker_id: str, seconds: float) -> Outcome:
    context = job_processes()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=child_main, args=(sender, task, worker_id, database_names()),
        name=f"django-jobs-task-{task.pk}", daemon=True,
    )
    process.start()
    sender.close()
    with _context_lock:
        _live.add(process)
    try:
        if not receiver.poll(seconds):
            process.kill()
            return failure(JobTimeout(f"Job ran longer than its timeout of {seconds:g} s and was killed"))
        try:
            return unpack(receiver.recv())
        except EOFError:
            process.join(5)
            return failure(JobFailedInChild(f"The job's process exited without an answer (exit code {process.exitcode})"))
    finally:
        process.join(5)
        receiver.close()
        with _context_lock:
            _live.discard(process)


def kill_all() -> None:
    """Stop every running child at once (worker stopping immediately)."""
    with _context_lock:
        for process in list(_live):
            process.kill()


def database_names() -> dict[str, Any]:
    """The parent's database names: under test runners they differ from settings'."""
    return {alias: connections[alias].settings_dict["NAME"] for alias in settings.DATABASES}


def child_main(sender: Any, task: ScheduledTask, worker_id: str, names: dict[str, Any]) -> None:
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
    for alias, name in names.items():
        connections[alias].settings_dict["NAME"] = name
    # Imported in the child only, after django.setup(): they import the models.
    from ..registry import registry
    from .calling import call_and_capture

    try:
        outcome = call_and_capture(registry.get(task.identifier), task, worker_id)
        sender.send(pack(outcome))
    finally:
        connections.close_all()
        sender.close()


def pack(outcome: Outcome) -> dict[str, Any]:
    packed = {"succeeded": outcome.succeeded, "result": outcome.result, "error": outcome.error,
              "traceback": outcome.traceback, "retryable": outcome.retryable, "exception": None,
              "exception_class": outcome.exception_class}
    if outcome.exception is not None:
        try:
            packed["exception"] = pickle.dumps(outcome.exception)
            pickle.loads(packed["exception"])
        except Exception:
            packed["exception"] = None
    return packed


def unpack(packed: dict[str, Any]) -> Outcome:
    exception = pickle.loads(packed["exception"]) if packed["exception"] else None
    if not packed["succeeded"] and exception is None:
        exception = JobFailedInChild(packed["error"])
    return Outcome(succeeded=packed["succeeded"], result=packed["result"], exception=exception,
                   error=packed["error"], traceback=packed["traceback"], retryable=packed["retryable"],
                   exception_class=packed["exception_class"] or (class_path(exception) if exception else ""))
