"""Input fields. Each validates one value of a request (a JSON body member or a
query parameter) and describes itself as JSON Schema, so one declaration in
``routes.py`` is both the validation and the OpenAPI document.

A refused value raises ``FieldError`` with a message that says what is expected;
``clean_fields`` gathers them by field name into one 400 answer.
"""

from __future__ import annotations

import copy
import functools
import re
import zoneinfo
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from .. import validation
from ..conf import jobs_settings
from ..exceptions import DjangoJobsError, InvalidJobOption, UnknownJob
from ..registry import registry
from .http import ApiError

MISSING: Any = object()
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,19}")
# Every supported database stores the years from 1970, and the library refuses a run
# time more than validation.MAX_SECONDS (100 years) from now. A date-time is checked by
# the year it is written in, a year inside those bounds on each side, so that it keeps
# them whatever its offset (offsets are under a day) and the pattern in the OpenAPI
# document (generated when it is served) says exactly what is accepted.
EARLIEST_YEAR = 1971


def latest_year() -> int:
    return (timezone.now() + timedelta(seconds=validation.MAX_SECONDS)).year - 2


@functools.lru_cache(maxsize=4)
def date_time_pattern(latest: int) -> re.Pattern[str]:
    """RFC 3339 (what JSON Schema's date-time format means), with an explicit offset and no
    leap second, in the years EARLIEST_YEAR to ``latest``: stricter than
    datetime.fromisoformat, which also reads other ISO 8601 forms."""
    years = "|".join(str(year) for year in range(EARLIEST_YEAR, latest + 1))
    return re.compile(
        f"^({years})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
        "([.][0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
    )
# Text without the NUL character, which PostgreSQL cannot store (body.py refuses it in
# any string of a request; the document says so with this pattern).
NO_NUL = "^[^\\u0000]*$"
# A queue name: no NUL, and not "*", which stands for every queue (pause_all).
QUEUE_PATTERN = "^(?!\\*$)[^\\u0000]*$"


def queue_pattern_refusal(value: str) -> str:
    return "'*' is not a queue name: it stands for every queue (POST scheduler/pause pauses them all)."
# Any JSON value without NUL in its strings and keys (job arguments, metadata).
JSON_VALUE: dict[str, Any] = {"$ref": "#/components/schemas/JsonValue"}


class FieldError(DjangoJobsError, ValueError):
    """A value a field refuses."""


def whole_number(value: Any) -> Any:
    """``value`` as an int when it is a whole number written as a float (``2.0``, ``1e2``):
    JSON has one number type, and JSON Schema's ``integer`` is any number without a
    fraction. Anything else is returned as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class OneOf:
    """The values a text field accepts, known only when a request comes (registered
    jobs, DJANGO_JOBS["QUEUES"], time zones): checked, and listed as the field's enum."""

    values: Callable[[], Collection[str] | None]  # None: any value
    refusal: Callable[[str], str]  # the message for a value that is not one of them


@dataclass(frozen=True, kw_only=True)
class Field:
    """One input value: type checks, bounds, and its JSON Schema."""

    description: str = ""
    required: bool = False
    nullable: bool = False
    default: Any = MISSING
    # Further checks of a well-typed value (a registered job name ...); raise FieldError.
    validators: tuple[Callable[[Any], None], ...] = ()

    def clean(self, value: Any) -> Any:
        """The value as the operation uses it, or ``FieldError``."""
        if value is None:
            if self.nullable:
                return None
            raise FieldError("Must not be null.")
        value = self.check(value)
        for validator in self.validators:
            validator(value)
        return value

    def from_text(self, text: str) -> Any:
        return text

    def check(self, value: Any) -> Any:
        raise NotImplementedError

    def value_schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        schema = self.value_schema()
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        if self.description:
            schema["description"] = self.description
        if self.default is not MISSING:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True, kw_only=True)
