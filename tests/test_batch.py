"""``django_jobs.enqueue_many``: signatures of different jobs, queues, options and times at once."""

import datetime as dt
import re

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobOption, JobArgumentsError, UnknownJob, inserting
from django_jobs.models import ScheduledTask
from django_jobs.signals import job_enqueued
from tests.helpers import capture_signal
from tests.test_enqueueing import in_memory, stored
from tests.testapp import jobs

pytestmark = pytest.mark.django_db

IN_AN_HOUR = dt.timedelta(hours=1)


def mixed_signatures(count: int, when: dt.datetime | None = None) -> list:
    """Two jobs, three queues, several priorities and retry options, some delayed, some at a time."""
    when = when or timezone.now() + dt.timedelta(days=1)
    kinds = [
        lambda index: jobs.add.s(index, b=-index),
        lambda index: jobs.noop.using(queue="mail", priority="high", description="welcome").s(f"user{index}"),
        lambda index: jobs.add.using(queue="reports", priority=-7, max_retries=9, retry_delay=2.5,
                                     timeout=60, backoff="fixed").s(index, index).using(delay=index % 5),
        lambda index: jobs.noop.using(queue="mail").s(nested={"index": [index]}).using(run_at=when),
    ]
    return [kinds[index % len(kinds)](index) for index in range(count)]


def inserts(queries) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if "INSERT INTO" in query["sql"].upper()]


def test_different_jobs_queues_and_times_in_one_call_come_back_in_order():
    signatures = mixed_signatures(40)
    tasks = django_jobs.enqueue_many(signatures)
    assert [task.pk for task in tasks] == sorted({task.pk for task in tasks})
    for signature, task in zip(signatures, tasks):
        row = ScheduledTask.objects.get(pk=task.pk)
        assert (row.identifier, row.args, row.kwargs) == (signature.job.name, list(signature.args),
                                                          dict(signature.kwargs))
        assert (row.queue, row.priority) == (signature.job.resolved_queue, signature.job.priority)
    assert tasks[2].queue == "reports" and tasks[2].retry_delay == dt.timedelta(seconds=2.5)
    assert tasks[1].description == "welcome" and tasks[0].description == ""


def test_a_mixed_batch_stores_every_column_as_the_orm_does(monkeypatch):
    when = timezone.now() + dt.timedelta(days=1)
    fast = django_jobs.enqueue_many(mixed_signatures(12, when))
    monkeypatch.setattr(inserting, "available", lambda connection: False)
    orm = django_jobs.enqueue_many(mixed_signatures(12, when))
    assert stored(fast) == stored(orm)
    for tasks in (fast, orm):
        times = [ScheduledTask.objects.get(pk=task.pk).scheduled_at for task in tasks]
        now = times[0]  # the batch's one "now"
        expected = [now + dt.timedelta(seconds=index % 5) if index % 4 == 2 else when if index % 4 == 3 else now
                    for index in range(12)]
        assert times == expected


def test_returned_tasks_equal_their_stored_rows():
    for task in django_jobs.enqueue_many(mixed_signatures(12)):
        assert task._state.adding is False
        assert in_memory(task) == in_memory(ScheduledTask.objects.get(pk=task.pk))


def test_each_row_gets_its_own_time():
    when = timezone.now().replace(microsecond=123456) + dt.timedelta(days=3)
    before = timezone.now()
    now_task, delayed, at = django_jobs.enqueue_many([
        jobs.add.s(1, 2), jobs.add.s(3, 4).using(delay=IN_AN_HOUR), jobs.noop.s().using(run_at=when)])
    after = timezone.now()
    rows = {row.pk: row.scheduled_at for row in ScheduledTask.objects.all()}
    assert before <= rows[now_task.pk] <= after
    assert rows[delayed.pk] - rows[now_task.pk] == IN_AN_HOUR  # one "now" for the whole batch
    assert rows[at.pk] == when


def test_the_batch_time_applies_to_rows_without_their_own():
    before = timezone.now()
    tasks = django_jobs.enqueue_many([jobs.add.s(1, 2), jobs.noop.using(queue="mail").s()], delay=IN_AN_HOUR)
    assert all(row.scheduled_at >= before + IN_AN_HOUR for row in ScheduledTask.objects.all())
    assert len({task.scheduled_at for task in tasks}) == 1
    when = timezone.now() + dt.timedelta(days=2)
    at = django_jobs.enqueue_many([jobs.add.s(1, 2)], run_at=when)
    assert ScheduledTask.objects.get(pk=at[0].pk).scheduled_at == when


