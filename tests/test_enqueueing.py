import datetime as dt
import json
import re
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_init, post_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobOption, JobArgumentsError, UnknownJob, inserting, validation
from django_jobs.db import engine
from django_jobs.enqueueing import build_task
from django_jobs.models import ScheduledTask
from django_jobs.signals import job_completed, job_enqueued, job_started
from tests.helpers import capture_signal
from tests.testapp import jobs

pytestmark = pytest.mark.django_db


def test_enqueue_stores_a_pending_row():
    task = jobs.add.enqueue(2, b=3)
    task.refresh_from_db()
    assert task.identifier == "tests.add"
    assert (task.args, task.kwargs) == ([2], {"b": 3})
    assert task.status == ScheduledTask.Status.PENDING
    assert task.queue == "default"
    assert task.max_retries == 3
    assert abs((task.scheduled_at - timezone.now()).total_seconds()) < 5


def test_enqueue_in_and_at_set_the_not_before_time():
    before = timezone.now()
    delayed = jobs.add.enqueue_in(dt.timedelta(minutes=5), 1, 2)
    assert delayed.scheduled_at >= before + dt.timedelta(minutes=5)
    when = timezone.now() + dt.timedelta(days=1)
    at = jobs.add.enqueue_at(when, 1, 2)
    at.refresh_from_db()
    assert at.scheduled_at == when


def test_using_options_are_stored():
    task = jobs.add.using(queue="mail", priority="critical", description="welcome", max_retries=5,
                          retry_delay=30, backoff="fixed", timeout=60).enqueue(1, 2)
    task.refresh_from_db()
    assert (task.queue, task.priority, task.description, task.max_retries) == ("mail", 100, "welcome", 5)
    assert task.retry_delay == dt.timedelta(seconds=30)
    assert (task.backoff, task.timeout) == ("fixed", dt.timedelta(seconds=60))


def test_enqueue_by_name():
    task = django_jobs.enqueue("tests.add", args=[1], kwargs={"b": 2}, queue="q2", priority=7)
    assert (task.identifier, task.queue, task.priority) == ("tests.add", "q2", 7)
    later = django_jobs.enqueue("tests.add", args=[1, 2], delay=60)
    assert later.scheduled_at > timezone.now() + dt.timedelta(seconds=50)


def test_enqueue_many_is_one_bulk_insert():
    # 30 rows (x ~28 columns) stay under the 999 parameters per statement of SQLite with Django 5.2.
    calls = [((index, index), {}) for index in range(30)]
    with CaptureQueriesContext(connection) as queries:
        tasks = jobs.add.enqueue_many(calls)
    inserts = [query for query in queries.captured_queries if "INSERT INTO" in query["sql"].upper()]
    assert len(inserts) == 1
    assert len(tasks) == 30
    assert ScheduledTask.objects.filter(identifier="tests.add").count() == 30
    assert all(task.pk for task in tasks)


def test_enqueue_many_of_many_rows():
    tasks = jobs.noop.enqueue_many([((index,), {}) for index in range(3000)])
    assert len({task.pk for task in tasks}) == 3000
    assert ScheduledTask.objects.count() == 3000


def test_django_json_types_are_accepted_and_stored_as_json():
    task = jobs.noop.enqueue(dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc), dt.date(2026, 1, 2),
                             Decimal("1.50"), uuid.UUID(int=1), nested={"a": [1, 2.5, None, True]})
    task.refresh_from_db()
    assert task.args == ["2026-01-02T03:04:00Z", "2026-01-02", "1.50", "00000000-0000-0000-0000-000000000001"]
    assert task.kwargs == {"nested": {"a": [1, 2.5, None, True]}}


@pytest.mark.parametrize("args, kwargs, message", [
    ((object(),), {}, "positional argument 0"),
    ((), {"when": {1, 2}}, "keyword argument 'when'"),
    ((float("nan"),), {}, "positional argument 0"),
    ((b"bytes",), {}, "positional argument 0"),
])
def test_arguments_that_are_not_json_are_rejected_and_nothing_is_written(args, kwargs, message):
    with pytest.raises(JobArgumentsError, match=message) as error:
        jobs.noop.enqueue(*args, **kwargs)
    assert isinstance(error.value, TypeError)
    assert ScheduledTask.objects.count() == 0


