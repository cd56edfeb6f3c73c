"""Migrations: the DDL each database's engine declares (``django_jobs.db``) is what the
migrations shipped with, it is there after ``migrate``, and it survives migrating back and
forth."""

import hashlib
import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from django_jobs.db import engine

TASKS = "django_jobs_scheduledtask"
CREATED = re.compile(r"CREATE (UNIQUE )?INDEX (?:IF NOT EXISTS )?(\w+) ")

# What migrations 0002, 0003/0005 (restore), 0005 (unique) and 0008 (owner) ran when they
# shipped. A database migrated then must end up as one migrated today: change a shipped
# migration's SQL and the two part ways. Write a new migration instead.
PARTIAL_CLAIM = [
    "django_jobs_claim_idx ON django_jobs_scheduledtask (priority DESC, scheduled_at, id) WHERE status = 'pending'",
    "django_jobs_queue_claim_idx ON django_jobs_scheduledtask (queue, priority DESC, scheduled_at, id) "
    "WHERE status = 'pending'",
    "django_jobs_running_idx ON django_jobs_scheduledtask (worker_id, started_at) WHERE status = 'running'",
    "django_jobs_executed_idx ON django_jobs_scheduledtask (executed_at) WHERE executed_at IS NOT NULL",
    "django_jobs_failed_idx ON django_jobs_scheduledtask (failed_at) WHERE failed_at IS NOT NULL",
]
CLAIM_NAMES = ["django_jobs_claim_idx", "django_jobs_queue_claim_idx", "django_jobs_running_idx",
               "django_jobs_executed_idx", "django_jobs_failed_idx"]
OWNER = (["CREATE INDEX django_jobs_owner_idx ON django_jobs_scheduledtask (owner_id, id) WHERE owner_id IS NOT NULL"],
         ["DROP INDEX django_jobs_owner_idx"])
NONE: tuple[list[str], list[str]] = ([], [])
# 0010: the claim indexes over unlimited rows only, and the limited rows' index by key.
FLOW_CLAIM = [
    "django_jobs_claim_idx ON django_jobs_scheduledtask (priority DESC, scheduled_at, id) "
    "WHERE status = 'pending' AND flow_key IS NULL",
    "django_jobs_queue_claim_idx ON django_jobs_scheduledtask (queue, priority DESC, scheduled_at, id) "
    "WHERE status = 'pending' AND flow_key IS NULL",
    "django_jobs_flow_idx ON django_jobs_scheduledtask (flow_key, priority DESC, scheduled_at, id) "
    "WHERE status = 'pending' AND flow_key IS NOT NULL",
]
PARTIAL_FLOW = (
    ["DROP INDEX django_jobs_claim_idx", "DROP INDEX django_jobs_queue_claim_idx",
     *(f"CREATE INDEX {index}" for index in FLOW_CLAIM)],
    ["DROP INDEX django_jobs_claim_idx", "DROP INDEX django_jobs_queue_claim_idx", "DROP INDEX django_jobs_flow_idx",
     *(f"CREATE INDEX {index}" for index in PARTIAL_CLAIM[:2])],
)
SQLITE_REBUILT = [*(f"CREATE INDEX IF NOT EXISTS {index}" for index in PARTIAL_CLAIM),
                  "CREATE INDEX IF NOT EXISTS django_jobs_owner_idx ON django_jobs_scheduledtask (owner_id, id) "
                  "WHERE owner_id IS NOT NULL"]
