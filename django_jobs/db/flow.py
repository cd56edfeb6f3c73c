"""Flow control in the claim: concurrency and rate limits per key, across every worker.

A limited task carries its keys and limits (``concurrency_key``/``concurrency_limit``,
``rate_key``/``rate_limit``/``rate_period``; a limit NULL beside its key is the one
the job declares in the code the worker runs); ``QUEUE_LIMITS`` limits whole queues.
The claim takes limited tasks in one transaction per batch:

1. **Lanes.** The keys (``flow_key``) that have pending tasks, a batch's worth at a
   time, each claim carrying on after the last key the previous one visited (round
   robin): with 10,000 keys a claim reads about a batch's worth of them, and a backlog
   of 100,000 tasks of one key costs one index probe (PostgreSQL, SQLite; MariaDB
   reads its entries once per round), not a walk through it on every claim.
2. **Lock** the lanes' ``FlowKey`` rows ``FOR UPDATE SKIP LOCKED`` in key order, so that
   workers spread over the keys. When another claim holds every lane: the next lanes,
   or, for the whole round (one hot key), wait for them in key order while holding
   nothing (no deadlock). SQLite's single writer serializes claims anyway.
3. **Heads and counts**, in a statement after the lock, so that it sees every claim
   committed under the keys before: each lane's best-ranked due tasks, the ``running``
   tasks of each key (the truth, never a counter that a killed worker could leave
   wrong: its slots come back when recovery moves its tasks out of ``running``), and a
   rate key's starts in its current window (from the lock). Keys of the heads that are
   not lanes (a shared rate key) are locked without waiting. PostgreSQL reads lanes,
   locks, heads and counts in one statement (``open_flow_page``) and checks that no
   claim committed between its snapshot and its locks: every claim that takes tasks
   under a key writes the key's row, so the row locked would be newer than the row
   seen; then it reads heads and counts again after the lock.
4. **Choose** the heads in claim order while every limit of each has room (``choose``),
   mark them running, count the rate starts, commit.

Unlimited tasks (``flow_key`` NULL, outside limited queues) are claimed by the engine's
own statement over an index that holds only them. Each claim alternates which of the
two goes first, so neither kind can starve the other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ..conf import jobs_settings
from ..limits import Declared, QueueLimit, queue_limits

if TYPE_CHECKING:
    from .engine import Engine

CONCURRENCY, RATE, QUEUE = "c", "r", "q"
LIMITED, UNLIMITED = "limited", "unlimited"
# Starts shown for a window that a later one has replaced: no limit leaves room in it.
FULL = 2**62
# Seconds between two checks that the FlowKey rows a worker knows of still exist.
RECHECK_KNOWN = 60.0
# Seconds a kind of task (limited, unlimited) that a claim found none of goes last.
RECHECK_EMPTY = 0.05
# FlowKey rows a worker remembers as existing (it inserts the others first); emptied when full.
KNOWN_KEYS = 100_000
# Pages of lanes one claim goes through at most (a page: a batch's worth of keys).
MAX_PAGES = 20

Key = tuple[str, str]  # (kind, key)


class Head(NamedTuple):
    """A pending task at the front of its lane: what choosing it needs. The engines
    return heads in claim order (the statement sorts them: no timestamps to load)."""

    id: int
    identifier: str
    queue: str
    concurrency_key: str | None
    concurrency_limit: int | None
    rate_key: str | None
    rate_limit: int | None
    rate_period: int | None


HEAD_COLUMNS = ", ".join(Head._fields)
# A lane's heads as read from the task table: with what ranks them in claim order.
RANKED_COLUMNS = f"{HEAD_COLUMNS}, priority, scheduled_at"
CLAIM_ORDER = "priority DESC, scheduled_at, id"


class Window(NamedTuple):
    """A rate key's window (periods since the epoch) and the starts counted in it."""

    window: int
    started: int


# The heads of a page's lanes and the running counts, as ``Engine.open_flow_page`` read
# them with the lock, when they are as fresh as a read after it.
FlowRead = tuple[list[Head], dict[Key, int]]


