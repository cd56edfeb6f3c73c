"""Cron schedule operations: list, create, read, update, delete, enable, disable,
run now. A user who is not a superuser sees and manages only the schedules they own:
anyone else's is answered 404, as if it did not exist."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, router, transaction
from django.db.models import Field, QuerySet
from django.http import HttpResponse
from django.utils import timezone

from .. import cron, validation
from ..exceptions import ScheduleBusy
from ..models import CronSchedule
from ..registry import registry
from ..users import user_is, with_users
from .calls import JobCall
from .fields import (
    ALLOWED_QUEUE,
    QUEUE_PATTERN,
    REGISTERED_JOB,
    TIME_ZONE,
    Array,
    Boolean,
    FieldError,
    Object,
    Priority,
    Text,
    Together,
    queue_pattern_refusal,
)
from .http import ApiError, Call, json_response, no_content, not_found
from .paging import MAX_ID, PAGE_QUERY, each, page
from .serializers import schedule as serialize
from .serializers import task_detail


def cron_field(number: str) -> str:
    """One field of a cron expression: items of ``*`` or ``N`` or ``N-N``, each with an
    optional ``/step``, separated by commas (what croniter reads, without names)."""
    item = f"([*]|{number}(-{number})?)(/[1-9][0-9]?)?"
    return f"{item}(,{item})*"


# The expressions the API accepts, written so that the OpenAPI document can say it: five
# fields in numbers, or a macro. croniter reads more (names, odd spacing); declare those
# in code. What a pattern cannot say is the one thing also refused: never firing (0 0 30 2 *).
CRON_FIELDS = ("([1-5]?[0-9])", "(1?[0-9]|2[0-3])", "([1-9]|[12][0-9]|3[01])", "([1-9]|1[0-2])", "[0-6]")
CRON_PATTERN = ("^(@(" + "|".join(name.removeprefix("@") for name in cron.MACROS) + ")|"
                + " ".join(cron_field(number) for number in CRON_FIELDS) + ")$")


def cron_refusal(expression: str) -> str:
    """Why ``expression`` does not match CRON_PATTERN: cron's own message when it is not
    a cron expression at all, else what the API is stricter about."""
    try:
        cron.expand(expression)
    except ValidationError as error:
        return " ".join(error.messages)
    return ("Write the 5 fields as numbers with * , - / and single spaces, or a macro such as @daily "
            "(month and day names are for schedules declared in code).")


def fires(expression: str) -> None:
    """Validator: a valid cron expression that fires at least once (in UTC here; the
    schedule's own zone is checked again when it is saved)."""
    try:
        cron.expand(expression)
        cron.next_fire_after(expression, "UTC", timezone.now())
    except ValidationError as error:
        raise FieldError(" ".join(error.messages)) from None
    except ValueError:
        raise FieldError(f"{expression!r} never fires.") from None


def column_length(name: str) -> int:
    """The ``max_length`` of a CronSchedule column: the database's limit is the API's."""
    found = CronSchedule._meta.get_field(name)
    assert isinstance(found, Field) and found.max_length is not None, name
    return found.max_length


SCHEDULE_INPUT = {
    "name": Text(required=True, min_length=1, max_length=column_length("name"), description="Unique."),
    "job": Text(required=True, min_length=1, max_length=column_length("job_name"), one_of=REGISTERED_JOB,
                description="Registered name of the job."),
    "expression": Text(required=True, min_length=1, max_length=column_length("expression"),
                       pattern=CRON_PATTERN, mismatch=cron_refusal, validators=(fires,),
                       description="5 fields (minute hour day-of-month month day-of-week) or @hourly, @daily ...; "
                                   "it must fire at least once (not 0 0 30 2 *)."),
    "timezone": Text(max_length=column_length("timezone"), default="", one_of=TIME_ZONE,
                     description="IANA name; empty means the project's TIME_ZONE."),
    "args": Array(default=[]),
    "kwargs": Object(default={}),
    "queue": Text(min_length=1, max_length=column_length("queue"), one_of=ALLOWED_QUEUE,
                  pattern=QUEUE_PATTERN, mismatch=queue_pattern_refusal,
                  description="Default: the job's queue."),
    "priority": Priority(description="Default: the job's priority."),
    "enabled": Boolean(default=True),
    "overlap": Text(max_length=column_length("overlap"), choices=validation.OVERLAPS, default="skip",
                    description="A fire while the previous task is pending or running: skip it (counted in "
                                "skipped_fires), queue it (enqueued once the previous task finished) or allow it."),
    "description": Text(max_length=column_length("description"), default=""),
    "metadata": Object(default={}),
}
# The arguments fit the job; a change of any of job, args and kwargs gives all three,
# so that the new call can be checked (and documented) without the stored one.
CREATE_RULES = (JobCall(),)
CHANGE_RULES = (Together(("job", "args", "kwargs")), JobCall())
SCHEDULE_QUERY = {"enabled": Boolean(), "job": Text(max_length=column_length("job_name")),
                  "overlap": Text(max_length=column_length("overlap"), choices=validation.OVERLAPS),
                  "owner": Text(max_length=150, description="Username of the owner (a user who is not a "
                                                            "superuser sees only their own schedules anyway)."),
                  "queue": Text(max_length=column_length("queue")), **PAGE_QUERY}
MODEL_FIELDS = {"job": "job_name"}
DECLARED_MESSAGE = "This schedule is declared in code: only enabled can change here (change the code instead)."


def visible(user: Any) -> QuerySet[CronSchedule]:
    rows = with_users(CronSchedule.objects.all(), "owner")
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
               if name in ("enabled", "job", "queue", "overlap")}
    rows = visible(call.user).filter(**filters)
    if "owner" in call.query:
        rows = rows.filter(user_is("owner", **{get_user_model().USERNAME_FIELD: call.query["owner"]}))
    return page(call, rows, each(serialize), newest_first=False)


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
            raise ApiError(409, refused)
    apply_changes(row, call.body)
    save(row)
    return json_response(serialize(row))


