from datetime import timedelta

import factory
from django.utils import timezone

from django_jobs.models import CronSchedule, ScheduledTask


class ScheduledTaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScheduledTask

    identifier = "tests.noop"
    args = factory.LazyFunction(list)
    kwargs = factory.LazyFunction(dict)
    queue = "default"
    priority = 0
    status = ScheduledTask.Status.PENDING
    scheduled_at = factory.LazyFunction(timezone.now)
    max_retries = 3
    retry_delay = timedelta(seconds=1)


class CronScheduleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CronSchedule

    name = factory.Sequence(lambda number: f"schedule-{number}")
    job_name = "tests.noop"
    expression = "*/5 * * * *"
