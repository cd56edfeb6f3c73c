"""``jobs_stats --watch``: the live state of the queue, redrawn every few seconds.

On a terminal the screen is cleared (ANSI) before each frame; piped or redirected,
the frames follow each other (with ``--json``, one JSON object per line).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ..stats import summary
from ..stats.counts import STATUSES
from .tables import local_time, render

CLEAR_SCREEN = "\033[H\033[2J"


def watch(command: BaseCommand, options: dict[str, Any]) -> None:
    """Print a frame every ``--interval`` seconds, ``--iterations`` times (forever if None)."""
    interval, iterations = options["interval"], options["iterations"]
    if interval <= 0:
        raise CommandError(f"--interval must be positive, not {interval}.")
    if iterations is not None and iterations < 1:
        raise CommandError(f"--iterations must be at least 1, not {iterations}.")
    on_terminal = command.stdout.isatty()
    count = 0
    try:
        while True:
            snapshot = summary.watch_frame()
            if options["json"]:
                command.stdout.write(json.dumps(snapshot, sort_keys=True))
            else:
                command.stdout.write((CLEAR_SCREEN if on_terminal else "") + frame(snapshot, interval))
            command.stdout.flush()
            count += 1
            if iterations is not None and count >= iterations:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def frame(snapshot: dict[str, Any], interval: float) -> str:
    now = datetime.fromisoformat(snapshot["time"])
    parts = [
        f"django_jobs at {local_time(now)} (every {interval:g} s; Ctrl-C to stop)",
        render(STATUSES, [[snapshot["statuses"][status] for status in STATUSES]]),
        ("ALL QUEUES PAUSED (pause_all): no claims, no cron fires\n" if snapshot["all_paused"] else "")
        + queues_table(snapshot["queues"]),
        "Last minute: {completed} completed, {failed} with a failed attempt".format(**snapshot["last_minute"]),
        workers_table(snapshot["workers"], now),
    ]
    return "\n\n".join(parts) + "\n"


def queues_table(queues: list[dict[str, Any]]) -> str:
    if not queues:
        return "Queues: nothing pending or running"
    rows = [[row["queue"], row["due"], row["scheduled"], row["running"], seconds(row["waiting_seconds"]),
             "paused" if row["paused"] else ""] for row in queues]
    return render(["QUEUE", "DUE NOW", "SCHEDULED", "RUNNING", "OLDEST DUE WAITING", "PAUSED"], rows)


def workers_table(workers: list[dict[str, Any]], now: datetime) -> str:
    if not workers:
        return "Workers: none live"
    rows = [[worker["worker_id"], worker["queues"], worker["concurrency"],
             seconds((now - datetime.fromisoformat(worker["last_heartbeat"])).total_seconds()) + " ago",
             worker["holding"], progress_text(worker, now)]
            for worker in workers]
    return f"Workers: {len(workers)} live\n" + render(
        ["WORKER", "QUEUES", "THREADS", "LAST HEARTBEAT", "HOLDING", "LAST OUTCOME"], rows)


def progress_text(worker: dict[str, Any], now: datetime) -> str:
    """How long since the worker last wrote an outcome; flagged when it holds tasks that do not finish."""
    if not worker["holding"]:
        return "idle"
    text = seconds((now - datetime.fromisoformat(worker["progressed_at"])).total_seconds()) + " ago"
    return text + "  NOT PROGRESSING" if worker["stalled"] else text


def seconds(value: float) -> str:
    if value < 120:
        return f"{max(value, 0.0):.1f} s"
    return f"{value / 60:.0f} min" if value < 7200 else f"{value / 3600:.1f} h"
