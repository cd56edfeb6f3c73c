"""Small measuring helpers shared by the scenarios: percentiles, polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(latencies_ms, 0.50),
        "p95_ms": percentile(latencies_ms, 0.95),
        "p99_ms": percentile(latencies_ms, 0.99),
        "min_ms": min(latencies_ms),
        "max_ms": max(latencies_ms),
        "mean_ms": sum(latencies_ms) / len(latencies_ms),
    }


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def rate(jobs: int, seconds: float) -> float | None:
    return jobs / seconds if seconds > 0 else None


def steady_window(rows: list[tuple[str, float, float]]) -> tuple[int, float, float]:
    """(jobs, start, end) of the window in which every worker was running.

    ``rows``: (worker id, claimed at, finished at) of each finished task, Unix times.
    Workers start a few hundred milliseconds apart; timing from the first claim would
    credit the pool with time when only one worker ran. The window starts at the last
    worker's first claim and ends at the last completion; it counts the tasks claimed
    within it (tasks claimed just before it and finished inside are left out: the rate
    errs low, by at most a batch per worker).
    """
    first_claims: dict[str, float] = {}
    for worker, claimed, _ in rows:
        first_claims[worker] = min(claimed, first_claims.get(worker, claimed))
    start = max(first_claims.values())
    end = max(finished for _, _, finished in rows)
    return sum(1 for _, claimed, _ in rows if claimed >= start), start, end
