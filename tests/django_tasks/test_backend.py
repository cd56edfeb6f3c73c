"""Django's Tasks framework on JobsBackend: the behaviours Django's own test suite checks
for its dummy and immediate backends (``tests/tasks/test_tasks.py``,
``test_dummy_backend.py``, ``test_immediate_backend.py``), run against real rows.

Tasks run through the worker's own path: ``run_pending_jobs`` in this process, or
real ``run_jobworker`` processes at the end of the module. Where our semantics differ
from Django's in-memory backends on purpose (results are READY until a worker runs
them; signals follow the commit), the test says so.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
from datetime import datetime, timedelta

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("Django's Tasks framework (django.tasks) needs Django 6.0 or later", allow_module_level=True)

from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import (
    DEFAULT_TASK_QUEUE_NAME,
    Task,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
)
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.test import override_settings
from django.utils import timezone
from django.utils.module_loading import import_string

from django_jobs.backend import JobsBackend, JobsTask
from django_jobs.models import ScheduledTask
from django_jobs.testing import run_pending_jobs
from tests.helpers import capture_signal, connected
from tests.processes import finish
from tests.testapp import jobs
from tests.testapp import tasks as test_tasks
from tests.testapp.models import Execution

# Real transactions: signals follow the commit, and worker processes must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)

PRIORITY_MESSAGE = f"priority must be a whole number between {TASK_MIN_PRIORITY} and {TASK_MAX_PRIORITY}."


TASK_SIGNALS = {task_enqueued: "enqueued", task_started: "started", task_finished: "finished"}


@pytest.fixture
def task_signals():
    """Django's task signals sent during the test, as (name, sender, task_result)."""
    with capture_signal(*TASK_SIGNALS, pick=lambda signal, sender, task_result, **kwargs: (
            TASK_SIGNALS[signal], sender, task_result)) as sent:
        yield sent


def row_of(result) -> ScheduledTask:
    return ScheduledTask.objects.get(pk=int(result.id))


def ran(result):
    """Run every due task in this process (the worker's path), then refresh ``result``."""
    run_pending_jobs()
    result.refresh()
    return result


# -- the backend -------------------------------------------------------------------------

def test_using_correct_backend():
    assert default_task_backend == task_backends["default"]
    assert isinstance(task_backends["default"], JobsBackend)
    assert default_task_backend.alias == "default"
    assert default_task_backend.options == {"max_retries": 0}
    backend = task_backends["default"]
    assert (backend.supports_defer, backend.supports_async_task, backend.supports_get_result,
            backend.supports_priority) == (True, True, True, True)


def test_task_decorator():
    for declared in (test_tasks.noop_task, test_tasks.noop_task_async, test_tasks.noop_task_from_bare_decorator):
        assert isinstance(declared, Task)
        assert isinstance(declared, JobsTask)  # the backend's task_class


# -- enqueue -----------------------------------------------------------------------------

@pytest.mark.parametrize("declared", [test_tasks.noop_task, test_tasks.noop_task_async])
def test_enqueue_task(declared):
    result = declared.enqueue(1, two=3)

    assert result.status == TaskResultStatus.READY
    assert result.is_finished is False
    assert (result.started_at, result.finished_at, result.last_attempted_at) == (None, None, None)
    assert result.enqueued_at is not None
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value
    assert result.task == declared
    assert (result.args, result.kwargs) == ([1], {"two": 3})
    assert (result.attempts, result.worker_ids, result.errors) == (0, [], [])
    row = row_of(result)
    assert (row.identifier, row.status, row.queue, row.priority) == (declared.module_path, "pending", "default", 0)
    assert (row.args, row.kwargs) == ([1], {"two": 3})


@pytest.mark.parametrize("declared", [test_tasks.noop_task, test_tasks.noop_task_async])
def test_enqueue_task_async(declared):
    result = async_to_sync(declared.aenqueue)()

    assert result.status == TaskResultStatus.READY
    assert (result.started_at, result.finished_at) == (None, None)
    assert result.task == declared
    assert (result.args, result.kwargs) == ([], {})
    assert row_of(result).identifier == declared.module_path


