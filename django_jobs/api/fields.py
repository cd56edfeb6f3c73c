"""Input fields. Each validates one value of a request (a JSON body member or a
query parameter) and describes itself as JSON Schema, so one declaration in
``routes.py`` is both the validation and the OpenAPI document.

A refused value raises ``FieldError`` with a message that says what is expected;
``clean_fields`` gathers them by field name into one 400 answer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from .. import validation
from ..exceptions import InvalidJobOption, UnknownJob
from .http import ApiError

MISSING: Any = object()
WHOLE_NUMBER = re.compile(r"-?[0-9]{1,19}")
# Every supported database stores these years; beyond them some refuse the value.
EARLIEST_YEAR, LATEST_YEAR = 1970, 9998


class FieldError(ValueError):
    """A value a field refuses."""


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

    def clean_text(self, text: str) -> Any:
        """A query parameter's value (always text) converted, then cleaned."""
        return self.clean(self.from_text(text))

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
        return value

    def value_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.choices:
            schema["enum"] = list(self.choices)
        return schema


@dataclass(frozen=True, kw_only=True)
class Integer(Field):
    minimum: int
    maximum: int

    def from_text(self, text: str) -> Any:
        return int(text) if WHOLE_NUMBER.fullmatch(text) else text

    def check(self, value: Any) -> int:
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
        return {"type": "array"}


@dataclass(frozen=True, kw_only=True)
class Object(Field):
    """A JSON object of any values (keyword arguments, metadata)."""

    def check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldError("Must be a JSON object.")
        return value

    def value_schema(self) -> dict[str, Any]:
        return {"type": "object"}


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
        return local_time(in_range(moment))

    def value_schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time"}


def in_range(moment: datetime) -> datetime:
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_YEAR <= utc.year <= LATEST_YEAR:
        raise FieldError(f"Must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}.")
    return utc


def local_time(moment: datetime) -> datetime:
    # Without USE_TZ, Django stores naive local times and refuses aware ones.
    return moment if settings.USE_TZ else timezone.make_naive(moment)


@dataclass(frozen=True, kw_only=True)
class Priority(Field):
    """-100..100, higher runs first, or a name (critical 100, high 50, normal 0, low -50)."""

    def check(self, value: Any) -> int:
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
        return {"type": "string", "description": f"One or more of {', '.join(self.choices)}, separated by commas."}


def registered_job(name: str) -> None:
    """Validator: ``name`` is a registered job."""
    from ..registry import registry

    if name not in registry:
        raise FieldError(str(UnknownJob(name)))


def allowed_queue(name: str) -> None:
    """Validator: ``DJANGO_JOBS["QUEUES"]``, when set, allows ``name``."""
    try:
        validation.queue(name)
    except InvalidJobOption as error:
        raise FieldError(str(error)) from None


def clean_fields(spec: dict[str, Field], data: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """``data`` checked against ``spec``: every unknown, missing or refused field is
    reported at once (400). ``partial`` (PATCH) requires nothing and fills no defaults."""
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
    if errors:
        raise ApiError(400, errors)
    return cleaned


def spec_schema(spec: dict[str, Field], *, partial: bool = False) -> dict[str, Any]:
    """The JSON Schema of an object made of ``spec``'s fields."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: field.schema() for name, field in spec.items()},
        "additionalProperties": False,
    }
    required = [name for name, field in spec.items() if field.required and not partial]
    if required:
        schema["required"] = required
    return schema
