"""Every endpoint, declared once: ``urls.py`` routes requests by it, ``views.py``
authenticates, checks permissions and cleans input by it, and ``openapi.py``
describes it. Paths are relative to where the project mounts the API."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpResponse

from .. import validation
from . import openapi, queues, schedules, tasks
from .fields import (
    ALLOWED_QUEUE,
    QUEUE_PATTERN,
    Field,
    Integer,
    Rule,
    Text,
    queue_pattern_refusal,
    spec_schema,
)
from .http import Call, json_response
from .paging import MAX_ID

# Path parameters: Django converter and field.
PATH_PARAMETERS: dict[str, tuple[str, Field]] = {
    "id": ("int", Integer(minimum=1, maximum=MAX_ID)),
    "name": ("str", Text(min_length=1, max_length=validation.MAX_QUEUE_LENGTH, one_of=ALLOWED_QUEUE,
                         pattern=QUEUE_PATTERN, mismatch=queue_pattern_refusal, description="Queue name.")),
}


def perms(model: str, *actions: str) -> tuple[str, ...]:
    return tuple(f"django_jobs.{action}_{model}" for action in actions)


# Reading is allowed with view or change, as in Django's admin.
VIEW_TASKS = perms("scheduledtask", "view", "change")
VIEW_SCHEDULES = perms("cronschedule", "view", "change")


@dataclass(frozen=True)
class Operation:
    """One method on one path: who may call it, what it takes, what it answers."""

    method: str
    path: str
    handler: Callable[[Call], HttpResponse]
    summary: str
    tag: str
    responses: dict[int, str | None]  # status -> components schema name (None: no body)
    permissions: tuple[str, ...] = ()
    public: bool = False
    body: Mapping[str, Field] | None = None
    partial: bool = False
    rules: tuple[Rule, ...] = ()  # checks of several body fields together
    query: Mapping[str, Field] = field(default_factory=dict)
    conflict: str = ""  # when set, the operation may answer 409 for this reason

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def description(self) -> str:
        return " ".join((self.handler.__doc__ or "").split())

    def body_schema(self) -> dict[str, Any]:
        """The JSON Schema of the body, from the same fields and rules that check it."""
        return spec_schema(self.body or {}, partial=self.partial, rules=self.rules)


def serve_openapi(call: Call) -> HttpResponse:
    """This document."""
    # Where this request found the API: right under any mount point or script prefix.
    base = call.request.path.removesuffix("/openapi.json")
    return json_response(openapi.document(OPERATIONS, PATH_PARAMETERS, base))


ACTION: dict[str, Field] = {}  # actions take no input; an empty body or {} is fine

OPERATIONS: list[Operation] = [
    Operation("GET", "/openapi.json", serve_openapi, "The OpenAPI 3.1 description of this API", "meta",
              {200: "Document"}, public=True),
    Operation("GET", "/jobs", tasks.list_jobs, "List the registered jobs", "tasks", {200: "Jobs"},
              VIEW_TASKS),
    Operation("GET", "/tasks", tasks.list_tasks, "List tasks", "tasks", {200: "TaskPage"}, VIEW_TASKS,
              query=tasks.TASK_QUERY),
    Operation("POST", "/tasks", tasks.create_task, "Schedule a job now, after a delay, or at a time", "tasks",
              {201: "Task", 200: "Task"}, perms("scheduledtask", "add"), body=tasks.TASK_INPUT,
              rules=tasks.TASK_RULES, conflict="An active task of another user holds the unique_key."),
    Operation("GET", "/tasks/{id}", tasks.get_task, "A task's status, result, error and attempts", "tasks",
              {200: "Task"}, VIEW_TASKS),
    Operation("GET", "/tasks/{id}/events", tasks.task_events, "A task's history: its event trail", "tasks",
              {200: "TaskEvents"}, VIEW_TASKS),
    Operation("POST", "/tasks/{id}/cancel", tasks.cancel_task, "Cancel a pending task", "tasks",
              {200: "Task"}, perms("scheduledtask", "cancel"), body=ACTION, conflict="The task is not pending."),
    Operation("POST", "/tasks/{id}/retry", tasks.retry_task, "Retry a failed or cancelled task", "tasks",
              {200: "Task"}, perms("scheduledtask", "retry"), body=ACTION,
              conflict="The task is not failed or cancelled, or another active task holds its unique_key."),
    Operation("GET", "/statistics", tasks.statistics, "Counts by status, job and queue", "tasks",
              {200: "Statistics"}, VIEW_TASKS, query=tasks.STATISTICS_QUERY),
    Operation("GET", "/schedules", schedules.list_schedules, "List cron schedules", "schedules",
              {200: "SchedulePage"}, VIEW_SCHEDULES, query=schedules.SCHEDULE_QUERY),
    Operation("POST", "/schedules", schedules.create_schedule, "Create a cron schedule", "schedules",
              {201: "Schedule"}, perms("cronschedule", "add"), body=schedules.SCHEDULE_INPUT,
              rules=schedules.CREATE_RULES, conflict="A schedule of that name exists."),
    Operation("GET", "/schedules/{id}", schedules.get_schedule, "A cron schedule", "schedules",
              {200: "Schedule"}, VIEW_SCHEDULES),
    Operation("PATCH", "/schedules/{id}", schedules.update_schedule, "Change a cron schedule", "schedules",
              {200: "Schedule"}, perms("cronschedule", "change"), body=schedules.SCHEDULE_INPUT, partial=True,
              rules=schedules.CHANGE_RULES, conflict="A schedule of that name exists, or the schedule is declared "
              "in code (then only enabled can change)."),
    Operation("DELETE", "/schedules/{id}", schedules.delete_schedule, "Delete a cron schedule", "schedules",
              {204: None}, perms("cronschedule", "delete"), conflict="The schedule is declared in code."),
    Operation("POST", "/schedules/{id}/enable", schedules.enable_schedule, "Enable a cron schedule", "schedules",
              {200: "Schedule"}, perms("cronschedule", "change"), body=ACTION),
    Operation("POST", "/schedules/{id}/disable", schedules.disable_schedule, "Disable a cron schedule",
              "schedules", {200: "Schedule"}, perms("cronschedule", "change"), body=ACTION),
    Operation("POST", "/schedules/{id}/run", schedules.run_schedule, "Run a cron schedule now", "schedules",
              {201: "Task"}, perms("cronschedule", "change"), body=ACTION,
              conflict="The schedule's previous task is pending or running and its overlap is skip or queue."),
    Operation("GET", "/queues/paused", queues.list_paused, "List paused queues", "queues",
              {200: "PausedQueues"}, perms("pausedqueue", "view", "add", "delete")),
    Operation("POST", "/scheduler/pause", queues.pause_all, "Pause every queue, and cron", "queues",
              {200: "SchedulerChange"}, perms("pausedqueue", "add"), body=queues.PAUSE_INPUT),
    Operation("POST", "/scheduler/resume", queues.resume_all, "Resume after pausing everything", "queues",
              {200: "SchedulerChange"}, perms("pausedqueue", "delete"), body=ACTION),
    Operation("POST", "/queues/{name}/pause", queues.pause, "Pause a queue", "queues",
              {200: "QueueChange"}, perms("pausedqueue", "add"), body=queues.PAUSE_INPUT),
    Operation("POST", "/queues/{name}/resume", queues.resume, "Resume a queue", "queues",
              {200: "QueueChange"}, perms("pausedqueue", "delete"), body=ACTION),
]


def by_path() -> dict[str, dict[str, Operation]]:
    """Operations grouped by path, in declaration order."""
    grouped: dict[str, dict[str, Operation]] = {}
    for operation in OPERATIONS:
        grouped.setdefault(operation.path, {})[operation.method] = operation
    return grouped


def django_route(path: str) -> str:
    """``/tasks/{id}/cancel`` -> ``tasks/<int:id>/cancel``."""
    route = path.lstrip("/")
    for name, (converter, _) in PATH_PARAMETERS.items():
        route = route.replace("{" + name + "}", f"<{converter}:{name}>")
    return route


def route_name(path: str) -> str:
    """``/tasks/{id}/cancel`` -> ``tasks-id-cancel``; ``/openapi.json`` -> ``openapi``."""
    return path.strip("/").removesuffix(".json").replace("/", "-").replace("{", "").replace("}", "")

