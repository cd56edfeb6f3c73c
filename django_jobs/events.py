"""The event trail: every state change of a task as a ``TaskEvent`` row, in the change's transaction.

On PostgreSQL, triggers on the task table write the events, in the same statement as the change:
a claim of a hundred rows, a bulk completion, an operator's retry, a recovery, raw
SQL. PostgreSQL uses statement-level triggers over transition tables (one INSERT … SELECT
per statement, however many rows it changed), so the worker pays no extra round trip.

MariaDB/MySQL and SQLite have no transition tables, and their row triggers cost the drain
too much (measured, see ``TRIGGERS``). There every state change of ``querysets`` writes its
events itself: one ``INSERT … SELECT`` beside the ``UPDATE``, in the same transaction, for
the rows the change just wrote (``write``). A change by raw SQL has no event there.

Either way no event exists for a change that rolled back. The enqueue itself is not an event
row: the task row is its record (``created_at``), and an INSERT trigger cost enqueue_many of
100,000 rows ~0.6 s (+25 %, measured). Deleting a task deletes its events: PostgreSQL's
trigger, elsewhere the ORM's cascade and retention's own delete (``delete_for``).

``DJANGO_JOBS["EVENTS"] = False`` turns the trail off for the writes of a process:
per connection on PostgreSQL (a session variable, ``django_jobs.events``), by ``write``
doing nothing elsewhere. Events of queue pauses are written by ``queues``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import connections
from django.db.models import QuerySet

from .conf import jobs_settings

TASKS = "django_jobs_scheduledtask"
EVENTS = "django_jobs_taskevent"
COLUMNS = "task_id, kind, at, attempt, worker_id, queue, message"
MESSAGE_LENGTH = 1000

# Kinds, by the change of status that makes them (``n`` the new row, ``o`` the old one).
KIND = (
    "CASE WHEN n.status = 'running' THEN 'started' "
    "WHEN n.status = 'completed' THEN 'completed' "
    "WHEN n.status = 'cancelled' THEN 'cancelled' "
    "WHEN n.status = 'failed' THEN 'failed' "
    "WHEN o.status = 'running' AND n.retry_count > o.retry_count AND n.error_message LIKE 'WorkerLost:%' "
    "THEN 'recovered' "
    "WHEN o.status = 'running' AND n.retry_count > o.retry_count THEN 'retried' "
    "WHEN o.status = 'running' THEN 'released' "
    "ELSE 'requeued' END"
)
# The attempt the event belongs to: a retry or release names the attempt that ended.
ATTEMPT = ("CASE WHEN o.status = 'running' AND n.status = 'pending' THEN o.retry_count + 1 "
           "WHEN n.status IN ('running', 'completed', 'failed') THEN n.retry_count + 1 ELSE n.retry_count END")
WORKER = "CASE WHEN n.worker_id <> '' THEN n.worker_id ELSE o.worker_id END"
MESSAGE = (f"CASE WHEN o.status = 'running' AND n.status IN ('pending', 'failed') "
           f"THEN SUBSTR(n.error_message, 1, {MESSAGE_LENGTH}) ELSE '' END")
CHANGED = f"SELECT n.id, {KIND}, n.updated_at, {ATTEMPT}, {WORKER}, n.queue, {MESSAGE}"


POSTGRESQL = [
    f"""CREATE OR REPLACE FUNCTION django_jobs_task_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('django_jobs.events', true) = 'off' THEN
        IF TG_OP <> 'DELETE' THEN RETURN NULL; END IF;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO {EVENTS} ({COLUMNS}) {CHANGED}
        FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.status <> o.status;
    ELSE
        DELETE FROM {EVENTS} e USING old_rows o WHERE e.task_id = o.id;
    END IF;
    RETURN NULL;
