"""Inserting new task rows in plain SQL: one statement per row, or per chunk of rows.

Why not ``save()`` / ``bulk_create()``: for a big batch most of the ORM's time went
to compiling the INSERT (every field prepared one by one per row) and instantiating
models (figures: bench/README.md, "Measured design choices"), and a single ``save()``
plus the separate ``pg_notify`` cost two commits. Here every column but ``args`` and
``kwargs`` is prepared once, with the fields' own ``pre_save``/``get_db_prep_save``, from
the model's concrete fields (so a field added to ``ScheduledTask`` is written without
changes here); the arguments of all rows travel as ONE JSON document that the database
unpacks:

    INSERT INTO t (c1, ..., args, kwargs) SELECT %s, ..., <row's args>, <row's kwargs>
    FROM <the rows of the JSON document> ORDER BY <position> RETURNING id, ...

A batch of several jobs or options (``django_jobs.enqueue_many``) uses the same statement:
the option columns that differ between its rows (queue, priority, run time ...) travel in
the document too, after args and kwargs, read back with each column's own type.

On PostgreSQL the NOTIFY that wakes the workers is part of the same statement, so an
enqueue in autocommit mode is one statement and one commit. Rows come back in any
order; ids are handed out in insertion order (the rows are inserted by position),
so sorted ids match the calls in order.

The caller checks ``available()`` first and uses the ORM otherwise (MySQL, MariaDB
before 10.6, SQLite before 3.35, fields with database-side defaults). How each database
reads the rows of a JSON document is its engine's (``db``, ``Engine.json_rows``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.signals import post_save, pre_save

from .db import engine
from .models import ScheduledTask
from .row_reader import RowReader, init_signals_connected, listened, loaded_task

# (channel, payload) of the NOTIFY to send with the rows; (channel, [payload, ...]) for several.
NotifyArgs = tuple[str, str] | tuple[str, list[str]] | None
VARYING = ("args", "kwargs")  # the columns that differ between the rows of one call
# The rows of one statement (see validation.json_chunks): at most this many and, unless
# one row is larger, about this many characters of JSON.
CHUNK_ROWS = 10_000
CHUNK_CHARS = 4_000_000  # well under MariaDB's default max_allowed_packet (16 MB)



def available(connection: BaseDatabaseWrapper) -> bool:
    """Whether this database can insert from a JSON document and return the new rows."""
    return engine(connection.alias).inserts_from_json(connection)


def insert_task(task: ScheduledTask, connection: BaseDatabaseWrapper, wake: NotifyArgs, *, relaxed: bool = False) -> bool:
    """INSERT ``task`` (and NOTIFY ``wake`` in the same statement); False if it needs the ORM.

    ``relaxed`` (PostgreSQL, a statement that is its own transaction): commit it with
    ``synchronous_commit = off``, for this transaction only.
    """
    columns = row_columns(task, connection)
    if columns is None:
        return False
    omitted, values = columns
    sql = statement("row", connection, wake, relaxed, omitted)
    rows = engine(connection.alias).insert_returning(connection, sql, [*values, *(wake or ())])
    apply_returned(task, returned_values(rows, connection)[0], connection.alias)
    return True


def insert_tasks(
    template: ScheduledTask, documents: list[str], connection: BaseDatabaseWrapper, wake: NotifyArgs,
    varying: tuple[str, ...] = (), overrides: list[list[dict[str, Any]]] | None = None,
) -> list[ScheduledTask] | None:
    """INSERT one row per ``[args, kwargs, *varying]`` of the JSON ``documents``, ``template``'s
    other columns; one statement per document.

    ``varying``: the columns (attnames) whose values differ between rows, written in
    each row by ``document_values``; ``overrides``: per document, each row's values of
    them as its task holds them. Returns the new tasks in order, or None if the ORM
    must do it (nothing is written then). The NOTIFY goes with the first statement.
    """
    values = prepared_values(template, connection, constant_fields(varying))
    if values is None:
        return None
    build = TaskBuilder(template, connection.alias)
    # While the database inserts a chunk, another thread builds the tasks of the one before
    # (the GIL is free while this thread waits for the database). Model signal receivers
    # see their instances built on the caller's thread, as usual.
    with ThreadPoolExecutor(max_workers=1) if build.fast and len(documents) > 1 else nullcontext() as pool:
        built: list[Any] = []  # lists of tasks, or futures of them
        for index, document in enumerate(documents):
            sql = statement("json", connection, wake, varying=varying)
            rows = engine(connection.alias).insert_returning(connection, sql, [*values, document, *(wake or ())])
            chunk = (document, returned_values(rows, connection), overrides[index] if overrides else None)
            built.append(pool.submit(build.tasks, *chunk) if pool else build.tasks(*chunk))
            wake = None
    return [task for chunk in built for task in (chunk.result() if pool else chunk)]


def save_signals_connected() -> bool:
    """Whether someone listens to ScheduledTask's save signals: a single enqueue must ``save()``."""
    return listened(pre_save) or listened(post_save)


