"""Every state change of a task, as a conditional UPDATE.

The worker, admin, API and tests all call these. Each filters on the state it
expects (``status``, and ``worker_id`` for a held task), so a change that lost a
race updates nothing instead of clobbering the winner; each returns the row count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from django.db import models
from django.db.models import F
from django.utils import timezone

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
CLAIM_ORDER = ("-priority", "scheduled_at", "id")


class ScheduledTaskQuerySet(models.QuerySet):
    # -- reading ---------------------------------------------------------------
    def due(self, now: datetime, queues: Iterable[str] | None = None) -> ScheduledTaskQuerySet:
        """Pending tasks whose time has come, in claim order."""
        rows = self.filter(status=PENDING, scheduled_at__lte=now)
        if queues:
            rows = rows.filter(queue__in=list(queues))
        return rows.order_by(*CLAIM_ORDER)

    def held_by(self, worker_id: str) -> ScheduledTaskQuerySet:
        return self.filter(status=RUNNING, worker_id=worker_id)

    def active_with_key(self, unique_key: str) -> ScheduledTaskQuerySet:
        return self.filter(unique_key=unique_key, status__in=(PENDING, RUNNING))

    # -- claiming and finishing (worker) -----------------------------------------
    def mark_running(self, worker_id: str, now: datetime) -> int:
        """Take pending rows of this queryset for ``worker_id``."""
        return self.filter(status=PENDING).update(status=RUNNING, worker_id=worker_id, started_at=now, updated_at=now)

    def complete(self, worker_id: str, result: Any, now: datetime) -> int:
        return self.held_by(worker_id).update(
            status=COMPLETED, executed_at=now, result=result, error_message="", traceback="", updated_at=now,
        )

    def retry_later(self, worker_id: str, at: datetime, error: str, traceback: str, now: datetime) -> int:
        """Record a failed attempt that has retries left: back to pending at ``at``."""
        return self.held_by(worker_id).update(
            status=PENDING, scheduled_at=at, retry_count=F("retry_count") + 1,
            failed_at=now, error_message=error, traceback=traceback, updated_at=now,
        )

    def fail(self, worker_id: str, error: str, traceback: str, now: datetime) -> int:
        """Record the last failed attempt: the task is now dead-lettered as ``failed``."""
        return self.held_by(worker_id).update(
            status=FAILED, failed_at=now, error_message=error, traceback=traceback, updated_at=now,
        )

    def release(self, worker_id: str, now: datetime) -> int:
        """Give back tasks a stopping worker did not finish; their attempt does not count."""
        return self.held_by(worker_id).update(status=PENDING, scheduled_at=now, updated_at=now)

    def recover_lost(self, live_worker_ids: models.QuerySet, started_before: datetime, error: str, now: datetime) -> int:
        """Running tasks whose worker is not live: retry if attempts remain, else fail."""
        lost = self.filter(status=RUNNING, started_at__lt=started_before).exclude(worker_id__in=live_worker_ids)
        retried = lost.filter(retry_count__lt=F("max_retries")).update(
            status=PENDING, scheduled_at=now, retry_count=F("retry_count") + 1,
            failed_at=now, error_message=error, traceback="", updated_at=now,
        )
        failed = lost.update(status=FAILED, failed_at=now, error_message=error, traceback="", updated_at=now)
        return retried + failed

    # -- operator actions ------------------------------------------------------------
    def cancel_pending(self) -> int:
        now = timezone.now()
        return self.filter(status=PENDING).update(status=CANCELLED, updated_at=now)

    def retry_now(self) -> int:
        """Failed or cancelled tasks back to pending, due now, with a fresh set of retries."""
        now = timezone.now()
        return self.filter(status__in=(FAILED, CANCELLED)).update(
            status=PENDING, scheduled_at=now, retry_count=0, error_message="", traceback="",
            result=None, worker_id="", updated_at=now,
        )

    def run_now(self) -> int:
        now = timezone.now()
        return self.filter(status=PENDING).update(scheduled_at=now, updated_at=now)

    def set_progress(self, worker_id: str, progress: dict[str, Any]) -> int:
        return self.held_by(worker_id).update(progress=progress)


class WorkerQuerySet(models.QuerySet):
    def live(self, cutoff: datetime) -> WorkerQuerySet:
        return self.filter(last_heartbeat__gte=cutoff)

    def beat(self, worker_id: str, now: datetime) -> int:
        return self.filter(worker_id=worker_id).update(last_heartbeat=now)

    def forget_dead(self, cutoff: datetime) -> int:
        """Delete rows of workers that stopped beating (after their tasks are recovered)."""
        count, _ = self.filter(last_heartbeat__lt=cutoff).delete()
        return count

