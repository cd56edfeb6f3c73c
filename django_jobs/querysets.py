"""Every state change of a task, as a conditional UPDATE.

The worker, admin, API and tests all call these. Each filters on the state it
expects (``status``, and ``worker_id`` for a held task), so a change that lost a
race updates nothing instead of clobbering the winner; each returns the row count.

Each also puts the change on the event trail (``events``): PostgreSQL's triggers do
it there; elsewhere ``changed`` writes the events in the UPDATE's transaction. To
find the rows it changed, it selects them by their new state: the worker's changes
(``mark_running`` … ``fail``) by worker, status and time, on a queryset that selects
by key; the others (release, recover, operator actions) read the ids first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from django.db import IntegrityError, models, router, transaction
from django.db.models import F
from django.utils import timezone

from . import events
from .db import engine
from .exceptions import UniqueKeyConflict
from .notify import wake_workers

if TYPE_CHECKING:  # models imports this module
    from .models import ScheduledTask  # noqa: F401 -- named (as a string) by the queryset's base class

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = "pending", "running", "completed", "failed", "cancelled"
CLAIM_ORDER = ("-priority", "scheduled_at", "id")
# A retry refused by the unique index whose key holder finished before it could be
# named: the retry is tried again, as an enqueue racing a finishing holder is.
RETRY_ATTEMPTS = 5
# Operator actions on many tasks, where the database writes no events: ids per UPDATE
# (SQLite takes up to 32,766 parameters; MariaDB's packet is finite too).
IDS_PER_CHANGE = 1000


def sees_all_tasks(user: Any) -> bool:
    """Superusers and holders of ``see_all_scheduledtask`` (operators) see every task."""
    return user.is_superuser or user.has_perm("django_jobs.see_all_scheduledtask")


class ScheduledTaskQuerySet(models.QuerySet["ScheduledTask"]):
    # -- reading ---------------------------------------------------------------
    def visible_to(self, user: Any) -> ScheduledTaskQuerySet:
        """The tasks ``user`` may see and act on (admin, API): all of them for one who
        ``sees_all_tasks``, else the ones they own."""
        return self if sees_all_tasks(user) else self.filter(owner=user)

    def due(self, now: datetime, queues: Iterable[str] | None = None,
            paused: Iterable[str] = ()) -> ScheduledTaskQuerySet:
        """Pending tasks whose time has come, in claim order, outside the ``paused`` queues."""
        rows = self.filter(status=PENDING, scheduled_at__lte=now)
        if queues:
            rows = rows.filter(queue__in=list(queues))
        if paused := list(paused):
            rows = rows.exclude(queue__in=paused)
        return rows.order_by(*CLAIM_ORDER)

    def due_unless_paused(self, now: datetime, queues: Iterable[str] | None = None,
                          held_back: Iterable[str] = ()) -> ScheduledTaskQuerySet:
        """The unlimited tasks of ``due`` (``flow_key`` NULL: the claim index's own rows)
        minus the queues paused right now (one small read first) and the ``held_back``
        ones (limited by ``QUEUE_LIMITS``: their tasks are claimed under their limits).

        The list is read, not joined as a subquery: any extra predicate on the claim
        costs SQLite its index (it falls back to scanning and sorting the backlog),
        so with nothing paused, the usual case, the claim statement stays as it is.
        The read is the engine's (``paused_queues``, plain SQL).
        """
        paused = engine(self.db).paused_queues()
        if "*" in paused:  # pause_all(): nothing is due anywhere
            return self.none()
        return self.due(now, queues, paused=[*paused, *held_back]).filter(flow_key__isnull=True)

    def held_by(self, worker_id: str) -> ScheduledTaskQuerySet:
        return self.filter(status=RUNNING, worker_id=worker_id)

    def active_with_key(self, unique_key: str) -> ScheduledTaskQuerySet:
        return self.filter(unique_key=unique_key, status__in=(PENDING, RUNNING))

    # -- claiming and finishing (worker) -----------------------------------------
    # These four select by key (``filter(pk=…)``/``pk__in``), never by status: their events are
    # the rows of this queryset in the new state.
    def mark_running(self, worker_id: str, now: datetime) -> int:
        """Take pending rows of this queryset for ``worker_id``."""
        return self.changed("started", self.filter(status=PENDING), held_by=worker_id,
                            status=RUNNING, worker_id=worker_id, started_at=now, updated_at=now)

    def complete(self, worker_id: str, result: Any, now: datetime) -> int:
        return self.changed("completed", self.held_by(worker_id), held_by=worker_id, **completion(result, now))

    def retry_later(self, worker_id: str, at: datetime, error: str, traceback: str, now: datetime,
                    attempt_log: list[dict[str, Any]]) -> int:
        """Record a failed attempt that has retries left: back to pending at ``at``.

        ``attempt_log`` is the task's whole history with this attempt appended: only
        the holder writes it, so the copy it read at claim time is current.
        """
        return self.changed(
            "retried", self.held_by(worker_id), held_by=worker_id,
            status=PENDING, scheduled_at=at, retry_count=F("retry_count") + 1,
            failed_at=now, error_message=error, traceback=traceback, updated_at=now, attempt_log=attempt_log,
        )

    def fail(self, worker_id: str, error: str, traceback: str, now: datetime, attempt_log: list[dict[str, Any]]) -> int:
        """Record the last failed attempt: the task is now dead-lettered as ``failed``."""
        return self.changed(
            "failed", self.held_by(worker_id), held_by=worker_id,
            status=FAILED, failed_at=now, error_message=error, traceback=traceback, updated_at=now,
            attempt_log=attempt_log,
        )

    def release(self, worker_id: str, now: datetime) -> int:
        """Give back tasks a stopping worker did not finish; their attempt does not count.

        They are due at once: other idle workers are woken to take them.
        """
        released = 0
        for rows in self.held_by(worker_id).by_ids():
            released += rows.changed("released", rows.held_by(worker_id), held_by=worker_id,
                                     status=PENDING, scheduled_at=now, updated_at=now)
        return self.wake_if(released)

    def lost(self, live_worker_ids: models.QuerySet, started_before: datetime) -> ScheduledTaskQuerySet:
        """Running tasks whose worker is not live."""
        return self.filter(status=RUNNING, started_at__lt=started_before).exclude(worker_id__in=live_worker_ids)

    def recover(self, task: Any, error: str, exception_class: str, now: datetime) -> int:
        """One lost task: retry if attempts remain, else fail; its attempt is logged.

        Row by row (recovery is rare): appending to a JSON list has no portable
        bulk UPDATE. The filter on worker and start time makes it a no-op if the
        task moved on since it was read.
        """
        entry = attempt_entry(task, now, error, exception_class, traceback="")
        task_rows = self.filter(pk=task.pk)
        rows = task_rows.filter(status=RUNNING, worker_id=task.worker_id, started_at=task.started_at)
        common = dict(failed_at=now, error_message=error, traceback="", updated_at=now,
                      attempt_log=[*task.attempt_log, entry])
        if task.retry_count < task.max_retries:
            retried = task_rows.changed("recovered", rows, held_by=task.worker_id,
                                        status=PENDING, scheduled_at=now, retry_count=F("retry_count") + 1, **common)
            return task_rows.wake_if(retried)
        return task_rows.changed("failed", rows, held_by=task.worker_id, status=FAILED, **common)

    # -- operator actions ------------------------------------------------------------
    def cancel_pending(self) -> int:
        now = timezone.now()
        with transaction.atomic(using=self.write_db, savepoint=False):
            return sum(rows.changed("cancelled", rows.filter(status=PENDING), held_by=None,
                                    status=CANCELLED, updated_at=now)
                       for rows in self.filter(status=PENDING).by_ids())

    def retry_now(self) -> int:
        """Failed or cancelled tasks back to pending, due now, with a fresh set of retries.

        One statement, all or nothing: while another active task holds the
        ``unique_key`` of one of them, ``UniqueKeyConflict`` naming both and nothing
        changed. The database's unique index decides (no check-then-write race); the
        savepoint keeps the caller's transaction usable after it refused.
        """
        for _ in range(RETRY_ATTEMPTS):
            try:
                with transaction.atomic(using=self.write_db):
                    return self.wake_if(self.back_to_pending())
            except IntegrityError as error:
                conflict = self.key_conflict()
                if conflict is not None:
                    raise conflict from error
                if not self.filter(status__in=(FAILED, CANCELLED), unique_key__isnull=False).exists():
                    raise  # not about a unique key
        raise self.unnamed_key_conflict()

    def back_to_pending(self) -> int:
        """The change of ``retry_now``; the caller's transaction makes it all or nothing."""
        now = timezone.now()
        retryable = (FAILED, CANCELLED)
        return sum(rows.changed("requeued", rows.filter(status__in=retryable), held_by="",
                                status=PENDING, scheduled_at=now, retry_count=0, error_message="", traceback="",
                                result=None, worker_id="", updated_at=now)
                   for rows in self.filter(status__in=retryable).by_ids())

    def key_conflict(self) -> UniqueKeyConflict | None:
        """The first retryable task of this queryset whose key an active task holds, with that task."""
        keyed = self.filter(status__in=(FAILED, CANCELLED), unique_key__isnull=False).order_by("pk")
        for pk, key in keyed.values_list("pk", "unique_key"):
            holder = self.model.objects.using(self.write_db).active_with_key(key).exclude(pk=pk)
            found = holder.values_list("pk", "status").first()
            if found is not None:
                return UniqueKeyConflict(pk, key, *found)
        return None

    def unnamed_key_conflict(self) -> UniqueKeyConflict:
        # Holders kept changing hands, or two tasks of this queryset share a key.
        first = self.filter(status__in=(FAILED, CANCELLED), unique_key__isnull=False).order_by(
            "pk").values_list("pk", "unique_key").first()
        assert first is not None, "called after the unique index refused one of these tasks"
        return UniqueKeyConflict(first[0], first[1], None)

    def run_now(self) -> int:
        """Pending tasks due now (the rest of the queryset is left alone)."""
        now = timezone.now()
        return self.wake_if(self.filter(status=PENDING).update(scheduled_at=now, updated_at=now))

    def edit_pending(self, **fields: Any) -> int:
        """Change fields of tasks that are still pending (an operator's edit); a worker may
        have claimed them since they were read, so others are left alone."""
        return self.wake_if(self.filter(status=PENDING).update(**fields, updated_at=timezone.now()))

    def wake_if(self, changed: int) -> int:
        """After ``changed`` rows of this queryset became due (or may have): wake the
        idle workers of their queues, on commit. Returns ``changed``."""
        if changed:
            wake_workers(self.order_by().values_list("queue", flat=True).distinct(), self.write_db)
        return changed

    # -- the event trail of a change -------------------------------------------------
    def changed(self, kind: str, expected: ScheduledTaskQuerySet, *, held_by: str | None, **fields: Any) -> int:
        """UPDATE the rows of ``expected`` (this queryset in the state the change expects)
        to ``fields``; where no trigger writes the events, write ``kind`` events in the same
        transaction for the rows of this queryset the change left in ``fields``' status at
        its ``updated_at``, under worker ``held_by`` (None: any). Returns the rows changed.

        The rows are found only when events are written: on PostgreSQL and with ``EVENTS``
        off, a worker's outcome builds no queryset it would not use."""
        if not events.written_beside_changes(expected.write_db):
            return expected.update(**fields)
        with transaction.atomic(using=expected.write_db, savepoint=False):
            count = expected.update(**fields)
            if count:
                written = self.written(fields["status"], held_by, fields["updated_at"])
                events.write(written.using(expected.write_db), kind)
        return count

    def written(self, status: str, worker_id: str | None, now: datetime) -> ScheduledTaskQuerySet:
        """The rows of this queryset that a change at ``now`` left in ``status`` (under ``worker_id``)."""
        rows = self.filter(status=status, updated_at=now)
        return rows if worker_id is None else rows.filter(worker_id=worker_id)

    def by_ids(self) -> Iterator[ScheduledTaskQuerySet]:
        """This queryset, to be changed: as it is where no events are written beside changes;
        elsewhere as querysets of its ids (read first, ``IDS_PER_CHANGE`` at a time), which
        still select the rows once the change moved them out of this queryset's filter."""
        if not events.written_beside_changes(self.write_db):
            yield self
            return
        ids = list(self.using(self.write_db).order_by("pk").values_list("pk", flat=True))
        for start in range(0, len(ids), IDS_PER_CHANGE):
            yield self.model.objects.using(self.write_db).filter(pk__in=ids[start:start + IDS_PER_CHANGE])

    @property
    def write_db(self) -> str:
        """The database this queryset's UPDATEs go to (``db`` names the read database
        until a write has begun)."""
        # QuerySet's own attributes (django-stubs does not declare them).
        return self._db or router.db_for_write(self.model, **self._hints)  # type: ignore[attr-defined]

    def set_progress(self, worker_id: str, progress: dict[str, Any]) -> int:
        return self.held_by(worker_id).update(progress=progress)


def completion(result: Any, now: datetime) -> dict[str, Any]:
    """The fields a successful attempt writes: one list for ``complete`` and ``complete_held``."""
    return {"status": COMPLETED, "executed_at": now, "result": result, "error_message": "", "traceback": "",
            "updated_at": now}


def complete_held(ids: list[int], worker_id: str, now: datetime, alias: str) -> int:
    """``complete`` with no result for many tasks this worker holds: the recorder's bulk write,
    in the database engine's plain SQL, with its events."""
    return engine(alias).change_held_ids(ids, "completed", RUNNING, worker_id, completion(None, now))


def attempt_entry(task: Any, now: datetime, error: str, exception_class: str, traceback: str) -> dict[str, Any]:
    """How a failed attempt is kept in ``attempt_log`` (JSON: times as ISO 8601 strings)."""
    return {
        "attempt": task.retry_count + 1,
        "worker_id": task.worker_id,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": now.isoformat(),
        "error": error,
        "exception_class": exception_class,
        "traceback": traceback,
    }


class WorkerQuerySet(models.QuerySet):
    def live(self, cutoff: datetime) -> WorkerQuerySet:
        return self.filter(last_heartbeat__gte=cutoff)

    def beat(self, worker_id: str, now: datetime, *, holding: int = 0, stalled_for: float = 0.0) -> int:
        """Renew the worker's lease and say how it is doing: tasks held, and since when no outcome was written."""
        return self.filter(worker_id=worker_id).update(
            last_heartbeat=now, holding=holding, progressed_at=now - timedelta(seconds=stalled_for))

    def forget_dead(self, cutoff: datetime) -> int:
        """Delete rows of workers that stopped beating (after their tasks are recovered)."""
        count, _ = self.filter(last_heartbeat__lt=cutoff).delete()
        return count

