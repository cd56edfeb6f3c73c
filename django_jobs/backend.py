"""``JobsBackend``: Django's Tasks framework (``django.tasks``, Django >= 6.0) on django_jobs.

```python
TASKS = {"default": {"BACKEND": "django_jobs.backend.JobsBackend",
                     "QUEUES": ["default", "mail"],
                     "OPTIONS": {"max_retries": 3, "retry_delay": 5, "backoff": "exponential", "timeout": 600}}}
```

``enqueue`` writes an ordinary ScheduledTask row (``identifier`` = the task's module
path, ``queue_name`` -> ``queue``, ``priority``, ``run_after`` -> ``scheduled_at``);
``run_jobworker`` runs it like any job, with retries. ``get_result`` reads the row back
from any process. On Django 5.2, which has no ``django.tasks``, importing this module
raises ``ImproperlyConfigured``; the rest of django_jobs works without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, cast

import django
from django.core.exceptions import ImproperlyConfigured

try:
    from django.tasks import Task, TaskResult
    from django.tasks.backends.base import BaseTaskBackend
except ImportError as error:  # Django < 6.0
    raise ImproperlyConfigured(
        f"django_jobs.backend.JobsBackend needs Django's Tasks framework (django.tasks, Django 6.0 or later); "
        f"this is Django {django.get_version()}. Remove it from the TASKS setting and use @django_jobs.job."
    ) from error
from django.core import checks
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.utils.json import normalize_json

from . import validation
from .conf import jobs_settings
from .exceptions import InvalidJobOption
from .registry import validated_options

# Options of a backend's OPTIONS and of a task (``@task(max_retries=...)``): retries and
# timeout, and flow control (limits every worker keeps together, in the claim).
RETRY_OPTIONS = ("max_retries", "retry_delay", "backoff", "timeout", "concurrency", "concurrency_key", "rate",
                 "rate_key")
# Row ids are bigint primary keys; anything else cannot name a row.
MAX_ID = 2**63 - 1


def checked_retry_options(values: dict[str, Any], where: str, error: type[Exception]) -> dict[str, Any]:
    """The options that are set (not None), validated; ``error`` names the bad one."""
    unknown = set(values) - set(RETRY_OPTIONS)
    if unknown:
        raise error(f"{where} has unknown option(s) {sorted(unknown)}; allowed: {', '.join(RETRY_OPTIONS)}.")
    try:
        return validated_options({name: value for name, value in values.items() if value is not None})
    except InvalidJobOption as problem:
        raise error(f"{where}: {problem}") from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JobsTask(Task):
    """The Task class of a JobsBackend: Django's ``Task`` plus django_jobs' retry options.

    ``@task(max_retries=5, retry_delay=10, backoff="fixed", timeout=60)`` sets them for
    one task; None means the backend's ``OPTIONS``, else the ``DJANGO_JOBS`` defaults.
    ``max_retries``: retries after the first attempt; ``retry_delay``: base of the backoff
    (seconds or timedelta); ``backoff``: ``"exponential"``, ``"fixed"`` or a callable
    attempt -> timedelta; ``timeout``: seconds or timedelta, then the attempt is killed.
    Flow control as ``@job``'s: ``concurrency`` and ``concurrency_key``, ``rate``
    (``"N/s"``, ``"N/m"``, ``"N/h"``) and ``rate_key``, keys filled from the arguments.
    """

    max_retries: int | None = None
    retry_delay: timedelta | float | None = None
    backoff: str | Callable[[int], timedelta] | None = None
    timeout: timedelta | float | None = None
    concurrency: int | None = None
    concurrency_key: str | None = None
    rate: str | None = None
    rate_key: str | None = None

    def using(self, *, priority: int | None = None, queue_name: str | None = None, run_after: Any = None,
              backend: str | None = None, **retry_options: Any) -> Task:
        """A copy with other defaults: Django's ``using`` plus the retry options."""
        unknown = set(retry_options) - set(RETRY_OPTIONS)
        if unknown:
            raise TypeError(f"Unknown option(s) {sorted(unknown)} for using(); retry options: {', '.join(RETRY_OPTIONS)}")
        task: Task = Task.using(self, priority=priority, queue_name=queue_name, run_after=run_after, backend=backend)
        return dataclasses.replace(task, **retry_options) if retry_options else task


