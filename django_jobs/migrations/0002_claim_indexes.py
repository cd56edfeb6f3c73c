"""Indexes for the claim, recovery and the dashboard, each database's own
(``Engine.claim_indexes`` in ``django_jobs.db``): partial where the database has partial
indexes, so that the claim costs the same with a million finished rows.

Django does not know these indexes; where it rebuilds the table for a schema change, it
drops them: every later migration that alters this table ends with
``restore_claim_indexes`` (see 0003).
"""

from django.db import migrations

from django_jobs.db import schema_engine


def create_indexes(apps, schema_editor):
    schema_engine(schema_editor).claim_indexes().apply(schema_editor)


def restore_claim_indexes(apps, schema_editor):
    """Re-create the indexes a table rebuild dropped (none is dropped on most databases)."""
    schema_engine(schema_editor).restore_claim_indexes().apply(schema_editor)


def drop_indexes(apps, schema_editor):
    schema_engine(schema_editor).claim_indexes().revert(schema_editor)


class Migration(migrations.Migration):
    # MySQL cannot run DDL inside a transaction; each CREATE INDEX stands alone.
    atomic = False
    dependencies = [("django_jobs", "0001_initial")]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
