"""Pause and resume buttons of the dashboard, and the paused-queue list in admin.

Pausing needs the ``add_pausedqueue`` permission, resuming ``delete_pausedqueue``:
an operator may be trusted to stop a queue without being trusted to restart it.
Both go through ``django_jobs.queues``, as the API and the shell do.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import reverse

from ..exceptions import InvalidJobOption
from ..models import PausedQueue
from ..queues import pause_all, pause_queue, resume_all, resume_queue
from .user_columns import UserColumns

ACTIONS = {"pause": "add", "resume": "delete"}


def can_control(user, action: str) -> bool:
    return user.has_perm(f"django_jobs.{ACTIONS[action]}_pausedqueue")


def queue_control_view(action: str):
    """A POST-only admin view that pauses or resumes the queue named in the form."""

    def control(request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_control(request.user, action):
            raise PermissionDenied
        name = request.POST.get("queue", "").strip()
        apply(request, action, name)
        return HttpResponseRedirect(reverse("admin:django_jobs_dashboard"))

    return control


def apply(request, action: str, name: str) -> None:
    if request.POST.get("all") == "1":
        apply_to_all(request, action)
        return
    try:
        if action == "pause":
            changed = pause_queue(name, by=request.user, reason=request.POST.get("reason", "")[:500])
        else:
            changed = resume_queue(name)
    except InvalidJobOption as error:
        messages.error(request, f"Could not {action} queue: {error}")
        return
    done = "paused: workers claim nothing from it until it is resumed" if action == "pause" else "resumed"
    if changed:
        messages.success(request, f"Queue “{name}” {done}.")
    else:
        messages.warning(request, f"Queue “{name}” was already {'paused' if action == 'pause' else 'running'}; nothing changed.")


def apply_to_all(request, action: str) -> None:
    if action == "pause":
        changed = pause_all(by=request.user, reason=request.POST.get("reason", "")[:500])
        done, already = "Every queue paused: workers claim nothing and fire no cron schedule until resumed.", "paused"
    else:
        changed = resume_all()
        done, already = "Every queue resumed (queues paused one by one stay paused).", "running"
    if changed:
        messages.success(request, done)
    else:
        messages.warning(request, f"Every queue was already {already}; nothing changed.")


@admin.register(PausedQueue)
class PausedQueueAdmin(UserColumns, admin.ModelAdmin):
    """Adding a row pauses its queue; deleting it resumes the queue (and wakes workers)."""

    list_display = ("queue", "paused_at", "paused_by", "reason")
    list_select_related = user_columns = ("paused_by",)
    fields = ("queue", "reason")
    search_fields = ("queue", "reason")

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a pause is on or off; there is nothing to edit

    def save_model(self, request, obj, form, change) -> None:
        pause_queue(obj.queue, by=request.user, reason=obj.reason)
        obj.pk = PausedQueue.objects.get(queue=obj.queue).pk  # for the "added" message and log entry

    def delete_model(self, request, obj) -> None:
        resume_queue(obj.queue)

    def delete_queryset(self, request, queryset) -> None:
        for name in list(queryset.values_list("queue", flat=True)):
            resume_queue(name)