def test_enqueue_with_invalid_argument():
    with pytest.raises(TypeError, match="Unsupported type"):
        test_tasks.noop_task.enqueue(datetime.now())
    with pytest.raises(TypeError, match="Unsupported type"):
        async_to_sync(test_tasks.noop_task.aenqueue)(datetime.now())
    assert not ScheduledTask.objects.exists()


def test_backend_enqueue_validates_the_task():
    # Django's backends validate in enqueue() too, for tasks made before a settings change.
    task_with_custom_queue_name = test_tasks.noop_task.using(queue_name="queue_1")
    tasks_setting = {"default": {"BACKEND": "django_jobs.backend.JobsBackend", "QUEUES": ["queue-1"]}}
    with override_settings(TASKS=tasks_setting):
        with pytest.raises(InvalidTask, match="Queue 'queue_1' is not valid for backend"):
            task_with_custom_queue_name.enqueue()
        with pytest.raises(InvalidTask, match="Queue 'queue_1' is not valid for backend"):
            async_to_sync(task_with_custom_queue_name.aenqueue)()
    assert not ScheduledTask.objects.exists()


# -- get_result, refresh, mismatch ---------------------------------------------------------

def test_get_result():
    result = default_task_backend.enqueue(test_tasks.noop_task, (), {})

    assert test_tasks.noop_task.get_result(result.id) == result
    assert default_task_backend.get_result(result.id) == result
    assert default_task_backend.get_result(int(result.id)) == result


def test_get_result_async():
    result = async_to_sync(default_task_backend.aenqueue)(test_tasks.noop_task, (), {})

    assert async_to_sync(test_tasks.noop_task.aget_result)(result.id) == result
    assert async_to_sync(default_task_backend.aget_result)(result.id) == result


@pytest.mark.parametrize("missing", ["123", 123, "abc", "", None, "-1", "1.5", 2**70])
def test_get_missing_result(missing):
    test_tasks.noop_task.enqueue()  # a row exists, but not under these ids
    with pytest.raises(TaskResultDoesNotExist):
        test_tasks.noop_task.get_result(missing)
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(test_tasks.noop_task.aget_result)(missing)


def test_a_job_row_is_not_a_task_result():
    row = jobs.noop.enqueue()  # an @job's row: not a Django Task's
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(str(row.pk))


def test_get_incorrect_result():
    result = default_task_backend.enqueue(test_tasks.noop_task_async, (), {})
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        test_tasks.noop_task.get_result(result.id)
    with pytest.raises(TaskResultMismatch, match="Task does not match"):
        async_to_sync(test_tasks.noop_task.aget_result)(result.id)


def test_refresh_result():
    result = test_tasks.calculate_meaning_of_life.enqueue()
    original = dataclasses.asdict(result)
    result.refresh()
    assert dataclasses.asdict(result) == original  # nothing changed yet

    run_pending_jobs()
    assert result.status == TaskResultStatus.READY  # a result is a snapshot until refreshed
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)


def test_refresh_result_async():
    result = test_tasks.calculate_meaning_of_life.enqueue()
    run_pending_jobs()
    async_to_sync(result.arefresh)()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)


# -- Task options and validation (through JobsBackend.validate_task) -----------------------

def test_using_priority_queue_name_and_run_after():
    now = timezone.now()
    assert test_tasks.noop_task.using(priority=1).priority == 1
    assert test_tasks.noop_task.using(queue_name="queue_1").queue_name == "queue_1"
    assert test_tasks.noop_task.using(run_after=now).run_after == now
    assert (test_tasks.noop_task.priority, test_tasks.noop_task.queue_name, test_tasks.noop_task.run_after) == (
        0, DEFAULT_TASK_QUEUE_NAME, None)


def test_chained_using_and_new_instances():
    now = timezone.now()
    run_after_task = test_tasks.noop_task.using(run_after=now)
    priority_task = run_after_task.using(priority=10)
    assert (priority_task.priority, priority_task.run_after) == (10, now)
    assert run_after_task.priority == 0
    copy = test_tasks.noop_task.using()
    assert copy == test_tasks.noop_task and copy is not test_tasks.noop_task


def test_using_unknown_backend():
    with pytest.raises(InvalidTaskBackend, match="The connection 'unknown' doesn't exist."):
        test_tasks.noop_task.using(backend="unknown")


