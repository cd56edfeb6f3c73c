"""Flow control: limits declared, checked, stored with each task and kept by the claim.

The claim runs on the real database of the cell (PostgreSQL, MariaDB or SQLite); the
worker-process tests with several workers and kill -9 are in tests/workers/test_flow.py.
"""

import dataclasses
import datetime as dt
from collections import Counter

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from django.utils import timezone

import django_jobs
from django_jobs import job
from django_jobs.exceptions import InvalidJobOption, JobArgumentsError
from django_jobs.limits import Rate, queue_limits, rate
from django_jobs.models import FlowKey, ScheduledTask
from django_jobs.registry import registry
from django_jobs.stats.flow import waiting_reason
from django_jobs.worker import claiming
from tests.testapp import jobs

pytestmark = pytest.mark.django_db


def claim(limit=100, worker="w1", now=None, flow=None, queues=None):
    return claiming.claim(worker, queues, limit, now=now or timezone.now(), flow=flow or claiming.new_flow())


def finish(tasks):
    ScheduledTask.objects.filter(pk__in=[task.pk for task in tasks]).update(status="completed")


# -- declaring limits ----------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {"concurrency": 0}, {"concurrency": -1}, {"concurrency": "2"}, {"concurrency": True}, {"concurrency": 2.5},
    {"rate": "fast"}, {"rate": "0/s"}, {"rate": "-1/m"}, {"rate": "10/d"}, {"rate": 10}, {"rate": "1.5/s"},
    {"concurrency_key": ""}, {"concurrency_key": 7},
])
def test_bad_limits_are_refused_at_declaration_and_at_enqueue(options):
    with pytest.raises((InvalidJobOption, ImproperlyConfigured)):
        job(name="tests.bad_limits", **options)(lambda account_id: None)
    with pytest.raises(InvalidJobOption):
        jobs.add.using(**options)
    with pytest.raises(InvalidJobOption):
        django_jobs.enqueue("tests.add", [1, 2], **options)
    assert ScheduledTask.objects.count() == 0


def test_a_key_template_may_name_only_parameters_of_the_job():
    with pytest.raises(ImproperlyConfigured, match="accountid.*not a parameter"):
        job(name="tests.bad_key", concurrency=1, concurrency_key="a:{accountid}")(lambda account_id: None)
    with pytest.raises(InvalidJobOption, match="not a parameter"):
        jobs.per_account.using(concurrency_key="{nope}")
    with pytest.raises(InvalidJobOption, match="name each argument"):
        job(name="tests.bad_key", concurrency=1, concurrency_key="a:{0}")(lambda account_id: None)


def test_a_key_without_its_limit_is_refused():
    with pytest.raises(ImproperlyConfigured, match="no concurrency"):
        job(name="tests.keyless", concurrency_key="a")(lambda: None)
    with pytest.raises(InvalidJobOption, match="no rate"):
        jobs.add.using(rate_key="x")


@pytest.mark.parametrize("value", [None, [], "mail", {"mail": {}}, {"mail": {"concurrency": 0}},
                                   {"mail": {"rate": "fast"}}, {"mail": {"speed": 3}}, {"": {"concurrency": 1}}])
def test_bad_queue_limits_are_refused(value):
    if value is None:
        assert queue_limits(value) == {}
        return
    with pytest.raises(InvalidJobOption):
        queue_limits(value)


def test_rates_read_as_limit_per_period():
    assert str(Rate(100, 60)) == "100/m"
    assert jobs.rated.rate == Rate(3, 60)
    assert rate("10/s") == Rate(10, 1) and rate(" 5 / hour ") == Rate(5, 3600)


# -- keys filled at enqueue -------------------------------------------------------------------
def test_keys_are_filled_from_the_call_positional_arguments_by_name():
    task = jobs.per_account.enqueue(7, label="x")
    task.refresh_from_db()
    # The limit as declared: NULL, the worker applies what its code declares (2 here).
    assert (task.concurrency_key, task.concurrency_limit, task.flow_key) == ("account:7", None, "account:7")
    assert (task.rate_key, task.rate_limit, task.rate_period) == (None, None, None)
    other = jobs.per_account.enqueue(account_id=8)
    other.refresh_from_db()
    assert other.concurrency_key == "account:8"