# -- columns and values ------------------------------------------------------------------
def insert_fields() -> list[Any]:
    """The columns an INSERT writes: every concrete field but the id and generated ones."""
    meta = ScheduledTask._meta
    return [field for field in meta.local_concrete_fields if not field.generated and field is not meta.auto_field]


def constant_fields(varying: tuple[str, ...] = ()) -> list[Any]:
    """The columns whose value is the same in every row of a statement (a parameter each)."""
    return [field for field in insert_fields() if field.attname not in VARYING and field.attname not in varying]


def varying_fields(varying: tuple[str, ...]) -> list[Any]:
    return [ScheduledTask._meta.get_field(name) for name in varying]


def document_values(values: dict[str, Any], varying: tuple[str, ...], connection: BaseDatabaseWrapper) -> list[Any]:
    """A row's ``varying`` columns as its JSON document holds them: the database's values,
    as ``save()`` would send them, in a form JSON carries and ``column_sql`` reads back."""
    return [json_ready(field.get_db_prep_save(values[field.attname], connection)) for field in varying_fields(varying)]


def json_ready(value: Any) -> Any:
    """A prepared value as JSON: PostgreSQL's datetimes and durations become text it casts
    back exactly (the other databases' prepared values are text and numbers already)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
    return value


def prepared_values(task: ScheduledTask, connection: BaseDatabaseWrapper, fields: list[Any]) -> list[Any] | None:
    """Database values of ``fields`` as ``save()`` sends them; None if one is an SQL expression."""
    values = []
    for field in fields:
        value = field.pre_save(task, add=True)  # sets created_at/updated_at on the task, as save() does
        if hasattr(value, "resolve_expression"):  # a database default or expression: the ORM's job
            return None
        values.append(field.get_db_prep_save(value, connection))
    return values


def row_columns(task: ScheduledTask, connection: BaseDatabaseWrapper) -> tuple[tuple[str, ...], list[Any]] | None:
    """The columns left out of ``task``'s INSERT, and the values of the others; None if
    a value is an SQL expression.

    A nullable column whose value is None is left out (it becomes NULL all the same):
    of a new task's 27 columns, about 9 are NULL, and each parameter costs time.
    """
    omitted, values = [], []
    for field in insert_fields():
        value = field.pre_save(task, add=True)  # sets created_at/updated_at on the task, as save() does
        if value is None and null_by_omission(field, connection):
            omitted.append(field.attname)
            continue
        if hasattr(value, "resolve_expression"):
            return None
        values.append(field.get_db_prep_save(value, connection))
    return tuple(omitted), values


_null_by_omission: dict[tuple[str, str], bool] = {}


def null_by_omission(field: Any, connection: BaseDatabaseWrapper) -> bool:
    """Whether leaving the column out of an INSERT stores exactly what None would: NULL."""
    key = (connection.vendor, field.attname)
    if key not in _null_by_omission:
        _null_by_omission[key] = (field.null and not field.has_db_default()
                                  and field.get_db_prep_save(None, connection) is None)
    return _null_by_omission[key]


# -- SQL -------------------------------------------------------------------------------------
_statements: dict[tuple[Any, ...], str] = {}


def statement(kind: str, connection: BaseDatabaseWrapper, wake: NotifyArgs, relaxed: bool = False,
              omitted: tuple[str, ...] = (), varying: tuple[str, ...] = ()) -> str:
    """The INSERT of one row without the ``omitted`` columns (``row``) or of a JSON
    document's rows with the ``varying`` columns in the document (``json``), built once."""
    wakes = None if wake is None else isinstance(wake[1], list)
    key = (kind, connection.vendor, wakes, relaxed, omitted, varying)
    if key not in _statements:
        effects = side_effects(wakes, relaxed, connection)
        if kind == "row":  # evaluated once per returned row: here, once
            _statements[key] = single_row_sql(connection, omitted) + "".join(f", {call}" for call in effects.values())
        else:
            _statements[key] = with_side_effects(json_rows_sql(connection, varying), effects)
    return _statements[key]


def side_effects(wakes: bool | None, relaxed: bool, connection: BaseDatabaseWrapper) -> dict[str, str]:
    """The database's calls that go with the INSERT (the NOTIFY of ``wakes``, a commit that
    does not wait for the disk): none where the engine has neither."""
    return engine(connection.alias).insert_side_effects(wakes, relaxed)


def single_row_sql(connection: BaseDatabaseWrapper, omitted: tuple[str, ...]) -> str:
    fields = [field for field in insert_fields() if field.attname not in omitted]
    return (f"{insert_into(connection, fields)} VALUES ({', '.join(['%s'] * len(fields))}) "
            f"RETURNING {columns_sql(connection, ScheduledTask._meta.db_returning_fields)}")