@dataclass
class Flow:
    """A worker's flow control from claim to claim: its queue limits (read when it
    starts), the limits its code declares per job (``declare``: a job name to its
    ``Declared``, asked once per name), where its round of keys stands, and the
    FlowKey rows it knows exist."""

    queue_limits: dict[str, QueueLimit]
    declare: Callable[[str], Declared]
    declared: dict[str, Declared] = field(default_factory=dict)
    after: str | None = None
    limited_first: bool = True
    # The last claim left due limited tasks behind (their limits were full, or another
    # worker was claiming under their keys): a burst worker is not done yet.
    held_back: bool = False
    known: set[Key] = field(default_factory=set)
    empty_since: dict[str, float] = field(default_factory=dict)
    known_since: float = field(default_factory=time.monotonic)

    def found(self, kind: str, anything: bool) -> None:
        if anything:
            self.empty_since.pop(kind, None)
        else:
            self.empty_since[kind] = time.monotonic()

    def forget_known_now_and_then(self) -> None:
        """Forget which FlowKey rows exist every ``RECHECK_KNOWN`` seconds: a row pruned
        while this worker skipped its key as locked by another is inserted again."""
        now = time.monotonic()
        if now - self.known_since > RECHECK_KNOWN:
            self.known.clear()
            self.known_since = now

    def found_nothing_lately(self, kind: str) -> bool:
        since = self.empty_since.get(kind)
        return since is not None and time.monotonic() - since < RECHECK_EMPTY

    @classmethod
    def from_settings(cls, declare: Callable[[str], Declared]) -> Flow:
        """``declare``: required, since a flow that knew no job's declared limits would
        claim the tasks that store none (NULL: as declared) as if they had no limit."""
        return cls(queue_limits(jobs_settings.QUEUE_LIMITS), declare)

    def with_declared_limits(self, head: Head) -> Head:
        """``head`` with the limits its job declares in this worker's code where its row
        stores none (NULL beside a key: "as declared"); a job this worker does not know
        puts no limit on such a key."""
        concurrency = head.concurrency_key is not None and head.concurrency_limit is None
        rate = head.rate_key is not None and head.rate_limit is None
        if not (concurrency or rate):
            return head
        declared = self.declared.get(head.identifier)
        if declared is None:
            declared = self.declared[head.identifier] = self.declare(head.identifier)
        rate_limit, rate_period = head.rate_limit, head.rate_period
        if rate and declared.rate is not None:
            rate_limit, rate_period = declared.rate.limit, declared.rate.period
        return head._replace(concurrency_limit=declared.concurrency if concurrency else head.concurrency_limit,
                             rate_limit=rate_limit, rate_period=rate_period)

    def limited_queues(self, queues: list[str] | None) -> list[str]:
        """The limited queues among those served (all of them when ``queues`` is None)."""
        return [queue for queue in self.queue_limits if queues is None or queue in queues]


def claim_limited(engine: Engine, worker_id: str, queues: list[str] | None, budget: int, now: datetime,
                  flow: Flow) -> list[Any]:
    """Up to ``budget`` limited tasks marked ``running`` for ``worker_id``, every limit kept.

    Page after page of lanes until the budget is filled or the round of keys ends: a
    page whose keys are all at their limits (or all being claimed by other workers)
    must not stop the claim while keys further on have tasks that could start. A claim
    that started in the middle of the round goes on from the first key once.
    ``flow.held_back`` tells afterwards whether due tasks were left behind."""
    flow.forget_known_now_and_then()
    flow.held_back = False
    limited_queues = flow.limited_queues(queues)
    if (engine.reads_lanes_as_it_locks and not limited_queues and LIMITED in flow.empty_since
            and not engine.flow_lanes(None, 1)):
        # None the last time, none now: one index probe, not the claim's statement and
        # transaction (3 ms that an idle worker woken for an unlimited task would wait).
        return []
    tasks: list[Any] = []
    wrapped = flow.after is None
    for page in range(MAX_PAGES):
        served = limited_queues if page == 0 else []  # a limited queue is a lane of the first page
        tasks += claim_page(engine, worker_id, queues, budget - len(tasks), now, flow, served)
        if len(tasks) >= budget:
            break
        if flow.after is None:  # the round of keys ended
            if wrapped:
                break
            wrapped = True
    return tasks


