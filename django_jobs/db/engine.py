"""The engine interface, and the ORM's way of doing each thing: what any Django backend gets.

The three databases the package is built for override what they do better
(``postgresql``, ``mysql``, ``sqlite``). Everything here is portable SQL or the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.apps import apps
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..conf import jobs_settings
from . import flow as flow_control
from .flow import CLAIM_ORDER, HEAD_COLUMNS, LIMITED, RANKED_COLUMNS, UNLIMITED, Flow, FlowRead, Head, Key, Window

PENDING, RUNNING = "pending", "running"
TASKS = "django_jobs_scheduledtask"
FLOW_KEYS = "django_jobs_flowkey"
EVENTS_TABLE = "django_jobs_taskevent"
EVENT_COLUMNS = "task_id, kind, at, attempt, worker_id, queue, message"
MESSAGE_LENGTH = 1000
# The attempt an event belongs to, read off the row the change wrote: a retry and a
# recovery have counted their attempt already; a claim, an outcome or a release has not.
ATTEMPT_AFTER = {
    "started": "n.retry_count + 1", "completed": "n.retry_count + 1", "failed": "n.retry_count + 1",
    "released": "n.retry_count + 1", "retried": "n.retry_count", "recovered": "n.retry_count",
    "cancelled": "n.retry_count", "requeued": "n.retry_count",
}
# Events that carry the error of the attempt that ended.
WITH_ERROR = {"retried", "recovered", "failed"}
# Another worker may take every candidate between our read and our update (no row
# locks): then read again rather than report "nothing due" while work is waiting.
CONDITIONAL_CLAIM_READS = 5


class DDL(NamedTuple):
    """A migration's statements for one database, in the order they run, and the way to run them."""

    forward: list[str]
    backward: list[str]

    def apply(self, schema_editor: Any) -> None:
        for statement in self.forward:
            schema_editor.execute(statement)

    def revert(self, schema_editor: Any) -> None:
        for statement in self.backward:
            schema_editor.execute(statement)


NO_DDL = DDL([], [])
# The schema's own SQL, which Django's models cannot say (migrations 0002, 0003, 0005, 0008).
# A migration runs what it ran when it shipped: a database migrated by an earlier release
# must end up as a new one. Partial indexes cover pending (or running) rows only: they stay
# as small as the backlog however many finished rows pile up, so the claim costs the same
# with a million completed rows.
CLAIM_INDEXES = {
    # Workers serving every queue: walk pending rows in claim order.
    "django_jobs_claim_idx": "(priority DESC, scheduled_at, id) WHERE status = 'pending'",
    # Workers serving some queues.
    "django_jobs_queue_claim_idx": "(queue, priority DESC, scheduled_at, id) WHERE status = 'pending'",
    # Recovery finds running rows and their workers.
    "django_jobs_running_idx": "(worker_id, started_at) WHERE status = 'running'",
    # The admin dashboard's throughput and failure chart reads recent outcomes.
    "django_jobs_executed_idx": "(executed_at) WHERE executed_at IS NOT NULL",
    "django_jobs_failed_idx": "(failed_at) WHERE failed_at IS NOT NULL",
}
# Flow control (0010): the claim's own indexes cover only unlimited rows (``flow_key``
# NULL), so a backlog of limited tasks never lies in the walk of the fast path; limited
# rows have an index of their own, by key, that the claim skips through key by key.
FLOW_CLAIM_INDEXES = {
    "django_jobs_claim_idx": "(priority DESC, scheduled_at, id) WHERE status = 'pending' AND flow_key IS NULL",
    "django_jobs_queue_claim_idx": "(queue, priority DESC, scheduled_at, id) WHERE status = 'pending' AND flow_key IS NULL",
    "django_jobs_flow_idx": "(flow_key, priority DESC, scheduled_at, id) WHERE status = 'pending' AND flow_key IS NOT NULL",
}
REPLACED_BY_FLOW = ("django_jobs_claim_idx", "django_jobs_queue_claim_idx")


