"""The single enqueue that bypasses the cursor on PostgreSQL (django_jobs/db/prepared_insert.py).

Every test runs outside a test transaction (``transaction=True``): inside one, enqueue
takes the cursor path by design. That the direct path ran is seen on the server, in
``pg_prepared_statements`` of the connection.
"""

import asyncio

import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_init, pre_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_jobs.enqueueing import build_task
from django_jobs.models import ScheduledTask
from tests.helpers import capture_signal
from tests.test_enqueueing import CALLS, OPTIONS, in_memory, stored
from tests.testapp import jobs

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the direct path exists on PostgreSQL only"),
]


def prepared_inserts() -> list[str]:
    """Our INSERTs prepared on this connection's server session."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'django\\_jobs\\_insert\\_%%'")
        return [row[0] for row in cursor.fetchall()]


def test_an_enqueue_outside_a_transaction_is_one_prepared_statement():
    assert prepared_inserts() == []
    first, second = jobs.add.enqueue(1, 2), jobs.add.enqueue(3, 4)
    statements = prepared_inserts()
    assert len(statements) == 1  # prepared once, executed twice
    assert "pg_notify" in statements[0]
    assert [row.args for row in ScheduledTask.objects.order_by("id")] == [[1, 2], [3, 4]]
    assert second.pk > first.pk


def test_every_column_is_stored_as_the_orm_stores_it():
    job = jobs.noop.using(**OPTIONS)
    direct = [job.enqueue(*args, **kwargs) for args, kwargs in CALLS]
    assert prepared_inserts(), "the direct path did not run"
    through_orm = [build_task(job, args, kwargs, None) for args, kwargs in CALLS]
    for task in through_orm:
        task.save()
    assert stored(direct) == stored(through_orm)


@pytest.mark.parametrize("options", [{}, OPTIONS, {"timeout": None, "priority": -100, "retry_delay": 86400 * 3 + 0.5}])
def test_the_returned_task_equals_its_row_to_the_microsecond(options):
    for args, kwargs in CALLS:
        task = jobs.noop.using(**options).enqueue(*args, **kwargs)
        assert task._state.adding is False and task._state.db == "default"
        assert in_memory(task) == in_memory(ScheduledTask.objects.get(pk=task.pk))


def test_enqueue_in_and_at_keep_their_time():
    task = jobs.noop.enqueue_in(3600)
    row = ScheduledTask.objects.get(pk=task.pk)
    assert row.scheduled_at == task.scheduled_at and (row.scheduled_at - row.created_at).total_seconds() >= 3599
    assert prepared_inserts()


def test_inside_a_transaction_the_cursor_path_joins_it():
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            jobs.add.enqueue(1, 2)
            raise RuntimeError("the view failed")
    assert not ScheduledTask.objects.exists()
    assert prepared_inserts() == []


def test_a_statement_the_server_refuses_raises_djangos_error_and_writes_nothing():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE django_jobs_scheduledtask ADD CONSTRAINT test_refuse CHECK (queue <> 'refused')")
    try:
        jobs.noop.enqueue()  # prepares the statement of the default options
        with pytest.raises(IntegrityError, match="test_refuse"):
            jobs.noop.using(queue="refused").enqueue()
        assert ScheduledTask.objects.count() == 1
        jobs.noop.enqueue()  # the connection is fine, the statement still prepared
        assert ScheduledTask.objects.count() == 2
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE django_jobs_scheduledtask DROP CONSTRAINT test_refuse")


def test_statements_dropped_on_the_server_are_prepared_again():
    jobs.add.enqueue(1, 2)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # what a connection pooler's DISCARD ALL does
    jobs.add.enqueue(3, 4)  # the cursor path runs it
    jobs.add.enqueue(5, 6)  # prepared again
    assert len(prepared_inserts()) == 1
    assert [row.args for row in ScheduledTask.objects.order_by("id")] == [[1, 2], [3, 4], [5, 6]]


def test_a_new_connection_prepares_again():
    jobs.add.enqueue(1, 2)
    connection.close()
    jobs.add.enqueue(3, 4)
    assert len(prepared_inserts()) == 1
    assert ScheduledTask.objects.count() == 2


def test_query_logging_and_save_receivers_get_the_cursor_path():
    with CaptureQueriesContext(connection) as queries:
        jobs.add.enqueue(1, 2)
    assert len(queries.captured_queries) == 1
    with capture_signal(pre_save, sender=ScheduledTask, pick=lambda instance, **kw: instance.args) as saved:
        jobs.add.enqueue(3, 4)
    assert saved == [[3, 4]]
    assert prepared_inserts() == []


def test_init_receivers_see_the_task_it_returns():
    jobs.add.enqueue(0, 0)  # the template is built before the receiver connects
    with capture_signal(post_init, sender=ScheduledTask, pick=lambda instance, **kw: instance.args) as initialised:
        task = jobs.add.enqueue(1, 2)
    assert [1, 2] in initialised
    assert in_memory(task) == in_memory(ScheduledTask.objects.get(pk=task.pk))
    assert prepared_inserts()


@override_settings(DJANGO_JOBS={"ENQUEUE_SYNCHRONOUS_COMMIT": False})
def test_the_relaxed_commit_goes_with_the_statement():
    jobs.add.enqueue(1, 2)
    assert any("set_config('synchronous_commit', 'off', true)" in sql for sql in prepared_inserts())
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # for that one transaction, not the connection


def test_unique_keys_keep_the_cursor_path():
    first = jobs.add.using(unique_key="k").enqueue(1, 2)
    assert jobs.add.using(unique_key="k").enqueue(1, 2).pk == first.pk
    assert prepared_inserts() == []


def test_async_code_is_refused_as_by_the_orm():
    async def enqueue_in_event_loop():
        jobs.add.enqueue(1, 2)

    with pytest.raises(SynchronousOnlyOperation):
        asyncio.run(enqueue_in_event_loop())
