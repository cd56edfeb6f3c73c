"""The event trail: one TaskEvent row per state change, in the change's transaction
(PostgreSQL's triggers; on MariaDB and SQLite the state changes of ``querysets``).

Every path that changes a task is driven for real (a worker process's claim and bulk
completion, enqueue_many, the single enqueue, retries, recovery from a dead worker, a
stopping worker's release, operator actions, pauses) and the trail read back; a
rolled-back change leaves no event; deleting or pruning a task removes its events;
``EVENTS = False`` writes none.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

import django_jobs
from django_jobs import retention
from django_jobs.models import ScheduledTask, TaskEvent
from django_jobs.worker import recover_lost_tasks
from tests.factories import WorkerFactory
from tests.testapp import jobs

pytestmark = pytest.mark.django_db(transaction=True)


def trail(task: ScheduledTask) -> list[tuple[str, int]]:
    return list(TaskEvent.objects.filter(task=task).order_by("at", "id").values_list("kind", "attempt"))


@pytest.mark.slow
def test_a_worker_process_leaves_the_whole_history_of_each_task(workers):
    flaky = jobs.fail_until.enqueue(2)
    plain = jobs.noop.enqueue_many([((), {}) for _ in range(5)])  # completed in bulk by the worker
    result = jobs.add.enqueue(1, 2)
    process = workers.start("--burst", "--concurrency", "2", "--no-cron")
    assert process.wait(60) == 0, process.stdout.read()

    assert trail(flaky) == [("started", 1), ("retried", 1), ("started", 2), ("completed", 2)]
    retried = TaskEvent.objects.get(task=flaky, kind="retried")
    assert retried.message == "RuntimeError: failing on attempt 1" and retried.worker_id.startswith("vm") is not None
    assert {tuple(trail(task)) for task in [*plain, result]} == {(("started", 1), ("completed", 1))}
    started = TaskEvent.objects.filter(task=result, kind="started").get()
    assert started.worker_id and started.queue == "default"
    assert started.at <= TaskEvent.objects.get(task=result, kind="completed").at


def test_operator_actions_cancel_and_retry_are_on_the_trail():
    task = jobs.noop.enqueue()
    assert task.cancel()
    task.refresh_from_db()
    task.retry()
    assert trail(task) == [("cancelled", 0), ("requeued", 0)]


def test_a_lost_worker_s_task_is_recovered_on_the_trail_and_fails_when_no_retry_is_left():
    long_ago = timezone.now() - timedelta(hours=1)
    retrying = jobs.noop.enqueue()
    last = jobs.noop.using(max_retries=0).enqueue()
    ScheduledTask.objects.filter(pk__in=[retrying.pk, last.pk]).mark_running("dead:1", long_ago)
    WorkerFactory(worker_id="dead:1", last_heartbeat=long_ago)
    assert recover_lost_tasks() == 2

    assert trail(retrying) == [("started", 1), ("recovered", 1)]
    recovered = TaskEvent.objects.get(task=retrying, kind="recovered")
    assert recovered.worker_id == "dead:1" and recovered.message.startswith("WorkerLost: ")
    assert trail(last)[-1] == ("failed", 1)


def test_a_task_given_back_unstarted_is_released_on_the_trail():
    task = jobs.noop.enqueue()
    ScheduledTask.objects.filter(pk=task.pk).mark_running("w:1", timezone.now())
    ScheduledTask.objects.filter(pk=task.pk).release("w:1", timezone.now())
    assert trail(task) == [("started", 1), ("released", 1)]


def test_a_rolled_back_enqueue_leaves_no_event():
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            jobs.noop.enqueue()
            jobs.noop.enqueue_many([((), {}) for _ in range(3)])
            raise RuntimeError("roll back")
    assert not TaskEvent.objects.exists()


def test_enqueueing_writes_no_event_the_row_is_its_record():
    jobs.noop.enqueue()  # PostgreSQL: the prepared libpq statement, outside a transaction
    with transaction.atomic():
        jobs.noop.enqueue()
    jobs.noop.enqueue_many([((), {}) for _ in range(250)])
    django_jobs.enqueue("tests.noop", delay=60)
    assert not TaskEvent.objects.exists()


def test_pausing_and_resuming_queues_are_events_without_a_task(django_user_model):
    operator = django_user_model.objects.create_user("operator")
    django_jobs.pause_queue("mail", by=operator, reason="SMTP outage")
    django_jobs.resume_queue("mail")
    django_jobs.pause_all(reason="deploy")
    django_jobs.resume_all()
    rows = list(TaskEvent.objects.order_by("id").values_list("kind", "queue", "message", "task_id"))
    assert rows == [("paused", "mail", "by operator; SMTP outage", None), ("resumed", "mail", "", None),
                    ("paused", "*", "deploy", None), ("resumed", "*", "", None)]


def test_deleting_or_pruning_a_task_deletes_its_events():
    kept, deleted, pruned = (jobs.noop.enqueue() for _ in range(3))
    for task in (kept, deleted):
        task.cancel()
    deleted.delete()
    ScheduledTask.objects.filter(pk=pruned.pk).update(status="completed", executed_at=timezone.now() - timedelta(days=9))
    assert retention.prune({"completed": "7d"}) == {"completed": 1}
    assert set(TaskEvent.objects.values_list("task_id", flat=True)) == {kept.pk}


def test_events_off_writes_no_event_but_deletes_still_clean_up():
    connections.close_all()  # the switch is read when a connection opens
    with override_settings(DJANGO_JOBS={"EVENTS": False}):
        connections.close_all()
        task = jobs.noop.enqueue()
        task.cancel()
        django_jobs.pause_queue("mail")
        assert not TaskEvent.objects.exists()
        connections.close_all()
    quiet = task
    loud = jobs.noop.enqueue()
    loud.cancel()
    assert trail(loud) == [("cancelled", 0)] and trail(quiet) == []
    with override_settings(DJANGO_JOBS={"EVENTS": False}):
        connections.close_all()
        ScheduledTask.objects.filter(pk=loud.pk).delete()
    connections.close_all()
    assert not TaskEvent.objects.filter(task_id=loud.pk).exists()


def test_the_admin_task_page_shows_the_trail(admin_client):
    task = jobs.fail_until.enqueue(3)
    from django_jobs.testing import run_pending_jobs

    run_pending_jobs()
    html = admin_client.get(reverse("admin:django_jobs_scheduledtask_change", args=[task.pk])).content.decode()
    assert "Attempt 1 failed, will retry: RuntimeError: failing on attempt 1" in html
    assert "Started attempt 1 on inline:" in html and "Enqueued" in html


def test_with_the_trail_off_the_admin_draws_the_timeline_from_the_row(admin_client):
    from django_jobs.testing import run_pending_jobs

    connections.close_all()  # PostgreSQL reads the switch when a connection opens
    with override_settings(DJANGO_JOBS={"EVENTS": False}):
        connections.close_all()
        task = jobs.fail_until.enqueue(3)
        run_pending_jobs()
        assert not TaskEvent.objects.filter(task__isnull=False).exists()
        html = admin_client.get(reverse("admin:django_jobs_scheduledtask_change", args=[task.pk])).content.decode()
        connections.close_all()
    assert "Enqueued" in html and "Attempt 1 failed" in html


def test_operator_actions_on_many_tasks_write_one_event_each():
    """Past IDS_PER_CHANGE, where the ids are read first (MariaDB, SQLite), and after the
    change no longer matches the queryset's own filter (``status=pending``)."""
    from django_jobs import querysets

    tasks = jobs.noop.enqueue_many([((), {}) for _ in range(querysets.IDS_PER_CHANGE + 5)])
    assert ScheduledTask.objects.filter(status="pending").cancel_pending() == len(tasks)
    assert TaskEvent.objects.filter(kind="cancelled").count() == len(tasks)
    assert ScheduledTask.objects.filter(status="cancelled").retry_now() == len(tasks)
    assert TaskEvent.objects.filter(kind="requeued").count() == len(tasks)
    assert set(TaskEvent.objects.values_list("attempt", flat=True)) == {0}


def test_a_change_that_lost_its_race_writes_no_event():
    task = jobs.noop.enqueue()
    rows = ScheduledTask.objects.filter(pk=task.pk)
    assert rows.mark_running("w:1", timezone.now()) == 1
    assert rows.mark_running("w:2", timezone.now()) == 0  # taken already
    assert rows.complete("w:2", None, timezone.now()) == 0  # not held by w:2
    assert rows.release("w:2", timezone.now()) == 0
    assert trail(task) == [("started", 1)]
    assert TaskEvent.objects.get(task=task).worker_id == "w:1"


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client
