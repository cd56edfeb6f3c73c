"""The OpenAPI document: served by the API, a valid OpenAPI 3.1 shape whose every
schema is valid JSON Schema 2020-12 and every reference resolves, and in step with
the URLs and the input validation (it is generated from the same declaration; these
tests catch a generator that drifts)."""

from __future__ import annotations

import json
import re

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.urls import URLPattern, URLResolver, get_resolver
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from django_jobs.api.fields import spec_schema
from django_jobs.api.routes import OPERATIONS
from django_jobs.api.serializers import task_detail
from tests.api_support import ApiClient, document, validate
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
    schema = spec_schema(operation.body, partial=operation.partial)
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
