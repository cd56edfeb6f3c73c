"""Reading a request body: a size limit, the content type, and strict JSON.

Strict means: what a database or a later ``json.dumps`` would choke on is refused
here with a 400 naming the field, never a 500 later. That is NaN and Infinity
(not JSON), numbers too large for a float, duplicate keys (parsers disagree on
which wins), strings with NUL (PostgreSQL cannot store it) or lone surrogates (not
encodable as UTF-8), and nesting deeper than ``MAX_DEPTH``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from ..conf import jobs_settings
from ..exceptions import DjangoJobsError
from .http import ApiError, bad_input

MAX_DEPTH = 32
JSON_TYPES = ("application/json",)


class Refused(DjangoJobsError, ValueError):
    """A JSON value this API does not accept; the message says which and why."""


def read_json_object(request: HttpRequest) -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    raw = read_body(request)
    if not raw.strip():
        return {}
    check_content_type(request)
    data = parse(decode(raw))
    if not isinstance(data, dict):
        raise bad_input("body", f"Must be a JSON object, not {json_type(data)}.")
    for name, value in data.items():
        check_value(name, value)
    return data


def read_body(request: HttpRequest) -> bytes:
    limit = jobs_settings.API_MAX_BODY_SIZE
    too_big = ApiError.field(413, "body", f"The body is larger than the limit of {limit} bytes.")
    if content_length(request) > limit:
        raise too_big
    try:
        raw = request.body
    except RequestDataTooBig:
        raise too_big from None
    if len(raw) > limit:
        raise too_big
    return raw


def content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def check_content_type(request: HttpRequest) -> None:
    kind = request.content_type or ""
    charset = (request.content_params or {}).get("charset", "utf-8").lower()
    if kind.lower() not in JSON_TYPES or charset not in ("utf-8", "utf8"):
        raise ApiError.field(415, "content_type", f"Send application/json (UTF-8), not {kind or 'no content type'!r}.")


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise bad_input("body", f"Not valid UTF-8 (byte {error.start}).") from None


def parse(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=refuse_constant, parse_float=finite_float, object_pairs_hook=unique_keys)
    except Refused as error:
        raise bad_input("body", str(error)) from None
    except RecursionError:
        raise bad_input("body", f"Nested more than {MAX_DEPTH} levels deep.") from None
    except ValueError as error:  # JSONDecodeError, and integers past Python's digit limit
        raise bad_input("body", f"Malformed JSON: {error}.") from None


def refuse_constant(name: str) -> Any:
    raise Refused(f"{name} is not valid JSON.")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(f"The number {text[:40]} is too large.")
    return value


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise Refused(f"The key {key[:40]!r} appears twice in one object.")
        result[key] = value
    return result


def check_value(field: str, value: Any) -> None:
    """Walk one member's value (without recursion); refuse it under ``field``."""
    check_text("body", field)
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise bad_input(field, f"Nested more than {MAX_DEPTH} levels deep.")
        if isinstance(item, str):
            check_text(field, item)
        elif isinstance(item, dict):
            for key in item:
                check_text(field, key)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def check_text(field: str, text: str) -> None:
    if "\x00" in text:
        raise bad_input(field, "Text must not contain the NUL character (\\u0000).")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_input(field, "Text must not contain lone surrogates (\\ud800-\\udfff).") from None


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
