"""Cron: turn due schedules into tasks, exactly once per fire time.

Every worker runs ``tick()`` about once a second; any number may run it at once.
Two things make a fire time enqueue exactly one task:
- advancing a schedule is a conditional UPDATE on the ``next_run`` the worker read,
  so of the workers that read the same due schedule only one advances it;
- the task carries ``(cron_schedule, cron_fire_time)``, unique in the database,
  so even a worker that advanced on stale data cannot insert a second task.

Missed fires (all workers down across several fire times): the schedule fires
once, for its oldest missed fire time, then continues from the next fire time
after now.

Overlap (``CronSchedule.overlap``): with ``skip`` and ``queue`` every task of a
schedule carries the same ``unique_key`` (``overlap_key``), so the database's unique
index on active keys lets only one of them be pending or running, whatever the number
of schedulers. A fire that the index refuses is counted as skipped (``skip``), or
appended to ``waiting_fires`` and enqueued by a later tick once the previous task has
finished (``queue``). ``waiting_fires`` changes only while its transaction holds the
schedule row (the advance in ``fire`` or the no-op update in ``release_waiting``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, router, transaction
from django.db.models import F
from django.utils import timezone

from . import cron, validation
from .conf import jobs_settings
from .enqueueing import after_insert, build_task
from .exceptions import DjangoJobsError, ScheduleBusy
from .execution.task_log import TaskLog
from .models import CronSchedule, ScheduledTask
from .registry import registry

logger = logging.getLogger(__name__)


def tick(now: datetime | None = None) -> list[ScheduledTask]:
    """Enqueue one task for each enabled schedule whose ``next_run`` has come."""
    now = now or timezone.now()
    enqueued = []
    for schedule in CronSchedule.objects.filter(enabled=True, next_run__lte=now).order_by("next_run"):
        task = fire(schedule, now)
        if task is not None:
            enqueued.append(task)
    for schedule in CronSchedule.objects.filter(enabled=True, overlap=CronSchedule.Overlap.QUEUE):
        if schedule.waiting_fires:
            task = release_waiting(schedule)
            if task is not None:
                enqueued.append(task)
    for schedule in CronSchedule.objects.filter(enabled=True, next_run__isnull=True):
        # Enabled with a bulk update (admin action, SQL): start from now.
        CronSchedule.objects.filter(pk=schedule.pk, next_run__isnull=True).update(
            next_run=schedule.compute_next_run(now)
        )
    return enqueued


def fire(schedule: CronSchedule, now: datetime) -> ScheduledTask | None:
    """Advance ``schedule`` past ``now`` and enqueue its task, if this worker wins the race."""
    fire_time = schedule.next_run
    assert fire_time is not None  # due schedules are read by next_run <= now
    try:
        following = schedule.compute_next_run(now)
    except ValidationError as error:  # a row whose expression or zone no longer validates (edited by hand)
        logger.error("Cron schedule %r cannot compute its next run (%s); disabling it", schedule.name, error)
        CronSchedule.objects.filter(pk=schedule.pk).update(enabled=False)
        return None
    alias = router.db_for_write(CronSchedule)
    with transaction.atomic(using=alias):
        advanced = CronSchedule.objects.filter(pk=schedule.pk, enabled=True, next_run=fire_time).update(
            last_run=fire_time, next_run=following, updated_at=now
        )
        if not advanced:
            return None  # another worker fired it
        waiting = waiting_fires(schedule) if schedule.overlap == CronSchedule.Overlap.QUEUE else []
        if waiting:
            wait(schedule, fire_time, waiting, reason="earlier fires are waiting")  # keep the order
            return None
        task = enqueue_for_schedule(schedule, fire_time)
        if task is None and schedule.overlap != CronSchedule.Overlap.ALLOW:
            holder = active_holder(schedule)
            if holder is not None:
                overlapped(schedule, fire_time, holder, waiting)
    if task is not None:
        TaskLog(task, logger).info("enqueued by cron schedule %r for %s", schedule.name, fire_time.isoformat())
    return task


# -- overlap -----------------------------------------------------------------------------

# The most fire times an ``overlap="queue"`` schedule keeps waiting; later ones are skipped.
MAX_WAITING_FIRES = 100


def overlap_key(schedule: CronSchedule) -> str | None:
    """The ``unique_key`` every task of ``schedule`` carries, None when overlaps are allowed."""
    if schedule.overlap == CronSchedule.Overlap.ALLOW:
        return None
    return f"django_jobs.cron:{schedule.pk}"


def active_holder(schedule: CronSchedule) -> ScheduledTask | None:
    """The schedule's pending or running task (found through the unique index on active keys)."""
    key = overlap_key(schedule)
    return ScheduledTask.objects.filter(active_unique_key=key).only("pk", "status").first() if key else None


