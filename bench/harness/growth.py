"""The ``growth`` scenario: the queue with 10 million rows, against the empty table, in one run.

Every figure is measured twice by the same function (``measure``): first on the empty
table (the baseline), then on a table filled in SQL with ``growth_rows`` rows (mostly
finished, ``growth_pending`` pending and due; see ``fill``):

- the drain of ``growth_pending`` no-op tasks with burst workers (``scenarios.drain_once``;
  on the filled table the pending rows of the fill themselves, every one of them);
- single ``enqueue()`` on one thread (``scenarios.enqueue_for``);
- the admin task list, the dashboard and a filtered list, loaded by ``django.test.Client``
  as a superuser (median of ``growth_requests`` after a first, untimed one);
- ``django_jobs.get_statistics()`` (median of ``growth_stats_calls``).

Then, on the filled table, retention: ``retention.prune`` deletes about half the rows
(completed ones, oldest first, in its default batches) on a thread while burst workers
drain ``growth_pending`` new tasks; the drain's rate is set against the filled table's.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

import django_jobs
from bench.benchapp.jobs import noop
from django_jobs import retention
from django_jobs.models import ScheduledTask, TaskEvent

from . import tables
from .measure import rate
from .scenarios import config_label, drain_once, enqueue_for

Row = dict[str, Any]
TASKS = ScheduledTask._meta.db_table
SPAN = timedelta(days=90)        # finished rows' creation times spread over this, up to now
JOB_NAMES = 36                   # finished rows' job names: app.job_00 ... app.job_35
# Moduli 7, 36 and 101 share no factor: queue, job name and status vary independently.
QUEUES = "CASE WHEN g % 7 < 4 THEN 'default' WHEN g % 7 = 4 THEN 'emails' WHEN g % 7 = 5 THEN 'reports' ELSE 'webhooks' END"
# Of every 101 finished rows: 3 failed, 1 cancelled, 97 completed.
FAILED, CANCELLED = "g % 101 < 3", "g % 101 = 3"
COMPLETED_SHARE = 97 / 101
ADMIN = "/admin/django_jobs/scheduledtask/"
PAGES = {
    "admin task list": ADMIN,
    "admin dashboard": ADMIN + "dashboard/",
    "admin list, status=failed": ADMIN + "?status__exact=failed",
}


def progress(message: str) -> None:
    print(f"[growth {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def growth(params: dict[str, Any]) -> list[Row]:
    params = {**params, "drain_timeout": 60 + params["growth_pending"] / 50}
    phases: dict[str, float] = {}
    tables.truncate()
    empty = timed(phases, "empty table: every figure", lambda: measure(params, filled_top=None))
    tables.truncate()
    top = timed(phases, f"fill {params['growth_rows']:,} rows", lambda: fill(params["growth_rows"], params["growth_pending"]))
    timed(phases, "ANALYZE" if connection.vendor != "postgresql" else "VACUUM ANALYZE", analyze)
    filled = timed(phases, "filled table: every figure", lambda: measure(params, filled_top=top))
    pruned = timed(phases, "retention while draining", lambda: prune_while_draining(params, filled["drain"]))
    rows = side_by_side(empty, filled, params) + pruned
    rows[-1]["notes"] += "; phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases.items())
    rows[-1]["metrics"]["phases_s"] = phases
    if not params.get("keep_db"):  # --keep-db: the table stays as the run left it, to look at
        tables.truncate()
    return rows


def timed(phases: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    progress(f"{name} ...")
    started = time.perf_counter()
    outcome = step()
    phases[name] = time.perf_counter() - started
    progress(f"{name}: {phases[name]:.1f} s")
    return outcome


# -- one state, every figure ------------------------------------------------------------
def measure(params: dict[str, Any], filled_top: int | None) -> dict[str, Any]:
    """Every figure on the table as it is: empty (``filled_top`` None), or filled, whose
    finished rows end at id ``filled_top`` and whose pending rows follow."""
    figures: dict[str, Any] = {name: page_times(url, params["growth_requests"]) for name, url in PAGES.items()}
    figures["get_statistics()"] = call_times(django_jobs.get_statistics, params["growth_stats_calls"])
    top = tables.max_id()
    count, seconds = enqueue_for(params["enqueue_single_seconds"], truncate=filled_top is None)
    figures["enqueue"] = {"jobs": count, "seconds": seconds, "jobs_per_s": rate(count, seconds)}
    if filled_top is None:
        tables.enqueue_noops(params["growth_pending"])
    else:
        delete_above(top)  # the enqueued tasks: the drain takes the fill's pending rows alone
    figures["drain"] = drain_once(params["growth_pending"], params["worker_config"], params,
                                  "growth-" + ("filled" if filled_top else "empty"), since_id=filled_top or 0)
    figures["rows"] = ScheduledTask.objects.count()
    return figures


def page_times(url: str, requests: int) -> dict[str, Any]:
    """Milliseconds of ``requests`` loads of an admin page as a superuser (a first load untimed)."""
    client = Client()
    client.force_login(superuser())

    def load() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code}")

    return call_times(load, requests)


def call_times(call: Callable[[], Any], times: int) -> dict[str, Any]:
    """Milliseconds of ``times`` calls after a first one (connections, templates, caches): the median and all."""
    started = time.perf_counter()
    call()
    first = (time.perf_counter() - started) * 1000
    measured = []
    for _ in range(times):
        started = time.perf_counter()
        call()
        measured.append((time.perf_counter() - started) * 1000)
    return {"ms": statistics.median(measured), "all_ms": measured, "first_ms": first, "queries": slowest_queries(call)}


def slowest_queries(call: Callable[[], Any], keep: int = 3) -> dict[str, Any]:
    """One more call, each of its SQL statements timed: how many, and the ``keep`` slowest
    (ms, SQL), each SELECT of them over 50 ms with its plan (EXPLAIN ANALYZE on PostgreSQL)."""
    timed_queries: list[tuple[float, str, Any]] = []

    def timer(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            timed_queries.append(((time.perf_counter() - started) * 1000, sql, params))

    with connection.execute_wrapper(timer):
        call()
    timed_queries.sort(key=lambda timed: timed[0], reverse=True)
    slowest = [{"ms": ms, "sql": sql % tuple(map(repr, params)) if params else sql,
                "plan": plan_of(sql, params) if ms > 50 and sql.lstrip().upper().startswith("SELECT") else None}
               for ms, sql, params in timed_queries[:keep]]
    return {"count": len(timed_queries), "total_ms": sum(timed[0] for timed in timed_queries), "slowest": slowest}


def plan_of(sql: str, params: Any) -> str:
    explain = {"postgresql": "EXPLAIN (ANALYZE, BUFFERS) ", "sqlite": "EXPLAIN QUERY PLAN "}.get(connection.vendor, "EXPLAIN ")
    with connection.cursor() as cursor:
        cursor.execute(explain + sql, params)
        return "\n".join(" | ".join(map(str, row)) for row in cursor.fetchall())


def superuser():
    users = get_user_model()
    return users.objects.filter(username="bench-admin").first() or users.objects.create_superuser("bench-admin")


def delete_above(top: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(TASKS)} WHERE id > %s", [top])


# -- retention while workers drain --------------------------------------------------------
def prune_while_draining(params: dict[str, Any], without: Row) -> list[Row]:
    """``retention.prune`` of about ``growth_prune`` completed rows, oldest first, on a
    thread, while burst workers drain ``growth_pending`` new tasks."""
    now = timezone.now()
    policy = {"completed": {"older_than": prune_age(params, now)}}
    top = tables.max_id()
    tables.enqueue_noops(params["growth_pending"])
    pruning = Pruning(policy, now, params.get("growth_prune_pause", 0.0))
    pruning.start()
    try:
        pruning.wait_for_first_batch()
        drained = drain_once(params["growth_pending"], params["worker_config"], params, "growth-pruning", since_id=top)
    finally:
        pruning.join()
    drain_end = top_completion(top)
    ratio = drained["jobs_per_s"] / without["jobs_per_s"] if drained.get("jobs_per_s") and without.get("jobs_per_s") else None
    drained.update(
        scenario="growth: drain while pruning", ratio=ratio,
        config=f"{params['growth_rows']:,}-row fill; {drained['config']}; prune batch {retention.DEFAULT_BATCH_SIZE:,}",
        notes=f"{drained['notes']}; ratio: ÷ the filled table's drain ({without['jobs_per_s']:,.0f}/s); "
              f"pruning {'went on past' if pruning.ended > drain_end else 'ENDED BEFORE'} the last completion",
    )
    drained["metrics"].update(ratio=ratio, prune_ended_after_drain=pruning.ended > drain_end)
    deleted = pruning.deleted
    pruned = {
        "scenario": "growth: prune", "config": f"retention.prune, batch {retention.DEFAULT_BATCH_SIZE:,}, while draining",
        "jobs": deleted, "seconds": pruning.seconds, "jobs_per_s": rate(deleted, pruning.seconds),
        "notes": f"completed rows older than {policy['completed']['older_than'] / timedelta(days=1):.1f} days (oldest first); "
                 f"jobs = rows deleted, jobs/s = rows/s; {ScheduledTask.objects.count():,} rows left",
        "metrics": {"deleted": deleted, "seconds": pruning.seconds},
    }
    for row in (drained, pruned):
        if pruning.error:
            row["error"] = pruning.error
    return [drained, pruned]


def prune_age(params: dict[str, Any], now: datetime) -> timedelta:
    """The age past which about ``growth_prune`` completed rows of the fill lie (their times
    rise with their ids; ``fill`` spreads them evenly over SPAN, up to ``now``)."""
    completed = (params["growth_rows"] - params["growth_pending"]) * COMPLETED_SHARE
    share = min(1.0, params["growth_prune"] / completed)
    return SPAN * (1 - share)


class Pruning(threading.Thread):
    """``retention.prune(policy)`` on a thread of its own (its own connection): rows deleted,
    seconds, and when it ended; ``first_batch`` is set once its first batch is deleted."""

    def __init__(self, policy: dict[str, Any], now: datetime, pause: float = 0.0) -> None:
        super().__init__(daemon=True)
        # ``pause``: seconds slept between batches (what a pacing option of retention would do).
        self.policy, self.now, self.pause = policy, now, pause
        self.deleted, self.seconds, self.ended, self.asks = 0, 0.0, 0.0, 0
        self.error: str | None = None
        self.first_batch = threading.Event()

    def run(self) -> None:
        started = time.perf_counter()
        try:
            self.deleted = sum(retention.prune(self.policy, now=self.now, should_stop=self.asked).values())
        except Exception as error:  # noqa: BLE001 -- reported in the rows
            self.error = f"prune: {type(error).__name__}: {error}"
        finally:
            self.seconds = time.perf_counter() - started
            self.ended = time.time()
            self.first_batch.set()
            connection.close()

    def asked(self) -> bool:
        """``should_stop``, asked before each batch: from its second ask on, a batch is done."""
        self.asks += 1
        if self.asks > 1:
            self.first_batch.set()
            time.sleep(self.pause)
        return False

    def wait_for_first_batch(self) -> None:
        """The drain starts once pruning is under way (its first batch deleted)."""
        self.first_batch.wait(600)


def top_completion(since_id: int) -> float:
    finished = tables.finished_rows(since_id)
    return max(done for _, _, done in finished) if finished else 0.0


# -- the table -----------------------------------------------------------------------------
def side_by_side(empty: dict[str, Any], filled: dict[str, Any], params: dict[str, Any]) -> list[Row]:
    """Two rows per figure, the empty table's then the filled one's; ratio = filled ÷ empty."""
    label = f"{filled['rows']:,} rows"
    rows: list[Row] = []
    for name in ("drain", "enqueue"):
        for state, figures in (("empty table", empty), (label, filled)):
            row = dict(figures[name])
            row.setdefault("metrics", {})
            config = config_label(params["worker_config"], params["processes"]) if name == "drain" else "single calls, 1 thread"
            row.update(scenario=f"growth: {name}", config=f"{state}; {config}")
            rows.append(row)
        rows[-1]["ratio"] = rows[-1]["jobs_per_s"] / rows[-2]["jobs_per_s"] if rows[-2].get("jobs_per_s") else None
        rows[-1]["notes"] = f"{rows[-1].get('notes', '')}; ratio: jobs/s filled ÷ empty".lstrip("; ")
    for name in (*PAGES, "get_statistics()"):
        pair = []
        for state, figures in (("empty table", empty), (label, filled)):
            timing = figures[name]
            shown = " ".join(f"{ms:,.0f}" for ms in timing["all_ms"])
            queries = timing["queries"]
            slowest = queries["slowest"][0] if queries["slowest"] else {"ms": 0.0, "sql": ""}
            pair.append({"scenario": f"growth: {name}", "config": state, "p50_ms": timing["ms"],
                         "notes": f"median of {len(timing['all_ms'])} ({shown} ms; first {timing['first_ms']:,.0f} ms); "
                                  f"{queries['count']} queries, {queries['total_ms']:,.0f} ms; slowest {slowest['ms']:,.0f} ms: "
                                  f"{slowest['sql'][:90]}",
                         "metrics": timing})
        pair[1]["ratio"] = pair[1]["p50_ms"] / pair[0]["p50_ms"] if pair[0]["p50_ms"] else None
        pair[1]["notes"] += "; ratio: ms filled ÷ empty"
        rows.extend(pair)
    drained = filled["drain"]["metrics"]
    rows[1]["notes"] += f"; the fill's {params['growth_pending']:,} pending rows (all of them), {drained['completed']:,} completed"
    return rows


# -- the fill ------------------------------------------------------------------------------
def fill(count: int, pending: int) -> int:
    """``count`` rows in SQL: ``count - pending`` finished ones, then ``pending`` pending
    no-op tasks, due. Returns the last finished row's id (the pending rows' are above it).

    Each row copies a template row that the ORM wrote (so every column has its model
    default, whatever columns the model gains), with the columns below computed from
    the row's number ``g``. Finished rows: 96 % completed, 3 % failed (out of retries,
    with an error and a traceback), 1 % cancelled; 36 job names; 4 queues (4/7, then 1/7 each);
    created one after another over the last 90 days (ids rise with time, as in a real
    table), run 20 ms after, taking 0–960 ms; small JSON arguments. Pending rows:
    ``bench.noop`` (what the drain can run), the same queues, due over the last minutes.
    The finished rows get their event trail (``fill_events``).
    """
    finished = count - pending
    now = timezone.now()
    template = ScheduledTask(identifier=noop.name, status="completed", worker_id="web-7:4121:ab12")
    template.save(force_insert=True)
    dialect = Dialect(connection.vendor, now - SPAN)
    step = int(SPAN.total_seconds() * 1_000_000) // max(finished, 1)
    copy_rows(template.pk, finished, finished_columns(dialect, step), progress_every=1_000_000)
    top = tables.max_id()
    fill_events(template.pk + 1, top)
    pending_dialect = Dialect(connection.vendor, now - timedelta(milliseconds=pending + 1))
    copy_rows(template.pk, pending, pending_columns(pending_dialect), progress_every=1_000_000)
    delete_template = f"DELETE FROM {connection.ops.quote_name(TASKS)} WHERE id = %s"
    with connection.cursor() as cursor:
        cursor.execute(delete_template, [template.pk])
    return top


def fill_events(first: int, last: int, chunk: int = 1_000_000) -> None:
    """The event trail of the finished rows ``first``..``last``, as the triggers would have
    written it (``EVENTS`` is on by default): ``started`` and the outcome of each run
    task, ``cancelled`` alone for a cancelled one; about two events a task."""
    quote = connection.ops.quote_name
    events, tasks = quote(TaskEvent._meta.db_table), quote(TASKS)
    columns = "task_id, kind, at, attempt, worker_id, queue, message"
    started = f"SELECT id, 'started', started_at, retry_count + 1, worker_id, queue, '' FROM {tasks} WHERE started_at IS NOT NULL"
    outcome = (f"SELECT id, status, COALESCE(executed_at, failed_at, updated_at), retry_count + 1, worker_id, queue, "
               f"error_message FROM {tasks} WHERE status IN ('completed', 'failed', 'cancelled')")
    for start in range(first, last + 1, chunk):
        end = min(last, start + chunk - 1)
        within = f" AND id BETWEEN {start} AND {end}"
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {events} ({columns}) {started}{within} UNION ALL {outcome}{within}")
        progress(f"  events of tasks up to #{end:,}")


def finished_columns(d: Dialect, step: int) -> dict[str, str]:
    step_sql = d.big(step)
    created = d.at(f"g * {step_sql}")
    started = d.at(f"g * {step_sql} + 20000")
    ended = d.at(f"g * {step_sql} + 20000 + (g % 97) * 10000")
    return {
        "identifier": d.concat("'app.job_'", f"g % {JOB_NAMES}"),
        "queue": QUEUES,
        "status": f"CASE WHEN {FAILED} THEN 'failed' WHEN {CANCELLED} THEN 'cancelled' ELSE 'completed' END",
        "args": d.json_array("g % 1000", "'x'"),
        "created_at": created,
        "scheduled_at": created,
        "started_at": f"CASE WHEN {CANCELLED} THEN NULL ELSE {started} END",
        "executed_at": f"CASE WHEN {FAILED} OR {CANCELLED} THEN NULL ELSE {ended} END",
        "failed_at": f"CASE WHEN {FAILED} THEN {ended} ELSE NULL END",
        "updated_at": ended,
        "retry_count": f"CASE WHEN {FAILED} THEN 3 ELSE 0 END",
        "error_message": f"CASE WHEN {FAILED} THEN 'TimeoutError: upstream did not answer in 30 s' ELSE '' END",
        "traceback": f"CASE WHEN {FAILED} THEN 'Traceback (most recent call last):\n  File \"app/jobs.py\", "
                     f"line 42, in run\nTimeoutError: upstream did not answer in 30 s' ELSE '' END",
        "worker_id": f"CASE WHEN {CANCELLED} THEN '' ELSE 'web-7:4121:ab12' END",
    }


def pending_columns(d: Dialect) -> dict[str, str]:
    due = d.at("g * 1000")
    return {"identifier": f"'{noop.name}'", "queue": QUEUES, "status": "'pending'", "created_at": due,
            "scheduled_at": due, "updated_at": due, "worker_id": "''"}


class Dialect:
    """The few expressions that differ between the three databases; ``base`` is the time of g = 0."""

    def __init__(self, vendor: str, base: datetime) -> None:
        self.vendor = vendor
        self.base = base.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def at(self, microseconds: str) -> str:
        if self.vendor == "postgresql":
            return f"(TIMESTAMPTZ '{self.base}+00' + ({microseconds}) * INTERVAL '1 microsecond')"
        if self.vendor == "mysql":
            return f"(TIMESTAMP '{self.base}' + INTERVAL ({microseconds}) MICROSECOND)"
        return f"strftime('%Y-%m-%d %H:%M:%f', '{self.base}', '+' || (({microseconds}) / 1000000.0) || ' seconds')"

    def big(self, number: int) -> str:
        """An integer literal whose products with g are 64-bit (PostgreSQL's plain literal is 32-bit)."""
        return f"CAST({number} AS BIGINT)" if self.vendor == "postgresql" else str(number)

    def concat(self, *parts: str) -> str:
        # Parenthesised: SQLite's || binds tighter than %.
        return f"CONCAT({', '.join(parts)})" if self.vendor == "mysql" else " || ".join(f"({part})" for part in parts)

    def json_array(self, *values: str) -> str:
        function = {"postgresql": "jsonb_build_array", "mysql": "JSON_ARRAY"}.get(self.vendor, "json_array")
        return f"{function}({', '.join(values)})"


def copy_rows(pk: int, count: int, computed: dict[str, str], progress_every: int) -> None:
    """``count`` copies of row ``pk``, the n-th (g = n, from 0) with ``computed`` columns.

    PostgreSQL numbers the rows with generate_series, a million a statement; MariaDB and
    SQLite with a cross join of digit tables, 100,000 a statement (as ``tables.copy_row``).
    """
    quote = connection.ops.quote_name
    fields = [field.column for field in ScheduledTask._meta.concrete_fields
              if not field.primary_key and not getattr(field, "generated", False)]
    names = ", ".join(quote(column) for column in fields)
    values = ", ".join(computed.get(column, f"t.{quote(column)}") for column in fields)
    chunk = 1_000_000 if connection.vendor == "postgresql" else 100_000
    digits = "(" + " UNION ALL ".join(f"SELECT {digit} AS n" for digit in range(10)) + ")"
    numbers = " CROSS JOIN ".join(f"{digits} d{place}" for place in range(5))
    number = " + ".join(f"d{place}.n * {10 ** place}" for place in range(5))
    for start in range(0, count, chunk):
        end = min(count, start + chunk)
        if connection.vendor == "postgresql":
            source = f"generate_series({start}, {end - 1}) AS s(g)"
        else:
            source = f"(SELECT {start} + {number} AS g FROM {numbers}) s"
        sql = (f"INSERT INTO {quote(TASKS)} ({names}) SELECT {values} FROM {quote(TASKS)} t "
               f"CROSS JOIN {source} WHERE t.id = {int(pk)}" + ("" if connection.vendor == "postgresql" else f" AND g < {end}"))
        with connection.cursor() as cursor:
            cursor.execute(sql)
        if end % progress_every == 0 or end == count:
            progress(f"  {end:,} of {count:,} rows")


def analyze() -> None:
    """Fresh planner statistics of the tasks and their events, as a production database's
    autovacuum would have them.

    PostgreSQL: VACUUM ANALYZE, since autovacuum also vacuums after inserts there (the
    visibility map lets counts read indexes only); this bench server runs with autovacuum off.
    """
    with connection.cursor() as cursor:
        for table in map(connection.ops.quote_name, (TASKS, TaskEvent._meta.db_table)):
            statement = {"postgresql": f"VACUUM (ANALYZE) {table}", "mysql": f"ANALYZE TABLE {table}"}.get(
                connection.vendor, f"ANALYZE {table}")
            cursor.execute(statement)
            if connection.vendor == "mysql":
                cursor.fetchall()


SCENARIOS = {"growth": growth}
