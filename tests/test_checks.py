import pytest
from django.test import override_settings

from django_jobs.checks import check_settings, check_sqlite_transaction_mode


def ids(**settings):
    with override_settings(DJANGO_JOBS=settings):
        return sorted(message.id for message in check_settings())


def test_defaults_pass():
    assert ids() == []


@pytest.mark.parametrize("settings, expected", [
    ({"POLL_INTERVALL": 1}, ["django_jobs.E002"]),
    ({"POLL_INTERVAL": "fast"}, ["django_jobs.E003"]),
    ({"HEARTBEAT_TIMEOUT": 0}, ["django_jobs.E003"]),
    ({"BATCH_SIZE": 0}, ["django_jobs.E004"]),
    ({"DEFAULT_MAX_RETRIES": -1}, ["django_jobs.E004"]),
    ({"QUEUES": "default"}, ["django_jobs.E005"]),
    ({"HEARTBEAT_INTERVAL": 10, "HEARTBEAT_TIMEOUT": 15}, ["django_jobs.W001"]),
    ({"QUEUE_LIMITS": {"mail": {"concurrency": 0}}}, ["django_jobs.E008"]),
    ({"QUEUE_LIMITS": {"mail": {"rate": "fast"}}}, ["django_jobs.E008"]),
    ({"QUEUE_LIMITS": {"mail": {"concurrency": -2, "rate": "1/s"}}}, ["django_jobs.E008"]),
    ({"QUEUE_LIMITS": ["mail"]}, ["django_jobs.E008"]),
    ({"QUEUE_LIMITS": {"mail": {"concurrency": 5, "rate": "10/s"}}}, []),
])
def test_bad_settings_are_reported(settings, expected):
    assert ids(**settings) == expected


def sqlite_database(**options):
    return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3", "OPTIONS": options}}


@pytest.mark.parametrize("databases, expected", [
    (sqlite_database(timeout=30), ["django_jobs.W002"]),
    (sqlite_database(timeout=30, transaction_mode="DEFERRED"), ["django_jobs.W002"]),
    (sqlite_database(timeout=30, transaction_mode="IMMEDIATE"), []),
    (sqlite_database(transaction_mode="immediate"), []),
    ({"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "shop"}}, []),
])
def test_a_sqlite_database_without_immediate_transactions_is_reported(databases, expected):
    # Only the settings are read: replacing DATABASES opens no connection.
    with override_settings(DATABASES=databases):
        problems = check_sqlite_transaction_mode()
    assert [problem.id for problem in problems] == expected
    for problem in problems:
        assert "transaction_mode" in problem.hint and "IMMEDIATE" in problem.hint


def test_the_example_project_ships_immediate_transactions_on_sqlite():
    from example_project import settings as example

    assert example.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"  # its default
    with override_settings(DATABASES=example.DATABASES):
        assert check_sqlite_transaction_mode() == []


@pytest.mark.parametrize("options, expected", [
    ({}, []),
    ({"isolation_level": "read committed"}, []),
    ({"isolation_level": "repeatable read"}, ["django_jobs.W003"]),
    ({"isolation_level": "serializable"}, ["django_jobs.W003"]),
])
def test_an_isolation_level_above_read_committed_is_reported(options, expected):
    from django_jobs.checks import check_isolation_level

    databases = {"default": {"ENGINE": "django.db.backends.mysql", "NAME": "jobs", "OPTIONS": options}}
    with override_settings(DATABASES=databases):
        assert [message.id for message in check_isolation_level()] == expected


@pytest.mark.parametrize("events, pooled, engine, expected", [
    (False, True, "django.db.backends.postgresql", ["django_jobs.W004"]),
    (True, True, "django.db.backends.postgresql", []),
    (False, False, "django.db.backends.postgresql", []),
    (False, True, "django.db.backends.mysql", []),
])
def test_events_off_behind_a_transaction_pooler_is_reported(events, pooled, engine, expected):
    from django_jobs.checks import check_pooled_events

    databases = {"default": {"ENGINE": engine, "NAME": "jobs", "DISABLE_SERVER_SIDE_CURSORS": pooled}}
    with override_settings(DATABASES=databases, DJANGO_JOBS={"EVENTS": events}):
        assert [message.id for message in check_pooled_events()] == expected


def test_a_queue_database_that_is_not_an_alias_is_reported():
    with override_settings(DJANGO_JOBS={"DATABASE": "queue"}):
        assert [error.id for error in check_settings() if error.id.startswith("django_jobs.E")] == ["django_jobs.E009"]
