"""PostgreSQL: the production engine.

What it does better than the ORM's way: the claim in one ``UPDATE … RETURNING`` with
the planner pinned to the claim index, the ids of a batch as one array parameter,
the event trail written by statement-level triggers over transition tables (no round
trip of the worker's), and NOTIFY to wake idle workers at commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from ..conf import jobs_settings
from ..models import PausedQueue, ScheduledTask
from ..notify import NOTIFY_CHANNEL
from ..row_reader import column_list, reader
from . import prepared_insert
from .engine import (
    DDL,
    EVENT_COLUMNS,
    EVENTS_TABLE,
    FLOW_KEYS,
    LANES,
    MESSAGE_LENGTH,
    OWNER_INDEX,
    TASKS,
    Engine,
    claim_sort_key,
    lanes_params,
)
from .flow import CLAIM_ORDER, RANKED_COLUMNS, Flow, FlowRead, Head, Key, Window

# -- the event trail's triggers (migration 0007) ----------------------------------------
# Kinds, by the change of status that makes them (``n`` the new row, ``o`` the old one).
KIND = (
    "CASE WHEN n.status = 'running' THEN 'started' "
    "WHEN n.status = 'completed' THEN 'completed' "
    "WHEN n.status = 'cancelled' THEN 'cancelled' "
    "WHEN n.status = 'failed' THEN 'failed' "
    "WHEN o.status = 'running' AND n.retry_count > o.retry_count AND n.error_message LIKE 'WorkerLost:%' "
    "THEN 'recovered' "
    "WHEN o.status = 'running' AND n.retry_count > o.retry_count THEN 'retried' "
    "WHEN o.status = 'running' THEN 'released' "
    "ELSE 'requeued' END"
)
# The attempt the event belongs to: a retry or release names the attempt that ended.
ATTEMPT = ("CASE WHEN o.status = 'running' AND n.status = 'pending' THEN o.retry_count + 1 "
           "WHEN n.status IN ('running', 'completed', 'failed') THEN n.retry_count + 1 ELSE n.retry_count END")
WORKER = "CASE WHEN n.worker_id <> '' THEN n.worker_id ELSE o.worker_id END"
MESSAGE = (f"CASE WHEN o.status = 'running' AND n.status IN ('pending', 'failed') "
           f"THEN SUBSTR(n.error_message, 1, {MESSAGE_LENGTH}) ELSE '' END")
CHANGED = f"SELECT n.id, {KIND}, n.updated_at, {ATTEMPT}, {WORKER}, n.queue, {MESSAGE}"

CREATE_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION django_jobs_task_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('django_jobs.events', true) = 'off' THEN
        IF TG_OP <> 'DELETE' THEN RETURN NULL; END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO {EVENTS_TABLE} ({EVENT_COLUMNS}) {CHANGED}
        FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.status <> o.status;
    ELSE
        DELETE FROM {EVENTS_TABLE} e USING old_rows o WHERE e.task_id = o.id;
    END IF;
    RETURN NULL;
END $$""",
    f"CREATE TRIGGER django_jobs_events_update AFTER UPDATE ON {TASKS} "
    f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_task_events()",
    f"CREATE TRIGGER django_jobs_events_delete AFTER DELETE ON {TASKS} REFERENCING OLD TABLE AS old_rows "
    f"FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_task_events()",
]
DROP_TRIGGERS = [
    f"DROP TRIGGER IF EXISTS django_jobs_events_update ON {TASKS}",
    f"DROP TRIGGER IF EXISTS django_jobs_events_delete ON {TASKS}",
    "DROP FUNCTION IF EXISTS django_jobs_task_events()",
]

# -- partial unique indexes (migration 0005) ----------------------------------------------
# Most tasks have no unique key and no cron schedule: a unique constraint would still write
# their NULL keys into its index at every insert and status change (status is indexed, so
# a status change is no HOT update). Over the rows they constrain, what is unique is
# unchanged, and IntegrityError is raised as before. Django's state still describes full
# constraints: a later migration that alters them must drop the index, not the constraint.
UNIQUE_INDEXES = {
    "django_jobs_one_active_task_per_key": ("(active_unique_key)", "active_unique_key IS NOT NULL"),
    "django_jobs_one_task_per_fire_time": ("(cron_schedule_id, cron_fire_time)", "cron_schedule_id IS NOT NULL"),
}


