"""Cron schedules fire exactly once per fire time; time is driven by explicit ``now``."""

import threading
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone

from django_jobs import job, registry, scheduler
from django_jobs.checks import check_settings
from django_jobs.models import CronSchedule, ScheduledTask
from tests.conftest import wait_until
from tests.factories import CronScheduleFactory

pytestmark = pytest.mark.django_db(transaction=True)
UTC = ZoneInfo("UTC")


def minute(dt):
    return dt.replace(second=0, microsecond=0)


def test_a_new_schedule_knows_its_next_run():
    schedule = CronScheduleFactory(expression="*/5 * * * *")
    assert schedule.next_run > timezone.now()
    assert schedule.next_run.minute % 5 == 0 and schedule.next_run.second == 0
    assert schedule.next_run.utcoffset() == timedelta(0)


def test_tick_fires_once_when_due_and_advances():
    schedule = CronScheduleFactory(expression="* * * * *", job_name="tests.add", args=[1, 2])
    fire_time = schedule.next_run
    assert scheduler.tick(now=fire_time - timedelta(seconds=1)) == []
    [task] = scheduler.tick(now=fire_time + timedelta(seconds=1))
    assert (task.cron_schedule_id, task.cron_fire_time, task.identifier, task.args) == (schedule.pk, fire_time, "tests.add", [1, 2])
    assert scheduler.tick(now=fire_time + timedelta(seconds=2)) == []
    schedule.refresh_from_db()
    assert schedule.last_run == fire_time
    assert schedule.next_run == fire_time + timedelta(minutes=1)


def test_after_downtime_a_missed_schedule_runs_once():
    schedule = CronScheduleFactory(expression="* * * * *")
    missed = minute(timezone.now()) - timedelta(minutes=30)
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=missed)
    now = timezone.now()
    tasks = scheduler.tick(now=now)
    assert len(tasks) == 1 and tasks[0].cron_fire_time == missed
    schedule.refresh_from_db()
    assert now < schedule.next_run <= now + timedelta(minutes=1)
    assert scheduler.tick(now=now) == []


def test_a_schedule_off_for_a_while_does_not_fire_for_that_time():
    schedule = CronScheduleFactory(expression="* * * * *")
    schedule.disable()
    assert schedule.next_run is None
    assert scheduler.tick(now=timezone.now() + timedelta(hours=1)) == []
    schedule.enable()
    assert schedule.next_run > timezone.now()
    assert scheduler.tick(now=timezone.now()) == []
    assert ScheduledTask.objects.count() == 0


def test_editing_the_expression_takes_effect_on_the_next_tick():
    schedule = CronScheduleFactory(expression="0 0 1 1 *")
    schedule.expression = "* * * * *"
    schedule.save()
    assert schedule.next_run <= timezone.now() + timedelta(minutes=1)


def test_enabled_by_bulk_update_starts_from_now():
    schedule = CronScheduleFactory(expression="* * * * *")
    schedule.disable()
    CronSchedule.objects.filter(pk=schedule.pk).update(enabled=True)
    assert scheduler.tick() == []
    schedule.refresh_from_db()
    assert schedule.next_run > timezone.now()


def test_the_database_refuses_a_second_task_for_one_fire_time():
    schedule = CronScheduleFactory()
    fire_time = minute(timezone.now())
    assert scheduler.enqueue_for_schedule(schedule, fire_time) is not None
    assert scheduler.enqueue_for_schedule(schedule, fire_time) is None
    assert ScheduledTask.objects.filter(cron_schedule=schedule).count() == 1


def test_concurrent_ticks_fire_each_time_once():
    schedules = [CronScheduleFactory(expression="* * * * *") for _ in range(5)]
    past = minute(timezone.now()) - timedelta(minutes=3)
    CronSchedule.objects.update(next_run=past)
    start = threading.Barrier(4)
    errors = []

    def ticker():
        try:
            start.wait()
            scheduler.tick()
        except Exception as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ticker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert ScheduledTask.objects.count() == len(schedules)
    assert set(ScheduledTask.objects.values_list("cron_fire_time", flat=True)) == {past}


