"""Task operations: schedule (now, delayed, at), status, list, cancel, retry,
statistics, and the registered jobs. Thin shells over ``django_jobs``.

A task created here belongs to the caller (``owner``). A user who is not a superuser
and lacks ``see_all_scheduledtask`` sees and acts only on the tasks they own: anyone
else's is answered 404, as if it did not exist; the others see every task and can
filter by ``?owner=<username>``."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Field
from django.http import HttpResponse

import django_jobs

from .. import validation
from ..exceptions import DjangoJobsError, InvalidJobOption, JobArgumentsError, UniqueKeyConflict, UnknownJob
from ..models import ScheduledTask
from ..registry import registry
from ..timeline import task_timeline
from ..users import user_is, with_users
from .calls import JobCall
from .fields import (
    ALLOWED_QUEUE,
    QUEUE_PATTERN,
    REGISTERED_JOB,
    Array,
    Choices,
    DateTime,
    Exclusive,
    Integer,
    Number,
    Object,
    Priority,
    Text,
    queue_pattern_refusal,
)
from .http import ApiError, Call, bad_input, json_response, not_found
from .paging import MAX_ID, PAGE_QUERY, page
from .serializers import job as serialize_job
from .serializers import task_detail, task_summaries

ENQUEUE_OPTIONS = ("queue", "priority", "description", "max_retries", "unique_key")



def column_length(name: str) -> int:
    """The ``max_length`` of a ScheduledTask column: the database's limit is the API's."""
    found = ScheduledTask._meta.get_field(name)
    assert isinstance(found, Field) and found.max_length is not None, name
    return found.max_length


# Limits come from the library (validation) and the model, never restated here.
TASK_INPUT = {
    "job": Text(required=True, min_length=1, max_length=column_length("identifier"), one_of=REGISTERED_JOB,
                description="Registered name of the job."),
    "args": Array(default=[], description="Positional arguments."),
    "kwargs": Object(default={}, description="Keyword arguments."),
    "delay": Number(minimum=0, maximum=validation.MAX_SECONDS, description="Run no sooner than this many seconds from now."),
    "run_at": DateTime(description="Run no sooner than this time (RFC 3339, with Z or a UTC offset). Not with delay."),
    "queue": Text(min_length=1, max_length=validation.MAX_QUEUE_LENGTH, one_of=ALLOWED_QUEUE,
                  pattern=QUEUE_PATTERN, mismatch=queue_pattern_refusal,
                  description="Default: the job's queue."),
    "priority": Priority(description="Default: the job's priority."),
    "description": Text(max_length=column_length("description")),
    "max_retries": Integer(minimum=0, maximum=validation.MAX_RETRIES, description="Default: the job's."),
    "unique_key": Text(min_length=1, max_length=column_length("unique_key"), nullable=True,
                       description="While an active task holds the key, that task is returned (200) instead."),
}
# The arguments fit the job's signature; a delay or a time, not both.
TASK_RULES = (JobCall(), Exclusive(("delay", "run_at")))

TASK_QUERY = {
    "status": Choices(choices=tuple(ScheduledTask.Status.values)),
    "queue": Text(max_length=column_length("queue")),
    "job": Text(max_length=column_length("identifier")),
    "schedule": Integer(minimum=1, maximum=MAX_ID, description="Tasks fired by this cron schedule."),
    "unique_key": Text(max_length=column_length("unique_key")),
    "owner": Text(max_length=150, description="Username of the owner (a user who is not a superuser sees only "
                                              "their own tasks anyway)."),
    **PAGE_QUERY,
}
STATISTICS_QUERY = {"queue": Text(max_length=column_length("queue"), description="Count only this queue.")}
TASK_FILTERS = {"status": "status__in", "queue": "queue", "job": "identifier", "schedule": "cron_schedule_id",
                "unique_key": "unique_key"}


def create_task(call: Call) -> HttpResponse:
    """Enqueue a job by name: 201 with the new task, or 200 with the active task holding ``unique_key``."""
    data = call.body  # the job is registered and the arguments fit it: TASK_INPUT and TASK_RULES
    job = registry.get(data["job"])
    holder = active_holder(data.get("unique_key"))
    options = {name: data[name] for name in ENQUEUE_OPTIONS if name in data}
    try:
        task = django_jobs.enqueue(job.name, data["args"], data["kwargs"], delay=data.get("delay"),
                                   run_at=data.get("run_at"), owner=call.user, **options)
    except DjangoJobsError as error:
        raise bad_input(field_of(error), str(error)) from None
    if not task.is_visible_to(call.user):  # the key is held by a task of another user: say no more
        raise ApiError.field(409, "unique_key", "An active task you cannot see holds this unique_key.")
    if task.owner_id == call.user.pk:
        task.owner = call.user  # serialised without a query
    return json_response(task_detail(task), 200 if task.pk == holder else 201)


def active_holder(key: str | None) -> int | None:
    if key is None:
        return None
    return ScheduledTask.objects.active_with_key(key).values_list("pk", flat=True).first()


def field_of(error: DjangoJobsError) -> str:
    """The input a library error is about (queue rules from settings, mostly)."""
    if isinstance(error, UnknownJob):
        return "job"
    if isinstance(error, JobArgumentsError):
        return "args"
    message = str(error)
    if isinstance(error, InvalidJobOption):
        for name in ("queue", "priority", "max_retries", "run_at", "delay"):
            if name in message:
                return name
    return "body"


def list_tasks(call: Call) -> HttpResponse:
    """Tasks, newest first, filtered by status, queue, job, schedule or unique key."""
    rows = with_users(ScheduledTask.objects.visible_to(call.user).defer("traceback", "attempt_log"), "owner")
    filters = {TASK_FILTERS[name]: value for name, value in call.query.items() if name in TASK_FILTERS}
    rows = rows.filter(**filters)
    if "owner" in call.query:
        rows = rows.filter(user_is("owner", **{get_user_model().USERNAME_FIELD: call.query["owner"]}))
    return page(call, rows, task_summaries, newest_first=True)


def get_task(call: Call) -> HttpResponse:
    return json_response(task_detail(find_task(call)))


def find_task(call: Call) -> ScheduledTask:
    """The task of the path's id if the caller may see it; else 404, whether it exists or not."""
    pk = call.params["id"]
    task = with_users(ScheduledTask.objects.visible_to(call.user).filter(pk=pk), "owner").first() if 1 <= pk <= MAX_ID else None
    if task is None:
        raise not_found("id", f"No task with id {pk}.")
    return task


