"""The operator admin through Django's test client: lists, actions and their
permissions, the task page, cron schedules and their owners, and the dashboard."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_jobs.admin import dashboard
from django_jobs.admin.charts import throughput_chart, y_scale
from django_jobs.admin.paginator import CappedCountPaginator
from django_jobs.models import CronSchedule, PausedQueue, ScheduledTask, Worker
from django_jobs.queues import pause_queue
from django_jobs.signals import job_cancelled
from django_jobs.stats import history
from django_jobs.worker import claiming
from tests.factories import CronScheduleFactory, ScheduledTaskFactory, WorkerFactory
from tests.helpers import capture_signal
from tests.testapp import jobs

pytestmark = pytest.mark.django_db

TASKS = reverse("admin:django_jobs_scheduledtask_changelist")
SCHEDULES = reverse("admin:django_jobs_cronschedule_changelist")
DASHBOARD = reverse("admin:django_jobs_dashboard")
PAUSE = reverse("admin:django_jobs_pause_queue")
RESUME = reverse("admin:django_jobs_resume_queue")


@pytest.fixture
def admin_client(client):
    """A logged-in superuser, without a password: hashing one is most of a test's time."""
    client.force_login(get_user_model().objects.create_superuser("admin", "admin@example.com", None))
    return client


def task_page(task) -> str:
    return reverse("admin:django_jobs_scheduledtask_change", args=[task.pk])


def schedule_page(schedule) -> str:
    return reverse("admin:django_jobs_cronschedule_change", args=[schedule.pk])


def staff(username: str, *codenames: str):
    user = get_user_model().objects.create_user(username, is_staff=True)  # no password: force_login, no hashing
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_jobs", codename__in=codenames))
    return user


def as_user(client, user):
    client.force_login(user)
    return client


def act(client, action: str, *tasks, url: str = TASKS, **extra):
    data = {"action": action, "index": 0, "_selected_action": [t.pk for t in tasks], **extra}
    return client.post(url, data, follow=True)


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def failed(**fields):
    return ScheduledTaskFactory(status="failed", retry_count=3, failed_at=timezone.now(),
                                error_message="ValueError: boom", **fields)


# -- the task list ------------------------------------------------------------------------

def test_list_shows_status_badges_attempts_duration_and_worker(admin_client):
    now = timezone.now()
    ScheduledTaskFactory(identifier="shop.report", status="completed", retry_count=1, max_retries=3,
                         started_at=now - timedelta(seconds=2, milliseconds=500), executed_at=now, worker_id="w-1")
    failed(identifier="shop.charge")
    response = admin_client.get(TASKS)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<span class="djj-badge djj-completed">Completed</span>' in html
    assert '<span class="djj-badge djj-failed">Failed</span>' in html
    assert ">1/3</span>" in html and "2.5 s" in html and "w-1" in html
    assert "ValueError: boom" in html  # the latest error under the job name


def test_list_filters_and_search(admin_client):
    failed(identifier="shop.charge", queue="payments")
    ScheduledTaskFactory(identifier="shop.mail", description="welcome mail")
    assert [t.identifier for t in admin_client.get(TASKS, {"status__exact": "failed"}).context["cl"].result_list] == [
        "shop.charge"]
    assert admin_client.get(TASKS, {"queue": "payments"}).context["cl"].result_count == 1
    assert admin_client.get(TASKS, {"identifier": "shop.mail"}).context["cl"].result_count == 1
    assert admin_client.get(TASKS, {"q": "boom"}).context["cl"].result_count == 1
    assert admin_client.get(TASKS, {"q": "welcome"}).context["cl"].result_count == 1


def test_queue_and_job_filters_offer_code_and_active_tasks_without_scanning_the_table(admin_client):
    ScheduledTaskFactory(identifier="gone.but_pending", queue="legacy")
    ScheduledTaskFactory(identifier="gone.long_ago", queue="old", status="completed")
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(TASKS)
    choices = {spec.title: {value for value, _ in spec.lookup_choices} for spec in response.context["cl"].filter_specs
               if hasattr(spec, "lookup_choices")}
    assert {"tests.add", "tests.noop", "gone.but_pending"} <= choices["job name"]
    assert "gone.long_ago" not in choices["job name"]
    assert {"default", "legacy"} <= choices["queue"] and "old" not in choices["queue"]
    distinct = [q["sql"] for q in captured.captured_queries if "DISTINCT" in q["sql"].upper()]
    assert distinct and all("pending" in sql for sql in distinct), distinct
    assert admin_client.get(TASKS, {"identifier": "gone.long_ago"}).context["cl"].result_count == 1


