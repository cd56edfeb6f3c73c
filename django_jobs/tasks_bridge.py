"""Django's ``@task`` functions on django_jobs' one execution path (Django >= 6.0).

A row's ``identifier`` is a job name. When no ``@job`` is registered under it, the
registry asks ``resolve``: if the name is the module path of a Django ``Task`` whose
backend is a ``JobsBackend``, the Task is adapted into a ``TaskJob`` — a ``Job``
like any other, whose two hooks give the function Django's ``TaskContext`` and store
its return value by Django's JSON rules. From there the worker, retries, timeouts,
recording, admin and cron treat it as any job.

Django's signals follow ours: ``job_enqueued`` -> ``task_enqueued``, ``job_started``
-> ``task_started``, ``job_completed`` and the last ``job_failed`` ->
``task_finished``. Ours are sent after commit with ``send_robust``, so Django's are
too. ``install()`` (called by the app's ``ready()``) connects all of this.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.conf import settings
from django.tasks import Task, TaskContext, task_backends
from django.tasks.exceptions import InvalidTask
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from . import validation
from .backend import RETRY_OPTIONS, JobsBackend
from .exceptions import UnknownJob
from .registry import Job, registry, validated_options
from .signals import job_completed, job_enqueued, job_failed, job_started
from .task_results import task_for_row, task_result

if TYPE_CHECKING:
    from django.dispatch import Signal

    from .models import ScheduledTask

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TaskJob(Job[Any, Any]):
    """A Django ``Task`` seen as a ``Job``; ``name`` is the task's module path."""

    django_task: Task | None = None

    def context_for(self, task: ScheduledTask, worker_id: str) -> TaskContext:
        """Django's context: its ``attempt`` counts every attempt the row records."""
        assert self.django_task is not None  # a bridge Job is made for a Django Task
        alias = self.django_task.backend
        return TaskContext(task_result=task_result(task, task_for_row(self.django_task, task, alias), alias))

    def stored_result(self, value: Any) -> Any:
        """Django's rule first (``TypeError: Unsupported type`` for a datetime, a set ...)."""
        return validation.json_value(normalize_json(value), "return value", validation.MAX_JSON_DEPTH)


def job_for(task: Task, backend: JobsBackend) -> TaskJob:
    """The job a task enqueued through ``backend`` runs as: the task's own retry options,
    else the backend's OPTIONS, else the DJANGO_JOBS defaults."""
    own = {name: getattr(task, name) for name in RETRY_OPTIONS if getattr(task, name, None) is not None}
    options = validated_options({**backend.retry_defaults, **own})
    job = TaskJob(func=task.func, name=task.module_path, django_task=task, queue=task.queue_name,
                  priority=int(task.priority), takes_context=task.takes_context, **options)
    job.check_limits()  # a key names the task's parameters, and comes with its limit
    return job


def import_task(name: str) -> Task | None:
    """The ``Task`` at module path ``name``; None if there is none (not importable, or
    not a Task); ``InvalidTask`` if its module exists but importing it raised."""
    if not in_project_code(name):
        return None
    try:
        found = import_string(name)
    except ImportError as error:
        missing = getattr(error, "name", None)
        if not (isinstance(error, ModuleNotFoundError) and missing and not name.startswith(missing)):
            return None
        # The module exists but needs one that does not: say so rather than "unknown".
        raise InvalidTask(f"Importing {name!r} as a Django Task failed: {error}") from error
    except Exception as error:
        raise InvalidTask(f"Importing {name!r} as a Django Task failed: {error!r}") from error
    return found if isinstance(found, Task) else None


def in_project_code(name: str) -> bool:
    """Whether ``name`` lies in an installed app or the settings' package.

    Names reach the registry from rows and from callers such as the JSON API; importing
    whatever module a caller names could run any installed module's import-time code,
    so only the project's own packages are ever imported to find a task.
    """
    module = name.rpartition(".")[0]
    roots = {config.name for config in apps.get_app_configs()}
    if settings.SETTINGS_MODULE:
        roots.add(settings.SETTINGS_MODULE.partition(".")[0])
    return any(module == root or module.startswith(f"{root}.") for root in roots)


