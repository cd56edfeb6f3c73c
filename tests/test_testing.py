"""IMMEDIATE mode and run_pending_jobs, the helpers for projects' own tests."""

import datetime as dt

import pytest
from django.test import override_settings

from django_jobs.models import ScheduledTask
from django_jobs.testing import run_pending_jobs
from tests.testapp import jobs

pytestmark = pytest.mark.django_db


@override_settings(DJANGO_JOBS={"IMMEDIATE": True})
def test_immediate_mode_runs_at_enqueue():
    task = jobs.add.enqueue(4, 5)
    assert (task.status, task.result) == ("completed", 9)
    tasks = jobs.add.enqueue_many([((1, 1), {}), ((2, 2), {})])
    assert [t.result for t in tasks] == [2, 4]


@override_settings(DJANGO_JOBS={"IMMEDIATE": True})
def test_immediate_mode_records_failures_like_a_worker():
    task = jobs.always_fails.using(max_retries=0).enqueue()
    assert task.status == "failed"
    assert "always fails" in task.error_message


def test_run_pending_jobs_runs_due_tasks_of_a_queue():
    mail = jobs.collect.using(queue="mail").enqueue("m")
    other = jobs.collect.enqueue("d")
    later = jobs.collect.enqueue_in(dt.timedelta(hours=1), "later")
    ran = run_pending_jobs(queue="mail")
    assert [t.pk for t in ran] == [mail.pk]
    assert ran[0].status == "completed"
    ran = run_pending_jobs()
    assert [t.pk for t in ran] == [other.pk]
    assert ScheduledTask.objects.get(pk=later.pk).status == "pending"


def test_run_pending_jobs_on_an_empty_queue():
    assert run_pending_jobs() == []
