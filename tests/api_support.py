"""A client for the JSON API tests that checks every answer against the OpenAPI
document the API serves: the status must be one the operation declares, and the
body must validate against that status's schema (jsonschema, Draft 2020-12, the
dialect of OpenAPI 3.1)."""

from __future__ import annotations

import functools
import json
import re
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from jsonschema import Draft202012Validator

from django_jobs.api import openapi
from django_jobs.api.routes import OPERATIONS, PATH_PARAMETERS
from django_jobs.models import TOKEN_PREFIX
from tests.factories import ApiTokenFactory

BASE = "/jobs/api"
NO_BODY: Any = object()


@functools.cache
def document() -> dict[str, Any]:
    return openapi.document(OPERATIONS, PATH_PARAMETERS, BASE)


@functools.cache
def path_patterns() -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
                        + "$"), path) for path in document()["paths"]]


def template_of(path: str) -> str | None:
    """The documented path template a request path matches, if any."""
    relative = path.split("?", 1)[0].removeprefix(BASE)
    return next((template for pattern, template in path_patterns() if pattern.match(relative)), None)


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``instance`` fits ``schema`` (refs into components)."""
    Draft202012Validator({**schema, "components": document()["components"]}).validate(instance)


def response_schema(method: str, path: str, status: int) -> dict[str, Any] | None:
    """The documented schema of this answer; fails the test when the answer is undocumented."""
    template = template_of(path)
    error = {"$ref": "#/components/schemas/Error"}
    if template is None:
        assert status == 404, f"{method} {path}: an undocumented path answered {status}"
        return error
    operation = document()["paths"][template].get(method.lower())
    if operation is None:
        # 404 when a path parameter does not even parse (/tasks/abc), else 405.
        assert status in (404, 405), f"{method} {path}: an undocumented method answered {status}"
        return error
    declared = operation["responses"]
    assert str(status) in declared, f"{method} {path} answered {status}, not documented ({sorted(declared)})"
    content = declared[str(status)].get("content")
    return None if content is None else content["application/json"]["schema"]


def check_response(method: str, path: str, response: Any) -> None:
    assert response.status_code < 500, f"{method} {path}: {response.status_code}"
    schema = response_schema(method, path, response.status_code)
    if schema is None:
        assert response.content == b"", f"{method} {path}: {response.status_code} should have no body"
        return
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    validate(json.loads(response.content), schema)


class ApiClient:
    """Django's test client speaking to the API as ``user``, by token or session."""

    def __init__(self, user: Any = None, *, via: str = "token", enforce_csrf: bool = False) -> None:
        self.client = Client(enforce_csrf_checks=enforce_csrf)
        self.headers: dict[str, str] = {}
        self.user = user
        if user is not None and via == "token":
            token = f"{TOKEN_PREFIX}tests-{secrets.token_hex(8)}"
            ApiTokenFactory(user=user, name="tests", token=token)
            self.headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        elif user is not None and via == "session":
            self.client.force_login(user)

    def request(self, method: str, path: str, body: Any = NO_BODY, *, raw: bytes | str | None = None,
                content_type: str = "application/json", **extra: Any) -> Any:
        """``body`` is sent as JSON; ``raw`` as it is. The answer is checked against the document."""
        data = raw if raw is not None else (b"" if body is NO_BODY else json.dumps(body))
        url = path if path.startswith(BASE) else BASE + path
        response = self.client.generic(method, url, data, content_type=content_type, **{**self.headers, **extra})
        check_response(method, url, response)
        return response

    def get(self, path: str, **extra: Any) -> Any:
        return self.request("GET", path, **extra)

    def post(self, path: str, body: Any = NO_BODY, **extra: Any) -> Any:
        return self.request("POST", path, body, **extra)

    def patch(self, path: str, body: Any = NO_BODY, **extra: Any) -> Any:
        return self.request("PATCH", path, body, **extra)

    def delete(self, path: str, **extra: Any) -> Any:
        return self.request("DELETE", path, **extra)


def make_user(username: str, *permissions: str, superuser: bool = False, **fields: Any) -> Any:
    """A user holding ``permissions`` (codenames of django_jobs, such as ``view_scheduledtask``)."""
    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(username, f"{username}@example.com", None)
    user = model.objects.create_user(username, f"{username}@example.com", None, **fields)
    if permissions:
        user.user_permissions.set(Permission.objects.filter(content_type__app_label="django_jobs",
                                                            codename__in=permissions))
    return model.objects.get(pk=user.pk)  # a fresh instance: no stale permission cache


def errors(response: Any) -> dict[str, list[str]]:
    """The ``errors`` of an error answer."""
    return response.json()["errors"]
