"""The event trail: TaskEvent, and the triggers that write it (see django_jobs/events.py)."""

import django.db.models.deletion
from django.db import migrations, models

from django_jobs.events import create_triggers, drop_triggers


def install(apps, schema_editor):
    create_triggers(schema_editor)


def uninstall(apps, schema_editor):
    drop_triggers(schema_editor)


class Migration(migrations.Migration):
    # MySQL cannot run DDL (CREATE TRIGGER) inside a transaction.
    atomic = False

    dependencies = [
        ('django_jobs', '0006_worker_health'),
    ]

    operations = [
        migrations.CreateModel(
            name='TaskEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('started', 'started'), ('completed', 'completed'), ('retried', 'failed, will retry'), ('failed', 'failed'), ('cancelled', 'cancelled'), ('recovered', 'recovered from a lost worker'), ('released', 'given back unstarted'), ('requeued', 'retried by an operator'), ('paused', 'queue paused'), ('resumed', 'queue resumed')], max_length=20, verbose_name='event')),
                ('at', models.DateTimeField(help_text='When the change was written.', verbose_name='at')),
                ('attempt', models.PositiveIntegerField(default=0, help_text='The attempt it belongs to; 0: none yet.', verbose_name='attempt')),
                ('worker_id', models.CharField(blank=True, default='', max_length=255, verbose_name='worker')),
                ('queue', models.CharField(blank=True, default='', max_length=100, verbose_name='queue')),
                ('message', models.TextField(blank=True, default='', help_text='The error of a failed attempt, the reason of a pause.', verbose_name='message')),
                ('task', models.ForeignKey(blank=True, db_constraint=False, help_text='Empty for events of a queue.', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='events', to='django_jobs.scheduledtask', verbose_name='task')),
            ],
            options={
                'verbose_name': 'task event',
                'verbose_name_plural': 'task events',
                'ordering': ('at', 'id'),
            },
        ),
        migrations.RunPython(install, uninstall),
    ]