def claim_page(engine: Engine, worker_id: str, queues: list[str] | None, budget: int, now: datetime,
               flow: Flow, limited_queues: list[str]) -> list[Any]:
    """The claim under the next page of lanes (``budget`` keys after ``flow.after``).

    Where the engine reads the lanes and locks their keys in one statement
    (``Engine.open_flow_page``), that statement opens the claim's transaction, as long
    as every lane's FlowKey rows are known to exist; else the lanes are read first and
    the missing rows inserted (``claim_lanes``)."""
    tasks: list[Any] = []
    if engine.reads_lanes_as_it_locks:
        with engine.atomic():
            paused, lanes, rows, read = engine.open_flow_page(flow.after, budget, limited_queues, now, queues)
            move_on(flow, lanes, budget)
            lane_keys = keys_of_lanes(engine, lanes, limited_queues)
            if not lane_keys:
                return []
            if lane_keys <= flow.known:
                turn = claim_under_lanes(engine, worker_id, queues, budget, now, flow, lanes, limited_queues,
                                         lane_keys, may_move_on=flow.after is not None, opened=(paused, rows),
                                         read=read)
                if turn is None:  # another worker claims under every lane of this page: the next page
                    flow.held_back = True
                    return []
                tasks, missing = turn
                if not missing or len(tasks) >= budget:
                    return tasks
                lane_keys |= missing
        # Keys without a known FlowKey row: inserted (outside any claim), then these lanes.
        return tasks + claim_lanes(engine, worker_id, queues, budget - len(tasks), now, flow, lanes,
                                   limited_queues, lane_keys)
    lanes = next_lanes(engine, flow, budget)
    lane_keys = keys_of_lanes(engine, lanes, limited_queues)
    if not lane_keys:
        return []
    return claim_lanes(engine, worker_id, queues, budget, now, flow, lanes, limited_queues, lane_keys)


def keys_of_lanes(engine: Engine, lanes: list[str], limited_queues: list[str]) -> set[Key]:
    """A lane is a concurrency key or a rate key (or both): its rows of either kind; and
    each served limited queue."""
    keys = {(kind, engine.key_form(lane)) for lane in lanes for kind in (CONCURRENCY, RATE)}
    return keys | {(QUEUE, queue) for queue in limited_queues}


def claim_lanes(engine: Engine, worker_id: str, queues: list[str] | None, budget: int, now: datetime,
                flow: Flow, lanes: list[str], limited_queues: list[str], lane_keys: set[Key]) -> list[Any]:
    """The claim under ``lanes``, in one transaction (and a second one when the heads
    needed keys that had no FlowKey row yet)."""
    tasks: list[Any] = []
    for retrying in (False, True):
        insert_missing(engine, flow, lane_keys)
        # One transaction from the lock to the commit, in READ COMMITTED (Django's default
        # on PostgreSQL and MariaDB): each statement after the lock sees every claim
        # committed under the same keys before it.
        with engine.atomic():
            turn = claim_under_lanes(engine, worker_id, queues, budget - len(tasks), now, flow, lanes,
                                     limited_queues, lane_keys, may_move_on=flow.after is not None)
        if turn is None:  # another worker claims under every lane of this page: the next page
            flow.held_back = True
            return tasks
        taken, missing = turn
        tasks += taken
        if not missing or retrying or len(tasks) >= budget:
            break
        # Keys seen for the first time (a shared rate key), or pruned under this worker:
        # their heads waited; with the rows inserted, the same lanes again, once.
        lane_keys |= missing
    return tasks


