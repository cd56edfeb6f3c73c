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


class JobTimeout(DjangoJobsError):
    """A job ran longer than its ``timeout``."""


class TaskCancelled(DjangoJobsError):
    """Stands for a cancelled task in Django Tasks results, which have no cancelled status."""


class WorkerLost(DjangoJobsError):
    """The worker holding a task stopped sending heartbeats."""
