"""Rows -> the one table on stdout and results.json: adds the best drain, the ratio to
the peer and the verdict against each target of issue 8 (PostgreSQL rows only), of
flow control (its ratios on every database, its pickup on PostgreSQL) and of scale-out
(its ratios to the plain set-up).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import plan

COLUMNS = [
    ("scenario", "scenario"), ("database", "database"), ("config", "config"), ("jobs", "jobs"),
    ("seconds", "seconds"), ("jobs_per_s", "jobs/s"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"), ("vs_peer", "vs peer"), ("ratio", "ratio"), ("target", "target"), ("met", "met?"),
    ("notes", "notes"),
]


def find(rows: list[dict], scenario: str, database: str = "postgres") -> dict | None:
    return next((row for row in rows if row["scenario"] == scenario and row["database"] == database
                 and "error" not in row), None)


def add_best_drains(rows: list[dict]) -> list[dict]:
    """After each database's drain rows, a "drain (best)" row: the configuration to quote."""
    out: list[dict] = []
    for index, row in enumerate(rows):
        out.append(row)
        following = rows[index + 1] if index + 1 < len(rows) else None
        last_drain = row["scenario"] == "drain" and not (following and following["scenario"] == "drain"
                                                         and following["database"] == row["database"])
        if last_drain:
            drains = [r for r in rows if r["scenario"] == "drain" and r["database"] == row["database"]
                      and r.get("jobs_per_s")]
            if drains:
                best = max(drains, key=lambda r: r["jobs_per_s"])
                config = best["metrics"]["worker_config"]
                out.append({**best, "scenario": "drain (best)", "metrics": {"worker_config": config}})
    return out


def judge(rows: list[dict], quick: bool = False) -> list[dict]:
    """Fill vs_peer, target and met on the PostgreSQL rows that have a target, and on the
    rows of every database whose target is a ratio measured within that database's run.

    A --quick run times windows of a fraction of a second: its verdicts say so.
    """
    rows = add_best_drains(rows)
    peer_drain, peer_pickup = find(rows, "peer drain"), find(rows, "peer pickup")
    for row in rows:
        if "error" in row:
            continue
        # A row whose name carries its counts says under which name it is judged.
        judged_as = row.get("judged_as", row["scenario"])
        verdict = EVERY_DATABASE_JUDGES.get(judged_as)
        if verdict is None and row["database"] == "postgres":
            verdict = JUDGES.get(judged_as)
        if verdict:
            row["target"], row["met"] = verdict(row, peer_drain, peer_pickup)
            if quick:
                row["met"] += " (quick)"
    return rows


def yes(condition: bool | None) -> str:
    return "n/a" if condition is None else "yes" if condition else "NO"


def judge_drain(row, peer_drain, peer_pickup):
    ratio = row["jobs_per_s"] / peer_drain["jobs_per_s"] if peer_drain and peer_drain.get("jobs_per_s") else None
    row["vs_peer"] = ratio
    fast = row["jobs_per_s"] >= plan.DRAIN_MIN_RATE
    target = f">= {plan.DRAIN_MIN_RATE:,}/s and >= {plan.DRAIN_MIN_VS_PEER}x peer"
    if ratio is None:
        return target, "NO" if not fast else "n/a (no peer)"
    return target, yes(fast and ratio >= plan.DRAIN_MIN_VS_PEER)


def judge_pickup(row, peer_drain, peer_pickup):
    if peer_pickup and row["p50_ms"] > 0:
        row["vs_peer"] = peer_pickup["p50_ms"] / row["p50_ms"]
    target = f"p50 <= {plan.PICKUP_MAX_P50_MS} ms, p95 <= {plan.PICKUP_MAX_P95_MS} ms"
    return target, yes(row["p50_ms"] <= plan.PICKUP_MAX_P50_MS and row["p95_ms"] <= plan.PICKUP_MAX_P95_MS)


def judge_enqueue_many(row, peer_drain, peer_pickup):
    target = f"{plan.ENQUEUE_MANY_JOBS // 1000}k < {plan.ENQUEUE_MANY_MAX_SECONDS:g} s"
    if row["jobs"] >= plan.ENQUEUE_MANY_JOBS:
        return target, yes(row["seconds"] < plan.ENQUEUE_MANY_MAX_SECONDS * row["jobs"] / plan.ENQUEUE_MANY_JOBS)
    # A --quick run enqueues fewer: judge the rate the target implies, and say so.
    needed = plan.ENQUEUE_MANY_JOBS / plan.ENQUEUE_MANY_MAX_SECONDS
    return target + " (as rate)", yes(row["jobs_per_s"] > needed)


def judge_enqueue(row, peer_drain, peer_pickup):
    return f">= {plan.ENQUEUE_SINGLE_MIN_RATE:,}/s", yes(row["jobs_per_s"] >= plan.ENQUEUE_SINGLE_MIN_RATE)


