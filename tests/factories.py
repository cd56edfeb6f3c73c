from datetime import timedelta

import factory
from django.conf import settings
from django.utils import timezone

from django_jobs.models import (
    TOKEN_HINT_LENGTH,
    TOKEN_PREFIX,
    ApiToken,
    CronSchedule,
    PausedQueue,
    ScheduledTask,
    Worker,
    hash_token,
)


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


class WorkerFactory(factory.django.DjangoModelFactory):
    """A registered worker that beat just now; pass ``last_heartbeat`` for a stale one."""

    class Meta:
        model = Worker

    worker_id = factory.Sequence(lambda number: f"host:{number}")
    hostname = "host"
    pid = factory.Sequence(lambda number: number + 1)


class PausedQueueFactory(factory.django.DjangoModelFactory):
    """A paused queue, as ``pause_queue`` leaves it (set-up only: tests of pausing call it)."""

    class Meta:
        model = PausedQueue

    queue = factory.Sequence(lambda number: f"queue-{number}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = settings.AUTH_USER_MODEL

    username = factory.Sequence(lambda number: f"user-{number}")


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """A token row for ``token``, stored as ``ApiToken.issue`` stores it (its hash and hint).

    Only the hash is kept, so a test that sends the token passes it: ``ApiTokenFactory(token="djj_ci")``.
    """

    class Meta:
        model = ApiToken

    class Params:
        # Numbered first: tokens of one test differ in their hints too.
        token = factory.Sequence(lambda number: f"{TOKEN_PREFIX}{number:08d}-test-token")

    user = factory.SubFactory(UserFactory)
    hint = factory.LazyAttribute(lambda row: row.token[:TOKEN_HINT_LENGTH])
    key_hash = factory.LazyAttribute(lambda row: hash_token(row.token))