def jobs_backend_of(task: Task) -> JobsBackend:
    """The task's backend, which must be a JobsBackend for django_jobs to run it."""
    try:
        backend = task.get_backend()
    except Exception as error:
        raise InvalidTask(f"Django Task {task.module_path!r} has backend {task.backend!r}, which cannot be "
                          f"loaded: {error}") from error
    if not isinstance(backend, JobsBackend):
        raise InvalidTask(f"Django Task {task.module_path!r} has backend {task.backend!r} "
                          f"({type(backend).__name__}); django_jobs runs only tasks of a JobsBackend.")
    return backend


def check_runnable(task: Task) -> None:
    """``InvalidTask`` unless a worker will find ``task`` by its module path, under a JobsBackend.

    Workers import a task by ``module.qualname`` of its function: a task stored under
    another name, or re-exported, would be written but could never run.
    """
    found = import_task(task.module_path)
    if found is None or found.func is not task.func:
        raise InvalidTask(f"Task {task.module_path!r} is not found at its module path, which is how workers "
                          f"import it: define it at module level under the name of its function.")
    jobs_backend_of(found)


# Resolved module-level tasks, per backend instance (a settings change makes new ones).
_resolved: weakref.WeakKeyDictionary[Any, dict[str, TaskJob]] = weakref.WeakKeyDictionary()


def resolve(name: str) -> TaskJob | None:
    """Registry resolver: the Django Task at module path ``name`` as a job."""
    try:
        found = import_task(name)
        if found is None:
            return None
        backend = jobs_backend_of(found)
    except InvalidTask as error:
        raise UnknownJob(name, str(error)) from error
    jobs = _resolved.setdefault(backend, {})
    job = jobs.get(name)
    if job is None or job.django_task != found:
        job = jobs[name] = job_for(found, backend)
    return job


def uses_jobs_backend() -> bool:
    for options in getattr(settings, "TASKS", {}).values():
        try:
            backend = import_string(options.get("BACKEND", ""))
        except ImportError:
            continue  # Django's own checks report a backend that cannot be imported
        if isinstance(backend, type) and issubclass(backend, JobsBackend):
            return True
    return False


# -- Django's signals, translated from ours ----------------------------------------------

def announce(signal: Signal, row: ScheduledTask) -> None:
    """Send Django's ``signal`` for ``row`` if it is a Django Task's (robustly, logged)."""
    if registry.is_registered(row.identifier):
        return  # an @job's row: nothing to translate (the common case, kept cheap)
    found = import_task(row.identifier)
    if found is None:
        return
    backend = task_backends[found.backend]
    result = task_result(row, task_for_row(found, row, found.backend), found.backend)
    for receiver, response in signal.send_robust(sender=type(backend), task_result=result):
        if isinstance(response, Exception):
            logger.error("Receiver %r of a Django task signal raised %r (task %s)", receiver, response, row.pk,
                         exc_info=response)


def on_enqueued(sender: Any, task: ScheduledTask, **kwargs: Any) -> None:
    """``job_enqueued`` -> ``task_enqueued``."""
    announce(task_enqueued, task)


def on_started(sender: Any, task: ScheduledTask, **kwargs: Any) -> None:
    """``job_started`` (each attempt) -> ``task_started``."""
    announce(task_started, task)


def on_completed(sender: Any, task: ScheduledTask, **kwargs: Any) -> None:
    """``job_completed`` -> ``task_finished`` (SUCCESSFUL)."""
    announce(task_finished, task)


def on_failed(sender: Any, task: ScheduledTask, will_retry: bool = False, **kwargs: Any) -> None:
    """The last ``job_failed`` -> ``task_finished`` (FAILED)."""
    # A failed attempt with a retry ahead leaves the result READY: not finished yet.
    if not will_retry:
        announce(task_finished, task)


def install() -> None:
    """Resolve Django Tasks by module path and translate signals (idempotent).

    Only when a ``TASKS`` backend is a JobsBackend: otherwise no row can name a
    Django Task, and receivers on our signals would cost every job a dispatch.
    """
    if not uses_jobs_backend():
        return
    registry.add_resolver(resolve)
    for signal, receiver in ((job_enqueued, on_enqueued), (job_started, on_started),
                             (job_completed, on_completed), (job_failed, on_failed)):
        signal.connect(receiver, dispatch_uid=f"django_jobs.tasks_bridge.{receiver.__name__}")
