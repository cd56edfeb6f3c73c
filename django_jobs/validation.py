"""Checks applied to every enqueue before anything is written.

Each function returns the normalised value or raises a ``DjangoJobsError``
subclass whose message names the offending input.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from .conf import jobs_settings, to_seconds
from .exceptions import InvalidJobOption, JobArgumentsError

PRIORITY_NAMES = {"critical": 100, "high": 50, "normal": 0, "low": -50}
MIN_PRIORITY, MAX_PRIORITY = -100, 100
BACKOFF_KINDS = ("exponential", "fixed")
MAX_QUEUE_LENGTH = 100
# Far beyond any sensible retry policy, far below the column's limit (2**31 - 1).
MAX_RETRIES = 10_000
# An escaped NUL (\u0000) in JSON text, not preceded by an escaped backslash.
ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# json.dumps(value, cls=DjangoJSONEncoder, allow_nan=False), without building an encoder per call.
JSON_ENCODER = DjangoJSONEncoder(allow_nan=False)


def priority(value: Any) -> int:
    """A whole number from -100 to 100, or one of the names in ``PRIORITY_NAMES``."""
    if isinstance(value, str):
        try:
            return PRIORITY_NAMES[value]
        except KeyError:
            names = ", ".join(PRIORITY_NAMES)
            raise InvalidJobOption(f"Unknown priority {value!r}; use one of {names} or a number.") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJobOption(f"priority must be an int or a name, not {value!r}")
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise InvalidJobOption(f"priority {value} is out of range {MIN_PRIORITY}..{MAX_PRIORITY}")
    return value


# The name a global pause is stored under (``pause_all``): no queue may take it.
ALL_QUEUES = "*"


def queue(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_QUEUE_LENGTH:
        raise InvalidJobOption(f"queue must be a non-empty string of at most {MAX_QUEUE_LENGTH} characters, not {value!r}")
    if value == ALL_QUEUES:
        raise InvalidJobOption(f"{ALL_QUEUES!r} is not a queue name: it is reserved for pausing every queue "
                               f"(django_jobs.pause_all())")
    allowed = jobs_settings.QUEUES
    if allowed is not None and value not in allowed:
        raise InvalidJobOption(f"Unknown queue {value!r}; DJANGO_JOBS['QUEUES'] allows {list(allowed)}")
    return value


def max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise InvalidJobOption(f"max_retries must be a whole number from 0 to {MAX_RETRIES}, not {value!r}")
    return value


def duration(value: Any, what: str, *, allow_none: bool = False) -> timedelta | None:
    if value is None and allow_none:
        return None
    try:
        seconds = to_seconds(value, what)
    except TypeError as error:
        raise InvalidJobOption(str(error)) from None
    if seconds < 0:
        raise InvalidJobOption(f"{what} must not be negative, not {value!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise InvalidJobOption(f"{what} of {value!r} seconds is too long") from None


def backoff(value: Any) -> Any:
    if callable(value) or value in BACKOFF_KINDS:
        return value
    raise InvalidJobOption(f"backoff must be 'exponential', 'fixed' or a callable attempt -> timedelta, not {value!r}")


def run_time(value: Any) -> datetime:
    """An aware datetime when USE_TZ is on (naive times are ambiguous across hosts)."""
    if not isinstance(value, datetime):
        raise InvalidJobOption(f"run time must be a datetime, not {value!r}")
    if settings.USE_TZ and timezone.is_naive(value):
        raise InvalidJobOption(
            f"run time {value.isoformat()} is naive but USE_TZ is True; pass an aware datetime "
            f"(django.utils.timezone.make_aware, or datetime(..., tzinfo=...))."
        )
    return value


def json_arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """Args and kwargs as they will be stored, or ``JobArgumentsError`` naming the bad one.

    The values are encoded with Django's JSON encoder (datetime, date, Decimal and UUID
    become strings) and decoded again, so the job receives exactly what a worker would.
    """
    if not isinstance(args, (list, tuple)):
        raise JobArgumentsError(f"args must be a list or tuple, not {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise JobArgumentsError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    for key in kwargs:
        if not isinstance(key, str):
            raise JobArgumentsError(f"keyword argument names must be strings, not {key!r}")
    stored_args = [json_value(value, f"positional argument {index}") for index, value in enumerate(args)]
    stored_kwargs = {key: json_value(value, f"keyword argument {key!r}") for key, value in kwargs.items()}
    return stored_args, stored_kwargs


def json_documents(args: list[Any], kwargs: dict[str, Any]) -> tuple[str, str, list[Any], dict[str, Any]]:
    """``json_arguments`` plus the JSON text of each: ``(args_text, kwargs_text, args, kwargs)``.

    One encoding of each instead of one per value; when that fails, ``json_arguments``
    raises the error that names the value.
    """
    if isinstance(args, list) and isinstance(kwargs, dict) and all(isinstance(key, str) for key in kwargs):
        try:
            args_text, stored_args = stored_json(args)
            kwargs_text, stored_kwargs = stored_json(kwargs)
        except (TypeError, ValueError):
            pass
        else:
            return args_text, kwargs_text, stored_args, stored_kwargs
    stored_args, stored_kwargs = json_arguments(args, kwargs)  # raises the error that names the value
    return JSON_ENCODER.encode(stored_args), JSON_ENCODER.encode(stored_kwargs), stored_args, stored_kwargs


def stored_json(value: list[Any] | dict[str, Any]) -> tuple[str, Any]:
    """An args list or kwargs dict as JSON text and as decoded from it (no work when empty)."""
    if not value:
        return ("[]", []) if isinstance(value, list) else ("{}", {})
    text = refuse_nul(JSON_ENCODER.encode(value))
    return text, json.loads(text)


def json_chunks(pairs: list[list[Any]], max_rows: int, max_chars: int) -> list[str]:
    """``[[args, kwargs], ...]`` as JSON documents of at most ``max_rows`` pairs and, unless
    one pair alone is longer, at most ``max_chars`` characters.

    One encoding per document (100,000 pairs: 0.04 s instead of 0.35 s one by one). When
    a document cannot be stored, ``json_arguments`` finds the value and names it.
    """
    documents, start = [], 0
    while start < len(pairs):
        rows = min(max_rows, len(pairs) - start)
        while True:
            document = stored_document(pairs[start:start + rows])
            if len(document) <= max_chars or rows == 1:
                break
            # In proportion to the length, but at least halving: one long pair must not
            # leave every later document nearly empty.
            rows = max(1, min(rows - 1, max(rows * max_chars // len(document), rows // 2)))
        documents.append(document)
        start += rows
    return documents


def stored_document(pairs: list[list[Any]]) -> str:
    try:
        return refuse_nul(JSON_ENCODER.encode(pairs))
    except (TypeError, ValueError):
        for args, kwargs in pairs:
            json_arguments(args, kwargs)  # raises the error that names the value
        raise


def json_value(value: Any, what: str) -> Any:
    if value is None:  # what most jobs return: nothing to check
        return None
    try:
        return json.loads(refuse_nul(JSON_ENCODER.encode(value)))
    except (TypeError, ValueError) as error:
        raise JobArgumentsError(
            f"{what} ({type(value).__name__}) cannot be stored as JSON: {error}. "
            f"Pass plain data (str, int, float, bool, None, list, dict, datetime, date, Decimal, UUID)."
        ) from None


def refuse_nul(text: str) -> str:
    """JSON ``text`` unchanged, or ValueError if a string in it holds a NUL character.

    PostgreSQL's jsonb cannot store one; refusing it on every database keeps a job's
    arguments portable and stops a result from failing at the recording step.
    """
    if "\\u0000" in text and ESCAPED_NUL.search(text):
        raise ValueError("a string holds a NUL character (\\u0000), which PostgreSQL cannot store")
    return text
