"""One view per path. Each request goes: method (405) -> authentication (401, or
403 for a failed CSRF check) -> permission (403) -> input (400, 413, 415) ->
the operation. Every refusal is an ``ApiError`` and answered as JSON, and so is a
database error (``database_error``): an API client never gets Django's HTML page."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .auth import authenticate, require
from .body import check_text, read_json_object
from .fields import Field, FieldError, clean_fields
from .http import ApiError, Call, bad_input
from .routes import PATH_PARAMETERS, Operation

logger = logging.getLogger(__name__)
# Seconds a client should wait before trying again after a 503: a SQLite write lock
# or a database restart is usually over within a second or two.
RETRY_AFTER = 1


def endpoint(operations: dict[str, Operation]) -> Callable[..., HttpResponse]:
    """The view of one path, dispatching on the method to its operations."""
    allowed = ", ".join(operations)

    # CSRF is checked in authenticate(), for session requests only: a bearer token
    # is never sent by a browser on its own, so token requests need no CSRF token.
    @csrf_exempt
    def view(request: HttpRequest, **params: Any) -> HttpResponse:
        try:
            operation = operations.get(request.method or "")
            if operation is None:
                raise ApiError.field(405, "method", f"{request.method} is not allowed here; use {allowed}.",
                                     Allow=allowed)
            return run(operation, request, params)
        except ApiError as error:
            return error.response()
        except DatabaseError as error:
            return database_error(request, error).response()

    return view


def database_error(request: HttpRequest, error: DatabaseError) -> ApiError:
    """The answer to a database error no operation handled.

    A lock ("database is locked" on SQLite, a lock wait timeout) or a lost connection
    is an ``OperationalError`` or ``InterfaceError``: the request may well succeed
    when repeated, so 503 with ``Retry-After``. A ``DataError`` is a value the
    database refused that the input checks let through: bad input, 400. Anything
    else is our fault: 500, still in the API's error shape.
    """
    logger.error("API %s %s: database error: %s", request.method, request.path, error,
                 exc_info=not isinstance(error, (OperationalError, InterfaceError)))
    if isinstance(error, (OperationalError, InterfaceError)):
        return ApiError.field(503, "database", "The database is busy or unavailable; try again shortly.",
                              **{"Retry-After": str(RETRY_AFTER)})
    if isinstance(error, DataError):
        return ApiError.field(400, "body", f"The database refused a value: {error}.")
    return ApiError.field(500, "database", "The database refused the operation.")


def run(operation: Operation, request: HttpRequest, params: dict[str, Any]) -> HttpResponse:
    user = None if operation.public else authenticate(request)
    if user is not None:
        require(user, operation.permissions)
    call = Call(request=request, user=user, params=clean_params(params), query=clean_query(operation, request),
                body=clean_body(operation, request))
    return operation.handler(call)


def clean_params(params: dict[str, Any]) -> dict[str, Any]:
    """Text path parameters checked; ids are left to the operation, which answers
    404 for any id that does not exist, however large."""
    cleaned = dict(params)
    for name, value in params.items():
        if isinstance(value, str):
            check_text(name, value)
            try:
                cleaned[name] = PATH_PARAMETERS[name][1].clean(value)
            except FieldError as error:
                raise bad_input(name, str(error)) from None
    return cleaned


def clean_query(operation: Operation, request: HttpRequest) -> dict[str, Any]:
    """Query parameters, each given once, converted from text and cleaned."""
    data = {}
    for name, values in request.GET.lists():
        check_text("query", name)
        if len(values) > 1:
            raise bad_input(name, "Given more than once; give it once (lists are comma-separated).")
        check_text(name, values[0])
        field: Field | None = operation.query.get(name)
        data[name] = values[0] if field is None else field.from_text(values[0])
    return clean_fields(operation.query, data)


def clean_body(operation: Operation, request: HttpRequest) -> dict[str, Any]:
    if operation.body is None:
        return {}
    return clean_fields(operation.body, read_json_object(request), partial=operation.partial, rules=operation.rules)


@csrf_exempt
def not_found(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Any path under the API that is not an endpoint."""
    return ApiError.field(404, "path", "No such endpoint; see openapi.json.").response()
