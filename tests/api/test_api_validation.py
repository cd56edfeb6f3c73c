"""Bad input to the JSON API: each is a 4xx JSON answer naming the field at fault,
never a 500 and never a partial write. Specific cases here; random ones in
test_api_fuzz.py."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from django_jobs.checks import check_settings
from django_jobs.models import CronSchedule, ScheduledTask
from tests.api_support import ApiClient, errors, make_user
from tests.factories import ScheduledTaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return ApiClient(make_user("root", superuser=True))


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("raw", "field"), [
    ("{", "body"),
    ("{'job': 'tests.noop'}", "body"),
    ('{"job": "tests.noop",}', "body"),
    ("[]", "body"),
    ('"tests.noop"', "body"),
    ("null", "body"),
    ('{"job": "tests.noop", "delay": NaN}', "body"),
    ('{"job": "tests.noop", "delay": Infinity}', "body"),
    ('{"job": "tests.noop", "delay": 1e999}', "body"),
    ('{"job": "tests.noop", "job": "tests.add"}', "body"),
    ('{"job": "tests.noop", "args": [' + "9" * 5000 + "]}", "body"),
    ('{"job": "tests.noop", "args": ["\\u0000"]}', "args"),
    ('{"job": "tests.noop", "kwargs": {"\\u0000": 1}}', "kwargs"),
    ('{"job": "tests.noop", "description": "\\ud800"}', "description"),
    ('{"\\ud800": 1}', "body"),
    ('{"job": "tests.noop", "args": ' + json.dumps(nested(40)) + "}", "args"),
    ('{"job": "tests.noop", "args": ' + "[" * 100_000 + "]" * 100_000 + "}", "body"),
])
def test_malformed_or_unstorable_json_is_a_400_naming_the_field(api, raw, field):
    response = api.post("/tasks", raw=raw)

    assert response.status_code == 400
    assert list(errors(response)) == [field], errors(response)
    assert not ScheduledTask.objects.exists()


def test_bytes_that_are_not_utf8_are_a_400(api):
    response = api.post("/tasks", raw=b'{"job": "\xff"}')

    assert response.status_code == 400 and "UTF-8" in errors(response)["body"][0]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "application/json; charset=latin-1"])
def test_a_body_that_is_not_json_is_415(api, content_type):
    response = api.post("/tasks", {"job": "tests.noop"}, content_type=content_type)

    assert response.status_code == 415 and list(errors(response)) == ["content_type"]


def test_json_with_a_utf8_charset_is_fine(api):
    assert api.post("/tasks", {"job": "tests.noop"}, content_type="application/json; charset=UTF-8").status_code == 201


@override_settings(DJANGO_JOBS={"API_MAX_BODY_SIZE": 1000})
def test_a_body_over_the_limit_is_413(api):
    response = api.post("/tasks", {"job": "tests.noop", "args": ["x" * 1000]})

    assert response.status_code == 413 and "1000 bytes" in errors(response)["body"][0]
    assert not ScheduledTask.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=500)
def test_djangos_own_upload_limit_is_413_too(api):
    assert api.post("/tasks", {"job": "tests.noop", "args": ["x" * 1000]}).status_code == 413


@pytest.mark.parametrize(("field", "value", "message"), [
    ("job", 42, "Must be a string."),
    ("args", {"a": 1}, "Must be a JSON array."),
    ("kwargs", [1], "Must be a JSON object."),
    ("delay", "10", "Must be a number."),
    ("delay", True, "Must be a number."),
    ("delay", 10**12, "Must be from 0 to"),
    ("max_retries", 1.5, "Must be a whole number."),
    ("max_retries", 2**40, "Must be from 0 to"),
    ("priority", True, "Must be a whole number from -100 to 100"),
    ("unique_key", "", "Must not be empty."),
    ("run_at", 1700000000, "ISO 8601"),
    ("run_at", "tomorrow", "Not an ISO 8601 date-time"),
    ("run_at", "2031-05-01 09:30", "Must include a UTC offset"),
    ("run_at", "9999-12-31T23:59:59-05:00", "Must be between the years"),
    ("run_at", "0001-01-01T00:00:00+00:00", "Must be between the years"),
    ("queue", None, "Must not be null."),
    ("colour", "red", "Unknown field."),
])
def test_wrong_types_and_values_are_a_400_naming_the_field(api, field, value, message):
    response = api.post("/tasks", {"job": "tests.noop", field: value})

    assert response.status_code == 400
    assert message in errors(response)[field][0], errors(response)


def test_all_field_errors_are_reported_at_once(api):
    response = api.post("/tasks", {"args": "x", "priority": 500, "colour": "red"})

    assert set(errors(response)) == {"job", "args", "priority", "colour"}


def test_a_schedule_with_a_nul_in_its_metadata_is_refused_before_the_database_sees_it(api):
    response = api.post("/schedules", {"name": "s", "job": "tests.noop", "expression": "@daily",
                                       "metadata": {"note": "a\u0000b"}})

    assert list(errors(response)) == ["metadata"]
    assert not CronSchedule.objects.exists()


def test_an_unknown_path_is_a_json_404(api):
    for path in ("/nope", "/tasks/abc", "/tasks/1/explode", "/schedules/1/2/3"):
        response = api.get(path)
        assert response.status_code == 404 and list(errors(response)) == ["path"]


def test_a_post_to_an_unknown_path_is_a_json_404_even_for_a_session_without_csrf():
    api = ApiClient(make_user("root", superuser=True), via="session", enforce_csrf=True)

    assert api.post("/nope", {}).status_code == 404


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/tasks", "GET, POST"),
    ("DELETE", "/tasks/1", "GET"),
    ("GET", "/tasks/1/cancel", "POST"),
    ("POST", "/statistics", "GET"),
])
def test_a_wrong_method_is_405_with_allow(api, method, path, allowed):
    response = api.request(method, path)

    assert response.status_code == 405 and response["Allow"] == allowed
    assert list(errors(response)) == ["method"]


def test_get_ignores_a_body_but_not_unknown_query_parameters(api):
    assert api.request("GET", "/statistics", {"whatever": 1}).status_code == 200
    assert list(errors(api.get("/statistics?queue=a&extra=1"))) == ["extra"]


@pytest.mark.parametrize("path", ["/tasks/1?fresh=1", "/jobs?x=", "/openapi.json?v=2", "/queues/paused?all=yes"])
def test_operations_without_query_parameters_refuse_them_too(api, path):
    ScheduledTaskFactory()

    response = api.get(path)

    assert response.status_code == 400 and len(errors(response)) == 1


@override_settings(DJANGO_JOBS={"API_MAX_BODY_SIZE": 0})
def test_a_body_size_limit_below_one_byte_is_a_system_check_error():
    assert [error.id for error in check_settings()] == ["django_jobs.E004"]


def test_a_nul_in_a_query_parameter_is_a_400(api):
    assert list(errors(api.get("/tasks?queue=a%00b"))) == ["queue"]


@pytest.mark.parametrize("method, path, body", [
    ("post", "/tasks", {"job": "tests.noop", "queue": "*"}),
    ("post", "/schedules", {"name": "s", "job": "tests.noop", "expression": "@daily", "queue": "*"}),
])
def test_the_reserved_queue_name_is_refused_by_the_document_and_the_server(method, path, body):
    response = getattr(ApiClient(make_user("root", superuser=True)), method)(path, body)
    assert response.status_code == 400
    assert "stands for every queue" in errors(response)["queue"][0]
    assert not ScheduledTask.objects.exists()