class Text(Field):
    max_length: int
    min_length: int = 0
    choices: tuple[str, ...] = ()
    one_of: OneOf | None = None
    # A regular expression the whole value must match (also in the document, so written
    # for both Python and ECMA 262: [0-9] rather than \d), and the message of a mismatch.
    pattern: str = ""
    mismatch: Callable[[str], str] = lambda value: "Not in the expected form."

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("Must be a string.")
        if len(value) < self.min_length:
            raise FieldError("Must not be empty." if self.min_length == 1
                             else f"At least {self.min_length} characters.")
        if len(value) > self.max_length:
            raise FieldError(f"At most {self.max_length} characters ({len(value)} given).")
        if self.choices and value not in self.choices:
            raise FieldError(f"Must be one of {', '.join(self.choices)}.")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise FieldError(self.mismatch(value))
        allowed = self.one_of.values() if self.one_of else None
        if allowed is not None and value not in allowed:
            raise FieldError(self.one_of.refusal(value))  # type: ignore[union-attr]
        return value

    def value_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "maxLength": self.max_length, "pattern": self.pattern or NO_NUL}
        if self.min_length:
            schema["minLength"] = self.min_length
        allowed = self.one_of.values() if self.one_of else None
        if self.choices or allowed is not None:
            schema["enum"] = [value for value in sorted(allowed or self.choices)
                              if self.min_length <= len(value) <= self.max_length]
        return schema


@dataclass(frozen=True, kw_only=True)
class Integer(Field):
    minimum: int
    maximum: int

    def from_text(self, text: str) -> Any:
        return int(text) if WHOLE_NUMBER.fullmatch(text) else text

    def check(self, value: Any) -> int:
        value = whole_number(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FieldError("Must be a whole number.")
        if not self.minimum <= value <= self.maximum:
            raise FieldError(f"Must be from {self.minimum} to {self.maximum}.")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True, kw_only=True)
class Number(Field):
    minimum: float
    maximum: float

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldError("Must be a number.")
        if not self.minimum <= value <= self.maximum:
            raise FieldError(f"Must be from {self.minimum:g} to {self.maximum:g}.")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True, kw_only=True)
class Boolean(Field):
    def from_text(self, text: str) -> Any:
        return {"true": True, "false": False}.get(text, text)

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldError("Must be true or false.")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True, kw_only=True)
class Array(Field):
    """A JSON array of any values (job arguments)."""

    def check(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise FieldError("Must be a JSON array.")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": JSON_VALUE}


@dataclass(frozen=True, kw_only=True)
class Object(Field):
    """A JSON object of any values (keyword arguments, metadata)."""

    def check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError("Must be a JSON object.")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": JSON_VALUE}


@dataclass(frozen=True, kw_only=True)
class DateTime(Field):
    """An ISO 8601 date-time with a UTC offset (``Z`` or ``+02:00``): naive times are
    ambiguous between the client, the server and the database."""

    def check(self, value: Any) -> datetime:
        if not isinstance(value, str):
            raise FieldError("Must be an ISO 8601 date-time string such as 2026-05-01T09:00:00+02:00.")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise FieldError(f"Not an ISO 8601 date-time: {value[:40]!r}.") from None
        if timezone.is_naive(moment):
            raise FieldError("Must include a UTC offset, such as 2026-05-01T09:00:00+02:00 or 2026-05-01T07:00:00Z.")
        latest = latest_year()
        if not EARLIEST_YEAR <= moment.year <= latest:
            raise FieldError(f"Must be between the years {EARLIEST_YEAR} and {latest}.")
        if not date_time_pattern(latest).fullmatch(value):
            raise FieldError("Write it as RFC 3339: 2026-05-01T09:00:00+02:00 (a T, seconds, and Z or an offset).")
        return local_time(moment.astimezone(UTC))

    def value_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time", "pattern": date_time_pattern(latest_year()).pattern}


def local_time(moment: datetime) -> datetime:
    # Without USE_TZ, Django stores naive local times and refuses aware ones.
    return moment if settings.USE_TZ else timezone.make_naive(moment)


@dataclass(frozen=True, kw_only=True)
class Priority(Field):
    """-100..100, higher runs first, or a name (critical 100, high 50, normal 0, low -50)."""

    def check(self, value: Any) -> int:
        value = whole_number(value)
        names = validation.PRIORITY_NAMES
        if isinstance(value, str) and value in names:
            return names[value]
        low, high = validation.MIN_PRIORITY, validation.MAX_PRIORITY
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise FieldError(f"Must be a whole number from {low} to {high}, or one of {', '.join(names)}.")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"oneOf": [
            {"type": "integer", "minimum": validation.MIN_PRIORITY, "maximum": validation.MAX_PRIORITY},
            {"type": "string", "enum": list(validation.PRIORITY_NAMES)},
        ]}


