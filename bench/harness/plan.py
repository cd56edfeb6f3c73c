"""What a run does: the scenarios, their counts (full and --quick), and the targets of
issue 8 (on PostgreSQL; MariaDB and SQLite are measured without targets), of flow
control (its ratios on every database, its pickup on PostgreSQL) and of scale-out (its
ratios: PgBouncer on PostgreSQL, a separate queue database on every database).
"""

from __future__ import annotations

from typing import Any

DATABASES = ("postgres", "mariadb", "sqlite")
SCENARIOS = ("enqueue", "drain", "pickup", "flow", "scale", "lanes", "flat", "memory", "peer", "growth")
# What a run without --only runs: growth fills 10 million rows per database (tens of minutes), so only by name.
DEFAULT_SCENARIOS = tuple(name for name in SCENARIOS if name != "growth")

DRAIN_CONFIGS = [
    {"concurrency": 1, "batch_size": 100},
    {"concurrency": 4, "batch_size": 100},
    {"concurrency": 8, "batch_size": 100},
]
# Flat cost and memory use the best drain configuration of the run on that database,
# or this one when the drain scenario did not run.
DEFAULT_CONFIG = {"concurrency": 4, "batch_size": 100}
# The flow scenario's drains use this one, whatever the drain scenario found best: its rows
# compare with each other, and with the same rows of another run.
FLOW_CONFIG = {"concurrency": 4, "batch_size": 100}

FULL = {
    "processes": 2,
    "drain_jobs": 20_000,
    "pickup_jobs": 200,
    "pickup_spacing": 0.02,
    "pickup_interval": 1.0,
    "enqueue_many_jobs": 100_000,
    "enqueue_single_seconds": 5.0,
    "enqueue_threads": 2,
    "flat_finished": 1_000_000,
    "flat_future": 100_000,
    "flat_jobs": 10_000,
    "memory_jobs": 1_000_000,
    "memory_start_after": 1_000,
    # The worker runs until every job is done or this time is up, whichever comes first;
    # the growth is then measured over the jobs it got through (the table says so).
    "memory_max_seconds": 420,
    # flow: each drain's jobs; the keys of the many-keys drain (concurrency 1 each); the
    # saturated key's backlog; the free-key tasks enqueued one by one beside it.
    "flow_jobs": 20_000,
    "flow_keys": 1_000,
    "flow_backlog": 100_000,
    "flow_free_jobs": 1_000,
    # scale: rounds of its variants (direct, through PgBouncer, separate database), each
    # draining drain_jobs, then enqueuing single calls on one thread for this long.
    "scale_rounds": 5,
    "scale_enqueue_seconds": 2.0,
    # lanes: async def jobs awaiting 0.5 s on the event loop, and on threads (fewer: 8/s);
    # rounds of --processes 2 against two run_jobworker, each draining drain_jobs.
    "lanes_async_jobs": 2_000,
    "lanes_thread_jobs": 100,
    "lanes_rounds": 3,
    # growth: the filled table's rows (bench/run --growth-rows N), of which this many pending
    # and due (the drains' jobs, on the empty table too); the completed rows pruned while
    # workers drain; admin page loads and get_statistics() calls timed per table (medians).
    "growth_rows": 10_000_000,
    "growth_pending": 100_000,
    "growth_requests": 5,
    "growth_stats_calls": 3,
}
QUICK = {
    **FULL,
    "drain_jobs": 2_000,
    "pickup_jobs": 30,
    "enqueue_many_jobs": 10_000,
    "enqueue_single_seconds": 2.0,
    "flat_finished": 100_000,
    "flat_future": 10_000,
    "flat_jobs": 2_000,
    "memory_jobs": 10_000,
    "memory_max_seconds": 30,
    "flow_jobs": 2_000,
    "flow_keys": 100,
    "flow_backlog": 10_000,
    "flow_free_jobs": 50,
    "scale_rounds": 2,
    "scale_enqueue_seconds": 1.0,
    "lanes_async_jobs": 400,
    "lanes_thread_jobs": 40,
    "lanes_rounds": 1,
    "growth_rows": 200_000,
    "growth_pending": 10_000,
    "growth_requests": 3,
}