def unique_indexes() -> DDL:
    ddl = DDL([], [])
    for name, (columns, rows) in UNIQUE_INDEXES.items():
        ddl.forward.extend([f"ALTER TABLE {TASKS} DROP CONSTRAINT {name}",
                            f"CREATE UNIQUE INDEX {name} ON {TASKS} {columns} WHERE {rows}"])
        ddl.backward.extend([f"DROP INDEX {name}", f"ALTER TABLE {TASKS} ADD CONSTRAINT {name} UNIQUE {columns}"])
    return ddl


# The claim's plan pinned for its transaction only (``pin_claim_plan`` says why): three
# columns of a SELECT, which may go on with more.
PIN_CLAIM_PLAN = ("set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true), "
                  "set_config('jit', 'off', true)")


class PostgreSQLEngine(Engine):
    vendor = "postgresql"
    triggers_write_events = True
    can_notify = True
    can_relax_commit = True
    reads_lanes_as_it_locks = True

    def set_up_connection(self, connection: BaseDatabaseWrapper, events_on: bool) -> None:
        """The per-connection switch the triggers read (``EVENTS = False``).

        Not behind a transaction pooler: the setting would stay on whichever server
        connection ran it, for other clients, and not follow this one (check W004)."""
        if not events_on and not self.pooled:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('django_jobs.events', 'off', false)")

    # -- the schema's own SQL (migrations) ------------------------------------------------
    def event_triggers(self) -> DDL:
        return DDL(CREATE_TRIGGERS, DROP_TRIGGERS)

    def unique_indexes(self) -> DDL:
        return unique_indexes()

    def owner_index(self) -> DDL:
        return OWNER_INDEX

    # -- the claim ------------------------------------------------------------------------
    def claim_unlimited(self, worker_id: str, queues: list[str] | None, limit: int, now: datetime,
                        flow: Flow) -> list[Any]:
        """Lock, mark and return a batch with one ``UPDATE ... RETURNING``.

        The same claim as the ORM's SELECT-then-UPDATE, in one round trip and without
        compiling two queries: the claim is most of a worker's CPU when jobs are short.
        """
        held_back = list(flow.queue_limits)
        params: list[Any] = [*([queues] if queues else []), *([held_back] if held_back else []), now, limit,
                             worker_id, now, now]
        connection = self.connection
        with transaction.atomic(using=self.alias):
            self.pin_claim_plan()
            with connection.cursor() as cursor:
                cursor.execute(claim_statement(queues, column_list(connection, "t."), bool(held_back)), params)
                claimed = cursor.fetchall()
        return sorted(reader(connection).tasks(claimed), key=claim_sort_key)

    def open_flow_page(self, after: str | None, count: int, limited_queues: list[str], now: datetime,
                       queues: list[str] | None) -> tuple[list[str], list[str], dict[Key, Window], FlowRead | None]:
        """The claim of a page of lanes, opened in one round trip: the pin, the paused
        queues, the lanes, their keys locked SKIP LOCKED (by the unique index), and
        the lanes' heads and running counts, read in the statement's snapshot.

        That snapshot is taken before the locks: a claim under a key that committed in
        between would be missing from the counts. Every claim that takes tasks under a
        key writes the key's row (``take_and_record``), so such a claim shows as a
        newer version of the row than the snapshot sees: the ``xmin`` of the row
        locked (its latest version) and of the row seen differ. Then the heads and
        counts are None, and the claim reads them again after the lock."""
        quote = self.connection.ops.quote_name
        task = ScheduledTask._meta.db_table
        paused_table = PausedQueue._meta.db_table
        served = " AND c.queue = ANY(%s)" if queues else ""
        key = quote("key")
        heads = (
            f"SELECT {RANKED_COLUMNS} FROM {task} c WHERE c.status = 'pending' AND {{where}} AND c.scheduled_at <= %s"
            f"{served} AND NOT EXISTS (SELECT 1 FROM {paused_table} p WHERE p.queue IN (c.queue, '*')) "
            f"ORDER BY c.priority DESC, c.scheduled_at, c.id LIMIT (SELECT per_lane FROM shares)")
        heads_params: list[Any] = [now, *([queues] if queues else [])]
        columns = ", ".join(f"h.{column}" for column in Head._fields)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"{LANES}, "
                f"wanted (kind, k) AS (SELECT kinds.kind, lanes.k FROM lanes CROSS JOIN (VALUES ('c'), ('r')) "
                f"AS kinds(kind) WHERE lanes.k IS NOT NULL UNION ALL SELECT 'q', unnest(%s::text[])), "
                f"shares (per_lane) AS (SELECT greatest(1, ceil(%s::numeric / nullif((SELECT count(*) FROM lanes "
                f"WHERE k IS NOT NULL) + %s, 0)))::int) "
                f"SELECT {PIN_CLAIM_PLAN}, (SELECT array_agg(queue) FROM {paused_table}), "
                f"(SELECT array_agg(k ORDER BY n) FROM lanes WHERE k IS NOT NULL), "
                f"(SELECT json_agg(json_build_array(l.kind, l.k, l.w, l.started, l.x))::text FROM (SELECT f.kind, "
                f"f.{key} k, f.{quote('window')} w, f.started, f.xmin::text x FROM {FLOW_KEYS} f JOIN wanted "
                f"ON f.kind = wanted.kind AND f.{key} = wanted.k ORDER BY f.kind, f.{key} "
                f"FOR UPDATE OF f SKIP LOCKED) l), "
                f"(SELECT json_agg(json_build_array(f.kind, f.{key}, f.xmin::text))::text FROM {FLOW_KEYS} f "
                f"JOIN wanted ON f.kind = wanted.kind AND f.{key} = wanted.k), "
                f"(SELECT json_agg(json_build_array({columns}) ORDER BY h.priority DESC, h.scheduled_at, h.id)::text "
                f"FROM (SELECT h.* FROM lanes CROSS JOIN LATERAL ({heads.format(where='c.flow_key = lanes.k')}) h "
                f"WHERE lanes.k IS NOT NULL UNION ALL SELECT h.* FROM unnest(%s::text[]) AS q(k) CROSS JOIN LATERAL "
                f"({heads.format(where='c.flow_key IS NULL AND c.queue = q.k')}) h) h), "
                f"(SELECT json_agg(json_build_array(n.kind, n.k, n.c))::text FROM ("
                f"SELECT 'c' kind, concurrency_key k, count(*) c FROM {task} WHERE status = 'running' "
                f"AND concurrency_key IN (SELECT k FROM lanes WHERE k IS NOT NULL) GROUP BY concurrency_key UNION ALL "
                f"SELECT 'q', queue, count(*) FROM {task} WHERE status = 'running' AND queue = ANY(%s) "
                f"GROUP BY queue) n)",
                [*lanes_params(after, count), limited_queues, count, len(limited_queues),
                 *heads_params, limited_queues, *heads_params, limited_queues])
            *_, paused, lanes, locked_rows, seen_rows, head_rows, count_rows = cursor.fetchone()
        locked = {(kind, key): (Window(window, started), version)
                  for kind, key, window, started, version in json.loads(locked_rows or "[]")}
        seen = {(kind, key): version for kind, key, version in json.loads(seen_rows or "[]")}
        fresh = all(seen.get(key) == version for key, (_, version) in locked.items())
        read = None
        if fresh:
            read = ([Head(*row) for row in json.loads(head_rows or "[]")],
                    {(kind, key): number for kind, key, number in json.loads(count_rows or "[]")})
        return paused or [], lanes or [], {key: window for key, (window, _) in locked.items()}, read

    def open_flow_claim(self, lane_keys: set[Key], wait: bool) -> tuple[list[str], dict[Key, Window]]:
        """The pin, the paused queues and the lanes' lock in one round trip."""
        quote = self.connection.ops.quote_name
        where, params = self.flow_keys_where(lane_keys)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {PIN_CLAIM_PLAN}, (SELECT array_agg(queue) FROM {PausedQueue._meta.db_table}), "
                f"(SELECT json_agg(json_build_array(l.kind, l.k, l.w, l.started)) FROM (SELECT kind, {quote('key')} k, "
                f"{quote('window')} w, started FROM {FLOW_KEYS} WHERE {where} ORDER BY kind, {quote('key')} "
                f"FOR UPDATE{'' if wait else ' SKIP LOCKED'}) l)",
                params)
            *_, paused, rows = cursor.fetchone()
        return paused or [], {(kind, key): Window(window, started) for kind, key, window, started in rows or []}

    def flow_heads_and_counts(self, lanes: list[str], limited_queues: list[str], per_lane: int, now: datetime,
                              queues: list[str] | None, paused: list[str], concurrency_keys: list[str],
                              counted_queues: list[str]) -> tuple[list[Head], dict[Key, int]]:
        """The heads, in claim order, and the running counts in one statement: one
        snapshot, taken after the lock. The counts come as text on every row and are
        parsed once (as json, psycopg parsed them once per head)."""
        sql, params = self.heads_statement(lanes, limited_queues, per_lane, now, queues, paused)
        task = ScheduledTask._meta.db_table
        counts = (f"(SELECT json_agg(json_build_array(n.kind, n.k, n.c))::text FROM ("
                  f"SELECT 'c' kind, concurrency_key k, count(*) c FROM {task} WHERE status = 'running' "
                  f"AND concurrency_key = ANY(%s) GROUP BY concurrency_key UNION ALL "
                  f"SELECT 'q', queue, count(*) FROM {task} WHERE status = 'running' AND queue = ANY(%s) "
                  f"GROUP BY queue) n)")
        columns = ", ".join(f"heads.{column}" for column in Head._fields)
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {columns}, {counts} FROM ({sql}) heads ORDER BY {CLAIM_ORDER}",
                           [concurrency_keys, counted_queues, *params])
            rows = cursor.fetchall()
        counted = {(kind, key): count for kind, key, count in json.loads(rows[0][-1] or "[]")} if rows else {}
        return [Head(*row[:-1]) for row in rows], counted

    def heads_statement(self, lanes: list[str], limited_queues: list[str], per_lane: int, now: datetime,
                        queues: list[str] | None, paused: list[str]) -> tuple[str, list[Any]]:
        """Each lane's heads through LATERAL over the lanes as one array: one subquery
        planned once (a UNION ALL of 100 lanes spent ~20 ms planning them)."""
        task = ScheduledTask._meta.db_table
        served = " AND c.queue = ANY(%s)" if queues else ""
        served += " AND c.queue <> ALL(%s)" if paused else ""
        parts: list[str] = []
        params: list[Any] = []
        for where, values in (("c.flow_key = l.k", lanes), ("c.flow_key IS NULL AND c.queue = l.k", limited_queues)):
            if values:
                parts.append(
                    f"SELECT h.* FROM unnest(%s::text[]) AS l(k) CROSS JOIN LATERAL (SELECT {RANKED_COLUMNS} "
                    f"FROM {task} c WHERE c.status = 'pending' AND {where} AND c.scheduled_at <= %s{served} "
                    "ORDER BY c.priority DESC, c.scheduled_at, c.id LIMIT %s) h")
                params += [values, now, *([queues] if queues else []), *([paused] if paused else []), per_lane]
        return " UNION ALL ".join(parts), params

    def take(self, ids: list[int], worker_id: str, now: datetime) -> list[Any]:
        return self.take_and_record(ids, {}, set(), worker_id, now)

    def take_and_record(self, ids: list[int], windows: dict[Key, Window], touched: set[Key], worker_id: str,
                        now: datetime) -> list[Any]:
        """Mark and return the chosen limited tasks, and write the rows of the keys they
        were taken under (the rate windows, ``used_at``), in one statement.

        Writing every such row, not only the rate keys', is what lets the next claim
        read its counts with its lock (``open_flow_page``): a claim that commits
        under a key leaves a new version of the key's row."""
        connection = self.connection
        task = ScheduledTask._meta.db_table
        quote = connection.ops.quote_name
        keys = sorted(set(windows) | touched)
        kinds, names = [kind for kind, _ in keys], [name for _, name in keys]
        periods = [windows[key].window if key in windows else None for key in keys]
        counts = [windows[key].started if key in windows else None for key in keys]
        with connection.cursor() as cursor:
            # Each id looked up by the primary key (LATERAL, fenced by OFFSET 0 so that it
            # stays a lookup per id). Joined with the ids as a table, or as a bare
            # ``id = ANY(%s)``, before a first ANALYZE of a freshly filled table
            # (``reltuples`` -1) it was planned as a hash join over every pending row read
            # through the identifier index: 8 ms of each claim of 100 at 20,000 pending,
            # growing with the backlog; this way 0.5 ms (EXPLAIN ANALYZE). The row is
            # locked there, its status checked again on its latest version (a cancel
            # committed since the heads were read), and one locked elsewhere is left.
            cursor.execute(
                f"WITH touched AS (UPDATE {FLOW_KEYS} f SET {quote('window')} = COALESCE(k.w, f.{quote('window')}), "
                f"started = COALESCE(k.n, f.started), used_at = %s FROM unnest(%s::text[], %s::text[], %s::bigint[], "
                f"%s::bigint[]) AS k(kind, k, w, n) WHERE f.kind = k.kind AND f.{quote('key')} = k.k RETURNING 1) "
                f"UPDATE {task} t SET status = 'running', worker_id = %s, started_at = %s, updated_at = %s "
                f"FROM (SELECT c.id FROM unnest(%s::bigint[]) AS chosen(id) CROSS JOIN LATERAL "
                f"(SELECT c.id FROM {task} c WHERE c.id = chosen.id AND c.status = 'pending' "
                f"OFFSET 0 FOR UPDATE SKIP LOCKED) c) "
                f"AS taken WHERE t.id = taken.id RETURNING {column_list(connection, 't.')}",
                [now, kinds, names, periods, counts, worker_id, now, now, ids])
            claimed = cursor.fetchall()
        return sorted(reader(connection).tasks(claimed), key=claim_sort_key)

    def pin_claim_plan(self) -> None:
        """Keep PostgreSQL on the claim index whatever its statistics say.

        After a burst of inserts the planner's statistics are stale: it expects a few due
        rows, reads all of them through a bitmap scan and sorts them, on every claim (a
        peer's drain falls to a third this way (figures: bench/README.md, "Measured design choices")). Walking the partial index in claim
        order and stopping at LIMIT is right at any backlog size, so the claim
        transaction rules the alternatives out, for itself only (``is_local``). The same
        stale statistics make the planner expect a costly statement and JIT-compile it,
        about 10 ms of every claim (EXPLAIN ANALYZE with 1M rows): JIT is off too.
        """
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {PIN_CLAIM_PLAN}")

    def pinned_and_paused(self) -> list[str]:
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT {PIN_CLAIM_PLAN}, (SELECT array_agg(queue) FROM {PausedQueue._meta.db_table})")
            return cursor.fetchone()[-1] or []

    # -- inserting new rows --------------------------------------------------------------------
    def inserts_from_json(self, connection: BaseDatabaseWrapper) -> bool:
        return bool(connection.features.can_return_rows_from_bulk_insert)

    def json_rows(self, varying: list[Any]) -> tuple[str, list[str], str]:
        # The document's text is cast to each column's type, exactly as it was prepared.
        read = [f"CAST(r.pair ->> {index} AS {field.db_type(self.connection)})"
                for index, field in enumerate(varying, start=2)]
        return "jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS r(pair, n)", ["r.pair -> 0", "r.pair -> 1", *read], "r.n"

    def can_insert_one(self, connection: BaseDatabaseWrapper) -> bool:
        # Behind a transaction pooler a statement prepared on one server connection may
        # be executed on another, where another client's statement has that name.
        return not self.pooled and prepared_insert.usable(connection)

    def insert_one(self, connection: BaseDatabaseWrapper, options: dict[str, Any], created: datetime,
                   arguments: tuple[str, str], stored: tuple[list[Any], dict[str, Any]], wake: Any,
                   relaxed: bool) -> Any:
        """The prepared statement through libpq (``prepared_insert``)."""
        return prepared_insert.insert(options, created, arguments, stored, connection, wake, relaxed)

    def insert_side_effects(self, wakes: bool | None, relaxed: bool) -> dict[str, str]:
        """The NOTIFY (``wakes``: one per queue of a list, counted so that the CTE stays one
        row), and a commit that does not wait for the disk (``synchronous_commit`` is read
        when the transaction commits)."""
        effects = {}
        if wakes is not None:
            effects["wakeup"] = "(SELECT count(pg_notify(%s, queue)) FROM unnest(%s::text[]) AS queue)" if wakes \
                else "pg_notify(%s, %s)"
        if relaxed:
            effects["durability"] = "set_config('synchronous_commit', 'off', true)"
        return effects

    # -- batch writes -----------------------------------------------------------------------
    def ids_in(self, column: str, ids: Sequence[int]) -> tuple[str, list[Any]]:
        # One array parameter: nothing to expand, one plan for every batch size.
        return f"{column} = ANY(%s)", [list(ids)]

    # -- waking idle workers ------------------------------------------------------------------
    def notify(self, queues: Sequence[str]) -> None:
        """NOTIFY the workers of ``queues`` (the payload is the queue; listeners filter on it).
        NOTIFY is transactional: workers hear it when the change commits, never before."""
        with self.connection.cursor() as cursor:
            for queue in queues:
                cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, queue])

    @property
    def can_listen(self) -> bool:
        # Here, not at the top: this module must import without psycopg (the package is
        # walked whole, e.g. by tests and documentation tools, on any database).
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        # psycopg 2 has no generator of notifications: its workers poll. Behind a
        # transaction pooler LISTEN would hold a server connection it does not own.
        return bool(is_psycopg3) and (not self.pooled or bool(jobs_settings.LISTEN_DATABASE_URL))

    @property
    def why_not_listening(self) -> str | None:
        if self.can_listen:
            return None
        if self.pooled:
            return ("the database goes through a transaction pooler (DISABLE_SERVER_SIDE_CURSORS), where LISTEN "
                    "cannot work; set DJANGO_JOBS['LISTEN_DATABASE_URL'] to a direct connection")
        return "psycopg 2 cannot wait for notifications; install psycopg 3"

    @contextmanager
    def listening(self) -> Iterator[Callable[[float], Iterator[str]]]:
        # A new connection outside Django's pool: LISTEN holds it for the worker's life,
        # in autocommit, so that no transaction of the worker's delays what it hears.
        # DJANGO_JOBS["LISTEN_DATABASE_URL"] bypasses a transaction pooler.
        raw = self.new_listening_connection()
        raw.autocommit = True
        try:
            raw.execute(f"LISTEN {NOTIFY_CHANNEL}")
            yield lambda timeout: (notification.payload for notification in raw.notifies(timeout=timeout))
        finally:
            raw.close()


    def new_listening_connection(self) -> Any:
        url = jobs_settings.LISTEN_DATABASE_URL
        if url:
            import psycopg

            return psycopg.connect(url)
        wrapper = self.connection
        return wrapper.get_new_connection(wrapper.get_connection_params())