def claim_under_lanes(engine: Engine, worker_id: str, queues: list[str] | None, budget: int, now: datetime,
                      flow: Flow, lanes: list[str], limited_queues: list[str], lane_keys: set[Key],
                      may_move_on: bool, opened: tuple[list[str], dict[Key, Window]] | None = None,
                      read: FlowRead | None = None) -> tuple[list[Any], set[Key]] | None:
    """Inside the claim's transaction: the tasks taken, and the keys their heads needed
    that have no FlowKey row yet; None when every lane is locked by another claim and
    the round has more lanes to try (``may_move_on``). ``opened``: the paused queues and
    the lanes' rows locked SKIP LOCKED, when the statement that read the lanes did it;
    ``read``: the heads and counts, when that statement could read them fresh."""
    # The lanes' keys first, skipping those another worker is claiming under, so that
    # workers spread over the keys. If that leaves none: the next lanes, or (a hot key,
    # the whole round) wait for them in key order, holding nothing, so no deadlock, and
    # read the heads the other claim left.
    paused, lane_rows = opened or engine.open_flow_claim(lane_keys, wait=False)
    locked = formed(engine, lane_rows)
    if not locked:
        if may_move_on and flow.after is not None:
            return None
        locked = formed(engine, engine.lock_flow_keys(lane_keys, wait=True))
        flow.known -= lane_keys - set(locked)  # pruned under us: inserted, then the lanes again
        read = None  # read before this lock: read again
    if "*" in paused:  # pause_all(): nothing is due anywhere
        return [], set()
    # The heads, and the running tasks of every key that counts them: all are lanes' keys
    # (a concurrency key is its task's lane; every served limited queue is a lane).
    per_lane = max(1, math.ceil(budget / (len(lanes) + len(limited_queues))))
    found, counted = read or engine.flow_heads_and_counts(
        lanes, limited_queues, per_lane, now, queues, paused,
        [key for kind, key in locked if kind == CONCURRENCY], [key for kind, key in locked if kind == QUEUE])
    heads = [flow.with_declared_limits(head) for head in found]
    if engine.forms_keys:
        heads = [head._replace(concurrency_key=head.concurrency_key and engine.key_form(head.concurrency_key),
                               rate_key=head.rate_key and engine.key_form(head.rate_key)) for head in heads]
    # Their other keys, rate keys only (a rate key shared by several lanes), without
    # waiting: a claim holding keys never waits for more. Never a lane's key skipped
    # above: its running tasks were not counted, so taking it now could exceed its
    # limit (three workers ran 4 tasks of a key limited to 2 that way). A head whose key
    # is not locked waits a turn.
    others = {key for key in keys_of(heads, flow.queue_limits) - set(locked) - lane_keys if key[0] == RATE}
    if present := others & flow.known:
        locked |= formed(engine, engine.lock_flow_keys(present, wait=False))
    running: dict[Key, int] = {}
    for (kind, key), count in counted.items():
        form = (kind, engine.key_form(key))
        running[form] = running.get(form, 0) + count
    chosen, windows = choose(heads, locked, running, flow.queue_limits, now, budget)
    if len(locked) < len(lane_keys) or len(chosen) < min(len(heads), budget):
        flow.held_back = True  # lanes another claim held, or heads whose limits were full
    taken = set(chosen)
    tasks = engine.take_and_record(chosen, windows, keys_of((head for head in heads if head.id in taken),
                                                            flow.queue_limits), worker_id, now)
    return tasks, (others | lane_keys) - flow.known


def insert_missing(engine: Engine, flow: Flow, keys: set[Key]) -> None:
    """The FlowKey rows of ``keys`` not known to exist, inserted in their own transaction:
    a row inserted inside the claim would be locked out of key order."""
    if missing := keys - flow.known:
        engine.ensure_flow_keys(missing)
        if len(flow.known) > KNOWN_KEYS:
            flow.known.clear()
        flow.known |= missing


def formed(engine: Engine, rows: dict[Key, Window]) -> dict[Key, Window]:
    """Locked rows by their keys as the database compares them."""
    return {(kind, engine.key_form(key)): window for (kind, key), window in rows.items()}


def next_lanes(engine: Engine, flow: Flow, count: int) -> list[str]:
    """Up to ``count`` keys with pending tasks, after the last one visited."""
    lanes = engine.flow_lanes(flow.after, count)
    move_on(flow, lanes, count)
    return lanes


