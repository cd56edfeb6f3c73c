"""``manage.py jobs`` (list, show, retry, cancel) and ``manage.py jobs_stats --watch``."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_jobs.models import ScheduledTask, Worker
from django_jobs.queues import pause_queue
from django_jobs.signals import job_cancelled
from django_jobs.worker import claiming
from tests.factories import ScheduledTaskFactory
from tests.helpers import capture_signal
from tests.testapp import jobs

pytestmark = pytest.mark.django_db


def run(*arguments: str, stdout: io.StringIO | None = None) -> str:
    out = stdout or io.StringIO()
    call_command(*arguments, stdout=out)
    return out.getvalue()


@pytest.fixture
def tasks():
    now = timezone.now()
    return {
        "done": ScheduledTaskFactory(identifier="tests.add", status="completed", args=[1, 2], result=3,
                                     started_at=now, executed_at=now),
        "broken": ScheduledTaskFactory(identifier="tests.always_fails", status="failed", queue="mail",
                                       error_message="ValueError: this job always fails\nsecond line",
                                       traceback="Traceback (most recent call last):\n  ...\nValueError: boom",
                                       failed_at=now, retry_count=2, max_retries=2),
        "waiting": ScheduledTaskFactory(identifier="tests.noop", queue="mail", scheduled_at=now + timedelta(hours=1)),
        "dropped": ScheduledTaskFactory(identifier="tests.noop", status="cancelled"),
    }


# -- jobs list -------------------------------------------------------------------------------
def test_list_shows_newest_first_as_a_table(tasks):
    lines = run("jobs", "list").splitlines()
    assert lines[0].split() == ["ID", "JOB", "QUEUE", "STATUS", "PRIORITY", "RETRIES", "NOT", "BEFORE", "UPDATED", "ERROR"]
    ids = [int(line.split()[0]) for line in lines[2:]]
    assert ids == sorted((task.pk for task in tasks.values()), reverse=True)
    broken = next(line for line in lines if line.split()[0] == str(tasks["broken"].pk))
    assert "ValueError: this job always fails" in broken and "second line" not in broken
    assert "2/2" in broken


def test_list_filters_and_limit(tasks):
    out = run("jobs", "list", "--status", "failed,cancelled", "--json")
    assert {row["id"] for row in json.loads(out)} == {tasks["broken"].pk, tasks["dropped"].pk}
    out = run("jobs", "list", "--queue", "mail", "--job", "tests.noop", "--json")
    assert [row["id"] for row in json.loads(out)] == [tasks["waiting"].pk]
    out = run("jobs", "list", "--limit", "2")
    assert len(out.splitlines()) == 2 + 2 + 1 and "(2 newest shown; --limit for more)" in out
    assert run("jobs", "list", "--job", "nothing.like.this") == "No tasks match.\n"


@pytest.mark.parametrize("arguments, message", [
    (("--status", "done"), "unknown status 'done'; choose from pending, running, completed, failed, cancelled"),
    (("--limit", "0"), "must be a whole number of at least 1, not '0'"),
])
def test_list_refuses_bad_filters(tasks, arguments, message):
    with pytest.raises(CommandError, match=message):
        run("jobs", "list", *arguments)


# -- jobs show ---------------------------------------------------------------------------------
def test_show_prints_every_field_json_sections_and_traceback(tasks):
    out = run("jobs", "show", str(tasks["broken"].pk))
    assert out.startswith(f"Task {tasks['broken'].pk}: tests.always_fails (failed, attempt 3)")
    for field in ScheduledTask._meta.concrete_fields:
        assert field.attname in out
    assert "traceback:\n  Traceback (most recent call last):" in out
    assert "attempt_log:\n  []" in out
    assert "error_message:\n  ValueError: this job always fails\n  second line" in out
    done = run("jobs", "show", str(tasks["done"].pk))
    assert "args:\n  [\n    1,\n    2\n  ]" in done and "result:\n  3" in done


def test_show_json_has_every_field(tasks):
    data = json.loads(run("jobs", "show", str(tasks["done"].pk), "--json"))
    assert {field.attname for field in ScheduledTask._meta.concrete_fields} <= set(data)
    assert (data["args"], data["result"], data["status"], data["retry_delay"], data["attempt"]) == ([1, 2], 3, "completed", 1.0, 1)


def test_show_unknown_id_is_a_clear_error():
    with pytest.raises(CommandError, match="No task with id 424242."):
        run("jobs", "show", "424242")


# -- why a pending task waits ---------------------------------------------------------------------
@pytest.fixture
def held_back():
    """Account 7 runs its 2 tasks at once: its third waits; account 8's does not."""
    jobs.per_account.enqueue_many([((7,), {})] * 3 + [((8,), {})])
    claiming.claim("w1", None, 3)
    return ScheduledTask.objects.get(status="pending", concurrency_key="account:7")