def claim_statement(queues: list[str] | None, returning: str, held_back: bool = False) -> str:
    """Due unlimited rows in claim order, outside paused queues (all of them under ``pause_all``'s
    ``*``) and limited ones (``held_back``), locked (skipping locked ones) and marked running,
    returning the ``returning`` columns. Params: [queues], [held back queues], now, limit,
    worker_id, started_at, updated_at."""
    task = ScheduledTask._meta.db_table
    paused = PausedQueue._meta.db_table
    chosen = "AND c.queue = ANY(%s) " if queues else ""
    if held_back:
        chosen += "AND c.queue <> ALL(%s) "
    return (
        f"WITH claimed AS (SELECT c.id FROM {task} c WHERE c.status = 'pending' AND c.flow_key IS NULL {chosen}"
        f"AND c.scheduled_at <= %s AND NOT EXISTS (SELECT 1 FROM {paused} p WHERE p.queue IN (c.queue, '*')) "
        f"ORDER BY c.priority DESC, c.scheduled_at, c.id LIMIT %s FOR UPDATE SKIP LOCKED) "
        f"UPDATE {task} t SET status = 'running', worker_id = %s, started_at = %s, updated_at = %s "
        f"FROM claimed WHERE t.id = claimed.id RETURNING {returning}"
    )
