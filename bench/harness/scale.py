"""The ``scale`` scenario: the two scale-out set-ups of README "Scale-out" against the
plain one, side by side in one run, measured as ``drain`` and ``enqueue`` measure.

Its variants differ in their settings (``bench/benchsettings.py``'s switches), which a
process reads when it starts, so each runs in a process of its own (``child.py
scale_variant``, with its burst workers as children), in rounds: A, B, C, A, B, C, ...
because the same drain varies from minute to minute on a noisy machine.

- ``direct``: the app's tables on the default database, a direct connection: the baseline;
- ``pgbouncer`` (PostgreSQL only): every connection, the workers' and the enqueuer's,
  through a PgBouncer in transaction pooling (``tests/pgbouncer.py``, a pool large enough
  for every client) with ``DISABLE_SERVER_SIDE_CURSORS``, so single enqueue takes the
  ordinary INSERT instead of its prepared statement;
- ``separate``: the app's tables on a second database of the same server (a second
  SQLite file), ``DJANGO_JOBS["DATABASE"] = "queue"`` through ``JobsRouter``.

Each variant process drains ``drain_jobs`` no-op jobs with burst workers
(``scenarios.drain_once``), then times single enqueues on one thread
(``scenarios.enqueue_for``). A row gives the median of its rounds; its ratio is that
median over the baseline's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from django.db import connections, router

from django_jobs.db import engine
from django_jobs.models import ScheduledTask
from tests.pgbouncer import PgBouncer

from . import plan, tables
from .measure import rate
from .processes import ROOT
from .scenarios import config_label, drain_once, enqueue_for

Row = dict[str, Any]
RAW = ROOT / "bench" / "results" / "raw"
BASELINE = "direct"
# Each variant: what its rows' names add to "scale: drain" / "scale: enqueue", and how it is set up.
VARIANTS = {
    "direct": ("", "same database, direct"),
    "pgbouncer": (" via pgbouncer", f"PgBouncer transaction pooling, default_pool_size {plan.SCALE_POOL_SIZE}"),
    "separate": (", separate database", "app's tables on a 2nd database (JobsRouter)"),
}


def scale(params: dict[str, Any]) -> list[Row]:
    names = [name for name in VARIANTS if name != "pgbouncer" or params["db"] == "postgres"]
    runs: dict[str, list[list[Row]]] = {name: [] for name in names}
    with bouncer_for(params["db"]) as bouncer:
        for round_number in range(params["scale_rounds"]):
            for name in names:
                before = bouncer_stats(bouncer) if name == "pgbouncer" else {}
                rows = run_variant(name, round_number, params, switches(name, params, bouncer))
                if name == "pgbouncer":
                    rows[0]["metrics"]["bouncer"] = stats_delta(before, bouncer_stats(bouncer))
                runs[name].append(rows)
    return [row for kind in (0, 1) for row in side_by_side(runs, kind, params)]


@contextlib.contextmanager
def bouncer_for(database: str) -> Iterator[PgBouncer | None]:
    """A PgBouncer in front of this run's PostgreSQL server for the scenario's length (none elsewhere)."""
    if database != "postgres":
        yield None
        return
    with PgBouncer(server_port=int(os.environ.get("PGPORT", "5432")), pool_size=plan.SCALE_POOL_SIZE) as bouncer:
        yield bouncer


def switches(name: str, params: dict[str, Any], bouncer: PgBouncer | None) -> dict[str, str]:
    """The environment that makes a variant (bench/benchsettings.py reads it)."""
    if name == "pgbouncer" and bouncer is not None:
        return {"BENCH_POOLED_PORT": str(bouncer.port)}
    if name == "separate":
        return {"BENCH_QUEUE_DB_NAME": params["queue_db_name"]}
    return {}


def run_variant(name: str, round_number: int, params: dict[str, Any], env: dict[str, str]) -> list[Row]:
    """One round of one variant in a process of its own: [drain row, enqueue row]."""
    out = RAW / f"{params['db']}-scale-{name}-{round_number + 1}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    child_params = {**params, "variant": name, "round": round_number}
    child = subprocess.Popen([sys.executable, "-m", "bench.harness.child", "scale_variant",
                              json.dumps(child_params), str(out)], cwd=ROOT, env={**os.environ, **env})
    try:
        child.wait(plan.child_timeout("scale_variant", params))
    finally:
        if child.poll() is None:  # past its deadline: SIGTERM lets it stop its workers
            child.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(15)
            child.kill()
    outcome = json.loads(out.read_text()) if out.exists() else {"error": f"exited {child.returncode}"}
    if "error" in outcome:
        raise RuntimeError(f"{name}, round {round_number + 1}: {outcome['error']}\n{outcome.get('traceback', '')}")
    return outcome["rows"]


def variant(params: dict[str, Any]) -> list[Row]:
    """In the variant's process: drain, then single enqueues, on the database its settings give the app."""
    jobs, config = params["drain_jobs"], params["worker_config"]
    tables.truncate()
    tables.enqueue_noops(jobs)
    drained = drain_once(jobs, config, params, f"scale-{params['variant']}-{params['round'] + 1}")
    count, seconds = enqueue_for(params["scale_enqueue_seconds"])
    enqueued = {"jobs": count, "seconds": seconds, "jobs_per_s": rate(count, seconds), "metrics": {}}
    for row in (drained, enqueued):
        row["metrics"]["set_up"] = set_up()
    return [drained, enqueued]


