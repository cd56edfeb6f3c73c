"""The same two jobs for the peer, as Django Tasks run by django-tasks-db's db_worker."""

import time

from django.tasks import task


@task
def noop() -> None:
    """Does nothing."""


@task
def mark() -> float:
    """Return the wall-clock time it was entered (stored as the task's return value)."""
    return time.time()
