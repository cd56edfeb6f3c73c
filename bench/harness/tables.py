"""Direct work on django_jobs' tables for the scenarios: empty them, fill them fast,
count and time what the workers did. Runs in a child with Django set up.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, connections, router, transaction
from django.db.models import Count, Max
from django.utils import timezone

from bench.benchapp.jobs import noop
from django_jobs.models import CronSchedule, FlowKey, ScheduledTask, TaskEvent, Worker
from django_jobs.row_reader import column_list

ENQUEUE_CHUNK = 20_000


def truncate(*models) -> None:
    """Empty the tables of ``models`` (django_jobs' by default) between measurements, on
    the database the routers give them (the queue's own, in the ``scale`` scenario)."""
    models = models or (ScheduledTask, TaskEvent, Worker, CronSchedule, FlowKey)
    connection = connections[router.db_for_write(models[0])]
    names = [connection.ops.quote_name(model._meta.db_table) for model in models]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
        elif connection.vendor == "mysql":
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for name in names:
                cursor.execute(f"TRUNCATE TABLE {name}")
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        else:
            for name in names:
                cursor.execute(f"DELETE FROM {name}")


def enqueue_noops(count: int) -> None:
    """``count`` due no-op tasks, through the public enqueue_many, in chunks."""
    for start in range(0, count, ENQUEUE_CHUNK):
        noop.enqueue_many([((), {})] * min(ENQUEUE_CHUNK, count - start))


def enqueue_keyed(job, count: int, key_of) -> None:
    """``count`` due tasks of ``job(key)``, the n-th with key ``key_of(n)``, through the
    public enqueue_many, in chunks (each call's limits' keys are filled from its key)."""
    for start in range(0, count, ENQUEUE_CHUNK):
        job.enqueue_many([((key_of(number),), {}) for number in range(start, min(count, start + ENQUEUE_CHUNK))])


def enqueue_noops_fast(count: int) -> None:
    """``count`` due no-op tasks for long runs: one enqueued with the public API, copied in SQL."""
    template = noop.enqueue()
    copy_row(template.pk, count - 1)


def status_counts() -> dict[str, int]:
    rows = ScheduledTask.objects.order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def unfinished() -> int:
    return ScheduledTask.objects.filter(status__in=("pending", "running"), scheduled_at__lte=timezone.now()).count()


def finished_rows(since_id: int = 0) -> list[tuple[str, float, float]]:
    """(worker id, claimed at, completed at) of every completed task above ``since_id``."""
    rows = ScheduledTask.objects.filter(status="completed", id__gt=since_id)
    times = rows.values_list("worker_id", "started_at", "executed_at").iterator(chunk_size=10_000)
    return [(worker, started.timestamp(), executed.timestamp()) for worker, started, executed in times]


def max_id() -> int:
    return ScheduledTask.objects.aggregate(top=Max("id"))["top"] or 0


# -- filler for the flat-cost scenario ---------------------------------------------------
def fill(completed: int, failed: int, future: int) -> None:
    """Insert finished and future rows fast: one template row each, copied in SQL.

    Copying a row made by the ORM keeps this right whatever columns the model gains.
    PostgreSQL copies with generate_series; MariaDB and SQLite with a cross join of
    digit tables, 100,000 rows a statement.
    """
    now = timezone.now()
    earlier = now - timedelta(hours=1)
    common = {"identifier": noop.name, "worker_id": "bench-filler", "started_at": earlier, "scheduled_at": earlier}
    templates = [
        (ScheduledTask(status="completed", executed_at=earlier, **common), completed),
        (ScheduledTask(status="failed", failed_at=earlier, error_message="RuntimeError: filler", **common), failed),
        (ScheduledTask(status="pending", scheduled_at=now + timedelta(days=1), identifier=noop.name), future),
    ]
    for template, count in templates:
        if count <= 0:
            continue
        template.save(force_insert=True)
        copy_row(template.pk, count - 1)


def copy_row(pk: int, copies: int) -> None:
    table = ScheduledTask._meta.db_table
    quote = connection.ops.quote_name
    columns = [quote(field.column) for field in ScheduledTask._meta.concrete_fields
               if not field.primary_key and not getattr(field, "generated", False)]
    column_list = ", ".join(columns)
    source = ", ".join(f"t.{column}" for column in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {quote(table)} ({column_list}) SELECT {source} FROM {quote(table)} t "
                f"CROSS JOIN generate_series(1, %s) AS g WHERE t.id = %s", [copies, pk])
            return
        digits = "(" + " UNION ALL ".join(f"SELECT {digit} AS n" for digit in range(10)) + ")"
        joins = " CROSS JOIN ".join(f"{digits} d{place}" for place in range(5))
        for start in range(0, copies, 100_000):
            with transaction.atomic():
                cursor.execute(
                    f"INSERT INTO {quote(table)} ({column_list}) SELECT {source} FROM {quote(table)} t "
                    f"CROSS JOIN {joins} WHERE t.id = %s LIMIT %s", [pk, min(100_000, copies - start)])


def claim_plan() -> str:
    """EXPLAIN of the claim query as the worker runs it: inside its transaction, after
    the same planner settings the claim sets for itself (the engine's pin_claim_plan)."""
    from django_jobs.db import engine

    with transaction.atomic():
        engine("default").pin_claim_plan()
        if connection.vendor == "postgresql":
            # PostgreSQL claims with one UPDATE ... RETURNING statement: explain that one.
            from django_jobs.db.postgresql import claim_statement

            now = timezone.now()
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN " + claim_statement(None, column_list(connection, "t.")),
                               [now, 100, "bench", now, now])
                return "\n".join(row[0] for row in cursor.fetchall())
        query = ScheduledTask.objects.due_unless_paused(timezone.now()).select_for_update(skip_locked=True)[:100]
        return query.explain()


def full_scan(plan: str) -> bool:
    """Whether a plan reads the whole task table (no index) on any of the three databases."""
    table = ScheduledTask._meta.db_table
    if connection.vendor == "postgresql":
        return f"Seq Scan on {table}" in plan
    if connection.vendor == "sqlite":
        return any(line.strip().endswith(f"SCAN {table}") or f"SCAN {table} " in line and "INDEX" not in line
                   for line in plan.splitlines())
    return any(" ALL " in f" {line} " and table in line for line in plan.splitlines())


def sorts_due_rows(plan: str) -> bool:
    """Whether the plan sorts the due rows instead of reading an index in claim order.

    Not a sequential scan, yet the claim then costs as much as there are due rows.
    """
    if connection.vendor == "mysql":
        return "filesort" in plan.lower()
    return "Sort" in plan or "TEMP B-TREE" in plan
