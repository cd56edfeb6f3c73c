"""PostgreSQL's single enqueue: one prepared statement sent straight through libpq (``PostgreSQLEngine.insert_one``).

Why: outside a transaction an enqueue is one INSERT (with its NOTIFY) that commits on
its own. Django's and psycopg's cursor layers (query conversion, a Python dumper per
parameter, the generator-driven wait) took about as long again as the server's own
prepared, durable INSERT, and building the model instance and preparing its field
values nearly as much more: one process enqueued about a third of what the server
allows (figures: bench/README.md, "Measured design choices"). Here the columns that come from the
job's options are turned into text once per set of options, the statement is prepared
once per connection, and each call sends only its arguments and times, as text
parameters (bound by the server: nothing is quoted into the SQL).

It is used only where nobody could tell the difference (``usable``); otherwise the
caller takes the cursor path:
- PostgreSQL through psycopg 3, the connection in autocommit and idle: the statement
  is its own transaction. Inside ``transaction.atomic()`` the cursor path runs, so the
  INSERT joins the caller's transaction as before.
- No query logging (``DEBUG``, ``CaptureQueriesContext``, assertNumQueries) and no
  execute wrapper (debug toolbar, APM agents): they see every query on the cursor.
- No ``pre_save``/``post_save`` receiver on ScheduledTask (those need ``save()``).
When the server answers with an error the statement wrote nothing (it was its own
transaction), and ``insert`` returns None: the cursor path then runs the same INSERT
and raises Django's exception for the error, or succeeds (after a ``DISCARD ALL`` in a
connection pooler dropped the prepared statement, say).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from django.db.backends.base.base import BaseDatabaseWrapper

from .. import inserting
from ..models import ScheduledTask

# Columns whose value differs on every call; the others come from the job's options.
PER_CALL = ("args", "kwargs", "scheduled_at", "created_at", "updated_at")
# Returned columns this module reads back from their text form.
READABLE = {"AutoField": int, "BigAutoField": int, "SmallAutoField": int, "CharField": str, "TextField": str}
TEMPLATE_CACHE_SIZE = 256  # sets of options (jobs and their .using() variants); emptied when full
# Names never reused in a process: a name whose statement may still exist on the server
# (we forgot it after an error) cannot collide with a new one.
STATEMENT_NUMBERS = itertools.count()
MISSING_STATEMENT = b"26000"  # invalid_sql_statement_name: DISCARD ALL or DEALLOCATE ran


@dataclass(frozen=True)
class Template:
    """The INSERT of a task with one set of options, and its constant parameters."""

    sql: bytes
    params: tuple[bytes | None, ...]  # the constant values; None where a PER_CALL value goes
    slots: tuple[tuple[int, str], ...]  # (position in params, PER_CALL column)
    builder: inserting.TaskBuilder


_templates: dict[tuple[Any, ...], Template | None] = {}


def usable(connection: BaseDatabaseWrapper) -> bool:
    """Whether an enqueue on ``connection`` can bypass the cursor unnoticed (see above)."""
    return (not connection.in_atomic_block and not connection.queries_logged and not connection.execute_wrappers
            and not inserting.save_signals_connected())


def insert(options: dict[str, Any], created: datetime, arguments: tuple[str, str],
           stored: tuple[list[Any], dict[str, Any]], connection: BaseDatabaseWrapper, wake: inserting.NotifyArgs,
           relaxed: bool) -> ScheduledTask | None:
    """INSERT one task and return it, or None if the cursor path must do it (nothing written).

    ``options`` are the task's columns from its job (``Job.task_columns``),
    ``created`` its creation time, ``arguments`` its args and kwargs as JSON text,
    ``stored`` the same decoded.
    """
    pgconn = idle_libpq_connection(connection)
    if pgconn is None:
        return None
    template = template_for(options, connection, wake, relaxed)
    if template is None:
        return None
    scheduled = options["scheduled_at"]
    created_text = created.isoformat()
    per_call = {"args": arguments[0], "kwargs": arguments[1], "created_at": created_text, "updated_at": created_text,
                "scheduled_at": created_text if scheduled is created else scheduled.isoformat()}
    params = list(template.params)
    for position, column in template.slots:
        params[position] = per_call[column].encode()
    name = prepared_statement(connection, pgconn, template.sql)
    if name is None:
        return None
    result = pgconn.exec_prepared(name, params)
    pq = libpq()
    if result.status != pq.ExecStatus.TUPLES_OK:
        if result.error_field(pq.DiagnosticField.SQLSTATE) == MISSING_STATEMENT:
            forget_statements(connection)  # dropped by a pooler, say: prepare again next time
        return None
    returned = [read(result.get_value(0, column), field)
                for column, field in enumerate(ScheduledTask._meta.db_returning_fields)]
    task = template.builder.make(*stored, returned)
    task.scheduled_at, task.created_at, task.updated_at = scheduled, created, created
    return task


def idle_libpq_connection(connection: BaseDatabaseWrapper) -> Any:
    """The libpq connection under ``connection`` if psycopg 3 holds it idle in autocommit."""
    # What Django's cursor() does first: health check, connect (refused in async code),
    # refuse another thread's connection.
    # (Django's own attributes since 4.1; django-stubs does not declare them.)
    if connection.health_check_enabled and not connection.health_check_done:  # type: ignore[attr-defined]
        connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    pgconn = getattr(connection.connection, "pgconn", None)  # None with psycopg2
    pq = libpq()
    if pgconn is None or pq is None or not connection.autocommit:
        return None
    if pgconn.status != pq.ConnStatus.OK or pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return None
    return pgconn


@functools.cache
def libpq() -> Any:
    """psycopg's libpq wrapper, imported on first use (a project on SQLite never needs it)."""
    try:
        from psycopg import pq
    except ImportError:
        return None
    return pq