def list_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(TASKS).status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def many_tasks(count: int) -> None:
    statuses = ["pending", "running", "completed", "failed", "cancelled"]
    ScheduledTask.objects.bulk_create([
        ScheduledTask(identifier=f"job.{n % 7}", queue=f"q{n % 3}", status=statuses[n % 5], worker_id=f"w{n % 4}",
                      started_at=timezone.now() if n % 5 else None, progress={"done": n, "total": 200})
        for n in range(count)
    ])


def test_list_query_count_does_not_grow_with_rows(admin_client, django_assert_max_num_queries):
    many_tasks(10)
    small = len(list_queries(admin_client))
    many_tasks(190)
    with django_assert_max_num_queries(small):
        admin_client.get(TASKS)
    with django_assert_max_num_queries(small):
        admin_client.get(TASKS, {"status__exact": "running", "q": "job"})


def test_list_never_counts_the_whole_table(admin_client):
    many_tasks(30)
    counts = [sql for sql in list_queries(admin_client) if "COUNT(" in sql.upper()]
    assert counts, "the paginator counts (at most limit + 1 rows)"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_past_the_count_limit_the_list_says_more_than_and_pages_on(admin_client, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "limit", 250)  # at least list_max_show_all (200)
    many_tasks(330)
    first = admin_client.get(TASKS)
    assert "more than 250 scheduled tasks" in first.content.decode()
    assert "Select all matching scheduled tasks (more than 250)" in first.content.decode()
    last = admin_client.get(TASKS, {"p": 7})
    assert last.status_code == 200
    assert len(last.context["cl"].result_list) == 30  # rows 301-330 of 50 a page, past the limit


def test_paginator_counts_exactly_below_its_limit():
    many_tasks(12)
    paginator = CappedCountPaginator(ScheduledTask.objects.order_by("pk"), 5)
    assert (paginator.count, paginator.is_capped, paginator.num_pages) == (12, False, 3)
    assert len(paginator.page(3).object_list) == 2


# -- actions -------------------------------------------------------------------------------

def test_retry_reports_changed_and_skipped_with_reasons(admin_client):
    dead, cancelled = failed(), ScheduledTaskFactory(status="cancelled")
    pending, running = ScheduledTaskFactory(), ScheduledTaskFactory(status="running", worker_id="w")
    response = act(admin_client, "retry_tasks", dead, cancelled, pending, running)
    assert messages_of(response) == [
        "2 tasks retried, 2 skipped (1 pending and 1 running: only failed or cancelled tasks can be retried)."]
    dead.refresh_from_db()
    assert (dead.status, dead.retry_count, dead.error_message) == ("pending", 0, "")
    assert dead.scheduled_at <= timezone.now()
    assert ScheduledTask.objects.get(pk=running.pk).status == "running"


def test_retry_skips_a_task_whose_unique_key_another_active_task_holds_and_names_it(admin_client):
    blocked, free = failed(unique_key="k"), failed()
    holder = ScheduledTaskFactory(unique_key="k", scheduled_at=timezone.now() + timedelta(hours=1))
    response = act(admin_client, "retry_tasks", blocked, free)
    assert response.status_code == 200
    assert messages_of(response) == [
        f"1 task retried, 1 skipped (task {blocked.pk}: its unique_key 'k' is held by active task {holder.pk} "
        f"(pending))."]
    assert ScheduledTask.objects.get(pk=blocked.pk).status == "failed"
    assert ScheduledTask.objects.get(pk=free.pk).status == "pending"


def test_cancel_cancels_pending_tasks_and_sends_job_cancelled(admin_client, django_capture_on_commit_callbacks):
    waiting, done = ScheduledTaskFactory(), ScheduledTaskFactory(status="completed")
    with capture_signal(job_cancelled, pick=lambda task, **kw: task.pk) as received:
        with django_capture_on_commit_callbacks(execute=True):
            response = act(admin_client, "cancel_tasks", waiting, done)
    assert messages_of(response) == ["1 task cancelled, 1 skipped (1 completed: only pending tasks can be cancelled)."]
    assert ScheduledTask.objects.get(pk=waiting.pk).status == "cancelled"
    assert received == [waiting.pk]


def test_run_now_moves_pending_tasks_to_now(admin_client):
    later = ScheduledTaskFactory(scheduled_at=timezone.now() + timedelta(days=1))
    response = act(admin_client, "run_tasks_now", later, failed())
    assert messages_of(response) == ["1 task moved to now, 1 skipped (1 failed: only pending tasks can be run now)."]
    assert ScheduledTask.objects.get(pk=later.pk).scheduled_at <= timezone.now()


