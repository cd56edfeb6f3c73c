"""django_jobs jobs of the benchmark, autodiscovered like any app's jobs.py."""

import asyncio
import time

from django_jobs import job


@job(name="bench.noop")
def noop() -> None:
    """Does nothing: what is left to measure is the queue."""


@job(name="bench.mark")
def mark() -> float:
    """Return the wall-clock time it was entered (stored as the task's result): pickup latency."""
    return time.time()


# -- the flow scenario: the same no-op, unlimited and under limits --------------------------
# Each takes a ``key`` argument, so that every drain of the scenario enqueues the same
# call and only the limit differs.
@job(name="bench.flow.plain")
def flow_plain(key: str) -> None:
    """Unlimited (``key`` unused): the scenario's own baseline."""


@job(name="bench.flow.roomy", concurrency=100_000)
def flow_roomy(key: str) -> None:
    """One key for every task (no concurrency_key: the job's name), 100,000 at once: never binds."""


@job(name="bench.flow.keyed", concurrency=1, concurrency_key="{key}")
def flow_keyed(key: str) -> None:
    """One at a time per ``key``."""


@job(name="bench.flow.keyed_mark", concurrency=1, concurrency_key="{key}")
def flow_keyed_mark(key: str) -> float:
    """``mark`` under a key of its own: the time it was entered, for pickup latency."""
    return time.time()


@job(name="bench.flow.keyed_hold", concurrency=1, concurrency_key="{key}")
def flow_keyed_hold(key: str, seconds: float) -> None:
    """Holds the one slot of ``key`` for ``seconds``: its backlog cannot start meanwhile."""
    time.sleep(seconds)


# -- the lanes scenario: I/O-bound jobs, async and sync --------------------------------------
@job(name="bench.sleep_async")
async def sleep_async(seconds: float) -> None:
    """Awaits ``seconds`` (an HTTP call's wait, say): on the async lane many wait at once."""
    await asyncio.sleep(seconds)


@job(name="bench.sleep_sync")
def sleep_sync(seconds: float) -> None:
    """The same wait in a sync function: it holds its job thread throughout."""
    time.sleep(seconds)