# -- the statement and its constant parameters, once per set of options -----------------------
def template_for(options: dict[str, Any], connection: BaseDatabaseWrapper, wake: inserting.NotifyArgs,
                 relaxed: bool) -> Template | None:
    # Job.task_columns builds its dict in one order: its values identify the options. The
    # wake-up's payload is the queue, one of them.
    key = (connection.alias, wake is not None, relaxed,
           *(value for name, value in options.items() if name not in PER_CALL))
    try:
        return _templates[key]
    except KeyError:
        pass
    except TypeError:  # an option value that cannot be a key
        return None
    if len(_templates) >= TEMPLATE_CACHE_SIZE:
        _templates.clear()
    _templates[key] = build_template(options, connection, wake, relaxed)
    return _templates[key]


def build_template(options: dict[str, Any], connection: BaseDatabaseWrapper, wake: inserting.NotifyArgs,
                   relaxed: bool) -> Template | None:
    """None when a value or a returned column has no plain text form here: the cursor path's job."""
    if any(field.get_internal_type() not in READABLE for field in ScheduledTask._meta.db_returning_fields):
        return None
    task = ScheduledTask(args=[], kwargs={}, **options)
    omitted: list[str] = []
    params: list[bytes | None] = []
    slots: list[tuple[int, str]] = []
    for field in inserting.insert_fields():
        if field.attname in PER_CALL:
            slots.append((len(params), field.attname))
            params.append(None)
            continue
        value = field.pre_save(task, add=True)
        if value is None and inserting.null_by_omission(field, connection):
            omitted.append(field.attname)
            continue
        text = as_text(field.get_db_prep_save(value, connection))
        if text is None:
            return None
        params.append(text)
    params += [part.encode() for part in cast(tuple[str, str], wake or ())]  # the NOTIFY's channel and payload (the queue) go last
    sql = numbered(inserting.statement("row", connection, wake, relaxed, tuple(omitted)))
    return Template(sql.encode(), tuple(params), tuple(slots), inserting.TaskBuilder(task, connection.alias))


def numbered(sql: str) -> str:
    """``%s`` placeholders as libpq's ``$1, $2, ...``."""
    count = iter(range(1, sql.count("%s") + 1))
    return re.sub("%s", lambda match: f"${next(count)}", sql)


def as_text(value: Any) -> bytes | None:
    """A database value as PostgreSQL's text input for its column; None if not one of these."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):  # psycopg's Int2/Int4 are ints with a repr of their own
        text = str(int(value))
    elif isinstance(value, (str, Decimal, UUID)):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, timedelta):  # an interval with days and seconds, as psycopg sends it
        text = f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    elif type(value).__name__ in ("Json", "Jsonb") and hasattr(value, "obj"):  # psycopg's JSON wrappers
        dumped = (value.dumps or json.dumps)(value.obj)
        text = dumped.decode() if isinstance(dumped, bytes) else dumped
    else:
        return None
    encoded = text.encode()
    return None if b"\x00" in encoded else encoded  # libpq would cut a text parameter at a NUL


def read(value: bytes | None, field: Any) -> Any:
    return None if value is None else READABLE[field.get_internal_type()](value.decode())


# -- prepared statements, per libpq connection -------------------------------------------------
def prepared_statement(connection: BaseDatabaseWrapper, pgconn: Any, sql: bytes) -> bytes | None:
    """The name of ``sql`` prepared on ``pgconn`` (a reconnect brings a new pgconn: prepare again)."""
    state = getattr(connection, "_django_jobs_statements", None)
    if state is None or state[0] is not pgconn:
        state = (pgconn, {})
        setattr(connection, "_django_jobs_statements", state)  # noqa: B010 -- they live as long as the connection
    names: dict[bytes, bytes] = state[1]
    if sql not in names:
        name = f"django_jobs_insert_{next(STATEMENT_NUMBERS)}".encode()
        if pgconn.prepare(name, sql).status != libpq().ExecStatus.COMMAND_OK:
            return None
        names[sql] = name
    return names[sql]


def forget_statements(connection: BaseDatabaseWrapper) -> None:
    setattr(connection, "_django_jobs_statements", None)  # noqa: B010