def test_an_action_with_nothing_to_change_warns(admin_client):
    response = act(admin_client, "cancel_tasks", failed())
    assert messages_of(response) == ["0 tasks cancelled, 1 skipped (1 failed: only pending tasks can be cancelled)."]


def action_names(client) -> set[str]:
    form = client.get(TASKS).context["action_form"]
    return set() if form is None else {value for value, _ in form.fields["action"].choices if value}


@pytest.mark.parametrize("codenames, allowed", [
    (("view_scheduledtask",), set()),
    (("view_scheduledtask", "retry_scheduledtask"), {"retry_tasks"}),
    (("view_scheduledtask", "cancel_scheduledtask"), {"cancel_tasks"}),
    (("view_scheduledtask", "change_scheduledtask"), {"run_tasks_now"}),
    (("view_scheduledtask", "change_scheduledtask", "delete_scheduledtask", "retry_scheduledtask",
      "cancel_scheduledtask"), {"retry_tasks", "cancel_tasks", "run_tasks_now", "delete_selected"}),
])
def test_each_action_needs_its_permission(client, codenames, allowed):
    assert action_names(as_user(client, staff("ops", *codenames))) == allowed


def test_a_user_without_the_retry_permission_cannot_retry_by_posting(client):
    dead = failed()
    response = act(as_user(client, staff("viewer", "view_scheduledtask", "change_scheduledtask")), "retry_tasks", dead)
    assert messages_of(response) == ["No action selected."]
    assert ScheduledTask.objects.get(pk=dead.pk).status == "failed"


def test_task_page_offers_the_buttons_its_status_and_the_user_allow(client):
    dead, waiting = failed(), ScheduledTaskFactory(scheduled_at=timezone.now() + timedelta(hours=1))
    operator = as_user(client, staff("op", "view_scheduledtask", "change_scheduledtask", "retry_scheduledtask",
                                     "cancel_scheduledtask", "see_all_scheduledtask"))
    assert [label for _, label in operator.get(task_page(dead)).context["djj_buttons"]] == ["Retry now"]
    assert [label for _, label in operator.get(task_page(waiting)).context["djj_buttons"]] == ["Run now", "Cancel"]
    viewer = as_user(client, staff("viewer", "view_scheduledtask", "see_all_scheduledtask"))
    assert viewer.get(task_page(dead)).context["djj_buttons"] == []


def test_a_button_on_the_task_page_comes_back_to_it(admin_client):
    dead = failed()
    response = act(admin_client, "retry_tasks", dead, _djj_next=task_page(dead))
    assert response.redirect_chain[-1][0] == task_page(dead)
    assert messages_of(response) == ["1 task retried."]
    elsewhere = act(admin_client, "retry_tasks", failed(), _djj_next="https://evil.example/")
    assert elsewhere.redirect_chain[-1][0] == TASKS


# -- the task page ------------------------------------------------------------------------------

def test_task_page_shows_json_error_traceback_progress_and_timeline(admin_client):
    now = timezone.now()
    schedule = CronScheduleFactory(name="nightly")
    task = ScheduledTaskFactory(
        status="running", worker_id="w-9", args=[1, {"nested": [2, 3]}], kwargs={"user": "ann"},
        progress={"done": 42, "total": 100}, retry_count=1, started_at=now, failed_at=now - timedelta(seconds=5),
        error_message="TimeoutError: slow upstream", traceback="Traceback (most recent call last):\n  File \"x.py\"",
        cron_schedule=schedule,
    )
    html = admin_client.get(task_page(task)).content.decode()
    assert '{\n    &quot;nested&quot;: [\n      2,\n      3\n    ]\n  }' in html
    assert '&quot;user&quot;: &quot;ann&quot;' in html
    assert "TimeoutError: slow upstream" in html
    assert "Traceback (most recent call last):" in html
    assert 'aria-valuenow="42"' in html and "42 / 100 (42%)" in html
    assert "Running 42%" in html
    assert "Attempt 1 failed, retry scheduled" in html and "Started attempt 2" in html
    assert f'href="{schedule_page(schedule)}"' in html
    assert "not registered" in html  # worker w-9 has no row: its task will be recovered


def test_completed_task_shows_its_result(admin_client):
    task = ScheduledTaskFactory(status="completed", result={"rows": 1200}, started_at=timezone.now(),
                                executed_at=timezone.now())
    html = admin_client.get(task_page(task)).content.decode()
    assert "&quot;rows&quot;: 1200" in html and "Completed" in html


