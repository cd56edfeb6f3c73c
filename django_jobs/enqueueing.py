"""Turning a call into stored task rows: validate, insert, notify, signal.

Nothing is written unless every check passes. Rows are written on the caller's
connection, so an enqueue inside ``transaction.atomic()`` commits or rolls back
with it; ``job_enqueued`` and the PostgreSQL NOTIFY take effect only on commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import IntegrityError, OperationalError, connections, router, transaction
from django.utils import timezone

from . import inserting, metrics, validation
from .batch import Batch, planned
from .conf import jobs_settings
from .db import engine
from .exceptions import InvalidJobOption, JobArgumentsError
from .execution.executor import run_inline
from .models import ScheduledTask
from .notify import NOTIFY_CHANNEL, wake_workers
from .registry import Job, registry
from .resilience import is_transient
from .signals import job_enqueued, send_each_after_commit

# A key raced by another enqueue whose task finished in between: insert again.
UNIQUE_INSERT_ATTEMPTS = 10
UNIQUE_RETRY_PAUSE = 0.01


def build_task(job: Job[Any, Any], args: Iterable[Any], kwargs: dict[str, Any], run_at: datetime | None) -> ScheduledTask:
    """An unsaved row for one call, or an exception naming what is wrong."""
    _, _, stored_args, stored_kwargs = checked_call(job, args, kwargs)
    flow = job.flow_columns(stored_args, stored_kwargs)
    return ScheduledTask(args=stored_args, kwargs=stored_kwargs, **job.task_columns(run_at), **flow)


def checked_call(job: Job[Any, Any], args: Iterable[Any], kwargs: dict[str, Any]) -> tuple[str, str, list[Any], dict[str, Any]]:
    """The call's arguments as stored (JSON text and decoded), or an exception naming what is wrong."""
    ensure_registered(job)
    args = list(args)
    job.check_arguments(args, kwargs)
    return validation.json_documents(args, kwargs)


def enqueue_one(job: Job[Any, Any], args: Iterable[Any], kwargs: dict[str, Any], run_at: datetime | None) -> ScheduledTask:
    args_text, kwargs_text, stored_args, stored_kwargs = checked_call(job, args, kwargs)
    options = job.task_columns(run_at)
    flow = job.flow_columns(stored_args, stored_kwargs)
    alias = router.db_for_write(ScheduledTask)
    connection = connections[alias]
    database = engine(alias)
    # Owned and limited tasks take the cursor path: a prepared statement per owner or
    # per key would churn the cache.
    if flow:
        options = {**options, **flow}
    elif options["unique_key"] is None and options["owner_id"] is None and database.can_insert_one(connection):
        created = options["scheduled_at"] if run_at is None else timezone.now()  # "now" is one time
        task = database.insert_one(connection, options, created, (args_text, kwargs_text), (stored_args, stored_kwargs),
                                   wake_for(options["queue"], connection), relaxed_commit(connection))
        if task is not None:
            announce([task])  # committed already: the hooks run at once
            return task
    task = ScheduledTask(args=stored_args, kwargs=stored_kwargs, **options)
    if task.unique_key is not None:
        task, created = insert_unique(task)
        if not created:
            return task
    else:
        insert(task, alias)
    announce([task])
    return task


def enqueue_many(job: Job[Any, Any], calls: Iterable[tuple[Iterable[Any], dict[str, Any]]]) -> list[ScheduledTask]:
    if job.unique_key is not None:
        raise InvalidJobOption("unique_key cannot be used with enqueue_many: every task would share one key.")
    ensure_registered(job)
    template = ScheduledTask(args=[], kwargs={}, **job.task_columns(None))
    fitting: set[tuple[int, frozenset[str]]] = set()
    pairs = [checked_pair(job, call, index, fitting) for index, call in enumerate(calls)]
    if not pairs:
        return []
    if job.concurrency is not None or job.rate is not None:
        # Each call fills its own keys: rows then differ by key, which a batch groups.
        return enqueue_signatures([job.s(*args, **kwargs) for args, kwargs in pairs])
    # Encoded now, so a value that cannot be stored is refused before anything is written.
    documents = validation.json_chunks(pairs, inserting.CHUNK_ROWS, inserting.CHUNK_CHARS)
    alias = router.db_for_write(ScheduledTask)
    with transaction.atomic(using=alias):
        tasks = insert_many(template, documents, alias)
        announce(tasks)
    return tasks


def checked_pair(job: Job[Any, Any], call: Any, index: int, fitting: set[tuple[int, frozenset[str]]]) -> Any:
    """One call of ``enqueue_many`` as an ``(args, kwargs)`` pair of a list or tuple and a
    dict, checked against the job's signature.

    A well-formed call is returned as it is: a big batch of new pairs, all kept alive,
    would set off several full garbage collections of the whole heap, which made this
    step several times slower (figures: bench/README.md, "Measured design choices").
    Binding to the signature depends only on how many positional arguments there are
    and which keywords, so a shape already seen to fit is not bound again.
    """
    try:
        args, kwargs = call
    except (TypeError, ValueError):
        raise JobArgumentsError(f"enqueue_many item {index} must be an (args, kwargs) pair, not {call!r}") from None
    if type(args) not in (list, tuple) or type(kwargs) is not dict or type(call) not in (list, tuple):
        args, kwargs = list(args), dict(kwargs)
        call = (args, kwargs)
    shape = (len(args), frozenset(kwargs))
    if shape not in fitting:
        job.check_arguments(args, kwargs)
        fitting.add(shape)
    return call


