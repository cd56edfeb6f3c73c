"""Turning a call into stored task rows: validate, insert, notify, signal.

Nothing is written unless every check passes. Rows are written on the caller's
connection, so an enqueue inside ``transaction.atomic()`` commits or rolls back
with it; ``job_enqueued`` and the PostgreSQL NOTIFY take effect only on commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, OperationalError, connections, router, transaction
from django.utils import timezone

from . import metrics, validation
from .claiming import is_transient
from .conf import jobs_settings
from .exceptions import InvalidJobOption, JobArgumentsError
from .models import ScheduledTask
from .signals import job_enqueued, send_after_commit

if TYPE_CHECKING:
    from .registry import Job

NOTIFY_CHANNEL = "django_jobs"
# A key raced by another enqueue whose task finished in between: insert again.
UNIQUE_INSERT_ATTEMPTS = 10
UNIQUE_RETRY_PAUSE = 0.01


def build_task(job: Job[Any, Any], args: Iterable[Any], kwargs: dict[str, Any], run_at: datetime | None) -> ScheduledTask:
    """An unsaved row for one call, or an exception naming what is wrong."""
    ensure_registered(job)
    args = list(args)
    job.check_arguments(args, kwargs)
    stored_args, stored_kwargs = validation.json_arguments(args, kwargs)
    return ScheduledTask(
        identifier=job.name,
        args=stored_args,
        kwargs=stored_kwargs,
        queue=validation.queue(job.resolved_queue),
        priority=job.priority,
        scheduled_at=run_at or timezone.now(),
        description=job.description,
        max_retries=job.resolved_max_retries,
        retry_delay=job.resolved_retry_delay,
        backoff=job.backoff_kind,
        timeout=job.timeout,
        unique_key=job.unique_key,
    )


def enqueue_one(job: Job[Any, Any], args: Iterable[Any], kwargs: dict[str, Any], run_at: datetime | None) -> ScheduledTask:
    task = build_task(job, args, kwargs, run_at)
    if task.unique_key is not None:
        task, created = insert_unique(task)
        if not created:
            return task
    else:
        task.save(force_insert=True)
    after_insert([task])
    return task


def enqueue_many(job: Job[Any, Any], calls: Iterable[tuple[Iterable[Any], dict[str, Any]]]) -> list[ScheduledTask]:
    if job.unique_key is not None:
        raise InvalidJobOption("unique_key cannot be used with enqueue_many: every task would share one key.")
    tasks = [build_task(job, *unpack_call(call, index), run_at=None) for index, call in enumerate(calls)]
    if not tasks:
        return []
    with transaction.atomic(using=router.db_for_write(ScheduledTask)):
        ScheduledTask.objects.bulk_create(tasks, batch_size=5000)
        after_insert(tasks)
    return tasks


def unpack_call(call: Any, index: int) -> tuple[list[Any], dict[str, Any]]:
    try:
        args, kwargs = call
    except (TypeError, ValueError):
        raise JobArgumentsError(f"enqueue_many item {index} must be an (args, kwargs) pair, not {call!r}") from None
    return list(args), dict(kwargs)


def insert_unique(task: ScheduledTask) -> tuple[ScheduledTask, bool]:
    """Insert, or return the active task holding the same key.

    The unique index on ``active_unique_key`` decides; the savepoint keeps an
    enclosing transaction usable after the IntegrityError. MariaDB/MySQL may answer
    an insert racing an update of the key's holder with a deadlock; when our atomic
    block is the whole transaction, that is retried like a lost race. Inside the
    caller's transaction it cannot be: InnoDB rolled the whole transaction back.
    """
    alias = router.db_for_write(ScheduledTask)
    owns_transaction = not connections[alias].in_atomic_block
    for attempt in range(1, UNIQUE_INSERT_ATTEMPTS + 1):
        try:
            with transaction.atomic(using=alias):
                task.save(force_insert=True, using=alias)
            return task, True
        except IntegrityError:
            task.pk = None
            existing = ScheduledTask.objects.using(alias).active_with_key(task.unique_key).first()
            if existing is not None:
                return existing, False
        except OperationalError as error:
            task.pk = None
            if not (owns_transaction and is_transient(error)) or attempt == UNIQUE_INSERT_ATTEMPTS:
                raise
            time.sleep(UNIQUE_RETRY_PAUSE * attempt)
    raise IntegrityError(f"Could not enqueue unique key {task.unique_key!r}: it kept changing hands.")


def after_insert(tasks: list[ScheduledTask]) -> None:
    notify_workers({task.queue for task in tasks})
    if metrics.AVAILABLE:
        transaction.on_commit(lambda: metrics.count_enqueued(tasks), using=router.db_for_write(ScheduledTask))
    for task in tasks:
        send_after_commit(job_enqueued, task=task)
    if jobs_settings.IMMEDIATE:
        from .executor import run_inline

        for task in tasks:
            run_inline(task)


def notify_workers(queues: set[str]) -> None:
    """Wake idle PostgreSQL workers. NOTIFY is transactional: delivered on commit only."""
    alias = router.db_for_write(ScheduledTask)
    connection = connections[alias]
    if connection.vendor != "postgresql" or not jobs_settings.NOTIFY:
        return
    with connection.cursor() as cursor:
        for queue in sorted(queues):
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, queue])


def ensure_registered(job: Job[Any, Any]) -> None:
    from .registry import registry

    registry.get(job.name)


def enqueue(
    name: str,
    args: Iterable[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    delay: Any = None,
    run_at: datetime | None = None,
    **options: Any,
) -> ScheduledTask:
    """Enqueue the job registered as ``name``; ``options`` as for ``Job.using``."""
    from .registry import registry

    job = registry.get(name)
    if options:
        job = job.using(**options)
    if delay is not None and run_at is not None:
        raise InvalidJobOption("Pass delay or run_at, not both.")
    when = None
    if delay is not None:
        when = timezone.now() + validation.duration(delay, "delay")
    elif run_at is not None:
        when = validation.run_time(run_at)
    return enqueue_one(job, args or [], kwargs or {}, run_at=when)