def test_only_a_pending_task_is_editable_and_only_its_queueing_fields(admin_client):
    waiting, done = ScheduledTaskFactory(), ScheduledTaskFactory(status="completed")
    assert set(admin_client.get(task_page(waiting)).context["adminform"].form.fields) == {
        "queue", "priority", "scheduled_at", "description", "max_retries"}
    response = admin_client.get(task_page(done))
    assert response.context["adminform"].form.fields == {}
    assert response.context["show_save"] is False
    assert admin_client.get(reverse("admin:django_jobs_scheduledtask_add")).status_code == 403


def edit(client, task, **changes):
    when = timezone.localtime(task.scheduled_at)
    data = {"queue": task.queue, "priority": task.priority, "scheduled_at_0": when.strftime("%Y-%m-%d"),
            "scheduled_at_1": when.strftime("%H:%M:%S"), "description": task.description,
            "max_retries": task.max_retries, "_save": "Save", **changes}
    return client.post(task_page(task), data, follow=True)


def test_editing_a_pending_task_writes_only_what_changed(admin_client):
    waiting = ScheduledTaskFactory(queue="default", priority=0)
    edit(admin_client, waiting, queue="urgent", priority=50)
    waiting.refresh_from_db()
    assert (waiting.queue, waiting.priority, waiting.status) == ("urgent", 50, "pending")


@override_settings(DJANGO_JOBS={"QUEUES": ["default", "mail"]})
def test_editing_validates_queue_and_priority(admin_client):
    waiting = ScheduledTaskFactory()
    form = edit(admin_client, waiting, queue="nope", priority=500).context["adminform"].form
    assert "DJANGO_JOBS['QUEUES'] allows" in form.errors["queue"][0]
    assert "out of range" in form.errors["priority"][0]


def test_an_edit_loses_to_a_worker_that_claimed_the_task_meanwhile(admin_client, monkeypatch):
    from django_jobs.admin.tasks import ScheduledTaskAdmin

    waiting = ScheduledTaskFactory()
    original = ScheduledTaskAdmin.save_form

    def claimed_meanwhile(self, request, form, change):
        ScheduledTask.objects.filter(pk=waiting.pk).mark_running("w-1", timezone.now())
        return original(self, request, form, change)

    monkeypatch.setattr(ScheduledTaskAdmin, "save_form", claimed_meanwhile)
    response = edit(admin_client, waiting, queue="urgent")
    assert "Not saved: a worker took the task" in messages_of(response)[0]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.queue, waiting.worker_id) == ("running", "default", "w-1")


# -- cron schedules ----------------------------------------------------------------------------

SCHEDULE_CODENAMES = ("view_cronschedule", "add_cronschedule", "change_cronschedule", "delete_cronschedule")


def new_schedule(client, **fields):
    data = {"name": "report", "job_name": "tests.noop", "expression": "0 3 * * *", "timezone": "", "enabled": "on",
            "args": "[]", "kwargs": "{}", "queue": "default", "priority": 0, "description": "", "metadata": "{}", "overlap": "skip",
            "_save": "Save", **fields}
    return client.post(reverse("admin:django_jobs_cronschedule_add"), data, follow=True)


def test_a_new_schedule_belongs_to_its_creator(client):
    ann = staff("ann", *SCHEDULE_CODENAMES)
    new_schedule(as_user(client, ann))
    assert CronSchedule.objects.get(name="report").owner == ann


@pytest.mark.parametrize("fields, message", [
    ({"expression": "61 * * * *"}, "Invalid minute field '61'"),
    ({"expression": "@reboot"}, "@reboot"),
    ({"timezone": "Mars/Olympus"}, "Unknown time zone 'Mars/Olympus'"),
    ({"job_name": "nobody.knows"}, "No job named 'nobody.knows' is registered"),
    ({"job_name": "tests.add", "args": "[1]"}, "Arguments do not fit job 'tests.add'"),
])
def test_schedule_form_explains_what_is_wrong(admin_client, fields, message):
    response = new_schedule(admin_client, **fields)
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not CronSchedule.objects.exists()


def test_non_superusers_see_and_edit_only_their_own_schedules(client):
    ann, bob = staff("ann", *SCHEDULE_CODENAMES), staff("bob", *SCHEDULE_CODENAMES)
    mine = CronScheduleFactory(name="ann's", owner=ann)
    theirs = CronScheduleFactory(name="bob's", owner=bob)
    CronScheduleFactory(name="nobody's")
    as_user(client, ann)
    assert [s.name for s in client.get(SCHEDULES).context["cl"].result_list] == ["ann's"]
    assert client.get(schedule_page(mine)).status_code == 200
    assert client.get(schedule_page(theirs), follow=True).redirect_chain  # "doesn't exist", back to the index
    client.post(schedule_page(theirs), {"name": "hijacked"})
    assert CronSchedule.objects.get(pk=theirs.pk).name == "bob's"
    act(client, "disable_schedules", theirs, url=SCHEDULES)
    assert CronSchedule.objects.get(pk=theirs.pk).enabled is True
    assert "owner" not in client.get(schedule_page(mine)).context["adminform"].form.fields


