"""Every setting of django_jobs, with its type, default and meaning.

Users configure one dict, ``settings.DJANGO_JOBS``. A value is read on first use and
kept until Django reports that DJANGO_JOBS changed (``override_settings`` and
pytest-django's ``settings`` fixture say so), so tests can change it at will.
Durations accept a number of seconds or a ``timedelta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed


@dataclass(frozen=True)
class Setting:
    default: Any
    doc: str
    is_duration: bool = False


SETTINGS: dict[str, Setting] = {
    "IMMEDIATE": Setting(False, "Run each job in-process at enqueue time (tests, development)."),
    "CRON": Setting({}, "Recurring schedules declared in code: name -> {job, cron, args, kwargs, ...}."),
    "POLL_INTERVAL": Setting(
        1.0,
        "Seconds an idle worker waits before looking for due tasks again "
        "(PostgreSQL wakes it earlier through LISTEN/NOTIFY).",
        is_duration=True,
    ),
    "BATCH_SIZE": Setting(100, "Most rows a worker claims in one statement."),
    "CONCURRENCY": Setting(1, "Default number of jobs a worker process runs at once (threads)."),
    "ASYNC_CONCURRENCY": Setting(
        100,
        "Most async def jobs a worker process runs at once on its event loop, beside its job threads "
        "(--async-concurrency). 0 runs them on the job threads instead, one per thread.",
    ),
    "HEARTBEAT_INTERVAL": Setting(5.0, "Seconds between a worker's heartbeats.", is_duration=True),
    "HEARTBEAT_TIMEOUT": Setting(
        60.0,
        "Seconds without a heartbeat after which a worker is presumed dead and its "
        "running tasks are recovered (retried, or failed when no attempts are left).",
        is_duration=True,
    ),
    "DEFAULT_MAX_RETRIES": Setting(3, "Retries after the first attempt, unless a job says otherwise."),
    "DEFAULT_RETRY_DELAY": Setting(1.0, "Base delay of the backoff, unless a job says otherwise.", is_duration=True),
    "MAX_RETRY_DELAY": Setting(3600.0, "Cap of the exponential backoff.", is_duration=True),
    "DEFAULT_QUEUE": Setting("default", "Queue of jobs that name none."),
    "QUEUES": Setting(
        None,
        "Optional list of allowed queue names; enqueueing to any other queue raises. "
        "None allows any name.",
    ),
    "SHUTDOWN_GRACE": Setting(
        30.0,
        "Seconds a stopping worker waits for running jobs after the first SIGTERM/SIGINT.",
        is_duration=True,
    ),
    "EVENTS": Setting(
        True,
        "Write the event trail (a TaskEvent row for every state change of a task, by database triggers). "
        "False turns it off for this process's writes (per connection).",
    ),
    "STALLED_AFTER": Setting(
        600.0,
        "Seconds a live worker may hold tasks without writing any outcome before admin and jobs_stats show "
        "it as not progressing (a hung job without a timeout, or a bug). Only shown; nothing is stopped.",
        is_duration=True,
    ),
    "NOTIFY": Setting(True, "On PostgreSQL, wake idle workers with NOTIFY when a task is enqueued."),
    "ENQUEUE_SYNCHRONOUS_COMMIT": Setting(
        True,
        "On PostgreSQL, False commits a single enqueue that is its own transaction (autocommit, "
        "no unique_key) with synchronous_commit=off: it returns before the WAL reaches the disk, "
        "and a crash of the database server in the next ~0.6 s may lose the task. Never applied "
        "inside your own transaction.",
    ),
    "MAX_TRACEBACK_LENGTH": Setting(20_000, "Characters of a traceback kept on a failed task."),
    "RETENTION": Setting(
        None,
        "Automatic pruning by workers: {'completed': '7d', 'failed': {'older_than': '30d', 'keep': 1000}} "
        "(per status an age as 90s, 15m, 12h, 7d, 2w, seconds or a timedelta, or a dict of 'older_than' "
        "and/or 'keep', the newest tasks that stay; a task goes past either limit). None: off.",
    ),
    "RETENTION_INTERVAL": Setting(300.0, "Seconds between a worker's automatic pruning runs.", is_duration=True),
    "QUEUE_LIMITS": Setting(
        {},
        "Flow control of whole queues: {'mail': {'concurrency': 5, 'rate': '10/s'}}: at most 5 tasks of the "
        "queue run at once and at most 10 start per second, across every worker (rates: 'N/s', 'N/m', 'N/h'). "
        "Read when a worker starts; every worker must have the same.",
    ),
    "DATABASE": Setting(
        None,
        "Alias of DATABASES that holds every table of the app (with 'django_jobs.routers.JobsRouter' in "
        "DATABASE_ROUTERS). None: the app follows your routers, the default database unless they say "
        "otherwise. On another alias than your models', an enqueue no longer joins your transaction.",
    ),
    "LISTEN_DATABASE_URL": Setting(
        None,
        "PostgreSQL only: a direct connection (postgres://user:password@host:port/name) for the workers' "
        "LISTEN when the app's database goes through a transaction pooler such as PgBouncer, where LISTEN "
        "cannot work. None: the app's own database settings, or polling behind a pooler.",
    ),
    "API_MAX_BODY_SIZE": Setting(1_048_576, "Largest request body the JSON API reads, in bytes (larger: 413)."),
}


class JobsSettings:
    """Lazy view over ``settings.DJANGO_JOBS`` with defaults filled in.

    Kept once read (an attribute of the instance, so the next read is a plain lookup):
    otherwise every read would go through Django's settings and the spec again (and
    convert a duration again), and every enqueue reads several settings.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            spec = SETTINGS[name]
        except KeyError:
            raise AttributeError(f"django_jobs has no setting {name!r}") from None
        value = user_settings().get(name, spec.default)
        if spec.is_duration:
            value = to_seconds(value, name)
        self.__dict__[name] = value
        return value

    def forget(self) -> None:
        """Read every setting afresh on its next use."""
        self.__dict__.clear()


def user_settings() -> dict[str, Any]:
    return getattr(django_settings, "DJANGO_JOBS", None) or {}


def to_seconds(value: Any, what: str) -> float:
    """A number of seconds or a timedelta, as float seconds."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"{what} must be a number of seconds or a timedelta, not {value!r}")


def to_timedelta(value: Any, what: str) -> timedelta:
    return timedelta(seconds=to_seconds(value, what))


jobs_settings = JobsSettings()


def forget_changed_settings(setting: str, **kwargs: Any) -> None:
    if setting == "DJANGO_JOBS":
        jobs_settings.forget()


setting_changed.connect(forget_changed_settings, dispatch_uid="django_jobs.conf")
