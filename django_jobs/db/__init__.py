"""One engine per database: the SQL in which PostgreSQL, MariaDB/MySQL and SQLite differ.

``engine(alias)`` is the engine of a connection alias, chosen by its vendor and kept.
Each answers the same calls (claim a batch, change a batch of held rows with their
events, wake workers, set a new connection up) and says what it can do
(``triggers_write_events``, ``can_notify``, ``can_listen``); ``Engine`` itself is the
ORM's way, which any other Django backend gets. Above this package, the claim, the
worker's batch writes, the event trail and NOTIFY name no vendor and open no cursor of
their own (the enqueue's insert paths are to move here next, see the README's Status).

Engines are named by dotted path and imported on first use: they read the models,
and the models' querysets call them.
"""

from __future__ import annotations

from django.db import connections
from django.utils.module_loading import import_string

from .engine import Engine

ENGINES = {
    "postgresql": "django_jobs.db.postgresql.PostgreSQLEngine",
    "mysql": "django_jobs.db.mysql.MySQLEngine",
    "sqlite": "django_jobs.db.sqlite.SQLiteEngine",
}
_engines: dict[tuple[str, str], Engine] = {}


def engine(alias: str, vendor: str | None = None) -> Engine:
    """The engine of the database ``alias`` (one instance per alias and vendor).

    ``vendor``: given by a caller holding a connection that ``connections`` does not
    know (Django's own ``__no_db__`` connection while it creates a test database).
    """
    vendor = vendor or connections[alias].vendor
    found = _engines.get((alias, vendor))
    if found is None:
        engine_class = import_string(ENGINES[vendor]) if vendor in ENGINES else Engine
        found = _engines[(alias, vendor)] = engine_class(alias)
    return found


__all__ = ["ENGINES", "Engine", "engine"]
