"""``manage.py run_jobworker``: run jobs until stopped (or, with --burst, until idle)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from django_jobs import metrics
from django_jobs.worker import JobWorker, WorkerOptions
from django_jobs.worker.supervisor import Supervisor, WorkerCommand


class Command(BaseCommand):
    help = ("Run django_jobs tasks. SIGTERM/SIGINT: finish running jobs and exit; a second signal: stop at once. "
            "--processes N: N such workers under a supervisor that restarts them.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--queues", help="Comma-separated queues to serve (default: all).")
        parser.add_argument("--concurrency", type=int, help="Jobs run at once, on threads (default: CONCURRENCY setting).")
        parser.add_argument("--async-concurrency", type=int,
                            help="async def jobs run at once on the worker's event loop, beside the threads "
                                 "(default: ASYNC_CONCURRENCY, 100; 0 runs them on the threads).")
        parser.add_argument("--interval", type=float, help="Seconds between polls when idle (default: POLL_INTERVAL).")
        parser.add_argument("--batch-size", type=int, help="Most tasks claimed per query (default: BATCH_SIZE).")
        parser.add_argument("--max-jobs", type=int, help="Exit after claiming this many tasks (recycles memory).")
        parser.add_argument("--max-seconds", type=float, help="Stop claiming after this many seconds, then exit.")
        parser.add_argument("--burst", action="store_true", help="Exit when nothing is due and nothing runs.")
        parser.add_argument("--no-cron", action="store_true", help="Do not fire cron schedules from this worker.")
        parser.add_argument("--worker-id", help="Name of this worker (default: host:pid:random).")
        parser.add_argument("--metrics-port", type=int,
                            help="Serve Prometheus metrics on this port (needs the 'metrics' extra).")
        parser.add_argument("--metrics-address", default="0.0.0.0",
                            help="Address the metrics server listens on (default 0.0.0.0).")
        parser.add_argument("--processes", type=process_count, metavar="N|auto",
                            help="Run N worker processes (auto: one per CPU) under a supervisor that restarts "
                                 "them; each keeps its own --concurrency.")

    def handle(self, *args: Any, **options: Any) -> None:
        attach_console_logging(options["verbosity"])
        if options["processes"] is not None:
            sys.exit(self.supervise(options))
        worker = JobWorker(self.worker_options(options))
        if options["metrics_port"] is not None:
            serve_metrics(options["metrics_port"], options["metrics_address"])
        install_signal_handlers(worker)
        try:
            code = worker.run()
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        sys.exit(code)

    def supervise(self, options: dict[str, Any]) -> int:
        """Run the workers as children of a supervisor; return its exit status."""
        # Bad options are refused here, once, rather than by N children restarted over and over.
        self.worker_options(options)
        if options["metrics_port"] is not None:
            require_metrics()
        command = WorkerCommand(self.create_parser("django-admin", "run_jobworker"), options)
        return Supervisor(options["processes"], command, burst=options["burst"]).run()

    def worker_options(self, options: dict[str, Any]) -> WorkerOptions:
        given = {
            "concurrency": options["concurrency"],
            "async_concurrency": options["async_concurrency"],
            "interval": options["interval"],
            "batch_size": options["batch_size"],
        }
        queues = [name.strip() for name in (options["queues"] or "").split(",") if name.strip()] or None
        try:
            return WorkerOptions(
                queues=queues,
                max_jobs=options["max_jobs"],
                max_seconds=options["max_seconds"],
                burst=options["burst"],
                worker_id=options["worker_id"] or "",
                cron=not options["no_cron"],
                **{key: value for key, value in given.items() if value is not None},
            )
        except ValueError as error:
            raise CommandError(str(error)) from None


def process_count(text: str) -> int:
    """``--processes``: a whole number of at least 1, or ``auto`` (the CPU count)."""
    if text == "auto":
        return os.cpu_count() or 1
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, or auto, not {text!r}")
    return count


def require_metrics() -> None:
    try:
        metrics.require()
    except ImproperlyConfigured as error:
        raise CommandError(str(error)) from None


def serve_metrics(port: int, address: str) -> None:
    try:
        metrics.start_http_server(port, address)
    except ImproperlyConfigured as error:
        raise CommandError(str(error)) from None
    except OSError as error:
        raise CommandError(f"Cannot serve metrics on {address}:{port}: {error}") from None
    logging.getLogger("django_jobs").info("Prometheus metrics on http://%s:%d/metrics", address, port)


def install_signal_handlers(worker: JobWorker) -> None:
    signals_seen = []

    def on_signal(number: int, frame: Any) -> None:
        signals_seen.append(number)
        if len(signals_seen) == 1:
            logging.getLogger("django_jobs").info("Signal %d: finishing running jobs, claiming nothing new", number)
            worker.request_stop()
        else:
            worker.stop_now()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def attach_console_logging(verbosity: int) -> None:
    """Show django_jobs logs on stderr unless the project configured a handler."""
    logger = logging.getLogger("django_jobs")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO if verbosity == 1 else logging.WARNING)
