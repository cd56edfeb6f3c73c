"""Admin for CronSchedule: control (enable, disable, run now), the next fire times,
validation with clear messages, and per-owner visibility for non-superusers."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from .. import cron
from ..exceptions import DjangoJobsError, ScheduleBusy
from ..models import CronSchedule, ScheduledTask
from ..registry import registry
from .display import human_duration, short_time, status_badge
from .user_columns import UserColumns

UPCOMING = 5
# Rows declared in code are rewritten from the code at each worker start, so only
# ``enabled`` is theirs to change here (a schedule an operator disables stays off).
CODE_OWNED = ("name", "job_name", "expression", "timezone", "args", "kwargs", "queue", "priority", "description",
              "overlap")


class CronScheduleForm(forms.ModelForm):
    class Meta:
        model = CronSchedule
        fields = "__all__"
        widgets = {name: forms.Textarea(attrs={"rows": 3, "cols": 40}) for name in ("args", "kwargs", "metadata")}

    def clean_job_name(self):
        name = self.cleaned_data["job_name"]
        if registry.find(name) is None:  # registered, or a Django Task found by its module path
            known = ", ".join(sorted(registry)[:20]) or "none"
            raise ValidationError(f"No job named {name!r} is registered. Registered jobs: {known}.")
        return name

    def clean(self):
        cleaned = super().clean() or {}
        name = cleaned.get("job_name")
        job = registry.find(name) if name else None
        if job is not None and "args" in cleaned and "kwargs" in cleaned:
            try:
                job.check_arguments(cleaned["args"] or [], cleaned["kwargs"] or {})
            except DjangoJobsError as error:
                raise ValidationError(str(error)) from None
        return cleaned


@admin.register(CronSchedule)
class CronScheduleAdmin(UserColumns, admin.ModelAdmin):
    form = CronScheduleForm
    list_display = ("name", "job_name", "timing", "enabled", "next_fire", "last_fire", "last_task", "owner")
    list_filter = ("enabled", "overlap", "declared_in_code", "queue")
    list_select_related = user_columns = ("owner",)
    search_fields = ("name", "job_name", "description")
    actions = ("enable_schedules", "disable_schedules", "run_schedules_now")
    raw_id_fields = ("owner",)
    fieldsets = (
        (None, {"fields": ("name", "job_name", ("expression", "timezone"), "enabled", "overlap", "upcoming")}),
        ("Task", {"fields": (("args", "kwargs"), ("queue", "priority"), "description")}),
        ("Record", {"fields": ("owner", "declared_in_code", ("last_run", "next_run"),
                               ("skipped_fires", "last_skipped_at"), "waiting", ("created_at", "updated_at"))}),
        ("Metadata", {"classes": ("collapse",), "fields": ("metadata",)}),
    )

    class Media:
        css = {"all": ("django_jobs/admin.css",)}

    # -- who sees what -------------------------------------------------------------------
    def get_queryset(self, request):
        # The status of each schedule's latest fired task, read through the
        # (cron_schedule, cron_fire_time) unique index: one subquery, no query per row.
        latest = ScheduledTask.objects.filter(cron_schedule=OuterRef("pk"), cron_fire_time__isnull=False)
        queryset = super().get_queryset(request).annotate(
            last_task_status=Subquery(latest.order_by("-cron_fire_time").values("status")[:1]),
            last_task_id=Subquery(latest.order_by("-cron_fire_time").values("pk")[:1]),
        )
        if request.user.is_superuser:
            return queryset
        return queryset.filter(owner=request.user)

    def owns(self, request, schedule) -> bool:
        return schedule is None or request.user.is_superuser or schedule.owner_id == request.user.pk

    def has_change_permission(self, request, obj=None) -> bool:
        return super().has_change_permission(request, obj) and self.owns(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return super().has_delete_permission(request, obj) and self.owns(request, obj)

    def get_readonly_fields(self, request, obj=None):
        readonly = ["upcoming", "declared_in_code", "last_run", "next_run", "skipped_fires", "last_skipped_at",
                    "waiting", "created_at", "updated_at"]
        if not request.user.is_superuser:
            readonly.append("owner")
        if obj is not None and obj.declared_in_code:
            readonly += CODE_OWNED
        return readonly

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return shown if request.user.is_superuser else [name for name in shown if name != "owner"]

    # -- columns and fields --------------------------------------------------------------
    @admin.display(description="schedule", ordering="expression")
    def timing(self, schedule):
        zone = schedule.timezone or f"{cron.zone('').key} (default)"
        overlap = f"overlap: {schedule.overlap}"
        if schedule.skipped_fires:
            overlap += f", {schedule.skipped_fires} skipped"
        if schedule.waiting_fires:
            overlap += f", {len(schedule.waiting_fires)} waiting"
        return format_html('<code>{}</code><div class="djj-quiet">{}</div><div class="djj-quiet">{}</div>',
                           schedule.expression, zone, overlap)

    @admin.display(description="waiting fires")
    def waiting(self, schedule):
        if not schedule.waiting_fires:
            return "none"
        return format_html_join(", ", "{}", ((short_time(datetime.fromisoformat(moment)),)
                                             for moment in schedule.waiting_fires))

    @admin.display(description="next run", ordering="next_run")
    def next_fire(self, schedule):
        if not schedule.next_run:
            return "—"
        return format_html('{} <span class="djj-quiet">in {}</span>', short_time(schedule.next_run),
                           human_duration(max(schedule.next_run - timezone.now(), timedelta(0))))

    @admin.display(description="last run", ordering="last_run")
    def last_fire(self, schedule):
        return short_time(schedule.last_run) or "—"

    @admin.display(description="last fired task")
    def last_task(self, schedule):
        if not getattr(schedule, "last_task_id", None):
            return "—"
        url = reverse("admin:django_jobs_scheduledtask_change", args=[quote(schedule.last_task_id)],
                      current_app=self.admin_site.name)
        task = ScheduledTask(status=schedule.last_task_status)
        return format_html('<a href="{}">{}</a>', url, status_badge(task))

    @admin.display(description=f"next {UPCOMING} fire times")
    def upcoming(self, schedule):
        if schedule is None or not schedule.pk:
            return "Shown once the schedule is saved."
        try:
            times = cron.upcoming(schedule.expression, schedule.timezone, timezone.now(), UPCOMING)
        except (ValidationError, ValueError) as error:
            return format_html('<span class="errornote">{}</span>', error)
        zone, now = cron.zone(schedule.timezone), timezone.now()
        items = format_html_join("", '<li>{} <span class="djj-quiet">in {}</span></li>', (
            (moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"), human_duration(moment - now))
            for moment in times))
        note = "" if schedule.enabled else format_html('<p class="djj-quiet">{}</p>', "Disabled: it will not fire.")
        return format_html('<ol class="djj-fire-times">{}</ol>{}', items, note)

    # -- actions -------------------------------------------------------------------------
    @admin.action(description="Enable selected schedules (from their next fire time)", permissions=["change"])
    def enable_schedules(self, request, queryset):
        self.switch(request, queryset, enabled=True)

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request, queryset):
        self.switch(request, queryset, enabled=False)

    def switch(self, request, queryset, enabled: bool) -> None:
        changed = skipped = 0
        for schedule in queryset:
            if schedule.enabled == enabled:
                skipped += 1
                continue
            schedule.enable() if enabled else schedule.disable()
            changed += 1
        verb = "enabled" if enabled else "disabled"
        text = f"{changed} schedule{'' if changed == 1 else 's'} {verb}"
        if skipped:
            text += f", {skipped} skipped (already {verb})"
        self.message_user(request, f"{text}.", messages.SUCCESS if changed else messages.WARNING)

    @admin.action(description="Run selected schedules now (one extra task each)", permissions=["change"])
    def run_schedules_now(self, request, queryset):
        tasks = []
        for schedule in queryset:
            try:
                tasks.append(schedule.run_now())
            except ScheduleBusy as busy:
                self.message_user(request, str(busy), messages.WARNING)
        links = format_html_join(", ", '<a href="{}">#{}</a>', (
            (reverse("admin:django_jobs_scheduledtask_change", args=[task.pk], current_app=self.admin_site.name),
             task.pk) for task in tasks))
        count = len(tasks)
        self.message_user(request, format_html("{} task{} enqueued: {}.", count, "" if count == 1 else "s", links))