def set_up() -> dict[str, Any]:
    """What the variant's settings made of the app's database, as django_jobs sees it."""
    alias = router.db_for_write(ScheduledTask)
    connection = connections[alias]
    return {"alias": alias, "name": str(connection.settings_dict["NAME"]), "port": connection.settings_dict.get("PORT"),
            "pooled": engine(alias).pooled, "prepared_insert": engine(alias).can_insert_one(connection)}


def side_by_side(runs: dict[str, list[list[Row]]], kind: int, params: dict[str, Any]) -> list[Row]:
    """The drain rows (``kind`` 0) or the enqueue rows (1): one per variant, the baseline first."""
    baseline = rates(runs[BASELINE], kind)
    return [summary(name, rounds, kind, baseline, params) for name, rounds in runs.items()]


def rates(rounds: list[list[Row]], kind: int) -> list[float]:
    return [row[kind]["jobs_per_s"] or 0.0 for row in rounds]


def summary(name: str, rounds: list[list[Row]], kind: int, baseline: list[float], params: dict[str, Any]) -> Row:
    """A variant's row: the median of its rounds; against the baseline's median (``ratio``)
    and, in the notes, against the baseline's run of the same round."""
    rows = [measured[kind] for measured in rounds]
    measured = rates(rounds, kind)
    median = statistics.median(measured)
    # The round of the median (nearest it with an even count) gives jobs and seconds, so that the columns agree.
    middle = min(rows, key=lambda measured_row: abs((measured_row["jobs_per_s"] or 0.0) - median))
    suffix, how = VARIANTS[name]
    what = "drain" if kind == 0 else "enqueue"
    shown = ", ".join(f"{value:,.0f}" for value in measured)
    row: Row = {
        "scenario": f"scale: {what}{suffix}",
        "config": (config_label(params["worker_config"], params["processes"]) if kind == 0
                   else "single calls, 1 thread") + f"; {how}",
        "jobs": middle["jobs"], "seconds": middle["seconds"],
        "jobs_per_s": median,
        "notes": f"median of {len(measured)} rounds ({shown}/s)",
        "metrics": {"rounds": rows, "jobs_per_s": measured},
    }
    if name != BASELINE:
        base_median = statistics.median(baseline)
        row["ratio"] = median / base_median if base_median else None
        paired = " ".join(f"{value / base:.2f}" for value, base in zip(measured, baseline, strict=True) if base)
        row["notes"] += f"; vs {BASELINE} per round {paired}"
        row["judged_as"] = f"scale: {what} ({name})"
    row["notes"] += notes_of(name, kind, rows)
    errors = [measured["error"] for measured in rows if "error" in measured]
    if errors:
        row["error"] = "; ".join(errors)
    return row


def notes_of(name: str, kind: int, rows: list[Row]) -> str:
    """What says the variant was what it claims: a pooled connection, the pool never
    starved, the app's tables on the queue's database."""
    set_up = rows[0]["metrics"]["set_up"]
    if name == "pgbouncer" and kind == 0:
        # PgBouncer's total over the variant's process (its enqueues too): clients' time queued for a server connection.
        waits = [row["metrics"].get("bouncer", {}).get("total_wait_time", 0) / 1000 for row in rows]
        return f"; pooled={set_up['pooled']}; waited for a server connection {' '.join(f'{wait:.0f}' for wait in waits)} ms"
    if name == "pgbouncer":
        return f"; prepared statement {'used' if set_up['prepared_insert'] else 'not used (ordinary INSERT)'}"
    if name == "separate" and kind == 0:
        return f"; alias {set_up['alias']!r}"
    if name == BASELINE and kind == 1 and set_up["prepared_insert"]:
        return "; prepared statement"
    return ""


def bouncer_stats(bouncer: PgBouncer | None) -> dict[str, int]:
    """PgBouncer's running totals for the bench database (SHOW STATS on its admin console)."""
    if bouncer is None:
        return {}
    import psycopg

    name = os.environ.get("BENCH_DB_NAME", "djjobs_bench")
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres", dbname="pgbouncer",
                         autocommit=True) as admin:
        cursor = admin.execute("SHOW STATS")
        columns = [column.name for column in cursor.description or ()]
        for values in cursor.fetchall():
            found = dict(zip(columns, values, strict=True))
            if found["database"] == name:
                return {key: int(value) for key, value in found.items() if key.startswith("total_")}
    return {}


def stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: value - before.get(key, 0) for key, value in after.items()}


SCENARIOS = {"scale": scale, "scale_variant": variant}