def test_expressions_are_validated_on_save_and_in_forms():
    with pytest.raises(ValidationError, match="minute field '61'"):
        CronSchedule(name="bad", job_name="tests.noop", expression="61 * * * *").save()
    schedule = CronSchedule(name="bad", job_name="tests.noop", expression="* * *")
    with pytest.raises(ValidationError) as error:
        schedule.full_clean()
    assert "5 fields" in error.value.message_dict["expression"][0]
    with pytest.raises(ValidationError, match="Unknown time zone"):
        CronSchedule(name="tz", job_name="tests.noop", expression="* * * * *", timezone="Nowhere/City").save()
    assert CronSchedule.objects.count() == 0


def test_run_now_enqueues_outside_the_fire_times():
    schedule = CronScheduleFactory(job_name="tests.add", args=[2, 2], queue="reports", priority=50, overlap="allow")
    task = schedule.run_now()
    assert (task.cron_schedule_id, task.cron_fire_time, task.queue, task.priority) == (schedule.pk, None, "reports", 50)
    assert schedule.run_now().pk != task.pk  # manual runs are not deduplicated


def test_a_schedule_of_an_unknown_job_leaves_a_failed_task_that_says_why():
    schedule = CronScheduleFactory(job_name="gone.job")
    [task] = scheduler.tick(now=schedule.next_run)
    assert task.status == "failed"
    assert "No job named 'gone.job'" in task.error_message


def test_schedule_time_zone_is_used():
    schedule = CronScheduleFactory(expression="0 9 * * *", timezone="America/New_York")
    assert schedule.next_run.astimezone(ZoneInfo("America/New_York")).hour == 9


# -- declared in code -------------------------------------------------------------------

CRON = {"nightly": {"job": "tests.add", "cron": "0 3 * * *", "args": [1, 2], "queue": "reports"}}


@override_settings(DJANGO_JOBS={"CRON": CRON})
def test_sync_creates_updates_and_disables():
    assert scheduler.sync_declared_schedules()["created"] == 1
    row = CronSchedule.objects.get(name="nightly")
    assert (row.job_name, row.expression, row.args, row.queue, row.declared_in_code) == ("tests.add", "0 3 * * *", [1, 2], "reports", True)
    assert scheduler.sync_declared_schedules()["unchanged"] == 1
    assert CronSchedule.objects.count() == 1

    with override_settings(DJANGO_JOBS={"CRON": {"nightly": {**CRON["nightly"], "cron": "0 4 * * *"}}}):
        assert scheduler.sync_declared_schedules()["updated"] == 1
    row.refresh_from_db()
    assert row.expression == "0 4 * * *" and row.next_run.hour == 4

    with override_settings(DJANGO_JOBS={"CRON": {}}):
        assert scheduler.sync_declared_schedules()["disabled"] == 1
    row.refresh_from_db()
    assert row.enabled is False and row.next_run is None

    assert scheduler.sync_declared_schedules()["updated"] == 1  # declared again: back on
    row.refresh_from_db()
    assert row.enabled is True


@override_settings(DJANGO_JOBS={"CRON": {}})
def test_an_operator_disabled_code_schedule_stays_off():
    with override_settings(DJANGO_JOBS={"CRON": CRON}):
        scheduler.sync_declared_schedules()
        CronSchedule.objects.get(name="nightly").disable()
        assert scheduler.sync_declared_schedules()["unchanged"] == 1
    assert CronSchedule.objects.get(name="nightly").enabled is False