def test_a_job_without_a_key_has_one_limit_for_the_whole_job():
    task = jobs.rated.enqueue(1)
    task.refresh_from_db()
    assert (task.rate_key, task.rate_limit, task.rate_period, task.flow_key) == ("tests.rated", None, None, "tests.rated")


def test_using_and_enqueue_options_override_the_declared_limits():
    task = jobs.per_account.using(concurrency_key="account:7", rate="100/m", rate_key="stripe:eu").enqueue(7)
    task.refresh_from_db()
    assert (task.concurrency_key, task.rate_key, task.rate_limit, task.rate_period) == ("account:7", "stripe:eu", 100, 60)
    task = django_jobs.enqueue("tests.add", [1, 2], concurrency=5, concurrency_key="sum:{a}")
    task.refresh_from_db()
    assert (task.concurrency_key, task.concurrency_limit) == ("sum:1", 5)


def test_a_limit_changed_in_code_holds_for_waiting_tasks_from_the_next_worker_start(monkeypatch):
    jobs.per_account.enqueue_many([((1,), {})] * 4)
    own = jobs.per_account.using(concurrency=1).enqueue(2)  # a limit of its own, stored with it
    jobs.per_account.using(concurrency=1).enqueue(2)
    assert ScheduledTask.objects.get(pk=own.pk).concurrency_limit == 1
    # A worker of today's code: account 1 at 2 at once, account 2 at its own 1.
    assert len(claim(flow=claiming.new_flow())) == 3
    finish(ScheduledTask.objects.filter(status="running"))
    # The code now declares concurrency=3 (a deploy): workers started after it read it.
    monkeypatch.setitem(registry._jobs, "tests.per_account", dataclasses.replace(jobs.per_account, concurrency=3))
    after = claiming.new_flow()
    by_key = Counter(task.concurrency_key for task in claim(flow=after))
    assert by_key == {"account:1": 2, "account:2": 1}  # the 2 left of account 1 (of 3 allowed); account 2: its own 1
    assert ScheduledTask.objects.filter(status="running", concurrency_key="account:1").count() == 2
    registry.get("tests.per_account").enqueue_many([((1,), {})] * 2)  # the new code's job
    assert [task.concurrency_key for task in claim(flow=after)] == ["account:1"]  # 3 at once now
    # What admin and the API show follows the code too.
    waiting = ScheduledTask.objects.get(status="pending", concurrency_key="account:1")
    assert waiting_reason(waiting) == "waiting: concurrency account:1 (3/3)"


def test_a_template_the_call_cannot_fill_is_an_error_and_nothing_is_written():
    keyed = jobs.noop.using(concurrency=1, concurrency_key="customer:{customer}")
    with pytest.raises(JobArgumentsError, match="customer"):
        keyed.enqueue(other=1)
    with pytest.raises(JobArgumentsError, match="item 1.*customer"):
        django_jobs.enqueue_many([keyed.s(customer=1), keyed.s(other=2)])
    with pytest.raises(JobArgumentsError, match="customer"):
        keyed.enqueue_many([((), {"customer": 1}), ((), {})])
    assert ScheduledTask.objects.count() == 0
    assert keyed.enqueue(customer=3).concurrency_key == "customer:3"


def test_enqueue_many_fills_each_rows_own_keys():
    tasks = jobs.per_account.enqueue_many([((n % 3,), {}) for n in range(9)])
    assert len(tasks) == 9
    stored = ScheduledTask.objects.order_by("id").values_list("concurrency_key", "args")
    assert [key for key, _ in stored] == [f"account:{n % 3}" for n in range(9)]
    mixed = django_jobs.enqueue_many([jobs.per_account.s(5), jobs.add.s(1, 2), jobs.rated.s(4)])
    keys = ScheduledTask.objects.filter(pk__in=[task.pk for task in mixed]).order_by("id")
    assert [(t.concurrency_key, t.rate_key) for t in keys] == [("account:5", None), (None, None), (None, "tests.rated")]