def test_arguments_that_do_not_fit_the_signature_are_rejected():
    with pytest.raises(JobArgumentsError, match="Arguments do not fit job 'tests.add'"):
        jobs.add.enqueue(1, 2, 3)
    with pytest.raises(JobArgumentsError):
        jobs.add.enqueue(1, c=2)
    assert ScheduledTask.objects.count() == 0


def test_naive_datetime_is_rejected_with_use_tz():
    with pytest.raises(InvalidJobOption, match="naive"):
        jobs.noop.enqueue_at(dt.datetime(2030, 1, 1))
    with pytest.raises(InvalidJobOption, match="naive"):
        django_jobs.enqueue("tests.noop", run_at=dt.datetime(2030, 1, 1))
    assert ScheduledTask.objects.count() == 0


def test_bad_options_are_rejected():
    with pytest.raises(InvalidJobOption):
        django_jobs.enqueue("tests.noop", priority=500)
    with pytest.raises(InvalidJobOption):
        django_jobs.enqueue("tests.noop", delay=-1)
    with pytest.raises(InvalidJobOption):
        django_jobs.enqueue("tests.noop", delay=1, run_at=timezone.now())
    with pytest.raises(TypeError, match="queu"):
        django_jobs.enqueue("tests.noop", queu="mail")
    with pytest.raises(InvalidJobOption):
        jobs.noop.using(queue="")
    assert ScheduledTask.objects.count() == 0


def test_unknown_job_name_is_rejected():
    with pytest.raises(UnknownJob):
        django_jobs.enqueue("no.such.job")
    assert ScheduledTask.objects.count() == 0


@override_settings(DJANGO_JOBS={"QUEUES": ["default", "mail"]})
def test_queues_setting_restricts_queue_names():
    jobs.noop.using(queue="mail").enqueue()
    with pytest.raises(InvalidJobOption, match="Unknown queue 'reports'"):
        jobs.noop.using(queue="reports").enqueue()
    assert ScheduledTask.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_enqueue_in_a_failed_transaction_is_rolled_back():
    with capture_signal(job_enqueued, pick=lambda task, **kw: task) as received:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                jobs.add.enqueue(1, 2)
                raise RuntimeError("the view failed")
        assert ScheduledTask.objects.count() == 0
        assert received == []  # no signal for a task that never existed
        with transaction.atomic():
            task = jobs.add.enqueue(1, 2)
            assert received == []  # not before commit
        assert received == [task]


def test_unique_key_returns_the_active_task():
    first = jobs.add.using(unique_key="welcome:42").enqueue(1, 2)
    second = jobs.add.using(unique_key="welcome:42").enqueue(1, 2)
    assert second.pk == first.pk
    assert ScheduledTask.objects.count() == 1
    ScheduledTask.objects.filter(pk=first.pk).update(status=ScheduledTask.Status.COMPLETED)
    third = jobs.add.using(unique_key="welcome:42").enqueue(1, 2)
    assert third.pk != first.pk  # a finished task no longer holds the key


def test_unique_key_inside_an_outer_transaction_keeps_it_usable():
    with transaction.atomic():
        first = jobs.add.using(unique_key="k").enqueue(1, 2)
        again = jobs.add.using(unique_key="k").enqueue(1, 2)
        other = jobs.add.enqueue(3, 4)
    assert again.pk == first.pk
    assert ScheduledTask.objects.filter(pk=other.pk).exists()


def test_unique_key_is_refused_in_enqueue_many():
    with pytest.raises(InvalidJobOption, match="unique_key"):
        jobs.add.using(unique_key="k").enqueue_many([((1, 2), {})])


# -- the fast insert path (django_jobs/inserting.py) and the ORM path it replaces -------------
CALLS = [
    ((1, 2.5, "é😀 \"quoted\" \\ back\nslash", None, True, 10**20, 0.1 + 0.2, 1.5e-7), {}),
    ((dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc), dt.date(2026, 1, 2), Decimal("1.50"),
      uuid.UUID(int=7)), {"nested": {"a": [1, {"b": []}], "": "an empty key"}, "list": [[], {}]}),
    ((), {}),
    (("x" * 5000,), {"ünïcode": "ø"}),
]
TIMES = ("scheduled_at", "created_at", "updated_at")  # the time of the insert: differs between two inserts


