"""MariaDB/MySQL: the ORM's claim with ``FOR UPDATE SKIP LOCKED`` (MariaDB 10.6+, MySQL 8+)
and the batch writes of ``Engine`` suit it; what differs is said here.

No statement triggers and no ``UPDATE … RETURNING``: the event trail is written beside
each change (row triggers slowed the drain and ``enqueue_many`` far more (figures: bench/README.md, "Measured design choices")).
No NOTIFY: workers poll. No partial indexes: a leading ``status`` column narrows the
claim's scan instead, and a foreign key's column is indexed by InnoDB itself.
"""

from __future__ import annotations

from typing import Any, cast

from django.db.backends.base.base import BaseDatabaseWrapper

from .engine import DDL, TASKS, Engine, flow_claim_indexes

# The claim indexes (migration 0002), each led by the status it reads where that matters.
CLAIM_INDEXES = {
    "django_jobs_claim_idx": "(status, priority DESC, scheduled_at, id)",
    "django_jobs_queue_claim_idx": "(status, queue, priority DESC, scheduled_at, id)",
    "django_jobs_running_idx": "(status, worker_id, started_at)",
    "django_jobs_executed_idx": "(executed_at)",
    "django_jobs_failed_idx": "(failed_at)",
}


# Migration 0010: ``flow_key`` second, so that one index walks the unlimited rows
# (``flow_key IS NULL`` is an equality to InnoDB) and each key's rows, in claim order.
FLOW_CLAIM_INDEXES = {
    "django_jobs_claim_idx": "(status, flow_key, priority DESC, scheduled_at, id)",
    "django_jobs_queue_claim_idx": "(status, flow_key, queue, priority DESC, scheduled_at, id)",
}


class MySQLEngine(Engine):
    vendor = "mysql"

    def inserts_from_json(self, connection: BaseDatabaseWrapper) -> bool:
        # JSON_TABLE and INSERT … RETURNING: MariaDB 10.6+. MySQL has no RETURNING.
        mysql = cast(Any, connection)  # the MySQL backend's own wrapper: mysql_is_mariadb, mysql_version
        return bool(connection.features.can_return_rows_from_bulk_insert and mysql.mysql_is_mariadb
                    and mysql.mysql_version >= (10, 6))

    def json_rows(self, varying: list[Any]) -> tuple[str, list[str], str]:
        # JSON_TABLE names every value it reads in its COLUMNS list, each of its column's type.
        columns = "".join(f", v{index} {field.db_type(self.connection)} PATH '$[{index}]'"
                          for index, field in enumerate(varying, start=2))
        source = f"JSON_TABLE(%s, '$[*]' COLUMNS (n FOR ORDINALITY, a JSON PATH '$[0]', k JSON PATH '$[1]'{columns})) AS r"
        return source, ["r.a", "r.k", *(f"r.v{index}" for index in range(2, 2 + len(varying)))], "r.n"

    # -- flow control -----------------------------------------------------------------------
    def flow_lanes(self, after: str | None, count: int) -> list[str]:
        """The next keys by a walk of the claim index's limited rows, grouped by key.

        Not the recursive skip scan of the other engines: MariaDB runs its correlated
        ``MIN`` as a scan of every pending row, not one probe per key (3 s for 100 keys
        beside a backlog of 100,000). This walk reads the index entries of the keys it
        returns: a backlog of 100,000 tasks of one key costs ~20 ms once per round of
        keys, and nothing in the claims between.
        """
        with self.connection.cursor() as cursor:
            start = "flow_key > %s" if after is not None else "flow_key IS NOT NULL"
            cursor.execute(f"SELECT flow_key FROM {TASKS} WHERE status = 'pending' AND {start} "
                           f"GROUP BY status, flow_key ORDER BY flow_key LIMIT %s", [*([after] if after is not None else []), count])
            return [lane for (lane,) in cursor.fetchall()]

    forms_keys = True

    def key_form(self, key: str) -> str:
        """The default collations ignore case and trailing spaces: "Account:7 " and
        "account:7" are one key here, one FlowKey row and one count."""
        return key.casefold().rstrip(" ")

    def index_hint(self, index: str) -> str:
        # On a table of a million rows, EXPLAIN planned a key's heads (100,000 of them
        # pending) as a scan of the whole table and a sort. The limited rows live in the
        # claim index here (flow_key is its second column).
        return f" FORCE INDEX ({'django_jobs_claim_idx' if index == 'django_jobs_flow_idx' else index})"

    def one_lane(self, select: str, number: int) -> str:
        # In parentheses, not as a derived table: a third faster with 100 lanes.
        return f"({select})"

    # -- the schema's own SQL (migrations) ------------------------------------------------
    def claim_indexes(self) -> DDL:
        return DDL([f"CREATE INDEX {name} ON {TASKS} {columns}" for name, columns in CLAIM_INDEXES.items()],
                   [f"DROP INDEX {name} ON {TASKS}" for name in CLAIM_INDEXES])

    def flow_indexes(self) -> DDL:
        return flow_claim_indexes(FLOW_CLAIM_INDEXES, CLAIM_INDEXES, f"DROP INDEX {{}} ON {TASKS}")
