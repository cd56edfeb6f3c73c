"""Django Tasks (``@django.tasks.task``) the backend tests enqueue; Django >= 6.0 only.

Modelled on Django's own ``tests/tasks/tasks.py``. Not autodiscovered: workers import
this module when they meet a row naming one of these tasks by its module path.
"""

import os
import time
from datetime import datetime, timedelta

from django.dispatch import receiver
from django.tasks import TaskContext, task
from django.tasks.signals import task_enqueued, task_finished, task_started

from .models import Execution


@task()
def noop_task(*args, **kwargs):
    return None


@task
def noop_task_from_bare_decorator(*args, **kwargs):
    return None


@task()
async def noop_task_async(*args, **kwargs):
    return None


@task()
def calculate_meaning_of_life():
    return 42


@task()
async def add_async(a, b):
    return a + b


@task()
def failing_task_value_error():
    raise ValueError("This task failed due to ValueError")


@task()
def failing_task_system_exit():
    raise SystemExit("This task failed due to SystemExit")


@task()
def complex_exception():
    raise ValueError(ValueError("This task failed"))


@task()
def complex_return_value():
    # Django's JSON rules refuse a datetime (our own @job would store it as a string).
    return {"when": datetime(2026, 1, 1)}


@task()
def exit_task():
    exit(1)


@task(takes_context=True)
def get_task_id(context):
    return context.task_result.id


@task(takes_context=True)
def check_context(context, attempt):
    assert isinstance(context, TaskContext)
    assert context.attempt == attempt
    return context.attempt


@task(takes_context=True, max_retries=3, retry_delay=0, backoff="fixed")
def fail_until(context, succeed_on_attempt):
    """Fails until its attempt number reaches ``succeed_on_attempt``; returns the attempt."""
    if context.attempt < succeed_on_attempt:
        raise RuntimeError(f"failing on attempt {context.attempt}")
    return {"attempt": context.attempt, "worker_ids": context.task_result.worker_ids}


@task(takes_context=True)
def record(context, label=""):
    """One Execution row per run: evidence of what ran, where and in which order."""
    Execution.objects.create(task_id=int(context.task_result.id), label=label, pid=os.getpid(), started=time.time())
    return label


@task(max_retries=5, retry_delay=timedelta(seconds=7), backoff="fixed", timeout=30)
def with_retry_options():
    return "ok"


@task(timeout=1)
def sleep_for(seconds):
    time.sleep(seconds)
    return seconds


@task(backend="immediate")
def immediate_task():
    return "ran immediately"


# -- evidence of Django's signals in worker processes ---------------------------------
# A worker started with DJANGO_JOBS_TEST_RECORD_TASK_SIGNALS=1 writes one Execution
# row per signal, labelled "signal:<name>:<status>", so the test process can see them.

def record_signal(name, task_result):
    if os.environ.get("DJANGO_JOBS_TEST_RECORD_TASK_SIGNALS") == "1":
        Execution.objects.create(task_id=int(task_result.id), label=f"signal:{name}:{task_result.status}",
                                 pid=os.getpid(), started=time.time())


@receiver(task_enqueued, dispatch_uid="tests.testapp.tasks.enqueued")
def on_task_enqueued(sender, task_result, **kwargs):
    record_signal("enqueued", task_result)


@receiver(task_started, dispatch_uid="tests.testapp.tasks.started")
def on_task_started(sender, task_result, **kwargs):
    record_signal("started", task_result)


@receiver(task_finished, dispatch_uid="tests.testapp.tasks.finished")
def on_task_finished(sender, task_result, **kwargs):
    record_signal("finished", task_result)


def plain_function():
    """Not a Task: a task made from it elsewhere cannot be found at its module path."""
    return 1


@task(concurrency=1, concurrency_key="account:{account_id}", rate="10/m")
def charge_account(account_id, cents=0):
    return cents