def column_names() -> list[str]:
    """Every column of the model, whatever fields it gains, but the id and insert times."""
    return [field.attname for field in ScheduledTask._meta.concrete_fields if field.attname not in ("id", *TIMES)]


def stored(tasks) -> list[dict]:
    return list(ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks]).order_by("id").values(*column_names()))


def in_memory(task) -> dict:
    return {field.attname: getattr(task, field.attname) for field in ScheduledTask._meta.concrete_fields}


@pytest.fixture
def orm_only(monkeypatch):
    """Force the ORM path (save / bulk_create), as on a database without the fast path."""
    monkeypatch.setattr(inserting, "available", lambda connection: False)


def orm_tasks(job, calls):
    """What enqueue_many wrote before the fast path: build_task + bulk_create."""
    return ScheduledTask.objects.bulk_create([build_task(job, args, kwargs, None) for args, kwargs in calls])


OPTIONS = {"queue": "mail", "priority": "high", "description": "d", "max_retries": 7, "retry_delay": 12,
           "backoff": "fixed", "timeout": 30}


def test_fast_path_is_available_on_the_test_database():
    # Otherwise every comparison below would compare the ORM with itself.
    assert inserting.available(connection)


def test_enqueue_many_stores_every_column_as_the_orm_does():
    job = jobs.noop.using(**OPTIONS)
    fast = job.enqueue_many(CALLS)
    assert stored(fast) == stored(orm_tasks(job, CALLS))
    assert stored(fast)[0]["args"][2] == "é😀 \"quoted\" \\ back\nslash"


def test_enqueue_many_through_the_orm_stores_the_same_rows(orm_only):
    job = jobs.noop.using(**OPTIONS)
    assert stored(job.enqueue_many(CALLS)) == stored(orm_tasks(job, CALLS))


def test_enqueue_stores_every_column_as_the_orm_does():
    job = jobs.noop.using(**OPTIONS)
    fast = [job.enqueue(*args, **kwargs) for args, kwargs in CALLS]
    slow = [build_task(job, args, kwargs, None) for args, kwargs in CALLS]
    for task in slow:
        task.save()
    assert stored(fast) == stored(slow)


@pytest.mark.parametrize("enqueue", ["one", "many"])
def test_returned_tasks_equal_their_stored_rows(enqueue):
    job = jobs.noop.using(**OPTIONS)
    if enqueue == "one":
        tasks = [job.enqueue(*args, **kwargs) for args, kwargs in CALLS]
    else:
        tasks = job.enqueue_many(CALLS)
    for task in tasks:
        assert task._state.adding is False
        assert in_memory(task) == in_memory(ScheduledTask.objects.get(pk=task.pk))


def test_enqueue_many_returns_the_tasks_in_call_order_over_several_statements(monkeypatch):
    monkeypatch.setattr(inserting, "CHUNK_ROWS", 7)
    calls = [((index, -index), {}) for index in range(50)]
    with CaptureQueriesContext(connection) as queries:
        tasks = jobs.add.enqueue_many(calls)
    statements = [query["sql"] for query in queries.captured_queries]
    assert len([sql for sql in statements if "INSERT INTO" in sql.upper()]) == 8
    assert [task.args for task in tasks] == [[index, -index] for index in range(50)]
    assert [task.pk for task in tasks] == sorted({task.pk for task in tasks})
    assert dict(ScheduledTask.objects.values_list("pk", "args")) == {task.pk: task.args for task in tasks}
    if connection.vendor == "postgresql":
        assert len([sql for sql in statements if "pg_notify" in sql]) == 1


def test_enqueue_many_splits_long_arguments_over_statements_in_order(monkeypatch):
    monkeypatch.setattr(inserting, "CHUNK_CHARS", 2_000)
    calls = [(("x" * 300, index), {}) for index in range(20)] + [(("y" * 5_000, 20), {})] + [((1, 21), {})]
    with CaptureQueriesContext(connection) as queries:
        tasks = jobs.add.enqueue_many(calls)
    inserts = [query["sql"] for query in queries.captured_queries if "INSERT INTO" in query["sql"].upper()]
    # About six 300-character rows fit in 2,000 characters; the 5,000-character row goes alone.
    assert 5 <= len(inserts) <= 8
    assert [task.args[1] for task in tasks] == list(range(22))
    assert [task.pk for task in tasks] == sorted(task.pk for task in tasks)
    assert ScheduledTask.objects.get(pk=tasks[20].pk).args == ["y" * 5_000, 20]


