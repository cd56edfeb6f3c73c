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
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from . import cron, validation
from .conf import jobs_settings
from .enqueueing import after_insert, build_task
from .exceptions import DjangoJobsError
from .executor import TaskLog
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
    for schedule in CronSchedule.objects.filter(enabled=True, next_run__isnull=True):
        # Enabled with a bulk update (admin action, SQL): start from now.
        CronSchedule.objects.filter(pk=schedule.pk, next_run__isnull=True).update(
            next_run=schedule.compute_next_run(now)
        )
    return enqueued


def fire(schedule: CronSchedule, now: datetime) -> ScheduledTask | None:
    """Advance ``schedule`` past ``now`` and enqueue its task, if this worker wins the race."""
    fire_time = schedule.next_run
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
        task = enqueue_for_schedule(schedule, fire_time)
    if task is not None:
        TaskLog(task, logger).info("enqueued by cron schedule %r for %s", schedule.name, fire_time.isoformat())
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


def build_schedule_task(schedule: CronSchedule, fire_time: datetime | None) -> ScheduledTask:
    common = {"cron_schedule": schedule, "cron_fire_time": fire_time, "scheduled_at": fire_time or timezone.now(),
              "description": schedule.description or f"cron: {schedule.name}"}
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
    return task


# -- schedules declared in code ----------------------------------------------------------

def declared_schedules() -> dict[str, dict[str, Any]]:
    """Schedules from ``@job(cron=...)`` (named after the job) and ``DJANGO_JOBS["CRON"]``,
    as CronSchedule field values. Raises ImproperlyConfigured naming an invalid one."""
    declared: dict[str, dict[str, Any]] = {}
    for name in registry:
        if registry.get(name).cron:
            declared[name] = {"job_name": name, "expression": registry.get(name).cron}
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


DECLARABLE = ("args", "kwargs", "queue", "priority", "timezone", "description")


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
    except (ValidationError, DjangoJobsError) as error:
        message = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        raise ImproperlyConfigured(f"Cron schedule {name!r} is invalid: {message}") from None
    return {"job_name": job.name, "expression": expression, "args": args, "kwargs": kwargs, "queue": queue,
            "priority": priority, "timezone": fields.get("timezone", ""), "description": fields.get("description", "")}


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
