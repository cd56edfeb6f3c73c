"""Claiming: order, due times, queues, and no task held twice under contention."""

import datetime as dt
import threading

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from django_jobs.db import engine
from django_jobs.models import ScheduledTask
from django_jobs.worker.claiming import claim
from tests.factories import ScheduledTaskFactory
from tests.helpers import capture_signal

pytestmark = pytest.mark.django_db(transaction=True)


def test_claim_marks_rows_running_for_the_worker():
    task = ScheduledTaskFactory()
    claimed = claim("w1", None, limit=10)
    assert [t.pk for t in claimed] == [task.pk]
    task.refresh_from_db()
    assert (task.status, task.worker_id) == ("running", "w1")
    assert task.started_at is not None
    assert claim("w2", None, limit=10) == []


def full_row(task) -> dict:
    return {field.attname: getattr(task, field.attname) for field in ScheduledTask._meta.concrete_fields}


def test_claimed_tasks_hold_their_rows_exactly_as_the_orm_reads_them():
    # PostgreSQL reads the claimed rows in plain SQL (django_jobs/row_reader.py): every field,
    # JSON and times included, must come out as the ORM's own read gives it.
    first = ScheduledTaskFactory(args=[1, "é", {"a": [None, 2.5]}], kwargs={"k": [True]}, progress={"done": 1},
                                 attempt_log=[{"attempt": 1, "error": "E"}], unique_key="key",
                                 timeout=dt.timedelta(seconds=90), retry_count=1)
    second = ScheduledTaskFactory(result=[1, 2])
    claimed = claim("w1", None, limit=10)
    assert {task.pk for task in claimed} == {first.pk, second.pk}
    for task in claimed:
        assert task._state.adding is False and task._state.db == "default"
        assert full_row(task) == full_row(ScheduledTask.objects.get(pk=task.pk))


def test_init_receivers_see_the_claimed_tasks():
    from django.db.models.signals import post_init

    task = ScheduledTaskFactory()
    with capture_signal(post_init, sender=ScheduledTask, pick=lambda instance, **kw: instance.pk) as seen:
        claimed = claim("w1", None, limit=10)
    assert [t.pk for t in claimed] == [task.pk] and task.pk in seen
    assert full_row(claimed[0]) == full_row(ScheduledTask.objects.get(pk=task.pk))


def test_priority_then_scheduled_time_then_id():
    now = timezone.now()
    low = ScheduledTaskFactory(priority=-50, scheduled_at=now - dt.timedelta(minutes=5))
    high_later = ScheduledTaskFactory(priority=50, scheduled_at=now - dt.timedelta(minutes=1))
    high_earlier = ScheduledTaskFactory(priority=50, scheduled_at=now - dt.timedelta(minutes=2))
    normal_a = ScheduledTaskFactory(priority=0, scheduled_at=now - dt.timedelta(minutes=3))
    normal_b = ScheduledTaskFactory(priority=0, scheduled_at=normal_a.scheduled_at)
    critical = ScheduledTaskFactory(priority=100, scheduled_at=now)
    order = [t.pk for t in claim("w", None, limit=10, now=now + dt.timedelta(seconds=1))]
    assert order == [critical.pk, high_earlier.pk, high_later.pk, normal_a.pk, normal_b.pk, low.pk]


def test_priority_order_holds_across_small_batches():
    now = timezone.now()
    tasks = [ScheduledTaskFactory(priority=p, scheduled_at=now) for p in (0, 10, -10, 100, 5)]
    seen = []
    while batch := claim("w", None, limit=2, now=now):
        seen += [t.priority for t in batch]
    assert seen == sorted((t.priority for t in tasks), reverse=True)


def test_future_tasks_are_not_claimed_early():
    now = timezone.now()
    future = ScheduledTaskFactory(scheduled_at=now + dt.timedelta(seconds=30))
    assert claim("w", None, limit=10, now=now) == []
    assert [t.pk for t in claim("w", None, limit=10, now=now + dt.timedelta(seconds=31))] == [future.pk]


def test_only_pending_rows_of_the_given_queues():
    mail = ScheduledTaskFactory(queue="mail")
    ScheduledTaskFactory(queue="reports")
    for status in ("running", "completed", "failed", "cancelled"):
        ScheduledTaskFactory(queue="mail", status=status)
    assert [t.pk for t in claim("w", ["mail"], limit=10)] == [mail.pk]
    assert claim("w", ["mail"], limit=10) == []
    assert len(claim("w", ["mail", "reports"], limit=10)) == 1


def test_limit():
    ScheduledTaskFactory.create_batch(5)
    assert len(claim("w", None, limit=3)) == 3
    assert len(claim("w", None, limit=3)) == 2


def test_backend_strategy():
    expected = connection.vendor in ("postgresql", "mysql")
    assert engine("default").skips_locked is expected