def test_superusers_see_every_schedule(admin_client):
    CronScheduleFactory(name="a", owner=staff("ann")), CronScheduleFactory(name="b")
    assert admin_client.get(SCHEDULES).context["cl"].result_count == 2


def test_schedule_page_lists_the_next_five_fire_times_in_its_zone(admin_client):
    schedule = CronScheduleFactory(expression="30 2 * * *", timezone="Europe/Berlin")
    html = admin_client.get(schedule_page(schedule)).content.decode()
    fire_times = re.findall(r"<li>(\w{3} \d{4}-\d\d-\d\d \d\d:\d\d \w+) ", html)
    assert len(fire_times) == 5
    assert all(" 02:30 CE" in moment for moment in fire_times), fire_times


def test_enable_disable_and_run_now(admin_client):
    on, off = CronScheduleFactory(name="on"), CronScheduleFactory(name="off", enabled=False)
    assert messages_of(act(admin_client, "disable_schedules", on, off, url=SCHEDULES)) == [
        "1 schedule disabled, 1 skipped (already disabled)."]
    assert messages_of(act(admin_client, "enable_schedules", on, off, url=SCHEDULES)) == ["2 schedules enabled."]
    assert CronSchedule.objects.filter(enabled=True, next_run__isnull=False).count() == 2
    response = act(admin_client, "run_schedules_now", on, url=SCHEDULES)
    task = ScheduledTask.objects.get(cron_schedule=on)
    assert messages_of(response) == [f'1 task enqueued: <a href="{task_page(task)}">#{task.pk}</a>.']
    assert task.status == "pending" and task.cron_fire_time is None


def test_a_schedule_declared_in_code_can_only_be_switched_on_and_off(admin_client):
    declared = CronScheduleFactory(declared_in_code=True)
    fields = admin_client.get(schedule_page(declared)).context["adminform"].form.fields
    assert "enabled" in fields and "expression" not in fields and "job_name" not in fields


def test_schedule_list_shows_the_last_fired_task_without_a_query_per_row(admin_client, django_assert_max_num_queries):
    for n in range(3):
        schedule = CronScheduleFactory()
        ScheduledTaskFactory(cron_schedule=schedule, cron_fire_time=timezone.now() - timedelta(minutes=n),
                             status="failed")
    with CaptureQueriesContext(connection) as few:
        admin_client.get(SCHEDULES)
    CronScheduleFactory.create_batch(20)
    with django_assert_max_num_queries(len(few)):
        html = admin_client.get(SCHEDULES).content.decode()
    assert html.count("djj-badge djj-failed") == 3


# -- dashboard ------------------------------------------------------------------------------------

def busy_day(now):
    for minutes_ago, status in [(1, "completed"), (1, "completed"), (2, "failed"), (30, "completed")]:
        end = now - timedelta(minutes=minutes_ago)
        ScheduledTaskFactory(identifier="shop.receipt" if status == "completed" else "shop.charge", status=status,
                             started_at=end - timedelta(seconds=3), executed_at=end if status == "completed" else None,
                             failed_at=end if status == "failed" else None,
                             error_message="PaymentDeclined" if status == "failed" else "")
    ScheduledTaskFactory(queue="mail", scheduled_at=now - timedelta(minutes=5))
    ScheduledTaskFactory(queue="mail", scheduled_at=now + timedelta(hours=1))
    ScheduledTaskFactory(queue="mail", status="running", worker_id="web-1", started_at=now)
    Worker.objects.create(worker_id="web-1", hostname="web", pid=1, last_heartbeat=now)
    Worker.objects.create(worker_id="web-2", hostname="web", pid=2, last_heartbeat=now - timedelta(minutes=10))