def apply_changes(row: CronSchedule, data: dict[str, Any]) -> None:
    """Set ``data`` on ``row``; 400 naming every field that is wrong, then 409 for a
    name another schedule has."""
    for name, value in data.items():
        setattr(row, MODEL_FIELDS.get(name, name), value)
    if "expression" in data or "timezone" in data:
        check_timing(row)
    if "name" in data and CronSchedule.objects.filter(name=row.name).exclude(pk=row.pk).exists():
        raise name_taken(row)


def name_taken(row: CronSchedule) -> ApiError:
    return ApiError.field(409, "name", f"A schedule named {row.name!r} already exists.")


def check_timing(row: CronSchedule) -> None:
    """400 under expression unless it is valid and fires at least once in the schedule's
    zone (``0 0 30 2 *`` never does); the zone itself is checked by its field."""
    try:
        cron.expand(row.expression)
        cron.next_fire_after(row.expression, row.timezone, timezone.now())
    except ValidationError as error:
        raise ApiError(400, {"expression": error.messages}) from None
    except ValueError:
        raise ApiError.field(400, "expression", f"{row.expression!r} never fires.") from None


def save(row: CronSchedule) -> None:
    try:
        with transaction.atomic(using=router.db_for_write(CronSchedule)):
            row.save()
    except IntegrityError:  # a concurrent create took the name
        raise name_taken(row) from None
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
    """Enqueue one task of the schedule now, outside its fire times: 201 with the task;
    409 while its previous task is pending or running and ``overlap`` is not ``allow``."""
    try:
        task = find_schedule(call).run_now()
    except ScheduleBusy as busy:
        raise ApiError.field(409, "overlap", str(busy)) from None
    return json_response(task_detail(task), 201)
