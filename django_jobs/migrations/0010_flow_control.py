"""Flow control: concurrency and rate limits per key, enforced in the claim.

Five columns carry a task's limits and its keys; ``flow_key`` (generated) is what the
claim groups a limited task by. The claim indexes are rebuilt to cover unlimited rows
only, and limited rows get an index by key (``Engine.flow_indexes``); ``FlowKey`` rows
are the locks the claim takes per key, and a rate key's window.
"""

import django.db.models.functions.comparison
import django.utils.timezone
from django.db import migrations, models

from django_jobs.db import schema_engine


def create_flow_indexes(apps, schema_editor):
    schema_engine(schema_editor).flow_indexes().apply(schema_editor)


def drop_flow_indexes(apps, schema_editor):
    schema_engine(schema_editor).flow_indexes().revert(schema_editor)


def restore_indexes(apps, schema_editor):
    schema_engine(schema_editor).indexes_after_rebuild().apply(schema_editor)


class Migration(migrations.Migration):
    # MariaDB/MySQL cannot run the index DDL inside a transaction (no transactional DDL).
    atomic = False

    dependencies = [
        ('django_jobs', '0009_events_cascade'),
    ]

    operations = [
        # Backwards, removing the columns rebuilds the table on SQLite: restore its indexes
        # last (this runs after every other reversed operation of this migration).
        migrations.RunPython(migrations.RunPython.noop, restore_indexes),
        migrations.AddField(
            model_name='scheduledtask',
            name='concurrency_key',
            field=models.CharField(blank=True, help_text='At most concurrency limit tasks of this key run at once, on every worker.', max_length=255, null=True, verbose_name='concurrency key'),
        ),
        migrations.AddField(
            model_name='scheduledtask',
            name='concurrency_limit',
            field=models.PositiveIntegerField(blank=True, null=True, verbose_name='concurrency limit'),
        ),
        migrations.AddField(
            model_name='scheduledtask',
            name='rate_key',
            field=models.CharField(blank=True, help_text='At most rate limit tasks of this key start per rate period.', max_length=255, null=True, verbose_name='rate key'),
        ),
        migrations.AddField(
            model_name='scheduledtask',
            name='rate_limit',
            field=models.PositiveIntegerField(blank=True, null=True, verbose_name='rate limit'),
        ),
        migrations.AddField(
            model_name='scheduledtask',
            name='rate_period',
            field=models.PositiveIntegerField(blank=True, help_text='Seconds.', null=True, verbose_name='rate period'),
        ),
        migrations.CreateModel(
            name='FlowKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('c', 'concurrency'), ('r', 'rate'), ('q', 'queue')], max_length=1, verbose_name='kind')),
                ('key', models.CharField(max_length=255, verbose_name='key')),
                ('window', models.BigIntegerField(default=0, help_text='Start of the current window, in periods since the epoch.', verbose_name='rate window')),
                ('started', models.PositiveIntegerField(default=0, verbose_name='started in window')),
                ('used_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='last claimed under')),
            ],
            options={
                'verbose_name': 'flow key',
                'verbose_name_plural': 'flow keys',
                'constraints': [models.UniqueConstraint(fields=('kind', 'key'), name='django_jobs_one_flow_key')],
            },
        ),
        migrations.AddField(
            model_name='scheduledtask',
            name='flow_key',
            field=models.GeneratedField(db_persist=True, expression=django.db.models.functions.comparison.Coalesce(models.F('concurrency_key'), models.F('rate_key')), output_field=models.CharField(max_length=255, null=True), verbose_name='flow key'),
        ),
        migrations.RunPython(create_flow_indexes, drop_flow_indexes),
    ]