def test_list_says_why_a_pending_task_waits(held_back):
    lines = run("jobs", "list").splitlines()
    waiting = next(line for line in lines if line.split()[0] == str(held_back.pk))
    assert "pending, waiting: concurrency account:7 (2/2)" in waiting
    others = [line for line in lines[2:] if line.split()[0] != str(held_back.pk)]
    assert len(others) == 3 and not any("waiting" in line for line in others)
    rows = {row["id"]: row["waiting"] for row in json.loads(run("jobs", "list", "--json"))}
    assert rows.pop(held_back.pk) == "waiting: concurrency account:7 (2/2)"
    assert set(rows.values()) == {None}


def test_show_says_why_a_pending_task_waits_and_its_keys(held_back):
    out = run("jobs", "show", str(held_back.pk))
    assert out.startswith(f"Task {held_back.pk}: tests.per_account (pending, attempt 1; "
                          "waiting: concurrency account:7 (2/2))")
    assert re.search(r"^  concurrency_key +account:7$", out, re.MULTILINE)
    assert re.search(r"^  concurrency_limit +2$", out, re.MULTILINE)
    data = json.loads(run("jobs", "show", str(held_back.pk), "--json"))
    assert (data["waiting"], data["concurrency_key"], data["rate_key"]) == (
        "waiting: concurrency account:7 (2/2)", "account:7", None)


# -- jobs retry / cancel ---------------------------------------------------------------------------
def test_retry_changes_failed_and_cancelled_and_says_why_others_were_skipped(tasks):
    ids = [tasks["broken"].pk, tasks["dropped"].pk, tasks["done"].pk]
    out = run("jobs", "retry", *map(str, ids))
    assert out.strip() == (f"2 tasks retried: {ids[0]}, {ids[1]}. 1 skipped: {ids[2]} (completed). "
                           "Only failed or cancelled tasks can be retried.")
    statuses = dict(ScheduledTask.objects.filter(pk__in=ids).values_list("pk", "status"))
    assert statuses == {ids[0]: "pending", ids[1]: "pending", ids[2]: "completed"}
    tasks["broken"].refresh_from_db()
    assert (tasks["broken"].retry_count, tasks["broken"].error_message) == (0, "")


def test_retry_of_a_task_whose_unique_key_is_held_prints_why_and_exits_non_zero(tasks):
    blocked = ScheduledTaskFactory(status="failed", unique_key="k", error_message="boom")
    holder = ScheduledTaskFactory(unique_key="k", scheduled_at=timezone.now() + timedelta(hours=1))
    out = io.StringIO()
    with pytest.raises(CommandError, match=rf"1 task not retried: {blocked.pk}: its unique_key 'k' is held by "
                                            rf"active task {holder.pk} \(pending\)\.") as refused:
        run("jobs", "retry", str(blocked.pk), str(tasks["broken"].pk), stdout=out)
    assert refused.value.returncode == 1
    assert out.getvalue().strip() == (f"1 task retried: {tasks['broken'].pk}. 1 refused: {blocked.pk} (its unique_key "
                                      f"'k' is held by active task {holder.pk} (pending)). Nothing was changed for them.")
    assert ScheduledTask.objects.get(pk=blocked.pk).status == "failed"
    assert ScheduledTask.objects.get(pk=tasks["broken"].pk).status == "pending"


def test_cancel_sends_job_cancelled_for_each_task_it_cancelled(tasks, django_capture_on_commit_callbacks):
    with capture_signal(job_cancelled, pick=lambda task, **kwargs: task.pk) as received:
        with django_capture_on_commit_callbacks(execute=True):
            out = run("jobs", "cancel", str(tasks["waiting"].pk), str(tasks["done"].pk), "--json")
    assert json.loads(out) == {"action": "cancelled", "changed": [tasks["waiting"].pk],
                               "skipped": {str(tasks["done"].pk): "completed"},
                               "reason_skipped": "Only pending tasks can be cancelled"}
    assert received == [tasks["waiting"].pk]
    tasks["waiting"].refresh_from_db()
    assert tasks["waiting"].status == "cancelled"


def test_nothing_changes_when_an_id_is_unknown(tasks):
    with pytest.raises(CommandError, match="No task with id 999999, 999998; nothing was changed."):
        run("jobs", "cancel", str(tasks["waiting"].pk), "999999", "999998")
    tasks["waiting"].refresh_from_db()
    assert tasks["waiting"].status == "pending"


def test_retry_of_nothing_eligible(tasks):
    out = run("jobs", "retry", str(tasks["waiting"].pk))
    assert out.strip() == (f"0 tasks retried. 1 skipped: {tasks['waiting'].pk} (pending). "
                           "Only failed or cancelled tasks can be retried.")