def flow_claim_indexes(create: dict[str, str], replaced: dict[str, str], drop: str) -> DDL:
    """Migration 0010's DDL: the claim indexes ``replaced`` by ``create`` (each index's
    columns by name; ``drop`` is the DROP INDEX statement's pattern), and back."""
    return DDL(
        [*(drop.format(name) for name in create if name in replaced),
         *(f"CREATE INDEX {name} ON {TASKS} {columns}" for name, columns in create.items())],
        [*(drop.format(name) for name in create),
         *(f"CREATE INDEX {name} ON {TASKS} {replaced[name]}" for name in create if name in replaced)],
    )


# Owned tasks, for the admin and the API that show a user theirs (0008).
OWNER_INDEX = DDL(
    [f"CREATE INDEX django_jobs_owner_idx ON {TASKS} (owner_id, id) WHERE owner_id IS NOT NULL"],
    ["DROP INDEX django_jobs_owner_idx"],
)


# The keys with pending tasks in key order after %s (or from the first, with NULL), at
# most %s of them: a recursive skip scan of the flow index, one probe per key.
LANES = (f"WITH RECURSIVE lanes (k, n) AS ("
         f"SELECT (SELECT MIN(flow_key) FROM {TASKS} WHERE status = 'pending' AND flow_key > COALESCE(%s, '')), 1 "
         f"UNION ALL SELECT (SELECT MIN(t.flow_key) FROM {TASKS} t WHERE t.status = 'pending' "
         f"AND t.flow_key > lanes.k), lanes.n + 1 FROM lanes WHERE lanes.k IS NOT NULL AND lanes.n < %s)")


def lanes_params(after: str | None, count: int) -> list[Any]:
    return [after, count]


def task_model() -> Any:
    # By name: the models' querysets call the engines, so the engines cannot import the models.
    return apps.get_model("django_jobs", "ScheduledTask")