def test_dashboard_draws_counts_queues_chart_jobs_and_workers(admin_client, django_assert_max_num_queries):
    busy_day(timezone.now())
    with django_assert_max_num_queries(20):
        response = admin_client.get(DASHBOARD)
    html = response.content.decode()
    assert response.status_code == 200
    assert re.search(r'<svg class="djj-chart"[^>]*role="img"', html)
    assert html.count('<rect class="bar djj-bar-completed"') == 2  # minutes 1 and 30
    assert html.count('<rect class="bar djj-bar-failed"') == 1
    assert "completed <strong>3</strong>" in html and "failed attempts <strong>1</strong>" in html
    tiles = {tile["status"]: tile["count"] for tile in response.context["status_tiles"]}
    assert tiles == {"pending": 2, "running": 1, "completed": 3, "failed": 1, "cancelled": 0}
    [mail] = response.context["queues"]
    assert (mail["queue"], mail["due"], mail["later"], mail["running"]) == ("mail", 1, 1, 1)
    assert mail["waiting_text"].startswith("5 min")
    assert [job["identifier"] for job in response.context["slowest"]] == ["shop.receipt"]
    assert response.context["slowest"][0]["average_text"] == "3.0 s"
    assert [(job["identifier"], job["failures"], job["error"]) for job in response.context["failing"]] == [
        ("shop.charge", 1, "PaymentDeclined")]
    assert {w.worker_id: (w.state, w.running) for w in response.context["workers"]} == {
        "web-1": ("live", 1), "web-2": ("stale", 0)}
    assert mail["paused"] is None and 'class="djj-small-button djj-pause"' in html
    running_on_web_1 = admin_client.get(TASKS, {"status__exact": "running", "worker_id": "web-1"})
    assert running_on_web_1.context["cl"].result_count == 1  # the worker's link in the dashboard


def test_dashboard_counts_stop_early_on_a_big_status(admin_client, monkeypatch):
    monkeypatch.setattr(dashboard, "COUNT_CAP", 3)
    ScheduledTaskFactory.create_batch(5, status="completed")
    ScheduledTaskFactory.create_batch(2, status="failed")
    tiles = {tile["status"]: tile["shown"] for tile in admin_client.get(DASHBOARD).context["status_tiles"]}
    assert (tiles["completed"], tiles["failed"]) == ("3+", "2")


def test_dashboard_window_and_refresh_choices(admin_client):
    html = admin_client.get(DASHBOARD, {"hours": 24, "refresh": 30}).content.decode()
    assert "per 10 minutes, last 24 h" in html and '<meta http-equiv="refresh" content="30">' in html
    assert "No task finished or failed in the last 24 h" in html
    assert admin_client.get(DASHBOARD, {"hours": "7", "refresh": "x"}).context["hours"] == history.DEFAULT_WINDOW


def test_dashboard_needs_the_view_permission_and_is_linked_from_the_app_index(client):
    assert as_user(client, staff("nobody")).get(DASHBOARD).status_code == 403
    viewer = as_user(client, staff("viewer", "view_scheduledtask"))
    assert viewer.get(DASHBOARD).status_code == 200
    assert f'href="{DASHBOARD}"' in viewer.get(reverse("admin:app_list", args=["django_jobs"])).content.decode()
    assert f'href="{DASHBOARD}"' in viewer.get(TASKS).content.decode()


def test_chart_scale_and_geometry():
    assert y_scale(0) == (1, [0, 1])
    assert y_scale(5) == (6, [0, 2, 4, 6])
    assert y_scale(73) == (80, [0, 20, 40, 60, 80])
    start = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    chart = throughput_chart([history.Bucket(start + timedelta(minutes=n), n, 1) for n in range(60)],
                             timedelta(minutes=1))
    assert len(chart.bars) == 60 and chart.peak == 60
    assert [value for _, value in chart.y_ticks] == [0, 20, 40, 60]
    tallest, middle = chart.bars[-1], chart.bars[29]  # 59 + 1, and 29 + 1 = half the scale
    assert tallest.failed_y == chart.top
    assert middle.failed_y == pytest.approx((chart.top + chart.baseline) / 2, abs=0.1)
    assert [label for _, label in chart.x_ticks] == ["12:00", "12:10", "12:20", "12:30", "12:40", "12:50"]


def test_worker_admin_marks_stale_workers(admin_client):
    WorkerFactory(worker_id="old", last_heartbeat=timezone.now() - timedelta(hours=1))
    html = admin_client.get(reverse("admin:django_jobs_worker_changelist")).content.decode()
    assert '<span class="djj-badge djj-worker-stale">stale</span>' in html