@pytest.mark.parametrize("own, batch", [({"delay": 5}, {"delay": 60}), ({"run_at": "soon"}, {"delay": 60}),
                                        ({"delay": 5}, {"run_at": "soon"})])
def test_a_row_with_its_own_time_in_a_batch_with_one_is_refused(own, batch):
    soon = timezone.now() + IN_AN_HOUR
    own = {name: soon if value == "soon" else value for name, value in own.items()}
    batch = {name: soon if value == "soon" else value for name, value in batch.items()}
    signatures = [jobs.add.s(1, 2), jobs.add.s(3, 4).using(**own), jobs.add.s(5, 6)]
    with pytest.raises(InvalidJobOption, match=f"enqueue_many item 1 sets its own {next(iter(own))}"):
        django_jobs.enqueue_many(signatures, **batch)
    assert not ScheduledTask.objects.exists()


def test_a_batch_with_both_delay_and_run_at_is_refused():
    with pytest.raises(InvalidJobOption, match="not both"):
        django_jobs.enqueue_many([jobs.add.s(1, 2)], delay=5, run_at=timezone.now())
    with pytest.raises(InvalidJobOption, match="naive"):
        django_jobs.enqueue_many([jobs.add.s(1, 2)], run_at=dt.datetime(2030, 1, 1))
    assert not ScheduledTask.objects.exists()


@pytest.mark.parametrize("bad, error, message", [
    ((1, 2), JobArgumentsError, r"enqueue_many item 2500 must be a signature \(job.s\(...\)\), not \(1, 2\)"),
    (jobs.add, JobArgumentsError, "enqueue_many item 2500 must be a signature"),
    (jobs.add.using(unique_key="k").s(1, 2), InvalidJobOption, "enqueue_many item 2500 has unique_key 'k'"),
])
def test_a_bad_entry_is_named_by_its_position_and_nothing_is_written(bad, error, message):
    signatures = mixed_signatures(2500) + [bad, jobs.add.s(1, 1)]
    with pytest.raises(error, match=message):
        django_jobs.enqueue_many(signatures)
    assert not ScheduledTask.objects.exists()


def test_what_changed_since_the_signature_was_made_is_checked_at_enqueue():
    signatures = [jobs.add.s(1, 2), jobs.noop.using(queue="reports").s(), jobs.noop.using(queue="reports").s()]
    with override_settings(DJANGO_JOBS={"QUEUES": ["default"]}):
        with pytest.raises(InvalidJobOption, match=re.escape("enqueue_many item 1: Unknown queue 'reports'")):
            django_jobs.enqueue_many(signatures)
    signature = django_jobs.registry.register("tests.unregistered_later", jobs.add.func).s(1, 2)
    django_jobs.registry.unregister("tests.unregistered_later")
    with pytest.raises(UnknownJob, match="enqueue_many item 1: No job named 'tests.unregistered_later'"):
        django_jobs.enqueue_many([jobs.noop.s(), signature])
    assert not ScheduledTask.objects.exists()


def test_an_empty_batch_writes_nothing():
    with CaptureQueriesContext(connection) as queries:
        assert django_jobs.enqueue_many([]) == []
    assert queries.captured_queries == []


def test_entries_may_come_from_a_generator():
    tasks = django_jobs.enqueue_many(jobs.add.s(index, index) for index in range(5))
    assert [task.args for task in tasks] == [[index, index] for index in range(5)]