def json_rows_sql(connection: BaseDatabaseWrapper, varying: tuple[str, ...] = ()) -> str:
    fields = constant_fields(varying)
    extra = varying_fields(varying)
    written = [ScheduledTask._meta.get_field(name) for name in VARYING] + extra
    source, read, position = engine(connection.alias).json_rows(extra)
    selected = ", ".join(["%s"] * len(fields) + read)
    return (f"{insert_into(connection, fields + written)} SELECT {selected} FROM {source} ORDER BY {position} "
            f"RETURNING {columns_sql(connection, ScheduledTask._meta.db_returning_fields)}")


def insert_into(connection: BaseDatabaseWrapper, fields: list[Any]) -> str:
    table = connection.ops.quote_name(ScheduledTask._meta.db_table)
    return f"INSERT INTO {table} ({columns_sql(connection, fields)})"


def columns_sql(connection: BaseDatabaseWrapper, fields: list[Any]) -> str:
    return ", ".join(connection.ops.quote_name(field.column) for field in fields)


def with_side_effects(sql: str, effects: dict[str, str]) -> str:
    # A data-modifying CTE always runs to completion, and a CTE that calls a volatile
    # function is evaluated once: one NOTIFY per statement, delivered on commit only.
    if not effects:
        return sql
    ctes = "".join(f", {name} AS (SELECT {call})" for name, call in effects.items())
    return f"WITH inserted AS ({sql}){ctes} SELECT inserted.* FROM inserted, {', '.join(effects)}"


# -- the returned tasks ------------------------------------------------------------------------
def returned_values(rows: list[tuple[Any, ...]], connection: BaseDatabaseWrapper) -> list[Sequence[Any]]:
    """RETURNING values as the ORM reads them: through the fields' converters."""
    returning = RowReader(connection, ScheduledTask._meta.db_returning_fields)
    return [returning.values(row) for row in rows] if returning.steps else list(rows)


def apply_returned(task: ScheduledTask, values: Sequence[Any], alias: str) -> None:
    for field, value in zip(ScheduledTask._meta.db_returning_fields, values):
        setattr(task, field.attname, value)
    task._state.adding, task._state.db = False, alias


class TaskBuilder:
    """The inserted tasks, as ``bulk_create`` would leave them, from the template's values."""

    def __init__(self, template: ScheduledTask, alias: str) -> None:
        self.state = {name: value for name, value in template.__dict__.items() if name != "_state"}
        # Each task gets its own copy of mutable defaults (a JSON list, say).
        self.mutable = [name for name, value in self.state.items()
                        if isinstance(value, (list, dict)) and name not in VARYING]
        self.returned = [field.attname for field in ScheduledTask._meta.db_returning_fields]
        self.alias = alias

    @property
    def fast(self) -> bool:
        """Asked each time: a builder may outlive the moment a receiver connects."""
        return not init_signals_connected()

    def make(self, args: Any, kwargs: Any, returned: Sequence[Any]) -> ScheduledTask:
        """One task with these arguments and the values the INSERT returned."""
        return (self.without_init if self.fast else self.with_init)(args, kwargs, returned)

    def tasks(self, document: str, returned: list[Sequence[Any]],
              overrides: list[dict[str, Any]] | None = None) -> list[ScheduledTask]:
        """The tasks of a document's rows; ``overrides``: each row's own option values."""
        pairs = json.loads(document)
        if len(returned) != len(pairs):
            raise RuntimeError(f"Inserted {len(pairs)} tasks but the database returned {len(returned)} rows.")
        make = self.without_init if self.fast else self.with_init
        if not overrides:
            return [make(args, kwargs, values) for (args, kwargs), values in zip(pairs, returned)]
        return [make(row[0], row[1], values, own) for row, values, own in zip(pairs, returned, overrides)]

    def values(self, args: Any, kwargs: Any, returned: Sequence[Any],
               own: dict[str, Any] | None = None) -> dict[str, Any]:
        values = self.state.copy()
        if own:
            values.update(own)
        for name in self.mutable:
            value = values[name]
            # Mostly [] or {}: copy() skips deepcopy's dispatch and memo.
            values[name] = copy.deepcopy(value) if value else value.copy()
        values.update(zip(self.returned, returned))
        values["args"], values["kwargs"] = args, kwargs
        return values

    def without_init(self, args: Any, kwargs: Any, returned: Sequence[Any],
                     own: dict[str, Any] | None = None) -> ScheduledTask:
        return loaded_task(self.values(args, kwargs, returned, own), self.alias)

    def with_init(self, args: Any, kwargs: Any, returned: Sequence[Any],
                  own: dict[str, Any] | None = None) -> ScheduledTask:
        task = ScheduledTask(**self.values(args, kwargs, returned, own))
        task._state.adding, task._state.db = False, self.alias
        return task
