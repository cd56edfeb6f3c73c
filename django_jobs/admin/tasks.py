"""Admin for ScheduledTask: a list that stays fast on millions of rows, and a detail
page that shows everything the row knows while letting nothing corrupt its state."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from .. import validation
from ..exceptions import InvalidJobOption
from ..models import ScheduledTask
from . import display
from .dashboard import dashboard_view
from .paginator import CappedCountPaginator
from .task_actions import NEXT_FIELD, TaskActionsMixin
from .workers import live_worker_ids

Status = ScheduledTask.Status

# A pending task may still be re-queued or re-timed; everything else is the
# worker's record (status, attempts, timestamps, outcome) and stays read-only.
EDITABLE_WHILE_PENDING = ("queue", "priority", "scheduled_at", "description", "max_retries")


class ScheduledTaskForm(forms.ModelForm):
    class Meta:
        model = ScheduledTask
        fields = EDITABLE_WHILE_PENDING

    def clean_queue(self):
        return checked(validation.queue, self.cleaned_data["queue"])

    def clean_priority(self):
        return checked(validation.priority, self.cleaned_data["priority"])


def checked(validate, value):
    try:
        return validate(value)
    except InvalidJobOption as error:
        raise ValidationError(str(error)) from None


class TaskChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        # One query for the whole page (only if it shows running tasks): mark tasks
        # whose worker stopped beating, instead of a query per row.
        tasks = list(self.result_list)
        live = live_worker_ids() if any(task.status == Status.RUNNING for task in tasks) else set()
        for task in tasks:
            task.worker_is_live = task.worker_id in live


@admin.register(ScheduledTask)
class ScheduledTaskAdmin(TaskActionsMixin, admin.ModelAdmin):
    form = ScheduledTaskForm
    list_display = ("id", "identifier", "queue", "status_badge", "priority", "scheduled_at", "attempts", "duration",
                    "worker")
    list_display_links = ("id", "identifier")
    list_filter = ("status", "queue", "identifier", ("created_at", admin.DateFieldListFilter))
    search_fields = ("identifier", "description", "error_message")
    search_help_text = "Searches job name, description and error message."
    # Counting a big table is the slowest query of a changelist: never count it all.
    show_full_result_count = False
    paginator = CappedCountPaginator
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    ordering = ("-id",)

    class Media:
        css = {"all": ("django_jobs/admin.css",)}

    def get_changelist(self, request, **kwargs):
        return TaskChangeList

    def get_urls(self):
        dashboard = path("dashboard/", self.admin_site.admin_view(dashboard_view(self)), name="django_jobs_dashboard")
        return [dashboard, *super().get_urls()]

    def has_add_permission(self, request) -> bool:
        return False  # tasks are enqueued by code, which validates the job and its arguments

    # -- list columns ------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, task):
        return display.status_badge(task)

    @admin.display(description="retries")
    def attempts(self, task):
        return display.attempts(task)

    @admin.display(description="duration")
    def duration(self, task):
        return display.task_duration(task)

    @admin.display(description="worker", ordering="worker_id")
    def worker(self, task):
        if task.status == Status.RUNNING and not getattr(task, "worker_is_live", True):
            return format_html('{} <span class="djj-badge djj-worker-stale">no heartbeat</span>', task.worker_id)
        return task.worker_id

    # -- detail page ---------------------------------------------------------------------
    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": EDITABLE_WHILE_PENDING})]
        sections = [
            (None, {"fields": ("identifier", "status_badge", "queue", "priority", "scheduled_at", "description",
                               "worker", "cron_link")}),
            ("Progress", {"fields": ("progress_bar",)}) if obj.progress else None,
            ("Error", {"fields": ("error_message_display", "traceback_display")}) if obj.error_message else None,
            ("Timeline", {"fields": ("timeline", "duration")}),
            ("Arguments and result", {"fields": ("args_json", "kwargs_json", "result_json")}),
            ("Retries", {"fields": ("attempts", "max_retries", "retry_delay", "backoff", "timeout")}),
            ("Record", {"classes": ("collapse",), "fields": ("unique_key", "cron_fire_time", "started_at",
                                                          "executed_at", "failed_at", "created_at", "updated_at")}),
        ]
        return [section for section in sections if section]

    def get_readonly_fields(self, request, obj=None):
        shown = [name for _, options in self.get_fieldsets(request, obj) for name in options["fields"]]
        editable = obj is not None and obj.status == Status.PENDING and self.has_change_permission(request, obj)
        return [name for name in shown if not (editable and name in EDITABLE_WHILE_PENDING)]

    @admin.display(description="cron schedule")
    def cron_link(self, task):
        if task.cron_schedule_id is None:
            return "—"
        url = reverse("admin:django_jobs_cronschedule_change", args=[quote(task.cron_schedule_id)],
                      current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, task.cron_schedule)

    @admin.display(description="progress")
    def progress_bar(self, task):
        return display.progress_bar(task.progress)

    @admin.display(description="timeline")
    def timeline(self, task):
        return display.timeline(task)

    @admin.display(description="error")
    def error_message_display(self, task):
        return display.preformatted(task.error_message, "djj-code djj-error")

    @admin.display(description="traceback")
    def traceback_display(self, task):
        return display.preformatted(task.traceback, "djj-code djj-traceback") or "(none recorded)"

    @admin.display(description="positional arguments")
    def args_json(self, task):
        return display.pretty_json(task.args)

    @admin.display(description="keyword arguments")
    def kwargs_json(self, task):
        return display.pretty_json(task.kwargs)

    @admin.display(description="result")
    def result_json(self, task):
        return display.pretty_json(task.result) if task.status == Status.COMPLETED else "—"

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["djj_buttons"] = self.detail_buttons(request, obj)
            context["djj_changelist_url"] = reverse("admin:django_jobs_scheduledtask_changelist",
                                                    current_app=self.admin_site.name)
            context["djj_next_field"] = NEXT_FIELD
            context["djj_next"] = request.path
            if obj.status != Status.PENDING:
                context.update(show_save=False, show_save_and_continue=False, show_save_and_add_another=False)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def detail_buttons(self, request, task) -> list[tuple[str, str]]:
        """(action, label) of the actions this user may take on this task now."""
        buttons = []
        if task.status in (Status.FAILED, Status.CANCELLED) and self.has_retry_permission(request):
            buttons.append(("retry_tasks", "Retry now"))
        if task.status == Status.PENDING and task.scheduled_at > timezone.now() and self.has_change_permission(request):
            buttons.append(("run_tasks_now", "Run now"))
        if task.status == Status.PENDING and self.has_cancel_permission(request):
            buttons.append(("cancel_tasks", "Cancel"))
        return buttons

    # -- saving a pending task -----------------------------------------------------------
    def save_model(self, request, obj, form, change):
        """Write only the edited fields, and only while the task is still pending:
        a worker may have claimed it since the form was drawn."""
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        if not fields:
            return
        updated = ScheduledTask.objects.filter(pk=obj.pk, status=Status.PENDING).update(
            **fields, updated_at=timezone.now()
        )
        request.djj_not_saved = not updated

    def log_change(self, request, obj, message):
        if not getattr(request, "djj_not_saved", False):
            return super().log_change(request, obj, message)
        return None

    def response_change(self, request, obj):
        if getattr(request, "djj_not_saved", False):
            self.message_user(request, "Not saved: a worker took the task (it is no longer pending). "
                                       "Nothing was changed.", messages.ERROR)
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)
