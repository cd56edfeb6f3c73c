"""``django_jobs.enqueue_many``: signatures of any jobs, checked and grouped before the insert.

Every entry is checked before anything is written; an error names the entry's position.
Rows of the same job, options and run time form a group whose columns are computed
once: 100,000 signatures of a few jobs cost a few groups, not 100,000 rows of options.
The columns that differ between groups travel in the insert's JSON document
(``inserting``), so a mixed batch is one statement per chunk, as one job's is.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from . import inserting, validation
from .exceptions import DjangoJobsError, InvalidJobOption, JobArgumentsError
from .models import ScheduledTask
from .registry import registry
from .signatures import Signature, timing

FLOW_COLUMNS = ("concurrency_key", "concurrency_limit", "rate_key", "rate_limit", "rate_period")
# The columns a signature's job and run time decide (``Job.task_columns``); the
# others are the same for every new task. ``unique_key`` is refused in a batch.
OPTION_COLUMNS = ("identifier", "queue", "priority", "scheduled_at", "description", "max_retries", "retry_delay",
                  "backoff", "timeout", "owner_id", *FLOW_COLUMNS)
# An unlimited task's flow-control columns (``Job.flow_columns`` fills a limited one's).
NO_FLOW = dict.fromkeys(FLOW_COLUMNS)


@dataclasses.dataclass
class Batch:
    """The checked signatures, the task options of each group, and each row's group."""

    signatures: list[Signature[Any, Any]] = dataclasses.field(default_factory=list)
    groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    membership: list[int] = dataclasses.field(default_factory=list)

    @property
    def queues(self) -> set[str]:
        return {group["queue"] for group in self.groups}

    def varying(self) -> tuple[str, ...]:
        """The option columns whose values differ between groups: they travel in the document."""
        first = self.groups[0]
        return tuple(name for name in OPTION_COLUMNS if any(group[name] != first[name] for group in self.groups))

    def template(self) -> ScheduledTask:
        """An unsaved task with the columns every row shares (and the first group's options)."""
        return ScheduledTask(args=[], kwargs={}, **self.groups[0])

    def documents(self, varying: tuple[str, ...], connection: BaseDatabaseWrapper
                  ) -> tuple[list[str], list[list[dict[str, Any]]] | None]:
        """The JSON documents of the rows, ``[[args, kwargs, *varying], ...]``, chunked as
        ``inserting`` wants them, and per document each row's ``varying`` values."""
        suffixes = [group_suffix(group, varying, connection) for group in self.groups]
        # Each row: the signature's "[args,kwargs]" with the group's values before its "]".
        rows = [f"{signature.json[:-1]}{suffixes[group]}]" if suffixes[group] else signature.json
                for signature, group in zip(self.signatures, self.membership)]
        bounds = chunk_bounds(rows, inserting.CHUNK_ROWS, inserting.CHUNK_CHARS)
        documents = [f"[{','.join(rows[start:end])}]" for start, end in bounds]
        if not varying:
            return documents, None
        own = [{name: group[name] for name in varying} for group in self.groups]
        return documents, [[own[group] for group in self.membership[start:end]] for start, end in bounds]

    def unsaved_tasks(self) -> list[ScheduledTask]:
        """The rows as models, for the ORM's ``bulk_create`` where the JSON insert is not available."""
        tasks = []
        for signature, group in zip(self.signatures, self.membership):
            args, kwargs = json.loads(signature.json)  # each task its own copy
            tasks.append(ScheduledTask(args=args, kwargs=kwargs, **self.groups[group]))
        return tasks


