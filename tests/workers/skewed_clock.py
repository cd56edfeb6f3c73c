"""tests.settings for a worker whose clock is behind (tests/workers/test_flow.py): its
``timezone.now()``, every time django_jobs reads, runs ``DJANGO_JOBS_TEST_CLOCK_SKEW``
seconds late, as on a host whose clock is off. ``DJANGO_SETTINGS_MODULE`` of that worker."""

import os
from datetime import timedelta

from django.utils import timezone

from tests.settings import *  # noqa: F403

CLOCK_SKEW = timedelta(seconds=float(os.environ.get("DJANGO_JOBS_TEST_CLOCK_SKEW", "0")))
on_time = timezone.now


def behind():
    return on_time() - CLOCK_SKEW


timezone.now = behind