def cancel_task(call: Call) -> HttpResponse:
    """Cancel a pending task; 409 for a task in any other state."""
    task = find_task(call)
    if not task.cancel():
        raise ApiError.field(409, "status", f"Only a pending task can be cancelled; this one is {task.status}.")
    return json_response(task_detail(task))


def retry_task(call: Call) -> HttpResponse:
    """Put a failed or cancelled task back to pending, due now; 409 otherwise, or while
    another active task holds its ``unique_key`` (the error names that task)."""
    task = find_task(call)
    try:
        retried = task.retry()
    except UniqueKeyConflict as conflict:
        if conflict.holder_id is not None and not ScheduledTask.objects.visible_to(call.user).filter(pk=conflict.holder_id).exists():
            raise ApiError.field(409, "unique_key", "An active task you cannot see holds this task's "
                                                    "unique_key.") from None
        raise ApiError.field(409, "unique_key", str(conflict)) from None
    if not retried:
        raise ApiError.field(409, "status",
                             f"Only a failed or cancelled task can be retried; this one is {task.status}.")
    return json_response(task_detail(task))


def task_events(call: Call) -> HttpResponse:
    """The task's history, oldest first: its event trail, or what its row records."""
    task = find_task(call)
    source, entries = task_timeline(task)
    return json_response({"task": task.pk, "source": source, "results": [
        {"at": entry.at, "kind": entry.kind, "label": entry.label, "attempt": entry.attempt,
         "worker_id": entry.worker_id, "message": entry.message} for entry in entries]})


def statistics(call: Call) -> HttpResponse:
    return json_response(django_jobs.get_statistics(call.query.get("queue")))


def list_jobs(call: Call) -> HttpResponse:
    """The registered jobs, by name: what can be scheduled."""
    return json_response({"results": [serialize_job(name, registry.get(name)) for name in sorted(registry)]})
