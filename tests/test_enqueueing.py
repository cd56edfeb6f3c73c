import datetime as dt
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobOption, JobArgumentsError, UnknownJob
from django_jobs.models import ScheduledTask
from django_jobs.signals import job_enqueued
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
    inserts = [query for query in queries.captured_queries if query["sql"].lstrip().upper().startswith("INSERT")]
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
    received = []
    job_enqueued.connect(lambda **kw: received.append(kw["task"]), weak=False, dispatch_uid="rollback-test")
    try:
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
    finally:
        job_enqueued.disconnect(dispatch_uid="rollback-test")


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
