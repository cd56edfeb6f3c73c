"""Flow control as operators see it: why a due task waits, and the keys with the most work.

The claim (``django_jobs.db.flow``) holds a pending, due task back while one of its
limits is full: its concurrency key runs ``concurrency_limit`` tasks, its rate key
started ``rate_limit`` tasks in the current window, or its queue (``QUEUE_LIMITS``)
is at either. This reads the same facts the claim reads — running tasks counted from
the task table, rate windows from ``FlowKey`` — so that admin, the API and
``manage.py jobs`` can say which limit holds a task: ``waiting: concurrency account:7 (2/2)``.

It is a reading taken at one moment, not the claim's decision: a task whose limits all
have room may still wait its turn behind others of its key. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from ..conf import jobs_settings
from ..db.flow import window_of
from ..limits import PERIOD_NAMES, QueueLimit, Rate, queue_limits
from ..models import FlowKey, ScheduledTask
from ..registry import declared_limits

Status = ScheduledTask.Status
CONCURRENCY, RATE, QUEUE = "concurrency", "rate", "queue"
PERIOD_WORDS = {1: "second", 60: "minute", 3600: "hour"}
BUSIEST = 10


@dataclass(frozen=True)
class Limit:
    """One limit a task is under, and how much of it is used now.

    ``used``: the tasks of the key running now, or for a rate (``period`` set, in
    seconds) the tasks started in its current window.
    """

    kind: str  # CONCURRENCY, RATE or QUEUE (a QUEUE_LIMITS entry, with or without a period)
    key: str
    limit: int
    used: int
    period: int | None = None

    @property
    def full(self) -> bool:
        return self.used >= self.limit

    @property
    def label(self) -> str:
        """``concurrency``, ``rate``, ``queue concurrency`` or ``queue rate``."""
        if self.kind != QUEUE:
            return self.kind
        return f"{QUEUE} {RATE if self.period else CONCURRENCY}"

    @property
    def allowed(self) -> str:
        """``2 at once`` or ``100/m``."""
        return f"{self.limit} at once" if self.period is None else rate_text(self.limit, self.period)

    @property
    def use(self) -> str:
        """``2 running`` or ``37 started this minute``."""
        return f"{self.used} running" if self.period is None else f"{self.used} started this {period_word(self.period)}"

    def __str__(self) -> str:
        """``concurrency account:7 (2/2)``, ``rate stripe (3/3 this minute)``, ``queue mail concurrency (5/5)``."""
        which = self.key if self.kind != QUEUE else f"{self.key} {RATE if self.period else CONCURRENCY}"
        window = "" if self.period is None else f" this {period_word(self.period)}"
        return f"{self.kind} {which} ({self.used}/{self.limit}{window})"


def period_word(period: int) -> str:
    return PERIOD_WORDS.get(period, f"{period} s")


def rate_text(limit: int, period: int) -> str:
    """``100/m``, as the limit was declared."""
    return f"{limit}/{PERIOD_NAMES.get(period, f'{period}s')}"


# -- why a task waits ------------------------------------------------------------------------
def waiting_reason(task: ScheduledTask, now: datetime | None = None) -> str | None:
    """``"waiting: concurrency account:7 (2/2)"`` for a pending, due task that a full limit
    holds back (every full limit, comma-separated); None when none does, or the task is
    not pending and due. No query for a task under no limit."""
    return waiting_reasons([task], now).get(task.pk)


def waiting_reasons(tasks: Iterable[ScheduledTask], now: datetime | None = None) -> dict[int, str]:
    """``waiting_reason`` of many tasks (a page of a list) by id, only those held back:
    two queries at most, whatever their number; none when no task is pending, due and limited."""
    now = now or timezone.now()
    due = [task for task in tasks if task.status == Status.PENDING and task.scheduled_at <= now]
    reasons = {}
    for pk, limits in limits_of(due, now).items():
        full = [str(limit) for limit in limits if limit.full]
        if full:
            reasons[pk] = "waiting: " + ", ".join(full)
    return reasons


def own_limits(task: ScheduledTask) -> tuple[int | None, Rate | None]:
    """A task's concurrency limit and rate: those stored with it, else (NULL beside a
    key) those its job declares in the code this process runs, as a worker reads them."""
    concurrency = task.concurrency_limit
    rate = Rate(task.rate_limit, task.rate_period) if task.rate_limit and task.rate_period else None
    if (task.concurrency_key and concurrency is None) or (task.rate_key and rate is None):
        declared = declared_limits(task.identifier)
        if task.concurrency_key and concurrency is None:
            concurrency = declared.concurrency
        if task.rate_key and rate is None:
            rate = declared.rate
    return (concurrency if task.concurrency_key else None), (rate if task.rate_key else None)


def limits_of(tasks: Iterable[ScheduledTask], now: datetime | None = None) -> dict[int, list[Limit]]:
    """The limits each task is under (its keys', its queue's), with their use now, by id;
    tasks under none are left out. Two queries at most: running counts, rate windows."""
    now = now or timezone.now()
    by_queue = current_queue_limits()
    limited = [task for task in tasks if task.concurrency_key or task.rate_key or task.queue in by_queue]
    own = {task.pk: own_limits(task) for task in limited}
    if not limited:
        return {}
    running = running_counts(
        {task.concurrency_key for task in limited if task.concurrency_key and own[task.pk][0]},
        {task.queue for task in limited if task.queue in by_queue and by_queue[task.queue].concurrency})
    started = started_counts(
        {(FlowKey.Kind.RATE, task.rate_key, rate.period) for task in limited if task.rate_key and (rate := own[task.pk][1])}
        | {(FlowKey.Kind.QUEUE, queue, limit.rate.period) for queue, limit in by_queue.items()
           if limit.rate is not None and any(task.queue == queue for task in limited)}, now)
    return {task.pk: task_limits(task, own[task.pk], by_queue.get(task.queue), running, started) for task in limited}


def current_queue_limits() -> dict[str, QueueLimit]:
    """``QUEUE_LIMITS`` as the settings say now (workers read it when they start)."""
    return queue_limits(jobs_settings.QUEUE_LIMITS)


def task_limits(task: ScheduledTask, own: tuple[int | None, Rate | None], queue_limit: QueueLimit | None,
                running: dict[tuple[str, str], int], started: dict[tuple[str, str], int]) -> list[Limit]:
    limits = []
    concurrency, rate = own
    if task.concurrency_key and concurrency:
        limits.append(Limit(CONCURRENCY, task.concurrency_key, concurrency,
                            running.get((CONCURRENCY, task.concurrency_key), 0)))
    if task.rate_key and rate:
        limits.append(Limit(RATE, task.rate_key, rate.limit,
                            started.get((FlowKey.Kind.RATE, task.rate_key), 0), rate.period))
    if queue_limit is not None and queue_limit.concurrency is not None:
        limits.append(Limit(QUEUE, task.queue, queue_limit.concurrency, running.get((QUEUE, task.queue), 0)))
    if queue_limit is not None and queue_limit.rate is not None:
        limits.append(Limit(QUEUE, task.queue, queue_limit.rate.limit,
                            started.get((FlowKey.Kind.QUEUE, task.queue), 0), queue_limit.rate.period))
    return limits


def running_counts(concurrency_keys: set[str], queues: set[str]) -> dict[tuple[str, str], int]:
    """Running tasks per concurrency key and per queue, as the claim counts them: one
    GROUP BY over the running rows of those keys and queues (few: they hold workers)."""
    if not concurrency_keys and not queues:
        return {}
    rows = (ScheduledTask.objects.filter(Q(concurrency_key__in=concurrency_keys) | Q(queue__in=queues),
                                         status=Status.RUNNING)
            .order_by().values("concurrency_key", "queue").annotate(count=Count("pk")))
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        for kind, key in ((CONCURRENCY, row["concurrency_key"]), (QUEUE, row["queue"])):
            if key in (concurrency_keys if kind == CONCURRENCY else queues):
                counts[(kind, key)] = counts.get((kind, key), 0) + row["count"]
    return counts


def started_counts(keys: set[tuple[str, str, int]], now: datetime) -> dict[tuple[str, str], int]:
    """Starts in the current window of each (FlowKey kind, key, period): the count on the
    key's row when its window is the current one, else 0 (a new window starts empty)."""
    if not keys:
        return {}
    periods = {(kind, key): period for kind, key, period in keys}
    wanted = Q()
    for kind in {kind for kind, _ in periods}:
        wanted |= Q(kind=kind, key__in=[key for each, key in periods if each == kind])
    rows = FlowKey.objects.filter(wanted).values_list("kind", "key", "window", "started")
    return {(kind, key): started for kind, key, window, started in rows
            if (kind, key) in periods and window == window_of(now, periods[(kind, key)])}


