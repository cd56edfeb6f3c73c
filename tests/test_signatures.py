import dataclasses
import datetime as dt

import pytest
from django.utils import timezone

import django_jobs
from django_jobs import InvalidJobOption, JobArgumentsError, Signature
from django_jobs.models import ScheduledTask
from tests.testapp import jobs

pytestmark = pytest.mark.django_db


def test_s_makes_a_signature_with_the_jobs_options():
    signature = jobs.add.using(queue="mail", priority="high").s(1, b=2)
    assert isinstance(signature, Signature)
    assert (signature.job.name, signature.job.queue, signature.job.priority) == ("tests.add", "mail", 50)
    assert (signature.args, dict(signature.kwargs), dict(signature.options)) == ((1,), {"b": 2}, {})
    assert not ScheduledTask.objects.exists()  # a signature is not a task


def test_a_signature_holds_its_arguments_as_they_will_be_stored():
    when = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
    names = ["Ann"]
    signature = jobs.noop.s(when, names=names)
    names.append("Bo")  # the caller's list, changed afterwards: not the signature's
    assert signature.args == ("2026-01-02T03:04:00Z",)
    assert dict(signature.kwargs) == {"names": ["Ann"]}


def test_a_signature_cannot_be_changed():
    signature = jobs.add.s(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        signature.args = (3, 4)
    with pytest.raises(TypeError):
        signature.kwargs["b"] = 3
    with pytest.raises(TypeError):
        signature.options["delay"] = 3


@pytest.mark.parametrize("make, error, message", [
    (lambda: jobs.add.s(1, 2, 3), JobArgumentsError, "Arguments do not fit job 'tests.add'"),
    (lambda: jobs.add.s(1, c=2), JobArgumentsError, "Arguments do not fit job 'tests.add'"),
    (lambda: jobs.noop.s({1, 2}), JobArgumentsError, "positional argument 0"),
    (lambda: jobs.noop.s(name="a\x00b"), JobArgumentsError, "NUL character"),
    (lambda: jobs.noop.s(float("nan")), JobArgumentsError, "positional argument 0"),
    (lambda: jobs.noop.s().using(priority=500), InvalidJobOption, "out of range"),
    (lambda: jobs.noop.s().using(queue=""), InvalidJobOption, "queue must be"),
    (lambda: jobs.noop.s().using(delay=-1), InvalidJobOption, "delay must not be negative"),
    (lambda: jobs.noop.s().using(delay=10**20), InvalidJobOption, "too long"),
    (lambda: jobs.noop.s().using(run_at=dt.datetime(2030, 1, 1)), InvalidJobOption, "naive"),
    (lambda: jobs.noop.s().using(delay=1, run_at=timezone.now()), InvalidJobOption, "not both"),
    (lambda: jobs.noop.s().using(queu="mail"), TypeError, "queu"),
])
def test_a_signature_is_checked_as_enqueue_checks(make, error, message):
    with pytest.raises(error, match=message):
        make()
    assert not ScheduledTask.objects.exists()


def test_using_returns_a_new_signature_and_a_time_replaces_the_other():
    base = jobs.add.s(1, 2)
    mail = base.using(queue="mail", delay=30)
    assert (base.job.queue, dict(base.options)) == (None, {})
    assert (mail.job.queue, dict(mail.options)) == ("mail", {"delay": dt.timedelta(seconds=30)})
    when = timezone.now() + dt.timedelta(days=1)
    assert dict(mail.using(run_at=when).options) == {"run_at": when}
    assert mail.using(priority=5).options == mail.options
    assert (mail.args, dict(mail.kwargs)) == ((1, 2), {})


def test_signatures_of_the_same_call_are_equal():
    assert jobs.add.s(1, b=2) == jobs.add.s(1, b=2)
    assert jobs.add.s(1, b=2) != jobs.add.s(1, b=3)
    assert jobs.add.s(1, b=2) != jobs.add.using(queue="mail").s(1, b=2)


def test_a_signature_enqueues_alone_with_its_options_and_time():
    before = timezone.now()
    task = jobs.add.using(queue="mail", priority="high").s(1, b=2).using(delay=60).enqueue()
    task.refresh_from_db()
    assert (task.identifier, task.args, task.kwargs, task.queue, task.priority) == ("tests.add", [1], {"b": 2},
                                                                                     "mail", 50)
    assert task.scheduled_at >= before + dt.timedelta(seconds=60)
    when = timezone.now() + dt.timedelta(days=2)
    assert jobs.noop.s().using(run_at=when).enqueue().scheduled_at == when


def test_a_signature_with_a_unique_key_enqueues_alone_like_enqueue():
    first = jobs.add.using(unique_key="k").s(1, 2).enqueue()
    again = jobs.add.using(unique_key="k").s(3, 4).enqueue()
    assert again.pk == first.pk


def test_a_job_found_by_name_makes_signatures_too():
    signature = django_jobs.registry.get("tests.add").s(1, 2)
    assert signature == jobs.add.s(1, 2)