def test_a_mixed_batch_is_one_insert_and_no_other_statement():
    with CaptureQueriesContext(connection) as queries:
        tasks = django_jobs.enqueue_many(mixed_signatures(300))
    assert len(inserts(queries)) == 1
    # Nothing else but the transaction's savepoint (the test runs inside a transaction).
    others = [query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"].upper()]
    assert len(others) == 1, others
    assert len(tasks) == 300 and ScheduledTask.objects.count() == 300


def test_20000_mixed_rows_go_in_two_statements_in_order():
    signatures = mixed_signatures(20_000)
    with CaptureQueriesContext(connection) as queries:
        tasks = django_jobs.enqueue_many(signatures)
    assert len(inserts(queries)) == 2  # CHUNK_ROWS: 10,000 rows per statement
    assert [task.pk for task in tasks] == sorted({task.pk for task in tasks})
    assert ScheduledTask.objects.count() == 20_000
    rows = dict(ScheduledTask.objects.values_list("pk", "queue"))
    assert [rows[task.pk] for task in tasks] == [signature.job.resolved_queue for signature in signatures]
    assert [task.args for task in tasks[:4]] == [[0], ["user1"], [2, 2], []]


def test_long_arguments_split_the_batch_in_order(monkeypatch):
    monkeypatch.setattr(inserting, "CHUNK_CHARS", 2_000)
    signatures = [jobs.noop.using(queue=f"q{index % 3}").s("x" * 300, index) for index in range(20)]
    with CaptureQueriesContext(connection) as queries:
        tasks = django_jobs.enqueue_many(signatures + [jobs.noop.s("y" * 5_000, 20)])
    assert 5 <= len(inserts(queries)) <= 8
    assert [task.args[1] for task in tasks] == list(range(21))
    assert [task.queue for task in tasks] == [f"q{index % 3}" for index in range(20)] + ["default"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["fast", "orm"])
def test_a_mixed_batch_rolls_back_with_the_caller_and_signals_each_task_after_commit(path, monkeypatch):
    if path == "orm":
        monkeypatch.setattr(inserting, "available", lambda connection: False)
    with capture_signal(job_enqueued, pick=lambda task, **kw: task) as received:
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                django_jobs.enqueue_many(mixed_signatures(8))
                raise RuntimeError("the view failed")
        assert not ScheduledTask.objects.exists()
        assert received == []
        with transaction.atomic():
            tasks = django_jobs.enqueue_many(mixed_signatures(8))
            assert received == []  # not before commit
        assert received == tasks and len(tasks) == 8


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_first_chunk_leaves_nothing_written(monkeypatch):
    monkeypatch.setattr(inserting, "CHUNK_ROWS", 3)
    built = []
    original = inserting.TaskBuilder.tasks

    def fail_on_the_second_chunk(self, *args):
        built.append(1)
        if len(built) == 2:
            raise RuntimeError("the second chunk failed")
        return original(self, *args)

    monkeypatch.setattr(inserting.TaskBuilder, "tasks", fail_on_the_second_chunk)
    with pytest.raises(RuntimeError, match="second chunk"):
        django_jobs.enqueue_many(mixed_signatures(9))
    assert len(built) >= 2  # the first chunk was inserted, then rolled back
    assert not ScheduledTask.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_workers_of_each_queue_are_notified_once_on_commit():
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY exists on PostgreSQL only; other databases rely on polling")
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
                         port=settings["PORT"], autocommit=True) as listener:
        listener.execute("LISTEN django_jobs")
        with CaptureQueriesContext(connection) as queries:
            with transaction.atomic():
                django_jobs.enqueue_many(mixed_signatures(8))
                assert list(listener.notifies(timeout=0.2, stop_after=1)) == []  # not before commit
        payloads = sorted(note.payload for note in listener.notifies(timeout=2, stop_after=3))
        assert payloads == ["default", "mail", "reports"]
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []  # and nothing more
    statements = [query["sql"] for query in queries.captured_queries
                  if "SAVEPOINT" not in query["sql"] and query["sql"] not in ("BEGIN", "COMMIT")]
    assert len(statements) == 1 and "pg_notify" in statements[0]  # with the INSERT, not after it


@override_settings(DJANGO_JOBS={"IMMEDIATE": True})
def test_immediate_mode_runs_every_task_of_a_mixed_batch():
    tasks = django_jobs.enqueue_many([jobs.add.s(1, 2), jobs.noop.using(queue="mail").s(), jobs.add.s(3, b=4)])
    rows = ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks]).order_by("id")
    assert [(row.identifier, row.status, row.result) for row in rows] == [
        ("tests.add", "completed", 3), ("tests.noop", "completed", None), ("tests.add", "completed", 7)]

