"""Jobs the tests enqueue. Autodiscovered like any app's jobs.py."""

import asyncio
import os
import threading
import time
from datetime import timedelta

from asgiref.sync import sync_to_async

from django_jobs import job

from .models import Execution

CALLS: list = []


@job(name="tests.noop")
def noop(*args, **kwargs):
    return None


@job(name="tests.add")
def add(a, b):
    return a + b


@job(name="tests.record", takes_context=True)
def record(context, label="", pause=0.0):
    """Write one Execution row per call, with start and end times."""
    row = Execution.objects.create(task_id=context.task.pk if context.task else 0, label=label,
                                   pid=os.getpid(), started=time.time())
    if pause:
        time.sleep(pause)
    row.ended = time.time()
    row.save(update_fields=["ended"])
    return label


@job(name="tests.fail_until", takes_context=True, retry_delay=timedelta(seconds=0), backoff="fixed", max_retries=5)
def fail_until(context, succeed_on_attempt):
    if context.attempt < succeed_on_attempt:
        raise RuntimeError(f"failing on attempt {context.attempt}")
    return context.attempt


@job(name="tests.always_fails", max_retries=2, retry_delay=timedelta(seconds=10))
def always_fails():
    raise ValueError("this job always fails")


@job(name="tests.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@job(name="tests.returns_set")
def returns_set():
    return {1, 2}


@job(name="tests.custom_backoff", backoff=lambda attempt: timedelta(seconds=7 * attempt), max_retries=3)
def custom_backoff():
    raise RuntimeError("boom")


@job(name="tests.async_add")
async def async_add(a, b):
    return a + b


@job(name="tests.async_record", takes_context=True)
async def async_record(context, label="", pause=0.0):
    """``record``'s async twin; its label says which thread ran it (``label@thread``)."""
    started = time.time()
    thread = threading.current_thread().name
    if pause:
        await asyncio.sleep(pause)
    await context.aset_progress(1, 1)
    await sync_to_async(Execution.objects.create)(task_id=context.task.pk if context.task else 0,
                                                  label=f"{label}@{thread}", pid=os.getpid(),
                                                  started=started, ended=time.time())
    return label


@job(name="tests.record_thread", takes_context=True)
def record_thread(context, label=""):
    """A sync job that says which thread ran it (``label@thread``)."""
    now = time.time()
    Execution.objects.create(task_id=context.task.pk if context.task else 0,
                             label=f"{label}@{threading.current_thread().name}", pid=os.getpid(),
                             started=now, ended=now)


@job(name="tests.async_sleep_past_timeout", timeout=1, max_retries=0)
async def async_sleep_past_timeout(seconds):
    await asyncio.sleep(seconds)


@job(name="tests.async_raises", max_retries=1, retry_delay=timedelta(seconds=0), backoff="fixed")
async def async_raises(kind):
    await asyncio.sleep(0)
    raise {"system_exit": SystemExit(3), "value": ValueError("bad value"), "cancelled": asyncio.CancelledError()}[kind]


@job(name="tests.collect")
def collect(value):
    CALLS.append(value)
    return value


@job(name="tests.progress", takes_context=True)
def progress(context, steps):
    for step in range(1, steps + 1):
        context.set_progress(step, steps)
    return steps


@job(name="tests.slow_with_timeout", timeout=1, max_retries=1, retry_delay=0, backoff="fixed")
def slow_with_timeout(seconds):
    time.sleep(seconds)
    return seconds


class Unpicklable(Exception):
    def __init__(self, message, handle):
        super().__init__(message)
        self.handle = handle


@job(name="tests.raises_unpicklable", timeout=30, max_retries=0)
def raises_unpicklable():
    raise Unpicklable("cannot travel", handle=lambda: None)


@job(name="tests.exits_hard", timeout=30, max_retries=0)
def exits_hard():
    os._exit(3)


@job(name="tests.returns_nul")
def returns_nul():
    return "a\x00b"  # PostgreSQL's jsonb cannot store it


class CustomBaseException(BaseException):
    """Neither an Exception nor SystemExit: escapes ``except Exception`` everywhere."""


BASE_EXCEPTIONS = {"KeyboardInterrupt": KeyboardInterrupt, "GeneratorExit": GeneratorExit,
                   "SystemExit": SystemExit, "CustomBaseException": CustomBaseException}


@job(name="tests.raise_base", retry_delay=timedelta(seconds=0), backoff="fixed", max_retries=1)
def raise_base(kind):
    raise BASE_EXCEPTIONS[kind](f"raised by the job: {kind}")


@job(name="tests.per_account", concurrency=2, concurrency_key="account:{account_id}")
def per_account(account_id, label="", pause=0.0):
    """At most two at once per account (flow control)."""
    return label


@job(name="tests.rated", rate="3/m")
def rated(n=0):
    """At most three starts a minute, one key for the whole job."""
    return n


@job(name="tests.limited_record", takes_context=True, concurrency=2, concurrency_key="{key}")
def limited_record(context, key, label="", pause=0.0):
    """``record`` under a concurrency limit per ``key``: its Execution rows show what ran at once."""
    return record.func(context, label=label, pause=pause)


@job(name="tests.rated_record", takes_context=True, rate="5/s")
def rated_record(context, label="", pause=0.0):
    """``record`` at most five starts a second."""
    return record.func(context, label=label, pause=pause)
