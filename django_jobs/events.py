"""The event trail: every state change of a task as a ``TaskEvent`` row, written by the database.

On PostgreSQL, triggers on the task table write the events, in the same statement as the change:
a claim of a hundred rows, a bulk completion, an operator's retry, a recovery, raw
SQL. The enqueue itself is not an event row: the task row is its record (``created_at``),
and an INSERT trigger cost enqueue_many of 100,000 rows ~0.6 s (+25 %, measured). So no path can forget one, no event exists
for a change that rolled back, and the worker pays no extra round trip. PostgreSQL
uses statement-level triggers over transition tables (one INSERT … SELECT per
statement, however many rows it changed). MariaDB/MySQL and SQLite have no trail yet
(see ``TRIGGERS``): their row triggers cost the drain too much.
Deleting a task deletes its events (retention, admin, ``prune_jobs``).

``DJANGO_JOBS["EVENTS"] = False`` turns the trail off for the writes of a process,
per connection: a session variable on PostgreSQL (``django_jobs.events``).
Events of queue pauses are written by ``queues``, not by a trigger.
"""

from __future__ import annotations

from typing import Any

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

# PostgreSQL only, for now. Row triggers were built and measured on MariaDB and SQLite
# (bench/run, same session): MariaDB's drain fell from ~4,050 to ~2,850 jobs/s (~3,270 with
# EVENTS off, as a row trigger fires for every row even then) and enqueue_many of 100,000
# took 7.7 s instead of 3.8 s; SQLite's enqueue_many 2.6 s instead of 1.9 s. There the trail
# needs bulk writes beside the claim and the completion (the engine of issue 19), not
# triggers (their SQL is in git history, commit 'Event trail: TaskEvent rows ...').
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
