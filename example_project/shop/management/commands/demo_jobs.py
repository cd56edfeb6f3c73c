"""``manage.py demo_jobs``: enqueue the shop's jobs, run a worker until they finish,
and print what happened. Exits non-zero when the outcome is not the expected one,
so the demo doubles as a smoke test (``scripts/demo`` runs it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

import django_jobs
from django_jobs.models import ScheduledTask
from django_jobs.worker import JobWorker, WorkerOptions
from example_project.shop import jobs
from example_project.shop.models import Order

DEMO_JOBS = [
    jobs.send_welcome_email, jobs.generate_report, jobs.cancel_unpaid_order, jobs.flaky_sync, jobs.charge_expired_card,
]
DEMO_EMAIL_DOMAIN = "demo.example"
REPORT_YEAR = 2025
# (month, customer, total, status) of the orders the reports summarise.
SEED_ORDERS = [
    (1, "ann", "120.00", Order.Status.PAID),
    (2, "bob", "35.50", Order.Status.PAID),
    (3, "ann", "89.99", Order.Status.PAID),
    (3, "cy", "15.00", Order.Status.REFUNDED),
    (6, "bob", "240.00", Order.Status.PAID),
    (6, "dee", "60.00", Order.Status.PAID),
    (11, "ann", "310.25", Order.Status.PAID),
    (12, "cy", "42.00", Order.Status.PAID),
]
CANCEL_DELAY = timedelta(seconds=2)
ACTIVE = (ScheduledTask.Status.PENDING, ScheduledTask.Status.RUNNING)
COMPLETED, FAILED = ScheduledTask.Status.COMPLETED, ScheduledTask.Status.FAILED


@dataclass
class Expected:
    """How a demo task should end; ``check`` returns a problem, or None when all is well."""

    status: str
    attempts: int = 1
    check: Callable[[ScheduledTask], str | None] | None = None


class Command(BaseCommand):
    help = (
        "Enqueue the shop's demo jobs (welcome emails, reports, a delayed job, a flaky job "
        "that succeeds on its third attempt, a job that always fails), run a worker in this "
        "process until none of them is pending or running, and print a summary. By default "
        "the tasks and orders of earlier demo runs are deleted first (--no-reset keeps them). "
        "Exits with an error when the outcome is not the expected one. Run migrate first."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--reset", action="store_true", default=True,
            help="Delete the tasks of the shop's jobs and the demo orders of earlier runs first (the default).",
        )
        parser.add_argument("--no-reset", dest="reset", action="store_false", help="Keep earlier demo tasks and orders.")
        parser.add_argument("--timeout", type=float, default=60.0, help="Give up after this many seconds (default 60).")
        parser.add_argument("--concurrency", type=int, default=2, help="Job threads of the worker (default 2).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reset"]:
            self.reset()
        seed_orders()
        self.heading("Enqueueing")
        expected = self.enqueue_demo_tasks()
        self.heading(f"Running a burst worker until all {len(expected)} tasks have finished")
        started = time.monotonic()
        self.run_worker_until_done(list(expected), options["timeout"], options["concurrency"])
        tasks = list(ScheduledTask.objects.filter(pk__in=expected).order_by("pk"))
        self.heading(f"Summary (all done in {time.monotonic() - started:.1f} s)")
        self.print_table(tasks)
        self.print_totals(tasks)
        self.print_statistics()
        self.verdict(tasks, expected)

    # -- setting up ----------------------------------------------------------------------
    def reset(self) -> None:
        names = [demo_job.name for demo_job in DEMO_JOBS]
        tasks, _ = ScheduledTask.objects.filter(identifier__in=names).delete()
        orders, _ = Order.objects.filter(customer_email__endswith=f"@{DEMO_EMAIL_DOMAIN}").delete()
        self.stdout.write(f"Reset: deleted {tasks} task(s) and {orders} order(s) of earlier runs.")

    def enqueue_demo_tasks(self) -> dict[int, Expected]:
        expected: dict[int, Expected] = {}
        for task in enqueue_welcome_emails():
            expected[task.pk] = Expected(COMPLETED)
        self.say("3 welcome emails with enqueue_many (one bulk insert), queue 'mail'")
        expected[enqueue_sales_report().pk] = Expected(COMPLETED, check=check_sales_report)
        self.say(f"sales report for {REPORT_YEAR}, queue 'reports', priority high")
        expected[enqueue_by_name().pk] = Expected(COMPLETED, check=check_customers_report)
        self.say("customers report, enqueued by name with django_jobs.enqueue('shop.generate_report', ...)")
        expected[enqueue_delayed_cancel().pk] = Expected(COMPLETED, check=check_delayed_cancel)
        self.say(f"cancel_unpaid_order with enqueue_in({CANCEL_DELAY.total_seconds():.0f} s)")
        expected[enqueue_flaky_sync().pk] = Expected(COMPLETED, attempts=3, check=check_flaky_sync)
        self.say("flaky_sync: fails on attempts 1 and 2, succeeds on 3 (fixed 1 s retry delay)")
        expected[enqueue_expired_card().pk] = Expected(FAILED, attempts=2)
        self.say("charge_expired_card: always fails, max_retries=1, so 2 attempts then 'failed'")
        rolled_back = enqueue_and_roll_back()
        self.say(f"a welcome email enqueued in a transaction that rolled back: {rolled_back} task(s) stored")
        if rolled_back:
            raise CommandError("An enqueue inside a rolled-back transaction.atomic() left a task behind.")
        return expected

    # -- running -------------------------------------------------------------------------
    def run_worker_until_done(self, ids: list[int], timeout: float, concurrency: int) -> None:
        """Burst passes until no demo task is pending or running.

        A burst worker exits as soon as nothing is *due*; retries and the delayed task
        are due later, so sleep until the next one is due and run another pass.
        """
        deadline = time.monotonic() + timeout
        passes = 0
        while True:
            passes += 1
            remaining = max(0.1, deadline - time.monotonic())
            JobWorker(WorkerOptions(burst=True, concurrency=concurrency, interval=0.2, max_seconds=remaining,
                                    cron=False, worker_id=f"demo-pass-{passes}")).run()
            active = ScheduledTask.objects.filter(pk__in=ids, status__in=ACTIVE)
            if not active.exists():
                self.say(f"every demo task finished after {passes} worker pass(es)")
                return
            if time.monotonic() >= deadline:
                left = ", ".join(f"#{task.pk} {task.identifier} ({task.status})" for task in active)
                raise CommandError(f"Timed out after {timeout:g} s; still not finished: {left}")
            time.sleep(min(seconds_until_next_due(active), max(0.0, deadline - time.monotonic())))

    # -- reporting -----------------------------------------------------------------------
    def print_table(self, tasks: list[ScheduledTask]) -> None:
        rows = [(str(task.pk), task.identifier, task.queue, task.status, str(task.attempt), outcome(task))
                for task in tasks]
        header = ("ID", "JOB", "QUEUE", "STATUS", "ATTEMPTS", "RESULT / ERROR")
        widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header) - 1)]
        for row in [header, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row, widths)]
            self.stdout.write("  ".join([*cells, row[-1]]).rstrip())

    def print_totals(self, tasks: list[ScheduledTask]) -> None:
        ran = sum(1 for task in tasks if task.started_at is not None)
        attempts = sum(task.attempt for task in tasks if task.started_at is not None)
        retried = sum(1 for task in tasks if task.retry_count > 0)
        completed = sum(1 for task in tasks if task.status == COMPLETED)
        failed = sum(1 for task in tasks if task.status == FAILED)
        self.stdout.write("")
        self.stdout.write(
            f"Tasks: {len(tasks)}  ran: {ran} ({attempts} attempts)  retried: {retried}  "
            f"completed: {completed}  failed: {failed}"
        )

    def print_statistics(self) -> None:
        stats = django_jobs.get_statistics()
        rate = "-" if stats["success_rate"] is None else f"{stats['success_rate'] * 100:.1f}%"
        duration = "-" if stats["average_duration_ms"] is None else f"{stats['average_duration_ms']:.1f} ms"
        self.stdout.write(
            f"get_statistics(): completed={stats['completed']} failed={stats['failed']} "
            f"pending={stats['pending']} running={stats['running']}  success rate {rate}  "
            f"average duration {duration}"
        )
        for queue, counts in sorted(stats["by_queue"].items()):
            shown = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
            self.stdout.write(f"  queue {queue}: {shown}")

    def verdict(self, tasks: list[ScheduledTask], expected: dict[int, Expected]) -> None:
        problems = [problem for task in tasks if (problem := unexpected(task, expected[task.pk]))]
        missing = set(expected) - {task.pk for task in tasks}
        problems += [f"task #{pk} disappeared" for pk in sorted(missing)]
        if problems:
            raise CommandError("The demo did not end as expected:\n  " + "\n  ".join(problems))
        self.stdout.write(self.style.SUCCESS(
            "OK: flaky_sync completed on attempt 3, charge_expired_card failed after 2 attempts, "
            "the delayed task waited, and every other task completed."
        ))

    def heading(self, text: str) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(f"== {text}"))

    def say(self, text: str) -> None:
        self.stdout.write(f"  - {text}")


# -- the demo's tasks ----------------------------------------------------------------------
def demo_email(name: str) -> str:
    return f"{name}@{DEMO_EMAIL_DOMAIN}"


def seed_orders() -> None:
    """The orders the reports summarise; created once, kept by --no-reset."""
    if Order.objects.filter(customer_email__endswith=f"@{DEMO_EMAIL_DOMAIN}").exists():
        return
    Order.objects.bulk_create([
        Order(customer_email=demo_email(name), total=Decimal(total), status=status,
              placed_at=datetime(REPORT_YEAR, month, 15, 12, tzinfo=timezone.get_current_timezone()))
        for month, name, total, status in SEED_ORDERS
    ])


def enqueue_welcome_emails() -> list[ScheduledTask]:
    customers = [("ann", "Ann"), ("bob", "Bob"), ("cy", "Cy")]
    return jobs.send_welcome_email.enqueue_many([((demo_email(login),), {"name": name}) for login, name in customers])


def enqueue_sales_report() -> ScheduledTask:
    return jobs.generate_report.using(description=f"Sales {REPORT_YEAR}").enqueue("sales", REPORT_YEAR)


def enqueue_by_name() -> ScheduledTask:
    return django_jobs.enqueue(
        "shop.generate_report", kwargs={"report_type": "customers", "year": REPORT_YEAR},
        description=f"Customers {REPORT_YEAR}",
    )


def enqueue_delayed_cancel() -> ScheduledTask:
    order = Order.objects.create(customer_email=demo_email("eve"), total=Decimal("19.90"), placed_at=timezone.now())
    return jobs.cancel_unpaid_order.enqueue_in(CANCEL_DELAY, order.pk)


def enqueue_flaky_sync() -> ScheduledTask:
    order = Order.objects.filter(customer_email=demo_email("dee")).first()
    return jobs.flaky_sync.enqueue(order.pk)


def enqueue_expired_card() -> ScheduledTask:
    order = Order.objects.create(customer_email=demo_email("fay"), total=Decimal("75.00"), placed_at=timezone.now())
    return jobs.charge_expired_card.enqueue(order.pk)


class SignupFailed(Exception):
    pass


def enqueue_and_roll_back() -> int:
    """Enqueue inside ``transaction.atomic()`` and fail: the task must vanish with it."""
    email = demo_email("rolled-back")
    try:
        with transaction.atomic():
            jobs.send_welcome_email.enqueue(email, name="Nobody")
            raise SignupFailed
    except SignupFailed:
        pass
    return ScheduledTask.objects.filter(identifier=jobs.send_welcome_email.name, args=[email]).count()


# -- checks and formatting --------------------------------------------------------------------
def seconds_until_next_due(active) -> float:
    """Time to wait before the next pass: until the earliest pending task is due (0.05..1 s)."""
    next_due = active.filter(status=ScheduledTask.Status.PENDING).aggregate(at=Min("scheduled_at"))["at"]
    if next_due is None:
        return 0.2
    return min(1.0, max(0.05, (next_due - timezone.now()).total_seconds()))


def unexpected(task: ScheduledTask, expected: Expected) -> str | None:
    label = f"task #{task.pk} {task.identifier}"
    if task.status != expected.status:
        return f"{label}: status {task.status}, expected {expected.status} ({task.error_message or 'no error'})"
    if task.attempt != expected.attempts:
        return f"{label}: {task.attempt} attempt(s), expected {expected.attempts}"
    return expected.check(task) if expected.check else None


def check_sales_report(task: ScheduledTask) -> str | None:
    paid = [Decimal(total) for _, _, total, status in SEED_ORDERS if status == Order.Status.PAID]
    if task.result.get("revenue") != str(sum(paid)) or task.result.get("paid_orders") != len(paid):
        return f"sales report is wrong: {task.result}"
    return None


def check_customers_report(task: ScheduledTask) -> str | None:
    if task.result.get("top_customer") != demo_email("ann"):
        return f"customers report is wrong: {task.result}"
    return None


def check_delayed_cancel(task: ScheduledTask) -> str | None:
    waited = task.started_at - task.created_at
    if waited < CANCEL_DELAY:
        return f"delayed task started after {waited.total_seconds():.2f} s, before its {CANCEL_DELAY} delay"
    if task.result != "cancelled":
        return f"delayed task returned {task.result!r}, expected 'cancelled'"
    return None


def check_flaky_sync(task: ScheduledTask) -> str | None:
    order_id = task.args[0]
    if not Order.objects.filter(pk=order_id, synced_at__isnull=False).exists():
        return f"order {order_id} was not marked synced"
    return None


def outcome(task: ScheduledTask, width: int = 72) -> str:
    if task.status == FAILED or (task.status != COMPLETED and task.error_message):
        text = task.error_message
    elif task.result is None:
        text = "-"
    else:
        text = json.dumps(task.result)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."
