"""What JobsBackend adds to Django's Tasks framework, on the same rows and execution
path as ``@job``: retry options (backend OPTIONS, per task), retries and the attempt
history in results, cancellation, cron schedules and enqueue-by-name pointing at a
``@task``, IMMEDIATE mode, and clear errors for tasks django_jobs cannot run.
"""

from __future__ import annotations

import sys
from datetime import timedelta

import django
import pytest

if django.VERSION < (6, 0):
    pytest.skip("Django's Tasks framework (django.tasks) needs Django 6.0 or later", allow_module_level=True)

from django.core.exceptions import ImproperlyConfigured
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
from django.tasks.signals import task_enqueued
from django.test import override_settings
from django.utils import timezone

import django_jobs
from django_jobs import UnknownJob, registry, scheduler
from django_jobs.admin.schedules import CronScheduleForm
from django_jobs.exceptions import TaskCancelled, WorkerLost
from django_jobs.limits import Rate
from django_jobs.models import CronSchedule, ScheduledTask
from django_jobs.stats.flow import own_limits
from django_jobs.testing import run_pending_jobs
from tests.factories import CronScheduleFactory, ScheduledTaskFactory
from tests.helpers import capture_signal
from tests.testapp import tasks as test_tasks
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)

JOBS_BACKEND = "django_jobs.backend.JobsBackend"


def row_of(result) -> ScheduledTask:
    return ScheduledTask.objects.get(pk=int(result.id))


def backend_with(**params):
    """TASKS with one JobsBackend configured by ``params`` (QUEUES, OPTIONS)."""
    return override_settings(TASKS={"default": {"BACKEND": JOBS_BACKEND, **params}})


# -- retry options: backend OPTIONS, per task, per call ------------------------------------

def test_without_options_tasks_get_the_django_jobs_defaults():
    with backend_with(), override_settings(DJANGO_JOBS={"DEFAULT_MAX_RETRIES": 4, "DEFAULT_RETRY_DELAY": 2}):
        row = row_of(test_tasks.noop_task.enqueue())
    assert (row.max_retries, row.retry_delay, row.backoff, row.timeout) == (4, timedelta(seconds=2), "exponential", None)


def test_backend_options_are_the_defaults_of_its_tasks():
    options = {"max_retries": 2, "retry_delay": 5, "backoff": "fixed", "timeout": timedelta(minutes=1)}
    with backend_with(OPTIONS=options):
        row = row_of(test_tasks.noop_task.enqueue())
    assert (row.max_retries, row.retry_delay, row.backoff, row.timeout) == (
        2, timedelta(seconds=5), "fixed", timedelta(minutes=1))


def test_a_tasks_own_options_win_and_using_can_change_them():
    declared = test_tasks.with_retry_options  # @task(max_retries=5, retry_delay=7s, backoff="fixed", timeout=30)
    row = row_of(declared.enqueue())
    assert (row.max_retries, row.retry_delay, row.backoff, row.timeout) == (
        5, timedelta(seconds=7), "fixed", timedelta(seconds=30))
    changed = declared.using(max_retries=1, priority=5)
    assert (changed.max_retries, changed.priority, changed.retry_delay) == (1, 5, timedelta(seconds=7))
    assert declared.max_retries == 5
    assert row_of(changed.enqueue()).max_retries == 1


def test_bad_options_are_refused_with_their_name():
    with backend_with(OPTIONS={"max_retry": 1}):
        with pytest.raises(InvalidTaskBackend, match="max_retry"):
            task_backends["default"]
    with backend_with(OPTIONS={"backoff": "linear"}):
        with pytest.raises(InvalidTaskBackend, match="backoff"):
            task_backends["default"]
    with pytest.raises(InvalidTask, match="max_retries must be a whole number"):
        task(max_retries=-1)(test_tasks.calculate_meaning_of_life.func)
    with pytest.raises(TypeError, match="queu"):
        test_tasks.noop_task.using(queu="mail")


def test_flow_control_options_are_task_options_too():
    # The task's declared limits: its keys stored, its limits NULL ("as declared"), which
    # workers (and admin, the API) read from the task as the code declares it.
    row = row_of(test_tasks.charge_account.enqueue(7, cents=500))
    assert (row.concurrency_key, row.concurrency_limit, row.rate_key, row.rate_limit, row.rate_period) == (
        "account:7", None, "tests.testapp.tasks.charge_account", None, None)
    assert own_limits(row) == (1, Rate(10, 60))
    other = row_of(test_tasks.noop_task.using(concurrency=3, concurrency_key="all").enqueue())
    assert (other.concurrency_key, other.concurrency_limit) == ("all", 3)  # a limit of its own: stored
    with backend_with(OPTIONS={"rate": "5/s"}):
        rated = row_of(test_tasks.noop_task.enqueue())
        assert (rated.rate_limit, own_limits(rated)) == (None, (None, Rate(5, 1)))
    with pytest.raises(InvalidTask, match="rate"):
        task(rate="fast")(test_tasks.calculate_meaning_of_life.func)
    with pytest.raises(InvalidTask, match="concurrency"):
        task(concurrency=0)(test_tasks.calculate_meaning_of_life.func)
    with pytest.raises(InvalidTask, match="not a parameter"):
        test_tasks.charge_account.using(concurrency_key="{customer}").enqueue(7)
    with pytest.raises(InvalidTaskBackend, match="concurrency"):
        with backend_with(OPTIONS={"concurrency": -1}):
            task_backends["default"]
    assert ScheduledTask.objects.count() == 2 + 1