def waiting_fires(schedule: CronSchedule) -> list[str]:
    """The stored list, read fresh (the caller's transaction holds the schedule row)."""
    return CronSchedule.objects.filter(pk=schedule.pk).values_list("waiting_fires", flat=True).first() or []


def overlapped(schedule: CronSchedule, fire_time: datetime, holder: ScheduledTask, waiting: list[str]) -> None:
    """``waiting``: the schedule's waiting fires, read under its row's lock."""
    if schedule.overlap == CronSchedule.Overlap.QUEUE:
        wait(schedule, fire_time, waiting, reason=f"task #{holder.pk} is still {holder.status}")
        return
    skip(schedule, fire_time, reason=f"task #{holder.pk} is still {holder.status}")


def skip(schedule: CronSchedule, fire_time: datetime, *, reason: str) -> None:
    CronSchedule.objects.filter(pk=schedule.pk).update(
        skipped_fires=F("skipped_fires") + 1, last_skipped_at=fire_time)
    logger.info("Cron schedule %r: fire time %s skipped, %s", schedule.name, fire_time.isoformat(), reason)


def wait(schedule: CronSchedule, fire_time: datetime, waiting: list[str], *, reason: str) -> None:
    """Append ``fire_time`` to ``waiting`` (the stored list, read under the row's lock)."""
    if len(waiting) >= MAX_WAITING_FIRES:
        skip(schedule, fire_time, reason=f"{len(waiting)} fires are waiting already ({reason})")
        return
    CronSchedule.objects.filter(pk=schedule.pk).update(waiting_fires=[*waiting, fire_time.isoformat()])
    logger.info("Cron schedule %r: fire time %s waits, %s", schedule.name, fire_time.isoformat(), reason)


def release_waiting(schedule: CronSchedule) -> ScheduledTask | None:
    """Enqueue the oldest waiting fire of an ``overlap="queue"`` schedule once nothing of
    it is pending or running; None while its previous task is still active."""
    if active_holder(schedule) is not None:
        return None  # the common case, decided without a lock
    alias = router.db_for_write(CronSchedule)
    with transaction.atomic(using=alias):
        # A no-op write first: the schedule row is ours (on SQLite, the database) before
        # the list is read, so a concurrent ``fire`` or release cannot lose an entry.
        CronSchedule.objects.filter(pk=schedule.pk).update(waiting_fires=F("waiting_fires"))
        waiting = waiting_fires(schedule)
        if not waiting:
            return None
        fire_time = datetime.fromisoformat(waiting[0])
        task = enqueue_for_schedule(schedule, fire_time)
        if task is None and active_holder(schedule) is not None:
            return None  # started again meanwhile (run from another worker's release)
        CronSchedule.objects.filter(pk=schedule.pk).update(waiting_fires=waiting[1:])
    if task is not None:
        TaskLog(task, logger).info("enqueued by cron schedule %r for %s, which waited for the previous task",
                                   schedule.name, fire_time.isoformat())
    return task


def enqueue_for_schedule(schedule: CronSchedule, fire_time: datetime | None) -> ScheduledTask | None:
    """Insert the schedule's task; None if its fire time already has one.

    A schedule whose job or arguments are invalid gets a task that fails with the
    reason, visible in admin, rather than silently not running.
    """
    task = build_schedule_task(schedule, fire_time)
    alias = router.db_for_write(ScheduledTask)
    try:
        with transaction.atomic(using=alias):
            task.save(force_insert=True, using=alias)
    except IntegrityError:
        return None
    after_insert([task])
    return task


def run_now(schedule: CronSchedule) -> ScheduledTask:
    """One task of ``schedule`` now, outside its fire times; ``ScheduleBusy`` (nothing
    enqueued) while its previous task is pending or running and overlaps are not allowed."""
    task = enqueue_for_schedule(schedule, fire_time=None)
    if task is None:
        holder = active_holder(schedule)
        raise ScheduleBusy(schedule.name, schedule.overlap, holder.pk if holder else None,
                           holder.status if holder else "")
    return task


def build_schedule_task(schedule: CronSchedule, fire_time: datetime | None) -> ScheduledTask:
    # A schedule's tasks are its owner's: who may see the schedule may see what it fired.
    common: dict[str, Any] = {"cron_schedule": schedule, "cron_fire_time": fire_time, "scheduled_at": fire_time or timezone.now(),
              "description": schedule.description or f"cron: {schedule.name}", "owner_id": schedule.owner_id}
    try:
        job = registry.get(schedule.job_name).using(
            queue=schedule.queue or jobs_settings.DEFAULT_QUEUE, priority=schedule.priority
        )
        task = build_task(job, schedule.args, schedule.kwargs, run_at=common["scheduled_at"])
    except DjangoJobsError as error:
        logger.error("Cron schedule %r cannot enqueue its job: %s", schedule.name, error)
        return ScheduledTask(identifier=schedule.job_name, queue=schedule.queue, args=[], kwargs={},
                             status=ScheduledTask.Status.FAILED, error_message=f"Cron schedule {schedule.name!r}: {error}",
                             failed_at=timezone.now(), max_retries=0, **common)
    for name, value in common.items():
        setattr(task, name, value)
    if schedule.overlap != CronSchedule.Overlap.ALLOW:
        task.unique_key = overlap_key(schedule)
    return task


