from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

import django_jobs
from django_jobs import InvalidJobOption, UnknownJob, job, registry
from django_jobs.registry import UnknownJobOption
from tests.testapp import jobs


@pytest.fixture
def scratch_names():
    """Names registered by a test are removed afterwards, keeping the registry clean."""
    names: list[str] = []
    yield names
    for name in names:
        registry.unregister(name)


def test_jobs_py_modules_are_autodiscovered():
    assert registry.is_registered("tests.add")
    assert "tests.record" in list(registry)
    assert registry.get("tests.add") is jobs.add


def test_name_defaults_to_the_dotted_path(scratch_names):
    def compute():
        return 1

    registered = job(compute)
    scratch_names.append(registered.name)
    assert registered.name == f"{__name__}.test_name_defaults_to_the_dotted_path.<locals>.compute"


def test_options_are_normalised(scratch_names):
    scratch_names.append("tests.options")

    @job(name="tests.options", queue="reports", priority="high", max_retries=5,
         retry_delay=timedelta(minutes=10), backoff="fixed", timeout=30)
    def generate_report(report_type: str, year: int) -> dict:
        return {}

    assert generate_report.queue == "reports"
    assert generate_report.priority == 50
    assert generate_report.max_retries == 5
    assert generate_report.retry_delay == timedelta(minutes=10)
    assert generate_report.backoff == "fixed"
    assert generate_report.timeout == timedelta(seconds=30)


@pytest.mark.parametrize("name, value", [("critical", 100), ("high", 50), ("normal", 0), ("low", -50), (-100, -100), (100, 100)])
def test_priority_names_and_numbers(name, value):
    assert jobs.noop.using(priority=name).priority == value


@pytest.mark.parametrize("bad", [101, -101, "urgent", 1.5, True, None])
def test_bad_priorities_are_rejected(bad):
    with pytest.raises(InvalidJobOption):
        jobs.noop.using(priority=bad)


def test_two_functions_under_one_name_are_refused(scratch_names):
    scratch_names.append("tests.clash")

    @job(name="tests.clash")
    def first():
        pass

    def second():
        pass

    with pytest.raises(ImproperlyConfigured, match="Two functions are registered as job 'tests.clash'"):
        job(name="tests.clash")(second)


def test_unknown_job_lookup():
    with pytest.raises(UnknownJob, match="No job named 'nope'"):
        registry.get("nope")
    assert not registry.is_registered("nope")


def test_unknown_decorator_and_using_options_are_refused():
    with pytest.raises(UnknownJobOption, match="queu"):
        job(queu="x")
    with pytest.raises(UnknownJobOption, match="queu"):
        jobs.noop.using(queu="mail")


def test_takes_context_requires_a_context_parameter(scratch_names):
    scratch_names.append("tests.badcontext")
    with pytest.raises(ImproperlyConfigured, match="named 'context'"):
        @job(name="tests.badcontext", takes_context=True)
        def wrong(ctx, value):
            pass


def test_using_returns_a_copy():
    mail = jobs.noop.using(queue="mail", priority="critical", description="hi")
    assert (mail.queue, mail.priority, mail.description) == ("mail", 100, "hi")
    assert jobs.noop.queue is None and jobs.noop.priority == 0


def test_calling_a_job_runs_it_inline():
    assert jobs.add(2, 3) == 5
    assert jobs.fail_until(1) == 1  # context.attempt is 1 inline


def test_public_api_is_exported():
    assert {"job", "registry", "enqueue", "get_statistics", "Job", "UnknownJob"} <= set(django_jobs.__all__)
    missing = [name for name in django_jobs.__all__ if not hasattr(django_jobs, name)]
    assert not missing, missing


def test_every_exception_of_the_package_is_a_djangojobserror():
    """One base to catch them all (issue 19), each keeping the builtin base it had."""
    import importlib
    import inspect
    import pkgutil

    import django
    from django.core.exceptions import ImproperlyConfigured

    from django_jobs.exceptions import DjangoJobsError

    own = []
    for module_info in pkgutil.walk_packages(django_jobs.__path__, "django_jobs."):
        if ".migrations" in module_info.name or module_info.name.endswith("child_setup"):
            continue  # child_setup runs django.setup() in a job's child process
        try:
            module = importlib.import_module(module_info.name)
        except (ImproperlyConfigured, ImportError):  # Django's Tasks framework, before Django 6: seen in the 6.x cells
            assert django.VERSION < (6, 0), module_info.name
            continue
        own += [value for value in vars(module).values() if inspect.isclass(value)
                and issubclass(value, BaseException) and value.__module__ == module.__name__]
    assert len(own) >= 15, own
    assert [error for error in own if not issubclass(error, DjangoJobsError)] == []