def move_on(flow: Flow, lanes: list[str], count: int) -> None:
    """Where the next page of lanes starts: after this one, or (a short page: the round
    ended) at the first key."""
    flow.after = lanes[-1] if len(lanes) == count else None


def keys_of(heads: Iterable[Head], limited: dict[str, QueueLimit]) -> set[Key]:
    keys = set()
    for head in heads:
        if head.concurrency_key is not None:
            keys.add((CONCURRENCY, head.concurrency_key))
        if head.rate_key is not None:
            keys.add((RATE, head.rate_key))
        if head.queue in limited:
            keys.add((QUEUE, head.queue))
    return keys


def window_of(now: datetime, period: int) -> int:
    return int(now.timestamp()) // period


def choose(heads: list[Head], locked: dict[Key, Window], running: dict[Key, int], limited: dict[str, QueueLimit],
           now: datetime, budget: int) -> tuple[list[int], dict[Key, Window]]:
    """The ids of the heads (in claim order) to take, and the rate windows they start in.

    A head is taken when every key it needs is locked by this claim and each of its
    limits has room: running + taken < concurrency, started in the window + taken < rate.
    """
    taken: dict[Key, int] = {}
    windows: dict[Key, Window] = {}
    chosen: list[int] = []
    for head in heads:  # in claim order
        if len(chosen) == budget:
            break
        needs: list[tuple[Key, int]] = []  # (key, room left)
        queue_limit = limited.get(head.queue)
        if head.concurrency_key is not None and head.concurrency_limit is not None:
            key = (CONCURRENCY, head.concurrency_key)
            needs.append((key, head.concurrency_limit - running.get(key, 0) - taken.get(key, 0)))
        if head.rate_key is not None and head.rate_limit is not None and head.rate_period:
            key = (RATE, head.rate_key)
            needs.append((key, head.rate_limit - started(locked.get(key), windows, key, now, head.rate_period)))
        if queue_limit is not None:
            key = (QUEUE, head.queue)
            if queue_limit.concurrency is not None:
                needs.append((key, queue_limit.concurrency - running.get(key, 0) - taken.get(key, 0)))
            if queue_limit.rate is not None:
                needs.append((key, queue_limit.rate.limit - started(locked.get(key), windows, key, now,
                                                                     queue_limit.rate.period)))
        if any(key not in locked or room <= 0 for key, room in needs):
            continue
        chosen.append(head.id)
        for key in {key for key, _ in needs}:
            taken[key] = taken.get(key, 0) + 1
        for key, period in rate_keys(head, queue_limit):
            current = current_window(locked[key], windows, key, now, period)
            windows[key] = Window(current.window, current.started + 1)
    return chosen, windows


def started(row: Window | None, windows: dict[Key, Window], key: Key, now: datetime, period: int) -> int:
    """Starts counted in the current window of a rate key, this claim's included."""
    return current_window(row, windows, key, now, period).started


def current_window(row: Window | None, windows: dict[Key, Window], key: Key, now: datetime, period: int) -> Window:
    """The window a start at ``now`` counts in (the window of its ``started_at``), with
    the starts counted in it so far.

    The key's row may hold a later window: a claim whose clock reads earlier (another
    host's, or a time read just before a wait for the lock). That claim starts nothing
    (its window is shown full): reopening its earlier window would start a second
    round in the same real second, and counting in the later one would record starts
    outside the window they were counted in."""
    if key in windows:
        return windows[key]
    window = window_of(now, period)
    if row is None or row.window < window:
        return Window(window, 0)
    return row if row.window == window else Window(window, FULL)


def rate_keys(head: Head, queue_limit: QueueLimit | None) -> list[tuple[Key, int]]:
    keys = []
    if head.rate_key is not None and head.rate_limit is not None and head.rate_period:
        keys.append(((RATE, head.rate_key), head.rate_period))
    if queue_limit is not None and queue_limit.rate is not None:
        keys.append(((QUEUE, head.queue), queue_limit.rate.period))
    return keys
