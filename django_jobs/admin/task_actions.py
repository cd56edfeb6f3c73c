"""Operator actions on tasks: retry, cancel, run now.

Each goes through the QuerySet or model method every other caller uses (a
conditional UPDATE, so a task that changed state since the page was drawn is
skipped, never clobbered) and reports "N changed, M skipped (why)".
"""

from __future__ import annotations

from collections import Counter

from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import get_text_list

from .. import task_actions
from ..models import ScheduledTask

Status = ScheduledTask.Status
NEXT_FIELD = "_djj_next"  # detail-page buttons send the page to come back to


class TaskActionsAdmin(admin.ModelAdmin):
    """The actions of ``ScheduledTaskAdmin``, each allowed by its own permission."""

    actions = ("retry_tasks", "cancel_tasks", "run_tasks_now")

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_scheduledtask")

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_scheduledtask")

    @admin.action(description="Retry selected failed or cancelled tasks", permissions=["retry"])
    def retry_tasks(self, request, queryset):
        before = statuses_of(queryset)
        # Task by task (ScheduledTask.retry): a task whose unique key another active
        # task holds is skipped and named, and does not hold back the others.
        eligible = (Status.FAILED, Status.CANCELLED)
        done = task_actions.retry_each(list(queryset.filter(status__in=eligible).order_by("pk")))
        self.report(request, "retried", len(done.changed), before, eligible=eligible,
                    why="only failed or cancelled tasks can be retried", refused=done.refused)
        return back_to_detail(request)

    @admin.action(description="Cancel selected pending tasks", permissions=["cancel"])
    def cancel_tasks(self, request, queryset):
        before = statuses_of(queryset)
        # One task at a time through ScheduledTask.cancel(), which sends job_cancelled
        # for exactly the tasks it cancelled.
        changed = sum(task.cancel() for task in queryset.filter(status=Status.PENDING).iterator())
        self.report(request, "cancelled", changed, before, eligible=(Status.PENDING,),
                    why="only pending tasks can be cancelled")
        return back_to_detail(request)

    @admin.action(description="Run selected pending tasks now", permissions=["change"])
    def run_tasks_now(self, request, queryset):
        before = statuses_of(queryset)
        changed = queryset.run_now()
        self.report(request, "moved to now", changed, before, eligible=(Status.PENDING,),
                    why="only pending tasks can be run now")
        return back_to_detail(request)

    def report(self, request, verb: str, changed: int, before: Counter, *, eligible, why: str,
               refused: dict[int, str] | None = None) -> None:
        self.message_user(request, action_message(verb, changed, before, eligible, why, refused or {}),
                          messages.SUCCESS if changed and not refused else messages.WARNING)


def statuses_of(queryset) -> Counter:
    """How many of the selected tasks are in each status, in one grouped query."""
    rows = queryset.order_by().values("status").annotate(count=Count("pk"))
    return Counter({row["status"]: row["count"] for row in rows})


def action_message(verb: str, changed: int, before: Counter, eligible, why: str,
                   refused: dict[int, str] | None = None) -> str:
    """'1 task retried, 2 skipped (1 pending, 1 running: only failed or cancelled tasks can be retried).'

    Tasks the database refused are named, each with its reason:
    '0 tasks retried, 1 skipped (task 17: its unique_key 'k' is held by active task 18 (pending)).'
    """
    refused = refused or {}
    text = f"{changed} {plural(changed)} {verb}"
    skipped = max(0, sum(before.values()) - changed)
    if not skipped:
        return f"{text}."
    reasons = [f"{count} {status}" for status, count in sorted(before.items()) if status not in eligible and count]
    raced = sum(before[status] for status in eligible) - changed - len(refused)
    if raced > 0:
        reasons.append(f"{raced} changed state meanwhile")
    groups = [f"{get_text_list(reasons, 'and')}: {why}"] if reasons else []
    groups += [f"task {pk}: {reason}" for pk, reason in refused.items()]
    return f"{text}, {skipped} skipped ({'; '.join(groups)})."


def plural(count: int) -> str:
    return "task" if count == 1 else "tasks"


def back_to_detail(request):
    """After a button on a task's page, return to that page instead of the list."""
    target = request.POST.get(NEXT_FIELD)
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return None
