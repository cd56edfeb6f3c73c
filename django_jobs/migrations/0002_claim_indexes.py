"""Indexes for the claim, recovery and the dashboard, written per database.

PostgreSQL and SQLite get partial indexes over pending (or running) rows only: they
stay as small as the backlog however many finished rows pile up, so the claim costs
the same with a million completed rows. MySQL/MariaDB have no partial indexes; there
a leading ``status`` column narrows the scan instead. Declaring them in Meta would
print system-check warnings on MySQL for every command, hence SQL here.

Django does not know these indexes, and on SQLite it rebuilds the table for most
schema changes, dropping them: every later migration that alters this table on
SQLite must end with ``restore_sqlite_indexes`` (see 0003).
"""

from django.db import migrations

TABLE = "django_jobs_scheduledtask"

PARTIAL = {
    # Workers serving every queue: walk pending rows in claim order.
    "django_jobs_claim_idx": "(priority DESC, scheduled_at, id) WHERE status = 'pending'",
    # Workers serving some queues.
    "django_jobs_queue_claim_idx": "(queue, priority DESC, scheduled_at, id) WHERE status = 'pending'",
    # Recovery finds running rows and their workers.
    "django_jobs_running_idx": "(worker_id, started_at) WHERE status = 'running'",
    # The admin dashboard's throughput and failure chart reads recent outcomes.
    "django_jobs_executed_idx": "(executed_at) WHERE executed_at IS NOT NULL",
    "django_jobs_failed_idx": "(failed_at) WHERE failed_at IS NOT NULL",
}
FULL = {
    "django_jobs_claim_idx": "(status, priority DESC, scheduled_at, id)",
    "django_jobs_queue_claim_idx": "(status, queue, priority DESC, scheduled_at, id)",
    "django_jobs_running_idx": "(status, worker_id, started_at)",
    "django_jobs_executed_idx": "(executed_at)",
    "django_jobs_failed_idx": "(failed_at)",
}


def create_indexes(apps, schema_editor):
    definitions = FULL if schema_editor.connection.vendor == "mysql" else PARTIAL
    for name, columns in definitions.items():
        schema_editor.execute(f"CREATE INDEX {name} ON {TABLE} {columns}")


def restore_sqlite_indexes(apps, schema_editor):
    """Re-create the indexes a SQLite table rebuild dropped (no-op elsewhere)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    for name, columns in PARTIAL.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} {columns}")


def drop_indexes(apps, schema_editor):
    suffix = f" ON {TABLE}" if schema_editor.connection.vendor == "mysql" else ""
    for name in PARTIAL:
        schema_editor.execute(f"DROP INDEX {name}{suffix}")


class Migration(migrations.Migration):
    # MySQL cannot run DDL inside a transaction; each CREATE INDEX stands alone.
    atomic = False
    dependencies = [("django_jobs", "0001_initial")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