def test_naive_datetime():
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime."):
        test_tasks.noop_task.using(run_after=datetime.now())


@pytest.mark.parametrize("priority", [-101, 101, 3.1])
def test_invalid_priority(priority):
    with pytest.raises(InvalidTask, match=PRIORITY_MESSAGE):
        test_tasks.noop_task.using(priority=priority)


@pytest.mark.parametrize("priority", [TASK_MIN_PRIORITY, 0, TASK_MAX_PRIORITY])
def test_valid_priority_is_stored(priority):
    result = test_tasks.noop_task.using(priority=priority).enqueue()
    assert row_of(result).priority == priority


def test_unknown_queue_name():
    with pytest.raises(InvalidTask, match="Queue 'queue-2' is not valid for backend."):
        test_tasks.noop_task.using(queue_name="queue-2")
    # Validation is bypassed when the backend's QUEUES is an empty list.
    assert test_tasks.noop_task.using(queue_name="queue-2", backend="immediate").queue_name == "queue-2"
    with override_settings(TASKS={"default": {"BACKEND": "django_jobs.backend.JobsBackend", "QUEUES": []}}):
        result = test_tasks.noop_task.using(queue_name="queue-2").enqueue()
    assert row_of(result).queue == "queue-2"


def test_invalid_function():
    def local_function():
        pass

    for invalid_function in (any, local_function):
        with pytest.raises(InvalidTask, match="Task function must be defined at a module level."):
            task()(invalid_function)


def test_takes_context_without_taking_context():
    with pytest.raises(InvalidTask, match="Task takes context but does not have a first argument of 'context'."):
        task(takes_context=True)(test_tasks.calculate_meaning_of_life.func)


def test_run_after_in_decorator():
    with pytest.raises(TypeError, match="run_after cannot be defined statically with the @task decorator."):
        task(run_after=timezone.now())(test_tasks.calculate_meaning_of_life.func)


def test_name_and_module_path():
    assert test_tasks.noop_task.name == "noop_task"
    assert test_tasks.noop_task.module_path == "tests.testapp.tasks.noop_task"
    assert import_string(test_tasks.noop_task_async.module_path) is test_tasks.noop_task_async


def test_call_task():
    assert test_tasks.calculate_meaning_of_life.call() == 42
    assert async_to_sync(test_tasks.calculate_meaning_of_life.acall)() == 42
    assert test_tasks.noop_task_async.call() is None


def test_pickle_task_and_result():
    for declared in (test_tasks.noop_task, test_tasks.with_retry_options):
        assert pickle.loads(pickle.dumps(declared)) == declared
    result = test_tasks.noop_task.enqueue()
    assert pickle.loads(pickle.dumps(result)) == result


# -- running: results as Django defines them ----------------------------------------------

@pytest.mark.parametrize("declared", [test_tasks.noop_task, test_tasks.noop_task_async])
def test_run_task(declared):
    result = ran(declared.enqueue(1, two=3))

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.is_finished is True
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.return_value is None
    assert (result.args, result.kwargs) == ([1], {"two": 3})
    assert result.attempts == 1
    assert result.worker_ids == [row_of(result).worker_id] and result.worker_ids[0].startswith("inline:")


def test_result():
    result = ran(default_task_backend.enqueue(test_tasks.calculate_meaning_of_life, [], {}))
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)


def test_async_task_runs():
    result = ran(test_tasks.add_async.enqueue(2, 3))
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 5)


@pytest.mark.parametrize(("declared", "exception", "message"), [
    (test_tasks.failing_task_value_error, ValueError, "This task failed due to ValueError"),
    (test_tasks.failing_task_system_exit, SystemExit, "This task failed due to SystemExit"),
])
def test_catches_exception(declared, exception, message, caplog):
    result = declared.enqueue()
    with caplog.at_level(logging.ERROR, logger="django.tasks"):
        ran(result)

    assert result.status == TaskResultStatus.FAILED
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value
    assert result.is_finished is True
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.errors[0].exception_class is exception
    assert result.errors[0].traceback.endswith(f"{exception.__name__}: {message}\n")
    assert (result.task, result.args, result.kwargs) == (declared, [], {})
    # Django's own receiver of task_finished logs a failure at ERROR.
    failures = [record for record in caplog.records if record.name == "django.tasks" and record.levelno == logging.ERROR]
    assert len(failures) == 1 and result.id in failures[0].getMessage()


