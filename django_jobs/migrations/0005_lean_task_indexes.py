"""Fewer index entries per task row: three of a new row's seven were NULL keys.

Most tasks have no unique key and no cron schedule, yet every insert, and every status
change (a status change is not a HOT update: status is in indexed columns), wrote an
entry into each of these three indexes:

- ``cron_schedule_id``'s own index: dropped everywhere (``db_index=False``); the unique
  (cron_schedule_id, cron_fire_time) index serves lookups by schedule.
- on PostgreSQL, the two unique constraints become unique indexes of the same name
  over the rows they constrain (``WHERE ... IS NOT NULL``). NULLs never conflicted, so
  what is unique is unchanged, and ``IntegrityError`` is raised as before.

MySQL/MariaDB have no partial indexes, and SQLite keeps the constraints in its CREATE
TABLE (only a table rebuild could change them): both keep them whole. Django's state
still describes full unique constraints. On PostgreSQL a later migration that alters
them must drop the index (``DROP INDEX``), not the constraint.
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

# Altering a field rebuilds the table on SQLite, which drops 0002's indexes.
claim_indexes = importlib.import_module("django_jobs.migrations.0002_claim_indexes")

TABLE = "django_jobs_scheduledtask"
UNIQUE = {
    "django_jobs_one_active_task_per_key": ("(active_unique_key)", "active_unique_key IS NOT NULL"),
    "django_jobs_one_task_per_fire_time": ("(cron_schedule_id, cron_fire_time)", "cron_schedule_id IS NOT NULL"),
}


def partial_unique_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (columns, rows) in UNIQUE.items():
        schema_editor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {name}")
        schema_editor.execute(f"CREATE UNIQUE INDEX {name} ON {TABLE} {columns} WHERE {rows}")


def unique_constraints(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, (columns, _rows) in UNIQUE.items():
        schema_editor.execute(f"DROP INDEX {name}")
        schema_editor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} UNIQUE {columns}")


class Migration(migrations.Migration):

    dependencies = [
        ('django_jobs', '0004_api_tokens'),
    ]

    operations = [
        migrations.AlterField(
            model_name='scheduledtask',
            name='cron_schedule',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='tasks', to='django_jobs.cronschedule', verbose_name='cron schedule'),
        ),
        migrations.RunPython(claim_indexes.restore_sqlite_indexes, migrations.RunPython.noop),
        migrations.RunPython(partial_unique_indexes, unique_constraints),
    ]
