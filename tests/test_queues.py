"""Pausing and resuming queues: persisted, honoured by every claim, visible in statistics."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

import django_jobs
from django_jobs import InvalidJobOption, get_statistics
from django_jobs.models import PausedQueue, ScheduledTask
from django_jobs.worker.claiming import claim
from tests.conftest import wait_until
from tests.testapp import jobs
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def test_pause_and_resume_say_whether_they_changed_anything():
    assert django_jobs.pause_queue("mail", reason="SMTP outage") is True
    assert django_jobs.pause_queue("mail") is False
    assert django_jobs.pause_queue("reports") is True
    assert django_jobs.paused_queues() == ["mail", "reports"]
    assert PausedQueue.objects.get(queue="mail").reason == "SMTP outage"
    assert django_jobs.resume_queue("mail") is True
    assert django_jobs.resume_queue("mail") is False
    assert django_jobs.paused_queues() == ["reports"]


def test_the_pausing_user_is_kept():
    user = get_user_model().objects.create_user("operator")
    django_jobs.pause_queue("mail", by=user)
    assert PausedQueue.objects.get(queue="mail").paused_by == user


@override_settings(DJANGO_JOBS={"QUEUES": ["default", "mail"]})
def test_a_queue_outside_the_configured_ones_cannot_be_paused():
    with pytest.raises(InvalidJobOption, match="Unknown queue 'nope'"):
        django_jobs.pause_queue("nope")
    with pytest.raises(InvalidJobOption):
        django_jobs.pause_queue("")
    assert not PausedQueue.objects.exists()


def test_claims_skip_paused_queues_until_they_are_resumed():
    mail = [jobs.noop.using(queue="mail", priority=100).enqueue() for _ in range(3)]
    default = [jobs.noop.enqueue() for _ in range(2)]
    django_jobs.pause_queue("mail")

    claimed = claim("w1", None, 10)
    assert sorted(task.pk for task in claimed) == sorted(task.pk for task in default)
    assert claim("w1", ["mail"], 10) == []
    assert set(ScheduledTask.objects.filter(queue="mail").values_list("status", flat=True)) == {"pending"}

    django_jobs.resume_queue("mail")
    assert sorted(task.pk for task in claim("w1", ["mail"], 10)) == sorted(task.pk for task in mail)


def test_statistics_list_the_paused_queues():
    django_jobs.pause_queue("reports")
    assert get_statistics()["paused_queues"] == ["reports"]


@pytest.mark.slow
def test_a_worker_stops_starting_tasks_of_a_queue_within_a_poll_interval_of_its_pause(workers):
    # One job thread, a batch of 30: most tasks wait in the worker's buffer, already
    # claimed, when the pause comes. They must go back, not run.
    tasks = [jobs.record.using(queue="mail").enqueue(label=str(n), pause=0.3) for n in range(30)]
    worker = workers.start("--concurrency", "1", "--batch-size", "30", "--interval", "0.2", "--no-cron")
    wait_until(lambda: Execution.objects.count() >= 2, timeout=60)
    django_jobs.pause_queue("mail")
    started_before_pause = Execution.objects.count()

    wait_until(lambda: not ScheduledTask.objects.filter(status="running").exists(), timeout=30)
    time.sleep(1.0)  # a few more poll intervals: nothing else may start
    # The job on its thread may finish and take the next one before the worker's
    # next loop pass (one poll interval); everything else went back to the queue.
    assert Execution.objects.count() <= started_before_pause + 3
    left = ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks], status="pending")
    assert left.count() >= 20
    assert set(left.values_list("retry_count", flat=True)) == {0}  # given back, not counted as attempts

    django_jobs.resume_queue("mail")
    wait_until(lambda: ScheduledTask.objects.filter(status="completed").count() == 30, timeout=60)
    worker.send_signal(2)
    assert worker.wait(timeout=30) == 0
    assert Execution.objects.count() == 30


# -- pause_all -------------------------------------------------------------------------------------
def test_pause_all_stops_claims_from_every_queue_and_resume_all_brings_them_back():
    tasks = [jobs.noop.using(queue=queue).enqueue() for queue in ("default", "mail", "reports")]
    django_jobs.pause_queue("reports")
    assert django_jobs.pause_all(reason="maintenance") is True
    assert django_jobs.pause_all() is False
    assert claim("w1", None, 10) == [] and claim("w1", ["mail"], 10) == []
    assert django_jobs.paused_queues() == ["reports"]  # the global pause is not a queue
    assert get_statistics()["paused_queues"] == ["reports"]

    assert django_jobs.resume_all() is True
    assert django_jobs.resume_all() is False
    # Queues paused one by one stay paused.
    assert sorted(task.pk for task in claim("w1", None, 10)) == sorted(task.pk for task in tasks[:2])
    assert django_jobs.paused_queues() == ["reports"]


@pytest.mark.parametrize("use", [
    lambda: django_jobs.pause_queue("*"),
    lambda: jobs.noop.using(queue="*").enqueue(),
    lambda: django_jobs.enqueue("tests.noop", queue="*"),
])
def test_star_is_reserved_for_pause_all_and_never_a_queue(use):
    with pytest.raises(InvalidJobOption, match=r"'\*' is not a queue name: it is reserved for pausing every queue"):
        use()
    assert not PausedQueue.objects.exists() and not ScheduledTask.objects.exists()


@pytest.mark.slow
def test_a_worker_under_pause_all_starts_nothing_fires_no_cron_and_catches_up_once_after(workers):
    from datetime import timedelta

    from django.utils import timezone

    from django_jobs.models import CronSchedule

    django_jobs.pause_all()
    schedule = CronSchedule.objects.create(name="every-minute", job_name="tests.noop", expression="* * * * *")
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() - timedelta(minutes=3))
    task = jobs.noop.using(queue="mail").enqueue()
    worker = workers.start("--queues", "mail,default", "--interval", "30")  # woken by NOTIFY on PostgreSQL only
    time.sleep(3.0)  # several cron ticks and claims
    assert ScheduledTask.objects.get(pk=task.pk).status == "pending"
    assert not ScheduledTask.objects.filter(cron_schedule=schedule).exists()

    django_jobs.resume_all()
    # On PostgreSQL resume_all's NOTIFY wakes the worker; elsewhere the cron thread's fire wakes it.
    wait_until(lambda: ScheduledTask.objects.filter(cron_schedule=schedule, status="completed").exists(), timeout=40)
    wait_until(lambda: ScheduledTask.objects.get(pk=task.pk).status == "completed", timeout=40)
    # Three missed fires run once, as after any downtime.
    assert ScheduledTask.objects.filter(cron_schedule=schedule).count() == 1
    worker.send_signal(2)
    assert worker.wait(timeout=30) == 0


def test_the_dashboard_pauses_and_resumes_everything(admin_client):
    from django.urls import reverse

    page = reverse("admin:django_jobs_dashboard")
    response = admin_client.post(reverse("admin:django_jobs_pause_queue"), {"all": "1", "reason": "deploy"}, follow=True)
    assert "Every queue paused" in response.content.decode()
    html = admin_client.get(page).content.decode()
    assert "Every queue is paused since" in html and ": deploy." in html and "Resume all" in html
    assert PausedQueue.objects.get(queue="*").reason == "deploy"
    response = admin_client.post(reverse("admin:django_jobs_resume_queue"), {"all": "1"}, follow=True)
    assert "Every queue resumed" in response.content.decode()
    assert not PausedQueue.objects.exists()
    assert "Pause all queues and cron" in admin_client.get(page).content.decode()


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def test_jobs_stats_says_when_everything_is_paused():
    import io
    import json

    from django.core.management import call_command

    django_jobs.pause_all()
    out = io.StringIO()
    call_command("jobs_stats", "--watch", "--iterations", "1", "--interval", "0.01", stdout=out)
    assert "ALL QUEUES PAUSED (pause_all): no claims, no cron fires" in out.getvalue()
    out = io.StringIO()
    call_command("jobs_stats", "--watch", "--json", "--iterations", "1", "--interval", "0.01", stdout=out)
    assert json.loads(out.getvalue())["all_paused"] is True
