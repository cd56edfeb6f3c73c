"""The operator admin, end to end, in headless Chromium (Playwright) against a live server.

An operator logs in, filters failed tasks, retries one and sees it completed after a
real worker pass, cancels a pending task, disables a schedule, and opens the
dashboard, whose chart must be drawn. Screenshots go to tests/artifacts/screenshots/.

Needs Debian's chromium (``scripts/install-browser``) and ``pip install playwright``;
``playwright install`` is never needed. Without them the test is skipped, saying which
is missing, unless DJANGO_JOBS_REQUIRE_BROWSER=1 (CI), which makes it fail instead.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from django_jobs.models import CronSchedule, PausedQueue, ScheduledTask, Worker
from tests.factories import CronScheduleFactory, ScheduledTaskFactory, WorkerFactory

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

CHROMIUM = os.environ.get("DJANGO_JOBS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"


def missing_browser() -> str | None:
    if sync_playwright is None:
        return "Playwright for Python is not installed: pip install playwright"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM}: run scripts/install-browser (apt-get install chromium)"
    return None


MISSING = missing_browser()
# CI sets DJANGO_JOBS_REQUIRE_BROWSER=1 so that a missing browser fails instead of skipping.
REQUIRED = os.environ.get("DJANGO_JOBS_REQUIRE_BROWSER") == "1"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING) and not REQUIRED, reason=MISSING or "")]


@pytest.fixture(scope="module")
def browser():
    if MISSING:
        pytest.fail(MISSING)
    # Playwright's sync API keeps an asyncio loop on this thread, and Django refuses
    # ORM calls from a thread with a loop. Nothing async runs our code here, so lift
    # that guard, for this module only.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def run_action(page, action: str, *pks: int) -> str:
    for pk in pks:
        page.check(f"input[name=_selected_action][value='{pk}']")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    return page.locator(".messagelist li").first.inner_text()


def task(created, **fields) -> ScheduledTask:
    """A task as a worker would have left it, enqueued at ``created``."""
    row = ScheduledTaskFactory(scheduled_at=created, **fields)
    ScheduledTask.objects.filter(pk=row.pk).update(created_at=created)
    row.refresh_from_db()
    return row


def seed_history(now) -> None:
    """Three hours of finished tasks, so the dashboard has something to draw."""
    for minute in range(0, 180, 2):
        finished = now - timedelta(minutes=minute)
        run_time = timedelta(milliseconds=120 + (minute * 37) % 900)
        task(finished - run_time, identifier="shop.send_receipt", queue="mail", status="completed",
             started_at=finished - run_time, executed_at=finished)
        if minute % 10 == 0:
            run_time = timedelta(seconds=8 + minute % 7)
            task(finished - run_time, identifier="shop.render_report", queue="reports", status="completed",
                 started_at=finished - run_time, executed_at=finished)
        if minute % 16 == 0:
            task(finished - timedelta(minutes=3), identifier="shop.charge_card", status="failed", retry_count=3,
                 max_retries=3, kwargs={"order_id": 1000 + minute}, started_at=finished - timedelta(seconds=2),
                 failed_at=finished, error_message="PaymentDeclined: card for order expired 2024-12")


@pytest.mark.django_db(transaction=True)
def test_operator_retries_cancels_disables_and_reads_the_dashboard(page, workers):
    now = timezone.now()
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    seed_history(now)
    broken = task(
        now - timedelta(minutes=9), identifier="tests.add", args=[2, 3], status="failed", retry_count=3,
        max_retries=3, started_at=now - timedelta(minutes=4, seconds=1), failed_at=now - timedelta(minutes=4),
        error_message="ConnectionError: upstream timed out",
        traceback='Traceback (most recent call last):\n  File "shop/jobs.py", line 12, in add\n'
                  "    return client.add(a, b)\nConnectionError: upstream timed out",
    )
    later = task(now, identifier="tests.noop", status="pending", description="weekly clean-up")
    ScheduledTask.objects.filter(pk=later.pk).update(scheduled_at=now + timedelta(hours=1))
    nightly = CronScheduleFactory(name="nightly-report", job_name="tests.noop", expression="30 2 * * *",
                                  timezone="Europe/Berlin")
    often = CronScheduleFactory(name="every-five-minutes", job_name="tests.noop", expression="*/5 * * * *")
    task(now - timedelta(minutes=5), identifier="tests.noop", status="completed", cron_schedule=often,
         cron_fire_time=now - timedelta(minutes=5), started_at=now - timedelta(minutes=5),
         executed_at=now - timedelta(minutes=4, seconds=59))

    log_in(page, "ops")

    # Filter failed tasks from the sidebar, retry the broken one.
    page.goto("/admin/django_jobs/scheduledtask/")
    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()
    expect(page).to_have_url(re.compile(r"status__exact=failed"))
    expect(page.locator(f"input[name=_selected_action][value='{broken.pk}']")).to_be_visible()
    shoot(page, "01-failed-tasks")
    message = run_action(page, "retry_tasks", broken.pk)
    assert message == "1 task retried."
    shoot(page, "02-after-retry")

    # A real worker pass runs it.
    workers.start("--burst", "--no-cron")
    assert workers.wait_all() == [0]
    page.goto(f"/admin/django_jobs/scheduledtask/{broken.pk}/change/")
    expect(page.locator(".field-overview .djj-badge").first).to_have_text("Completed")
    expect(page.locator(".field-result_json pre")).to_have_text("5")
    shoot(page, "03-retried-task-completed")

    # A running task shows its progress and its worker's heartbeat; a dead task its traceback.
    WorkerFactory(worker_id="web-1:4242", hostname="web-1", pid=4242, concurrency=4)
    importing = task(now - timedelta(seconds=50), identifier="shop.import_catalogue", status="running",
                     worker_id="web-1:4242", started_at=now - timedelta(seconds=40),
                     kwargs={"path": "catalogue.csv"}, progress={"done": 420, "total": 1000})
    page.goto(f"/admin/django_jobs/scheduledtask/{importing.pk}/change/")
    expect(page.locator(".djj-progress-label")).to_have_text("420 / 1000 (42%)")
    expect(page.locator(".field-overview .djj-worker-live")).to_be_visible()
    shoot(page, "04-running-task-progress")
    dead = ScheduledTask.objects.filter(identifier="shop.charge_card").first()
    dead.traceback = broken.traceback.replace("ConnectionError: upstream timed out", dead.error_message)
    dead.save()
    page.goto(f"/admin/django_jobs/scheduledtask/{dead.pk}/change/")
    expect(page.locator(".djj-traceback")).to_contain_text("Traceback (most recent call last)")
    shoot(page, "05-failed-task-detail")
    page.get_by_role("button", name="Retry now").click()  # the page's own button: back to the page
    expect(page.locator(".messagelist li").first).to_have_text("1 task retried.")
    expect(page).to_have_url(re.compile(rf"/scheduledtask/{dead.pk}/change/$"))
    expect(page.locator(".field-overview .djj-badge").first).to_have_text("Pending")

    # Cancel the pending task, from the list of its job's tasks.
    page.goto("/admin/django_jobs/scheduledtask/?identifier=tests.noop")
    message = run_action(page, "cancel_tasks", later.pk)
    assert message == "1 task cancelled."
    assert ScheduledTask.objects.get(pk=later.pk).status == "cancelled"
    expect(page.locator(f"tr:has(input[value='{later.pk}']) .djj-badge")).to_have_text("Cancelled")
    shoot(page, "06-after-cancel")

    # Disable a schedule; its page shows its next fire times in its own zone.
    page.goto(f"/admin/django_jobs/cronschedule/{nightly.pk}/change/")
    expect(page.locator(".djj-fire-times li")).to_have_count(5)
    expect(page.locator(".djj-fire-times li").first).to_contain_text("02:30 CE")
    shoot(page, "07-schedule-fire-times")
    page.goto("/admin/django_jobs/cronschedule/")
    message = run_action(page, "disable_schedules", nightly.pk)
    assert message == "1 schedule disabled."
    assert CronSchedule.objects.get(pk=nightly.pk).enabled is False
    shoot(page, "08-schedule-disabled")

    # The dashboard, from the app index: its chart is drawn.
    Worker.objects.filter(worker_id="web-1:4242").update(last_heartbeat=timezone.now())
    WorkerFactory(worker_id="web-2:977", hostname="web-2", pid=977, queues="mail,reports",
                  last_heartbeat=timezone.now() - timedelta(minutes=3))
    # Account 7 runs its two tasks at once (flow control): its third waits, and says why.
    account_7 = {"identifier": "shop.sync_account", "kwargs": {"account_id": 7}, "concurrency_key": "account:7",
                 "concurrency_limit": 2}
    for _ in range(2):
        task(now - timedelta(seconds=30), status="running", worker_id="web-1:4242",
             started_at=now - timedelta(seconds=20), **account_7)
    syncing = task(now - timedelta(seconds=30), **account_7)
    page.goto("/admin/django_jobs/")
    shoot(page, "09-app-index")
    page.get_by_role("link", name="Dashboard").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    chart = page.locator("svg.djj-chart")
    expect(chart).to_be_visible()
    assert chart.locator("rect.bar").count() > 20
    assert chart.locator("rect.djj-bar-failed").count() > 0
    assert chart.locator("path.djj-axis").count() == 1
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 150
    expect(page.locator(".djj-tile-failed .djj-tile-count")).to_have_text(
        str(ScheduledTask.objects.filter(status="failed").count()))
    expect(page.locator(".djj-worker-stale").first).to_be_visible()
    busy = page.locator(".djj-busy-keys tr[data-key='account:7'] td")
    expect(busy.nth(2)).to_have_text("2")  # running
    expect(busy.nth(3)).to_have_text("1")  # pending
    shoot(page, "10-dashboard")
    page.emulate_media(color_scheme="dark")
    expect(page.locator(".djj-tile-failed .djj-tile-count")).to_be_visible()
    shoot(page, "11-dashboard-dark")

    # From the busiest key to its tasks: the pending one says which limit holds it back.
    page.emulate_media(color_scheme="light")
    busy.first.get_by_role("link").click()
    expect(page.locator(".djj-waiting")).to_have_text("waiting: concurrency account:7 (2/2)")
    shoot(page, "13-waiting-for-a-concurrency-slot")
    page.goto(f"/admin/django_jobs/scheduledtask/{syncing.pk}/change/")
    expect(page.locator(".djj-flow-limits tr.djj-full td").nth(3)).to_have_text("2 running")
    shoot(page, "14-task-flow-limits")

    # Pause the mail queue from the dashboard, see it marked, resume it.
    ScheduledTaskFactory(identifier="shop.send_receipt", queue="mail")
    page.goto("/admin/django_jobs/scheduledtask/dashboard/")
    mail = page.locator("tr[data-queue='mail']")
    mail.get_by_role("button", name="Pause").click()
    expect(page.locator(".messagelist li").first).to_contain_text("Queue “mail” paused")
    expect(page.locator("tr[data-queue='mail'] .djj-queue-paused")).to_have_text("paused")
    assert PausedQueue.objects.filter(queue="mail").exists()
    page.fill(".djj-pause-form input[name=queue]", "reports")
    page.fill(".djj-pause-form input[name=reason]", "month-end freeze")
    page.locator(".djj-pause-form").get_by_role("button", name="Pause").click()
    expect(page.locator("tr[data-queue='reports'] .djj-queue-paused")).to_be_visible()
    shoot(page, "12-dashboard-paused-queues")
    page.locator("tr[data-queue='mail']").get_by_role("button", name="Resume").click()
    expect(page.locator(".messagelist li").first).to_have_text("Queue “mail” resumed.")
    expect(page.locator("tr[data-queue='mail'] .djj-queue-active")).to_be_visible()
    assert list(PausedQueue.objects.values_list("queue", flat=True)) == ["reports"]
