"""What a ``takes_context=True`` job receives as its first argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import ScheduledTask


@dataclass
class JobContext:
    """``task`` is the row being run (None when the job is called inline);
    ``attempt`` is 1 on the first run, 2 on the first retry, and so on."""

    task: ScheduledTask | None
    attempt: int
    worker_id: str = ""
    progress: dict[str, Any] | None = field(default=None)

    def set_progress(self, done: int | float, total: int | float | None = None) -> None:
        """Record how far the job is; shown in admin. Written at once while running."""
        self.progress = {"done": done, "total": total}
        if self.task is not None:
            from .models import ScheduledTask  # loads with ``django_jobs``, before the models

            ScheduledTask.objects.filter(pk=self.task.pk).set_progress(self.worker_id, self.progress)
            self.task.progress = self.progress

    async def aset_progress(self, done: int | float, total: int | float | None = None) -> None:
        """``set_progress`` from an ``async def`` job: the ORM's write runs off the event loop."""
        from asgiref.sync import sync_to_async  # with Django; here so that the sync path loads nothing more

        await sync_to_async(self.set_progress)(done, total)
