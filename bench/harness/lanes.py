"""The ``lanes`` scenario: how a worker process runs jobs, side by side in one run.

- ``async``: ``async def`` jobs that await 0.5 s each. On the async lane (one worker,
  ``--concurrency 1 --async-concurrency 200``) against the same awaits on job threads
  (``--concurrency 4 --async-concurrency 0``: each job holds a thread through its
  await, through ``async_to_sync``) and against the same jobs as sync functions
  sleeping on 4 threads. The thread rows drain fewer jobs (``lanes_thread_jobs``): at
  8 jobs/s the lane's count would take minutes, and their rate does not depend on it.
- ``processes``: ``run_jobworker --processes 2`` (one supervisor, two children) against
  two ``run_jobworker`` started side by side, draining the same no-op jobs, taking turns
  for ``lanes_rounds`` rounds; the median of each is shown with its ratio.

Rates come from the rows' own times, as ``drain`` measures them (measure.steady_window).
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.benchapp.jobs import sleep_async, sleep_sync

from . import processes, tables
from .measure import rate, steady_window
from .scenarios import config_label, worker_args

Row = dict[str, Any]
AWAIT_SECONDS = 0.5


def burst(commands: list[list[str]], params: dict[str, Any], label: str, jobs: int) -> Row:
    """Run ``run_jobworker --burst`` once per argument list until all exit; the drain's
    rate over the window in which every worker ran, from the rows' times."""
    started = [processes.django_command("run_jobworker", "--burst", "--no-cron", *arguments,
                                        log_name=f"{params['db']}-{label}-{number}")
               for number, arguments in enumerate(commands)]
    try:
        processes.wait_all(started, params["drain_timeout"])
    finally:
        processes.stop(started)
    finished = tables.finished_rows()
    if not finished:
        raise RuntimeError(f"no task completed; see bench/results/logs/{params['db']}-{label}-*.log")
    counted, first, last = steady_window(finished)
    row: Row = {"jobs": jobs, "seconds": last - first, "jobs_per_s": rate(counted, last - first),
                "metrics": {"completed": len(finished), "jobs_in_window": counted,
                            "workers": len({worker for worker, _, _ in finished})}}
    if len(finished) < jobs:
        row["error"] = f"only {len(finished)} of {jobs} completed; counts by status: {tables.status_counts()}"
    return row


# -- async def jobs: the lane against threads ---------------------------------------------
def async_jobs(params: dict[str, Any]) -> list[Row]:
    lane_jobs, thread_jobs = params["lanes_async_jobs"], params["lanes_thread_jobs"]
    variants = [
        ("async: on the event loop", sleep_async, lane_jobs, ["--concurrency", "1", "--async-concurrency", "200"],
         "1 proc x c1, async-concurrency 200"),
        ("async: on threads", sleep_async, thread_jobs, ["--concurrency", "4", "--async-concurrency", "0"],
         "1 proc x c4, async-concurrency 0 (async_to_sync)"),
        ("async: sync jobs on threads", sleep_sync, thread_jobs, ["--concurrency", "4"], "1 proc x c4, time.sleep"),
    ]
    rows = []
    for name, job, jobs, arguments, config in variants:
        tables.truncate()
        job.enqueue_many([((AWAIT_SECONDS,), {})] * jobs)
        row = burst([arguments], params, name.replace(" ", "-").replace(":", ""), jobs)
        rows.append({"scenario": name, "config": config, **row,
                     "notes": f"{jobs:,} jobs awaiting {AWAIT_SECONDS} s each"})
    tables.truncate()
    baseline = rows[0]["jobs_per_s"]
    for row in rows[1:]:
        if row.get("jobs_per_s") and baseline:
            row["notes"] += f"; the event loop's rate is {baseline / row['jobs_per_s']:.0f}x this"
    rows[0]["judged_as"] = "lanes: async on the event loop"
    return rows


# -- --processes 2 against two run_jobworker ----------------------------------------------
def supervised(params: dict[str, Any]) -> list[Row]:
    config, jobs = params["worker_config"], params["drain_jobs"]
    variants = {"two run_jobworker": [worker_args(config)] * 2,
                "--processes 2": [[*worker_args(config), "--processes", "2"]]}
    rounds: dict[str, list[Row]] = {name: [] for name in variants}
    for number in range(params["lanes_rounds"]):
        for name, commands in variants.items():
            tables.truncate()
            tables.enqueue_noops(jobs)
            rounds[name].append(burst(commands, params, f"processes-{len(commands)}-cmd-{number}", jobs))
    tables.truncate()
    return side_by_side(rounds, config)


def side_by_side(rounds: dict[str, list[Row]], config: dict[str, int]) -> list[Row]:
    medians = {name: statistics.median(row["jobs_per_s"] or 0 for row in runs) for name, runs in rounds.items()}
    baseline = medians["two run_jobworker"]
    rows = []
    for name, runs in rounds.items():
        rates = ", ".join(f"{row['jobs_per_s']:,.0f}" for row in runs)
        median_run = min(runs, key=lambda row: abs((row["jobs_per_s"] or 0) - medians[name]))
        row = {**median_run, "scenario": f"processes: {name}", "config": f"{config_label(config, 2)}",
               "jobs_per_s": medians[name], "notes": f"median of {len(runs)} rounds ({rates}/s)"}
        if name != "two run_jobworker":
            row["ratio"] = medians[name] / baseline if baseline else None
            row["judged_as"] = "lanes: --processes 2"
        rows.append(row)
    return rows


def lanes(params: dict[str, Any]) -> list[Row]:
    return async_jobs(params) + supervised(params)


SCENARIOS = {"lanes": lanes}
