"""django_jobs: background jobs and scheduling for Django, with the database as the broker."""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "job",
    "registry",
    "enqueue",
    "enqueue_many",
    "get_statistics",
    "pause_queue",
    "resume_queue",
    "paused_queues",
    "pause_all",
    "resume_all",
    "Job",
    "Signature",
    "JobContext",
    "DjangoJobsError",
    "UnknownJob",
    "JobArgumentsError",
    "InvalidJobOption",
    "UniqueKeyConflict",
]

from .context import JobContext
from .exceptions import DjangoJobsError, InvalidJobOption, JobArgumentsError, UniqueKeyConflict, UnknownJob
from .registry import Job, job, registry
from .signatures import Signature

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .models import ScheduledTask

# Each function below imports its module when called: users import ``django_jobs`` in
# modules that load while Django sets the apps up, before the models can be imported.


def enqueue(name: str, args: Any = None, kwargs: Any = None, *, delay: Any = None, run_at: Any = None,
            **options: Any) -> "ScheduledTask":
    """Enqueue the job registered as ``name``. ``delay`` (seconds or timedelta) or
    ``run_at`` (aware datetime) defer it; ``options`` as for ``Job.using``."""
    from .enqueueing import enqueue as enqueue_by_name

    return enqueue_by_name(name, args, kwargs, delay=delay, run_at=run_at, **options)


def enqueue_many(signatures: "Iterable[Signature[Any, Any]]", *, delay: Any = None, run_at: Any = None
                 ) -> "list[ScheduledTask]":
    """Enqueue signatures (``job.s(...)``) of any jobs, queues and options in one transaction,
    one statement per 10,000 rows. ``delay`` or ``run_at`` applies to the signatures that set
    no time of their own; a signature that sets one in a batch that sets one is refused.
    Every entry is checked first: an error names its position and nothing is written.
    Returns the tasks in order; ``unique_key`` is refused (use ``.enqueue()``)."""
    from .enqueueing import enqueue_signatures

    return enqueue_signatures(signatures, delay=delay, run_at=run_at)


def get_statistics(queue: str | None = None) -> dict[str, Any]:
    """Counts by status, success_rate, average_duration_ms, by_job and by_queue."""
    from .stats.summary import get_statistics as compute

    return compute(queue)


def pause_queue(name: str, *, by: Any = None, reason: str = "") -> bool:
    """Workers claim nothing from ``name`` until it is resumed. False if already paused."""
    from .queues import pause_queue as pause

    return pause(name, by=by, reason=reason)


def resume_queue(name: str) -> bool:
    """Let workers claim from ``name`` again. False if it was not paused."""
    from .queues import resume_queue as resume

    return resume(name)


def paused_queues() -> list[str]:
    """The names of the queues paused one by one."""
    from .queues import paused_queues as paused

    return paused()


def pause_all(*, by: Any = None, reason: str = "") -> bool:
    """Workers claim from no queue and fire no cron schedule until ``resume_all()``. False if already paused."""
    from .queues import pause_all as pause

    return pause(by=by, reason=reason)


def resume_all() -> bool:
    """Undo ``pause_all()`` (queues paused one by one stay paused). False if it was not in force."""
    from .queues import resume_all as resume

    return resume()
