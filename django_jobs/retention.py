"""Deleting finished tasks by status and age, a small batch at a time.

A single ``DELETE ... WHERE executed_at < ...`` on a big table holds its locks
and its undo log for as long as it runs, and may time out; here each batch of at
most ``batch_size`` primary keys is selected, then deleted by key in its own short
transaction. The delete repeats the status and age filter, so a task that changed
in between (an operator retried it) is never deleted: pending and running tasks
are out of reach whatever happens.

The age of a task is read from the time it finished:

- ``completed``: ``executed_at`` (the completion time);
- ``failed``: ``failed_at`` (its last failed attempt, which made it ``failed``);
- ``cancelled``: ``updated_at`` (the cancellation is its last change).

Rows without that time (written by hand) are never pruned. Each status is walked
in the order of its time column, resuming after the last row seen, so each row is
read once however many batches it takes (``executed_at`` and ``failed_at`` have
indexes for the dashboard; ``updated_at`` has none, which only matters if
cancelled tasks are very many).

Cron tasks: a fire time is enqueued only while it is its schedule's ``next_run``,
and ``next_run`` only ever moves on to a time after "now", so the task of an old
fire time can go without letting that time fire again (see the tests).
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import Error as DatabaseError
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from .conf import jobs_settings
from .models import ScheduledTask

logger = logging.getLogger(__name__)

Status = ScheduledTask.Status
# The column whose age decides, per prunable status.
AGE_FIELDS = {Status.COMPLETED: "executed_at", Status.FAILED: "failed_at", Status.CANCELLED: "updated_at"}
PRUNABLE = tuple(status.value for status in AGE_FIELDS)
DEFAULT_BATCH_SIZE = 1000
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(value: Any, what: str = "duration") -> timedelta:
    """``"90s"``, ``"15m"``, ``"12h"``, ``"7d"``, ``"2w"``, a number of seconds, or a timedelta.

    Raises ValueError naming ``what`` and the accepted forms; a duration must be positive.
    """
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    elif isinstance(value, str) and (match := DURATION.match(value)):
        duration = timedelta(seconds=float(match[1]) * UNITS[match[2]])
    else:
        raise ValueError(f"{what}: {value!r} is not a duration; use a number with a unit, "
                         f"like 90s, 15m, 12h, 7d or 2w")
    if duration <= timedelta(0):
        raise ValueError(f"{what}: {value!r} must be longer than zero")
    return duration


def parse_policy(policy: Mapping[str, Any], what: str = "RETENTION") -> dict[str, timedelta]:
    """``{"completed": "7d", ...}`` as ``{status: timedelta}``.

    TypeError if it is not a dict; ValueError on a bad status or age.
    """
    if not isinstance(policy, Mapping):
        raise TypeError(f"{what} must be a dict like {{'completed': '7d', 'failed': '30d'}}, not {policy!r}")
    unknown = sorted(set(policy) - set(PRUNABLE))
    if unknown:
        raise ValueError(f"{what} has unknown status(es) {', '.join(map(repr, unknown))}; "
                         f"only finished tasks can be pruned: {', '.join(PRUNABLE)}")
    return {status: parse_duration(age, f"{what}[{status!r}]") for status, age in policy.items()}


@dataclass(frozen=True)
class Rule:
    """Tasks of ``status`` whose age field is older than ``cutoff``."""

    status: str
    cutoff: datetime

    @property
    def field(self) -> str:
        return AGE_FIELDS[Status(self.status)]

    def rows(self):
        return ScheduledTask.objects.filter(status=self.status, **{f"{self.field}__lt": self.cutoff})


def prune(older_than: Mapping[str, Any], *, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False,
          now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """Delete finished tasks older than their status's age; return the count per status.

    ``older_than`` maps ``completed`` / ``failed`` / ``cancelled`` to an age (see
    ``parse_duration``). With ``dry_run`` nothing is deleted and the counts are what
    would be. ``should_stop`` is asked between batches (a stopping worker).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    now = now or timezone.now()
    rules = [Rule(status, now - age) for status, age in parse_policy(older_than, "older_than").items()]
    if dry_run:
        return {rule.status: rule.rows().count() for rule in rules}
    return {rule.status: delete_in_batches(rule, batch_size, should_stop) for rule in rules}


def delete_in_batches(rule: Rule, batch_size: int, should_stop: Callable[[], bool]) -> int:
    deleted = 0
    after: tuple[datetime, int] | None = None
    while not should_stop():
        batch = next_batch(rule, after, batch_size)
        if not batch:
            break
        deleted += delete_batch(rule, [pk for _, pk in batch])
        after = batch[-1]
    if deleted:
        logger.info("Pruned %d %s task(s) older than %s", deleted, rule.status, rule.cutoff.isoformat())
    return deleted


def next_batch(rule: Rule, after: tuple[datetime, int] | None, size: int) -> list[tuple[datetime, int]]:
    """Up to ``size`` (age, pk) pairs in age order, after the last pair of the previous batch."""
    rows = rule.rows()
    if after is not None:
        # The redundant ``>=`` gives the index scan its starting point; the OR breaks ties.
        moment, pk = after
        rows = rows.filter(Q(**{f"{rule.field}__gt": moment}) | Q(pk__gt=pk), **{f"{rule.field}__gte": moment})
    return list(rows.order_by(rule.field, "pk").values_list(rule.field, "pk")[:size])


def delete_batch(rule: Rule, ids: list[int]) -> int:
    """Delete these rows in one short transaction, if they still match the rule."""
    alias = router.db_for_write(ScheduledTask)
    with transaction.atomic(using=alias):
        _, per_model = rule.rows().using(alias).filter(pk__in=ids).delete()
    return per_model.get(ScheduledTask._meta.label, 0)


# -- automatic retention in workers ---------------------------------------------------

def configured_policy() -> dict[str, timedelta] | None:
    """``DJANGO_JOBS["RETENTION"]`` parsed, or None when automatic retention is off."""
    policy = jobs_settings.RETENTION
    return parse_policy(policy) if policy else None


def run_periodically(finished: threading.Event, stopping: threading.Event,
                     on_error: Callable[[BaseException], None] | None = None) -> None:
    """A worker thread: prune by ``RETENTION`` every ``RETENTION_INTERVAL`` until ``finished``.

    Every worker runs this; they need no coordination, because each delete is
    conditional and deleting a deleted row does nothing. Jitter spreads workers
    started together, so that they rarely prune at the same moment.
    """
    interval = jobs_settings.RETENTION_INTERVAL
    delay = random.uniform(0, interval / 10)
    while not finished.wait(delay):
        prune_once(lambda: finished.is_set() or stopping.is_set(), on_error)
        delay = interval * random.uniform(0.9, 1.1)
    connections.close_all()


def prune_once(should_stop: Callable[[], bool], on_error: Callable[[BaseException], None] | None = None
               ) -> dict[str, int]:
    """One automatic pruning run; database errors are reported (``on_error``, the worker's) or
    logged, and left for the next run."""
    try:
        policy = configured_policy()
    except (TypeError, ValueError) as error:  # only if system checks were skipped (E007)
        logger.error("DJANGO_JOBS['RETENTION'] is invalid, nothing pruned: %s", error)
        return {}
    try:
        return prune(policy, should_stop=should_stop) if policy else {}
    except DatabaseError as error:
        if on_error is not None:
            on_error(error)
        else:
            logger.warning("Automatic pruning failed (%s); will try again", error)
        connections.close_all()
        return {}