def test_a_failed_attempt_with_retries_left_is_ready_again_after_the_backoff():
    result = test_tasks.failing_task_value_error.using(max_retries=2, retry_delay=7, backoff="fixed").enqueue()
    run_pending_jobs()
    result.refresh()
    row = row_of(result)

    assert result.status == TaskResultStatus.READY and result.is_finished is False
    with pytest.raises(ValueError, match="Task has not finished yet"):
        result.return_value
    assert (result.attempts, len(result.errors), result.finished_at) == (1, 1, None)
    assert result.last_attempted_at == result.started_at == row.started_at
    assert row.scheduled_at == row.failed_at + timedelta(seconds=7)  # fixed backoff: no jitter


def test_a_return_value_django_cannot_store_is_not_retried():
    result = test_tasks.complex_return_value.using(max_retries=3).enqueue()
    run_pending_jobs()
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.FAILED, 1)


# -- states django_jobs has and Django does not -------------------------------------------

def test_a_cancelled_task_is_failed_with_a_task_cancelled_error():
    result = test_tasks.noop_task.enqueue()
    assert row_of(result).cancel() is True
    result.refresh()

    assert result.status == TaskResultStatus.FAILED and result.is_finished is True
    assert result.errors[-1].exception_class is TaskCancelled
    assert result.finished_at is not None and result.attempts == 0
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value


def test_an_attempt_lost_with_its_worker_counts_in_the_result():
    result = test_tasks.noop_task.using(max_retries=1).enqueue()
    ScheduledTask.objects.filter(pk=int(result.id)).mark_running("dead-worker", timezone.now())
    error = "WorkerLost: the worker running this task stopped sending heartbeats"
    assert ScheduledTask.objects.recover(row_of(result), error, "django_jobs.exceptions.WorkerLost", timezone.now())
    result.refresh()

    assert (result.status, result.attempts, result.worker_ids) == (TaskResultStatus.READY, 1, ["dead-worker"])
    assert result.errors[0].exception_class is WorkerLost
    assert result.errors[0].traceback == error
    run_pending_jobs()
    result.refresh()
    assert (result.status, result.attempts) == (TaskResultStatus.SUCCESSFUL, 2)
    assert result.worker_ids[0] == "dead-worker" and result.worker_ids[1].startswith("inline:")


# -- one execution path: cron, enqueue by name, IMMEDIATE ----------------------------------

def test_a_cron_schedule_can_point_at_a_task():
    schedule = CronScheduleFactory(job_name=test_tasks.record.module_path, expression="* * * * *",
                                   kwargs={"label": "from cron"}, queue="mail", priority=10)
    fire_time = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=fire_time)  # due now
    with capture_signal(task_enqueued, pick=lambda task_result, **kwargs: task_result) as fired:
        [row] = scheduler.tick()

    assert (row.identifier, row.queue, row.priority, row.cron_schedule_id) == (
        test_tasks.record.module_path, "mail", 10, schedule.pk)
    assert [result.id for result in fired] == [str(row.pk)]
    run_pending_jobs()
    result = test_tasks.record.get_result(row.pk)
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, "from cron")
    assert list(Execution.objects.values_list("label", flat=True)) == ["from cron"]


def test_a_schedule_declared_in_settings_can_name_a_task():
    path = test_tasks.check_context.module_path
    cron = {"every-minute": {"job": path, "cron": "* * * * *", "args": [1]}}
    with override_settings(DJANGO_JOBS={"CRON": cron}):
        assert scheduler.sync_declared_schedules()["created"] == 1
    assert CronSchedule.objects.get(name="every-minute").job_name == path
    wrong = {"bad": {"job": path, "cron": "* * * * *", "args": [1, 2, 3]}}
    with override_settings(DJANGO_JOBS={"CRON": wrong}), pytest.raises(ImproperlyConfigured, match="Arguments do not fit"):
        scheduler.declared_schedules()


