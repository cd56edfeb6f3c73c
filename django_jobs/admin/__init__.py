"""Django admin for django_jobs, registered on the default admin site.

    tasks.py         ScheduledTask list; task_detail.py its change page
    task_actions.py  retry / cancel / run now, each behind its own permission
    paginator.py     a changelist paginator that never counts a whole big table
    filters.py       queue and job filters that never scan the whole table
    display.py       badges, JSON, traceback, progress bar, timeline
    schedules.py     CronSchedule: enable / disable / run now, next fire times, owners
    workers.py       Worker liveness from heartbeats
    queue_controls.py  pause / resume buttons and the paused-queue admin
    tokens.py        API tokens: list and revoke (created by manage.py jobs_api_token)
    dashboard.py     the dashboard page; metrics.py its queries, charts.py its SVG chart
"""

from .queue_controls import PausedQueueAdmin
from .schedules import CronScheduleAdmin
from .tasks import ScheduledTaskAdmin
from .tokens import ApiTokenAdmin
from .workers import WorkerAdmin

__all__ = ["ApiTokenAdmin", "CronScheduleAdmin", "PausedQueueAdmin", "ScheduledTaskAdmin", "WorkerAdmin"]
