"""Operator numbers (``django_jobs.stats``): ``get_statistics()``, status counts exact and
capped, and the time series behind the dashboard."""

import datetime as dt
import json

import pytest
from django.core.management import call_command
from django.utils import timezone

import django_jobs
from django_jobs.stats import counts, history
from tests.factories import ScheduledTaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_jobs():
    now = timezone.now()
    for seconds in (1, 3):
        ScheduledTaskFactory(identifier="tests.add", status="completed", started_at=now,
                             executed_at=now + dt.timedelta(seconds=seconds))
    ScheduledTaskFactory(identifier="tests.add", status="failed")
    ScheduledTaskFactory(identifier="tests.noop", queue="mail", status="pending")
    ScheduledTaskFactory(identifier="tests.noop", queue="mail", status="cancelled")


def test_statistics_shape_and_values(two_jobs):
    stats = django_jobs.get_statistics()
    assert {k: stats[k] for k in ("pending", "running", "completed", "failed", "cancelled")} == {
        "pending": 1, "running": 0, "completed": 2, "failed": 1, "cancelled": 1}
    assert stats["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["average_duration_ms"] == pytest.approx(2000, abs=1)
    assert stats["by_job"]["tests.add"]["completed"] == 2
    assert stats["by_job"]["tests.noop"]["cancelled"] == 1
    assert stats["by_queue"]["mail"] == {"pending": 1, "running": 0, "completed": 0, "failed": 0, "cancelled": 1}


def test_statistics_in_the_seeds_words_split_pending_into_waiting_and_delayed(two_jobs):
    now = timezone.now()
    ScheduledTaskFactory(identifier="tests.noop", status="pending", scheduled_at=now + dt.timedelta(hours=1))
    ScheduledTaskFactory(identifier="tests.noop", status="pending", scheduled_at=now + dt.timedelta(days=2))
    ScheduledTaskFactory(identifier="tests.noop", status="running", started_at=now)
    stats = django_jobs.get_statistics()
    assert {key: stats[key] for key in ("waiting", "active", "completed", "failed", "delayed")} == {
        "waiting": 1, "active": 1, "completed": 2, "failed": 1, "delayed": 2}
    assert stats["pending"] == stats["waiting"] + stats["delayed"] == 3  # today's keys stay
    assert stats["failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert stats["success_rate"] + stats["failure_rate"] == pytest.approx(1)
    assert django_jobs.get_statistics(queue="reports")["failure_rate"] is None


def test_statistics_of_one_queue(two_jobs):
    stats = django_jobs.get_statistics(queue="mail")
    assert (stats["pending"], stats["completed"], stats["success_rate"], stats["average_duration_ms"]) == (1, 0, None, None)
    assert list(stats["by_queue"]) == ["mail"]


def test_empty_statistics():
    stats = django_jobs.get_statistics()
    assert stats["pending"] == 0 and stats["success_rate"] is None and stats["by_job"] == {}


def test_jobs_stats_command(two_jobs, capsys):
    call_command("jobs_stats")
    out = capsys.readouterr().out
    assert "completed=2" in out and "Success rate: 66.7%" in out and "tests.add" in out
    call_command("jobs_stats", "--json")
    data = json.loads(capsys.readouterr().out)
    assert data["failed"] == 1 and data["by_queue"]["mail"]["pending"] == 1


# -- status counts: exact, or up to a cap -------------------------------------------------------
def test_status_counts_are_exact_without_a_cap_and_stop_at_cap_plus_one_with_one():
    ScheduledTaskFactory.create_batch(5, status="completed")
    ScheduledTaskFactory.create_batch(2, status="failed")
    ScheduledTaskFactory(status="completed", queue="mail")
    exact = {"pending": 0, "running": 0, "completed": 6, "failed": 2, "cancelled": 0}
    assert counts.status_counts() == exact
    # Above the cap means "more than 3": the count stops at 4 whatever the true number.
    assert counts.status_counts(cap=3) == {**exact, "completed": 4}
    assert counts.status_counts(cap=10) == exact
    assert counts.status_counts(queue="mail") == counts.status_counts(queue="mail", cap=3) == {
        **dict.fromkeys(exact, 0), "completed": 1}


def test_get_statistics_counts_exactly_however_many_rows_a_status_has(two_jobs):
    ScheduledTaskFactory.create_batch(3, identifier="tests.add", status="completed")
    stats = django_jobs.get_statistics()
    assert stats["completed"] == counts.status_counts()["completed"] == 5
    assert counts.status_counts(cap=3)["completed"] == 4


# -- time series -------------------------------------------------------------------------------
def test_throughput_buckets_are_counted_in_the_database_on_every_backend():
    now = timezone.now().replace(second=30, microsecond=0)
    window = history.Window.ending_at(now, 1)
    for minutes_ago in (0, 0, 0, 10, 59):
        ScheduledTaskFactory(status="completed", executed_at=now - dt.timedelta(minutes=minutes_ago))
    ScheduledTaskFactory(status="pending", retry_count=1, failed_at=now - dt.timedelta(minutes=10))
    ScheduledTaskFactory(status="completed", executed_at=now - dt.timedelta(hours=2))  # outside the window
    buckets = history.throughput(window)
    assert len(buckets) == 60 and window.bucket == dt.timedelta(minutes=1)
    by_start = {bucket.start: (bucket.completed, bucket.failed) for bucket in buckets}
    minute = now.replace(second=0)
    assert by_start[minute] == (3, 0)
    assert by_start[minute - dt.timedelta(minutes=10)] == (1, 1)
    assert by_start[minute - dt.timedelta(minutes=59)] == (1, 0)
    assert sum(b.completed for b in buckets) == 5


def test_windows_align_to_whole_buckets():
    now = timezone.now().replace(hour=10, minute=7, second=42)
    window = history.Window.ending_at(now, 24)
    assert window.end == now.replace(minute=10, second=0, microsecond=0)
    assert window.start == window.end - dt.timedelta(hours=24)
    assert len(window.bucket_starts()) == 144
