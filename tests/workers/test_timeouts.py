"""Job timeouts, enforced by running such jobs in a child process of a real worker."""

import pytest

from django_jobs.models import ScheduledTask
from tests.conftest import wait_until
from tests.testapp import jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def finished(*tasks):
    def check():
        rows = ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks])
        return all(row.status in ("completed", "failed") for row in rows)
    return check


def test_a_job_past_its_timeout_is_killed_retried_and_failed_while_others_run(workers):
    slow = jobs.slow_with_timeout.enqueue(30)  # timeout 1 s, one retry
    quick = [jobs.add.enqueue(n, n) for n in range(20)]
    workers.start("--concurrency", "2", "--interval", "0.2")
    wait_until(finished(slow, *quick), timeout=60)
    slow.refresh_from_db()
    assert slow.status == "failed"
    assert slow.retry_count == 1  # the first timeout was retried
    assert slow.error_message == "JobTimeout: Job ran longer than its timeout of 1 s and was killed"
    assert all(ScheduledTask.objects.get(pk=task.pk).status == "completed" for task in quick)


def test_a_job_within_its_timeout_returns_its_result(workers):
    task = jobs.slow_with_timeout.enqueue(0.1)
    workers.start("--burst")
    wait_until(finished(task), timeout=60)
    task.refresh_from_db()
    assert (task.status, task.result) == ("completed", 0.1)


def test_an_exception_that_cannot_be_pickled_is_recorded(workers):
    task = jobs.raises_unpicklable.enqueue()
    workers.start("--burst")
    wait_until(finished(task), timeout=60)
    task.refresh_from_db()
    assert task.status == "failed"
    assert task.error_message == "Unpicklable: cannot travel"
    assert "raises_unpicklable" in task.traceback


def test_a_job_that_kills_its_process_fails_clearly(workers):
    task = jobs.exits_hard.enqueue()
    process = workers.start("--burst")
    wait_until(finished(task), timeout=60)
    task.refresh_from_db()
    assert task.status == "failed"
    assert "exited without an answer (exit code 3)" in task.error_message
    assert process.wait(30) == 0  # the worker itself carried on
