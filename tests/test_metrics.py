"""Observability: Prometheus metrics (worker port and web view) and structured log lines."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import include, path
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from django_jobs import metrics
from django_jobs.execution.outcome import Outcome
from django_jobs.execution.recording import record_outcomes
from django_jobs.models import ScheduledTask
from django_jobs.queues import pause_queue
from django_jobs.testing import run_pending_jobs
from django_jobs.worker import claiming
from tests.conftest import REPO, wait_until
from tests.factories import ScheduledTaskFactory
from tests.testapp import jobs

urlpatterns = [path("ops/metrics/", include("django_jobs.metrics.urls"))]


def sample(name: str, **labels: str) -> float:
    """A value of this process's default registry (0 when the series does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped, name: str, **labels: str) -> float | None:
    return scraped.get((name, tuple(sorted(labels.items()))))


# -- counters in this process ---------------------------------------------------------------
@pytest.mark.django_db
def test_enqueue_is_counted_on_commit(django_capture_on_commit_callbacks):
    before = sample("django_jobs_enqueued_total", job="tests.add", queue="mail")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        jobs.add.using(queue="mail").enqueue(1, 2)
        jobs.add.using(queue="mail").enqueue_many([((1, 2), {}), ((3, 4), {})])
        assert sample("django_jobs_enqueued_total", job="tests.add", queue="mail") == before
    for callback in callbacks:
        callback()
    assert sample("django_jobs_enqueued_total", job="tests.add", queue="mail") == before + 3


@pytest.mark.django_db
def test_outcomes_are_counted_by_what_they_did_to_the_task():
    labels = {"queue": "default"}
    before = {name: sample(name, job=job, **labels) for name, job in [
        ("django_jobs_started_total", "tests.fail_until"), ("django_jobs_retried_total", "tests.fail_until"),
        ("django_jobs_completed_total", "tests.fail_until"), ("django_jobs_failed_total", "tests.always_fails"),
        ("django_jobs_duration_seconds_count", "tests.fail_until")]}
    jobs.fail_until.enqueue(succeed_on_attempt=2)
    jobs.always_fails.using(max_retries=0).enqueue()
    run_pending_jobs()
    run_pending_jobs()  # the retry (fail_until has no backoff delay)
    after = {name: sample(name, job=job, **labels) for name, job in [
        ("django_jobs_started_total", "tests.fail_until"), ("django_jobs_retried_total", "tests.fail_until"),
        ("django_jobs_completed_total", "tests.fail_until"), ("django_jobs_failed_total", "tests.always_fails"),
        ("django_jobs_duration_seconds_count", "tests.fail_until")]}
    assert {name: after[name] - before[name] for name in before} == {
        "django_jobs_started_total": 2, "django_jobs_retried_total": 1, "django_jobs_completed_total": 1,
        "django_jobs_failed_total": 1, "django_jobs_duration_seconds_count": 2}


@pytest.mark.django_db
def test_successes_recorded_together_are_counted_together():
    ScheduledTaskFactory.create_batch(5, identifier="tests.noop", queue="bulk")
    tasks = claiming.claim("metrics-test", ["bulk"], limit=5)
    before = sample("django_jobs_completed_total", job="tests.noop", queue="bulk")
    seconds_before = sample("django_jobs_duration_seconds_sum", job="tests.noop", queue="bulk")
    record_outcomes([(task, Outcome(succeeded=True, duration=0.5)) for task in tasks], "metrics-test")
    assert ScheduledTask.objects.filter(queue="bulk", status="completed").count() == 5
    assert sample("django_jobs_completed_total", job="tests.noop", queue="bulk") == before + 5
    assert sample("django_jobs_duration_seconds_sum", job="tests.noop", queue="bulk") == seconds_before + 2.5


@pytest.mark.django_db
def test_an_outcome_the_worker_could_not_write_is_not_counted():
    [task] = ScheduledTaskFactory.create_batch(1, identifier="tests.noop", queue="lost")
    [claimed] = claiming.claim("metrics-test", ["lost"], limit=1)
    ScheduledTask.objects.filter(pk=task.pk).update(worker_id="someone-else")  # recovered elsewhere
    before = sample("django_jobs_completed_total", job="tests.noop", queue="lost")
    record_outcomes([(claimed, Outcome(succeeded=True, duration=0.1))], "metrics-test")
    assert sample("django_jobs_completed_total", job="tests.noop", queue="lost") == before