def test_ids_must_be_numbers():
    with pytest.raises(CommandError, match="invalid int value: 'abc'"):
        run("jobs", "retry", "abc")


# -- jobs_stats --watch ------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def live_queue():
    now = timezone.now()
    ScheduledTaskFactory.create_batch(3, queue="reports", scheduled_at=now - timedelta(seconds=30))
    ScheduledTaskFactory(queue="reports", scheduled_at=now + timedelta(hours=2))
    ScheduledTaskFactory(queue="mail", status="running", worker_id="host:1:abc", started_at=now)
    ScheduledTaskFactory.create_batch(2, status="completed", executed_at=now - timedelta(seconds=10))
    ScheduledTaskFactory(status="completed", executed_at=now - timedelta(minutes=5))
    ScheduledTaskFactory(status="failed", failed_at=now - timedelta(seconds=5))
    Worker.objects.create(worker_id="host:1:abc", hostname="host", pid=1, queues="mail", concurrency=4)
    Worker.objects.create(worker_id="host:2:dead", hostname="host", pid=2, last_heartbeat=now - timedelta(hours=1))
    pause_queue("reports")
    pause_queue("idle")


def test_watch_prints_successive_frames_when_not_a_terminal(live_queue):
    out = run("jobs_stats", "--watch", "--iterations", "2", "--interval", "0.01")
    assert "\033[" not in out
    frames = out.split("django_jobs at ")[1:]
    assert len(frames) == 2
    frame = frames[0]
    status_line = frame.splitlines()[4].split()
    assert status_line == ["4", "1", "3", "1", "0"]   # pending running completed failed cancelled
    reports = next(line for line in frame.splitlines() if line.startswith("reports"))
    assert reports.split()[:4] == ["reports", "3", "1", "0"] and reports.endswith("paused")
    idle = next(line for line in frame.splitlines() if line.startswith("idle"))
    assert idle.split()[1:4] == ["0", "0", "0"] and idle.endswith("paused")
    mail = next(line for line in frame.splitlines() if line.startswith("mail"))
    assert not mail.endswith("paused")
    assert "Last minute: 2 completed, 1 with a failed attempt" in frame
    assert "Workers: 1 live" in frame and "host:1:abc" in frame and "host:2:dead" not in frame


def test_watch_shows_what_each_worker_holds_and_flags_one_that_does_not_progress(live_queue):
    Worker.objects.filter(worker_id="host:1:abc").update(holding=3, progressed_at=timezone.now() - timedelta(hours=1))
    Worker.objects.create(worker_id="host:3:idle", hostname="host", pid=3)
    frame = run("jobs_stats", "--watch", "--iterations", "1", "--interval", "0.01")
    hung = next(line for line in frame.splitlines() if line.startswith("host:1:abc"))
    assert hung.split()[-6:] == ["3", "60", "min", "ago", "NOT", "PROGRESSING"], hung
    idle = next(line for line in frame.splitlines() if line.startswith("host:3:idle"))
    assert idle.split()[-2:] == ["0", "idle"], idle
    data = json.loads(run("jobs_stats", "--watch", "--json", "--iterations", "1", "--interval", "0.01"))
    assert {worker["worker_id"]: (worker["holding"], worker["stalled"]) for worker in data["workers"]} == {
        "host:1:abc": (3, True), "host:3:idle": (0, False)}


def test_watch_clears_the_screen_on_a_terminal(live_queue):
    out = run("jobs_stats", "--watch", "--iterations", "3", "--interval", "0.01", stdout=Terminal())
    assert out.count("\033[H\033[2J") == 3


def test_watch_json_is_one_object_per_refresh(live_queue):
    lines = run("jobs_stats", "--watch", "--json", "--iterations", "2", "--interval", "0.01").splitlines()
    assert len(lines) == 2
    data = json.loads(lines[0])
    assert data["statuses"]["pending"] == 4
    assert {row["queue"]: (row["due"], row["scheduled"], row["running"], row["paused"]) for row in data["queues"]} == {
        "idle": (0, 0, 0, True), "mail": (0, 0, 1, False), "reports": (3, 1, 0, True)}
    assert [worker["worker_id"] for worker in data["workers"]] == ["host:1:abc"]
    assert data["last_minute"] == {"completed": 2, "failed": 1}


@pytest.mark.parametrize("arguments, message", [
    (("--interval", "0"), "--interval must be positive"),
    (("--iterations", "0"), "--iterations must be at least 1"),
])
def test_watch_refuses_bad_options(arguments, message):
    with pytest.raises(CommandError, match=message):
        run("jobs_stats", "--watch", *arguments)


def test_jobs_stats_without_watch_is_unchanged(live_queue):
    out = run("jobs_stats")
    assert out.startswith("Tasks: 9  pending=4  running=1  completed=3  failed=1  cancelled=0")
    assert json.loads(run("jobs_stats", "--json"))["pending"] == 4
