import pytest

from django_jobs.models import ScheduledTask
from tests.processes import finish
from tests.testapp import jobs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]  # it starts a worker


def test_a_worker_process_runs_an_enqueued_job(workers):
    task = jobs.add.enqueue(2, 3)
    process = workers.start("--burst")
    _, output = finish(process, timeout=60)
    assert process.returncode == 0, output
    task.refresh_from_db()
    assert task.status == ScheduledTask.Status.COMPLETED
    assert task.result == 5
