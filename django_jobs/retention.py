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

Each status is pruned by age (``older_than``), by count (``keep``: the newest N stay)
or both: a task goes when it is older than its age **or** not among the newest ``keep``.
Both limits are thresholds on the same (age column, pk) order, so the later of the two
decides, and the walk below deletes everything up to it. The count's threshold is read
once, before the first batch: tasks that finish meanwhile are newer, and stay.

Rows without that time (written by hand) are never pruned, nor counted. Each status is walked
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
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from . import events
from .conf import jobs_settings
from .models import FlowKey, ScheduledTask

logger = logging.getLogger(__name__)

Status = ScheduledTask.Status
# The column whose age decides, per prunable status.
AGE_FIELDS = {Status.COMPLETED: "executed_at", Status.FAILED: "failed_at", Status.CANCELLED: "updated_at"}
PRUNABLE = tuple(status.value for status in AGE_FIELDS)
DEFAULT_BATCH_SIZE = 1000
# A flow key unused this long has no rate window left open (the longest period is an hour).
FLOW_KEY_QUIET = timedelta(hours=1, minutes=5)
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


@dataclass(frozen=True)
class Limit:
    """What of one status to keep: tasks younger than ``older_than`` and the newest ``keep``
    (either may be None: no such limit)."""

    older_than: timedelta | None = None
    keep: int | None = None


LIMIT_KEYS = ("older_than", "keep")


def parse_policy(policy: Mapping[str, Any], what: str = "RETENTION") -> dict[str, Limit]:
    """``{"completed": "7d", "failed": {"older_than": "30d", "keep": 1000}, ...}`` as
    ``{status: Limit}``: an age alone, or a dict with ``older_than``, ``keep`` or both.

    TypeError if it is not a dict; ValueError on a bad status, age or count.
    """
    if not isinstance(policy, Mapping):
        raise TypeError(f"{what} must be a dict like {{'completed': '7d', 'failed': {{'keep': 1000}}}}, "
                        f"not {policy!r}")
    unknown = sorted(set(policy) - set(PRUNABLE), key=str)
    if unknown:
        raise ValueError(f"{what} has unknown status(es) {', '.join(map(repr, unknown))}; "
                         f"only finished tasks can be pruned: {', '.join(PRUNABLE)}")
    return {status: parse_limit(value, f"{what}[{status!r}]") for status, value in policy.items()}


def parse_limit(value: Any, what: str) -> Limit:
    if isinstance(value, Limit):  # parsed already (``configured_policy``)
        return value
    if not isinstance(value, Mapping):
        return Limit(older_than=parse_duration(value, what))
    unknown = sorted(set(value) - set(LIMIT_KEYS), key=str)
    if unknown:
        raise ValueError(f"{what} has unknown key(s) {', '.join(map(repr, unknown))}; use 'older_than', "
                         f"'keep' or both, like {{'older_than': '7d', 'keep': 100}}")
    if not value:
        raise ValueError(f"{what} is empty; give 'older_than' (an age), 'keep' (a count) or both")
    keep = value.get("keep")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 0):
        raise ValueError(f"{what}['keep']: {keep!r} is not a count; use a whole number, 0 or more "
                         f"(the newest tasks that stay)")
    older_than = value.get("older_than")
    return Limit(older_than=None if older_than is None else parse_duration(older_than, f"{what}['older_than']"),
                 keep=keep)


@dataclass(frozen=True)
class Rule:
    """Tasks of ``status`` whose age field is older than ``cutoff``, or — with ``through``,
    an (age, pk) pair — at or before that row in (age, pk) order."""

    status: str
    cutoff: datetime | None
    through: tuple[datetime, int] | None = None

    @property
    def field(self) -> str:
        return AGE_FIELDS[Status(self.status)]

    def rows(self):
        rows = ScheduledTask.objects.filter(status=self.status)
        if self.through is None:
            return rows.filter(**{f"{self.field}__lt": self.cutoff})
        # The ``<=`` bounds the index scan; the OR admits the tied rows up to the pk.
        moment, pk = self.through
        return rows.filter(Q(**{f"{self.field}__lt": moment}) | Q(pk__lte=pk), **{f"{self.field}__lte": moment})

    def describe(self) -> str:
        if self.through is not None:
            return f"up to #{self.through[1]} of {self.through[0].isoformat()}"
        return f"older than {self.cutoff.isoformat()}" if self.cutoff is not None else "at any age"


def rule_for(status: str, limit: Limit, now: datetime) -> Rule | None:
    """The rule that deletes what ``limit`` does not keep: the later of its two thresholds;
    None when nothing goes (fewer than ``keep`` tasks, and no age)."""
    cutoff = None if limit.older_than is None else now - limit.older_than
    through = None
    if limit.keep is not None:
        field = AGE_FIELDS[Status(status)]
        newest = ScheduledTask.objects.filter(status=status, **{f"{field}__isnull": False})
        # The first task past the newest ``keep``: it and everything before it go.
        through = newest.order_by(f"-{field}", "-pk").values_list(field, "pk")[limit.keep:limit.keep + 1].first()
    if through is not None and (cutoff is None or through[0] >= cutoff):
        return Rule(status, cutoff, through)
    return Rule(status, cutoff) if cutoff is not None else None


def prune(policy: Mapping[str, Any], *, batch_size: int = DEFAULT_BATCH_SIZE, dry_run: bool = False,
          now: datetime | None = None, should_stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """Delete the finished tasks ``policy`` does not keep; return the count per status.

    ``policy`` maps ``completed`` / ``failed`` / ``cancelled`` to an age (see
    ``parse_duration``) or to ``{"older_than": age, "keep": count}`` (either or both, or
    a ``Limit`` as ``parse_policy`` returns it; a task goes when it is past either limit). With ``dry_run`` nothing is deleted and the
    counts are what would be. ``should_stop`` is asked between batches (a stopping worker).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, not {batch_size}")
    now = now or timezone.now()
    limits = parse_policy(policy, "policy")
    counts = dict.fromkeys(limits, 0)
    for status, limit in limits.items():
        rule = rule_for(status, limit, now)
        if rule is not None:
            counts[status] = rule.rows().count() if dry_run else delete_in_batches(rule, batch_size, should_stop)
    if not dry_run:
        prune_flow_keys(now)
    return counts


def prune_flow_keys(now: datetime) -> int:
    """Delete the FlowKey rows of keys that are done with: quiet past any rate window,
    with no task pending in their lane or running under them. Queues' rows stay (a few).

    Harmless even if a task of the key comes next: the claim inserts the row again
    (a claim's round later).
    """
    active = ScheduledTask.objects.filter(Q(status=Status.PENDING, flow_key=OuterRef("key"))
                                          | Q(status=Status.RUNNING, concurrency_key=OuterRef("key")))
    quiet = FlowKey.objects.filter(used_at__lt=now - FLOW_KEY_QUIET).exclude(kind=FlowKey.Kind.QUEUE)
    deleted, _ = quiet.exclude(pk__in=quiet.filter(Exists(active)).values("pk")).delete()
    return deleted


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
        logger.info("Pruned %d %s task(s) %s", deleted, rule.status, rule.describe())
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
        # A raw delete: the ORM's cascade to the events would fetch every row first and
        # delete by key alone, losing the rule's recheck. Their events go after.
        deleted = rule.rows().using(alias).filter(pk__in=ids)._raw_delete(alias)
        events.delete_orphans(alias, ids)
    return deleted


# -- automatic retention in workers ---------------------------------------------------

def configured_policy() -> dict[str, Limit] | None:
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