# -- schedules declared in code ----------------------------------------------------------

def declared_schedules() -> dict[str, dict[str, Any]]:
    """Schedules from ``@job(cron=...)`` (named after the job) and ``DJANGO_JOBS["CRON"]``,
    as CronSchedule field values. Raises ImproperlyConfigured naming an invalid one."""
    declared: dict[str, dict[str, Any]] = {}
    for name in registry:
        job = registry.get(name)
        if job.cron:
            declared[name] = {"job_name": name, "expression": job.cron,
                              **({"overlap": job.cron_overlap} if job.cron_overlap else {})}
    for name, spec in (jobs_settings.CRON or {}).items():
        declared[name] = schedule_fields(name, spec)
    return {name: complete_declared(name, fields) for name, fields in declared.items()}


def schedule_fields(name: str, spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict) or "job" not in spec or "cron" not in spec:
        raise ImproperlyConfigured(f"DJANGO_JOBS['CRON'][{name!r}] must be a dict with 'job' and 'cron' keys.")
    unknown = set(spec) - {"job", "cron", *DECLARABLE}
    if unknown:
        raise ImproperlyConfigured(f"DJANGO_JOBS['CRON'][{name!r}] has unknown keys {sorted(unknown)}.")
    return {"job_name": spec["job"], "expression": spec["cron"], **{key: spec[key] for key in DECLARABLE if key in spec}}


DECLARABLE = ("args", "kwargs", "queue", "priority", "timezone", "description", "overlap")


def complete_declared(name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate one declared schedule and fill in defaults from its job."""
    try:
        expression = cron.expand(fields["expression"])
        cron.zone(fields.get("timezone", ""))
        job = registry.get(fields["job_name"])
        priority = validation.priority(fields.get("priority", job.priority))
        queue = validation.queue(fields.get("queue", job.resolved_queue))
        job.check_arguments(fields.get("args", []), fields.get("kwargs", {}))
        args, kwargs = validation.json_arguments(fields.get("args", []), fields.get("kwargs", {}))
        # Undeclared: a new row takes the model's default, an existing row keeps its own
        # (rows from before overlap control existed keep "allow").
        overlap = {"overlap": validation.overlap(fields["overlap"])} if "overlap" in fields else {}
    except (ValidationError, DjangoJobsError) as error:
        message = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        raise ImproperlyConfigured(f"Cron schedule {name!r} is invalid: {message}") from None
    return {"job_name": job.name, "expression": expression, "args": args, "kwargs": kwargs, "queue": queue,
            "priority": priority, "timezone": fields.get("timezone", ""), "description": fields.get("description", ""),
            **overlap}


# Set on rows the sync disabled because their declaration was removed, so that
# declaring them again re-enables them (a schedule an operator disabled stays off).
REMOVED_FROM_CODE = "django_jobs_removed_from_code"


def sync_declared_schedules() -> dict[str, int]:
    """Make rows match the code: create new, update changed, disable removed.

    Only rows marked ``declared_in_code`` are touched; a row a user created under
    the same name is left alone, with a warning. Safe with many workers at once.
    """
    declared = declared_schedules()
    counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "disabled": 0}
    for name, fields in declared.items():
        counts[sync_one(name, fields)] += 1
    for row in CronSchedule.objects.filter(declared_in_code=True, enabled=True).exclude(name__in=list(declared)):
        row.metadata = {**row.metadata, REMOVED_FROM_CODE: True}
        row.enabled = False
        row.save()
        counts["disabled"] += 1
    return counts


def sync_one(name: str, fields: dict[str, Any]) -> str:
    row = CronSchedule.objects.filter(name=name).first()
    if row is None:
        try:
            with transaction.atomic(using=router.db_for_write(CronSchedule)):
                CronSchedule(name=name, declared_in_code=True, **fields).save()
        except IntegrityError:
            return "unchanged"  # another worker created it a moment ago
        return "created"
    if not row.declared_in_code:
        logger.warning("Cron schedule %r is declared in code but a user created a row with that name; "
                       "the row is left as it is", name)
        return "skipped"
    changed = {key: value for key, value in fields.items() if getattr(row, key) != value}
    if row.metadata.get(REMOVED_FROM_CODE):
        changed["metadata"] = {key: value for key, value in row.metadata.items() if key != REMOVED_FROM_CODE}
        changed["enabled"] = True
    if not changed:
        return "unchanged"
    for key, value in changed.items():
        setattr(row, key, value)
    row.save()
    return "updated"