def judge_enqueue_threads(row, peer_drain, peer_pickup):
    target, met = judge_enqueue(row, peer_drain, peer_pickup)
    return target + " (1 process)", met


def judge_enqueue_async(row, peer_drain, peer_pickup):
    target, met = judge_enqueue(row, peer_drain, peer_pickup)
    return target + " (opt-in)", met


def judge_flat(row, peer_drain, peer_pickup):
    ratio, scan = row["metrics"].get("ratio"), row["metrics"].get("full_scan")
    target = f"empty/filled <= {plan.FLAT_MAX_RATIO}, no Seq Scan"
    return target, yes(None if ratio is None else ratio <= plan.FLAT_MAX_RATIO and not scan)


def judge_memory(row, peer_drain, peer_pickup):
    return f"RSS growth <= {plan.RSS_MAX_GROWTH_PCT}%", yes(row["metrics"]["rss_growth_pct"] <= plan.RSS_MAX_GROWTH_PCT)


def judge_flow_ratio(minimum: float):
    """A flow drain against the scenario's unlimited drain on the same database, same run."""
    def verdict(row, peer_drain, peer_pickup):
        ratio = row["metrics"].get("ratio")
        return f">= {minimum:.0%} of unlimited", yes(None if ratio is None else ratio >= minimum)
    return verdict


def judge_scale_ratio(minimum: float, baseline: str):
    """A scale-out variant's median rate against the plain set-up's, same database, same run."""
    def verdict(row, peer_drain, peer_pickup):
        ratio = row.get("ratio")
        return f">= {minimum:.2f}x {baseline}", yes(None if ratio is None else ratio >= minimum)
    return verdict


def judge_lanes_async(row, peer_drain, peer_pickup):
    return f">= {plan.LANES_ASYNC_MIN_RATE}/s", yes(row["jobs_per_s"] >= plan.LANES_ASYNC_MIN_RATE)


def judge_flow_pickup(row, peer_drain, peer_pickup):
    return f"p95 < {plan.FLOW_PICKUP_MAX_P95_MS} ms", yes(row["p95_ms"] < plan.FLOW_PICKUP_MAX_P95_MS)


JUDGES = {
    "drain (best)": judge_drain, "pickup": judge_pickup, "enqueue_many": judge_enqueue_many,
    "enqueue": judge_enqueue, "enqueue (threads)": judge_enqueue_threads, "enqueue (async commit)": judge_enqueue_async, "flat (filled table)": judge_flat, "memory": judge_memory,
    # Polling elsewhere: a latency of about half the interval, as the pickup rows show.
    "flow: free keys beside a saturated key": judge_flow_pickup,
}
# Ratios of two rows measured side by side on one database: judged on all three.
EVERY_DATABASE_JUDGES = {
    "flow: limit not binding": judge_flow_ratio(plan.FLOW_NOT_BINDING_MIN_RATIO),
    "flow: keys x c1": judge_flow_ratio(plan.FLOW_KEYS_MIN_RATIO),
    # Single enqueue through PgBouncer has no target: it gives up its prepared statement.
    "scale: drain (pgbouncer)": judge_scale_ratio(plan.SCALE_POOLED_MIN_RATIO, "direct"),
    "scale: drain (separate)": judge_scale_ratio(plan.SCALE_SEPARATE_MIN_RATIO, "same db"),
    "scale: enqueue (separate)": judge_scale_ratio(plan.SCALE_SEPARATE_MIN_RATIO, "same db"),
    "lanes: async on the event loop": judge_lanes_async,
    "lanes: --processes 2": judge_scale_ratio(plan.LANES_PROCESSES_MIN_RATIO, "two run_jobworker"),
    "growth: drain while pruning": judge_scale_ratio(plan.GROWTH_PRUNING_MIN_RATIO, "without"),
}


# -- output -------------------------------------------------------------------------------
def cell(key: str, row: dict) -> str:
    if key == "notes" and "error" in row:
        return f"ERROR: {row['error']}"
    value = row.get(key)
    if value is None or value == "":
        return "-"
    if key == "jobs_per_s" or key == "jobs":
        return f"{value:,.0f}"
    if key == "seconds":
        return f"{value:.2f}"
    if key.endswith("_ms"):
        return f"{value:.1f}"
    if key == "vs_peer":
        return f"{value:.1f}x"
    if key == "ratio":
        return f"{value:.2f}x"
    return str(value)


def table(rows: list[dict]) -> str:
    cells = [[title for _, title in COLUMNS]] + [[cell(key, row) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    numeric = {"jobs", "seconds", "jobs_per_s", "p50_ms", "p95_ms", "p99_ms", "vs_peer", "ratio"}

    def render(line: list[str]) -> str:
        parts = [text.rjust(width) if key in numeric else text.ljust(width)
                 for (key, _), text, width in zip(COLUMNS, line, widths, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(cells[0]), rule, *(render(line) for line in cells[1:])])


def write_json(path: Path, meta: dict[str, Any], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n")