def test_exit_fails_the_task():
    result = ran(test_tasks.exit_task.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is SystemExit


def test_complex_exception():
    result = ran(test_tasks.complex_exception.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result._return_value is None
    assert result.errors[0].exception_class is ValueError
    assert 'ValueError(ValueError("This task failed"))' in result.errors[0].traceback


def test_complex_return_value():
    result = ran(test_tasks.complex_return_value.enqueue())
    assert result.status == TaskResultStatus.FAILED
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result._return_value is None
    assert result.errors[0].exception_class is TypeError
    assert "Unsupported type" in result.errors[0].traceback


def test_takes_context():
    result = ran(test_tasks.get_task_id.enqueue())
    assert result.return_value == result.id


def test_context():
    result = ran(test_tasks.check_context.enqueue(1))
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 1)


def test_context_attempt_is_right_across_retries():
    result = ran(test_tasks.fail_until.enqueue(3))  # retries at once: retry_delay=0

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.attempts == 3
    assert result.return_value == {"attempt": 3, "worker_ids": result.worker_ids}
    assert [error.exception_class for error in result.errors] == [RuntimeError, RuntimeError]
    assert "failing on attempt 2" in result.errors[1].traceback
    assert result.started_at < result.last_attempted_at <= result.finished_at


def test_enqueue_and_run_logs(caplog):
    with caplog.at_level(logging.DEBUG, logger="django.tasks"):
        result = ran(test_tasks.noop_task.enqueue())
    lines = [record.getMessage() for record in caplog.records if record.name == "django.tasks"]
    assert len(lines) == 3, lines
    assert "enqueued" in lines[0] and result.id in lines[0]
    assert "state=RUNNING" in lines[1] and result.id in lines[1]
    assert "state=SUCCESSFUL" in lines[2] and result.id in lines[2]
    assert not any("NoneType" in line for line in lines)


# -- signals ---------------------------------------------------------------------------------

def test_signals_of_a_successful_task(task_signals):
    result = ran(test_tasks.calculate_meaning_of_life.enqueue())

    assert [(name, sender) for name, sender, _ in task_signals] == [
        ("enqueued", JobsBackend), ("started", JobsBackend), ("finished", JobsBackend)]
    enqueued, started, finished = (sent for _, _, sent in task_signals)
    assert {enqueued.id, started.id, finished.id} == {result.id}
    assert (enqueued.status, started.status, finished.status) == ("READY", "RUNNING", "SUCCESSFUL")
    assert (started.attempts, finished.return_value) == (1, 42)


def test_signals_of_a_failed_task(task_signals):
    ran(test_tasks.failing_task_value_error.enqueue())
    name, _, finished = task_signals[-1]
    assert (name, finished.status) == ("finished", "FAILED")
    assert finished.errors[0].exception_class is ValueError


def test_task_finished_is_sent_once_after_the_retries(task_signals):
    ran(test_tasks.fail_until.enqueue(2))
    assert [(name, sent.status, sent.attempts) for name, _, sent in task_signals] == [
        ("enqueued", "READY", 0), ("started", "RUNNING", 1), ("started", "RUNNING", 2), ("finished", "SUCCESSFUL", 2)]


def test_enqueued_signal_waits_for_commit(task_signals):
    with transaction.atomic():
        result = test_tasks.noop_task.enqueue()
        assert result.enqueued_at is not None
        assert task_signals == []
    assert [name for name, _, _ in task_signals] == ["enqueued"]


def test_a_rolled_back_enqueue_leaves_nothing(task_signals):
    with pytest.raises(RuntimeError), transaction.atomic():
        result = test_tasks.noop_task.enqueue()
        raise RuntimeError("roll back")
    assert task_signals == []
    with pytest.raises(TaskResultDoesNotExist):
        test_tasks.noop_task.get_result(result.id)


def test_a_receiver_that_raises_changes_nothing(task_signals):
    def broken(sender, **kwargs):
        raise RuntimeError("broken receiver")

    with connected(broken, task_enqueued, task_started, task_finished):
        result = ran(test_tasks.calculate_meaning_of_life.enqueue())
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
    assert [name for name, _, _ in task_signals] == ["enqueued", "started", "finished"]


# -- run_after, priority, queues -------------------------------------------------------------

def test_run_after_defers_the_task():
    later = timezone.now() + timedelta(hours=1)
    result = test_tasks.noop_task.using(run_after=later).enqueue()

    assert row_of(result).scheduled_at == later
    assert run_pending_jobs() == []
    result.refresh()
    assert result.status == TaskResultStatus.READY
    assert test_tasks.noop_task.get_result(result.id) == result
    assert test_tasks.noop_task.get_result(result.id).task.run_after == later


def test_run_after_in_the_past_runs_now():
    result = ran(test_tasks.noop_task.using(run_after=timezone.now() - timedelta(minutes=1)).enqueue())
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_higher_priority_runs_first():
    for label, priority in (("low", -10), ("high", 50), ("normal", 0), ("highest", 100)):
        test_tasks.record.using(priority=priority).enqueue(label)
    run_pending_jobs()
    assert list(Execution.objects.order_by("id").values_list("label", flat=True)) == [
        "highest", "high", "normal", "low"]


def test_queue_name_is_the_queue():
    mail = test_tasks.record.using(queue_name="mail").enqueue("m")
    test_tasks.record.enqueue("d")
    run_pending_jobs(queue="mail")
    assert list(Execution.objects.values_list("label", flat=True)) == ["m"]
    assert row_of(mail).queue == "mail"
    assert test_tasks.record.get_result(mail.id).task.queue_name == "mail"


# -- real worker processes -------------------------------------------------------------------

@pytest.mark.slow
def test_a_worker_process_runs_tasks_and_this_process_reads_the_results(workers):
    results = {
        "meaning": test_tasks.calculate_meaning_of_life.enqueue(),
        "failing": test_tasks.failing_task_value_error.enqueue(),
        "task_id": test_tasks.get_task_id.enqueue(),
        "async": test_tasks.add_async.enqueue(2, 3),
        "retried": test_tasks.fail_until.enqueue(2),
        # A timeout runs the task in a child process, which must find it and its context too.
        "in_child": test_tasks.get_task_id.using(timeout=30).enqueue(),
    }
    process = workers.start("--burst", "--concurrency", "2", env={"DJANGO_JOBS_TEST_RECORD_TASK_SIGNALS": "1"})
    code, output = finish(process, 90.0)
    assert code == 0, output
    for result in results.values():
        result.refresh()

    assert {name: result.status for name, result in results.items()} == {
        "meaning": "SUCCESSFUL", "failing": "FAILED", "task_id": "SUCCESSFUL", "async": "SUCCESSFUL",
        "retried": "SUCCESSFUL", "in_child": "SUCCESSFUL"}, output
    assert results["meaning"].return_value == 42
    assert results["task_id"].return_value == results["task_id"].id
    assert results["async"].return_value == 5
    assert results["in_child"].return_value == results["in_child"].id
    assert results["failing"].errors[0].exception_class is ValueError
    retried = results["retried"]
    assert retried.attempts == 2 and retried.return_value["attempt"] == 2
    assert not any(worker.startswith("inline:") for worker in retried.worker_ids)
    # Django's signals were sent in the worker process, after each commit.
    signals = lambda result: list(  # noqa: E731
        Execution.objects.filter(task_id=int(result.id)).order_by("id").values_list("label", flat=True))
    assert signals(results["meaning"]) == ["signal:started:RUNNING", "signal:finished:SUCCESSFUL"]
    assert signals(results["failing"]) == ["signal:started:RUNNING", "signal:finished:FAILED"]
    assert signals(retried) == ["signal:started:RUNNING", "signal:started:RUNNING", "signal:finished:SUCCESSFUL"]


@pytest.mark.slow
def test_a_worker_enforces_a_tasks_timeout(workers):
    result = test_tasks.sleep_for.enqueue(60)  # @task(timeout=1); OPTIONS: no retries
    code, output = finish(workers.start("--burst"), 90.0)
    assert code == 0, output
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "django_jobs.exceptions.JobTimeout"
    assert "timeout of 1 s" in result.errors[0].traceback
