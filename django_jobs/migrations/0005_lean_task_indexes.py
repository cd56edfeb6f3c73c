"""Fewer index entries per task row: three of a new row's seven were NULL keys.

Most tasks have no unique key and no cron schedule, yet every insert, and every status
change (a status change is not a HOT update: status is in indexed columns), wrote an
entry into each of these three indexes:

- ``cron_schedule_id``'s own index: dropped everywhere (``db_index=False``); the unique
  (cron_schedule_id, cron_fire_time) index serves lookups by schedule.
- the two unique constraints become unique indexes of the same name over the rows they
  constrain (``WHERE ... IS NOT NULL``), where the database has partial indexes and can
  replace a constraint in place (``Engine.unique_indexes`` in ``django_jobs.db``). NULLs
  never conflicted, so what is unique is unchanged, and ``IntegrityError`` is raised as
  before. Elsewhere they stay whole. Django's state still describes full unique constraints.
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

from django_jobs.db import schema_engine

# Altering a field may rebuild the table, which drops 0002's indexes.
claim_indexes = importlib.import_module("django_jobs.migrations.0002_claim_indexes")


def partial_unique_indexes(apps, schema_editor):
    schema_engine(schema_editor).unique_indexes().apply(schema_editor)


def unique_constraints(apps, schema_editor):
    schema_engine(schema_editor).unique_indexes().revert(schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('django_jobs', '0004_api_tokens'),
    ]

    operations = [
        # Backwards, the table rebuilds below drop the claim indexes on SQLite: restore
        # them last (this runs after every other reversed operation of this migration).
        migrations.RunPython(migrations.RunPython.noop, claim_indexes.restore_claim_indexes),
        migrations.AlterField(
            model_name='scheduledtask',
            name='cron_schedule',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='tasks', to='django_jobs.cronschedule', verbose_name='cron schedule'),
        ),
        migrations.RunPython(claim_indexes.restore_claim_indexes, migrations.RunPython.noop),
        migrations.RunPython(partial_unique_indexes, unique_constraints),
    ]
