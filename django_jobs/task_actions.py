"""Operator actions on tasks chosen by id: retry and cancel, with a report of what changed.

Each task goes through its model method (``ScheduledTask.retry`` / ``cancel``), so
the conditional UPDATE and the signals are the ones every other caller gets; a
task that is not in a state the action applies to is skipped and reported with
its status, never forced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .enqueueing import notify_workers
from .models import ScheduledTask

Status = ScheduledTask.Status


class UnknownTasks(LookupError):
    """Some ids name no task; nothing was changed."""

    def __init__(self, missing: list[int]) -> None:
        self.missing = missing
        super().__init__(f"No task with id {', '.join(map(str, missing))}; nothing was changed.")


@dataclass
class ActionReport:
    """Which tasks an action changed, and which it skipped in what status."""

    verb: str
    why: str
    changed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)

    def message(self) -> str:
        """``2 tasks retried: 17, 18. 1 skipped: 19 (completed). Only failed or cancelled ...``"""
        text = f"{count(len(self.changed))} {self.verb}" + (f": {ids(self.changed)}." if self.changed else ".")
        if self.skipped:
            listed = ", ".join(f"{pk} ({status})" for pk, status in self.skipped.items())
            text += f" {len(self.skipped)} skipped: {listed}. {self.why}."
        return text

    def as_json(self) -> dict[str, Any]:
        return {"action": self.verb, "changed": self.changed,
                "skipped": {str(pk): status for pk, status in self.skipped.items()}, "reason_skipped": self.why}


def find(task_ids: Iterable[int]) -> list[ScheduledTask]:
    """The tasks with these ids, in the order given; UnknownTasks if any is missing."""
    wanted = list(dict.fromkeys(task_ids))
    found = ScheduledTask.objects.in_bulk(wanted)
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise UnknownTasks(missing)
    return [found[pk] for pk in wanted]


def retry(task_ids: Iterable[int]) -> ActionReport:
    """Failed or cancelled tasks back to pending, due now, with a fresh set of retries."""
    report = ActionReport("retried", "Only failed or cancelled tasks can be retried")
    for task in find(task_ids):
        apply(report, task, task.retry() if task.status in (Status.FAILED, Status.CANCELLED) else False)
    if report.changed:  # wake idle PostgreSQL workers: these tasks are due now
        notify_workers(set(ScheduledTask.objects.filter(pk__in=report.changed).values_list("queue", flat=True)))
    return report


def cancel(task_ids: Iterable[int]) -> ActionReport:
    """Pending tasks to cancelled; sends ``job_cancelled`` for each one cancelled."""
    report = ActionReport("cancelled", "Only pending tasks can be cancelled")
    for task in find(task_ids):
        apply(report, task, task.cancel() if task.status == Status.PENDING else False)
    return report


def apply(report: ActionReport, task: ScheduledTask, changed: bool) -> None:
    if changed:
        report.changed.append(task.pk)
    else:
        # The status as it is now: the row may have moved on since it was read.
        task.refresh_from_db(fields=["status"])
        report.skipped[task.pk] = str(task.status)


def count(number: int) -> str:
    return f"{number} task" if number == 1 else f"{number} tasks"


def ids(pks: list[int]) -> str:
    return ", ".join(map(str, pks))
