"""Cron schedule operations: list, create, read, update, delete, enable, disable,
run now. A user who is not a superuser sees and manages only the schedules they own:
anyone else's is answered 404, as if it did not exist."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, router, transaction
from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils import timezone

from .. import cron, validation
from ..models import CronSchedule
from ..registry import registry
from .fields import Array, Boolean, Object, Priority, Text, registered_job
from .http import ApiError, Call, bad_input, json_response, no_content, not_found
from .paging import MAX_ID, PAGE_QUERY, page
from .serializers import schedule as serialize
from .serializers import task_detail
from .tasks import argument_errors

SCHEDULE_INPUT = {
    "name": Text(required=True, min_length=1, max_length=200, description="Unique."),
    "job": Text(required=True, min_length=1, max_length=255, validators=(registered_job,),
                description="Registered name of the job."),
    "expression": Text(required=True, min_length=1, max_length=100,
                       description="5 fields (minute hour day-of-month month day-of-week) or @hourly, @daily ..."),
    "timezone": Text(max_length=64, default="", description="IANA name; empty means the project's TIME_ZONE."),
    "args": Array(default=[]),
    "kwargs": Object(default={}),
    "queue": Text(min_length=1, max_length=100, description="Default: the job's queue."),
    "priority": Priority(description="Default: the job's priority."),
    "enabled": Boolean(default=True),
    "description": Text(max_length=500, default=""),
    "metadata": Object(default={}),
}
SCHEDULE_QUERY = {"enabled": Boolean(), "job": Text(max_length=255), "queue": Text(max_length=100), **PAGE_QUERY}
MODEL_FIELDS = {"job": "job_name"}
DECLARED_MESSAGE = "This schedule is declared in code: only enabled can change here (change the code instead)."


def visible(user: Any) -> QuerySet[CronSchedule]:
    rows = CronSchedule.objects.select_related("owner")
    return rows if user.is_superuser else rows.filter(owner=user)


def find_schedule(call: Call) -> CronSchedule:
    pk = call.params["id"]
    row = visible(call.user).filter(pk=pk).first() if 1 <= pk <= MAX_ID else None
    if row is None:
        raise not_found("id", f"No schedule with id {pk}.")
    return row


def list_schedules(call: Call) -> HttpResponse:
    """The caller's schedules (all of them for a superuser), oldest first."""
    filters = {MODEL_FIELDS.get(name, name): value for name, value in call.query.items()
               if name in ("enabled", "job", "queue")}
    return page(call, visible(call.user).filter(**filters), serialize, newest_first=False)


def get_schedule(call: Call) -> HttpResponse:
    return json_response(serialize(find_schedule(call)))


def create_schedule(call: Call) -> HttpResponse:
    """A new schedule owned by the caller; its queue and priority default to the job's."""
    data = dict(call.body)
    if data["job"] in registry:
        job = registry.get(data["job"])
        data.setdefault("queue", job.resolved_queue)
        data.setdefault("priority", job.priority)
    row = CronSchedule(owner=call.user)
    apply_changes(row, data)
    save(row)
    return json_response(serialize(row), 201)


def update_schedule(call: Call) -> HttpResponse:
    """Change some fields; the next run is recomputed when the timing changes."""
    row = find_schedule(call)
    if row.declared_in_code:
        refused = {name: [DECLARED_MESSAGE] for name in call.body if name != "enabled"}
        if refused:
            raise ApiError(400, refused)
    apply_changes(row, call.body)
    save(row)
    return json_response(serialize(row))


def apply_changes(row: CronSchedule, data: dict[str, Any]) -> None:
    """Set ``data`` on ``row``; 400 naming every field that is wrong."""
    for name, value in data.items():
        setattr(row, MODEL_FIELDS.get(name, name), value)
    errors: dict[str, list[str]] = {}
    for name, check in CHECKS.items():
        if name in data:
            try:
                check(row)
            except (ValidationError, ValueError) as error:  # InvalidJobOption is a ValueError
                errors[name] = error.messages if isinstance(error, ValidationError) else [str(error)]
    if not errors and data.keys() & {"job", "args", "kwargs"}:
        errors.update(schedule_argument_errors(row))
    if errors:
        raise ApiError(400, errors)


def check_name(row: CronSchedule) -> None:
    if CronSchedule.objects.filter(name=row.name).exclude(pk=row.pk).exists():
        raise ValueError(f"A schedule named {row.name!r} already exists.")


def check_timing(row: CronSchedule) -> None:
    """The expression is valid in its zone and fires at least once (``0 0 30 2 *`` never does)."""
    cron.expand(row.expression)
    cron.zone(row.timezone)
    try:
        cron.next_fire_after(row.expression, row.timezone, timezone.now())
    except ValueError:
        raise ValueError(f"{row.expression!r} never fires.") from None


CHECKS = {
    "name": check_name,
    "expression": check_timing,
    "timezone": lambda row: cron.zone(row.timezone),
    "queue": lambda row: validation.queue(row.queue),
}


def schedule_argument_errors(row: CronSchedule) -> dict[str, list[str]]:
    if row.job_name not in registry:
        return {}  # reported under job
    return argument_errors(registry.get(row.job_name), row.args, row.kwargs)


def save(row: CronSchedule) -> None:
    try:
        with transaction.atomic(using=router.db_for_write(CronSchedule)):
            row.save()
    except IntegrityError:  # a concurrent create took the name
        raise bad_input("name", f"A schedule named {row.name!r} already exists.") from None
    except ValidationError as error:  # the model's own checks (JSON nested deeper than every database stores)
        api_names = {model: api for api, model in MODEL_FIELDS.items()}
        raise ApiError(400, {api_names.get(name, name): messages for name, messages in error.message_dict.items()}) \
            from None


def delete_schedule(call: Call) -> HttpResponse:
    """Delete a schedule (its tasks stay). Schedules declared in code can only be disabled."""
    row = find_schedule(call)
    if row.declared_in_code:
        raise ApiError.field(409, "declared_in_code", "This schedule is declared in code and would come back at "
                             "the next worker start: disable it, or remove it from the code.")
    row.delete()
    return no_content()


def enable_schedule(call: Call) -> HttpResponse:
    """Fire from the next fire time on (times missed while disabled are skipped)."""
    row = find_schedule(call)
    row.enable()
    return json_response(serialize(row))


def disable_schedule(call: Call) -> HttpResponse:
    row = find_schedule(call)
    row.disable()
    return json_response(serialize(row))


def run_schedule(call: Call) -> HttpResponse:
    """Enqueue one task of the schedule now, outside its fire times: 201 with the task."""
    task = find_schedule(call).run_now()
    return json_response(task_detail(task), 201)
