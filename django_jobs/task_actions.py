"""Operator actions on tasks chosen by id: retry and cancel, with a report of what changed.

Each task goes through its model method (``ScheduledTask.retry`` / ``cancel``), so
the conditional UPDATE, the signals and the wake-up of workers are the ones every
other caller gets; a task that is not in a state the action applies to is skipped
and reported with its status, never forced. A retry the database refuses because
another active task holds the key is reported as refused, with that task.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .exceptions import DjangoJobsError, UniqueKeyConflict
from .models import ScheduledTask

Status = ScheduledTask.Status


class UnknownTasks(DjangoJobsError, LookupError):
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
    # Eligible, but the database refused: task id -> why (the unique key's holder).
    refused: dict[int, str] = field(default_factory=dict)

    def message(self) -> str:
        """``2 tasks retried: 17, 18. 1 skipped: 19 (completed). Only failed or cancelled ...``"""
        text = f"{count(len(self.changed))} {self.verb}" + (f": {ids(self.changed)}." if self.changed else ".")
        if self.skipped:
            listed = ", ".join(f"{pk} ({status})" for pk, status in self.skipped.items())
            text += f" {len(self.skipped)} skipped: {listed}. {self.why}."
        if self.refused:
            listed = "; ".join(f"{pk} ({reason})" for pk, reason in self.refused.items())
            text += f" {len(self.refused)} refused: {listed}. Nothing was changed for them."
        return text

    def as_json(self) -> dict[str, Any]:
        data = {"action": self.verb, "changed": self.changed,
                "skipped": {str(pk): status for pk, status in self.skipped.items()}, "reason_skipped": self.why}
        if self.refused:  # only when there are some: the shape scripts know stays as it was
            data["refused"] = {str(pk): reason for pk, reason in self.refused.items()}
        return data


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
    return retry_each(find(task_ids))


def retry_each(tasks: Iterable[ScheduledTask]) -> ActionReport:
    """``retry`` of tasks already read (the admin's selection), one at a time: a task whose
    unique key is held is refused without holding back the others."""
    report = ActionReport("retried", "Only failed or cancelled tasks can be retried")
    for task in tasks:
        try:
            apply(report, task, task.retry() if task.status in (Status.FAILED, Status.CANCELLED) else False)
        except UniqueKeyConflict as conflict:
            report.refused[task.pk] = conflict.reason
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