# -- the busiest keys ------------------------------------------------------------------------
@dataclass(frozen=True)
class BusyKey:
    """A key (or a limited queue) and its active tasks: what the dashboard lists."""

    kind: str  # CONCURRENCY, RATE or QUEUE
    key: str
    running: int
    pending: int
    # "2 at once", "100/m", or a queue's "5 at once, 10/s"; should tasks of one key
    # disagree, the largest.
    limit: str

    @property
    def active(self) -> int:
        return self.running + self.pending


def busiest_keys(limit: int = BUSIEST) -> list[BusyKey]:
    """The ``limit`` keys with the most running and pending tasks, most first: concurrency
    keys, rate keys and the queues of ``QUEUE_LIMITS``.

    Three GROUP BYs (one per kind), each over the active rows of limited tasks only (the
    flow index holds the pending ones, the running index the running ones) and each
    cut to ``limit`` groups, so the answer stays small however many keys there are.
    """
    found = [*busy_by_column("concurrency_key", CONCURRENCY, limit), *busy_by_column("rate_key", RATE, limit),
             *busy_queues(current_queue_limits(), limit)]
    return sorted(found, key=lambda busy: (-busy.active, busy.kind, busy.key))[:limit]


def active_limited(rows: QuerySet[ScheduledTask]) -> QuerySet[ScheduledTask]:
    # Spelled per status so that each arm matches a partial index: the flow index
    # (pending AND flow_key NOT NULL) and the running index.
    return rows.filter(Q(status=Status.PENDING) | Q(status=Status.RUNNING)).order_by()


