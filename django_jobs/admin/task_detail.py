"""The task page: everything the row knows, laid out for an operator, with the
actions its status allows; editable only while pending, and then only the queueing
fields, written with a conditional UPDATE so that an edit never overwrites a worker."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, quote
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from .. import validation
from ..exceptions import InvalidJobOption
from ..models import ScheduledTask, Worker
from ..stats import flow
from . import display
from .task_actions import NEXT_FIELD, TaskActionsAdmin
from .workers import silence_text, state_badge, worker_state

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


def is_limited(task: ScheduledTask) -> bool:
    """Under a limit of its own (a key) or of its queue (``QUEUE_LIMITS``)."""
    return bool(task.concurrency_key or task.rate_key) or task.queue in flow.current_queue_limits()


def checked(validate, value):
    try:
        return validate(value)
    except InvalidJobOption as error:
        raise ValidationError(str(error)) from None


class TaskDetailAdmin(TaskActionsAdmin):
    """The change page of ``ScheduledTaskAdmin``."""

    form = ScheduledTaskForm

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": EDITABLE_WHILE_PENDING})]
        sections = [
            (None, {"fields": ("overview",)}),
            ("Error", {"fields": ("error_message_display", "traceback_display")}) if obj.error_message else None,
            ("Progress", {"fields": ("progress_bar",)}) if obj.progress else None,
            ("Queueing", {"fields": (("queue", "priority", "max_retries"), "scheduled_at", "description")}),
            ("Flow control", {"fields": ("flow_limits",)}) if is_limited(obj) else None,
            ("Timeline", {"fields": ("timeline",)}),
            ("Arguments and result", {"fields": (("args_json", "kwargs_json"), "result_json")}),
            ("Retry policy", {"classes": ("collapse",), "fields": ("retry_delay", "backoff", "timeout")}),
            ("Record", {"classes": ("collapse",), "fields": ("owner", "unique_key", "cron_fire_time", "started_at",
                                                          "executed_at", "failed_at", "created_at", "updated_at")}),
        ]
        return [section for section in sections if section]

    def get_readonly_fields(self, request, obj=None):
        shown = flatten_fieldsets(self.get_fieldsets(request, obj))
        editable = obj is not None and obj.status == Status.PENDING and self.has_change_permission(request, obj)
        return [name for name in shown if not (editable and name in EDITABLE_WHILE_PENDING)]

    @admin.display(description="overview")
    def overview(self, task):
        return display.overview([
            ("Status", format_html("{}{}", display.status_badge(task),
                                   display.waiting_note(flow.waiting_reason(task)))),
            ("Job", task.identifier),
            ("Attempt", f"{task.attempt} of at most {task.max_retries + 1}"),
            ("Duration", display.task_duration(task)),
            ("Worker", self.worker_with_state(task)),
            ("Cron schedule", self.cron_link(task)),
            ("Enqueued", display.local_time(task.created_at)),
            ("Description", task.description),
        ])

    def worker_with_state(self, task):
        if task.status != Status.RUNNING or not task.worker_id:
            return task.worker_id
        worker = Worker.objects.filter(worker_id=task.worker_id).first()
        if worker is None:
            return format_html('{} <span class="djj-badge djj-worker-stale">not registered</span>', task.worker_id)
        state = worker_state(worker, timezone.now())
        return format_html("{} {} <span class=\"djj-quiet\">last heartbeat {}</span>", task.worker_id,
                           state_badge(state), silence_text(timezone.now() - worker.last_heartbeat))

    @admin.display(description="cron schedule")
    def cron_link(self, task):
        if task.cron_schedule_id is None:
            return "—"
        url = reverse("admin:django_jobs_cronschedule_change", args=[quote(task.cron_schedule_id)],
                      current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, task.cron_schedule)

    @admin.display(description="limits")
    def flow_limits(self, task):
        return display.flow_limits(flow.limits_of([task]).get(task.pk, []))

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
        # Wakes the workers of its (new) queue: it may be due sooner, or elsewhere.
        updated = ScheduledTask.objects.filter(pk=obj.pk).edit_pending(**fields)
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
