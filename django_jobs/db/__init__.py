"""One engine per database: the SQL in which PostgreSQL, MariaDB/MySQL and SQLite differ.

``engine(alias)`` is the engine of a connection alias, chosen by its vendor and kept.
Each answers the same calls (claim a batch, change a batch of held rows with their
events, wake workers, set a new connection up, the DDL of the migrations that Django's
models cannot say: ``schema_engine``) and says what it can do
(``triggers_write_events``, ``can_notify``, ``can_listen``); ``Engine`` itself is the
ORM's way, which any other Django backend gets. Above this package, the claim, the
worker's batch writes, the event trail, NOTIFY and the migrations name no vendor and
open no cursor of their own (the enqueue's insert paths are to move here next, see the
README's Status).

Engines are named by dotted path and imported on first use: they read the models,
and the models' querysets call them.
"""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed
from django.db import connections
from django.utils.module_loading import import_string

from .engine import DDL, Engine

ENGINES = {
    "postgresql": "django_jobs.db.postgresql.PostgreSQLEngine",
    "mysql": "django_jobs.db.mysql.MySQLEngine",
    "sqlite": "django_jobs.db.sqlite.SQLiteEngine",
}
_engines: dict[str, Engine] = {}


def engine(alias: str, vendor: str | None = None) -> Engine:
    """The engine of the database ``alias``, kept per alias: a dict lookup, as the single
    enqueue asks several times per call, and going through ``connections[alias]`` (an
    asgiref Local) each time was a visible share of its Python (figures: bench/README.md, "Measured design choices").

    ``vendor``: given by a caller holding a connection that ``connections`` does not
    know (Django's own ``__no_db__`` connection while it creates a test database).
    """
    found = _engines.get(alias)
    if found is None or (vendor is not None and found.vendor != vendor):
        vendor = vendor or connections[alias].vendor
        engine_class = import_string(ENGINES[vendor]) if vendor in ENGINES else Engine
        found = _engines[alias] = engine_class(alias)
        found.vendor = vendor  # the ORM engine serves any vendor: remember which, or the check above never holds
    return found


def schema_engine(schema_editor: Any) -> Engine:
    """The engine of the connection a migration runs on: its DDL, applied or reverted
    through ``schema_editor`` (``engine(alias).claim_indexes().apply(schema_editor)``)."""
    connection = schema_editor.connection
    return engine(connection.alias, connection.vendor)


def forget_engines(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: an alias may name another database now (tests)."""
    if setting == "DATABASES":
        _engines.clear()


setting_changed.connect(forget_engines, dispatch_uid="django_jobs.db.forget_engines")


__all__ = ["DDL", "ENGINES", "Engine", "engine", "schema_engine"]
