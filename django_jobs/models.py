"""The database is the broker: these tables are the queue.

``ScheduledTask`` is one run of a job (with its retries); ``CronSchedule`` fires tasks
on a cron expression; ``Worker`` is a live worker process and its heartbeat;
``ApiToken`` authenticates machines calling the JSON API.
Every state change is a conditional UPDATE in ``querysets.py``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Case, F, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import cron, validation
from .querysets import ScheduledTaskQuerySet, WorkerQuerySet, sees_all_tasks
from .routers import user_link
from .signals import job_cancelled, send_after_commit


class ScheduledTask(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)

    identifier = models.CharField(_("job name"), max_length=255, help_text=_("Registered name of the job to run."))
    args = models.JSONField(_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    queue = models.CharField(_("queue"), max_length=100, default="default")
    priority = models.SmallIntegerField(_("priority"), default=0, help_text=_("-100 to 100; higher runs first."))
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    scheduled_at = models.DateTimeField(_("not before"), default=timezone.now, help_text=_("The task does not run before this time."))
    description = models.CharField(_("description"), max_length=500, blank=True, default="")

    max_retries = models.PositiveIntegerField(_("max retries"), default=3, help_text=_("Retries after the first attempt."))
    retry_count = models.PositiveIntegerField(_("retries so far"), default=0, help_text=_("Failed attempts that were retried."))
    retry_delay = models.DurationField(_("retry delay"), default=timedelta(seconds=1), help_text=_("Base delay of the backoff."))
    backoff = models.CharField(
        _("backoff"), max_length=16, default="exponential",
        help_text=_("exponential, fixed, or custom (the job's own function)."),
    )
    timeout = models.DurationField(_("timeout"), null=True, blank=True, help_text=_("Longest a run may take."))

    started_at = models.DateTimeField(_("started at"), null=True, blank=True, help_text=_("Start of the latest attempt."))
    executed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    failed_at = models.DateTimeField(_("failed at"), null=True, blank=True, help_text=_("Time of the latest failed attempt."))
    error_message = models.TextField(_("error message"), blank=True, default="")
    traceback = models.TextField(_("traceback"), blank=True, default="")
    result = models.JSONField(_("result"), null=True, blank=True, help_text=_("The job's return value."))
    worker_id = models.CharField(_("worker"), max_length=255, blank=True, default="", help_text=_("Worker holding or last holding the task."))

    unique_key = models.CharField(
        _("unique key"), max_length=255, null=True, blank=True,
        help_text=_("While a pending or running task holds the key, enqueueing it again returns that task."),
    )
    # The database derives this column: the key while the task is active, else NULL.
    # A unique index on it lets only one active task hold a key, on every backend
    # (MySQL/MariaDB have no partial unique indexes, but all three accept many NULLs).
    active_unique_key = models.GeneratedField(
        expression=Case(When(status__in=["pending", "running"], then=F("unique_key")), default=None),
        output_field=models.CharField(max_length=255, null=True),
        db_persist=True,
        verbose_name=_("active unique key"),
    )
    progress = models.JSONField(_("progress"), null=True, blank=True, help_text=_("{done, total} reported by the job."))
    # Written only when an attempt fails (rare), never on the bulk success path: the
    # latest attempt is always described by started_at/executed_at/worker_id.
    attempt_log = models.JSONField(
        _("failed attempts"), default=list, blank=True,
        help_text=_("One entry per failed attempt: attempt, worker, start, end, error, exception class, traceback."),
    )
    # No index of its own: the unique (cron_schedule, cron_fire_time) index serves lookups
    # by schedule, and an index on a column that is NULL for most rows costs every insert.
    cron_schedule = models.ForeignKey(
        "CronSchedule", verbose_name=_("cron schedule"), null=True, blank=True,
        on_delete=models.SET_NULL, related_name="tasks", db_index=False,
    )
    cron_fire_time = models.DateTimeField(
        _("cron fire time"), null=True, blank=True,
        help_text=_("The fire time of its schedule this task stands for; unique per schedule."),
    )
    # The user the task was enqueued for (``using(owner=user)``, or the API's caller).
    # No index of its own on every row: migration 0008 indexes only the rows that have
    # an owner (PostgreSQL, SQLite); InnoDB indexes a foreign key's column by itself.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
        **user_link(models.SET_NULL), related_name="job_tasks", db_index=False,
        help_text=_("The user the task belongs to: only they and users who see every task (superusers, see_all_scheduledtask) see it in admin and the API."),
    )
    # Flow control (``django_jobs.db.flow``): the keys are filled from the call's arguments
    # at enqueue; the limits travel with the row, so the claim needs nothing but the table.
    concurrency_key = models.CharField(
        _("concurrency key"), max_length=255, null=True, blank=True,
        help_text=_("At most concurrency limit tasks of this key run at once, on every worker."),
    )
    concurrency_limit = models.PositiveIntegerField(_("concurrency limit"), null=True, blank=True)
    rate_key = models.CharField(
        _("rate key"), max_length=255, null=True, blank=True,
        help_text=_("At most rate limit tasks of this key start per rate period."),
    )
    rate_limit = models.PositiveIntegerField(_("rate limit"), null=True, blank=True)
    rate_period = models.PositiveIntegerField(_("rate period"), null=True, blank=True, help_text=_("Seconds."))
    # What the claim groups a limited task by (its concurrency key, else its rate key);
    # NULL for the unlimited tasks, which the claim's own partial index serves alone.
    flow_key = models.GeneratedField(
        expression=Coalesce(F("concurrency_key"), F("rate_key")),
        output_field=models.CharField(max_length=255, null=True),
        db_persist=True,
        verbose_name=_("flow key"),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = ScheduledTaskQuerySet.as_manager()

    class Meta:
        verbose_name = _("scheduled task")
        verbose_name_plural = _("scheduled tasks")
        ordering = ("-id",)
        # The claim and recovery indexes depend on the database (partial where it can),
        # so migration 0002 creates them in SQL; these serve the admin and statistics.
        indexes = [
            models.Index(fields=["identifier", "status"], name="django_jobs_identifier_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["active_unique_key"], name="django_jobs_one_active_task_per_key"),
            # Exactly one task per fire time of a schedule, however many schedulers race.
            models.UniqueConstraint(fields=["cron_schedule", "cron_fire_time"], name="django_jobs_one_task_per_fire_time"),
        ]
        permissions = [
            ("retry_scheduledtask", _("Can retry failed or cancelled tasks")),
            ("cancel_scheduledtask", _("Can cancel pending tasks")),
            ("see_all_scheduledtask", _("Can see and act on every user's tasks, not only their own")),
        ]

    def __str__(self) -> str:
        return f"{self.identifier} #{self.pk} ({self.status})"

    def is_visible_to(self, user: Any) -> bool:
        """``ScheduledTaskQuerySet.visible_to``'s rule for this one task."""
        return self.owner_id == user.pk or sees_all_tasks(user)

    @property
    def attempt(self) -> int:
        """Number of the current (or latest) attempt, 1 for the first run."""
        return self.retry_count + 1

    @property
    def duration(self):
        if self.started_at and self.executed_at:
            return self.executed_at - self.started_at
        return None

    def cancel(self) -> bool:
        """Cancel the task if it is still pending; return whether it was cancelled.

        Sends ``job_cancelled`` once the change is committed.
        """
        cancelled = ScheduledTask.objects.filter(pk=self.pk).cancel_pending() == 1
        self.refresh_from_db()
        if cancelled:
            send_after_commit(job_cancelled, task=self)
        return cancelled

    def retry(self) -> bool:
        """Put a failed or cancelled task back to pending, due now; return whether it changed.

        Raises ``UniqueKeyConflict`` (naming the holder; nothing changed) while another
        pending or running task holds this task's ``unique_key``. Idle PostgreSQL
        workers are woken when the change commits.
        """
        changed = ScheduledTask.objects.filter(pk=self.pk).retry_now() == 1
        self.refresh_from_db()
        return changed


