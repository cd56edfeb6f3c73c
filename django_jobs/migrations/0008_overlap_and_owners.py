"""Cron overlap control and task owners.

Schedules that exist already keep today's behaviour (``overlap="allow"``: every fire
is enqueued); schedules created from now on skip a fire while their previous task is
pending or running. Task owners get an index over owned rows only where the database
has partial indexes (``Engine.owner_index`` in ``django_jobs.db``); elsewhere the
database may index a foreign key's column by itself.
"""

import importlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from django_jobs.db import schema_engine

# A foreign key to the user model is a plain id when the app's tables live on a
# database of their own (DJANGO_JOBS["DATABASE"]): see django_jobs.routers.user_link.
from django_jobs.routers import user_link

# Its restore of the claim indexes, for this migration's backward table rebuilds.
claim_indexes = importlib.import_module("django_jobs.migrations.0002_claim_indexes")


def create_owner_index(apps, schema_editor):
    schema_engine(schema_editor).owner_index().apply(schema_editor)


def drop_owner_index(apps, schema_editor):
    schema_engine(schema_editor).owner_index().revert(schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_jobs", "0007_event_trail"),
    ]

    operations = [
        # Backwards, the table rebuilds below drop the claim indexes on SQLite: restore
        # them last (this runs after every other reversed operation of this migration).
        migrations.RunPython(migrations.RunPython.noop, claim_indexes.restore_claim_indexes),
        migrations.AddField(
            model_name="cronschedule",
            name="overlap",
            field=models.CharField(choices=[("skip", "skip the fire while the previous task is pending or running"), ("queue", "enqueue the fire once the previous task has finished"), ("allow", "enqueue every fire at once, even while the previous one runs")], default="allow", help_text="What a fire does while the schedule's previous task is still pending or running.", max_length=8, verbose_name="overlap"),
        ),
        # Only the model's default changes: existing rows keep "allow" from above.
        migrations.AlterField(
            model_name="cronschedule",
            name="overlap",
            field=models.CharField(choices=[("skip", "skip the fire while the previous task is pending or running"), ("queue", "enqueue the fire once the previous task has finished"), ("allow", "enqueue every fire at once, even while the previous one runs")], default="skip", help_text="What a fire does while the schedule's previous task is still pending or running.", max_length=8, verbose_name="overlap"),
        ),
        migrations.AddField(
            model_name="cronschedule",
            name="skipped_fires",
            field=models.PositiveIntegerField(default=0, editable=False, help_text="Fire times not enqueued because the previous task was still pending or running.", verbose_name="skipped fires"),
        ),
        migrations.AddField(
            model_name="cronschedule",
            name="last_skipped_at",
            field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="last skipped fire"),
        ),
        migrations.AddField(
            model_name="cronschedule",
            name="waiting_fires",
            field=models.JSONField(blank=True, default=list, editable=False, help_text="overlap=queue: fire times waiting for the previous task to finish, oldest first.", verbose_name="waiting fires"),
        ),
        migrations.AddField(
            model_name="scheduledtask",
            name="owner",
            field=models.ForeignKey(blank=True, db_index=False, help_text="The user the task belongs to: only they and users who see every task (superusers, see_all_scheduledtask) see it in admin and the API.", null=True, **user_link(django.db.models.deletion.SET_NULL), related_name="job_tasks", to=settings.AUTH_USER_MODEL, verbose_name="owner"),
        ),
        migrations.RunPython(create_owner_index, drop_owner_index),
        migrations.AlterModelOptions(
            name='scheduledtask',
            options={'ordering': ('-id',), 'permissions': [('retry_scheduledtask', 'Can retry failed or cancelled tasks'), ('cancel_scheduledtask', 'Can cancel pending tasks'), ('see_all_scheduledtask', "Can see and act on every user's tasks, not only their own")], 'verbose_name': 'scheduled task', 'verbose_name_plural': 'scheduled tasks'},
        ),
    ]