class Engine:
    """The ORM's way; the base of every engine."""

    vendor = ""
    #: The database's triggers write the event trail (else ``change_held_ids`` and
    #: ``write_events`` write it beside each change).
    triggers_write_events = False
    #: Idle workers can be woken at once (NOTIFY), and listen for it.
    can_notify = False
    #: An enqueue that is its own transaction may commit without waiting for the disk.
    can_relax_commit = False
    #: ``open_flow_page`` reads a page of lanes and locks their keys in one statement.
    reads_lanes_as_it_locks = False
    #: ``key_form`` changes keys (the database compares text other than byte for byte).
    forms_keys = False

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def connection(self) -> BaseDatabaseWrapper:
        return connections[self.alias]

    def set_up_connection(self, connection: BaseDatabaseWrapper, events_on: bool) -> None:
        """A new connection of this alias opened (``connection_created``)."""

    @property
    def pooled(self) -> bool:
        """Whether the alias goes through a transaction pooler (PgBouncer's ``pool_mode =
        transaction``): each transaction may get another server connection, so nothing
        may outlive a transaction: no session settings, no prepared statements, no LISTEN.
        Read from ``DISABLE_SERVER_SIDE_CURSORS``, the setting Django asks of such a database."""
        return bool(self.connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"))

    # -- the claim --------------------------------------------------------------------
    @property
    def skips_locked(self) -> bool:
        features = self.connection.features
        return bool(features.has_select_for_update and features.has_select_for_update_skip_locked)

    def claim(self, worker_id: str, queues: list[str] | None, limit: int, now: datetime, flow: Flow) -> list[Any]:
        """Mark up to ``limit`` due tasks ``running`` for ``worker_id`` and return them, in claim order.

        Limited tasks (``flow``: see ``django_jobs.db.flow``) and unlimited ones are
        claimed apart, each claim letting the other kind go first. ``flow``: the
        worker's, kept from claim to claim.
        """
        paths = [(LIMITED, self.claim_limited), (UNLIMITED, self.claim_unlimited)]
        if not flow.limited_first:
            paths.reverse()
        flow.limited_first = not flow.limited_first
        # A kind that found nothing a moment ago goes last, and is not asked at all when
        # the other found tasks: while the other has work, it is asked again only every
        # RECHECK_EMPTY seconds, not on every claim (an idle worker woken for one task
        # started it 2.6 ms after its enqueue at p50, 6.5 ms when every claim also asked
        # PostgreSQL for limited tasks there were none of: bench/run --only pickup).
        paths.sort(key=lambda path: flow.found_nothing_lately(path[0]))
        tasks: list[Any] = []
        for kind, path in paths:
            if len(tasks) >= limit or (tasks and flow.found_nothing_lately(kind)):
                break
            more = path(worker_id, queues, limit - len(tasks), now, flow)
            flow.found(kind, bool(more))
            tasks = sorted(tasks + more, key=claim_sort_key) if tasks and more else tasks or more
        return tasks

    def claim_limited(self, worker_id: str, queues: list[str] | None, limit: int, now: datetime,
                      flow: Flow) -> list[Any]:
        return flow_control.claim_limited(self, worker_id, queues, limit, now, flow)

    def claim_unlimited(self, worker_id: str, queues: list[str] | None, limit: int, now: datetime,
                        flow: Flow) -> list[Any]:
        """The claim of unlimited tasks (``flow_key`` NULL, outside the limited queues).

        With row locks, ``FOR UPDATE SKIP LOCKED``: concurrent workers skip each other's
        rows instead of queueing behind them. Without, a conditional ``UPDATE ... WHERE
        status = 'pending'`` is the claim; a row another worker took meanwhile is skipped.
        """
        held_back = list(flow.queue_limits)
        if self.skips_locked:
            return self.claim_with_row_locks(worker_id, queues, limit, now, held_back)
        return self.claim_with_conditional_update(worker_id, queues, limit, now, held_back)

    def claim_with_row_locks(self, worker_id: str, queues: list[str] | None, limit: int,
                             now: datetime, held_back: list[str]) -> list[Any]:
        rows = task_model().objects.using(self.alias)
        with transaction.atomic(using=self.alias):
            due = rows.due_unless_paused(now, queues, held_back)
            tasks = list(due.select_for_update(skip_locked=True)[:limit])
            if tasks:
                self.mark_claimed([task.pk for task in tasks], worker_id, now)
        return [held(task, worker_id, now) for task in tasks]

    def claim_with_conditional_update(self, worker_id: str, queues: list[str] | None, limit: int,
                                      now: datetime, held_back: list[str]) -> list[Any]:
        rows = task_model().objects.using(self.alias)
        for _ in range(CONDITIONAL_CLAIM_READS):
            candidates = list(rows.due_unless_paused(now, queues, held_back).values_list("pk", flat=True)[:limit])
            if not candidates:
                return []
            if self.mark_claimed(candidates, worker_id, now):
                mine = rows.filter(pk__in=candidates, status=RUNNING, worker_id=worker_id, started_at=now)
                return sorted(mine, key=claim_sort_key)
        return []

    def paused_queues(self) -> list[str]:
        """The queues paused now (``*``: all of them), read before the claim
        (``due_unless_paused``). Plain SQL: compiling an ORM query per claim was measurable
        in the drain."""
        connection = self.connection
        table = apps.get_model("django_jobs", "PausedQueue")._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT queue FROM {connection.ops.quote_name(table)}")
            return [queue for (queue,) in cursor.fetchall()]

    def pin_claim_plan(self) -> None:
        """Keep the claim on its index whatever the planner's statistics say (PostgreSQL)."""

    def pinned_and_paused(self) -> list[str]:
        """``pin_claim_plan``, then ``paused_queues``: one round trip where the database allows."""
        self.pin_claim_plan()
        return self.paused_queues()

    # -- flow control (``flow.claim_limited`` calls these) ---------------------------------
    def atomic(self) -> Any:
        return transaction.atomic(using=self.alias)

    def key_form(self, key: str) -> str:
        """A key as the database compares it: keys equal here are one key. As written,
        where text compares byte for byte."""
        return key

    def flow_lanes(self, after: str | None, count: int) -> list[str]:
        """Up to ``count`` keys with pending limited tasks, in key order, after ``after``:
        a skip scan of the flow index, one probe per key, however long each key's backlog."""
        with self.connection.cursor() as cursor:
            cursor.execute(f"{LANES} SELECT k FROM lanes WHERE k IS NOT NULL", lanes_params(after, count))
            return [lane for (lane,) in cursor.fetchall()]

    def open_flow_page(self, after: str | None, count: int, limited_queues: list[str], now: datetime,
                       queues: list[str] | None) -> tuple[list[str], list[str], dict[Key, Window], FlowRead | None]:
        """``flow_lanes`` and ``open_flow_claim`` (SKIP LOCKED) in one statement, where
        ``reads_lanes_as_it_locks``: the paused queues, the lanes, their locked rows,
        and their heads and counts if that statement could read them fresh."""
        raise NotImplementedError

    def open_flow_claim(self, lane_keys: set[Key], wait: bool) -> tuple[list[str], dict[Key, Window]]:
        """The start of a claim of limited tasks: the plan pinned, the paused queues, and
        the lanes' FlowKey rows locked (``lock_flow_keys``) with their rate windows."""
        paused = self.pinned_and_paused()
        return paused, self.lock_flow_keys(lane_keys, wait)

    def flow_heads_and_counts(self, lanes: list[str], limited_queues: list[str], per_lane: int, now: datetime,
                              queues: list[str] | None, paused: list[str], concurrency_keys: list[str],
                              counted_queues: list[str]) -> tuple[list[Head], dict[Key, int]]:
        """``flow_heads`` and ``running_counts``, read after the lanes' lock."""
        heads = self.flow_heads(lanes, limited_queues, per_lane, now, queues, paused)
        return heads, self.running_counts(concurrency_keys, counted_queues) if heads else {}

    def flow_heads(self, lanes: list[str], limited_queues: list[str], per_lane: int, now: datetime,
                   queues: list[str] | None, paused: list[str]) -> list[Head]:
        """The best-ranked due tasks of each lane (and of each limited queue's unkeyed
        tasks), at most ``per_lane`` each, outside the ``paused`` queues: one statement,
        a UNION ALL of one index range per lane."""
        due = self.connection.ops.adapt_datetimefield_value(now)
        rest, rest_params = self.heads_filter(queues, paused)
        parts, params = [], []
        for number, (index, where, value) in enumerate(
                [*(("django_jobs_flow_idx", "c.flow_key = %s", lane) for lane in lanes),
                 *(("django_jobs_queue_claim_idx", "c.flow_key IS NULL AND c.queue = %s", queue)
                   for queue in limited_queues)]):
            parts.append(self.one_lane(f"SELECT {RANKED_COLUMNS} FROM {TASKS} c{self.index_hint(index)} "
                                       f"WHERE c.status = 'pending' AND {where} AND c.scheduled_at <= %s{rest} "
                                       f"ORDER BY c.priority DESC, c.scheduled_at, c.id LIMIT %s", number))
            params += [value, due, *rest_params, per_lane]
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {HEAD_COLUMNS} FROM ({' UNION ALL '.join(parts)}) heads ORDER BY {CLAIM_ORDER}",
                           params)
            return [Head(*row) for row in cursor.fetchall()]

    def heads_filter(self, queues: list[str] | None, paused: list[str]) -> tuple[str, list[Any]]:
        """The served and not paused queues, as a condition on ``c.queue``. A list read
        before, not a NOT EXISTS per lane: that cost SQLite four times the statement."""
        sql, params = "", []
        for negation, names in (("", queues or []), (" NOT", paused)):
            if names:
                sql += f" AND c.queue{negation} IN ({', '.join(['%s'] * len(names))})"
                params += names
        return sql, params

    def index_hint(self, index: str) -> str:
        """The index a lane's heads must be read through, where the database takes hints."""
        return ""

    def one_lane(self, select: str, number: int) -> str:
        """One lane's SELECT as a member of a UNION ALL (each keeps its ORDER BY and LIMIT)."""
        return f"SELECT * FROM ({select}) h{number}"

    def ensure_flow_keys(self, keys: set[Key]) -> None:
        """The FlowKey rows of ``keys``, inserted where missing (in their own transaction)."""
        model = apps.get_model("django_jobs", "FlowKey")
        model.objects.using(self.alias).bulk_create([model(kind=kind, key=key) for kind, key in sorted(keys)],
                                                    ignore_conflicts=True)

    def flow_keys_where(self, keys: Iterable[Key]) -> tuple[str, list[Any]]:
        by_kind: dict[str, list[str]] = {}
        for kind, key in keys:
            by_kind.setdefault(kind, []).append(key)
        quote = self.connection.ops.quote_name
        where = " OR ".join(f"(kind = %s AND {quote('key')} IN ({', '.join(['%s'] * len(names))}))"
                            for names in by_kind.values())
        return where, [value for kind, names in by_kind.items() for value in (kind, *names)]

    def lock_flow_keys(self, keys: set[Key], wait: bool) -> dict[Key, Window]:
        """Lock the FlowKey rows of ``keys`` for this transaction, in key order, waiting
        for them (``wait``) or skipping the ones another claim holds; their rate windows.
        Without row locks the first write of the transaction takes the database's write
        lock, which serializes every claim."""
        quote = self.connection.ops.quote_name
        where, params = self.flow_keys_where(keys)
        select = f"SELECT kind, {quote('key')}, {quote('window')}, started FROM {FLOW_KEYS} WHERE {where}"
        with self.connection.cursor() as cursor:
            if self.skips_locked:
                skip = "" if wait else " SKIP LOCKED"
                cursor.execute(f"{select} ORDER BY kind, {quote('key')} FOR UPDATE{skip}", params)
            else:
                cursor.execute(f"UPDATE {FLOW_KEYS} SET used_at = %s WHERE {where}",
                               [self.connection.ops.adapt_datetimefield_value(datetime.now(UTC)), *params])
                cursor.execute(select, params)
            return {(kind, key): Window(window, started) for kind, key, window, started in cursor.fetchall()}

    def running_counts(self, concurrency_keys: list[str], queues: list[str]) -> dict[Key, int]:
        """How many tasks run now per concurrency key and per queue."""
        parts, params = [], []
        for kind, column, values in ((flow_control.CONCURRENCY, "concurrency_key", concurrency_keys),
                                     (flow_control.QUEUE, "queue", queues)):
            if values:
                parts.append(f"SELECT %s, {column}, COUNT(*) FROM {TASKS} WHERE status = 'running' "
                             f"AND {column} IN ({', '.join(['%s'] * len(values))}) GROUP BY {column}")
                params += [kind, *values]
        if not parts:
            return {}
        with self.connection.cursor() as cursor:
            cursor.execute(" UNION ALL ".join(parts), params)
            return {(kind, key): count for kind, key, count in cursor.fetchall()}

    def take(self, ids: list[int], worker_id: str, now: datetime) -> list[Any]:
        """Mark the pending tasks among ``ids`` running for ``worker_id``; them, in claim order."""
        if not self.mark_claimed(ids, worker_id, now):
            return []
        mine = task_model().objects.using(self.alias).filter(pk__in=ids, status=RUNNING, worker_id=worker_id,
                                                             started_at=now)
        return sorted(mine, key=claim_sort_key)

    def take_and_record(self, ids: list[int], windows: dict[Key, Window], touched: set[Key], worker_id: str,
                        now: datetime) -> list[Any]:
        """``take`` the chosen tasks and ``record_starts``; ``touched``: every key they
        were taken under (an engine whose claim reads counts before its lock writes
        their rows: ``open_flow_page``)."""
        tasks = self.take(ids, worker_id, now) if ids else []
        if windows:
            self.record_starts(windows, now)
        return tasks

    def record_starts(self, windows: dict[Key, Window], now: datetime) -> None:
        """The rate windows after this claim's starts, on their locked FlowKey rows."""
        quote = self.connection.ops.quote_name
        used_at = self.connection.ops.adapt_datetimefield_value(now)  # retention keeps a key with a window open
        with self.connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {FLOW_KEYS} SET {quote('window')} = %s, started = %s, used_at = %s "
                f"WHERE kind = %s AND {quote('key')} = %s",
                [(window.window, window.started, used_at, kind, key) for (kind, key), window in sorted(windows.items())])

    # -- inserting new rows (inserting.py) -------------------------------------------
    def inserts_from_json(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether new rows can be inserted from one JSON document and returned
        (``json_rows``); else the ORM's ``save``/``bulk_create`` insert them."""
        return False

    def json_rows(self, varying: list[Any]) -> tuple[str, list[str], str]:
        """The rows of a JSON document ``[[args, kwargs, *varying], ...]`` as a table: its
        ``FROM`` source (the document is its one parameter), how a row's args, kwargs and
        ``varying`` fields (values 2, 3, ...) are read, and the column of the document's order."""
        raise NotImplementedError(f"{type(self).__name__} inserts through the ORM")

    def can_insert_one(self, connection: BaseDatabaseWrapper) -> bool:
        """Whether ``insert_one`` may take this enqueue (asked first, so that the caller
        prepares its arguments only then). The hot path passes its connection along."""
        return False

    def insert_one(self, connection: BaseDatabaseWrapper, options: dict[str, Any], created: datetime,
                   arguments: tuple[str, str], stored: tuple[list[Any], dict[str, Any]], wake: Any,
                   relaxed: bool) -> Any:
        """A single enqueue past the cursor, where nobody could tell: the new task, or None
        to take the cursor path (nothing was written)."""
        return None

    def insert_side_effects(self, wakes: bool | None, relaxed: bool) -> dict[str, str]:
        """SQL calls that go in the INSERT's own statement, by name: a NOTIFY (``wakes``),
        a commit that does not wait for the disk (``relaxed``). None here."""
        return {}

    def insert_returning(self, connection: BaseDatabaseWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Run an INSERT built by ``inserting``; its returned rows sorted by id, which is
        their insertion order. ``connection``: the caller's, which may be in its transaction."""
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return sorted(cursor.fetchall())

    # -- a worker's batch writes --------------------------------------------------------
    def mark_claimed(self, ids: list[int], worker_id: str, now: datetime) -> int:
        fields = {"status": RUNNING, "worker_id": worker_id, "started_at": now, "updated_at": now}
        return self.change_held_ids(ids, "started", PENDING, None, fields)

    def change_held_ids(self, ids: list[int], kind: str, expected: str, worker_id: str | None,
                        fields: dict[str, Any]) -> int:
        """One state change of the rows ``ids`` that are in status ``expected`` (held by
        ``worker_id``, if given), with its ``kind`` events unless triggers write them.

        Plain SQL: the ORM's ``UPDATE ... WHERE id IN (100 parameters)`` was compiled and
        every id prepared and quoted on each call, a large share of a busy worker's
        Python, and the events' INSERT would cost as much again (figures: bench/README.md, "Measured design choices").
        """
        connection = self.connection
        model = task_model()
        quote = connection.ops.quote_name
        columns = {model._meta.get_field(name): value for name, value in fields.items()}
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in columns)
        values = [field.get_db_prep_save(value, connection) for field, value in columns.items()]
        ids_sql, ids_params = self.ids_in("id", ids)
        held_by = " AND worker_id = %s" if worker_id is not None else ""
        update = f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE {ids_sql} AND status = %s{held_by}"
        params = [*values, *ids_params, expected, *([worker_id] if worker_id is not None else [])]
        if not self.writes_events_beside_changes():
            with connection.cursor() as cursor:
                cursor.execute(update, params)
                return cursor.rowcount
        with transaction.atomic(using=self.alias, savepoint=False), connection.cursor() as cursor:
            cursor.execute(update, params)
            if cursor.rowcount:
                written_sql, written_params = self.ids_in("n.id", ids)
                self.write_events(
                    kind, f"{written_sql} AND n.status = %s AND n.worker_id = %s AND n.updated_at = %s",
                    [*written_params, fields["status"], fields.get("worker_id", worker_id),
                     connection.ops.adapt_datetimefield_value(fields["updated_at"])])
            return cursor.rowcount

    def ids_in(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        """``column`` is one of ``ids``, as SQL and parameters."""
        return f"{column} IN ({', '.join(['%s'] * len(ids))})", list(ids)

    # -- the event trail ------------------------------------------------------------------
    def writes_events_beside_changes(self) -> bool:
        return bool(jobs_settings.EVENTS) and not self.triggers_write_events

    def write_events(self, kind: str, where: str, params: list[Any]) -> None:
        """``kind`` events for the task rows ``n`` matching ``where``: one ``INSERT … SELECT``."""
        attempt = ATTEMPT_AFTER[kind]
        message = f"SUBSTR(n.error_message, 1, {MESSAGE_LENGTH})" if kind in WITH_ERROR else "''"
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {EVENTS_TABLE} ({EVENT_COLUMNS}) SELECT n.id, %s, n.updated_at, {attempt}, "
                f"n.worker_id, n.queue, {message} FROM {task_model()._meta.db_table} n WHERE {where}",
                [kind, *params],
            )

    def event_triggers(self) -> DDL:
        """The DDL that creates and drops the trail's triggers (migration 0007); none here."""
        return NO_DDL

    # -- the schema's own SQL (migrations) ------------------------------------------------
    def claim_indexes(self) -> DDL:
        """The indexes of the claim, recovery and the dashboard (migration 0002): partial,
        as any other backend has always had them. In SQL, not in ``Meta``: a partial index
        in ``Meta`` prints a system-check warning on MySQL at every command."""
        return DDL([f"CREATE INDEX {name} ON {TASKS} {columns}" for name, columns in CLAIM_INDEXES.items()],
                   [f"DROP INDEX {name}" for name in CLAIM_INDEXES])

    def restore_claim_indexes(self) -> DDL:
        """The claim indexes again after a migration that may have rebuilt the task table
        (0003, 0005; never reverted): Django does not know them, so a rebuild drops them.
        No rebuild here."""
        return NO_DDL

    def unique_indexes(self) -> DDL:
        """Migration 0005: the unique key's and the cron fire time's unique constraints
        as unique indexes over the rows they constrain. None here: the constraints stay
        whole (MySQL/MariaDB have no partial indexes; SQLite keeps the constraints in its
        CREATE TABLE, which only a table rebuild could change)."""
        return NO_DDL

    def owner_index(self) -> DDL:
        """Migration 0008: an index over owned tasks only, where indexes can be partial;
        none here."""
        return NO_DDL

    def flow_indexes(self) -> DDL:
        """Migration 0010: the claim indexes without limited rows, and the limited rows' own."""
        replaced = {name: CLAIM_INDEXES[name] for name in REPLACED_BY_FLOW}
        return flow_claim_indexes(FLOW_CLAIM_INDEXES, replaced, "DROP INDEX {}")

    def indexes_after_rebuild(self) -> DDL:
        """Every index Django does not know, created again where a migration rebuilt the
        task table (SQLite); ``forward`` after a rebuild going forward. None here."""
        return NO_DDL

    # -- waking idle workers --------------------------------------------------------------
    def notify(self, queues: Sequence[str]) -> None:
        """Wake the idle workers of ``queues`` when the transaction commits; here they poll."""

    @property
    def can_listen(self) -> bool:
        """Whether ``listening`` works: idle workers hear of new work without polling."""
        return False

    @property
    def why_not_listening(self) -> str | None:
        """Where an engine that notifies cannot listen, why (said once when a worker starts)."""
        return None

    @contextmanager
    def listening(self) -> Iterator[Callable[[float], Iterator[str]]]:
        """A connection of its own that hears ``notify``; yields ``heard(timeout)``, which
        yields each notified queue as it arrives, for up to ``timeout`` seconds."""
        raise NotImplementedError(f"{type(self).__name__} cannot listen; check can_listen first")
        yield  # a generator, so that the with statement raises, not the call


def held(task: Any, worker_id: str, now: datetime) -> Any:
    """A claimed row as the claim left it."""
    task.status, task.worker_id, task.started_at, task.updated_at = RUNNING, worker_id, now, now
    return task


def claim_sort_key(task: Any) -> tuple[int, datetime, int]:
    return (-task.priority, task.scheduled_at, task.pk)