# -- the claim keeps the limits ---------------------------------------------------------------
def test_the_claim_takes_no_more_than_the_concurrency_limit_of_a_key_across_workers():
    jobs.per_account.enqueue_many([((7,), {})] * 5)
    first = claim(worker="w1")
    assert len(first) == 2
    assert claim(worker="w2") == []
    held = ScheduledTask.objects.filter(status="pending")
    assert held.count() == 3 and set(held.values_list("retry_count", flat=True)) == {0}
    finish(first[:1])
    assert len(claim(worker="w2")) == 1
    assert claim(worker="w3") == []


def test_a_saturated_key_does_not_hold_back_other_keys_or_unlimited_tasks():
    jobs.per_account.enqueue_many([((1,), {})] * 300)
    jobs.per_account.enqueue_many([((2,), {}), ((3,), {})])
    jobs.noop.enqueue_many([((), {})] * 3)
    # The best-ranked due tasks are all account 1's: the claim must look past them.
    ScheduledTask.objects.filter(concurrency_key="account:1").update(priority=50)
    claimed = claim(limit=100)
    by_key = {}
    for task in claimed:
        by_key[task.concurrency_key] = by_key.get(task.concurrency_key, 0) + 1
    assert by_key == {"account:1": 2, "account:2": 1, "account:3": 1, None: 3}
    assert claim(limit=100) == []


def test_limits_on_two_keys_of_one_task_both_hold():
    shared = jobs.per_account.using(rate="3/h", rate_key="stripe")
    shared.enqueue_many([((account,), {}) for account in (1, 1, 1, 2, 2, 3)])
    claimed = claim()
    assert len(claimed) == 3  # the rate key's 3 starts, not the 5 the concurrency keys allow
    assert sorted(task.concurrency_key for task in claimed) == ["account:1", "account:1", "account:2"]