# Fields of a schedule that only the scheduler writes once the row exists.
SCHEDULER_OWNED = frozenset({"skipped_fires", "last_skipped_at", "waiting_fires"})


class CronSchedule(models.Model):
    class Overlap(models.TextChoices):
        SKIP = "skip", _("skip the fire while the previous task is pending or running")
        QUEUE = "queue", _("enqueue the fire once the previous task has finished")
        ALLOW = "allow", _("enqueue every fire at once, even while the previous one runs")

    name = models.CharField(_("name"), max_length=200, unique=True)
    job_name = models.CharField(_("job name"), max_length=255, help_text=_("Registered name of the job to enqueue."))
    expression = models.CharField(
        _("cron expression"), max_length=100, validators=[cron.validate_expression],
        help_text=_("5 fields: minute hour day-of-month month day-of-week, or @hourly, @daily, @weekly, @monthly, @yearly."),
    )
    args = models.JSONField(_("positional arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    queue = models.CharField(_("queue"), max_length=100, default="default")
    priority = models.SmallIntegerField(_("priority"), default=0)
    enabled = models.BooleanField(_("enabled"), default=True)
    timezone = models.CharField(
        _("time zone"), max_length=64, blank=True, default="", validators=[cron.validate_timezone],
        help_text=_("IANA name such as Europe/Berlin; empty means settings.TIME_ZONE."),
    )
    last_run = models.DateTimeField(_("last run"), null=True, blank=True)
    next_run = models.DateTimeField(_("next run"), null=True, blank=True)
    overlap = models.CharField(
        _("overlap"), max_length=8, choices=Overlap.choices, default=Overlap.SKIP,
        help_text=_("What a fire does while the schedule's previous task is still pending or running."),
    )
    skipped_fires = models.PositiveIntegerField(
        _("skipped fires"), default=0, editable=False,
        help_text=_("Fire times not enqueued because the previous task was still pending or running."))
    last_skipped_at = models.DateTimeField(_("last skipped fire"), null=True, blank=True, editable=False)
    # A short list (at most ``scheduler.MAX_WAITING_FIRES``), changed only under the
    # schedule row's lock: see ``scheduler.release_waiting``.
    waiting_fires = models.JSONField(
        _("waiting fires"), default=list, blank=True, editable=False,
        help_text=_("overlap=queue: fire times waiting for the previous task to finish, oldest first."))
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True,
        **user_link(models.SET_NULL), related_name="job_schedules",
    )
    description = models.CharField(_("description"), max_length=500, blank=True, default="")
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    declared_in_code = models.BooleanField(
        _("declared in code"), default=False, editable=False,
        help_text=_("Created from @job(cron=...) or DJANGO_JOBS['CRON']; kept in sync by workers."),
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("cron schedule")
        verbose_name_plural = _("cron schedules")
        ordering = ("name",)
        indexes = [models.Index(fields=["enabled", "next_run"], name="django_jobs_cron_due_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.expression})"

    def timing(self) -> tuple[str, str, bool]:
        """What decides the fire times; a change recomputes ``next_run``."""
        return (self.expression, self.timezone, self.enabled)

    def clean(self) -> None:
        """Lengths, priority, queue, arguments and metadata, by field (admin forms show them)."""
        self.check_fields(settings_rules=True)

    def check_fields(self, *, settings_rules: bool = False) -> None:
        errors = validation.schedule_errors(self, settings_rules=settings_rules)
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs) -> None:
        """Validate every field (``ValidationError`` by field, nothing written), and keep
        ``next_run`` true.

        A new, edited or re-enabled schedule fires next at its first fire time
        after now: never for a time that passed while it was off or different.
        """
        self.check_fields()
        cron.expand(self.expression)
        cron.zone(self.timezone)
        stored = CronSchedule.objects.filter(pk=self.pk).values_list("expression", "timezone", "enabled").first()
        clear_waiting = self.overlap != self.Overlap.QUEUE
        if stored != self.timing() or (self.enabled and self.next_run is None):
            self.next_run = self.compute_next_run(timezone.now()) if self.enabled else None
            clear_waiting = True  # fire times of what the schedule was: like missed ones, not run
        if clear_waiting:
            self.waiting_fires = []
        if stored is not None and not kwargs.get("force_insert") and kwargs.get("update_fields") is None:
            # The scheduler counts skips and queues fires on the row meanwhile: an edit
            # made from an older copy must not write its stale values back.
            kwargs["update_fields"] = [field.name for field in self._meta.concrete_fields
                                       if not field.primary_key and field.name not in SCHEDULER_OWNED
                                       or field.name == "waiting_fires" and clear_waiting]
        super().save(*args, **kwargs)

    def compute_next_run(self, after):
        return cron.next_fire_after(self.expression, self.timezone, after)

    def enable(self) -> None:
        """Fire from the next fire time on (times missed while disabled are skipped)."""
        self.enabled = True
        self.save()

    def disable(self) -> None:
        self.enabled = False
        self.save()

    def run_now(self) -> "ScheduledTask":
        """Enqueue one task of this schedule now, outside its fire times.

        Raises ``ScheduleBusy`` (nothing enqueued) while the schedule's previous task is
        pending or running, unless ``overlap`` is ``"allow"``.
        """
        from .scheduler import run_now  # the scheduler imports the models

        return run_now(self)


class TaskEvent(models.Model):
    """One state change of a task, written in the change's transaction (``django_jobs.events``).

    Queue pauses and resumes are events too, with no task. Deleting a task deletes its events.
    """

    class Kind(models.TextChoices):
        STARTED = "started", _("started")
        COMPLETED = "completed", _("completed")
        RETRIED = "retried", _("failed, will retry")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")
        RECOVERED = "recovered", _("recovered from a lost worker")
        RELEASED = "released", _("given back unstarted")
        REQUEUED = "requeued", _("retried by an operator")
        PAUSED = "paused", _("queue paused")
        RESUMED = "resumed", _("queue resumed")

    # No foreign-key constraint: events are written beside the task's own change, and
    # deleted with it; a constraint would only add a lookup per row. The cascade is the
    # ORM's (PostgreSQL's trigger deletes them too, for raw SQL deletes).
    task = models.ForeignKey(ScheduledTask, verbose_name=_("task"), on_delete=models.CASCADE,
                             db_constraint=False, null=True, blank=True, related_name="events",
                             help_text=_("Empty for events of a queue."))
    kind = models.CharField(_("event"), max_length=20, choices=Kind.choices)
    at = models.DateTimeField(_("at"), help_text=_("When the change was written."))
    attempt = models.PositiveIntegerField(_("attempt"), default=0, help_text=_("The attempt it belongs to; 0: none yet."))
    worker_id = models.CharField(_("worker"), max_length=255, blank=True, default="")
    queue = models.CharField(_("queue"), max_length=100, blank=True, default="")
    message = models.TextField(_("message"), blank=True, default="",
                               help_text=_("The error of a failed attempt, the reason of a pause."))

    class Meta:
        verbose_name = _("task event")
        verbose_name_plural = _("task events")
        ordering = ("at", "id")

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"


class PausedQueue(models.Model):
    """A queue workers claim nothing from while this row exists (``pause_queue``)."""

    queue = models.CharField(_("queue"), max_length=100, unique=True)
    paused_at = models.DateTimeField(_("paused at"), default=timezone.now)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("paused by"), null=True, blank=True,
        **user_link(models.SET_NULL), related_name="+",
    )
    reason = models.CharField(_("reason"), max_length=500, blank=True, default="")

    class Meta:
        verbose_name = _("paused queue")
        verbose_name_plural = _("paused queues")
        ordering = ("queue",)

    def __str__(self) -> str:
        return self.queue


class FlowKey(models.Model):
    """One limit's key, locked by the claim that takes tasks under it.

    Not a counter: how many tasks of a key run is always counted from the task table,
    so a killed worker's slots come back when recovery moves its tasks out of
    ``running``. The row serializes the claims of one key across workers and hosts,
    and keeps a rate key's current window and the starts counted in it.
    """

    class Kind(models.TextChoices):
        CONCURRENCY = "c", _("concurrency")
        RATE = "r", _("rate")
        QUEUE = "q", _("queue")

    kind = models.CharField(_("kind"), max_length=1, choices=Kind.choices)
    key = models.CharField(_("key"), max_length=255)
    window = models.BigIntegerField(_("rate window"), default=0, help_text=_("Start of the current window, in periods since the epoch."))
    started = models.PositiveIntegerField(_("started in window"), default=0)
    used_at = models.DateTimeField(_("last claimed under"), default=timezone.now)

    class Meta:
        verbose_name = _("flow key")
        verbose_name_plural = _("flow keys")
        constraints = [models.UniqueConstraint(fields=["kind", "key"], name="django_jobs_one_flow_key")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.key}"


class Worker(models.Model):
    """A running worker process. Its heartbeat is the lease on every task it holds."""

    worker_id = models.CharField(_("worker id"), max_length=255, unique=True)
    hostname = models.CharField(_("host"), max_length=255)
    pid = models.PositiveIntegerField(_("process id"))
    queues = models.CharField(_("queues"), max_length=1000, blank=True, default="", help_text=_("Comma-separated; empty means all."))
    concurrency = models.PositiveIntegerField(_("concurrency"), default=1)
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    last_heartbeat = models.DateTimeField(_("last heartbeat"), default=timezone.now)
    holding = models.PositiveIntegerField(
        _("holding"), default=0,
        help_text=_("Tasks the worker holds (running, or claimed and waiting for a thread), at its last heartbeat."))
    progressed_at = models.DateTimeField(
        _("last progress"), default=timezone.now,
        help_text=_("When the worker last wrote an outcome, or held nothing. A worker that beats but does not "
                    "progress holds tasks that do not finish: a hung job, or a bug."))

    objects = WorkerQuerySet.as_manager()

    class Meta:
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ("worker_id",)

    def __str__(self) -> str:
        return self.worker_id


TOKEN_PREFIX = "djj_"
# How much of a token is kept in clear to tell tokens apart (``djj_`` and 8 characters).
TOKEN_HINT_LENGTH = 12
# ``last_used_at`` is written at most this often per token, not on every request.
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    """SHA-256 of a token. Tokens carry 256 random bits, so a fast hash is enough:
    nothing short of the token itself can be found from its hash."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the JSON API. Only its hash is stored; the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), **user_link(models.CASCADE), related_name="job_api_tokens",
        help_text=_("Requests with this token act as this user, with this user's permissions."),
    )
    name = models.CharField(_("name"), max_length=100, blank=True, default="", help_text=_("What the token is for."))
    hint = models.CharField(_("starts with"), max_length=TOKEN_HINT_LENGTH, editable=False,
                            help_text=_("The first characters of the token, to recognise it."))
    key_hash = models.CharField(_("hash"), max_length=64, unique=True, editable=False,
                                help_text=_("SHA-256 of the token; the token itself is never stored."))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True, help_text=_("Empty: never expires."))
    revoked_at = models.DateTimeField(_("revoked at"), null=True, blank=True, editable=False)

    class Meta:
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.hint}… ({self.name or self.user})"

    @classmethod
    def issue(cls, user: Any, name: str = "", expires_at: Any = None) -> tuple[ApiToken, str]:
        """Create a token for ``user``; return the row and the token, which is not kept."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = cls.objects.create(user=user, name=name, hint=token[:TOKEN_HINT_LENGTH],
                                 key_hash=hash_token(token), expires_at=expires_at)
        return row, token

    @classmethod
    def authenticate(cls, token: str) -> ApiToken | None:
        """The usable token row for ``token`` (not revoked, not expired, active user), or None."""
        now = timezone.now()
        from .users import with_users  # it reads these models: imported when first used

        # The user's state is checked on the row read, not in the query: the user may
        # live on another database than the token (``DJANGO_JOBS["DATABASE"]``).
        row = (with_users(cls.objects.all(), "user")
               .filter(key_hash=hash_token(token), revoked_at__isnull=True)
               .exclude(expires_at__lte=now).first())
        if row is None or not row.user.is_active:
            return None
        row.mark_used(now)
        return row

    def mark_used(self, now: Any) -> None:
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - TOKEN_USE_RESOLUTION)
        ApiToken.objects.filter(stale, pk=self.pk).update(last_used_at=now)

    def revoke(self) -> bool:
        """Stop the token from working; return False if it was revoked already."""
        now = timezone.now()
        revoked = ApiToken.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now) == 1
        self.refresh_from_db(fields=["revoked_at"])
        return revoked

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())
