"""The event trail: every state change of a task as a ``TaskEvent`` row, written by the database.

Triggers on the task table write the events, in the same statement as the change:
an enqueue (one row or a bulk insert), a claim of a hundred rows, a bulk completion,
an operator's retry, a recovery, raw SQL. So no path can forget one, no event exists
for a change that rolled back, and the worker pays no extra round trip. PostgreSQL
uses statement-level triggers over transition tables (one INSERT … SELECT per
statement, however many rows it changed); MariaDB/MySQL and SQLite row triggers.
Deleting a task deletes its events (retention, admin, ``prune_jobs``).

``DJANGO_JOBS["EVENTS"] = False`` turns the trail off for the writes of a process,
per connection: a session variable on PostgreSQL (``django_jobs.events``) and
MariaDB (``@django_jobs_events``), a function the triggers call on SQLite.
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
ENQUEUED = "SELECT n.id, 'enqueued', n.created_at, 0, '', n.queue, ''"


def row_trigger_sql(new: str, old: str) -> str:
    """The per-row SELECT of MariaDB and SQLite: their triggers name rows NEW and OLD."""
    return CHANGED.replace("n.", f"{new}.").replace("o.", f"{old}.")


POSTGRESQL = [
    f"""CREATE OR REPLACE FUNCTION django_jobs_task_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('django_jobs.events', true) = 'off' THEN
        IF TG_OP <> 'DELETE' THEN RETURN NULL; END IF;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {EVENTS} ({COLUMNS}) {ENQUEUED} FROM new_rows n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO {EVENTS} ({COLUMNS}) {CHANGED}
        FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.status <> o.status;
    ELSE
        DELETE FROM {EVENTS} e USING old_rows o WHERE e.task_id = o.id;
    END IF;
    RETURN NULL;
END $$""",
    f"CREATE TRIGGER django_jobs_events_insert AFTER INSERT ON {TASKS} REFERENCING NEW TABLE AS new_rows "
    f"FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_task_events()",
    f"CREATE TRIGGER django_jobs_events_update AFTER UPDATE ON {TASKS} "
    f"REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_task_events()",
    f"CREATE TRIGGER django_jobs_events_delete AFTER DELETE ON {TASKS} REFERENCING OLD TABLE AS old_rows "
    f"FOR EACH STATEMENT EXECUTE FUNCTION django_jobs_task_events()",
]
POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS django_jobs_events_insert ON {TASKS}",
    f"DROP TRIGGER IF EXISTS django_jobs_events_update ON {TASKS}",
    f"DROP TRIGGER IF EXISTS django_jobs_events_delete ON {TASKS}",
    "DROP FUNCTION IF EXISTS django_jobs_task_events()",
]

MARIADB_ON = "(@django_jobs_events IS NULL OR @django_jobs_events <> 'off')"
MARIADB = [
    f"CREATE TRIGGER django_jobs_events_insert AFTER INSERT ON {TASKS} FOR EACH ROW "
    f"INSERT INTO {EVENTS} ({COLUMNS}) {ENQUEUED.replace('n.', 'NEW.')} FROM DUAL WHERE {MARIADB_ON}",
    f"CREATE TRIGGER django_jobs_events_update AFTER UPDATE ON {TASKS} FOR EACH ROW "
    f"INSERT INTO {EVENTS} ({COLUMNS}) {row_trigger_sql('NEW', 'OLD')} FROM DUAL "
    f"WHERE NEW.status <> OLD.status AND {MARIADB_ON}",
    f"CREATE TRIGGER django_jobs_events_delete AFTER DELETE ON {TASKS} FOR EACH ROW "
    f"DELETE FROM {EVENTS} WHERE task_id = OLD.id",
]
MARIADB_DROP = [f"DROP TRIGGER IF EXISTS {name}" for name in
                ("django_jobs_events_insert", "django_jobs_events_update", "django_jobs_events_delete")]

SQLITE_ON = "django_jobs_events_on()"
SQLITE = [
    f"CREATE TRIGGER IF NOT EXISTS django_jobs_events_insert AFTER INSERT ON {TASKS} FOR EACH ROW "
    f"WHEN {SQLITE_ON} BEGIN INSERT INTO {EVENTS} ({COLUMNS}) {ENQUEUED.replace('n.', 'NEW.')}; END",
    f"CREATE TRIGGER IF NOT EXISTS django_jobs_events_update AFTER UPDATE OF status ON {TASKS} FOR EACH ROW "
    f"WHEN NEW.status <> OLD.status AND {SQLITE_ON} "
    f"BEGIN INSERT INTO {EVENTS} ({COLUMNS}) {row_trigger_sql('NEW', 'OLD')}; END",
    f"CREATE TRIGGER IF NOT EXISTS django_jobs_events_delete AFTER DELETE ON {TASKS} FOR EACH ROW "
    f"BEGIN DELETE FROM {EVENTS} WHERE task_id = OLD.id; END",
]
SQLITE_DROP = MARIADB_DROP

TRIGGERS = {"postgresql": (POSTGRESQL, POSTGRESQL_DROP), "mysql": (MARIADB, MARIADB_DROP),
            "sqlite": (SQLITE, SQLITE_DROP)}


def create_triggers(schema_editor: Any) -> None:
    """Install the triggers (migrations); a database without them records no events."""
    create, _ = TRIGGERS.get(schema_editor.connection.vendor, ((), ()))
    for statement in create:
        schema_editor.execute(statement, params=None)


def drop_triggers(schema_editor: Any) -> None:
    _, drop = TRIGGERS.get(schema_editor.connection.vendor, ((), ()))
    for statement in drop:
        schema_editor.execute(statement, params=None)


def restore_sqlite_triggers(schema_editor: Any) -> None:
    """SQLite drops a table's triggers when Django rebuilds it: every later migration that
    alters the task table must end with this (see migrations 0002 and 0007)."""
    if schema_editor.connection.vendor == "sqlite":
        create_triggers(schema_editor)


def configure_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the per-connection switch the triggers read."""
    if connection.vendor == "sqlite":
        # The triggers call it on every write; it reads the setting each time (override_settings works).
        connection.connection.create_function("django_jobs_events_on", 0, lambda: 1 if jobs_settings.EVENTS else 0)
    elif not jobs_settings.EVENTS and connection.vendor in ("postgresql", "mysql"):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SELECT set_config('django_jobs.events', 'off', false)")
            else:
                cursor.execute("SET @django_jobs_events = 'off'")
