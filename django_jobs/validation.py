"""Checks applied to every enqueue before anything is written.

Each function returns the normalised value or raises a ``DjangoJobsError``
subclass whose message names the offending input.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, overload

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from .conf import jobs_settings, to_seconds
from .exceptions import InvalidJobOption, JobArgumentsError

PRIORITY_NAMES = {"critical": 100, "high": 50, "normal": 0, "low": -50}
MIN_PRIORITY, MAX_PRIORITY = -100, 100
BACKOFF_KINDS = ("exponential", "fixed")
# Column lengths of ScheduledTask (a longer value is stored cut on SQLite, refused with
# a DataError elsewhere): checked here so every database refuses it the same way.
MAX_QUEUE_LENGTH = 100
MAX_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 500
MAX_UNIQUE_KEY_LENGTH = 255
# Far beyond any sensible retry policy, far below the column's limit (2**31 - 1).
MAX_RETRIES = 10_000
# Longest delay, retry delay or timeout, and farthest run time from now: 100 years.
# Beyond, now + delay leaves the datetime range, and a timeout overflows the timers.
MAX_SECONDS = 100 * 365.25 * 86400
MAX_DISTANCE = timedelta(seconds=MAX_SECONDS)
# Deepest nesting of a stored JSON document (args list, kwargs dict, result, metadata).
# MariaDB refuses documents 32 levels deep (its JSON_VALID check and JSON_TABLE), and
# enqueue_many's statement reads each args list two levels down a JSON_TABLE document:
# 29 + 2 stays under 32. SQLite stops at 1000, Python's encoder near its recursion limit.
MAX_JSON_DEPTH = 29
# For the depth of JSON text: every byte but brackets and quotes is deleted, and curly
# brackets become square (the kind does not change the depth); QUOTED is a string once
# its escapes are gone and only brackets are left in it.
NOT_STRUCTURE = bytes(set(range(256)) - set(b'[]{}"'))
SQUARE = bytes.maketrans(b"{}", b"[]")
QUOTED = re.compile(rb'"[^"]*"')
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


def owner(value: Any) -> Any:
    """A task's owner: a saved user of ``AUTH_USER_MODEL`` (its primary key is returned), or None."""
    if value is None:
        return None
    from django.contrib.auth import get_user_model

    model = get_user_model()
    if not isinstance(value, model) or value.pk is None:
        raise InvalidJobOption(f"owner must be a saved {model._meta.label} or None, not {shown(value)}")
    return value.pk


OVERLAPS = ("skip", "queue", "allow")


def overlap(value: Any) -> str:
    """A cron schedule's ``overlap``: what a fire does while its previous task is active."""
    if value not in OVERLAPS or not isinstance(value, str):
        raise InvalidJobOption(f"overlap must be one of {', '.join(OVERLAPS)}, not {shown(value)}")
    return value