def test_json_chunks_keep_each_document_within_its_limits():
    pairs = [[["a" * (index % 7) * 40], {"n": index}] for index in range(500)]
    documents = validation.json_chunks(pairs, 60, 1_500)
    decoded = [json.loads(document) for document in documents]
    assert [pair for document in decoded for pair in document] == pairs
    assert all(len(document) <= 60 for document in decoded)
    assert all(len(document) <= 1_500 for document in documents)
    alone = validation.json_chunks([[["z" * 3_000], {}], [[1], {}]], 60, 1_500)
    assert [json.loads(document) for document in alone] == [[[["z" * 3_000], {}]], [[[1], {}]]]


def test_each_task_gets_its_own_mutable_values():
    first, second = jobs.add.enqueue_many([((1, 2), {}), ((3, 4), {})])
    for name, value in in_memory(first).items():
        if isinstance(value, (list, dict)):
            assert value is not getattr(second, name), name


@pytest.mark.parametrize("bad_call, message", [
    (((object(), 1), {}), "positional argument 0"),
    (((float("nan"), 1), {}), "positional argument 0"),
    (((1,), {"b": {1, 2}}), "keyword argument 'b'"),
    ((("nul\x00",), {"b": 1}), "positional argument 0"),
    (((1, 2, 3), {}), "Arguments do not fit job 'tests.add'"),
    (((1,), {"c": 2}), "Arguments do not fit job 'tests.add'"),
    ((1, 2, 3), re.escape("enqueue_many item 2500 must be an (args, kwargs) pair")),
])
def test_enqueue_many_validates_every_call_before_writing_anything(bad_call, message):
    calls = [((index, index), {}) for index in range(2500)] + [bad_call, ((1, 1), {})]
    with pytest.raises(JobArgumentsError, match=message):
        jobs.add.enqueue_many(calls)
    assert ScheduledTask.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["fast", "orm"])
def test_enqueue_many_rolls_back_with_the_caller_and_signals_after_commit(path, request):
    if path == "orm":
        request.getfixturevalue("orm_only")
    with capture_signal(job_enqueued, pick=lambda task, **kw: task) as received:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                jobs.add.enqueue_many([((1, 2), {}), ((3, 4), {})])
                raise RuntimeError("the view failed")
        assert ScheduledTask.objects.count() == 0
        assert received == []
        with transaction.atomic():
            tasks = jobs.add.enqueue_many([((1, 2), {}), ((3, 4), {})])
            assert received == []  # not before commit
        assert received == tasks and all(task.pk for task in received)


@pytest.mark.django_db(transaction=True)
def test_an_enqueue_is_one_statement():
    with CaptureQueriesContext(connection) as queries:
        task = jobs.add.enqueue(1, 2)
    assert len(queries.captured_queries) == 1, queries.captured_queries
    assert ScheduledTask.objects.get(pk=task.pk).args == [1, 2]


@pytest.mark.django_db(transaction=True)
def test_notify_goes_with_the_insert_and_is_delivered_on_commit():
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY exists on PostgreSQL only; other databases rely on polling")
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
                         port=settings["PORT"], autocommit=True) as listener:
        listener.execute("LISTEN django_jobs")
        with transaction.atomic():
            jobs.noop.using(queue="mail").enqueue()
            jobs.noop.using(queue="mail").enqueue_many([((), {})] * 3)
            assert list(listener.notifies(timeout=0.2, stop_after=1)) == []  # not before commit
        assert [note.payload for note in listener.notifies(timeout=10, stop_after=1)] == ["mail"]
        jobs.noop.enqueue()  # autocommit: the one statement commits, and notifies
        assert [note.payload for note in listener.notifies(timeout=10, stop_after=1)] == ["default"]


def test_model_signal_receivers_keep_seeing_single_enqueues():
    with capture_signal(post_save, sender=ScheduledTask,
                        pick=lambda instance, created, **kw: (instance.pk, created)) as saved:
        task = jobs.add.enqueue(1, 2)
    assert saved == [(task.pk, True)]
    assert in_memory(task) == in_memory(ScheduledTask.objects.get(pk=task.pk))


