"""Pausing and resuming queues: persisted, honoured by every claim, visible in statistics."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

import django_jobs
from django_jobs import InvalidJobOption, get_statistics
from django_jobs.claiming import claim
from django_jobs.models import PausedQueue, ScheduledTask
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
