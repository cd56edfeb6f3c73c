"""Gauges read from the database when Prometheus scrapes: the queue as it is now.

Counters live in each process; how much work waits is a fact of the table, so it
is queried at scrape time (one grouped query over active rows, one over workers)
and is the same whichever process is scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.db import Error as DatabaseError
from django.db import connections, router
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from ..models import ScheduledTask
from ..stats import live

logger = logging.getLogger(__name__)


class QueueDepthCollector:
    """``django_jobs_queue_depth{queue, state=due|scheduled|running}``,
    ``django_jobs_oldest_due_seconds{queue}``, ``django_jobs_queue_paused{queue}``
    and ``django_jobs_workers``."""

    def describe(self) -> list[Any]:
        # Names only: without describe(), registering would run collect() (queries).
        return list(self.families())

    def collect(self) -> Iterator[Any]:
        families = self.families()
        try:
            self.fill(*families)
        except DatabaseError as error:
            logger.warning("Queue depth metrics unavailable: %s", error)
            return
        yield from families

    @staticmethod
    def families() -> tuple[Any, Any, Any, Any]:
        return (
            GaugeMetricFamily("django_jobs_queue_depth", "Active tasks per queue: due now, scheduled later, running.",
                              labels=["queue", "state"]),
            GaugeMetricFamily("django_jobs_oldest_due_seconds", "How long the oldest due task of the queue has waited.",
                              labels=["queue"]),
            GaugeMetricFamily("django_jobs_queue_paused", "1 while the queue is paused.", labels=["queue"]),
            GaugeMetricFamily("django_jobs_workers", "Workers with a live heartbeat."),
        )

    def fill(self, depth: Any, oldest: Any, paused: Any, workers: Any) -> None:
        connection = connections[router.db_for_read(ScheduledTask)]
        # prometheus_client's HTTP server answers each scrape on a new thread: close
        # the connection such a thread opened, or every scrape would leak one.
        opened_here = connection.connection is None
        try:
            now = timezone.now()
            for row in live.queue_depth(now):
                for state in ("due", "scheduled", "running"):
                    depth.add_metric([row.queue, state], getattr(row, state))
                oldest.add_metric([row.queue], row.waiting_seconds(now))
                paused.add_metric([row.queue], 1 if row.paused else 0)
            workers.add_metric([], len(live.live_workers(now)))
        finally:
            if opened_here and not connection.in_atomic_block:
                connection.close()