def insert(task: ScheduledTask, alias: str) -> None:
    """One INSERT, with the NOTIFY in the same statement where the database allows."""
    connection = connections[alias]
    fast = inserting.available(connection) and not inserting.save_signals_connected()
    if not (fast and inserting.insert_task(task, connection, wake_for(task.queue, connection),
                                             relaxed=relaxed_commit(connection))):
        task.save(force_insert=True, using=alias)
        notify_workers({task.queue}, alias)


def insert_many(template: ScheduledTask, documents: list[str], alias: str) -> list[ScheduledTask]:
    """The rows of ``documents`` (``[[args, kwargs], ...]`` JSON, see ``validation.json_chunks``)."""
    connection = connections[alias]
    if inserting.available(connection):
        tasks = inserting.insert_tasks(template, documents, connection, wake_for(template.queue, connection))
        if tasks is not None:
            return tasks
    options = {name: value for name, value in template.__dict__.items() if name not in ("_state", "args", "kwargs")}
    tasks = [ScheduledTask(args=args, kwargs=kwargs, **options)
             for document in documents for args, kwargs in json.loads(document)]
    ScheduledTask.objects.using(alias).bulk_create(tasks, batch_size=5000)
    notify_workers({template.queue}, alias)
    return tasks


def enqueue_signatures(entries: Iterable[Any], *, delay: Any = None, run_at: datetime | None = None
                       ) -> list[ScheduledTask]:
    """``django_jobs.enqueue_many``: signatures of any jobs and options, in one transaction."""
    batch = planned(entries, delay, run_at)
    if not batch.signatures:
        return []
    alias = router.db_for_write(ScheduledTask)
    with transaction.atomic(using=alias):
        tasks = insert_batch(batch, alias)
        announce(tasks)
    return tasks


def insert_batch(batch: Batch, alias: str) -> list[ScheduledTask]:
    """The rows of ``batch``: one JSON insert per chunk where available, else ``bulk_create``."""
    connection = connections[alias]
    if inserting.available(connection):
        varying = batch.varying()
        documents, overrides = batch.documents(varying, connection)
        wake = wake_for_all(batch.queues, connection)
        tasks = inserting.insert_tasks(batch.template(), documents, connection, wake, varying, overrides)
        if tasks is not None:
            return tasks
    tasks = batch.unsaved_tasks()
    ScheduledTask.objects.using(alias).bulk_create(tasks, batch_size=5000)
    notify_workers(batch.queues, alias)
    return tasks


def relaxed_commit(connection: Any) -> bool:
    """Whether this INSERT may commit without waiting for the disk (``ENQUEUE_SYNCHRONOUS_COMMIT``).

    Only when the statement is its own transaction: the caller's transactions keep
    the durability they chose.
    """
    return (not jobs_settings.ENQUEUE_SYNCHRONOUS_COMMIT and not connection.in_atomic_block
            and engine(connection.alias).can_relax_commit)


def wake_for(queue: str, connection: Any) -> tuple[str, str] | None:
    if not jobs_settings.NOTIFY or not engine(connection.alias).can_notify:
        return None
    return (NOTIFY_CHANNEL, queue)


def wake_for_all(queues: set[str], connection: Any) -> inserting.NotifyArgs:
    """``wake_for`` of several queues: one NOTIFY each, from the same statement."""
    if len(queues) == 1:
        return wake_for(next(iter(queues)), connection)
    return None if wake_for("", connection) is None else (NOTIFY_CHANNEL, sorted(queues))


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
                insert(task, alias)
            return task, True
        except IntegrityError:
            task.pk = None
            key = task.unique_key
            assert key is not None  # only keyed tasks come here
            existing = ScheduledTask.objects.using(alias).active_with_key(key).first()
            if existing is not None:
                return existing, False
        except OperationalError as error:
            task.pk = None
            if not (owns_transaction and is_transient(error)) or attempt == UNIQUE_INSERT_ATTEMPTS:
                raise
            time.sleep(UNIQUE_RETRY_PAUSE * attempt)
    raise IntegrityError(f"Could not enqueue unique key {task.unique_key!r}: it kept changing hands.")


def after_insert(tasks: list[ScheduledTask]) -> None:
    """Wake the workers, then ``announce``: for rows saved through the ORM (cron tasks)."""
    notify_workers({task.queue for task in tasks})
    announce(tasks)


def announce(tasks: list[ScheduledTask]) -> None:
    """``job_enqueued`` for each task once committed (and the metrics); IMMEDIATE mode runs them now."""
    if metrics.AVAILABLE:
        transaction.on_commit(lambda: metrics.count_enqueued(tasks), using=router.db_for_write(ScheduledTask))
    send_each_after_commit(job_enqueued, tasks)
    if jobs_settings.IMMEDIATE:
        for task in tasks:
            run_inline(task)


def notify_workers(queues: set[str], alias: str | None = None) -> None:
    """Wake idle PostgreSQL workers of ``queues`` (``notify.wake_workers`` on the task table's database)."""
    wake_workers(queues, alias or router.db_for_write(ScheduledTask))


def ensure_registered(job: Job[Any, Any]) -> None:
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
