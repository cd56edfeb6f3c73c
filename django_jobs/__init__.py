"""django_jobs: background jobs and scheduling for Django, with the database as the broker."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "job",
    "registry",
    "enqueue",
    "get_statistics",
    "Job",
    "JobContext",
    "DjangoJobsError",
    "UnknownJob",
    "JobArgumentsError",
    "InvalidJobOption",
]

from .context import JobContext
from .exceptions import DjangoJobsError, InvalidJobOption, JobArgumentsError, UnknownJob
from .registry import Job, job, registry

if TYPE_CHECKING:
    from .models import ScheduledTask


def enqueue(name: str, args: Any = None, kwargs: Any = None, *, delay: Any = None, run_at: Any = None,
            **options: Any) -> "ScheduledTask":
    """Enqueue the job registered as ``name``. ``delay`` (seconds or timedelta) or
    ``run_at`` (aware datetime) defer it; ``options`` as for ``Job.using``."""
    from .enqueueing import enqueue as enqueue_by_name

    return enqueue_by_name(name, args, kwargs, delay=delay, run_at=run_at, **options)


def get_statistics(queue: str | None = None) -> dict[str, Any]:
    """Counts by status, success_rate, average_duration_ms, by_job and by_queue."""
    from .statistics import get_statistics as compute

    return compute(queue)