def planned(entries: Iterable[Any], delay: Any, run_at: Any) -> Batch:
    """The batch of ``entries``, every one checked; else the exception, naming the entry's position."""
    batch_timing = timing({"delay": delay, "run_at": run_at})
    now = timezone.now()  # one "now" for the batch: rows without a time of their own share it
    default = bare_signature_time(batch_timing, now)
    batch: Batch = Batch()
    keys: dict[tuple[int, datetime, Any], int] = {}
    by_id: dict[int, int] = {}
    by_value: dict[Any, int] = {}
    for index, entry in enumerate(entries):
        signature = checked_entry(index, entry, batch_timing)
        flow = flow_columns(index, signature)
        key = (job_key(signature.job, by_id, by_value), signature.run_at(now) or default,
               tuple(flow.values()) if flow else None)
        group = keys.get(key)
        if group is None:
            group = keys[key] = len(batch.groups)
            batch.groups.append({**group_options(index, signature.job, key[1]), **NO_FLOW, **flow})
        batch.signatures.append(signature)
        batch.membership.append(group)
    return batch


def bare_signature_time(batch_timing: dict[str, Any], now: datetime) -> datetime:
    """When a row without a time of its own may run: the batch's delay or run_at, else now."""
    if "delay" in batch_timing:
        return now + batch_timing["delay"]
    return batch_timing.get("run_at", now)


def checked_entry(index: int, entry: Any, batch_timing: dict[str, Any]) -> Signature[Any, Any]:
    if not isinstance(entry, Signature):
        raise JobArgumentsError(f"enqueue_many item {index} must be a signature (job.s(...)), "
                                f"not {validation.shown(entry)}")
    if entry.options and batch_timing:
        raise InvalidJobOption(f"enqueue_many item {index} sets its own {next(iter(entry.options))} and the batch "
                               f"sets {next(iter(batch_timing))}: give one or the other.")
    if entry.job.unique_key is not None:
        raise InvalidJobOption(f"enqueue_many item {index} has unique_key {entry.job.unique_key!r}: a batch cannot "
                               f"return another task in its place; enqueue it with .enqueue().")
    return entry


def job_key(job: Any, by_id: dict[int, int], by_value: dict[Any, int]) -> int:
    """A number per distinct job: equal jobs (``using(queue="mail")`` made anew for each row)
    are one group. Looked up by identity first (most rows share one object; the batch
    keeps each alive, so an id is not reused), as hashing a job hashes all its options."""
    key = by_id.get(id(job))
    if key is None:
        try:
            key = by_value.setdefault(job, len(by_value))
        except TypeError:  # a job with an unhashable option: a group of its own
            key = by_value.setdefault(id(job), len(by_value))
        by_id[id(job)] = key
    return key


def group_options(index: int, job: Any, when: datetime) -> dict[str, Any]:
    """The option columns of the group whose first row is item ``index``, checked now
    (the job must still be registered; ``QUEUES`` may have changed since ``job.s()``)."""
    try:
        registry.get(job.name)  # still registered
        return job.task_columns(when)
    except DjangoJobsError as error:
        error.args = (f"enqueue_many item {index}: {error}",)
        raise


def flow_columns(index: int, signature: Signature[Any, Any]) -> dict[str, Any]:
    """The entry's flow-control columns (its keys filled from its arguments), or the error naming it."""
    try:
        return signature.job.flow_columns(signature.args, dict(signature.kwargs))
    except DjangoJobsError as error:
        error.args = (f"enqueue_many item {index}: {error}",)
        raise


def group_suffix(group: dict[str, Any], varying: tuple[str, ...], connection: BaseDatabaseWrapper) -> str:
    """``,v1,v2 ...``: the group's ``varying`` values as JSON, to append to each of its rows."""
    if not varying:
        return ""
    return "," + validation.JSON_ENCODER.encode(inserting.document_values(group, varying, connection))[1:-1]


def chunk_bounds(rows: list[str], max_rows: int, max_chars: int) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive rows: at most ``max_rows`` and, unless one row alone
    is longer, ``max_chars`` characters each."""
    bounds, start, size = [], 0, 0
    for end, row in enumerate(rows):
        if end > start and (end - start == max_rows or size + len(row) + 1 > max_chars):
            bounds.append((start, end))
            start, size = end, 0
        size += len(row) + 1
    bounds.append((start, len(rows)))
    return bounds
