"""Who is calling: a bearer token (machines) or a Django session (browsers).

``Authorization: Bearer <token>`` is checked against ``ApiToken`` hashes. A token is
not sent by browsers on their own, so token requests need no CSRF check; requests
authenticated by the session cookie, which browsers do send on their own, must pass
Django's CSRF check on unsafe methods, exactly as a form would.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware

from ..models import ApiToken
from .http import ApiError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="django_jobs"'}
SCHEME = "bearer"


def authenticate(request: HttpRequest) -> Any:
    """The calling user, or ApiError 401 (not authenticated) / 403 (CSRF)."""
    token = bearer_token(request)
    if token is not None:
        request.user = token_user(token)
        return request.user
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise ApiError.field(401, "authorization", "Authentication required: log in, or send "
                             "'Authorization: Bearer <token>'.", **CHALLENGE)
    check_csrf(request)
    return user


def bearer_token(request: HttpRequest) -> str | None:
    """The token of a ``Bearer`` header; None when there is no such header (other
    schemes, such as a proxy's Basic authentication, are left to the session)."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != SCHEME:
        return None
    return token.strip()


def token_user(token: str) -> Any:
    row = ApiToken.authenticate(token) if token else None
    if row is None:
        raise ApiError.field(401, "authorization", "Invalid, expired or revoked token.",
                             **{"WWW-Authenticate": 'Bearer realm="django_jobs", error="invalid_token"'})
    return row.user


class CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check, answering the reason of a failure instead of a page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def check_csrf(request: HttpRequest) -> None:
    check = CsrfCheck(lambda request: None)  # type: ignore[arg-type]
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if reason:
        header = settings.CSRF_HEADER_NAME.removeprefix("HTTP_").replace("_", "-")
        raise ApiError.field(403, "csrf", f"CSRF check failed: {reason}. Send the csrftoken cookie's value "
                             f"in the {header} header, or use a token.")


def require(user: Any, permissions: tuple[str, ...]) -> None:
    """403 unless ``user`` holds one of ``permissions`` (superusers hold all)."""
    if permissions and not any(user.has_perm(permission) for permission in permissions):
        raise ApiError.field(403, "permission", f"You need the permission {' or '.join(permissions)}.")
