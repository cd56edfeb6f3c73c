"""``manage.py jobs_stats [--queue Q] [--json]``: what the queue holds and how it went.

``--watch [--interval 2] [--iterations N]``: a live view, redrawn every interval.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from django_jobs import get_statistics
from django_jobs.management.watch import watch
from django_jobs.stats.counts import STATUSES


class Command(BaseCommand):
    help = "Print task counts by status, success rate, average duration, and per-job / per-queue breakdowns."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--queue", help="Only this queue.")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
        parser.add_argument("--watch", action="store_true",
                            help="Live view: counts, queues, workers, last minute; redrawn until Ctrl-C.")
        parser.add_argument("--interval", type=float, default=2.0, help="Seconds between refreshes (default 2).")
        parser.add_argument("--iterations", type=int, help="Stop after this many refreshes.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["watch"]:
            watch(self, options)
            return
        stats = get_statistics(options["queue"])
        if options["json"]:
            self.stdout.write(json.dumps(stats, indent=2, sort_keys=True))
            return
        self.stdout.write(self.summary(stats))
        for title, key in (("By job", "by_job"), ("By queue", "by_queue")):
            if stats[key]:
                self.stdout.write("")
                self.stdout.write(table(title, stats[key]))

    @staticmethod
    def summary(stats: dict[str, Any]) -> str:
        rate = "-" if stats["success_rate"] is None else f"{stats['success_rate'] * 100:.1f}%"
        duration = "-" if stats["average_duration_ms"] is None else f"{stats['average_duration_ms']:.1f} ms"
        counts = "  ".join(f"{status}={stats[status]}" for status in STATUSES)
        return f"Tasks: {stats['total']}  {counts}\nSuccess rate: {rate}  Average duration: {duration}"


def table(title: str, breakdown: dict[str, dict[str, int]]) -> str:
    width = max(len(title), *(len(name) for name in breakdown))
    header = f"{title:<{width}}  " + "  ".join(f"{status:>9}" for status in STATUSES)
    lines = [header, "-" * len(header)]
    for name in sorted(breakdown):
        counts = breakdown[name]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{counts[status]:>9}" for status in STATUSES))
    return "\n".join(lines)