SHIPPED = {
    "postgresql": {
        "claim_indexes": ([f"CREATE INDEX {index}" for index in PARTIAL_CLAIM],
                          [f"DROP INDEX {name}" for name in CLAIM_NAMES]),
        "restore_claim_indexes": NONE,
        "unique_indexes": (
            ["ALTER TABLE django_jobs_scheduledtask DROP CONSTRAINT django_jobs_one_active_task_per_key",
             "CREATE UNIQUE INDEX django_jobs_one_active_task_per_key ON django_jobs_scheduledtask (active_unique_key) "
             "WHERE active_unique_key IS NOT NULL",
             "ALTER TABLE django_jobs_scheduledtask DROP CONSTRAINT django_jobs_one_task_per_fire_time",
             "CREATE UNIQUE INDEX django_jobs_one_task_per_fire_time ON django_jobs_scheduledtask "
             "(cron_schedule_id, cron_fire_time) WHERE cron_schedule_id IS NOT NULL"],
            ["DROP INDEX django_jobs_one_active_task_per_key",
             "ALTER TABLE django_jobs_scheduledtask ADD CONSTRAINT django_jobs_one_active_task_per_key "
             "UNIQUE (active_unique_key)",
             "DROP INDEX django_jobs_one_task_per_fire_time",
             "ALTER TABLE django_jobs_scheduledtask ADD CONSTRAINT django_jobs_one_task_per_fire_time "
             "UNIQUE (cron_schedule_id, cron_fire_time)"]),
        "owner_index": OWNER,
        "flow_indexes": PARTIAL_FLOW,
        "indexes_after_rebuild": NONE,
    },
    "mysql": {
        "claim_indexes": (
            ["CREATE INDEX django_jobs_claim_idx ON django_jobs_scheduledtask (status, priority DESC, scheduled_at, id)",
             "CREATE INDEX django_jobs_queue_claim_idx ON django_jobs_scheduledtask "
             "(status, queue, priority DESC, scheduled_at, id)",
             "CREATE INDEX django_jobs_running_idx ON django_jobs_scheduledtask (status, worker_id, started_at)",
             "CREATE INDEX django_jobs_executed_idx ON django_jobs_scheduledtask (executed_at)",
             "CREATE INDEX django_jobs_failed_idx ON django_jobs_scheduledtask (failed_at)"],
            [f"DROP INDEX {name} ON django_jobs_scheduledtask" for name in CLAIM_NAMES]),
        "restore_claim_indexes": NONE,
        "unique_indexes": NONE,
        "owner_index": NONE,
        "flow_indexes": (
            ["DROP INDEX django_jobs_claim_idx ON django_jobs_scheduledtask",
             "DROP INDEX django_jobs_queue_claim_idx ON django_jobs_scheduledtask",
             "CREATE INDEX django_jobs_claim_idx ON django_jobs_scheduledtask "
             "(status, flow_key, priority DESC, scheduled_at, id)",
             "CREATE INDEX django_jobs_queue_claim_idx ON django_jobs_scheduledtask "
             "(status, flow_key, queue, priority DESC, scheduled_at, id)"],
            ["DROP INDEX django_jobs_claim_idx ON django_jobs_scheduledtask",
             "DROP INDEX django_jobs_queue_claim_idx ON django_jobs_scheduledtask",
             "CREATE INDEX django_jobs_claim_idx ON django_jobs_scheduledtask (status, priority DESC, scheduled_at, id)",
             "CREATE INDEX django_jobs_queue_claim_idx ON django_jobs_scheduledtask "
             "(status, queue, priority DESC, scheduled_at, id)"]),
        "indexes_after_rebuild": NONE,
    },
    "sqlite": {
        "claim_indexes": ([f"CREATE INDEX {index}" for index in PARTIAL_CLAIM],
                          [f"DROP INDEX {name}" for name in CLAIM_NAMES]),
        "restore_claim_indexes": ([f"CREATE INDEX IF NOT EXISTS {index}" for index in PARTIAL_CLAIM], []),
        "unique_indexes": NONE,
        "owner_index": OWNER,
        "flow_indexes": ([*SQLITE_REBUILT, *PARTIAL_FLOW[0]], PARTIAL_FLOW[1]),
        "indexes_after_rebuild": (SQLITE_REBUILT, []),
    },
}
# 0007's trigger function and triggers on PostgreSQL, forward then backward statements,
# joined by newlines (too long to copy here; a change to them needs a new migration too).
TRIGGERS_SHA256 = "2666bc5504b0e533849507d2bf8fe7f221dee4d1272e3e4eca515d125d8b5ba7"


def test_the_engine_declares_exactly_the_ddl_its_migrations_shipped_with():
    # This database's engine: each cell checks its own (the PostgreSQL engine needs psycopg).
    ours = engine(connection.alias)
    declared = {part: tuple(getattr(ours, part)()) for part in SHIPPED[connection.vendor]}
    assert declared == SHIPPED[connection.vendor]
    triggers = ours.event_triggers()
    if connection.vendor == "postgresql":
        assert hashlib.sha256("\n".join(triggers.forward + triggers.backward).encode()).hexdigest() == TRIGGERS_SHA256
    else:
        assert triggers == NONE


def declared_indexes():
    """The indexes this database's engine creates in migrations: name -> unique."""
    ours = engine(connection.alias)
    statements = (ours.claim_indexes().forward + ours.unique_indexes().forward + ours.owner_index().forward
                  + ours.flow_indexes().forward)
    return {found[2]: bool(found[1]) for found in map(CREATED.match, statements) if found}


def task_table_constraints():
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, TASKS)


@pytest.mark.django_db
def test_every_index_the_engine_declares_exists_after_migrate():
    declared = declared_indexes()
    assert {*CLAIM_NAMES, "django_jobs_flow_idx"} <= set(declared) or connection.vendor == "mysql"
    assert set(CLAIM_NAMES) <= set(declared)
    constraints = task_table_constraints()
    assert {name: constraints.get(name, {}).get("unique") for name in declared} == declared, sorted(constraints)


def migrate(targets):
    MigrationExecutor(connection).migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_migrating_0005_backwards_and_forwards_again_leaves_the_task_table_as_it_was():
    """0005 turns unique constraints into partial unique indexes (PostgreSQL), rebuilds the
    table (SQLite: the claim indexes must come back); backwards, both are undone."""
    before = task_table_constraints()
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        migrate([("django_jobs", "0004_api_tokens")])
        assert "django_jobs_owner_idx" not in task_table_constraints()
    finally:
        migrate(latest)
    assert task_table_constraints() == before


@pytest.mark.django_db(transaction=True)
def test_migrating_back_to_zero_step_by_step_keeps_the_claim_indexes_and_comes_back_whole():
    """Each migration back leaves the claim indexes in place (SQLite's table rebuilds drop
    them), so ``migrate django_jobs zero`` works, and forward again rebuilds the same table."""
    before = task_table_constraints()
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    ours = sorted(name for app, name in executor.loader.disk_migrations if app == "django_jobs")
    missing_at = {}
    try:
        for target in reversed(ours[1:-1]):  # 0008 ... 0002: the claim indexes exist from 0002 on
            migrate([("django_jobs", target)])
            if absent := sorted(set(CLAIM_NAMES) - set(task_table_constraints())):
                missing_at[target] = absent
        migrate([("django_jobs", None)])
    finally:
        migrate(latest)
    assert missing_at == {}
    assert task_table_constraints() == before
