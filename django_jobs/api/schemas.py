"""JSON Schema (OpenAPI 3.1 dialect) of every answer, as ``components.schemas``.

Objects are closed (``additionalProperties: false``) so that a field added to a
serializer without its schema fails the tests.
"""

from __future__ import annotations

from typing import Any

from ..models import ScheduledTask

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
DATETIME: dict[str, Any] = {"type": "string", "format": "date-time"}
ANY: dict[str, Any] = {}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def closed(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """An object with exactly these properties, all present."""
    schema = {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
    if description:
        schema["description"] = description
    return schema


def page(item: str) -> dict[str, Any]:
    return closed({
        "results": {"type": "array", "items": ref(item)},
        "next_cursor": nullable(INTEGER),
        "next": nullable(STRING),
    }, "One page, newest first for tasks. `next` is the URL of the following page, null on the last.")


TASK_SUMMARY = {
    "id": INTEGER,
    "job": {"type": "string", "description": "The job's registered name (the row's `identifier`)."},
    "status": {"type": "string", "enum": list(ScheduledTask.Status.values)},
    "queue": STRING,
    "priority": INTEGER,
    "description": STRING,
    "args": {"type": "array"},
    "kwargs": {"type": "object"},
    "scheduled_at": {**DATETIME, "description": "Not before this time."},
    "attempt": {"type": "integer", "description": "Number of the current or latest attempt, 1 for the first."},
    "retry_count": INTEGER,
    "max_retries": INTEGER,
    "started_at": nullable(DATETIME),
    "executed_at": {**nullable(DATETIME), "description": "When it completed."},
    "failed_at": {**nullable(DATETIME), "description": "When its latest attempt failed."},
    "duration_ms": nullable(NUMBER),
    "error_message": STRING,
    "result": {**ANY, "description": "The job's return value (JSON), null until it completes."},
    "progress": {**nullable(ref("Progress")), "description": "Set by jobs with takes_context through set_progress."},
    "worker_id": STRING,
    "unique_key": nullable(STRING),
    "concurrency_key": {**nullable(STRING), "description": "At most concurrency_limit tasks of this key run at "
                                                          "once (flow control); null: no concurrency limit."},
    "concurrency_limit": nullable(INTEGER),
    "rate_key": {**nullable(STRING), "description": "Tasks of this key start at most at `rate`; null: no rate limit."},
    "rate": {**nullable(STRING), "description": "At most so many starts per second, minute or hour under "
                                              "rate_key: \"100/m\"; null: no rate limit."},
    "waiting": {**nullable(STRING), "description": "Why a pending, due task has not started: the full limits that "
                                                  "hold it back, as \"waiting: concurrency account:7 (2/2)\" or "
                                                  "\"waiting: rate stripe (100/100 this minute)\" (its keys' and its "
                                                  "queue's, QUEUE_LIMITS). Null when no limit holds it back."},
    "owner": {**nullable(STRING), "description": "Username of the owner: the user who created it through the API."},
    "cron_schedule": {**nullable(INTEGER), "description": "Id of the schedule that fired it."},
    "cron_fire_time": nullable(DATETIME),
    "created_at": DATETIME,
    "updated_at": DATETIME,
}

TASK = {
    **TASK_SUMMARY,
    "traceback": STRING,
    "attempts": {"type": "array", "items": ref("Attempt"), "description": "One entry per failed attempt."},
    "retry_delay": {"type": "number", "description": "Seconds: the base of the backoff."},
    "backoff": {"type": "string", "description": "exponential, fixed or custom."},
    "timeout": {**nullable(NUMBER), "description": "Seconds."},
}

SCHEDULE = {
    "id": INTEGER,
    "name": STRING,
    "job": {"type": "string", "description": "The job's registered name (the row's `job_name`)."},
    "expression": STRING,
    "timezone": {"type": "string", "description": "IANA name; empty means the project's TIME_ZONE."},
    "args": {"type": "array"},
    "kwargs": {"type": "object"},
    "queue": STRING,
    "priority": INTEGER,
    "enabled": BOOLEAN,
    "description": STRING,
    "metadata": {"type": "object"},
    "last_run": nullable(DATETIME),
    "next_run": nullable(DATETIME),
    "overlap": {"type": "string", "enum": ["skip", "queue", "allow"],
                "description": "What a fire does while the previous task is pending or running."},
    "skipped_fires": {**INTEGER, "description": "Fires not enqueued because the previous task was active."},
    "last_skipped_at": nullable(DATETIME),
    "waiting_fires": {"type": "array", "items": DATETIME,
                      "description": "overlap=queue: fire times waiting for the previous task, oldest first."},
    "upcoming": {"type": "array", "items": DATETIME, "description": "The next fire times; empty when disabled."},
    "owner": {**nullable(STRING), "description": "Username of the owner."},
    "declared_in_code": {"type": "boolean", "description": "Only `enabled` can change on such a schedule."},
    "created_at": DATETIME,
    "updated_at": DATETIME,
}

STATUS_COUNTS = {status: INTEGER for status in ScheduledTask.Status.values}

# Any JSON value whose strings and keys hold no NUL character (request bodies refuse
# it: PostgreSQL cannot store it). Nesting deeper than body.MAX_DEPTH is refused too,
# which JSON Schema cannot say without 32 copies of this.
NO_NUL_TEXT: dict[str, Any] = {"type": "string", "pattern": "^[^\\u0000]*$"}
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value without the NUL character in its strings, nested at most 32 levels deep.",
    "anyOf": [
        {"type": ["null", "boolean", "number"]},
        NO_NUL_TEXT,
        {"type": "array", "items": ref("JsonValue")},
        {"type": "object", "propertyNames": NO_NUL_TEXT, "additionalProperties": ref("JsonValue")},
    ],
}

COMPONENTS: dict[str, Any] = {
    "JsonValue": JSON_VALUE_SCHEMA,
    "Error": closed({"errors": {
        "type": "object", "minProperties": 1,
        "additionalProperties": {"type": "array", "items": STRING, "minItems": 1},
        "description": "Messages by the name of the field at fault (or body, authorization, permission, ...).",
    }}),
    "Progress": {"type": "object", "properties": {"done": NUMBER, "total": nullable(NUMBER)}, "required": ["done"]},
    "Attempt": closed({
        "attempt": INTEGER, "worker_id": STRING, "started_at": nullable(STRING), "finished_at": STRING,
        "error": STRING, "exception_class": STRING, "traceback": STRING,
    }),
    "TaskSummary": closed(TASK_SUMMARY),
    "Task": closed(TASK),
    "TaskPage": page("TaskSummary"),
    "Schedule": closed(SCHEDULE),
    "SchedulePage": page("Schedule"),
    "StatusCounts": closed(STATUS_COUNTS),
    # Open: it is django_jobs.get_statistics() as it is, which may gain keys.
    "Statistics": {**closed({
        **STATUS_COUNTS,
        "total": INTEGER,
        "waiting": {**INTEGER, "description": "pending and due now."},
        "delayed": {**INTEGER, "description": "pending, due later (scheduled in the future)."},
        "active": {**INTEGER, "description": "running (the same as running)."},
        "success_rate": {**nullable(NUMBER), "description": "completed / (completed + failed)."},
        "failure_rate": {**nullable(NUMBER), "description": "failed / (completed + failed)."},
        "average_duration_ms": nullable(NUMBER),
        "by_job": {"type": "object", "additionalProperties": ref("StatusCounts")},
        "by_queue": {"type": "object", "additionalProperties": ref("StatusCounts")},
        "paused_queues": {"type": "array", "items": STRING},
        "all_paused": {**BOOLEAN, "description": "Every queue is paused (pause_all, POST scheduler/pause)."},
    }, "django_jobs.get_statistics(queue)."), "additionalProperties": True},
    "PausedQueue": closed({"queue": STRING, "paused_at": DATETIME, "paused_by": nullable(STRING), "reason": STRING}),
    "PausedQueues": closed({
        "results": {"type": "array", "items": ref("PausedQueue")},
        "all": {**nullable(ref("PausedQueue")),
                "description": "The pause of every queue (queue \"*\", POST scheduler/pause), or null."},
    }),
    "SchedulerChange": closed({
        "paused": {"type": "boolean", "description": "Whether every queue is paused now."},
        "changed": {"type": "boolean", "description": "False when it already was in that state."},
        "pause": {**nullable(ref("PausedQueue")), "description": "The pause in force, or null."},
    }),
    "TaskEvent": closed({
        "at": DATETIME,
        "kind": {"type": "string", "description": "enqueued, cron_fire, due, started, completed, retried, failed, "
                                                  "recovered, released, cancelled or requeued."},
        "label": {"type": "string", "description": "The event in words, as admin's timeline shows it."},
        "attempt": nullable(INTEGER),
        "worker_id": STRING,
        "message": {"type": "string", "description": "The error of a failed attempt."},
    }),
    "TaskEvents": closed({
        "task": INTEGER,
        "source": {"type": "string", "enum": ["trail", "row"],
                   "description": "trail: the task's event rows; row: what the task row records (a task "
                                  "from before the trail, or changed while it was off)."},
        "results": {"type": "array", "items": ref("TaskEvent")},
    }),
    "QueueChange": closed({
        "queue": STRING,
        "paused": BOOLEAN,
        "changed": {"type": "boolean", "description": "False when the queue already was in that state."},
    }),
    "Job": closed({
        "name": STRING, "queue": STRING, "priority": INTEGER, "max_retries": INTEGER,
        "timeout": nullable(NUMBER), "cron": nullable(STRING),
        "parameters": {"type": "array", "items": STRING, "description": "Names as Python writes them: a, b=1, *args."},
    }),
    "Document": {"type": "object", "required": ["openapi", "info", "paths"], "description": "OpenAPI 3.1."},
    "Jobs": closed({"results": {"type": "array", "items": ref("Job")}}),
}
