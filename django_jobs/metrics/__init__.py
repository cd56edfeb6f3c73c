"""Prometheus metrics, when ``prometheus-client`` is installed (extra ``metrics``).

Without it this module still imports and every hook does nothing. With it:

- counters ``django_jobs_enqueued_total``, ``django_jobs_started_total``,
  ``django_jobs_completed_total``, ``django_jobs_failed_total`` (tasks that failed
  for good) and ``django_jobs_retried_total`` (failed attempts put back for a
  retry), each labelled ``job`` and ``queue``, counted by the process that did it;
- a histogram ``django_jobs_duration_seconds`` (``job``, ``queue``) of attempts;
- gauges read from the database at scrape time (see ``collector.py``).

Exposed by ``run_jobworker --metrics-port PORT`` and by the view in ``views.py``.
The hooks run in the worker's hot path: label children are cached, outcomes
recorded together are counted per (job, queue, status) group, never per query.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

prometheus_client: Any
try:
    import prometheus_client
except ImportError:  # the optional extra is not installed: metrics are off
    prometheus_client = None

if TYPE_CHECKING:
    from ..execution.outcome import Outcome
    from ..models import ScheduledTask

AVAILABLE = prometheus_client is not None
LABELS = ("job", "queue")
# Seconds: from sub-millisecond no-ops to jobs of several minutes.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class LabelledCounter:
    """A counter whose children are cached per label values: ``labels()`` checks and
    converts the values and takes a lock on every call, a dict lookup does not."""

    def __init__(self, name: str, documentation: str) -> None:
        self.metric: Any = prometheus_client.Counter(name, documentation, LABELS)
        self.children: dict[tuple[str, str], Any] = {}

    def inc(self, job: str, queue: str, amount: int = 1) -> None:
        key = (job, queue)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self.metric.labels(job, queue)
        child.inc(amount)


class LabelledHistogram(LabelledCounter):
    def __init__(self, name: str, documentation: str) -> None:
        self.metric = prometheus_client.Histogram(name, documentation, LABELS, buckets=DURATION_BUCKETS)
        self.children = {}

    def observe(self, job: str, queue: str, value: float) -> None:
        key = (job, queue)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self.metric.labels(job, queue)
        child.observe(value)


if AVAILABLE:
    ENQUEUED = LabelledCounter("django_jobs_enqueued", "Tasks enqueued (counted on commit).")
    STARTED = LabelledCounter("django_jobs_started", "Attempts started.")
    COMPLETED = LabelledCounter("django_jobs_completed", "Tasks completed.")
    FAILED = LabelledCounter("django_jobs_failed", "Tasks failed for good (no retries left, or not retryable).")
    RETRIED = LabelledCounter("django_jobs_retried", "Failed attempts put back to pending for a retry.")
    DURATION = LabelledHistogram("django_jobs_duration_seconds", "Run time of attempts, in seconds.")
    OUTCOME_COUNTERS = {"completed": COMPLETED, "failed": FAILED, "pending": RETRIED}


def count_enqueued(tasks: Iterable[ScheduledTask]) -> None:
    """Count newly inserted tasks, one increment per (job, queue)."""
    if not AVAILABLE:
        return
    for (job, queue), count in Tally((task.identifier, task.queue) for task in tasks).items():
        ENQUEUED.inc(job, queue, count)


def count_started(task: ScheduledTask) -> None:
    if AVAILABLE:
        STARTED.inc(task.identifier, task.queue)


def count_recorded(items: list[tuple[ScheduledTask, Outcome]]) -> None:
    """Count outcomes that were written, by the status they left the task in.

    Counters move once per (job, queue, status) of the batch; each duration is
    observed (a histogram has no bulk update).
    """
    if not AVAILABLE or not items:
        return
    groups: Tally[tuple[str, str, str]] = Tally()
    for task, outcome in items:
        groups[task.identifier, task.queue, task.status] += 1
        if outcome.duration is not None:
            DURATION.observe(task.identifier, task.queue, outcome.duration)
    for (job, queue, status), count in groups.items():
        counter = OUTCOME_COUNTERS.get(status)  # a Status member hashes as its value
        if counter is not None:
            counter.inc(job, queue, count)


# -- exposure -------------------------------------------------------------------------

_registered: set[int] = set()
_register_lock = threading.Lock()


def require() -> None:
    """Raise ImproperlyConfigured with the install command if prometheus-client is missing."""
    if not AVAILABLE:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "Metrics need prometheus-client: pip install 'django-dbjobs[metrics]' (or prometheus-client)."
        )


def register_collector(registry: Any = None) -> None:
    """Add the queue-depth gauges (read from the database at each scrape) to ``registry``.

    The default registry when None. Idempotent; call it if you expose the default
    registry through your own endpoint (django-prometheus, ...).
    """
    require()
    # Only now: the collector imports prometheus-client's types, which require() checked.
    from .collector import QueueDepthCollector

    registry = registry or prometheus_client.REGISTRY
    with _register_lock:
        if id(registry) not in _registered:
            registry.register(QueueDepthCollector())
            _registered.add(id(registry))


def start_http_server(port: int, address: str = "0.0.0.0") -> Any:
    """Serve the default registry (with the queue-depth gauges) on ``address:port``
    from a daemon thread; returns the server. Used by ``run_jobworker --metrics-port``."""
    register_collector()
    server, _thread = prometheus_client.start_http_server(port, addr=address)
    return server
