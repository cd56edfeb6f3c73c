"""Retention: ``retention.prune``, ``manage.py prune_jobs`` and the workers' automatic pruning."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_jobs import retention, scheduler
from django_jobs.checks import check_settings
from django_jobs.models import CronSchedule, ScheduledTask, Worker
from tests.conftest import wait_until
from tests.factories import CronScheduleFactory, ScheduledTaskFactory

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


def finished(status: str, age: timedelta, **fields) -> ScheduledTask:
    """A task of ``status`` that finished ``age`` ago, by the column retention reads."""
    when = timezone.now() - age
    task = ScheduledTaskFactory(status=status, **fields)
    column = retention.AGE_FIELDS[ScheduledTask.Status(status)]
    ScheduledTask.objects.filter(pk=task.pk).update(**{column: when})
    return task


def remaining() -> set[int]:
    return set(ScheduledTask.objects.values_list("pk", flat=True))


# -- durations -------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)), ("12h", timedelta(hours=12)),
    ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), (" 1.5h ", timedelta(minutes=90)),
    (30, timedelta(seconds=30)), (timedelta(days=3), timedelta(days=3)),
])
def test_durations(text, expected):
    assert retention.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["7", "7x", "d", "-1d", "1 day", "", True, None, [7]])
def test_bad_durations_name_the_accepted_forms(text):
    with pytest.raises(ValueError, match="is not a duration; use a number with a unit, like 90s"):
        retention.parse_duration(text, "age")


@pytest.mark.parametrize("value", ["0s", 0, timedelta(0)])
def test_zero_is_not_an_age(value):
    with pytest.raises(ValueError, match="must be longer than zero"):
        retention.parse_duration(value)


def test_only_finished_statuses_can_be_pruned():
    with pytest.raises(ValueError, match="unknown status\\(es\\) 'pending'; only finished tasks can be pruned"):
        retention.prune({"pending": "1d"})


# -- what is deleted --------------------------------------------------------------------
def test_prune_deletes_old_finished_tasks_by_the_time_they_finished():
    old = [finished("completed", 8 * DAY), finished("failed", 31 * DAY), finished("cancelled", 31 * DAY)]
    young = [finished("completed", 6 * DAY), finished("failed", 29 * DAY), finished("cancelled", 29 * DAY)]
    counts = retention.prune({"completed": "7d", "failed": "30d", "cancelled": "30d"})
    assert counts == {"completed": 1, "failed": 1, "cancelled": 1}
    assert remaining() == {task.pk for task in young}
    assert not {task.pk for task in old} & remaining()


def test_pending_and_running_tasks_are_never_deleted_however_old():
    ancient = timezone.now() - 400 * DAY
    pending = ScheduledTaskFactory(status="pending", scheduled_at=ancient)
    running = ScheduledTaskFactory(status="running", started_at=ancient, worker_id="w")
    ScheduledTask.objects.update(created_at=ancient, updated_at=ancient, executed_at=ancient, failed_at=ancient)
    counts = retention.prune({"completed": "1s", "failed": "1s", "cancelled": "1s"})
    assert counts == {"completed": 0, "failed": 0, "cancelled": 0}
    assert remaining() == {pending.pk, running.pk}


def test_only_the_statuses_asked_for_are_pruned():
    completed, failed = finished("completed", 10 * DAY), finished("failed", 10 * DAY)
    assert retention.prune({"failed": "1d"}) == {"failed": 1}
    assert remaining() == {completed.pk}
    assert failed.pk not in remaining()


def test_age_is_read_from_the_finishing_column_not_creation():
    # Created long ago, completed a minute ago: young.
    task = finished("completed", timedelta(minutes=1))
    ScheduledTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - 100 * DAY)
    assert retention.prune({"completed": "1h"}) == {"completed": 0}
    # A failed task that also has an old executed_at is judged by failed_at.
    other = finished("failed", timedelta(minutes=1), executed_at=timezone.now() - 100 * DAY)
    assert retention.prune({"failed": "1h", "completed": "1h"}) == {"failed": 0, "completed": 0}
    assert remaining() == {task.pk, other.pk}


def test_a_finished_row_without_its_time_is_left_alone():
    task = ScheduledTaskFactory(status="completed", executed_at=None)
    assert retention.prune({"completed": "1s"}, now=timezone.now() + DAY) == {"completed": 0}
    assert remaining() == {task.pk}


def test_dry_run_counts_and_deletes_nothing():
    finished("completed", 8 * DAY)
    finished("completed", 9 * DAY)
    finished("failed", 2 * DAY)
    assert retention.prune({"completed": "7d", "failed": "1d"}, dry_run=True) == {"completed": 2, "failed": 1}
    assert ScheduledTask.objects.count() == 3


# -- batches ----------------------------------------------------------------------------
def deletes(queries) -> list[str]:
    return [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith("DELETE")]


def test_prune_deletes_in_batches_of_primary_keys():
    for days in range(10, 15):
        finished("completed", days * DAY)
    with CaptureQueriesContext(connection) as queries:
        assert retention.prune({"completed": "7d"}, batch_size=2) == {"completed": 5}
    statements = deletes(queries)
    assert len(statements) == 3, statements
    assert ScheduledTask.objects.count() == 0


def test_batches_walk_through_rows_that_finished_at_the_same_moment():
    moment = timezone.now() - 10 * DAY
    tasks = ScheduledTaskFactory.create_batch(7, status="completed")
    ScheduledTask.objects.update(executed_at=moment)
    young = finished("completed", timedelta(hours=1))
    assert retention.prune({"completed": "1d"}, batch_size=3) == {"completed": len(tasks)}
    assert remaining() == {young.pk}


def test_each_batch_starts_after_the_last_row_of_the_previous_one():
    # Walking without deleting anything (as if every delete lost a race) still
    # ends, and reads each row once: the walk does not depend on rows vanishing.
    moment = timezone.now() - 10 * DAY
    tasks = ScheduledTaskFactory.create_batch(5, status="failed")
    ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks[:3]]).update(failed_at=moment)
    ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks[3:]]).update(failed_at=moment - DAY)
    rule = retention.Rule("failed", timezone.now() - DAY)
    seen, after = [], None
    while batch := retention.next_batch(rule, after, 2):
        seen += [pk for _, pk in batch]
        after = batch[-1]
    assert seen == [task.pk for task in tasks[3:]] + [task.pk for task in tasks[:3]]


def test_a_task_retried_between_select_and_delete_is_not_deleted(monkeypatch):
    victim, other = finished("failed", 10 * DAY), finished("failed", 11 * DAY)
    real_next_batch = retention.next_batch

    def operator_retries_meanwhile(*args):
        batch = real_next_batch(*args)
        ScheduledTask.objects.filter(pk=victim.pk).retry_now()
        return batch

    monkeypatch.setattr(retention, "next_batch", operator_retries_meanwhile)
    assert retention.prune({"failed": "1d"}) == {"failed": 1}
    assert remaining() == {victim.pk}
    victim.refresh_from_db()
    assert victim.status == "pending" and other.pk not in remaining()


def test_should_stop_ends_pruning_between_batches():
    for days in range(10, 16):
        finished("completed", days * DAY)
    calls = []
    counts = retention.prune({"completed": "1d"}, batch_size=2, should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert counts == {"completed": 4}
    assert ScheduledTask.objects.count() == 2


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        retention.prune({"completed": "1d"}, batch_size=0)


# -- cron tasks ---------------------------------------------------------------------------
def test_pruning_a_cron_task_does_not_let_its_fire_time_run_again():
    fire_time = timezone.now().replace(minute=0, second=0, microsecond=0) - 3 * DAY
    schedule = CronScheduleFactory(expression="0 * * * *")
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=fire_time)
    stale = CronSchedule.objects.get(pk=schedule.pk)   # a worker that read it before the fire

    [task] = scheduler.tick(now=fire_time + timedelta(seconds=1))
    ScheduledTask.objects.filter(pk=task.pk).update(status="completed", executed_at=fire_time)
    assert retention.prune({"completed": "1h"}) == {"completed": 1}
    assert not ScheduledTask.objects.filter(cron_fire_time=fire_time).exists()

    # The worker that read the schedule before it fired loses the conditional update...
    assert scheduler.fire(stale, fire_time + timedelta(seconds=2)) is None
    # ...ticks go on from the next fire time...
    later = scheduler.tick(now=fire_time + timedelta(hours=1, seconds=1))
    assert [t.cron_fire_time for t in later] == [fire_time + timedelta(hours=1)]
    # ...and editing or re-enabling the schedule starts after now, never before.
    schedule.refresh_from_db()
    schedule.disable()
    schedule.enable()
    assert schedule.next_run > timezone.now()
    assert ScheduledTask.objects.filter(cron_fire_time=fire_time).count() == 0


# -- the command ----------------------------------------------------------------------------
def run(*arguments: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("prune_jobs", *arguments, stdout=out)
    return out.getvalue()


def test_prune_jobs_prints_counts_per_status():
    finished("completed", 8 * DAY)
    finished("completed", 9 * DAY)
    finished("failed", 31 * DAY)
    young = finished("failed", 1 * DAY)
    out = run("--completed-older-than", "7d", "--failed-older-than", "30d", "--batch-size", "1")
    assert out.splitlines() == ["Deleted 2 completed tasks", "Deleted 1 failed task", "Deleted 3 task(s) in all"]
    assert remaining() == {young.pk}


def test_prune_jobs_dry_run_and_json():
    finished("cancelled", 3 * DAY)
    assert "Would delete 1 cancelled task" in run("--cancelled-older-than", "2d", "--dry-run")
    data = json.loads(run("--cancelled-older-than", "2d", "--json"))
    assert data == {"dry_run": False, "deleted": {"cancelled": 1}}
    assert ScheduledTask.objects.count() == 0


@pytest.mark.parametrize("arguments, message", [
    ((), "Nothing to prune: give at least one of --completed-older-than"),
    (("--completed-older-than", "7days"), "--completed-older-than: '7days' is not a duration; use a number"),
    (("--failed-older-than", "0d"), "--failed-older-than: '0d' must be longer than zero"),
    (("--completed-older-than", "1d", "--batch-size", "0"), "--batch-size must be at least 1"),
])
def test_prune_jobs_refuses_bad_input_with_a_clear_message(arguments, message):
    finished("completed", 30 * DAY)
    with pytest.raises(CommandError, match=message.replace("(", "\\(")):
        run(*arguments)
    assert ScheduledTask.objects.count() == 1


# -- settings and workers ---------------------------------------------------------------------
@pytest.mark.parametrize("policy, problem", [
    ({"completed": "7d"}, None),
    (None, None),
    ({"completed": "7 days"}, "django_jobs.E007"),
    ({"running": "1d"}, "django_jobs.E007"),
    (["completed"], "django_jobs.E007"),
])
def test_retention_setting_is_checked(policy, problem):
    with override_settings(DJANGO_JOBS={"RETENTION": policy}):
        assert [message.id for message in check_settings()] == ([problem] if problem else [])


@override_settings(DJANGO_JOBS={"RETENTION": {"completed": "soon"}})
def test_an_invalid_policy_prunes_nothing_and_says_why(caplog):
    finished("completed", 30 * DAY)
    assert retention.prune_once(lambda: False) == {}
    assert "DJANGO_JOBS['RETENTION'] is invalid, nothing pruned" in caplog.text
    assert ScheduledTask.objects.count() == 1


def test_retention_off_by_default():
    assert retention.configured_policy() is None
    assert retention.prune_once(lambda: False) == {}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_workers_prune_by_the_retention_setting(workers):
    old = [finished("completed", 8 * DAY), finished("failed", 40 * DAY)]
    kept = [finished("completed", 1 * DAY), finished("failed", 10 * DAY), finished("cancelled", 400 * DAY)]
    overrides = {"RETENTION": {"completed": "7d", "failed": "30d"}, "RETENTION_INTERVAL": 1}
    env = {"DJANGO_JOBS_TEST_OVERRIDES": json.dumps(overrides)}
    # Two workers prune side by side: harmless, every delete is conditional.
    processes = [workers.start("--no-cron", "--max-seconds", "30", env=env) for _ in range(2)]
    wait_until(lambda: not ScheduledTask.objects.filter(pk__in=[task.pk for task in old]).exists(), timeout=30)
    wait_until(lambda: Worker.objects.count() == 2, timeout=30)  # both up (signal handlers installed)
    for process in processes:
        process.terminate()
    assert workers.wait_all(timeout=60) == [0, 0]
    assert remaining() == {task.pk for task in kept}
