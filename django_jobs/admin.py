"""A basic admin for both models; the full operator admin is built on top of it."""

from django.contrib import admin

from .models import CronSchedule, ScheduledTask, Worker


@admin.register(ScheduledTask)
class ScheduledTaskAdmin(admin.ModelAdmin):
    list_display = ("id", "identifier", "queue", "status", "priority", "scheduled_at", "retry_count", "max_retries", "worker_id")
    list_filter = ("status", "queue")
    search_fields = ("identifier", "description", "error_message")
    readonly_fields = ("status", "started_at", "executed_at", "failed_at", "error_message", "traceback", "result",
                       "worker_id", "retry_count", "progress", "active_unique_key", "created_at", "updated_at")
    actions = ("retry_tasks", "cancel_tasks")

    @admin.action(description="Retry selected failed or cancelled tasks", permissions=["change"])
    def retry_tasks(self, request, queryset):
        changed = queryset.retry_now()
        self.message_user(request, f"{changed} task(s) put back to pending.")

    @admin.action(description="Cancel selected pending tasks", permissions=["change"])
    def cancel_tasks(self, request, queryset):
        changed = queryset.cancel_pending()
        self.message_user(request, f"{changed} task(s) cancelled.")


@admin.register(CronSchedule)
class CronScheduleAdmin(admin.ModelAdmin):
    list_display = ("name", "job_name", "expression", "timezone", "enabled", "next_run", "last_run", "owner")
    list_filter = ("enabled", "declared_in_code")
    search_fields = ("name", "job_name", "description")
    readonly_fields = ("last_run", "next_run", "declared_in_code", "created_at", "updated_at")
    actions = ("enable_schedules", "disable_schedules")

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Enable selected schedules (from their next fire time)", permissions=["change"])
    def enable_schedules(self, request, queryset):
        for schedule in queryset.filter(enabled=False):
            schedule.enable()
        self.message_user(request, "Schedules enabled.")

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_schedules(self, request, queryset):
        for schedule in queryset.filter(enabled=True):
            schedule.disable()
        self.message_user(request, "Schedules disabled.")


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("worker_id", "hostname", "pid", "queues", "concurrency", "started_at", "last_heartbeat")
