"""``manage.py jobs list|show|retry|cancel``: tasks from the shell, for operators without admin.

    jobs list [--status failed[,cancelled]] [--queue Q] [--job NAME] [--limit 50] [--json]
    jobs show ID [--json]

A pending task that a full concurrency or rate limit holds back says which
(``waiting: concurrency account:7 (2/2)``), in its status and as ``waiting`` in JSON.
    jobs retry ID [ID ...] [--json]
    jobs cancel ID [ID ...] [--json]
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from django_jobs import task_actions
from django_jobs.management.tables import cell_text, render, shorten
from django_jobs.models import ScheduledTask
from django_jobs.stats import flow

STATUSES = [status.value for status in ScheduledTask.Status]
# Shown last, in sections of their own, by ``show``.
LONG_FIELDS = ("args", "kwargs", "result", "progress", "attempt_log", "error_message", "traceback")
LIST_COLUMNS = ("ID", "JOB", "QUEUE", "STATUS", "PRIORITY", "RETRIES", "NOT BEFORE", "UPDATED", "ERROR")


def statuses(text: str) -> list[str]:
    """``failed,cancelled`` -> ["failed", "cancelled"]; argparse reports a bad name."""
    import argparse

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in STATUSES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown status {', '.join(unknown) or text!r}; choose from {', '.join(STATUSES)}")
    return names


def positive(text: str) -> int:
    import argparse

    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return number


class Command(BaseCommand):
    help = "List, inspect, retry and cancel tasks. Every subcommand takes --json for scripts."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{list,show,retry,cancel}")
        listing = actions.add_parser("list", help="Tasks, newest first.")
        listing.add_argument("--status", type=statuses, help="Only these statuses (comma-separated).")
        listing.add_argument("--queue", help="Only this queue.")
        listing.add_argument("--job", help="Only this job name.")
        listing.add_argument("--limit", type=positive, default=50, help="Most tasks shown (default 50).")
        show = actions.add_parser("show", help="Every field of one task, with its arguments, result and traceback.")
        show.add_argument("task_id", type=int, metavar="ID")
        retry = actions.add_parser("retry", help="Failed or cancelled tasks back to pending, due now.")
        retry.add_argument("task_ids", type=int, nargs="+", metavar="ID")
        cancel = actions.add_parser("cancel", help="Cancel pending tasks.")
        cancel.add_argument("task_ids", type=int, nargs="+", metavar="ID")
        for subparser in (listing, show, retry, cancel):
            subparser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"handle_{options['action']}")(options)

    # -- list ---------------------------------------------------------------------------
    def handle_list(self, options: dict[str, Any]) -> None:
        tasks = list(self.filtered(options).order_by("-id")[: options["limit"]])
        waiting = flow.waiting_reasons(tasks)  # for every task listed at once
        if options["json"]:
            self.write_json([as_json(task, waiting.get(task.pk)) for task in tasks])
            return
        if not tasks:
            self.stdout.write("No tasks match.")
            return
        self.stdout.write(render(LIST_COLUMNS, [list_row(task, waiting.get(task.pk)) for task in tasks]))
        if len(tasks) == options["limit"]:
            self.stdout.write(f"({len(tasks)} newest shown; --limit for more)")

    @staticmethod
    def filtered(options: dict[str, Any]):
        rows = ScheduledTask.objects.all()
        if options["status"]:
            rows = rows.filter(status__in=options["status"])
        if options["queue"]:
            rows = rows.filter(queue=options["queue"])
        if options["job"]:
            rows = rows.filter(identifier=options["job"])
        return rows

    # -- show ---------------------------------------------------------------------------
    def handle_show(self, options: dict[str, Any]) -> None:
        task = self.one(options["task_id"])
        data = as_json(task, flow.waiting_reason(task))
        if options["json"]:
            self.write_json(data)
            return
        waiting = f"; {data['waiting']}" if data["waiting"] else ""
        self.stdout.write(f"Task {task.pk}: {task.identifier} ({task.status}, attempt {task.attempt}{waiting})")
        short = {key: value for key, value in data.items() if key not in LONG_FIELDS and key != "waiting"}
        width = max(map(len, short))
        for key, value in short.items():
            self.stdout.write(f"  {key:<{width}}  {cell_text(value)}")
        for key in LONG_FIELDS:
            self.stdout.write(f"\n{key}:")
            self.stdout.write(indent(section_text(key, data[key])))

    @staticmethod
    def one(task_id: int) -> ScheduledTask:
        try:
            return ScheduledTask.objects.get(pk=task_id)
        except ScheduledTask.DoesNotExist:
            raise CommandError(f"No task with id {task_id}.") from None

    # -- retry / cancel -------------------------------------------------------------------
    def handle_retry(self, options: dict[str, Any]) -> None:
        self.act(task_actions.retry, options)

    def handle_cancel(self, options: dict[str, Any]) -> None:
        self.act(task_actions.cancel, options)

    def act(self, action, options: dict[str, Any]) -> None:
        try:
            report = action(options["task_ids"])
        except task_actions.UnknownTasks as error:
            raise CommandError(str(error)) from None
        if options["json"]:
            self.write_json(report.as_json())
        else:
            self.stdout.write(report.message())
        if report.refused:  # the database said no: scripts must see that it did not happen
            raise CommandError(f"{count_of(report.refused)} not {report.verb}: "
                               + "; ".join(f"{pk}: {reason}" for pk, reason in report.refused.items()) + ".")

    def write_json(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2))


def count_of(ids: dict[int, str]) -> str:
    return "1 task" if len(ids) == 1 else f"{len(ids)} tasks"


def list_row(task: ScheduledTask, waiting: str | None) -> list[Any]:
    status = f"{task.status}, {waiting}" if waiting else task.status
    return [task.pk, task.identifier, task.queue, status, task.priority, f"{task.retry_count}/{task.max_retries}",
            task.scheduled_at, task.updated_at, shorten(task.error_message, 60)]


def as_json(task: ScheduledTask, waiting: str | None) -> dict[str, Any]:
    """Every stored field by its column name; durations in seconds; the limits as workers
    apply them (a limit stored NULL beside its key is the one the job declares:
    ``stats.flow.own_limits``); plus ``attempt`` and ``waiting`` (what holds a pending
    task back: ``stats.flow.waiting_reason``)."""
    data = {field.attname: json_value(getattr(task, field.attname)) for field in task._meta.concrete_fields}
    concurrency, rate = flow.own_limits(task)
    data["concurrency_limit"] = concurrency
    data["rate_limit"], data["rate_period"] = (rate.limit, rate.period) if rate else (None, None)
    data["attempt"] = task.attempt
    data["waiting"] = waiting
    return data


def json_value(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def section_text(key: str, value: Any) -> str:
    if key in ("error_message", "traceback"):
        return value or "-"
    return json.dumps(value, cls=DjangoJSONEncoder, indent=2, sort_keys=True)


def indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
