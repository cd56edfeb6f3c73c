"""Cron overlap control: a fire while the schedule's previous task is pending or running.

``skip`` records the fire as skipped, ``queue`` enqueues it once the previous task has
finished, ``allow`` enqueues it at once. The database enforces it (one active task per
schedule through the unique index on active keys), so racing schedulers are tested
with real threads on each database.
"""

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from django_jobs import job, registry, scheduler
from django_jobs.exceptions import ScheduleBusy
from django_jobs.models import CronSchedule, ScheduledTask
from django_jobs.worker.claiming import claim
from tests.factories import CronScheduleFactory

pytestmark = pytest.mark.django_db(transaction=True)


def every_minute(overlap):
    schedule = CronScheduleFactory(expression="* * * * *", job_name="tests.add", args=[1, 1], overlap=overlap)
    return schedule, schedule.next_run


def fire_at(schedule, fire_time):
    """Make ``fire_time`` the schedule's due fire time and tick just after it."""
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=fire_time)
    return scheduler.tick(now=fire_time + timedelta(seconds=1))


def finish(task):
    """Claim the task as a worker would and complete it."""
    [claimed] = claim("worker-1", None, 1, now=task.scheduled_at + timedelta(seconds=2))
    assert claimed.pk == task.pk
    assert ScheduledTask.objects.filter(pk=task.pk).complete("worker-1", None, timezone.now()) == 1


def reloaded(schedule):
    return CronSchedule.objects.get(pk=schedule.pk)


def test_new_schedules_skip_by_default():
    assert CronScheduleFactory().overlap == "skip"


def test_skip_records_the_fire_and_enqueues_nothing_while_the_previous_task_is_pending():
    schedule, first = every_minute("skip")
    [task] = fire_at(schedule, first)
    second = first + timedelta(minutes=1)
    assert fire_at(schedule, second) == []
    row = reloaded(schedule)
    assert (row.skipped_fires, row.last_skipped_at, row.last_run) == (1, second, second)
    assert ScheduledTask.objects.filter(cron_schedule=schedule).count() == 1
    finish(task)
    third = second + timedelta(minutes=1)
    [next_task] = fire_at(schedule, third)
    assert next_task.cron_fire_time == third
    assert reloaded(schedule).skipped_fires == 1


def test_skip_holds_while_the_previous_task_runs():
    schedule, first = every_minute("skip")
    [task] = fire_at(schedule, first)
    claim("worker-1", None, 1, now=first + timedelta(seconds=2))
    assert ScheduledTask.objects.get(pk=task.pk).status == "running"
    assert fire_at(schedule, first + timedelta(minutes=1)) == []
    assert reloaded(schedule).skipped_fires == 1


def test_queue_enqueues_waiting_fires_in_order_once_the_previous_task_finished():
    schedule, first = every_minute("queue")
    [task] = fire_at(schedule, first)
    second, third = first + timedelta(minutes=1), first + timedelta(minutes=2)
    assert fire_at(schedule, second) == []
    assert fire_at(schedule, third) == []
    assert reloaded(schedule).waiting_fires == [second.isoformat(), third.isoformat()]
    assert scheduler.tick(now=third + timedelta(seconds=5)) == []  # first task still pending

    finish(task)
    [released] = scheduler.tick(now=third + timedelta(seconds=10))
    assert released.cron_fire_time == second
    assert reloaded(schedule).waiting_fires == [third.isoformat()]
    assert scheduler.tick(now=third + timedelta(seconds=11)) == []  # the released one is pending

    finish(released)
    [last] = scheduler.tick(now=third + timedelta(seconds=20))
    assert last.cron_fire_time == third
    row = reloaded(schedule)
    assert (row.waiting_fires, row.skipped_fires) == ([], 0)


def test_queue_a_new_fire_waits_behind_older_waiting_fires_even_when_nothing_runs():
    schedule, first = every_minute("queue")
    [task] = fire_at(schedule, first)
    second, third = first + timedelta(minutes=1), first + timedelta(minutes=2)
    fire_at(schedule, second)
    ScheduledTask.objects.filter(pk=task.pk).update(status="completed")
    # The due fire and the release happen in the same tick: the older fire goes first.
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=third)
    [released] = scheduler.tick(now=third + timedelta(seconds=1))
    assert released.cron_fire_time == second
    assert reloaded(schedule).waiting_fires == [third.isoformat()]


def test_queue_keeps_at_most_max_waiting_fires_and_counts_the_rest_as_skipped(monkeypatch):
    monkeypatch.setattr(scheduler, "MAX_WAITING_FIRES", 2)
    schedule, first = every_minute("queue")
    fire_at(schedule, first)
    for minutes in (1, 2, 3):
        fire_at(schedule, first + timedelta(minutes=minutes))
    row = reloaded(schedule)
    assert len(row.waiting_fires) == 2
    assert (row.skipped_fires, row.last_skipped_at) == (1, first + timedelta(minutes=3))


def test_allow_enqueues_every_fire_at_once():
    schedule, first = every_minute("allow")
    [one] = fire_at(schedule, first)
    [two] = fire_at(schedule, first + timedelta(minutes=1))
    assert ScheduledTask.objects.filter(cron_schedule=schedule, status="pending").count() == 2
    assert (one.unique_key, two.unique_key) == (None, None)


def test_run_now_refuses_while_the_previous_task_is_active_and_names_it():
    schedule, first = every_minute("skip")
    [task] = fire_at(schedule, first)
    with pytest.raises(ScheduleBusy) as raised:
        schedule.run_now()
    assert raised.value.holder_id == task.pk
    assert str(task.pk) in str(raised.value) and "skip" in str(raised.value)
    assert ScheduledTask.objects.filter(cron_schedule=schedule).count() == 1
    finish(task)
    assert schedule.run_now().cron_fire_time is None