def queue(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_QUEUE_LENGTH or "\x00" in value:
        raise InvalidJobOption(f"queue must be a non-empty string of at most {MAX_QUEUE_LENGTH} characters "
                               f"without NUL, not {shown(value)}")
    if value == ALL_QUEUES:
        raise InvalidJobOption(f"{ALL_QUEUES!r} is not a queue name: it is reserved for pausing every queue "
                               f"(django_jobs.pause_all())")
    allowed = jobs_settings.QUEUES
    if allowed is not None and value not in allowed:
        raise InvalidJobOption(f"Unknown queue {value!r}; DJANGO_JOBS['QUEUES'] allows {list(allowed)}")
    return value


def text(value: Any, what: str, max_length: int, *, empty: bool = True) -> str:
    """A string option (any value is taken as its ``str()``) that fits its column.

    The NUL character is refused too: PostgreSQL cannot store it in text.
    """
    value = value if isinstance(value, str) else str(value)
    if len(value) > max_length:
        raise InvalidJobOption(f"{what} must be at most {max_length} characters, not {len(value)}: {shown(value)}")
    if "\x00" in value:
        raise InvalidJobOption(f"{what} must not contain the NUL character (\\x00): {shown(value)}")
    if not empty and not value:
        raise InvalidJobOption(f"{what} must not be empty")
    return value


def job_name(value: Any) -> str:
    """A job's name, stored as each task's ``identifier``."""
    if not isinstance(value, str):
        raise InvalidJobOption(f"job name must be a string, not {value!r}")
    return text(value, "job name", MAX_NAME_LENGTH, empty=False)


def description(value: Any) -> str:
    return text(value, "description", MAX_DESCRIPTION_LENGTH)


def unique_key(value: Any) -> str | None:
    return None if value is None else text(value, "unique_key", MAX_UNIQUE_KEY_LENGTH, empty=False)


def shown(value: Any) -> str:
    """``repr`` of a value in a message, cut short: a 10 MB option must not make a 10 MB error."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def max_retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRIES:
        raise InvalidJobOption(f"max_retries must be a whole number from 0 to {MAX_RETRIES}, not {value!r}")
    return value


@overload
def duration(value: Any, what: str) -> timedelta: ...
@overload
def duration(value: Any, what: str, *, allow_none: bool) -> timedelta | None: ...


def duration(value: Any, what: str, *, allow_none: bool = False) -> timedelta | None:
    """``value`` (seconds or a timedelta) as a timedelta; None only with ``allow_none``."""
    if value is None and allow_none:
        return None
    try:
        seconds = to_seconds(value, what)
    except TypeError as error:
        raise InvalidJobOption(str(error)) from None
    if math.isnan(seconds):
        raise InvalidJobOption(f"{what} must be a number of seconds, not NaN")
    if seconds < 0:
        raise InvalidJobOption(f"{what} must not be negative, not {value!r}")
    if seconds > MAX_SECONDS:
        raise InvalidJobOption(f"{what} of {value!r} seconds is too long: at most {MAX_SECONDS:.0f} (100 years)")
    return timedelta(seconds=seconds)  # -0.0 is zero


def backoff(value: Any) -> Any:
    if callable(value) or value in BACKOFF_KINDS:
        return value
    raise InvalidJobOption(f"backoff must be 'exponential', 'fixed' or a callable attempt -> timedelta, not {value!r}")


def run_time(value: Any, what: str = "run_at") -> datetime:
    """An aware datetime when USE_TZ is on (naive times are ambiguous across hosts), within
    100 years of now (every database stores it, and it sorts with the others).

    With USE_TZ off an aware datetime becomes the same instant in local time, which is
    what the databases other than PostgreSQL could store.
    """
    if not isinstance(value, datetime):
        raise InvalidJobOption(f"{what} must be a datetime, not {value!r}")
    if settings.USE_TZ and timezone.is_naive(value):
        raise InvalidJobOption(
            f"{what} {value.isoformat()} is naive but USE_TZ is True; pass an aware datetime "
            f"(django.utils.timezone.make_aware, or datetime(..., tzinfo=...))."
        )
    if not settings.USE_TZ and timezone.is_aware(value):
        value = in_local_time(value, what)
    if abs(value - timezone.now()) > MAX_DISTANCE:
        raise InvalidJobOption(f"{what} {value.isoformat()} is more than 100 years from now")
    return value


def in_local_time(value: datetime, what: str) -> datetime:
    try:
        return timezone.make_naive(value)
    except OverflowError:  # datetime.max with a negative offset, say
        raise InvalidJobOption(f"{what} {value.isoformat()} is more than 100 years from now") from None


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
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            return args_text, kwargs_text, stored_args, stored_kwargs
    stored_args, stored_kwargs = json_arguments(args, kwargs)  # raises the error that names the value
    return JSON_ENCODER.encode(stored_args), JSON_ENCODER.encode(stored_kwargs), stored_args, stored_kwargs


def json_pair(args: list[Any], kwargs: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
    """``json_documents`` of a signature: ``[args, kwargs]`` as one JSON text, and decoded.

    One encoding and one decoding for both (half the calls, for 100,000 signatures);
    the pair is one level deeper than each. When that fails, ``json_arguments`` raises
    the error that names the value.
    """
    if isinstance(args, list) and isinstance(kwargs, dict) and all(isinstance(key, str) for key in kwargs):
        try:
            text = storable(JSON_ENCODER.encode([args, kwargs]), MAX_JSON_DEPTH + 1)
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            stored_args, stored_kwargs = json.loads(text)
            return text, stored_args, stored_kwargs
    stored_args, stored_kwargs = json_arguments(args, kwargs)  # raises the error that names the value
    return storable(JSON_ENCODER.encode([stored_args, stored_kwargs]), MAX_JSON_DEPTH + 1), stored_args, stored_kwargs


def stored_json(value: list[Any] | dict[str, Any]) -> tuple[str, Any]:
    """An args list or kwargs dict as JSON text and as decoded from it (no work when empty)."""
    if not value:
        return ("[]", []) if isinstance(value, list) else ("{}", {})
    text = storable(JSON_ENCODER.encode(value), MAX_JSON_DEPTH)
    return text, json.loads(text)


def json_chunks(pairs: list[list[Any]], max_rows: int, max_chars: int) -> list[str]:
    """``[[args, kwargs], ...]`` as JSON documents of at most ``max_rows`` pairs and, unless
    one pair alone is longer, at most ``max_chars`` characters.

    One encoding per document: encoding the pairs one by one cost many times as much
    for a big batch (figures: bench/README.md, "Measured design choices"). When a
    document cannot be stored, ``json_arguments`` finds the value and names it.
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
        # Each pair's args and kwargs sit two levels down: [[args, kwargs], ...].
        return storable(JSON_ENCODER.encode(pairs), MAX_JSON_DEPTH + 2)
    except (TypeError, ValueError, RecursionError):
        for args, kwargs in pairs:
            json_arguments(args, kwargs)  # raises the error that names the value
        raise


def json_value(value: Any, what: str, max_depth: int = MAX_JSON_DEPTH - 1) -> Any:
    """``value`` as stored and read back. ``max_depth``: an argument sits one level down
    in its args list or kwargs dict; a return value is stored as it is."""
    if value is None:  # what most jobs return: nothing to check
        return None
    try:
        return json.loads(storable(JSON_ENCODER.encode(value), max_depth))
    except RecursionError:
        error: Exception = ValueError(f"it is nested deeper than {max_depth} levels")
    except (TypeError, ValueError) as problem:
        error = problem
    raise JobArgumentsError(
        f"{what} ({type(value).__name__}) cannot be stored as JSON: {error}. "
        f"Pass plain data (str, int, float, bool, None, list, dict, datetime, date, Decimal, UUID)."
    ) from None


def storable(text: str, max_depth: int) -> str:
    """JSON ``text`` unchanged, or ValueError if no database could store it (NUL, depth)."""
    return refuse_deep(refuse_nul(text), max_depth)


def refuse_deep(text: str, max_depth: int) -> str:
    """JSON ``text`` unchanged, or ValueError if it nests deeper than ``max_depth``."""
    if text.count("[") + text.count("{") > max_depth and deeper_than(text, max_depth):
        raise ValueError(f"it is nested deeper than {max_depth} levels, the most every database stores")
    return text


def deeper_than(text: str, max_depth: int) -> bool:
    """Whether JSON ``text`` nests deeper than ``max_depth``, each step in C, so that
    enqueue_many's documents of thousands of calls stay cheap to check.

    What is left of the text is its brackets, outside strings: escaped backslashes and
    quotes go first (every quote left opens or closes a string), then every byte but
    brackets and quotes (the encoder escapes anything not ASCII), then the strings.
    Each pass then removes the empty brackets, the innermost level: anything left after
    ``max_depth`` passes is deeper.
    """
    if "\\" in text:
        text = text.replace("\\\\", "").replace('\\"', "")
    structure = text.encode("ascii", "ignore").translate(SQUARE, NOT_STRUCTURE)
    structure = structure.replace(b'""', b"")  # empty strings, or two with no bracket between
    if b'"' in structure:
        structure = QUOTED.sub(b"", structure)
    for _ in range(max_depth):
        structure = structure.replace(b"[]", b"")
        if not structure:
            return False
    return bool(structure)


def refuse_nul(text: str) -> str:
    """JSON ``text`` unchanged, or ValueError if a string in it holds a NUL character.

    PostgreSQL's jsonb cannot store one; refusing it on every database keeps a job's
    arguments portable and stops a result from failing at the recording step.
    """
    if "\\u0000" in text and ESCAPED_NUL.search(text):
        raise ValueError("a string holds a NUL character (\\u0000), which PostgreSQL cannot store")
    return text


# -- cron schedules -----------------------------------------------------------------------
# CronSchedule's text columns: (length, may be empty). An empty queue means the default.
SCHEDULE_TEXT = {"name": (200, False), "job_name": (MAX_NAME_LENGTH, False), "expression": (100, False),
                 "timezone": (64, True), "description": (MAX_DESCRIPTION_LENGTH, True),
                 "queue": (MAX_QUEUE_LENGTH, True)}


def schedule_errors(schedule: Any, *, settings_rules: bool = False) -> dict[str, list[str]]:
    """What no database could store, or no fire could enqueue, by field of a ``CronSchedule``.

    ``settings_rules`` adds the queue names ``DJANGO_JOBS["QUEUES"]`` allows: for forms,
    not for every save, so that a schedule left behind by a settings change can still
    be disabled.
    """
    checks: dict[str, Callable[[Any], Any]] = {
        name: functools.partial(text, what=name, max_length=length, empty=empty)
        for name, (length, empty) in SCHEDULE_TEXT.items()}
    checks.update({"priority": priority, "overlap": overlap,
                   "metadata": lambda value: json_value(value, "metadata", MAX_JSON_DEPTH)})
    if settings_rules:
        checks["queue"] = lambda value: value and queue(value)
    errors = {}
    for name, check in checks.items():
        try:
            check(getattr(schedule, name))
        except (InvalidJobOption, JobArgumentsError) as error:
            errors[name] = [str(error)]
    for name, call in (("args", (schedule.args, {})), ("kwargs", ([], schedule.kwargs))):
        try:
            json_arguments(*call)
        except JobArgumentsError as error:
            errors[name] = [str(error)]
    return errors