def test_init_signal_receivers_see_the_tasks_enqueue_many_returns():
    with capture_signal(post_init, sender=ScheduledTask, pick=lambda instance, **kw: instance) as initialised:
        tasks = jobs.add.enqueue_many([((1, 2), {}), ((3, 4), {})])
    assert all(any(task is seen for seen in initialised) for task in tasks)
    for task in tasks:
        assert in_memory(task) == in_memory(ScheduledTask.objects.get(pk=task.pk))


def test_unique_key_is_returned_with_the_new_task():
    task = jobs.add.using(unique_key="report:7").enqueue(1, 2)
    assert (task.unique_key, task.active_unique_key) == ("report:7", "report:7")
    assert in_memory(task) == in_memory(ScheduledTask.objects.get(pk=task.pk))


@override_settings(DJANGO_JOBS={"IMMEDIATE": True})
def test_immediate_mode_runs_every_task_of_enqueue_many():
    tasks = jobs.add.enqueue_many([((1, 2), {}), ((3, 4), {})])
    rows = ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks]).order_by("id")
    assert [(row.status, row.result) for row in rows] == [("completed", 3), ("completed", 7)]


@pytest.mark.django_db(transaction=True)
@override_settings(DJANGO_JOBS={"ENQUEUE_SYNCHRONOUS_COMMIT": False})
def test_relaxed_commit_applies_to_an_enqueue_that_is_its_own_transaction_only():
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting; elsewhere the option changes nothing")

    def enqueue_sql(**options) -> str:
        with CaptureQueriesContext(connection) as queries:
            jobs.add.using(**options).enqueue(1, 2)
        return " ".join(query["sql"] for query in queries.captured_queries)

    def session_setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return cursor.fetchone()[0]

    assert "set_config('synchronous_commit', 'off', true)" in enqueue_sql()
    assert session_setting() == "on"  # for that one transaction, not the connection
    with transaction.atomic():
        assert "synchronous_commit" not in enqueue_sql()  # the caller's transaction keeps its durability
        assert session_setting() == "on"
    assert "synchronous_commit" not in enqueue_sql(unique_key="k")
    assert ScheduledTask.objects.count() == 3


@pytest.mark.django_db(transaction=True)
@override_settings(DJANGO_JOBS={"IMMEDIATE": True})
def test_lifecycle_signals_outside_a_transaction_reach_their_receivers():
    # send_after_commit skips its commit hook when nobody listens: never when someone does.
    with capture_signal(job_enqueued, job_started, job_completed,
                        pick=lambda signal, task, **kw: (signal, task.pk)) as received:
        task = jobs.add.enqueue(1, 2)
    assert len(received) == 3
    assert set(received) == {(job_enqueued, task.pk), (job_started, task.pk), (job_completed, task.pk)}


def test_a_nul_character_in_arguments_is_refused_on_every_database():
    with pytest.raises(JobArgumentsError, match="keyword argument 'name'.*NUL character"):
        jobs.noop.enqueue(name="a\x00b")
    with pytest.raises(JobArgumentsError, match="NUL character"):
        jobs.noop.enqueue_many([(("ok",), {}), (("a\x00b",), {})])
    assert not ScheduledTask.objects.exists()
    task = jobs.noop.enqueue("a backslash then u0000: \\u0000")  # text, not a NUL
    task.refresh_from_db()
    assert task.args == ["a backslash then u0000: \\u0000"]


@pytest.mark.parametrize("options", [{"max_retries": 10**20}, {"max_retries": 10_001}])
def test_absurd_retry_counts_are_refused(options):
    with pytest.raises(InvalidJobOption, match="max_retries must be a whole number from 0 to 10000"):
        jobs.noop.using(**options).enqueue()


def test_a_delay_too_long_to_represent_is_refused():
    with pytest.raises(InvalidJobOption, match="too long"):
        django_jobs.enqueue("tests.noop", delay=10**20)


@pytest.mark.django_db(transaction=True)
def test_the_direct_single_insert_is_for_postgresql_outside_transactions_only():
    # On PostgreSQL tests/test_prepared_insert.py exercises it; elsewhere it must never be chosen.
    assert engine("default").can_insert_one(connection) == (connection.vendor == "postgresql")
    with transaction.atomic():
        assert not engine("default").can_insert_one(connection)
