"""The django_jobs scenarios. Each runs in a child process with Django set up on one
database, starts real ``run_jobworker`` processes, and returns table rows (dicts).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.test.utils import override_settings

from bench.benchapp import jobs as bench_jobs
from bench.benchapp.jobs import mark, noop
from django_jobs.db import prepared_insert
from django_jobs.models import ScheduledTask

from . import processes, tables
from .measure import latency_summary, rate, steady_window, wait_until

Row = dict[str, Any]


def worker_args(config: dict[str, int]) -> list[str]:
    return ["--concurrency", str(config["concurrency"]), "--batch-size", str(config["batch_size"])]


def config_label(config: dict[str, int], processes_count: int) -> str:
    return f"{processes_count} proc x c{config['concurrency']} b{config['batch_size']}"


def run_burst_workers(config: dict[str, int], processes_count: int, timeout: float, label: str) -> tuple[float, float]:
    """Start burst workers, wait until all exit. Returns (spawn time, last exit time)."""
    started = time.time()
    workers = [processes.django_command("run_jobworker", "--burst", *worker_args(config), log_name=f"{label}-{number}")
               for number in range(processes_count)]
    try:
        exits = processes.wait_all(workers, timeout)
    finally:
        processes.stop(workers)
    return started, max(exits)


def drain_once(jobs: int, config: dict[str, int], params: dict[str, Any], label: str, since_id: int = 0) -> Row:
    """Drain the due no-op tasks in the table (``jobs`` of them, ids above ``since_id``).

    The rate comes from the rows' own times, over the window in which every worker ran
    (measure.steady_window); N / wall time (spawn to exit, start-up included) is noted.
    """
    processes_count = params["processes"]
    spawned, exited = run_burst_workers(config, processes_count, params["drain_timeout"], f"{params['db']}-{label}")
    finished = tables.finished_rows(since_id)
    if not finished:
        raise RuntimeError(f"no task completed; see bench/results/logs/{params['db']}-{label}-*.log")
    counted, first, last = steady_window(finished)
    wall = exited - spawned
    row = {
        "config": config_label(config, processes_count), "jobs": jobs, "seconds": last - first,
        "jobs_per_s": rate(counted, last - first), "wall_s": wall,
        "notes": f"window {counted:,} jobs; N/wall {jobs / wall:,.0f}/s (wall {wall:.1f} s, start-up incl.)",
        "metrics": {"worker_config": config, "processes": processes_count, "jobs_in_window": counted,
                    "completed": len(finished), "jobs_per_worker": jobs_per_worker(finished, processes_count)},
    }
    if len(finished) < jobs:
        row["error"] = f"only {len(finished)} of {jobs} completed; counts by status: {tables.status_counts()}"
    return row


def jobs_per_worker(finished: list[tuple[str, float, float]], processes_count: int) -> list[int]:
    """Tasks completed by each worker, most first; 0 for a worker that completed none
    (a burst worker whose first claim found nothing it could take exits at once)."""
    counts = Counter(worker for worker, _, _ in finished)
    return sorted(counts.values(), reverse=True) + [0] * max(0, processes_count - len(counts))


# -- 1. drain ---------------------------------------------------------------------------
def drain(params: dict[str, Any]) -> list[Row]:
    rows = []
    jobs = params["drain_jobs"]
    for config in params["drain_configs"]:
        tables.truncate()
        tables.enqueue_noops(jobs)
        label = f"drain-c{config['concurrency']}-b{config['batch_size']}"
        row = drain_once(jobs, config, params, label)
        rows.append({"scenario": "drain", **row})
    rows.extend(drain_with_events_off_and_on(jobs, rows, params))
    tables.truncate()
    return rows


def drain_with_events_off_and_on(jobs: int, rows: list[Row], params: dict[str, Any]) -> list[Row]:
    """The best configuration again, with the event trail off and then on, back to back:
    what writing a TaskEvent per state change costs the drain."""
    measured = [row for row in rows if row.get("jobs_per_s")]
    if not measured or not hasattr(tables, "TaskEvent"):
        return []
    config = max(measured, key=lambda row: row["jobs_per_s"])["metrics"]["worker_config"]
    paired = []
    for events in ("0", "1"):
        tables.truncate()
        tables.enqueue_noops(jobs)
        os.environ["DJANGO_JOBS_BENCH_EVENTS"] = events
        try:
            row = drain_once(jobs, config, params, f"drain-events-{'on' if events == '1' else 'off'}")
        finally:
            os.environ.pop("DJANGO_JOBS_BENCH_EVENTS", None)
        paired.append({"scenario": f"drain (events {'on' if events == '1' else 'off'})", **row})
    return paired


# -- 2. pickup latency --------------------------------------------------------------------
def pickup(params: dict[str, Any]) -> list[Row]:
    tables.truncate()
    worker = processes.django_command("run_jobworker", "--interval", str(params["pickup_interval"]),
                                      log_name=f"{params['db']}-pickup")
    try:
        warm_up(worker)
        commits = enqueue_spaced(params["pickup_jobs"], params["pickup_spacing"])
        wait_until(lambda: ScheduledTask.objects.filter(pk__in=commits, status="completed").count() == len(commits),
                   timeout=60 + 3 * params["pickup_interval"], what="the pickup tasks to complete", every=0.1)
    finally:
        processes.stop([worker])
    entered = dict(ScheduledTask.objects.filter(pk__in=commits).values_list("pk", "result"))
    latencies = [(entered[pk] - committed) * 1000 for pk, committed in commits.items()]
    tables.truncate()
    how = "LISTEN/NOTIFY" if connection.vendor == "postgresql" else "polling"
    return [{
        "scenario": "pickup", "config": f"1 idle worker, --interval {params['pickup_interval']:g} ({how})",
        "jobs": len(latencies), **latency_summary(latencies),
        "notes": f"spaced {params['pickup_spacing'] * 1000:.0f} ms",
        "metrics": {"latencies_ms": latencies},
    }]


def warm_up(worker, enqueue_one: Callable[[], Any] = mark.enqueue) -> None:
    """One task (``enqueue_one()``) through the idle worker, so that it (and its LISTEN) is surely up."""
    task = enqueue_one()
    done = ScheduledTask.objects.filter(pk=task.pk, status="completed")
    wait_until(lambda: worker.poll() is not None or done.exists(),
               timeout=60, what="the worker to run a warm-up task", every=0.02)
    if worker.poll() is not None:
        raise RuntimeError("the pickup worker exited; see bench/results/logs/")
    time.sleep(0.5)


def enqueue_spaced(count: int, spacing: float,
                   enqueue_one: Callable[[int], Any] = lambda number: mark.enqueue()) -> dict[int, float]:
    """Enqueue one task at a time (the n-th by ``enqueue_one(n)``); return pk -> time its transaction committed."""
    commits = {}
    for number in range(count):
        with transaction.atomic():
            task = enqueue_one(number)
        commits[task.pk] = time.time()
        time.sleep(spacing)
    return commits


# -- 3. enqueue ---------------------------------------------------------------------------
def enqueue(params: dict[str, Any]) -> list[Row]:
    tables.truncate()
    jobs = params["enqueue_many_jobs"]
    calls = [((), {})] * jobs
    started = time.perf_counter()
    tasks = noop.enqueue_many(calls)
    many_seconds = time.perf_counter() - started  # until the call returns its tasks
    started = time.perf_counter()
    del tasks  # the caller's part, shown apart (Django 6.1: a ModelState.__del__ per task)
    free_seconds = time.perf_counter() - started
    written = ScheduledTask.objects.count()
    tables.truncate()

    count, single_seconds = enqueue_for(params["enqueue_single_seconds"])
    rows = [
        {"scenario": "enqueue_many", "config": "1 call, 1 process", "jobs": jobs, "seconds": many_seconds,
         "jobs_per_s": rate(jobs, many_seconds),
         "notes": f"until it returns; dropping the {jobs:,} tasks it returned took {free_seconds:.2f} s more"},
        {"scenario": "enqueue", "config": "single calls, 1 thread", "jobs": count, "seconds": single_seconds,
         "jobs_per_s": rate(count, single_seconds), "notes": "each call its own transaction: waits for its commit"},
    ]
    threads = params["enqueue_threads"]
    count, threaded_seconds = enqueue_from_threads(threads, params["enqueue_single_seconds"])
    rows.append({"scenario": "enqueue (threads)", "config": f"single calls, {threads} threads of 1 process",
                 "jobs": count, "seconds": threaded_seconds, "jobs_per_s": rate(count, threaded_seconds),
                 "notes": "each call its own transaction, on its thread's connection (a threaded web process)"})
    if connection.vendor == "postgresql":
        # The opt-in: each enqueue commits without waiting for its WAL flush.
        with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "ENQUEUE_SYNCHRONOUS_COMMIT": False}):
            count, single_seconds = enqueue_for(params["enqueue_single_seconds"])
        rows.append({"scenario": "enqueue (async commit)", "config": "ENQUEUE_SYNCHRONOUS_COMMIT=False",
                     "jobs": count, "seconds": single_seconds, "jobs_per_s": rate(count, single_seconds)})
        count, bound_seconds = insert_bound(params["enqueue_single_seconds"])
        bound = rate(count, bound_seconds)
        rows.append({"scenario": "enqueue bound", "config": "its INSERT alone, raw libpq, 1 thread",
                     "jobs": count, "seconds": bound_seconds, "jobs_per_s": bound,
                     "notes": f"the ceiling of one thread: single enqueue reaches {rows[1]['jobs_per_s'] / bound:.0%}"})
    if written != jobs:
        rows[0]["error"] = f"enqueue_many wrote {written} rows, not {jobs}"
    return rows


def enqueue_for(seconds: float, truncate: bool = True) -> tuple[int, float]:
    """``noop.enqueue()`` in a loop (each its own transaction) for ``seconds``: (count, time)."""
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        noop.enqueue()
        count += 1
    elapsed = time.perf_counter() - started
    if truncate:
        tables.truncate()
    return count, elapsed


def enqueue_from_threads(threads: int, seconds: float) -> tuple[int, float]:
    """``enqueue_for`` on ``threads`` threads at once: (calls of all, the longest thread's time)."""
    results: list[tuple[int, float]] = []
    barrier = threading.Barrier(threads)

    def run() -> None:
        try:
            noop.enqueue()  # connect before the clock starts
            barrier.wait()
            results.append(enqueue_for(seconds, truncate=False))
        finally:
            connection.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    tables.truncate()
    if len(results) != threads:
        raise RuntimeError("an enqueueing thread failed")
    return sum(count for count, _ in results), max(elapsed for _, elapsed in results)


def insert_bound(seconds: float) -> tuple[int, float]:
    """What one thread gets from PostgreSQL with nothing of Python around it: the INSERT of a
    single enqueue (its NOTIFY included), prepared, through libpq in a loop: (count, time)."""
    captured: list[tuple[str, Any]] = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):  # a wrapper sends the enqueue down the cursor path: its SQL
        noop.enqueue()
    sql, values = captured[0]
    texts = [prepared_insert.as_text(value) for value in values]
    pgconn = connection.connection.pgconn
    pgconn.prepare(b"bench_insert_bound", prepared_insert.numbered(sql).encode())
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        pgconn.exec_prepared(b"bench_insert_bound", texts)
        count += 1
    elapsed = time.perf_counter() - started
    tables.truncate()
    return count, elapsed


