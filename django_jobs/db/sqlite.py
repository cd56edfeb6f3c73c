"""SQLite: one writer at a time and no row locks, so the claim is a conditional UPDATE
(``Engine.claim_with_conditional_update``): two workers can never both match a row.

Django rebuilds a table for most of its schema changes here, which drops the indexes
it does not know: every migration that alters the task table ends by restoring them.

The event trail is written beside each change (row triggers cost ``enqueue_many``
much more (figures: bench/README.md, "Measured design choices")). No NOTIFY: workers poll.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from .engine import CLAIM_INDEXES, DDL, OWNER_INDEX, TASKS, Engine


class SQLiteEngine(Engine):
    vendor = "sqlite"

    @property
    def skips_locked(self) -> bool:
        return False

    def inserts_from_json(self, connection: BaseDatabaseWrapper) -> bool:
        # INSERT … RETURNING: SQLite 3.35+; json_each: the JSON1 functions.
        features = connection.features
        return bool(features.can_return_rows_from_bulk_insert and features.supports_json_field)

    def json_rows(self, varying: list[Any]) -> tuple[str, list[str], str]:
        # The JSON value itself (text or number), as the ORM would store it.
        read = [f"json_extract(r.value, '$[{index}]')" for index in range(len(varying) + 2)]
        return "json_each(%s) AS r", read, "r.key"

    # -- the schema's own SQL (migrations) ------------------------------------------------
    def restore_claim_indexes(self) -> DDL:
        return DDL([f"CREATE INDEX IF NOT EXISTS {name} ON {TASKS} {columns}" for name, columns in CLAIM_INDEXES.items()],
                   [])

    def owner_index(self) -> DDL:
        return OWNER_INDEX

    def indexes_after_rebuild(self) -> DDL:
        """The indexes of 0002 and 0008 as they were before 0010 (a rebuild dropped them)."""
        restored = [*self.restore_claim_indexes().forward,
                    *(statement.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS") for statement in OWNER_INDEX.forward)]
        return DDL(restored, [])

    def flow_indexes(self) -> DDL:
        # Adding the generated flow_key rebuilt the table: first the indexes it dropped.
        ddl = super().flow_indexes()
        return DDL([*self.indexes_after_rebuild().forward, *ddl.forward], ddl.backward)