class JobsBackend(BaseTaskBackend):
    """Django Tasks stored as ScheduledTask rows and run by ``run_jobworker``."""

    task_class = JobsTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.retry_defaults = checked_retry_options(dict(self.options), f"TASKS[{alias!r}]['OPTIONS']",
                                                    InvalidTaskBackend)

    def validate_task(self, task: Task) -> None:
        """Django's checks (module-level function, priority, run_after, queue) and the retry options."""
        super().validate_task(task)
        own = {name: getattr(task, name, None) for name in RETRY_OPTIONS}
        checked_retry_options(own, f"Task {task.module_path!r}", InvalidTask)

    def enqueue(self, task: Task, args: Iterable[Any], kwargs: dict[str, Any]) -> TaskResult:
        """Write the task's row (on the caller's connection: it belongs to an open transaction)."""
        # Here, not at the top: Django may build task backends before the apps (and so
        # the models these modules import) are ready.
        from .enqueueing import enqueue_one
        from .task_results import task_result
        from .tasks_bridge import check_runnable, job_for

        self.validate_task(task)
        # Django's rules for arguments: TypeError "Unsupported type" for a datetime, a set ...
        plain_args, plain_kwargs = normalize_json(args), normalize_json(kwargs)
        check_runnable(task)
        try:
            run_at = None if task.run_after is None else validation.run_time(task.run_after, "run_after")
            row = enqueue_one(job_for(task, self), cast(list[Any], plain_args), cast(dict[str, Any], plain_kwargs),
                              run_at=run_at)
        except InvalidJobOption as error:  # e.g. a queue DJANGO_JOBS['QUEUES'] does not allow
            raise InvalidTask(str(error)) from error
        return task_result(row, task, self.alias)

    def get_result(self, result_id: Any) -> TaskResult:
        """The result of the row with this id, as it stands now, from any process."""
        # Here, not at the top: as in ``enqueue``, the apps may not be ready at import.
        from .models import ScheduledTask
        from .task_results import task_for_row, task_result
        from .tasks_bridge import import_task

        pk = row_id(result_id)
        row = ScheduledTask.objects.filter(pk=pk).first() if pk is not None else None
        found = import_task(row.identifier) if row is not None else None
        if row is None or found is None:  # no such row, or the row of an @job rather than of a Django Task
            raise TaskResultDoesNotExist(result_id)
        return task_result(row, task_for_row(found, row, self.alias), self.alias)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """``manage.py check``: django_jobs installed, queues that DJANGO_JOBS allows."""
        from django.apps import apps

        problems: list[checks.CheckMessage] = []
        if not apps.is_installed("django_jobs"):
            problems.append(checks.Error(
                f"TASKS[{self.alias!r}] uses django_jobs.backend.JobsBackend, but 'django_jobs' is not in "
                f"INSTALLED_APPS.", hint="Add 'django_jobs' to INSTALLED_APPS and run migrate.", id="django_jobs.E020"))
        allowed = jobs_settings.QUEUES
        refused = sorted(self.queues - set(allowed)) if allowed is not None else []
        if refused:
            problems.append(checks.Error(
                f"TASKS[{self.alias!r}]['QUEUES'] has queue(s) {refused} that DJANGO_JOBS['QUEUES'] does not allow.",
                hint="Add them to DJANGO_JOBS['QUEUES'], or remove them from the backend's QUEUES.",
                id="django_jobs.E021"))
        return problems


def row_id(result_id: Any) -> int | None:
    """The primary key a result id names, or None if it cannot name a row."""
    if isinstance(result_id, bool) or not isinstance(result_id, (int, str)):
        return None
    text = str(result_id)
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if 0 < int(text) <= MAX_ID else None
