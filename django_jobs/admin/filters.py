"""Sidebar filters for the task list whose choices cost no scan of the task table.

Django's field filters list ``SELECT DISTINCT <column>`` over the whole table, a scan
per filter: on a big table that was most of the page's time (figures: bench/README.md,
"Measured design choices").
These take their choices from the code (registered jobs, configured queues) and
from the active tasks only, which the claim indexes cover.
"""

from __future__ import annotations

from django.contrib import admin

from ..conf import jobs_settings
from ..models import ScheduledTask
from ..registry import registry


def active_values(field: str) -> set[str]:
    """Distinct ``field`` of pending and running tasks: bounded by the backlog, not the table."""
    active = ScheduledTask.objects.filter(status__in=ScheduledTask.ACTIVE_STATUSES).order_by()
    return set(active.values_list(field, flat=True).distinct())


class JobNameFilter(admin.SimpleListFilter):
    title = "job name"
    parameter_name = "identifier"

    def lookups(self, request, model_admin):
        names = set(registry) | active_values("identifier")
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(identifier=self.value()) if self.value() else queryset


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request, model_admin):
        names = {jobs_settings.DEFAULT_QUEUE, *(jobs_settings.QUEUES or ())}
        names |= {registry.get(name).resolved_queue for name in registry} | active_values("queue")
        return [(name, name) for name in sorted(names)]

    def queryset(self, request, queryset):
        return queryset.filter(queue=self.value()) if self.value() else queryset
