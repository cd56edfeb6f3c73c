"""JSON responses, and ``ApiError``: every error the API returns has one shape,
``{"errors": {"<field>": ["<message>", ...]}}``, where the field is the input at fault
(``body`` for the request as a whole, ``authorization``, ``permission``, ``method`` ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from ..exceptions import DjangoJobsError


@dataclass(frozen=True)
class Call:
    """One authenticated request, its input cleaned: what an operation receives."""

    request: HttpRequest
    user: Any
    params: dict[str, Any]
    query: dict[str, Any]
    body: dict[str, Any]


class ApiError(DjangoJobsError):
    """An error answer: HTTP ``status`` and messages by field."""

    def __init__(self, status: int, errors: dict[str, list[str]], headers: dict[str, str] | None = None) -> None:
        super().__init__(errors)
        self.status = status
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def field(cls, status: int, field: str, message: str, **headers: str) -> ApiError:
        return cls(status, {field: [message]}, headers)

    def response(self) -> HttpResponse:
        response = json_response({"errors": self.errors}, self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def bad_input(field: str, message: str) -> ApiError:
    return ApiError.field(400, field, message)


def not_found(field: str, message: str) -> ApiError:
    return ApiError.field(404, field, message)


def json_response(payload: Any, status: int = 200) -> HttpResponse:
    response = JsonResponse(payload, status=status, safe=False)
    # Answers hold live, per-user data: never cached by browsers or proxies.
    response["Cache-Control"] = "no-store"
    return response


def no_content() -> HttpResponse:
    response = HttpResponse(status=204)
    response["Cache-Control"] = "no-store"
    return response
