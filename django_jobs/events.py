"""The event trail: every state change of a task as a ``TaskEvent`` row, in the change's transaction.

Where the database engine says ``triggers_write_events`` (PostgreSQL, ``db.postgresql``),
triggers on the task table write the events, in the same statement as the change: a
claim of a hundred rows, a bulk completion, an operator's retry, a recovery, raw SQL;
statement-level triggers over transition tables, so the worker pays no extra round trip.

MariaDB/MySQL and SQLite have no transition tables, and their row triggers cost the drain
too much (figures: bench/README.md, "Measured design choices"). There every state change of ``querysets`` writes
its events itself: one ``INSERT … SELECT`` beside the ``UPDATE``, in the same transaction,
for the rows the change just wrote (``write``, and ``Engine.change_held_ids`` for a
worker's batches). A change by raw SQL has no event there.

Either way no event exists for a change that rolled back. The enqueue itself is not an event
row: the task row is its record (``created_at``), and an INSERT trigger made a large
enqueue_many markedly slower (figures: bench/README.md, "Measured design choices").
Deleting a task deletes its events: PostgreSQL's trigger, elsewhere the ORM's cascade
and retention's own delete (``delete_orphans``).

``DJANGO_JOBS["EVENTS"] = False`` turns the trail off for the writes of a process:
per connection on PostgreSQL (a session variable, ``django_jobs.events``), by ``write``
doing nothing elsewhere. Events of queue pauses are written by ``queues``.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models import QuerySet

from .conf import jobs_settings
from .db import engine, schema_engine


def create_triggers(schema_editor: Any) -> None:
    """Install the triggers (migration 0007) where the database writes the trail itself."""
    # params=None, not DDL.apply: the trigger's body holds a literal '%' (LIKE 'WorkerLost:%'),
    # which a call with parameters would read as a placeholder.
    for statement in schema_engine(schema_editor).event_triggers().forward:
        schema_editor.execute(statement, params=None)


def drop_triggers(schema_editor: Any) -> None:
    for statement in schema_engine(schema_editor).event_triggers().backward:
        schema_editor.execute(statement, params=None)


def configure_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the per-connection switch the triggers read."""
    engine(connection.alias, connection.vendor).set_up_connection(connection, events_on=bool(jobs_settings.EVENTS))


def written_beside_changes(alias: str) -> bool:
    """Whether the state changes on ``alias`` write their own events (no trigger does, the trail is on)."""
    return engine(alias).writes_events_beside_changes()


def write(changed: QuerySet, kind: str) -> None:
    """``kind`` events for the rows of ``changed``: the rows a change just wrote, selected
    by their new state (status, worker, ``updated_at``), in the change's transaction.

    One ``INSERT … SELECT``, however many rows: the ids never travel to Python.
    """
    ids_sql, params = changed.order_by().values("pk").query.get_compiler(using=changed.db).as_sql()
    engine(changed.db).write_events(kind, f"n.id IN ({ids_sql})", list(params))


def delete_orphans(alias: str, task_ids: list[int]) -> None:
    """After a delete that bypassed the ORM's cascade (retention's conditional delete):
    delete the events of those of ``task_ids`` whose task is gone, unless the database's
    triggers did. After, not before: a task the delete skipped (it changed meanwhile)
    keeps its trail."""
    if engine(alias).triggers_write_events:
        return
    task_model, event_model = apps.get_model("django_jobs", "ScheduledTask"), apps.get_model("django_jobs", "TaskEvent")
    remaining = task_model.objects.using(alias).filter(pk__in=task_ids).values("pk")
    event_model.objects.using(alias).filter(task_id__in=task_ids).exclude(task_id__in=remaining).delete()