def test_a_retry_of_an_old_task_cannot_make_two_active():
    schedule, first = every_minute("skip")
    [old] = fire_at(schedule, first)
    ScheduledTask.objects.filter(pk=old.pk).update(status="failed")
    fire_at(schedule, first + timedelta(minutes=1))
    from django_jobs.exceptions import UniqueKeyConflict

    with pytest.raises(UniqueKeyConflict):
        ScheduledTask.objects.get(pk=old.pk).retry()


def race(count, target):
    """Run ``target`` in ``count`` threads released at once; return what each returned or raised."""
    start = threading.Barrier(count)
    outcomes = []

    def run():
        try:
            start.wait()
            outcomes.append(target())
        except Exception as error:  # noqa: BLE001 - the outcome is what the test looks at
            outcomes.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_racing_run_nows_leave_one_active_task_the_database_decides():
    schedule = CronScheduleFactory(job_name="tests.add", args=[1, 1], overlap="skip")
    outcomes = race(4, lambda: CronSchedule.objects.get(pk=schedule.pk).run_now())
    tasks = [outcome for outcome in outcomes if isinstance(outcome, ScheduledTask)]
    assert len(tasks) == 1, outcomes
    assert all(isinstance(outcome, ScheduleBusy) for outcome in outcomes if outcome not in tasks), outcomes
    assert ScheduledTask.objects.filter(cron_schedule=schedule).count() == 1


def test_racing_schedulers_skip_a_busy_fire_once():
    schedule, first = every_minute("skip")
    fire_at(schedule, first)
    second = first + timedelta(minutes=1)
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=second)
    outcomes = race(4, lambda: scheduler.tick(now=second + timedelta(seconds=1)))
    assert outcomes == [[], [], [], []]
    assert reloaded(schedule).skipped_fires == 1
    assert ScheduledTask.objects.filter(cron_schedule=schedule).count() == 1


def test_racing_releases_enqueue_one_waiting_fire_and_lose_none():
    schedule, first = every_minute("queue")
    [task] = fire_at(schedule, first)
    waiting = [first + timedelta(minutes=minutes) for minutes in (1, 2, 3)]
    for fire_time in waiting:
        fire_at(schedule, fire_time)
    finish(task)
    outcomes = race(4, lambda: scheduler.tick(now=waiting[-1] + timedelta(seconds=5)))
    released = [task for outcome in outcomes for task in outcome]
    assert [task.cron_fire_time for task in released] == [waiting[0]], outcomes
    assert reloaded(schedule).waiting_fires == [fire_time.isoformat() for fire_time in waiting[1:]]


def test_an_edit_from_an_older_copy_keeps_the_schedulers_counts():
    schedule, first = every_minute("queue")
    stale = CronSchedule.objects.get(pk=schedule.pk)
    fire_at(schedule, first)
    fire_at(schedule, first + timedelta(minutes=1))
    stale.description = "edited"
    stale.save()
    assert reloaded(schedule).waiting_fires == [(first + timedelta(minutes=1)).isoformat()]


def test_leaving_queue_or_changing_the_timing_drops_waiting_fires():
    schedule, first = every_minute("queue")
    fire_at(schedule, first)
    fire_at(schedule, first + timedelta(minutes=1))
    row = reloaded(schedule)
    row.overlap = "skip"
    row.save()
    assert reloaded(schedule).waiting_fires == []
    row.overlap = "queue"
    row.save()
    fire_at(schedule, first + timedelta(minutes=2))
    row = reloaded(schedule)
    row.expression = "*/2 * * * *"
    row.save()
    assert reloaded(schedule).waiting_fires == []


def test_a_bad_overlap_is_refused_by_field():
    with pytest.raises(ValidationError) as raised:
        CronScheduleFactory(overlap="sometimes")
    assert "overlap" in raised.value.message_dict
    assert not CronSchedule.objects.exists()


def test_job_declares_its_cron_overlap():
    try:
        @job(name="tests.overlap_queue", cron="0 * * * *", cron_overlap="queue")
        def hourly():
            return None

        with override_settings(DJANGO_JOBS={"CRON": {}}):
            scheduler.sync_declared_schedules()
        assert CronSchedule.objects.get(name="tests.overlap_queue").overlap == "queue"
    finally:
        registry.unregister("tests.overlap_queue")


@pytest.mark.parametrize("options, message", [
    ({"cron": "0 * * * *", "cron_overlap": "never"}, "overlap must be one of skip, queue, allow"),
    ({"cron_overlap": "skip"}, "has cron_overlap but no cron"),
])
def test_job_refuses_a_bad_cron_overlap(options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        job(name="tests.bad_overlap", **options)(lambda: None)
    assert "tests.bad_overlap" not in registry


def test_settings_declare_overlap_and_an_undeclared_overlap_leaves_the_row_alone():
    spec = {"job": "tests.add", "cron": "0 3 * * *", "args": [1, 2]}
    with override_settings(DJANGO_JOBS={"CRON": {"nightly": {**spec, "overlap": "allow"}}}):
        scheduler.sync_declared_schedules()
    assert CronSchedule.objects.get(name="nightly").overlap == "allow"
    with override_settings(DJANGO_JOBS={"CRON": {"nightly": spec}}):
        assert scheduler.sync_declared_schedules()["unchanged"] == 1
    assert CronSchedule.objects.get(name="nightly").overlap == "allow"
    with override_settings(DJANGO_JOBS={"CRON": {"nightly": {**spec, "overlap": "maybe"}}}):
        with pytest.raises(ImproperlyConfigured, match="nightly"):
            scheduler.sync_declared_schedules()