def test_concurrent_claimers_never_share_a_task():
    """Threads with their own connections claim the same backlog at once."""
    total = 600
    ScheduledTask.objects.bulk_create(
        [ScheduledTask(identifier="tests.noop", scheduled_at=timezone.now()) for _ in range(total)]
    )
    results: dict[str, list[int]] = {}
    errors = []
    start = threading.Barrier(4)

    def claimer(name):
        mine = []
        try:
            start.wait()
            while batch := claim(name, None, limit=7):
                mine += [task.pk for task in batch]
        except Exception as error:  # reported below; a thread's exception is otherwise lost
            errors.append(error)
        finally:
            results[name] = mine
            connections.close_all()

    threads = [threading.Thread(target=claimer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    claimed = [pk for mine in results.values() for pk in mine]
    assert len(claimed) == total
    assert len(set(claimed)) == total
    assert sum(1 for mine in results.values() if mine) >= 2
    by_worker = dict(ScheduledTask.objects.values_list("pk", "worker_id"))
    for name, mine in results.items():
        assert all(by_worker[pk] == name for pk in mine)


def test_the_claim_walks_its_index_even_with_stale_statistics():
    """After a burst of inserts the planner knows nothing of them; the claim must still
    read the partial claim index in order and stop at its LIMIT, never sort the backlog."""
    if connection.vendor == "mysql":
        pytest.skip("MySQL/MariaDB plans are checked by the benchmark (bench/run, scenario flat)")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE django_jobs_scheduledtask")  # statistics of an empty table
    now = timezone.now()
    later = now + dt.timedelta(days=1)
    ScheduledTask.objects.bulk_create(
        [ScheduledTask(identifier="tests.noop", scheduled_at=now) for _ in range(20_000)]
        + [ScheduledTask(identifier="tests.noop", scheduled_at=later) for _ in range(10_000)],
        batch_size=5000,
    )
    due = ScheduledTask.objects.due_unless_paused(now)
    if connection.vendor == "postgresql":
        with transaction.atomic():
            engine("default").pin_claim_plan()
            plan = due.select_for_update(skip_locked=True)[:100].explain()
    else:
        plan = due.values_list("pk", flat=True)[:100].explain()
    assert "django_jobs_claim_idx" in plan, plan
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_every_claim_and_dashboard_index_exists_after_all_migrations():
    """Migration 0002 writes them in SQL; a later table rebuild (SQLite) must not lose them."""
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, ScheduledTask._meta.db_table)
    expected = {"django_jobs_claim_idx", "django_jobs_queue_claim_idx", "django_jobs_running_idx",
                "django_jobs_executed_idx", "django_jobs_failed_idx"}
    assert expected <= set(indexes), sorted(indexes)


def test_the_postgresql_claim_statement_walks_the_claim_index_in_order():
    """The one-statement claim (UPDATE ... RETURNING) must plan like the ORM's SELECT."""
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement claim is PostgreSQL's")
    from django_jobs.db.postgresql import claim_statement
    from django_jobs.row_reader import column_list

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_jobs_scheduledtask")  # statistics of an empty table
    now = timezone.now()
    ScheduledTask.objects.bulk_create([ScheduledTask(identifier="tests.noop", scheduled_at=now) for _ in range(20_000)],
                                      batch_size=5000)
    with transaction.atomic(), connection.cursor() as cursor:
        engine("default").pin_claim_plan()
        cursor.execute("EXPLAIN " + claim_statement(None, column_list(connection, "t.")), [now, 100, "w", now, now])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "django_jobs_claim_idx" in plan, plan
    assert "Sort" not in plan and "Seq Scan on django_jobs_scheduledtask" not in plan, plan


def test_rows_of_a_claim_whose_commit_went_unanswered_are_given_back_and_claimed_again():
    """A connection cut during COMMIT: the claim raised, yet its rows are ``running`` under
    this worker, which keeps beating. The worker's next claim must not leave them there."""
    from django_jobs.worker import JobWorker, WorkerOptions

    worker = JobWorker(WorkerOptions(worker_id="w-doubt", batch_size=5, cron=False))
    lost = ScheduledTaskFactory.create_batch(3)
    ScheduledTask.objects.filter(pk__in=[task.pk for task in lost]).mark_running("w-doubt", timezone.now())
    worker.claims.in_doubt = True  # what the loop sets when a claim raises
    assert worker.claims.claim_free_slots() == 3
    assert worker.holdings.held == {task.pk for task in lost}
    assert worker.claims.in_doubt is False
    assert set(ScheduledTask.objects.values_list("status", "retry_count")) == {("running", 0)}


def test_unique_indexes_hold_only_the_rows_they_constrain():
    """Migration 0005: a task without unique key or schedule writes no entry in those
    indexes (PostgreSQL: partial unique indexes), and ``cron_schedule`` has no index of its
    own anywhere; the unique (schedule, fire time) index serves lookups by schedule."""
    table = ScheduledTask._meta.db_table
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
        if connection.vendor == "postgresql":
            cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
            definitions = dict(cursor.fetchall())
    indexed_columns = [info["columns"] for info in constraints.values() if info["index"] or info["unique"]]
    assert ["cron_schedule_id"] not in indexed_columns or connection.vendor == "mysql"  # InnoDB's own FK index
    assert ["cron_schedule_id", "cron_fire_time"] in indexed_columns
    assert ["active_unique_key"] in indexed_columns
    if connection.vendor == "postgresql":
        assert definitions["django_jobs_one_active_task_per_key"].endswith("WHERE (active_unique_key IS NOT NULL)")
        assert definitions["django_jobs_one_task_per_fire_time"].endswith("WHERE (cron_schedule_id IS NOT NULL)")
        assert "UNIQUE" in definitions["django_jobs_one_active_task_per_key"]


def test_an_engine_is_kept_per_alias_whatever_its_vendor():
    """Another Django backend gets the ORM's engine, once, not anew at every connection."""
    from django_jobs.db import Engine

    real = engine("default")
    try:
        other = engine("default", "some-other-backend")
        assert type(other) is Engine and other.vendor == "some-other-backend"
        assert engine("default", "some-other-backend") is other
    finally:
        restored = engine("default", connection.vendor)
    assert type(restored) is type(real) and engine("default") is restored
