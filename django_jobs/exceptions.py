"""Every error django_jobs raises derives from ``DjangoJobsError``.

Each also derives from the built-in exception a Python user would expect
(``LookupError``, ``TypeError``, ``ValueError``), so generic handlers keep working.
"""


class DjangoJobsError(Exception):
    """Base class of django_jobs errors."""


class UnknownJob(DjangoJobsError, LookupError):
    """No job is registered under this name."""

    def __init__(self, name: str, detail: str = "") -> None:
        self.name = name
        super().__init__(
            f"No job named {name!r} is registered. Decorate the function with @job in an "
            f"installed app's jobs.py, or register it with django_jobs.registry.register()."
            + (f" {detail}" if detail else "")
        )


class JobArgumentsError(DjangoJobsError, TypeError):
    """The arguments of an enqueue do not survive a JSON round trip or do not fit the function."""


class InvalidJobOption(DjangoJobsError, ValueError):
    """An option of a job or an enqueue (priority, queue, time, retries ...) is invalid."""


class UniqueKeyConflict(DjangoJobsError):
    """A task cannot go back to pending: another active task holds its ``unique_key``.

    Raised by ``ScheduledTask.retry()`` (and so by every retry in admin, the API and
    ``manage.py jobs retry``); the database's unique index decided, and nothing was
    changed. ``holder_id`` is the task holding the key, None if it let go of the key
    before it could be named.
    """

    def __init__(self, task_id: int, unique_key: str, holder_id: int | None, holder_status: str = "") -> None:
        self.task_id = task_id
        self.unique_key = unique_key
        self.holder_id = holder_id
        holder = f"active task {holder_id} ({holder_status})" if holder_id is not None else "another active task"
        self.reason = f"its unique_key {unique_key!r} is held by {holder}"
        super().__init__(
            f"Task {task_id} was not retried: {self.reason}. Nothing was changed; retry it once that task "
            f"has finished, or cancel that task first."
        )


class JobTimeout(DjangoJobsError):
    """A job ran longer than its ``timeout``."""


class TaskCancelled(DjangoJobsError):
    """Stands for a cancelled task in Django Tasks results, which have no cancelled status."""


class WorkerLost(DjangoJobsError):
    """The worker holding a task stopped sending heartbeats."""


class ScheduleBusy(DjangoJobsError):
    """A cron schedule cannot run now: its previous task is still pending or running.

    Raised by ``CronSchedule.run_now()`` (admin's "run now", the API's ``/run``) when the
    schedule's ``overlap`` is ``"skip"`` or ``"queue"``; nothing was enqueued. ``holder_id``
    is that task, None if it finished before it could be named.
    """

    def __init__(self, schedule: str, overlap: str, holder_id: int | None, holder_status: str = "") -> None:
        self.schedule = schedule
        self.overlap = overlap
        self.holder_id = holder_id
        holder = f"task {holder_id} ({holder_status})" if holder_id is not None else "its previous task"
        super().__init__(f"Cron schedule {schedule!r} allows no overlap (overlap={overlap!r}) and {holder} "
                         f"is still pending or running; nothing was enqueued.")
