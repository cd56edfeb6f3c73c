"""The OpenAPI document: served by the API, a valid OpenAPI 3.1 shape whose every
schema is valid JSON Schema 2020-12 and every reference resolves, and in step with
the URLs and the input validation (it is generated from the same declaration; these
tests catch a generator that drifts)."""

from __future__ import annotations

import json
import re

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.test import override_settings
from django.urls import URLPattern, URLResolver, get_resolver
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from django_jobs.api.fields import latest_year
from django_jobs.api.routes import OPERATIONS
from django_jobs.api.serializers import task_detail
from tests.api_support import ApiClient, document, errors, make_user, validate
from tests.factories import ScheduledTaskFactory

pytestmark = pytest.mark.django_db


def walk(node, path=()):
    """Every (path, value) in a JSON document."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def resolve_pointer(doc, pointer: str):
    node = doc
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_served_document_is_the_generated_one_with_the_mount_point():
    served = ApiClient().get("/openapi.json").json()

    assert served == json.loads(json.dumps(document()))
    assert served["openapi"] == "3.1.0" and served["servers"] == [{"url": "/jobs/api"}]


def test_every_reference_resolves_and_every_schema_is_valid_json_schema():
    doc = document()
    refs = [value for path, value in walk(doc) if path and path[-1] == "$ref"]
    assert refs
    for ref in refs:
        resolve_pointer(doc, ref)
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
    for path, node in walk(doc["paths"]):
        if path and path[-1] == "schema":
            Draft202012Validator.check_schema(node)


def test_every_operation_is_described_completely():
    ids = []
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            ids.append(operation["operationId"])
            assert operation["summary"] and operation["responses"], (method, path)
            parameters = operation.get("parameters", [])
            documented = {parameter["name"] for parameter in parameters if parameter["in"] == "path"}
            assert documented == set(re.findall(r"\{(\w+)\}", path)), (method, path)
            for status, answer in operation["responses"].items():
                assert answer["description"], (method, path, status)
                assert ("content" in answer) != (status == "204"), (method, path, status)
            if operation.get("security") != []:
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert len(ids) == len(set(ids)) == len(OPERATIONS)


def django_paths(resolver, prefix=""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from django_paths(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def test_the_urls_are_the_documented_paths():
    mounted = {path.removeprefix("jobs/api/") for path in django_paths(get_resolver()) if path.startswith("jobs/api/")}
    documented = {re.sub(r"\{(\w+)\}", lambda match: f"<{'int' if match[1] == 'id' else 'str'}:{match[1]}>",
                         path.lstrip("/")) for path in document()["paths"]}

    assert mounted - {""} == documented  # "" is the JSON 404 for everything else


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op.body],
                         ids=lambda op: f"{op.method} {op.path}")
def test_request_schemas_match_the_validation(operation):
    """Each documented request body refuses unknown fields and states required ones."""
    schema = operation.body_schema()
    with pytest.raises(ValidationError):
        validate({"colour": "red"}, schema)
    documented = document()["paths"][operation.path][operation.method.lower()]["requestBody"]
    assert documented["content"]["application/json"]["schema"] == schema
    required = set(schema.get("required", []))
    assert required == {name for name, field in operation.body.items() if field.required and not operation.partial}


def test_the_error_schema_refuses_an_error_without_a_field():
    with pytest.raises(ValidationError):
        validate({"errors": {}}, {"$ref": "#/components/schemas/Error"})
    validate({"errors": {"job": ["No job named 'x' is registered."]}}, {"$ref": "#/components/schemas/Error"})


def test_the_task_schema_catches_a_field_the_serializer_adds_without_documenting_it():
    body = json.loads(json.dumps(task_detail(ScheduledTaskFactory()), cls=DjangoJSONEncoder))
    validate(body, {"$ref": "#/components/schemas/Task"})

    with pytest.raises(ValidationError):
        validate({**body, "surprise": True}, {"$ref": "#/components/schemas/Task"})


# -- the document and the server agree (issue 17): each limit has one source ------------------
def body_schema_of(method: str, path: str) -> dict:
    return document()["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]


def accepts(schema: dict, instance) -> bool:
    try:
        validate(instance, schema)
    except ValidationError:
        return False
    return True


def test_the_limits_in_the_document_are_the_librarys_and_the_columns():
    from django_jobs import validation
    from django_jobs.models import CronSchedule, ScheduledTask

    task = body_schema_of("POST", "/tasks")["properties"]
    schedule = body_schema_of("POST", "/schedules")["properties"]
    assert task["max_retries"]["maximum"] == validation.MAX_RETRIES
    assert task["priority"]["oneOf"][0]["minimum"] == validation.MIN_PRIORITY
    assert task["priority"]["oneOf"][0]["maximum"] == validation.MAX_PRIORITY
    assert task["queue"]["maxLength"] == validation.MAX_QUEUE_LENGTH == ScheduledTask._meta.get_field("queue").max_length
    for name, column in {"job": "identifier", "description": "description", "unique_key": "unique_key"}.items():
        assert task[name].get("maxLength", task[name].get("anyOf", [{}])[0].get("maxLength")) == \
            ScheduledTask._meta.get_field(column).max_length, name
    for name, column in {"name": "name", "job": "job_name", "expression": "expression", "timezone": "timezone",
                         "queue": "queue", "description": "description"}.items():
        assert schedule[name]["maxLength"] == CronSchedule._meta.get_field(column).max_length, name


def bounded_values(schema: dict):
    """(value at the documented bound, value just past it) for each bound of a field."""
    if "maximum" in schema:
        yield schema["maximum"], schema["maximum"] + 1
    if "minimum" in schema:
        yield schema["minimum"], schema["minimum"] - 1
    if "maxLength" in schema and "enum" not in schema:
        yield "x" * schema["maxLength"], "x" * (schema["maxLength"] + 1)


TASK_BASE = {"job": "tests.noop"}


@pytest.mark.parametrize("name", ["delay", "max_retries", "priority", "description", "unique_key"])
def test_the_server_accepts_up_to_each_documented_bound_and_refuses_past_it(name):
    """Would fail if the document and the server kept two copies of a limit that drifted."""
    api = ApiClient(make_user("root", superuser=True))
    field = body_schema_of("POST", "/tasks")["properties"][name]
    schema = field.get("oneOf", field.get("anyOf", [field]))[0]
    cases = list(bounded_values(schema))
    assert cases, f"{name} has no documented bound"
    for index, (inside, outside) in enumerate(cases):
        accepted = api.post("/tasks", {**TASK_BASE, name: inside, "unique_key": None} if name != "unique_key"
                            else {**TASK_BASE, name: inside if index == 0 else f"{inside}{index}"})
        assert accepted.status_code == 201, (name, inside, accepted.json())
        refused = api.post("/tasks", {**TASK_BASE, name: outside})
        assert refused.status_code == 400 and name in errors(refused), (name, outside)


def test_a_whole_number_written_with_a_fraction_is_an_integer_as_json_schema_says():
    api = ApiClient(make_user("root", superuser=True))
    integer = body_schema_of("POST", "/tasks")["properties"]["max_retries"]
    assert accepts(integer, 2.0) and not accepts(integer, 2.5)

    body = api.post("/tasks", {**TASK_BASE, "max_retries": 2.0, "priority": 50.0}).json()

    assert (body["max_retries"], body["priority"]) == (2, 50)
    assert list(errors(api.post("/tasks", {**TASK_BASE, "max_retries": 2.5}))) == ["max_retries"]


def test_delay_with_run_at_is_refused_by_the_document_as_by_the_server():
    schema = body_schema_of("POST", "/tasks")
    both = {**TASK_BASE, "delay": 5, "run_at": "2031-01-01T00:00:00Z"}

    assert not accepts(schema, both)
    assert accepts(schema, {**TASK_BASE, "delay": 5}) and accepts(schema, {**TASK_BASE, "run_at": both["run_at"]})
    assert ApiClient(make_user("root", superuser=True)).post("/tasks", both).status_code == 400


@pytest.mark.parametrize(("value", "valid"), [
    ("pending", True), ("failed,cancelled", True), ("pending,running,completed,failed,cancelled", True),
    ("", False), ("pending,", False), ("Pending", False), ("done", False), ("pending, failed", False),
])
def test_the_status_filter_is_documented_as_the_server_reads_it(value, valid):
    parameter = next(parameter for parameter in document()["paths"]["/tasks"]["get"]["parameters"]
                     if parameter["name"] == "status")
    response = ApiClient(make_user("root", superuser=True)).get(f"/tasks?status={value}")

    assert accepts(parameter["schema"], value) is valid
    assert (response.status_code == 200) is valid


LATEST = latest_year()  # about 100 years from now: the library's limit


@pytest.mark.parametrize(("value", "valid"), [
    ("2031-05-01T09:30:00Z", True), ("2031-05-01T09:30:00.123+02:00", True), ("1971-01-01T00:00:00-23:59", True),
    (f"{LATEST}-12-31T23:59:59-23:59", True), ("1970-12-31T23:59:59Z", False), (f"{LATEST + 1}-01-01T00:00:00Z", False),
    ("2031-05-01 09:30:00Z", False), ("2031-05-01T09:30Z", False), ("2031-05-01T09:30:00", False),
    ("2031-05-01T24:00:00Z", False), ("2031-05-01T09:30:60Z", False), ("20310501T093000Z", False),
])
def test_run_at_is_documented_as_the_server_reads_it(value, valid):
    schema = body_schema_of("POST", "/tasks")["properties"]["run_at"]
    response = ApiClient(make_user("root", superuser=True)).post("/tasks", {**TASK_BASE, "run_at": value})

    assert accepts(schema, value) is valid
    assert (response.status_code == 201) is valid, response.json()


def candidate_calls(job):
    """Calls of every shape near the job's signature: 0 to n+1 positional arguments and
    each subset of its parameter names (plus an unknown one) as keywords."""
    from itertools import combinations

    names = [*job.call_signature.parameters, "unknown"]
    names = [name for name in names if not name.startswith("*")]
    for count in range(len(names) + 1):
        for size in range(len(names) + 1):
            for chosen in combinations(names, size):
                yield [1] * count, dict.fromkeys(chosen, 1)


def test_the_documented_calls_of_every_registered_job_are_the_calls_the_server_accepts():
    """The call schema is generated from the job's signature; the server binds the
    arguments to it. Both must give the same answer for every shape of call."""
    from django_jobs.api.calls import argument_errors
    from django_jobs.registry import registry

    schema = body_schema_of("POST", "/tasks")
    compared = 0
    for name in sorted(registry):
        job = registry.get(name)
        for args, kwargs in candidate_calls(job):
            server = argument_errors(job, args, kwargs) == {}
            assert accepts(schema, {"job": name, "args": args, "kwargs": kwargs}) is server, (name, args, kwargs)
            compared += 1
    assert compared > 100


def test_job_names_time_zones_and_queues_are_enums_of_what_the_server_accepts():
    schedule = body_schema_of("POST", "/schedules")["properties"]
    from django_jobs.registry import registry

    assert schedule["job"]["enum"] == sorted(registry)
    assert "Europe/Berlin" in schedule["timezone"]["enum"] and "" in schedule["timezone"]["enum"]
    assert "posixrules" not in schedule["timezone"]["enum"]
    assert "enum" not in schedule["queue"]  # any queue: DJANGO_JOBS["QUEUES"] is not set here
    with override_settings(DJANGO_JOBS={"QUEUES": ["default", "mail"]}):
        assert body_schema_of_fresh("POST", "/tasks")["properties"]["queue"]["enum"] == ["default", "mail"]


def body_schema_of_fresh(method: str, path: str) -> dict:
    """The document as served now (``document()`` is cached for the whole run)."""
    from django_jobs.api import openapi
    from django_jobs.api.routes import PATH_PARAMETERS

    served = openapi.document(OPERATIONS, PATH_PARAMETERS, "/jobs/api")
    return served["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]


def test_a_zone_the_document_does_not_list_is_refused():
    api = ApiClient(make_user("root", superuser=True))
    body = {"name": "z", "job": "tests.noop", "expression": "@daily"}

    assert api.post("/schedules", {**body, "timezone": "posixrules"}).status_code == 400
    assert api.post("/schedules", {**body, "timezone": "Europe/Berlin"}).status_code == 201
