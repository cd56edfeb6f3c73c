"""Log lines about one task, carrying its id, job, queue and attempt."""

from __future__ import annotations

import logging
from typing import Any

from ..models import ScheduledTask

# The logger name the README's "Logging" section shows for task lines; kept by name,
# not by module path, so that a user's logging config outlives a moved module.
logger = logging.getLogger("django_jobs.executor")


class TaskLog:
    """Log lines that always carry task id, job name, queue and attempt.

    In the text (``task=12 job=... queue=... attempt=1 ...``) and as record
    attributes ``task_id``, ``job``, ``queue``, ``attempt`` (``extra``), so that a
    JSON formatter can emit them as fields.
    """

    def __init__(self, task: ScheduledTask, to: logging.Logger = logger) -> None:
        self.task = task
        self.attempt = task.attempt  # fixed now: a retry changes the row's count
        self.logger = to

    def info(self, message: str, *args: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):  # skip formatting in the hot path
            self.logger.info(f"{self.prefix} {message}", *args, extra=self.fields)

    def warning(self, message: str, *args: Any) -> None:
        self.logger.warning(f"{self.prefix} {message}", *args, extra=self.fields)

    @property
    def fields(self) -> dict[str, Any]:
        task = self.task
        return {"task_id": task.pk, "job": task.identifier, "queue": task.queue, "attempt": self.attempt}

    @property
    def prefix(self) -> str:
        task = self.task
        return f"task={task.pk} job={task.identifier} queue={task.queue} attempt={self.attempt}"