def params_for(quick: bool, database: str, growth_rows: int | None = None) -> dict[str, Any]:
    params = dict(QUICK if quick else FULL, db=database, drain_configs=DRAIN_CONFIGS, worker_config=DEFAULT_CONFIG,
                  flow_config=FLOW_CONFIG)
    if growth_rows:
        params["growth_rows"] = growth_rows
    params["growth_pending"] = min(params["growth_pending"], params["growth_rows"] // 10)
    params["growth_prune"] = params["growth_rows"] // 2   # 5,000,000 of 10,000,000
    # Safety nets, not budgets: a scenario past these is killed and reported as an error.
    params["drain_timeout"] = 60 + params["drain_jobs"] / 50
    params["peer_drain_timeout"] = 60 + params["drain_jobs"] / 50
    params["memory_timeout"] = 120 + params["memory_max_seconds"]
    return params


def child_timeout(scenario: str, params: dict[str, Any]) -> float:
    """Upper bound on one scenario child's run time, before the orchestrator kills it."""
    drains = {"drain": len(params["drain_configs"]), "flat": 2, "flow": 3, "peer_drain": 1,
              "scale": SCALE_VARIANTS * params["scale_rounds"], "scale_variant": 1,
              "lanes": 3 + 2 * params["lanes_rounds"]}.get(scenario, 0)
    if scenario == "growth":
        # Three drains of growth_pending jobs; the fill and the pruning at a pessimistic 2,000 rows/s each.
        return 600 + 3 * (60 + params["growth_pending"] / 50) + params["growth_rows"] / 1_000
    return 300 + drains * params["drain_timeout"] + (params["memory_timeout"] if scenario == "memory" else 0)


# -- targets (issue 8), on PostgreSQL ------------------------------------------------------------
DRAIN_MIN_RATE = 7_000
DRAIN_MIN_VS_PEER = 10
PICKUP_MAX_P50_MS = 5
PICKUP_MAX_P95_MS = 15
ENQUEUE_MANY_JOBS, ENQUEUE_MANY_MAX_SECONDS = 100_000, 3.0
ENQUEUE_SINGLE_MIN_RATE = 2_000
FLAT_MAX_RATIO = 1.5
RSS_MAX_GROWTH_PCT = 10

# -- targets of flow control: ratios on every database, pickup on PostgreSQL -----------------
# A limit that never binds costs the drain at most this share of the unlimited rate.
FLOW_NOT_BINDING_MIN_RATIO = 0.9
# Many keys at concurrency 1 drain at least at this share of the unlimited rate.
FLOW_KEYS_MIN_RATIO = 0.5
# A free key's task starts this soon although another key's backlog cannot.
FLOW_PICKUP_MAX_P95_MS = 50

# -- targets of scale-out: ratios to the plain set-up, measured in the same run --------------
SCALE_VARIANTS = 3   # at most: direct, through PgBouncer (PostgreSQL), separate database
# PgBouncer's server connections per database and user: enough for every worker's
# connections, so that the rows measure the pooler's cost, not a starved pool.
SCALE_POOL_SIZE = 20
# The drain through PgBouncer in transaction pooling, against direct connections.
SCALE_POOLED_MIN_RATIO = 0.8
# Drain and single enqueue with the app's tables on a database of their own, against the same database.
SCALE_SEPARATE_MIN_RATIO = 0.9
# async def jobs awaiting 0.5 s, on one worker's event loop (--async-concurrency 200).
LANES_ASYNC_MIN_RATE = 300
# run_jobworker --processes 2 against two run_jobworker side by side.
LANES_PROCESSES_MIN_RATIO = 0.95

# -- target of growth: retention must not starve the drain --------------------------------
# The drain while retention prunes half the filled table, against the filled table's drain.
GROWTH_PRUNING_MIN_RATIO = 0.8
