"""django_jobs jobs of the benchmark, autodiscovered like any app's jobs.py."""

import time

from django_jobs import job


@job(name="bench.noop")
def noop() -> None:
    """Does nothing: what is left to measure is the queue."""


@job(name="bench.mark")
def mark() -> float:
    """Return the wall-clock time it was entered (stored as the task's result): pickup latency."""
    return time.time()
