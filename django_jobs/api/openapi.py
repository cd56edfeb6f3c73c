"""The OpenAPI 3.1 document, generated from ``routes.OPERATIONS`` (paths, methods,
permissions, input fields) and ``schemas.COMPONENTS`` (answers): there is no second,
hand-kept copy of the API to drift from the code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

from .. import __version__
from .fields import Field
from .schemas import COMPONENTS

if TYPE_CHECKING:
    from .routes import Operation

DESCRIPTION = (
    "Schedule and inspect django_jobs tasks, manage cron schedules, pause and resume queues. "
    "Authenticate with `Authorization: Bearer <token>` (create one with `manage.py jobs_api_token create`) "
    "or a Django session (unsafe methods then need the CSRF token in the X-CSRFToken header). "
    "Every error is `{\"errors\": {\"<field>\": [\"<message>\"]}}`. Each operation needs the Django model "
    "permission it names; users who are not superusers see only the cron schedules they own."
)
ERRORS = {
    400: "Invalid input: messages by field.",
    401: "Not authenticated.",
    403: "Authenticated without the permission (or a failed CSRF check).",
    404: "No such object (or a schedule owned by someone else), or no such path.",
    413: "The body is larger than DJANGO_JOBS['API_MAX_BODY_SIZE'].",
    415: "The body is not application/json.",
    500: "A database error that is not the client's fault (logged on the server).",
    503: "The database is busy (a lock) or unreachable: try again after Retry-After seconds.",
}
# Headers an error answer always carries.
ERROR_HEADERS = {
    503: {"Retry-After": {"description": "Seconds to wait before trying again.", "required": True,
                          "schema": {"type": "integer", "minimum": 0}}},
}
SUCCESS = {200: "OK", 201: "Created", 204: "Done; no content."}


def document(operations: list[Operation], path_parameters: dict[str, tuple[str, Field]], base: str) -> dict[str, Any]:
    """The whole document; ``base`` is the path the API is mounted at."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = describe(operation, path_parameters)
    return {
        "openapi": "3.1.0",
        "info": {"title": "django_jobs API", "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": base or "/"}],
        "security": [{"bearerToken": []}, {"session": []}],
        "tags": [{"name": "tasks"}, {"name": "schedules"}, {"name": "queues"}, {"name": "meta"}],
        "paths": paths,
        "components": {"schemas": COMPONENTS, "securitySchemes": security_schemes()},
    }


def security_schemes() -> dict[str, Any]:
    return {
        "bearerToken": {"type": "http", "scheme": "bearer", "description": "A token from manage.py jobs_api_token."},
        "session": {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME,
                    "description": "A Django session; unsafe methods also need the X-CSRFToken header."},
    }


def describe(operation: Operation, path_parameters: dict[str, tuple[str, Field]]) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "responses": responses(operation),
    }
    if operation.description:
        described["description"] = operation.description
    if operation.permissions:
        described["description"] = (described.get("description", "") + f" Permission: "
                                    f"{' or '.join(operation.permissions)}.").strip()
    parameters = path_params(operation, path_parameters) + query_params(operation)
    if parameters:
        described["parameters"] = parameters
    if operation.body:
        described["requestBody"] = {"required": not operation.partial and any(
            field.required for field in operation.body.values()),
            "content": {"application/json": {"schema": operation.body_schema()}}}
    if operation.public:
        described["security"] = []
    return described


def path_params(operation: Operation, path_parameters: dict[str, tuple[str, Field]]) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": field.schema()}
            for name, (_, field) in path_parameters.items() if "{" + name + "}" in operation.path]


def query_params(operation: Operation) -> list[dict[str, Any]]:
    return [{"name": name, "in": "query", "required": field.required, "schema": field.schema()}
            for name, field in operation.query.items()]


def responses(operation: Operation) -> dict[str, Any]:
    answers = {str(status): answer(SUCCESS[status], schema) for status, schema in operation.responses.items()}
    for status in error_statuses(operation):
        answers[str(status)] = answer(ERRORS[status], "Error", status)
    if operation.conflict:
        answers["409"] = answer(operation.conflict, "Error")
    return answers


def error_statuses(operation: Operation) -> list[int]:
    statuses = [400]  # every operation refuses query parameters it does not know
    if not operation.public:
        statuses += [401, 403]
    if "{" in operation.path:  # an unknown id, or a parameter that makes another path (a/b)
        statuses.append(404)
    if operation.body is not None:
        statuses += [413, 415]
    if not operation.public:  # public operations read no database
        statuses += [500, 503]
    return statuses


def answer(description: str, schema: str | None, status: int = 0) -> dict[str, Any]:
    described: dict[str, Any] = {"description": description}
    if schema is not None:
        described["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    if status in ERROR_HEADERS:
        described["headers"] = ERROR_HEADERS[status]
    return described