def test_a_rate_counts_starts_in_a_fixed_window():
    jobs.rated.enqueue_many([((n,), {}) for n in range(10)])
    start = timezone.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    flow = claiming.new_flow()
    assert len(claim(now=start + dt.timedelta(seconds=5), flow=flow)) == 3
    assert claim(now=start + dt.timedelta(seconds=59), flow=flow) == []
    assert len(claim(now=start + dt.timedelta(seconds=60), flow=flow)) == 3
    window = FlowKey.objects.get(kind="r", key="tests.rated")
    assert (window.window, window.started) == (int((start + dt.timedelta(minutes=1)).timestamp()) // 60, 3)
    # A claim whose clock reads earlier (another host's) does not reopen the earlier window.
    assert claim(now=start + dt.timedelta(seconds=59), flow=flow) == []
    assert claim(now=start + dt.timedelta(seconds=61), flow=flow) == []
    assert len(claim(now=start + dt.timedelta(seconds=120), flow=flow)) == 3
    assert FlowKey.objects.get(kind="r", key="tests.rated").started == 3


@override_settings(DJANGO_JOBS={"QUEUE_LIMITS": {"mail": {"concurrency": 2}, "sms": {"rate": "2/h"}}})
def test_queue_limits_hold_for_the_whole_queue():
    jobs.noop.using(queue="mail").enqueue_many([((), {})] * 5)
    jobs.per_account.using(queue="mail").enqueue_many([((n,), {}) for n in range(3)])
    jobs.noop.using(queue="sms").enqueue_many([((), {})] * 5)
    jobs.noop.enqueue_many([((), {})] * 4)
    claimed = claim()
    queues = sorted(task.queue for task in claimed)
    assert queues == ["default"] * 4 + ["mail"] * 2 + ["sms"] * 2
    assert claim() == []
    finish([task for task in claimed if task.queue == "mail"])
    assert sorted(task.queue for task in claim()) == ["mail", "mail"]


def test_a_killed_workers_slots_come_back_with_its_lease():
    from django_jobs.worker import recover_lost_tasks

    jobs.per_account.enqueue_many([((7,), {})] * 3)
    ScheduledTask.objects.update(scheduled_at=timezone.now() - dt.timedelta(minutes=10))
    lost = claim(worker="dead-worker", now=timezone.now() - dt.timedelta(minutes=5))
    assert len(lost) == 2
    assert claim(worker="w2") == []
    recover_lost_tasks()  # no Worker row: its lease is gone
    assert ScheduledTask.objects.filter(status="running").count() == 0
    again = claim(worker="w2")
    assert len(again) == 2
    assert ScheduledTask.objects.filter(status="failed").count() == 0


def test_limited_tasks_of_paused_and_unserved_queues_are_not_claimed():
    jobs.per_account.using(queue="other").enqueue_many([((1,), {})])
    jobs.per_account.enqueue_many([((2,), {})])
    assert [task.queue for task in claim(queues=["default"])] == ["default"]
    django_jobs.pause_queue("other")
    assert claim() == []


def test_the_round_of_keys_reaches_every_key_when_there_are_more_keys_than_a_batch():
    jobs.per_account.enqueue_many([((n,), {}) for n in range(25)])
    flow = claiming.new_flow()
    seen = set()
    for _ in range(5):
        tasks = claim(limit=10, flow=flow)
        seen |= {task.concurrency_key for task in tasks}
        finish(tasks)
    assert seen == {f"account:{n}" for n in range(25)}


def test_a_claim_goes_past_a_page_of_keys_at_their_limits_to_the_keys_after_it():
    # 25 keys at concurrency 2, each with 3 tasks; a claim of 10 reads 10 keys a page.
    jobs.per_account.enqueue_many([((n,), {}) for n in range(25) for _ in range(3)])
    # Two new workers' first claims: one task of each of the first 10 keys each.
    first = claim(limit=10, flow=claiming.new_flow()) + claim(limit=10, flow=claiming.new_flow())
    full = {task.concurrency_key for task in first}
    assert len(first) == 20 and len(full) == 10
    # A third worker's first page holds only those keys, at their limits now: its claim
    # must go on to the keys after them, not come back empty.
    flow = claiming.new_flow()
    third = claim(limit=10, flow=flow)
    assert len(third) == 10 and full.isdisjoint({task.concurrency_key for task in third})
    assert flow.held_back  # it passed keys whose due tasks wait


def test_held_back_says_whether_due_tasks_were_left_behind():
    flow = claiming.new_flow()
    jobs.per_account.enqueue_many([((1,), {})] * 3)
    assert len(claim(flow=flow)) == 2 and flow.held_back
    assert claim(flow=flow) == [] and flow.held_back
    ScheduledTask.objects.filter(status="pending").delete()
    assert claim(flow=flow) == [] and not flow.held_back


def test_a_flow_key_row_pruned_under_a_worker_is_inserted_again():
    flow = claiming.new_flow()
    jobs.per_account.enqueue(1)
    finish(claim(flow=flow))
    FlowKey.objects.all().delete()
    jobs.per_account.enqueue(1)
    assert len(claim(flow=flow)) == 1  # the key it thought existed was gone: inserted again, then claimed
    assert FlowKey.objects.filter(key="account:1").exists()


def test_retention_prunes_flow_keys_no_task_needs_and_the_claim_brings_them_back():
    from django_jobs.retention import prune_flow_keys

    jobs.per_account.enqueue_many([((1,), {}), ((2,), {})])
    jobs.rated.enqueue(1)
    claimed = claim()
    finish([task for task in claimed if task.concurrency_key == "account:1"])
    # Each lane's rows of both kinds (a lane is a concurrency key or a rate key).
    assert FlowKey.objects.count() == 6
    later = timezone.now() + dt.timedelta(hours=2)
    assert prune_flow_keys(timezone.now()) == 0  # used just now: a rate window may be open
    assert prune_flow_keys(later) == 4  # account:2 still runs a task: its keys stay
    assert sorted(FlowKey.objects.values_list("kind", "key")) == [("c", "account:2"), ("r", "account:2")]
    jobs.per_account.enqueue(1)
    assert [task.concurrency_key for task in claim()] == ["account:1"]


def test_keys_the_database_compares_as_equal_are_one_key():
    """MariaDB's default collation ignores case and trailing spaces; elsewhere keys differ byte for byte."""
    jobs.noop.using(concurrency=1, concurrency_key="Account:{n}").enqueue(n=7)
    jobs.noop.using(concurrency=1, concurrency_key="account:{n}").enqueue(n=7)
    claimed = claim()
    one_key = ScheduledTask.objects.filter(concurrency_key="account:7").count() == 2  # the database's own equality
    assert len(claimed) == (1 if one_key else 2)
    assert ScheduledTask.objects.filter(status="pending").count() == (1 if one_key else 0)
    finish(claimed)
    assert len(claim()) == (1 if one_key else 0)  # the other spelling's task is not stuck behind a lock it never gets
    assert ScheduledTask.objects.filter(status="pending").count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_lane_key_another_claim_held_is_not_taken_later_in_the_claim_without_its_count():
    """A claim skips a lane whose key another claim holds; if that claim commits before
    this one locks its other keys, the lane's key must not be locked then: its running
    tasks were not counted (three workers once ran 4 tasks of a key limited to 2)."""
    import threading

    from django.db import connections, transaction

    from django_jobs.db import engine as engine_of

    if connection.vendor != "postgresql":
        # SQLite has no row locks (one writer at a time). On MariaDB the holder here does
        # not commit until its wait runs out (10 s), after the claim: this test would
        # pass without the fix there, so it runs where it was seen to fail without it.
        pytest.skip("reproduced on PostgreSQL; MariaDB's holder commits only after the claim here")
    jobs.per_account.enqueue_many([((7,), {})] * 4)
    assert len(claim(worker="w1")) == 2
    FlowKey.objects.get_or_create(kind="c", key="account:7")
    FlowKey.objects.get_or_create(kind="r", key="account:7")
    holding, release = threading.Event(), threading.Event()

    def hold_the_key():  # another worker's claim, holding the key's concurrency row
        with transaction.atomic(using="default"):
            list(FlowKey.objects.select_for_update().filter(kind="c", key="account:7"))
            holding.set()
            release.wait(10)
        connections.close_all()

    holder = threading.Thread(target=hold_the_key)
    holder.start()
    assert holding.wait(10)
    database = engine_of("default")
    original = database.flow_heads_and_counts

    def then_the_other_claim_commits(*args, **kwargs):
        found = original(*args, **kwargs)
        release.set()
        holder.join(10)
        return found

    database.flow_heads_and_counts = then_the_other_claim_commits
    try:
        taken = claim(worker="w2")
    finally:
        del database.flow_heads_and_counts
        release.set()
        holder.join(10)
    assert taken == []
    assert ScheduledTask.objects.filter(status="running").count() == 2


def test_every_claim_that_takes_tasks_under_a_key_leaves_a_new_version_of_its_row():
    """PostgreSQL reads a page's counts in the statement that locks its keys, in a
    snapshot taken before the lock (``open_flow_page``); a claim that committed in
    between is caught because it wrote the key's row: the row locked is then newer than
    the row seen. That holds only if every claim taking tasks under a key writes its
    row, concurrency keys and limited queues included, and one taking none need not."""
    if connection.vendor != "postgresql":
        pytest.skip("the counts read with the lock are PostgreSQL's")
    with override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "QUEUE_LIMITS": {"mail": {"concurrency": 5}}}):
        jobs.per_account.enqueue_many([((1,), {})] * 3)
        jobs.noop.using(queue="mail").enqueue()

        def versions():
            with connection.cursor() as cursor:
                cursor.execute("SELECT kind, key, xmin::text FROM django_jobs_flowkey")
                return {(kind, key): version for kind, key, version in cursor.fetchall()}

        flow = claiming.new_flow()
        assert len(claim(flow=flow)) == 2 + 1  # account 1 at its limit; the mail task
        before = versions()
        assert claim(flow=flow) == []  # nothing taken: nothing written
        assert versions() == before
        finish(ScheduledTask.objects.filter(concurrency_key="account:1", status="running")[:1])
        assert len(claim(flow=flow)) == 1
        after = versions()
        assert after[("c", "account:1")] != before[("c", "account:1")]
        assert after[("q", "mail")] == before[("q", "mail")]  # nothing taken under it this time