END $$""",
    f"CREATE TRIGGER django_jobs_events_update AFTER UPDATE ON {TASKS} "
    f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_task_events()",
    f"CREATE TRIGGER django_jobs_events_delete AFTER DELETE ON {TASKS} REFERENCING OLD TABLE AS old_rows "
    f"FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_task_events()",
]
POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS django_jobs_events_update ON {TASKS}",
    f"DROP TRIGGER IF EXISTS django_jobs_events_delete ON {TASKS}",
    "DROP FUNCTION IF EXISTS django_jobs_task_events()",
]

# PostgreSQL only. Row triggers were built and measured on MariaDB and SQLite (bench/run,
# same session): MariaDB's drain fell from ~4,050 to ~2,850 jobs/s (~3,270 with EVENTS off,
# as a row trigger fires for every row even then) and enqueue_many of 100,000 took 7.7 s
# instead of 3.8 s; SQLite's enqueue_many 2.6 s instead of 1.9 s (their SQL is in git
# history, commit 'Event trail: TaskEvent rows ...'). There ``write`` records the events.
TRIGGERS = {"postgresql": (POSTGRESQL, POSTGRESQL_DROP)}


def create_triggers(schema_editor: Any) -> None:
    """Install the triggers (migrations); a database without them records no events."""
    create, _ = TRIGGERS.get(schema_editor.connection.vendor, ((), ()))
    for statement in create:
        schema_editor.execute(statement, params=None)


def drop_triggers(schema_editor: Any) -> None:
    _, drop = TRIGGERS.get(schema_editor.connection.vendor, ((), ()))
    for statement in drop:
        schema_editor.execute(statement, params=None)


def configure_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the per-connection switch the triggers read."""
    if not jobs_settings.EVENTS and connection.vendor in TRIGGERS:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('django_jobs.events', 'off', false)")


# -- written beside the change, where no trigger writes them --------------------------

# The attempt an event belongs to, read off the row the change wrote: a retry and a
# recovery have counted their attempt already; a claim, an outcome or a release has not.
ATTEMPT_AFTER = {
    "started": "n.retry_count + 1", "completed": "n.retry_count + 1", "failed": "n.retry_count + 1",
    "released": "n.retry_count + 1", "retried": "n.retry_count", "recovered": "n.retry_count",
    "cancelled": "n.retry_count", "requeued": "n.retry_count",
}
# Events that carry the error of the attempt that ended.
WITH_ERROR = {"retried", "recovered", "failed"}


def written_beside_changes(alias: str) -> bool:
    """Whether the state changes on ``alias`` write their own events (no trigger does, the trail is on)."""
    return bool(jobs_settings.EVENTS) and connections[alias].vendor not in TRIGGERS


def write(changed: QuerySet, kind: str) -> None:
    """``kind`` events for the rows of ``changed``: the rows a change just wrote, selected
    by their new state (status, worker, ``updated_at``), in the change's transaction.

    One ``INSERT … SELECT``, however many rows: the ids never travel to Python.
    """
    ids_sql, params = changed.order_by().values("pk").query.get_compiler(using=changed.db).as_sql()
    insert(connections[changed.db], kind, f"n.id IN ({ids_sql})", params)


def write_ids(connection: Any, ids: list[int], kind: str, status: str, worker_id: str, now: Any) -> None:
    """``write`` for rows known by id (a worker's batch), in plain SQL: the ORM's compiling
    of a hundred ids per batch cost the drain as much as the INSERT itself."""
    where = f"n.id IN ({', '.join(['%s'] * len(ids))}) AND n.status = %s AND n.worker_id = %s AND n.updated_at = %s"
    insert(connection, kind, where, [*ids, status, worker_id, connection.ops.adapt_datetimefield_value(now)])


def insert(connection: Any, kind: str, where: str, params: list[Any]) -> None:
    attempt = ATTEMPT_AFTER[kind]
    message = f"SUBSTR(n.error_message, 1, {MESSAGE_LENGTH})" if kind in WITH_ERROR else "''"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EVENTS} ({COLUMNS}) SELECT n.id, %s, n.updated_at, {attempt}, n.worker_id, n.queue, "
            f"{message} FROM {TASKS} n WHERE {where}",
            [kind, *params],
        )


def delete_orphans(alias: str, task_ids: list[int]) -> None:
    """After a delete that bypassed the ORM's cascade (retention's conditional delete):
    delete the events of those of ``task_ids`` whose task is gone. PostgreSQL's trigger did
    it already. After, not before: a task the delete skipped (it changed meanwhile) keeps its trail."""
    if connections[alias].vendor in TRIGGERS:
        return
    task_model, event_model = apps.get_model("django_jobs", "ScheduledTask"), apps.get_model("django_jobs", "TaskEvent")
    remaining = task_model.objects.using(alias).filter(pk__in=task_ids).values("pk")
    event_model.objects.using(alias).filter(task_id__in=task_ids).exclude(task_id__in=remaining).delete()