def test_worker_admin_and_dashboard_mark_a_worker_that_beats_but_does_not_progress(admin_client):
    now = timezone.now()
    Worker.objects.create(worker_id="hung", hostname="h", pid=1, last_heartbeat=now, holding=2,
                          progressed_at=now - timedelta(minutes=11))
    Worker.objects.create(worker_id="busy", hostname="h", pid=2, last_heartbeat=now, holding=2,
                          progressed_at=now - timedelta(minutes=9))
    Worker.objects.create(worker_id="idle", hostname="h", pid=3, last_heartbeat=now, holding=0,
                          progressed_at=now - timedelta(hours=2))
    html = admin_client.get(reverse("admin:django_jobs_worker_changelist")).content.decode()
    assert html.count('<span class="djj-badge djj-worker-stalled">stalled</span>') == 1
    assert html.count('<span class="djj-badge djj-worker-live">live</span>') == 2
    dashboard = admin_client.get(reverse("admin:django_jobs_dashboard")).content.decode()
    assert dashboard.count("djj-worker-stalled") == 1 and "no outcome written for 600 s" in dashboard


# -- pausing queues ----------------------------------------------------------------------

def test_dashboard_pauses_and_resumes_a_queue(admin_client):
    ScheduledTaskFactory(queue="mail")
    response = admin_client.post(PAUSE, {"queue": "mail", "reason": "SMTP down"}, follow=True)
    assert messages_of(response) == ["Queue “mail” paused: workers claim nothing from it until it is resumed."]
    paused = PausedQueue.objects.get(queue="mail")
    assert (paused.reason, paused.paused_by.username) == ("SMTP down", "admin")
    [mail] = response.context["queues"]
    assert mail["paused"] == paused and response.context["paused_count"] == 1
    html = response.content.decode()
    assert 'class="djj-badge djj-queue-paused"' in html and "djj-resume" in html

    response = admin_client.post(RESUME, {"queue": "mail"}, follow=True)
    assert messages_of(response) == ["Queue “mail” resumed."]
    assert not PausedQueue.objects.exists()
    assert messages_of(admin_client.post(RESUME, {"queue": "mail"}, follow=True)) == [
        "Queue “mail” was already running; nothing changed."]


def test_a_paused_queue_without_tasks_is_listed_and_bad_names_are_refused(admin_client):
    pause_queue("reports")
    [reports] = admin_client.get(DASHBOARD).context["queues"]
    assert (reports["queue"], reports["due"], reports["paused"].queue) == ("reports", 0, "reports")
    response = admin_client.post(PAUSE, {"queue": ""}, follow=True)
    assert messages_of(response)[0].startswith("Could not pause queue: queue must be a non-empty string")
    assert admin_client.get(PAUSE).status_code == 405


def test_pausing_and_resuming_need_their_own_permissions(client):
    pauser = as_user(client, staff("pauser", "view_scheduledtask", "add_pausedqueue"))
    html = pauser.get(DASHBOARD).content.decode()
    assert "djj-pause" in html
    assert pauser.post(PAUSE, {"queue": "mail"}).status_code == 302
    assert "djj-resume" not in pauser.get(DASHBOARD).content.decode()
    assert pauser.post(RESUME, {"queue": "mail"}).status_code == 403
    assert PausedQueue.objects.filter(queue="mail").exists()
    viewer = as_user(client, staff("viewer", "view_scheduledtask"))
    assert "djj-pause" not in viewer.get(DASHBOARD).content.decode()
    assert viewer.post(PAUSE, {"queue": "other"}).status_code == 403


def test_the_paused_queue_admin_pauses_on_add_and_resumes_on_delete(admin_client):
    add = reverse("admin:django_jobs_pausedqueue_add")
    assert admin_client.post(add, {"queue": "mail", "reason": "maintenance"}).status_code == 302
    paused = PausedQueue.objects.get(queue="mail")
    assert paused.paused_by.username == "admin"
    changelist = reverse("admin:django_jobs_pausedqueue_changelist")
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [paused.pk], "post": "yes"})
    assert not PausedQueue.objects.exists()


def test_task_page_timeline_shows_every_failed_attempt(admin_client):
    start = timezone.now() - timedelta(minutes=10)
    log = [{"attempt": n, "worker_id": f"w-{n}", "started_at": (start + timedelta(minutes=n)).isoformat(),
            "finished_at": (start + timedelta(minutes=n, seconds=5)).isoformat(), "error": f"ValueError: try {n}",
            "exception_class": "builtins.ValueError", "traceback": ""} for n in (1, 2)]
    task = ScheduledTaskFactory(status="completed", retry_count=2, attempt_log=log, worker_id="w-3",
                                started_at=start + timedelta(minutes=3), executed_at=start + timedelta(minutes=4))
    html = admin_client.get(task_page(task)).content.decode()
    html = html[html.index('<ol class="djj-timeline">'):]
    order = ["Started attempt 1 on w-1", "Attempt 1 failed: ValueError: try 1", "Started attempt 2 on w-2",
             "Attempt 2 failed: ValueError: try 2", "Started attempt 3", "Completed"]
    positions = [html.index(label) for label in order]
    assert positions == sorted(positions)
    assert "not shown" not in html


