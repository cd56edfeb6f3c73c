"""Admin for ScheduledTask: a list that stays fast on millions of rows.

It builds on ``TaskDetailAdmin`` (the change page, ``task_detail.py``), which builds
on ``TaskActionsAdmin`` (retry, cancel, run now, ``task_actions.py``).
"""

from __future__ import annotations

from typing import cast

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.urls import path, reverse
from django.utils.html import format_html

from ..models import ScheduledTask
from ..querysets import ScheduledTaskQuerySet, sees_all_tasks
from ..stats import flow
from . import display
from .dashboard import dashboard_view
from .filters import JobNameFilter, QueueFilter
from .paginator import CappedCountPaginator
from .queue_controls import ACTIONS, queue_control_view
from .task_detail import TaskDetailAdmin
from .user_columns import UserColumns
from .workers import live_worker_ids

Status = ScheduledTask.Status


class TaskChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        # One query for the whole page (only if it shows running tasks): mark tasks
        # whose worker stopped beating, instead of a query per row. Likewise the limits
        # holding pending tasks back: two queries, only if the page shows limited ones.
        tasks = list(self.result_list)
        live = live_worker_ids() if any(task.status == Status.RUNNING for task in tasks) else set()
        waiting = flow.waiting_reasons(tasks)
        for task in tasks:
            task.worker_is_live = task.worker_id in live
            task.waiting_reason = waiting.get(task.pk)


@admin.register(ScheduledTask)
class ScheduledTaskAdmin(UserColumns, TaskDetailAdmin):
    list_display = ("id", "job", "queue", "status_badge", "priority", "scheduled", "attempts", "duration", "worker")
    list_display_links = ("id",)
    list_filter = ("status", QueueFilter, JobNameFilter, ("created_at", admin.DateFieldListFilter))
    search_fields = ("identifier", "description", "error_message")
    search_help_text = "Searches job name, description and error message."
    # Counting a big table is the slowest query of a changelist: never count it all.
    show_full_result_count = False
    paginator = CappedCountPaginator
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    ordering = ("-id",)
    list_select_related = user_columns = ("owner",)

    class Media:
        css = {"all": ("django_jobs/admin.css",)}

    def get_changelist(self, request, **kwargs):
        return TaskChangeList

    def get_urls(self):
        dashboard = path("dashboard/", self.admin_site.admin_view(dashboard_view(self)), name="django_jobs_dashboard")
        controls = [path(f"dashboard/{action}-queue/", self.admin_site.admin_view(queue_control_view(action)),
                         name=f"django_jobs_{action}_queue") for action in ACTIONS]
        return [dashboard, *controls, *super().get_urls()]

    def has_add_permission(self, request) -> bool:
        return False  # tasks are enqueued by code, which validates the job and its arguments

    # -- who sees what: only their own tasks, unless superuser or see_all_scheduledtask -----
    def get_queryset(self, request):
        return cast(ScheduledTaskQuerySet, super().get_queryset(request)).visible_to(request.user)

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return (*shown, "owner_name") if sees_all_tasks(request.user) else shown

    def get_list_filter(self, request):
        shown = super().get_list_filter(request)
        return (*shown, "owner") if sees_all_tasks(request.user) else shown

    def get_list_select_related(self, request):
        return super().get_list_select_related(request) if sees_all_tasks(request.user) else False

    @admin.display(description="owner", ordering="owner")
    def owner_name(self, task):
        return task.owner.get_username() if task.owner_id else ""

    # -- list columns ------------------------------------------------------------------
    @admin.display(description="status", ordering="status")
    def status_badge(self, task):
        waiting = getattr(task, "waiting_reason", None)  # read for the whole page by TaskChangeList
        return format_html("{}{}", display.status_badge(task), display.waiting_note(waiting))

    @admin.display(description="not before", ordering="scheduled_at")
    def scheduled(self, task):
        return display.short_time(task.scheduled_at)

    @admin.display(description="job / latest error", ordering="identifier")
    def job(self, task):
        url = reverse("admin:django_jobs_scheduledtask_change", args=[quote(task.pk)], current_app=self.admin_site.name)
        error = display.error_summary(task)
        return format_html('<a href="{}">{}</a>{}', url, task.identifier,
                           format_html('<div class="djj-job-error">{}</div>', error) if error else "")

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
