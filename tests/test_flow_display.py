"""Flow control as operators read it (``django_jobs.stats.flow``): why a pending task
waits, the limits a task is under, and the busiest keys. The tasks are held back by the
real claim, on the real database of the cell."""

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from django_jobs.db.flow import window_of
from django_jobs.models import FlowKey, ScheduledTask
from django_jobs.stats import flow
from django_jobs.worker import claiming
from tests.factories import ScheduledTaskFactory
from tests.testapp import jobs

pytestmark = pytest.mark.django_db

MAIL_LIMITS = {"QUEUE_LIMITS": {"mail": {"concurrency": 1, "rate": "2/h"}}}


def claim(now=None):
    return claiming.claim("w1", None, 100, now=now)


def pending(**filters):
    return ScheduledTask.objects.filter(status="pending", **filters).order_by("id")


def a_minute_in(seconds=5):
    """A time well inside a minute, so that a rate window does not turn during the test."""
    return timezone.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=1, seconds=seconds)


# -- why a task waits --------------------------------------------------------------------------
def test_a_task_whose_key_runs_its_limit_says_so():
    jobs.per_account.enqueue_many([((7,), {})] * 3 + [((8,), {})])
    assert len(claim()) == 3
    held = pending().get()
    assert flow.waiting_reason(held) == "waiting: concurrency account:7 (2/2)"


def test_a_task_whose_rate_window_is_full_says_so_with_the_starts_counted():
    now = a_minute_in()
    jobs.rated.enqueue_many([((n,), {}) for n in range(5)])
    assert len(claim(now)) == 3
    reasons = flow.waiting_reasons(pending(), now)
    assert set(reasons.values()) == {"waiting: rate tests.rated (3/3 this minute)"} and len(reasons) == 2
    # The next window starts empty: nothing holds them back any more.
    assert flow.waiting_reasons(pending(), now + dt.timedelta(minutes=1)) == {}


@override_settings(DJANGO_JOBS=MAIL_LIMITS)
def test_a_queue_limit_holds_every_task_of_the_queue_and_says_which():
    now = a_minute_in()
    jobs.noop.using(queue="mail").enqueue_many([((), {})] * 3)
    assert len(claim(now)) == 1
    assert set(flow.waiting_reasons(pending(), now).values()) == {"waiting: queue mail concurrency (1/1)"}
    ScheduledTask.objects.filter(status="running").update(status="completed")
    assert len(claim(now)) == 1
    assert set(flow.waiting_reasons(pending(), now).values()) == {
        "waiting: queue mail concurrency (1/1), queue mail rate (2/2 this hour)"}


def test_every_full_limit_is_named():
    now = a_minute_in()
    shared = jobs.per_account.using(rate="2/h", rate_key="stripe")
    shared.enqueue_many([((1,), {}), ((1,), {}), ((1,), {})])
    assert len(claim(now)) == 2
    assert flow.waiting_reason(pending().get(), now) == (
        "waiting: concurrency account:1 (2/2), rate stripe (2/2 this hour)")


def test_no_reason_while_every_limit_has_room_or_the_task_is_not_pending_and_due():
    jobs.per_account.enqueue_many([((7,), {})] * 3)
    running = claim()
    later = jobs.per_account.enqueue_in(dt.timedelta(hours=1), 7)
    other = jobs.per_account.enqueue(8)
    assert flow.waiting_reason(later) is None  # not due: its time holds it, not the limit
    assert flow.waiting_reason(other) is None  # account:8 runs 0 of 2
    assert flow.waiting_reason(running[0]) is None
    ScheduledTask.objects.filter(pk=running[0].pk).update(status="completed")
    assert flow.waiting_reason(pending(concurrency_key="account:7").first()) is None  # 1 of 2


def test_unlimited_tasks_cost_no_query(django_assert_num_queries):
    tasks = [ScheduledTaskFactory(), ScheduledTaskFactory(status="running")]
    with django_assert_num_queries(0):
        assert flow.waiting_reasons(tasks) == {}
        assert flow.limits_of(tasks) == {}


@override_settings(DJANGO_JOBS=MAIL_LIMITS)
def test_a_page_of_tasks_is_read_in_two_queries_whatever_its_size(django_assert_num_queries):
    now = a_minute_in()
    for account in range(10):
        jobs.per_account.using(rate="50/m", rate_key=f"api:{account % 3}").enqueue_many([((account,), {})] * 3)
    jobs.noop.using(queue="mail").enqueue_many([((), {})] * 3)
    claim(now)
    page = list(pending())
    with django_assert_num_queries(2):  # running counts, rate windows
        reasons = flow.waiting_reasons(page, now)
    assert len(reasons) == 12  # one of each account's three, two of mail's three
    assert reasons[page[0].pk] == "waiting: concurrency account:0 (2/2)"


def test_the_limits_of_a_task_show_their_use_now():
    now = a_minute_in()
    shared = jobs.per_account.using(rate="100/m", rate_key="stripe")
    shared.enqueue_many([((1,), {})] * 3)
    claim(now)
    task = pending().get()
    assert flow.limits_of([task], now)[task.pk] == [
        flow.Limit("concurrency", "account:1", 2, 2), flow.Limit("rate", "stripe", 100, 2, 60)]
    assert [limit.full for limit in flow.limits_of([task], now)[task.pk]] == [True, False]


def test_a_window_left_from_an_earlier_period_counts_no_start():
    now = a_minute_in()
    FlowKey.objects.create(kind="r", key="tests.rated", window=window_of(now, 60) - 1, started=3)
    task = jobs.rated.enqueue(1)
    assert flow.limits_of([task], now)[task.pk] == [flow.Limit("rate", "tests.rated", 3, 0, 60)]
    assert flow.waiting_reason(task, now) is None


# -- the busiest keys ----------------------------------------------------------------------------
@override_settings(DJANGO_JOBS=MAIL_LIMITS)
def test_the_busiest_keys_count_running_and_pending_tasks_of_each_key(django_assert_max_num_queries):
    jobs.per_account.enqueue_many([((7,), {})] * 5 + [((8,), {})])
    jobs.rated.enqueue_many([((n,), {}) for n in range(4)])
    jobs.noop.using(queue="mail").enqueue_many([((), {})] * 2)
    jobs.noop.enqueue_many([((), {})] * 9)  # unlimited: not a key
    claim()
    ScheduledTaskFactory(identifier="tests.per_account", status="completed", concurrency_key="account:8",
                         concurrency_limit=2)
    with django_assert_max_num_queries(3):
        busiest = flow.busiest_keys()
    assert [(busy.kind, busy.key, busy.running, busy.pending, busy.limit) for busy in busiest] == [
        ("concurrency", "account:7", 2, 3, "2 at once"),
        ("rate", "tests.rated", 3, 1, "3/m"),
        ("queue", "mail", 1, 1, "1 at once, 2/h"),
        ("concurrency", "account:8", 1, 0, "2 at once"),
    ]
    assert [busy.key for busy in flow.busiest_keys(limit=2)] == ["account:7", "tests.rated"]


def test_no_busy_key_without_limited_tasks():
    ScheduledTaskFactory()
    assert flow.busiest_keys() == []