def test_the_schedule_page_shows_overlap_skips_and_waiting_fires(admin_client):
    new_schedule(admin_client, overlap="queue")
    schedule = CronSchedule.objects.get(name="report")
    assert schedule.overlap == "queue"
    CronSchedule.objects.filter(pk=schedule.pk).update(
        skipped_fires=3, waiting_fires=["2026-12-05T03:00:00+00:00", "2026-12-06T03:00:00+00:00"])
    listing = admin_client.get(reverse("admin:django_jobs_cronschedule_changelist")).content.decode()
    assert "overlap: queue, 3 skipped, 2 waiting" in listing
    page = admin_client.get(reverse("admin:django_jobs_cronschedule_change", args=[schedule.pk])).content.decode()
    assert "skipped fires" in page.lower() and "waiting fires" in page.lower()


def test_run_now_on_a_busy_schedule_says_why_and_enqueues_nothing(admin_client):
    new_schedule(admin_client)
    schedule = CronSchedule.objects.get(name="report")
    first = schedule.run_now()
    response = admin_client.post(reverse("admin:django_jobs_cronschedule_changelist"),
                                 {"action": "run_schedules_now", "_selected_action": [schedule.pk]}, follow=True)
    assert f"task {first.pk} (pending) is still pending or running" in response.content.decode()
    assert ScheduledTask.objects.filter(cron_schedule=schedule).count() == 1


# -- flow control ---------------------------------------------------------------------------------

def held_back(accounts=range(1)) -> list[ScheduledTask]:
    """Three tasks for each of ``accounts`` under a concurrency of 2, claimed: one of each waits."""
    jobs.per_account.enqueue_many([((account,), {}) for account in accounts for _ in range(3)])
    claiming.claim("w1", None, 100)
    return list(ScheduledTask.objects.filter(status="pending").order_by("id"))


def test_the_list_says_why_pending_tasks_wait_without_a_query_per_row(admin_client, django_assert_max_num_queries):
    held_back()
    few = len(list_queries(admin_client))
    waiting = held_back(range(1, 10))
    html = admin_client.get(TASKS).content.decode()
    assert '<div class="djj-waiting">waiting: concurrency account:9 (2/2)</div>' in html
    assert html.count('class="djj-waiting"') == len(waiting) == 10
    with django_assert_max_num_queries(few):
        admin_client.get(TASKS)


def test_the_task_page_shows_its_limits_their_use_and_why_it_waits(admin_client):
    [waiting] = held_back()
    html = admin_client.get(task_page(waiting)).content.decode()
    assert '<div class="djj-waiting">waiting: concurrency account:0 (2/2)</div>' in html
    assert ">Flow control<" in html
    assert ('<tr class="djj-full"><td>concurrency</td><td><code>account:0</code></td><td>2 at once</td>'
            "<td>2 running</td></tr>") in html
    plain = admin_client.get(task_page(ScheduledTaskFactory())).content.decode()
    assert "Flow control" not in plain and "djj-waiting" not in plain


@override_settings(DJANGO_JOBS={"QUEUE_LIMITS": {"mail": {"rate": "10/s"}}})
def test_the_task_page_shows_the_limits_of_its_queue(admin_client):
    task = ScheduledTaskFactory(queue="mail")
    html = admin_client.get(task_page(task)).content.decode()
    assert "<td>queue rate</td><td><code>mail</code></td><td>10/s</td><td>0 started this second</td>" in html


def test_the_dashboard_lists_the_busiest_keys_and_links_to_their_tasks(admin_client):
    assert "No pending or running task is under a concurrency or rate limit." in admin_client.get(
        DASHBOARD).content.decode()
    held_back(range(2))
    jobs.per_account.enqueue(1)
    response = admin_client.get(DASHBOARD)
    html = response.content.decode()
    assert "<h2>Busiest keys</h2>" in html
    assert [(row["kind"], row["key"], row["running"], row["pending"], row["limit"])
            for row in response.context["busy_keys"]] == [
        ("concurrency", "account:1", 2, 2, "2 at once"), ("concurrency", "account:0", 2, 1, "2 at once")]
    assert f'href="{TASKS}?concurrency_key=account%3A1"' in html
    assert admin_client.get(TASKS, {"concurrency_key": "account:1"}).context["cl"].result_count == 4