# -- the view ----------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.urls("tests.test_metrics")
def test_view_serves_counters_and_queue_depth(client):
    now = timezone.now()
    ScheduledTaskFactory.create_batch(2, queue="reports", scheduled_at=now - timedelta(minutes=5))
    ScheduledTaskFactory(queue="reports", scheduled_at=now + timedelta(hours=1))
    ScheduledTaskFactory(queue="mail", status="running", worker_id="w", started_at=now)
    ScheduledTaskFactory(queue="mail", status="completed")
    pause_queue("reports")
    response = client.get("/ops/metrics/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    scraped = parse(response.content.decode())
    assert value(scraped, "django_jobs_queue_depth", queue="reports", state="due") == 2
    assert value(scraped, "django_jobs_queue_depth", queue="reports", state="scheduled") == 1
    assert value(scraped, "django_jobs_queue_depth", queue="reports", state="running") == 0
    assert value(scraped, "django_jobs_queue_depth", queue="mail", state="running") == 1
    assert value(scraped, "django_jobs_oldest_due_seconds", queue="reports") >= 300
    assert value(scraped, "django_jobs_workers") == 0
    assert value(scraped, "django_jobs_queue_paused", queue="reports") == 1
    assert value(scraped, "django_jobs_queue_paused", queue="mail") == 0
    assert any(name == "django_jobs_started_total" for name, _ in scraped)


# -- a real worker's port ---------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return parse(response.read().decode())


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_serves_metrics_on_its_port(workers):
    for number in range(3):
        jobs.add.enqueue(number, 1)
    jobs.fail_until.enqueue(succeed_on_attempt=2)
    jobs.always_fails.using(max_retries=0).enqueue()
    jobs.noop.using(queue="elsewhere").enqueue()          # not served by this worker: stays due
    jobs.noop.enqueue_in(timedelta(hours=1))              # scheduled later
    port = free_port()
    workers.start("--no-cron", "--queues", "default", "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    finished = ScheduledTask.objects.filter(queue="default", status__in=["completed", "failed"])
    wait_until(lambda: finished.count() == 5, timeout=60)
    wait_until(lambda: _reachable(port), timeout=30)
    scraped = scrape(port)
    assert value(scraped, "django_jobs_started_total", job="tests.add", queue="default") == 3
    assert value(scraped, "django_jobs_completed_total", job="tests.add", queue="default") == 3
    assert value(scraped, "django_jobs_started_total", job="tests.fail_until", queue="default") == 2
    assert value(scraped, "django_jobs_retried_total", job="tests.fail_until", queue="default") == 1
    assert value(scraped, "django_jobs_completed_total", job="tests.fail_until", queue="default") == 1
    assert value(scraped, "django_jobs_failed_total", job="tests.always_fails", queue="default") == 1
    assert value(scraped, "django_jobs_duration_seconds_count", job="tests.add", queue="default") == 3
    assert value(scraped, "django_jobs_queue_depth", queue="elsewhere", state="due") == 1
    assert value(scraped, "django_jobs_queue_depth", queue="default", state="scheduled") == 1
    assert value(scraped, "django_jobs_workers") == 1
    # Scrapes do not leak connections: each answering thread closes the one it opened.
    for _ in range(5):
        scrape(port)
    assert _connections_of_workers() <= 4


def _reachable(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def _connections_of_workers() -> int:
    """Connections the worker holds now (main, job, recorder, heartbeat, LISTEN ...): not one per scrape."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            return cursor.fetchone()[0] - 1  # the LISTEN connection
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
                           "AND id <> CONNECTION_ID()")
            return cursor.fetchone()[0]
    return 0  # SQLite has no server to ask


# -- without prometheus-client --------------------------------------------------------------------
@pytest.fixture
def without_prometheus(tmp_path):
    """Environment for a subprocess in which ``import prometheus_client`` fails."""
    stub = tmp_path / "prometheus_client"
    stub.mkdir()
    (stub / "__init__.py").write_text("raise ImportError('prometheus_client is hidden by the test')\n")
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}", "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DJANGO_JOBS_TEST_DB_NAME": connection.settings_dict["NAME"]}


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_everything_works_without_prometheus_client(without_prometheus):
    task = jobs.add.enqueue(2, 3)
    worker = subprocess.run([sys.executable, "-m", "django", "run_jobworker", "--burst", "--no-cron"], check=False,
                            cwd=REPO, env=without_prometheus, capture_output=True, text=True, timeout=120)
    assert worker.returncode == 0, worker.stderr
    task.refresh_from_db()
    assert (task.status, task.result) == ("completed", 5)
    refused = subprocess.run([sys.executable, "-m", "django", "run_jobworker", "--burst", "--metrics-port", "9"], check=False,
                             cwd=REPO, env=without_prometheus, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "Metrics need prometheus-client: pip install 'django-dbjobs[metrics]'" in refused.stderr


@pytest.mark.django_db
@pytest.mark.urls("tests.test_metrics")
def test_view_without_prometheus_client_says_what_to_install(client, monkeypatch):
    monkeypatch.setattr("django_jobs.metrics.views.AVAILABLE", False)
    response = client.get("/ops/metrics/")
    assert response.status_code == 501
    assert b"pip install 'django-dbjobs[metrics]'" in response.content


@pytest.mark.slow
def test_metrics_port_in_use_is_a_clear_error():
    from django.core.management.base import CommandError

    from django_jobs.management.commands.run_jobworker import serve_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"Cannot serve metrics on 127.0.0.1:{port}"):
            serve_metrics(port, "127.0.0.1")


# -- structured logs ------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_every_task_log_line_carries_task_job_queue_and_attempt(caplog):
    caplog.set_level(logging.INFO, logger="django_jobs")
    ok = jobs.add.using(queue="mail").enqueue(1, 2)
    flaky = jobs.fail_until.enqueue(succeed_on_attempt=2)
    run_pending_jobs()
    run_pending_jobs()
    lines = [record for record in caplog.records if record.name in ("django_jobs.executor", "django_jobs.recording")]
    assert len(lines) == 2 + 2 + 2  # started/completed for ok; started/failed, started/completed for flaky
    for record in lines:
        text = record.getMessage()
        assert text.startswith(f"task={record.task_id} job={record.job} queue={record.queue} attempt={record.attempt} ")
    by_task = {(record.task_id, record.attempt, record.getMessage().split(" ", 4)[4]) for record in lines}
    assert (ok.pk, 1, "completed") in by_task
    assert (flaky.pk, 1, "failed (RuntimeError: failing on attempt 1), will retry") in by_task
    assert (flaky.pk, 2, "started") in by_task
    assert {record.job for record in lines} == {"tests.add", "tests.fail_until"}
    assert {record.queue for record in lines} == {"mail", "default"}


@pytest.mark.django_db
def test_cron_log_line_carries_the_task_fields(caplog):
    from django_jobs import scheduler
    from tests.factories import CronScheduleFactory

    caplog.set_level(logging.INFO, logger="django_jobs")
    schedule = CronScheduleFactory(job_name="tests.noop", expression="* * * * *")
    [task] = scheduler.tick(now=schedule.next_run)
    [record] = [r for r in caplog.records if r.name == "django_jobs.scheduler"]
    assert (record.task_id, record.job, record.queue, record.attempt) == (task.pk, "tests.noop", "default", 1)
    assert f"enqueued by cron schedule {schedule.name!r}" in record.getMessage()


@pytest.mark.django_db  # reading the registry runs the queue-depth collector
def test_metrics_hooks_do_nothing_when_unavailable(monkeypatch):
    monkeypatch.setattr(metrics, "AVAILABLE", False)
    task = ScheduledTask(identifier="tests.noop", queue="q", status="completed")
    before = sample("django_jobs_completed_total", job="tests.noop", queue="q")
    metrics.count_started(task)
    metrics.count_recorded([(task, Outcome(succeeded=True, duration=1.0))])
    metrics.count_enqueued([task])
    assert sample("django_jobs_completed_total", job="tests.noop", queue="q") == before


class JsonFormatter(logging.Formatter):
    """The README's example formatter, word for word."""

    FIELDS = ("task_id", "job", "queue", "attempt")

    def format(self, record):
        data = {"time": self.formatTime(record), "level": record.levelname,
                "logger": record.name, "message": record.getMessage()}
        data.update({key: getattr(record, key) for key in self.FIELDS if hasattr(record, key)})
        return json.dumps(data)


@pytest.mark.django_db
def test_the_readme_json_formatter_emits_the_task_fields(caplog):
    caplog.set_level(logging.INFO, logger="django_jobs")
    task = jobs.add.using(queue="mail").enqueue(1, 2)
    run_pending_jobs()
    [completed] = [record for record in caplog.records if record.getMessage().endswith(" completed")]
    line = json.loads(JsonFormatter().format(completed))
    assert line["message"] == f"task={task.pk} job=tests.add queue=mail attempt=1 completed"
    assert (line["task_id"], line["job"], line["queue"], line["attempt"]) == (task.pk, "tests.add", "mail", 1)
    assert line["logger"] == "django_jobs.executor" and line["level"] == "INFO"