def counted(rows: QuerySet[ScheduledTask], column: str, limit: int, **extra: Any) -> QuerySet[Any]:
    """``rows`` grouped by ``column``: running, pending and active counts, most active first."""
    return (rows.values(column)
            .annotate(running=Count("pk", filter=Q(status=Status.RUNNING)),
                      pending=Count("pk", filter=Q(status=Status.PENDING)), active=Count("pk"), **extra)
            .order_by("-active", column)[:limit])


def busy_by_column(column: str, kind: str, limit: int) -> list[BusyKey]:
    limited = active_limited(ScheduledTask.objects.filter(flow_key__isnull=False, **{f"{column}__isnull": False}))
    # The largest limit stored under the key, else (NULL: as declared) its job's declared one.
    if kind == CONCURRENCY:
        rows = counted(limited, column, limit, most=Max("concurrency_limit"), job=Max("identifier"))
        return [BusyKey(kind, row[column], row["running"], row["pending"],
                        f"{row['most'] or declared_limits(row['job']).concurrency} at once") for row in rows]
    rows = counted(limited, column, limit, most=Max("rate_limit"), period=Max("rate_period"), job=Max("identifier"))
    return [BusyKey(kind, row[column], row["running"], row["pending"],
                    rate_text(row["most"], row["period"]) if row["most"] else str(declared_limits(row["job"]).rate))
            for row in rows]


def busy_queues(by_queue: dict[str, QueueLimit], limit: int) -> list[BusyKey]:
    if not by_queue:
        return []
    rows = counted(active_limited(ScheduledTask.objects.filter(queue__in=list(by_queue))), "queue", limit)
    return [BusyKey(QUEUE, row["queue"], row["running"], row["pending"], queue_limit_text(by_queue[row["queue"]]))
            for row in rows]


def queue_limit_text(limit: QueueLimit) -> str:
    parts = [] if limit.concurrency is None else [f"{limit.concurrency} at once"]
    return ", ".join(parts + ([] if limit.rate is None else [str(limit.rate)]))