def test_the_admin_schedule_form_accepts_a_task_and_checks_its_arguments():
    fields = {"name": "s", "expression": "0 * * * *", "timezone": "", "args": "[]", "kwargs": "{}",
              "queue": "default", "priority": 0, "description": "", "metadata": "{}", "enabled": True,
              "overlap": "skip"}
    assert CronScheduleForm({**fields, "job_name": test_tasks.calculate_meaning_of_life.module_path}).is_valid()
    wrong_arguments = CronScheduleForm({**fields, "job_name": test_tasks.calculate_meaning_of_life.module_path,
                                        "args": "[1]"})
    assert not wrong_arguments.is_valid() and "Arguments do not fit" in str(wrong_arguments.errors)
    not_a_task = CronScheduleForm({**fields, "job_name": "tests.testapp.tasks.plain_function"})
    assert not not_a_task.is_valid() and "No job named" in str(not_a_task.errors)


def test_enqueue_by_name_accepts_a_tasks_module_path():
    row = django_jobs.enqueue(test_tasks.add_async.module_path, args=[2, 3], queue="mail")
    run_pending_jobs()
    result = test_tasks.add_async.get_result(row.pk)
    assert (result.status, result.return_value, result.task.queue_name) == (TaskResultStatus.SUCCESSFUL, 5, "mail")


def test_immediate_mode_runs_the_task_at_enqueue():
    with override_settings(DJANGO_JOBS={"IMMEDIATE": True}):
        result = test_tasks.calculate_meaning_of_life.enqueue()
    assert (result.status, result.return_value, result.attempts) == (TaskResultStatus.SUCCESSFUL, 42, 1)


def test_a_registered_job_name_wins_over_a_task_path():
    path = test_tasks.calculate_meaning_of_life.module_path
    registry.register(path, lambda: "the job")
    try:
        assert registry.get(path).func() == "the job"
    finally:
        registry.unregister(path)
    assert registry.get(path).func is test_tasks.calculate_meaning_of_life.func


# -- tasks django_jobs cannot run: refused with a reason -----------------------------------

def test_a_task_of_another_backend_is_refused_at_enqueue_and_fails_if_its_row_exists():
    path = test_tasks.immediate_task.module_path  # @task(backend="immediate")
    with pytest.raises(InvalidTask, match="django_jobs runs only tasks of a JobsBackend"):
        test_tasks.immediate_task.using(backend="default").enqueue()
    with pytest.raises(UnknownJob, match="ImmediateBackend"):
        django_jobs.enqueue(path)
    row = ScheduledTaskFactory(identifier=path, max_retries=0)  # written by hand
    run_pending_jobs()
    row.refresh_from_db()
    assert row.status == "failed" and "ImmediateBackend" in row.error_message
    assert not ScheduledTask.objects.exclude(pk=row.pk).exists()


def test_a_task_not_found_at_its_module_path_is_refused():
    elsewhere = task()(test_tasks.plain_function)  # the module holds the plain function, not this Task
    with pytest.raises(InvalidTask, match="not found at its module path"):
        elsewhere.enqueue()
    assert not ScheduledTask.objects.exists()


def test_only_modules_of_the_project_are_imported_to_find_a_task(monkeypatch):
    """A name from a caller (the JSON API, a hand-written row) never imports any module it likes."""
    monkeypatch.delitem(sys.modules, "this", raising=False)
    with pytest.raises(UnknownJob):
        django_jobs.enqueue("this.s")  # the stdlib's easter egg prints at import
    assert "this" not in sys.modules
    assert registry.find("tests.testapp.tasks.no_such_task") is None


def test_arguments_that_do_not_fit_the_function_are_refused_at_enqueue():
    with pytest.raises(TypeError, match="Arguments do not fit"):
        test_tasks.calculate_meaning_of_life.enqueue(1)
    assert not ScheduledTask.objects.exists()


def test_a_queue_django_jobs_does_not_allow_is_an_invalid_task():
    with override_settings(DJANGO_JOBS={"QUEUES": ["default"]}):
        with pytest.raises(InvalidTask, match="Unknown queue 'mail'"):
            test_tasks.noop_task.using(queue_name="mail").enqueue()
        problems = default_task_backend.check()
    assert [problem.id for problem in problems] == ["django_jobs.E021"]
    assert "queue_1" in problems[0].msg and "mail" in problems[0].msg


def test_check_requires_django_jobs_in_installed_apps():
    assert default_task_backend.check() == []
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"]):
        problems = task_backends["default"].check()
    assert [problem.id for problem in problems] == ["django_jobs.E020"]


def test_the_bridge_is_installed_only_when_a_jobs_backend_is_configured():
    """Without one, no row can name a Django Task: our signals keep no receiver of the bridge."""
    from django_jobs.tasks_bridge import uses_jobs_backend

    assert uses_jobs_backend()
    with override_settings(TASKS={"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}):
        assert not uses_jobs_backend()
