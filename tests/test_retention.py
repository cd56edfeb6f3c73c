"""Retention: ``retention.prune``, ``manage.py prune_jobs`` and the workers' automatic pruning."""

from __future__ import annotations

import json
import re
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
def task_deletes(queries) -> list[str]:
    """The DELETEs of task rows (not of their events, which follow them on MariaDB and SQLite)."""
    table = connection.ops.quote_name(ScheduledTask._meta.db_table)
    return [query["sql"] for query in queries if query["sql"].lstrip().upper().startswith(f"DELETE FROM {table}".upper())]


def test_prune_deletes_in_batches_of_primary_keys():
    for days in range(10, 15):
        finished("completed", days * DAY)
    with CaptureQueriesContext(connection) as queries:
        assert retention.prune({"completed": "7d"}, batch_size=2) == {"completed": 5}
    statements = task_deletes(queries)
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


def retry_between_select_and_delete(monkeypatch, victim: ScheduledTask) -> None:
    """An operator retries ``victim`` after each batch is selected, before it is deleted."""
    real_next_batch = retention.next_batch

    def operator_retries_meanwhile(*args):
        batch = real_next_batch(*args)
        ScheduledTask.objects.filter(pk=victim.pk).retry_now()
        return batch

    monkeypatch.setattr(retention, "next_batch", operator_retries_meanwhile)


def test_a_task_retried_between_select_and_delete_is_not_deleted(monkeypatch):
    victim, other = finished("failed", 10 * DAY), finished("failed", 11 * DAY)
    retry_between_select_and_delete(monkeypatch, victim)
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
    (("--keep-completed", "-1"), "--keep-completed: '-1' is not a count"),
    (("--keep-failed", "ten"), "--keep-failed: 'ten' is not a count"),
])
def test_prune_jobs_refuses_bad_input_with_a_clear_message(arguments, message):
    finished("completed", 30 * DAY)
    with pytest.raises(CommandError, match=message.replace("(", "\\(")):
        run(*arguments)
    assert ScheduledTask.objects.count() == 1


def test_prune_jobs_keeps_the_newest_n_and_combines_with_an_age():
    completed = [finished("completed", days * DAY) for days in range(1, 6)]  # newest first
    failed = [finished("failed", days * DAY) for days in range(1, 4)]
    out = run("--keep-completed", "2", "--keep-failed", "5", "--failed-older-than", "36h")
    assert out.splitlines() == ["Deleted 3 completed tasks", "Deleted 2 failed tasks", "Deleted 5 task(s) in all"]
    assert remaining() == {completed[0].pk, completed[1].pk, failed[0].pk}


# -- keeping the newest N ---------------------------------------------------------------------
def test_keep_leaves_the_newest_n_of_each_status_and_never_touches_active_tasks():
    completed = [finished("completed", days * DAY) for days in range(1, 11)]  # newest first
    failed = [finished("failed", days * DAY) for days in range(1, 4)]
    active = [ScheduledTaskFactory(status="pending"), ScheduledTaskFactory(status="running")]
    counts = retention.prune({"completed": {"keep": 3}, "failed": {"keep": 5}}, batch_size=3)
    assert counts == {"completed": 7, "failed": 0}
    assert remaining() == {task.pk for task in completed[:3] + failed + active}


def test_keep_zero_deletes_every_task_of_that_status():
    for days in (1, 2):
        finished("cancelled", days * DAY)
    kept = finished("completed", DAY)
    assert retention.prune({"cancelled": {"keep": 0}}) == {"cancelled": 2}
    assert remaining() == {kept.pk}


def test_either_limit_prunes_whichever_reaches_further():
    completed = [finished("completed", days * DAY) for days in range(1, 7)]  # ages 1..6 days
    # The count reaches further: only 2 stay although 4 are younger than 5 days.
    assert retention.prune({"completed": {"older_than": "5d", "keep": 2}}, dry_run=True) == {"completed": 4}
    # The age reaches further: 10 may stay by count, but 3 are older than 3.5 days.
    assert retention.prune({"completed": {"older_than": timedelta(days=3.5), "keep": 10}}) == {"completed": 3}
    assert remaining() == {task.pk for task in completed[:3]}


def test_keep_breaks_ties_of_equal_times_by_id():
    moment = timezone.now() - DAY
    tasks = ScheduledTaskFactory.create_batch(6, status="completed")
    ScheduledTask.objects.update(executed_at=moment)
    assert retention.prune({"completed": {"keep": 4}}, batch_size=1) == {"completed": 2}
    assert remaining() == {task.pk for task in tasks[2:]}  # the highest ids are the newest


def test_keep_does_not_count_rows_without_their_time():
    untimed = ScheduledTaskFactory(status="failed")
    ScheduledTask.objects.filter(pk=untimed.pk).update(failed_at=None)
    timed = [finished("failed", days * DAY) for days in (1, 2)]
    assert retention.prune({"failed": {"keep": 1}}) == {"failed": 1}
    assert remaining() == {untimed.pk, timed[0].pk}


def test_with_keep_a_task_retried_between_select_and_delete_is_not_deleted(monkeypatch):
    newest, victim, other = (finished("failed", days * DAY) for days in (1, 10, 11))
    retry_between_select_and_delete(monkeypatch, victim)
    assert retention.prune({"failed": {"keep": 1}}) == {"failed": 1}
    assert remaining() == {newest.pk, victim.pk}


@pytest.mark.parametrize("limit, message", [
    ({}, "is empty"),
    ({"keep": -1}, "['keep']: -1 is not a count"),
    ({"keep": 1.5}, "['keep']: 1.5 is not a count"),
    ({"keep": "10"}, "['keep']: '10' is not a count"),
    ({"older_than": "soon"}, "['older_than']: 'soon' is not a duration"),
    ({"keep": 3, "count": 3}, "unknown key(s) 'count'"),
])
def test_bad_limits_are_refused_naming_the_status(limit, message):
    finished("completed", 30 * DAY)
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        retention.prune({"completed": limit})
    assert "['completed']" in str(raised.value)
    assert ScheduledTask.objects.count() == 1


@override_settings(DJANGO_JOBS={"RETENTION": {"completed": {"keep": 1}, "failed": "1d"}})
def test_workers_prune_by_count_too():
    newest, older = finished("completed", DAY), finished("completed", 2 * DAY)
    old_failure = finished("failed", 2 * DAY)
    assert retention.prune_once(lambda: False) == {"completed": 1, "failed": 1}
    assert remaining() == {newest.pk}
    assert older.pk not in remaining() and old_failure.pk not in remaining()


# -- settings and workers ---------------------------------------------------------------------
@pytest.mark.parametrize("policy, problem", [
    ({"completed": "7d"}, None),
    ({"completed": {"older_than": "7d", "keep": 100}, "failed": {"keep": 1000}}, None),
    ({"completed": {"keep": -1}}, "django_jobs.E007"),
    ({"completed": {"keep": True}}, "django_jobs.E007"),
    ({"completed": {}}, "django_jobs.E007"),
    ({"completed": {"max": 3}}, "django_jobs.E007"),
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