@override_settings(DJANGO_JOBS={"CRON": CRON})
def test_sync_never_touches_rows_users_created():
    CronScheduleFactory(name="nightly", job_name="tests.noop", expression="0 1 * * *")
    other = CronScheduleFactory(name="mine")
    assert scheduler.sync_declared_schedules()["skipped"] == 1
    assert CronSchedule.objects.get(name="nightly").job_name == "tests.noop"
    other.refresh_from_db()
    assert other.enabled


def test_job_decorator_cron_is_declared():
    @job(name="tests.cron_job", cron="@hourly")
    def cron_job():
        pass

    try:
        assert scheduler.declared_schedules()["tests.cron_job"]["expression"] == "0 * * * *"
        with pytest.raises(ImproperlyConfigured, match="invalid cron: Invalid minute field '61'"):
            job(name="tests.bad_cron_job", cron="61 * * * *")(lambda: None)
    finally:
        registry.unregister("tests.cron_job")


@pytest.mark.parametrize("spec, message", [
    ({"job": "tests.add", "cron": "61 * * * *", "args": [1, 2]}, "minute field '61'"),
    ({"job": "no.such.job", "cron": "* * * * *"}, "No job named 'no.such.job'"),
    ({"job": "tests.add", "cron": "* * * * *", "args": [1]}, "do not fit"),
    ({"job": "tests.add"}, "'job' and 'cron' keys"),
    ({"job": "tests.add", "cron": "* * * * *", "every": 5}, "unknown keys"),
])
def test_invalid_declarations_stop_the_worker_naming_the_schedule(spec, message):
    with override_settings(DJANGO_JOBS={"CRON": {"broken-one": spec}}):
        with pytest.raises(ImproperlyConfigured, match="broken-one"):
            scheduler.declared_schedules()
        with pytest.raises(CommandError, match=message):
            call_command("run_jobworker", "--burst")
        assert [problem.id for problem in check_settings()] == ["django_jobs.E006"]


@pytest.mark.slow
@pytest.mark.parametrize("overlap", ["allow", "skip"])
def test_worker_processes_racing_on_schedules_fire_each_time_exactly_once(workers, overlap):
    """Four real workers tick the same schedules; each round moves every schedule's
    ``next_run`` to a new past fire time, so every round is a race.

    With ``allow`` every fire is enqueued once. With ``skip`` (the default of new
    schedules) a fire that finds the previous task still pending or running is
    counted instead: then every fire is either enqueued once or counted once."""
    # Once a year: no fire of its own while the test runs (a minute turning would add one).
    schedules = [CronScheduleFactory(expression="0 0 1 1 *", overlap=overlap) for _ in range(10)]
    for _ in range(4):
        workers.start("--concurrency", "2", "--interval", "0.2")
    base = minute(timezone.now()) - timedelta(hours=2)
    rounds = [base + timedelta(minutes=number) for number in range(8)]
    for fire_time in rounds:
        CronSchedule.objects.update(next_run=fire_time)
        wait_until(lambda: not CronSchedule.objects.filter(next_run__lte=timezone.now()).exists(), timeout=30)
    wait_until(lambda: not ScheduledTask.objects.filter(status__in=["pending", "running"]).exists(), timeout=30)
    per_fire = ScheduledTask.objects.values("cron_schedule", "cron_fire_time").annotate(count=Count("id"))
    assert max(row["count"] for row in per_fire) == 1
    fired = {(row["cron_schedule"], row["cron_fire_time"]) for row in per_fire}
    assert fired <= {(s.pk, t) for s in schedules for t in rounds}
    skipped = dict(CronSchedule.objects.values_list("pk", "skipped_fires"))
    for schedule in schedules:
        enqueued = sum(1 for pk, _ in fired if pk == schedule.pk)
        assert enqueued + skipped[schedule.pk] == len(rounds), schedule
    if overlap == "allow":
        assert set(skipped.values()) == {0}
    assert set(ScheduledTask.objects.values_list("status", flat=True)) == {"completed"}
    assert ScheduledTask.objects.values("worker_id").distinct().count() >= 2
