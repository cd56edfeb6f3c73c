"""Task instances from rows read in plain SQL, as the ORM would build them.

Why: a worker's claim returns up to a batch of whole rows many times a second. Read
through ``QuerySet.raw()``, a large share of the worker's CPU went to the raw query's
per-query machinery (column mapping, converter lookup) and to ``Model.__init__``
(figures: bench/README.md, "Measured design choices").
Here the converters are looked up once per connection and a row becomes an instance
by filling its ``__dict__``, which is what ``Model.from_db`` ends up with. While a
``pre_init``/``post_init`` receiver is connected, ``from_db`` builds it, so receivers
see every instance as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from .models import ScheduledTask


def listened(signal: Any) -> bool:
    """Whether ``signal`` has a receiver for ScheduledTask (no receiver at all is quicker to see)."""
    return bool(signal.receivers) and signal.has_listeners(ScheduledTask)


def init_signals_connected() -> bool:
    return listened(pre_init) or listened(post_init)


def column_list(connection: BaseDatabaseWrapper, prefix: str = "") -> str:
    """Every concrete column of the task table, in field order, for a SELECT or RETURNING."""
    quote = connection.ops.quote_name
    return ", ".join(f"{prefix}{quote(str(field.column))}" for field in ScheduledTask._meta.concrete_fields)


class RowReader:
    """Turns rows of ``fields`` (values as the driver returns them) into Python values or tasks."""

    def __init__(self, connection: BaseDatabaseWrapper, fields: Sequence[Any] | None = None) -> None:
        self.fields = list(ScheduledTask._meta.concrete_fields if fields is None else fields)
        self.attnames = [field.attname for field in self.fields]
        self.alias = connection.alias
        # (position, expression, converters) of the columns that need converting (JSON, mostly).
        self.steps = []
        for position, field in enumerate(self.fields):
            expression = field.get_col(ScheduledTask._meta.db_table)
            converters = connection.ops.get_db_converters(expression) + field.get_db_converters(connection)
            if converters:
                self.steps.append((position, expression, converters))
        self.connection = connection

    def values(self, row: Sequence[Any]) -> list[Any]:
        """The row's values as the model's fields hold them."""
        values = list(row)
        for position, expression, converters in self.steps:
            value = values[position]
            for converter in converters:
                value = converter(value, expression, self.connection)
            values[position] = value
        return values

    def tasks(self, rows: Iterable[Sequence[Any]]) -> list[ScheduledTask]:
        """One task per row; ``fields`` must be every concrete field, in order."""
        if init_signals_connected():
            return [ScheduledTask.from_db(self.alias, self.attnames, self.values(row)) for row in rows]
        return [loaded_task(zip(self.attnames, self.values(row)), self.alias) for row in rows]


def loaded_task(values: Iterable[tuple[str, Any]] | dict[str, Any], alias: str) -> ScheduledTask:
    """A saved task from its field values, without ``__init__`` (which walks every field
    and sends two signals): only while no pre_init/post_init receiver is connected,
    since they would not see it."""
    task = ScheduledTask.__new__(ScheduledTask)
    task.__dict__.update(values)
    task._state = ModelState()
    task._state.adding, task._state.db = False, alias
    return task


def reader(connection: BaseDatabaseWrapper) -> RowReader:
    """The reader of whole task rows for this connection (converters depend on its backend)."""
    found = getattr(connection, "_django_jobs_row_reader", None)
    if found is None:
        found = RowReader(connection)
        setattr(connection, "_django_jobs_row_reader", found)  # noqa: B010 -- kept with the connection it reads for
    return found