# -- 4. flat cost ---------------------------------------------------------------------------
def flat(params: dict[str, Any]) -> list[Row]:
    jobs, config = params["flat_jobs"], params["worker_config"]
    tables.truncate()
    tables.enqueue_noops(jobs)
    empty = drain_once(jobs, config, params, "flat-empty")

    tables.truncate()
    finished, future = params["flat_finished"], params["flat_future"]
    started = time.perf_counter()
    tables.fill(completed=finished - finished // 10, failed=finished // 10, future=future)
    fill_seconds = time.perf_counter() - started
    filler_top = tables.max_id()
    tables.enqueue_noops(jobs)
    try:
        plan = tables.claim_plan()
    except Exception as error:  # noqa: BLE001 -- the worker's API moved: say so, measure the rest
        plan = f"EXPLAIN failed: {type(error).__name__}: {error}"
    full_scan, sorts = tables.full_scan(plan), tables.sorts_due_rows(plan)
    filled = drain_once(jobs, config, params, "flat-filled", since_id=filler_top)
    left_future = ScheduledTask.objects.filter(status="pending").count()
    tables.truncate()

    ratio = empty["jobs_per_s"] / filled["jobs_per_s"] if empty.get("jobs_per_s") and filled.get("jobs_per_s") else None
    scan_note = {"postgresql": "Seq Scan", "mysql": "full scan (type ALL)", "sqlite": "full SCAN"}[connection.vendor]
    filled_label = f"{finished:,} done + {future:,} future rows"
    empty.update(scenario="flat (empty table)")
    filled.update(
        scenario="flat (filled table)", config=f"{filled['config']}; {filled_label}",
        notes=(f"empty/filled {ratio:.2f}x; " if ratio else "") +
              f"claim plan: {'HAS ' + scan_note if full_scan else 'no ' + scan_note}" +
              ("; sorts every due row (index not walked in claim order)" if sorts else ""),
    )
    filled["metrics"].update(ratio=ratio, full_scan=full_scan, sorts_due_rows=sorts, plan=plan,
                             fill_seconds=fill_seconds, future_rows_left_pending=left_future)
    if left_future != future:
        filled["error"] = f"{future - left_future} future-scheduled rows were run or lost"
    return [empty, filled]


# -- 5. memory ----------------------------------------------------------------------------
def memory(params: dict[str, Any]) -> list[Row]:
    jobs, config = params["memory_jobs"], params["worker_config"]
    tables.truncate()
    tables.enqueue_noops_fast(jobs)
    started = time.time()
    worker = processes.django_command("run_jobworker", "--interval", "1.0", *worker_args(config),
                                      log_name=f"{params['db']}-memory")
    samples: list[tuple[float, int, int]] = []   # (seconds, jobs done, RSS KiB)
    limit = time.monotonic() + params["memory_max_seconds"]
    try:
        while True:
            if worker.poll() is not None:
                raise RuntimeError("the memory worker exited early; see bench/results/logs/")
            left = tables.unfinished()
            rss, peak = processes.rss_kib(worker.pid)
            samples.append((time.time() - started, jobs - left, rss))
            if left == 0 or time.monotonic() > limit:
                break
            # Sample often until the start point; then once a second (counting costs the database too).
            time.sleep(0.1 if samples[-1][1] < params["memory_start_after"] else 1.0)
    finally:
        processes.stop([worker])
    counted, first, last = steady_window(tables.finished_rows())
    tables.truncate()
    start = next((s for s in samples if s[1] >= params["memory_start_after"]), samples[0])
    end = samples[-1]
    growth = (end[2] - start[2]) / start[2] * 100
    cut = f"; time limit {params['memory_max_seconds']:.0f} s reached at {end[1]:,} jobs" if end[1] < jobs else ""
    return [{
        "scenario": "memory", "config": f"1 proc x c{config['concurrency']} b{config['batch_size']}",
        "jobs": end[1], "seconds": last - first, "jobs_per_s": rate(counted, last - first),
        "notes": f"RSS {start[2] / 1024:.1f} MiB at {start[1]:,} jobs -> {end[2] / 1024:.1f} MiB at {end[1]:,} "
                 f"({growth:+.1f}%){cut}",
        "metrics": {"rss_start_kib": start[2], "rss_end_kib": end[2], "rss_peak_kib": peak,
                    "rss_growth_pct": growth, "start_after_jobs": start[1], "jobs_enqueued": jobs,
                    "jobs_done": end[1], "samples": samples},
    }]


# -- 6. flow control ------------------------------------------------------------------------
HOT_KEY = "hot"
HOLDER_ID = "bench-flow-holder"


def flow(params: dict[str, Any]) -> list[Row]:
    """What limits cost the claim. Three drains of the same no-op call, side by side, with
    one worker configuration: unlimited (the baseline), under one key whose limit never
    binds, spread over many keys at concurrency 1. Then the pickup latency of free keys'
    tasks beside a key whose backlog cannot start."""
    jobs, keys, config = params["flow_jobs"], params["flow_keys"], params["flow_config"]
    drains = [
        ("flow: unlimited drain", "flow-plain", bench_jobs.flow_plain, lambda number: "-"),
        ("flow: limit not binding", "flow-roomy", bench_jobs.flow_roomy, lambda number: "-"),
        # Keys in turn, so that each key's tasks are spread over the whole backlog.
        (f"flow: {keys:,} keys x c1", "flow-keys", bench_jobs.flow_keyed, lambda number: f"k{number % keys:05d}"),
    ]
    rows = []
    for scenario, label, job, key_of in drains:
        tables.truncate()
        tables.enqueue_keyed(job, jobs, key_of)
        rows.append({"scenario": scenario, **drain_once(jobs, config, params, label)})
    baseline, not_binding, many_keys = rows
    not_binding["judged_as"], many_keys["judged_as"] = "flow: limit not binding", "flow: keys x c1"
    not_binding["notes"] = f"1 key, concurrency 100,000; {not_binding['notes']}"
    many_keys["notes"] = f"{jobs // keys:,} jobs per key; {many_keys['notes']}"
    for row in (not_binding, many_keys):
        ratio = row["jobs_per_s"] / baseline["jobs_per_s"] if row.get("jobs_per_s") and baseline.get("jobs_per_s") else None
        row["metrics"]["ratio"] = ratio
        if ratio is not None:
            row["notes"] = f"{ratio:.2f}x unlimited; {row['notes']}"
    for row in rows:
        # A claim skips a key that another worker's claim holds locked: with few keys, one
        # worker may end up doing most of the work (or all of it, the other exiting idle).
        shares = " + ".join(f"{count:,}" for count in row["metrics"]["jobs_per_worker"])
        row["notes"] = f"{row['notes']}; per worker {shares}"
    rows.append(free_keys_beside_saturated_key(params))
    tables.truncate()
    return rows


def free_keys_beside_saturated_key(params: dict[str, Any]) -> Row:
    """Pickup latency, measured as ``pickup`` does, of tasks of free keys (one key each,
    concurrency 1) enqueued one by one, while one key's backlog waits behind its limit.

    Another worker (the holder) runs the key's one slot: a sleeping task of the key. It
    serves one job thread, so once that thread has been busy for a second it claims
    nothing more (the worker's prefetch hold): the free tasks go to the measured worker,
    an idle ``run_jobworker --interval 1`` as in ``pickup``. The row fails if the key's
    backlog started or if the holder took a free task."""
    tables.truncate()
    backlog, interval = params["flow_backlog"], params["pickup_interval"]
    holder = processes.django_command("run_jobworker", "--concurrency", "1", "--interval", str(interval),
                                      "--worker-id", HOLDER_ID, log_name=f"{params['db']}-flow-holder")
    worker = None
    try:
        hold = hold_key(holder, HOT_KEY)
        tables.enqueue_keyed(bench_jobs.flow_keyed, backlog, lambda number: HOT_KEY)
        worker = processes.django_command("run_jobworker", "--interval", str(interval),
                                          log_name=f"{params['db']}-flow-pickup")
        warm_up(worker, lambda: bench_jobs.flow_keyed_mark.enqueue("warm-up"))
        commits = enqueue_spaced(params["flow_free_jobs"], params["pickup_spacing"],
                                 lambda number: bench_jobs.flow_keyed_mark.enqueue(f"free-{number:05d}"))
        # Longer than pickup's wait: a slow claim beside the backlog (MariaDB) falls seconds behind.
        wait_until(lambda: ScheduledTask.objects.filter(pk__in=commits, status="completed").count() == len(commits),
                   timeout=180 + 3 * interval, what="the free keys' tasks to complete", every=0.1)
        held = ScheduledTask.objects.filter(pk=hold.pk, status="running").exists()
        started = ScheduledTask.objects.filter(concurrency_key=HOT_KEY).exclude(status="pending").count() - 1
    finally:
        processes.stop([process for process in (worker, holder) if process is not None])
    done = ScheduledTask.objects.filter(pk__in=commits)
    entered = dict(done.values_list("pk", "result"))
    by_holder = done.filter(worker_id=HOLDER_ID).count()
    latencies = [(entered[pk] - committed) * 1000 for pk, committed in commits.items()]
    tables.truncate()
    how = "LISTEN/NOTIFY" if connection.vendor == "postgresql" else "polling"
    row = {
        "scenario": "flow: free keys beside a saturated key",
        "config": f"1 idle worker, --interval {interval:g} ({how})", "jobs": len(latencies),
        **latency_summary(latencies),
        "notes": f"1 key each, c1; beside {backlog:,} pending of key {HOT_KEY!r} (c1, its slot held by another "
                 f"worker); spaced {params['pickup_spacing'] * 1000:.0f} ms",
        "metrics": {"latencies_ms": latencies, "backlog": backlog},
    }
    if not held or started or by_holder:
        row["error"] = (f"the saturated key was not as set up: its holding task running {held}, "
                        f"{started} of its backlog started, {by_holder} free tasks run by the holder")
    return row


def hold_key(holder, key: str) -> ScheduledTask:
    """A task that sleeps in the one slot of ``key``, run by ``holder``; once it runs, and
    the holder's thread has been on it past the prefetch hold, the key is saturated."""
    hold = bench_jobs.flow_keyed_hold.enqueue(key, 3600)
    running = ScheduledTask.objects.filter(pk=hold.pk, status="running")
    wait_until(lambda: holder.poll() is not None or running.exists(),
               timeout=60, what="the holder to run the key's task", every=0.02)
    if holder.poll() is not None:
        raise RuntimeError("the holder worker exited; see bench/results/logs/")
    time.sleep(1.5)  # past the prefetch hold (1 s): a busy one-thread worker claims nothing more
    return hold


SCENARIOS = {"drain": drain, "pickup": pickup, "enqueue": enqueue, "flat": flat, "memory": memory, "flow": flow}
