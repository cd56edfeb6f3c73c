"""Bad input is refused before anything is written, on every database, naming the option.

One table per kind of input, fed through every public entry point that takes it: the
exception type is the documented one (``InvalidJobOption``, ``JobArgumentsError``, or
``ValidationError`` by field for a ``CronSchedule``), its message names the option,
and no row was written.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobOption, JobArgumentsError
from django_jobs.models import CronSchedule, ScheduledTask
from django_jobs.registry import registry
from tests.api_support import ApiClient, errors, make_user
from tests.testapp import jobs

pytestmark = pytest.mark.django_db

NAN, INF = float("nan"), float("inf")


def nested(depth: int):
    """A value ``depth`` lists deep: nested(1) == [1]."""
    value = 1
    for _ in range(depth):
        value = [value]
    return value


# The deepest a stored JSON document may nest (the README's rule): MariaDB refuses 32,
# and enqueue_many's JSON_TABLE reads args two levels down. An argument is one level
# less (its args list is one); the tests below store that much on every database.
MAX_DEPTH = 29
DEEPEST_ARGUMENT = MAX_DEPTH - 1

# option -> values that must be refused (each named in the test id)
BAD_OPTIONS = {
    "queue": ["q" * 101, "", "a\x00b", 5, None],
    "priority": [101, -101, True, 1.5, NAN, "urgent", 2**40],
    "max_retries": [-1, 10_001, True, 2.0, NAN, "3"],
    "retry_delay": [-1, NAN, INF, 1e12, "5", timedelta(days=365 * 200)],
    "timeout": [-1, NAN, INF, -INF, 1e12, "5"],
    "backoff": ["linear", 5],
    "description": ["d" * 501, "a\x00b"],
    "unique_key": ["k" * 256, "a\x00b", ""],
}
OPTION_CASES = [(option, value) for option, values in BAD_OPTIONS.items() for value in values]
# @job takes these too (description and unique_key are per enqueue).
JOB_OPTIONS = {"queue", "priority", "max_retries", "retry_delay", "timeout", "backoff"}

BAD_DELAYS = [-1, NAN, INF, -INF, 1e12, "5", timedelta(days=365 * 200)]
BAD_RUN_TIMES = [
    datetime(2030, 1, 1),  # naive, USE_TZ is on
    datetime(9999, 12, 31, 23, 59, tzinfo=dt_timezone.utc),
    datetime.max.replace(tzinfo=dt_timezone(timedelta(hours=-5))),
    datetime(1, 1, 1, tzinfo=dt_timezone.utc),
    date(2030, 1, 1),
    "2030-01-01T00:00:00Z",
]
BAD_ARGUMENTS = {"one level too deep": nested(DEEPEST_ARGUMENT + 1), "5000 deep (RecursionError)": nested(5000),
                 "set": {1, 2}, "nan": NAN, "NUL": "a\x00b", "object": object()}


def case_id(value) -> str:
    text = repr(value) if not isinstance(value, list) else f"list{len(repr(value[:1]))}"
    return text if len(text) <= 20 else f"{text[:12]}...{len(text)}"


def assert_refused(call, exception: type[Exception], *names: str):
    """``call()`` raises ``exception`` naming one of ``names``, and writes nothing."""
    with pytest.raises(exception) as raised:
        call()
    message = str(raised.value)
    assert any(name in message for name in names), f"{message!r} names none of {names}"
    assert ScheduledTask.objects.count() == 0
    return raised.value


# -- options ---------------------------------------------------------------------------------
OPTION_ENTRY_POINTS = {
    "using().enqueue": lambda option, value: jobs.noop.using(**{option: value}).enqueue(),
    "using().enqueue_many": lambda option, value: jobs.noop.using(**{option: value}).enqueue_many([((), {})]),
    "enqueue by name": lambda option, value: django_jobs.enqueue("tests.noop", **{option: value}),
}


@pytest.mark.parametrize("entry", OPTION_ENTRY_POINTS)
@pytest.mark.parametrize(("option", "value"), OPTION_CASES, ids=[f"{o}={case_id(v)}" for o, v in OPTION_CASES])
def test_a_bad_option_is_refused_by_every_enqueue(entry, option, value):
    assert_refused(lambda: OPTION_ENTRY_POINTS[entry](option, value), InvalidJobOption, option)


JOB_CASES = [(option, value) for option, value in OPTION_CASES if option in JOB_OPTIONS]


@pytest.mark.parametrize(("option", "value"), JOB_CASES, ids=[f"{o}={case_id(v)}" for o, v in JOB_CASES])
def test_a_bad_option_is_refused_by_job_registration(option, value):
    try:
        assert_refused(lambda: django_jobs.job(name="tests.bad_option", **{option: value})(lambda: None),
                       InvalidJobOption, option)
    finally:
        registry.unregister("tests.bad_option")


@pytest.mark.parametrize("name", ["n" * 256, "a\x00b", ""], ids=case_id)
def test_a_job_name_that_does_not_fit_the_identifier_column_is_refused(name):
    try:
        assert_refused(lambda: registry.register(name, lambda: None), InvalidJobOption, "job name")
    finally:
        registry.unregister(name)


def test_a_default_queue_from_settings_is_checked_too():
    with override_settings(DJANGO_JOBS={"DEFAULT_QUEUE": "q" * 101}):
        assert_refused(jobs.noop.enqueue, InvalidJobOption, "queue")
        assert_refused(lambda: jobs.noop.enqueue_many([((), {})]), InvalidJobOption, "queue")


# -- when ------------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", ["enqueue_in", "enqueue by name"])
@pytest.mark.parametrize("delay", BAD_DELAYS, ids=case_id)
def test_a_bad_delay_is_refused(entry, delay):
    call = (lambda: jobs.noop.enqueue_in(delay)) if entry == "enqueue_in" else (
        lambda: django_jobs.enqueue("tests.noop", delay=delay))
    assert_refused(call, InvalidJobOption, "delay")


@pytest.mark.parametrize("entry", ["enqueue_at", "enqueue by name"])
@pytest.mark.parametrize("when", BAD_RUN_TIMES, ids=case_id)
def test_a_bad_run_time_is_refused(entry, when):
    call = (lambda: jobs.noop.enqueue_at(when)) if entry == "enqueue_at" else (
        lambda: django_jobs.enqueue("tests.noop", run_at=when))
    assert_refused(call, InvalidJobOption, "run_at")


def test_negative_zero_is_no_delay_and_the_limits_themselves_are_stored():
    now = timezone.now()
    soon = jobs.noop.enqueue_in(-0.0)
    far = jobs.noop.enqueue_at(now + timedelta(days=365 * 99))
    slow = jobs.noop.using(retry_delay=timedelta(days=365 * 99), timeout=timedelta(days=365 * 99)).enqueue()
    assert abs(ScheduledTask.objects.get(pk=soon.pk).scheduled_at - now) < timedelta(seconds=5)
    assert ScheduledTask.objects.get(pk=far.pk).scheduled_at == far.scheduled_at
    stored = ScheduledTask.objects.get(pk=slow.pk)
    assert stored.retry_delay == stored.timeout == timedelta(days=365 * 99)


# -- arguments -------------------------------------------------------------------------------
ARGUMENT_ENTRY_POINTS = {
    "enqueue": lambda value: jobs.noop.enqueue(value),
    "enqueue kwargs": lambda value: jobs.noop.enqueue(value=value),
    "enqueue_many": lambda value: jobs.noop.enqueue_many([((1,), {}), ((value,), {})]),
    "enqueue by name": lambda value: django_jobs.enqueue("tests.noop", args=[value]),
}


@pytest.mark.parametrize("entry", ARGUMENT_ENTRY_POINTS)
@pytest.mark.parametrize("value", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_an_argument_that_no_database_can_store_is_refused(entry, value):
    assert_refused(lambda: ARGUMENT_ENTRY_POINTS[entry](value), JobArgumentsError,
                   "positional argument", "keyword argument 'value'")


@pytest.mark.parametrize("entry", ["enqueue", "enqueue_many"])
def test_arguments_as_deep_as_every_database_stores_are_accepted(entry):
    value = nested(DEEPEST_ARGUMENT)
    if entry == "enqueue":
        task = jobs.noop.enqueue(value, key=value)
    else:
        (task,) = jobs.noop.enqueue_many([((value,), {"key": value})])
    stored = ScheduledTask.objects.get(pk=task.pk)
    assert (stored.args, stored.kwargs) == ([value], {"key": value})


# -- cron schedules ----------------------------------------------------------------------------
BAD_SCHEDULE_FIELDS = [
    ("name", "n" * 201), ("name", "a\x00b"), ("job_name", "j" * 256), ("expression", "1," * 50 + "1 * * * *"),
    ("timezone", "X" * 65), ("description", "d" * 501), ("queue", "q" * 101), ("queue", "a\x00b"),
    ("priority", 101), ("priority", -101), ("args", {"not": "a list"}), ("args", [NAN]),
    ("args", [nested(DEEPEST_ARGUMENT + 1)]), ("kwargs", [1]), ("kwargs", {"a": NAN}),
    ("metadata", nested(MAX_DEPTH + 1)), ("metadata", {"a": NAN}),
]


def schedule(**fields) -> CronSchedule:
    return CronSchedule(**{"name": "nightly", "job_name": "tests.noop", "expression": "0 0 * * *", **fields})


@pytest.mark.parametrize("check", ["save", "full_clean"])
@pytest.mark.parametrize(("field", "value"), BAD_SCHEDULE_FIELDS,
                         ids=[f"{f}={case_id(v)}" for f, v in BAD_SCHEDULE_FIELDS])
def test_a_bad_schedule_field_is_refused_by_field(check, field, value):
    row = schedule(**{field: value})
    with pytest.raises(ValidationError) as raised:
        getattr(row, check)()
    assert field in raised.value.message_dict
    assert CronSchedule.objects.count() == 0


def test_a_good_schedule_still_saves():
    row = schedule(metadata={"team": "ops"}, args=[1], kwargs={"a": nested(DEEPEST_ARGUMENT)})
    row.full_clean()
    row.save()
    assert CronSchedule.objects.get(pk=row.pk).kwargs == {"a": nested(DEEPEST_ARGUMENT)}


def test_a_queue_the_settings_no_longer_allow_is_refused_by_forms_but_the_schedule_can_still_be_disabled():
    row = schedule(queue="reports")
    row.save()
    with override_settings(DJANGO_JOBS={"QUEUES": ["default"]}):
        with pytest.raises(ValidationError) as raised:
            row.full_clean()
        assert "queue" in raised.value.message_dict
        row.disable()
    assert CronSchedule.objects.get(pk=row.pk).enabled is False


# -- the JSON API -----------------------------------------------------------------------------
BAD_API_TASKS = [
    ("description", "d" * 501), ("unique_key", "k" * 256), ("queue", "q" * 101), ("priority", 101),
    ("max_retries", 10_001), ("delay", 1e12), ("run_at", "9999-12-31T23:59:00Z"), ("run_at", "0001-01-01T00:00:00Z"),
]


@pytest.mark.parametrize(("field", "value"), BAD_API_TASKS, ids=[f"{f}={case_id(v)}" for f, v in BAD_API_TASKS])
def test_the_api_answers_400_naming_the_field(field, value):
    api = ApiClient(make_user("root", superuser=True))
    response = api.post("/tasks", {"job": "tests.noop", field: value})
    assert response.status_code == 400, response.content
    assert field in errors(response)
    assert ScheduledTask.objects.count() == 0



@pytest.mark.parametrize(("path", "body", "field"), [
    ("/tasks", {"job": "tests.noop", "args": [nested(DEEPEST_ARGUMENT + 1)]}, "args"),
    ("/schedules", {"name": "deep", "job": "tests.noop", "expression": "0 0 * * *",
                    "kwargs": {"a": nested(DEEPEST_ARGUMENT + 1)}}, "kwargs"),
], ids=["task", "schedule"])
def test_the_api_refuses_arguments_its_body_limit_lets_through_but_no_database_stores(path, body, field):
    # The body may nest 32 levels; what it carries is stored one or two levels up.
    api = ApiClient(make_user("root", superuser=True))
    response = api.post(path, body)
    assert response.status_code == 400, response.content
    assert field in errors(response)
    assert ScheduledTask.objects.count() == CronSchedule.objects.count() == 0


# -- Django's Tasks framework (Django >= 6.0) --------------------------------------------------
BAD_DJANGO_TASK_OPTIONS = [
    ("run_after", datetime(9999, 12, 31, 23, 59, tzinfo=dt_timezone.utc)),
    ("retry_delay", NAN), ("retry_delay", 1e12), ("timeout", INF), ("max_retries", 10_001),
]


@pytest.mark.parametrize(("option", "value"), BAD_DJANGO_TASK_OPTIONS,
                         ids=[f"{o}={case_id(v)}" for o, v in BAD_DJANGO_TASK_OPTIONS])
def test_the_django_tasks_backend_refuses_them_too(option, value):
    exceptions = pytest.importorskip("django.tasks.exceptions", reason="Django's Tasks framework needs Django 6.0")
    from tests.testapp import tasks

    assert_refused(lambda: tasks.noop_task.using(**{option: value}).enqueue(), exceptions.InvalidTask, option)


def test_the_django_tasks_backend_refuses_arguments_no_database_stores():
    pytest.importorskip("django.tasks", reason="Django's Tasks framework needs Django 6.0")
    from tests.testapp import tasks

    assert_refused(lambda: tasks.noop_task.enqueue(nested(DEEPEST_ARGUMENT + 1)), JobArgumentsError,
                   "positional argument")
