import pytest
from django.test import override_settings

from django_jobs.checks import check_settings


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
])
def test_bad_settings_are_reported(settings, expected):
    assert ids(**settings) == expected