@dataclass(frozen=True, kw_only=True)
class Choices(Field):
    """One or more of ``choices``: comma-separated in a query string."""

    choices: tuple[str, ...]

    def from_text(self, text: str) -> Any:
        return text.split(",")

    def check(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not value or not all(item in self.choices for item in value):
            raise FieldError(f"Must be one or more of {', '.join(self.choices)}, separated by commas.")
        return value

    def value_schema(self) -> dict[str, Any]:
        one = "(" + "|".join(map(re.escape, self.choices)) + ")"
        return {"type": "string", "pattern": f"^{one}(,{one})*$",
                "description": f"One or more of {', '.join(self.choices)}, separated by commas."}


def registered_jobs() -> Collection[str]:
    return list(registry)


def allowed_queues() -> Collection[str] | None:
    return jobs_settings.QUEUES


def queue_refusal(name: str) -> str:
    try:
        validation.queue(name)
    except InvalidJobOption as error:
        return str(error)
    return f"Unknown queue {name!r}."


@functools.cache
def time_zones() -> frozenset[str]:
    # "" is the project's TIME_ZONE. Only the zones the system lists: ZoneInfo also
    # opens other files of the zone directory (posixrules, localtime ...).
    return frozenset(zoneinfo.available_timezones()) | {""}


def zone_refusal(name: str) -> str:
    return f"Unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'."


REGISTERED_JOB = OneOf(registered_jobs, lambda name: str(UnknownJob(name)))
ALLOWED_QUEUE = OneOf(allowed_queues, queue_refusal)
TIME_ZONE = OneOf(time_zones, zone_refusal)


class Rule:
    """A check of several fields of a body together, and its JSON Schema."""

    def check(self, data: dict[str, Any]) -> dict[str, list[str]]:
        """Messages by field; {} when ``data`` (cleaned fields) keeps the rule."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Exclusive(Rule):
    """At most one of ``names``."""

    names: tuple[str, ...]

    def check(self, data: dict[str, Any]) -> dict[str, list[str]]:
        given = [name for name in self.names if name in data]
        if len(given) < 2:
            return {}
        return {given[0]: [f"Give {' or '.join(self.names)}, not both."]}

    def schema(self) -> dict[str, Any]:
        return {"not": {"anyOf": [{"required": [first, second]} for index, first in enumerate(self.names)
                                  for second in self.names[index + 1:]]}}


@dataclass(frozen=True)
class Together(Rule):
    """All of ``names`` or none of them."""

    names: tuple[str, ...]

    def check(self, data: dict[str, Any]) -> dict[str, list[str]]:
        given = [name for name in self.names if name in data]
        if not given or len(given) == len(self.names):
            return {}
        message = f"Give {', '.join(self.names)} together: they change as a whole."
        return {name: [message] for name in self.names if name not in data}

    def schema(self) -> dict[str, Any]:
        return {"dependentRequired": {name: [other for other in self.names if other != name] for name in self.names}}


def clean_fields(spec: Mapping[str, Field], data: dict[str, Any], *, partial: bool = False,
                 rules: tuple[Rule, ...] = ()) -> dict[str, Any]:
    """``data`` checked against ``spec``: every unknown, missing or refused field is
    reported at once (400), then the ``rules`` of well-formed fields. ``partial``
    (PATCH) requires nothing and fills no defaults."""
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for name in data.keys() - spec.keys():
        errors[name] = [f"Unknown field. Allowed: {', '.join(sorted(spec)) or 'none'}."]
    for name, field in spec.items():
        if name in data:
            try:
                cleaned[name] = field.clean(data[name])
            except FieldError as error:
                errors[name] = [str(error)]
        elif not partial and field.required:
            errors[name] = ["This field is required."]
        elif not partial and field.default is not MISSING:
            cleaned[name] = copy.deepcopy(field.default)
    for rule in rules if not errors else ():
        errors.update(rule.check(cleaned))
        if errors:  # a later rule may presume this one kept
            break
    if errors:
        raise ApiError(400, errors)
    return cleaned


def spec_schema(spec: Mapping[str, Field], *, partial: bool = False, rules: tuple[Rule, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of an object made of ``spec``'s fields, keeping ``rules``."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: field.schema() for name, field in spec.items()},
        "additionalProperties": False,
    }
    required = [name for name, field in spec.items() if field.required and not partial]
    if required:
        schema["required"] = required
    if rules:
        schema["allOf"] = [rule.schema() for rule in rules]
    return schema
