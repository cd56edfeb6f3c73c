"""Flow control's values: concurrency limits, rates, key templates and ``QUEUE_LIMITS``.

What a limit means, checked where it is declared (``@job``, ``using()``, the setting),
so that a bad value is an error at import or at start, never a limit silently ignored.
The claim that enforces them is the engines' (``django_jobs.db.flow``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import InvalidJobOption, JobArgumentsError

# "N/s", "N/m", "N/h" (also spelled out: "100/minute"); N a whole number >= 1.
RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
PERIOD_NAMES = {1: "s", 60: "m", 3600: "h"}
# Far beyond any real limit, far below the columns' range (2**31 - 1).
MAX_LIMIT = 1_000_000
MAX_KEY_LENGTH = 255
QUEUE_LIMIT_NAMES = frozenset({"concurrency", "rate"})


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` starts per ``period`` seconds."""

    limit: int
    period: int

    def __str__(self) -> str:
        return f"{self.limit}/{PERIOD_NAMES[self.period]}"


@dataclass(frozen=True)
class Declared:
    """The limits a job's code declares (``@job(concurrency=..., rate=...)``). A task
    enqueued with them stores NULL limits beside its keys, and workers apply what the
    code they run declares: a limit changed in code holds from the next worker start,
    for the tasks already waiting too. A limit given for one call (``using()``) that
    differs from the declaration is stored with the task and stays its own."""

    concurrency: int | None = None
    rate: Rate | None = None


NOT_DECLARED = Declared()


def concurrency(value: Any, what: str = "concurrency") -> int | None:
    """A whole number from 1 to ``MAX_LIMIT``, or None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidJobOption(f"{what} must be a whole number from 1 to {MAX_LIMIT:,}, not {value!r}")
    return value


def rate(value: Any, what: str = "rate") -> Rate | None:
    """``"N/s"``, ``"N/m"`` or ``"N/h"`` (or a ``Rate``), or None (no limit)."""
    if value is None or isinstance(value, Rate):
        return value
    match = RATE.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidJobOption(f'{what} must be "N/s", "N/m" or "N/h" with N a whole number, not {value!r}')
    limit = int(match.group(1))
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidJobOption(f"{what} {value!r}: N must be from 1 to {MAX_LIMIT:,}")
    return Rate(limit, PERIODS[match.group(2)])


def key_template(value: Any, what: str, parameters: Mapping[str, Any] | None) -> str | None:
    """A key template such as ``"account:{account_id}"``: every field must name a
    parameter of the job (``parameters``; None when unknown, as for ``using()``)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidJobOption(f"{what} must be a non-empty string, not {value!r}")
    for name in field_names(value, what):
        if parameters is not None and name not in parameters:
            raise InvalidJobOption(f"{what} {value!r} names {{{name}}}, which is not a parameter of the job "
                                   f"(parameters: {', '.join(parameters) or 'none'})")
    return value


def field_names(template: str, what: str) -> list[str]:
    """The argument names a template reads (``{account.id}`` reads ``account``)."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise InvalidJobOption(f"{what} {template!r} is not a valid template: {error}") from None
    names = []
    for field in fields:
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise InvalidJobOption(f"{what} {template!r}: name each argument ({{account_id}}), not {{{field}}}")
        names.append(name)
    return names


def filled(template: str, arguments: Mapping[str, Any], what: str, job_name: str) -> str:
    """The key of one call: ``template`` filled from its arguments by name."""
    try:
        key = template.format_map(arguments)
    except (KeyError, AttributeError, IndexError, TypeError, ValueError) as error:
        raise JobArgumentsError(f"{what} {template!r} of job {job_name!r} cannot be filled from the call's "
                                f"arguments {sorted(arguments)}: {type(error).__name__}: {error}") from None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise JobArgumentsError(f"{what} of job {job_name!r} must be 1 to {MAX_KEY_LENGTH} characters once filled; "
                                f"{template!r} gave {len(key)}")
    return key


@dataclass(frozen=True)
class QueueLimit:
    concurrency: int | None
    rate: Rate | None


def queue_limits(value: Any) -> dict[str, QueueLimit]:
    """``DJANGO_JOBS["QUEUE_LIMITS"]``: queue name -> ``{"concurrency": N, "rate": "N/m"}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidJobOption(f"QUEUE_LIMITS must be a dict of queue name -> limits, not {value!r}")
    limits = {}
    for queue, spec in value.items():
        if not isinstance(queue, str) or not queue:
            raise InvalidJobOption(f"QUEUE_LIMITS: queue names must be non-empty strings, not {queue!r}")
        if not isinstance(spec, Mapping) or not spec or set(spec) - QUEUE_LIMIT_NAMES:
            raise InvalidJobOption(f"QUEUE_LIMITS[{queue!r}] must be a dict of 'concurrency' and/or 'rate', "
                                   f"not {spec!r}")
        limits[queue] = QueueLimit(concurrency(spec.get("concurrency"), f"QUEUE_LIMITS[{queue!r}]['concurrency']"),
                                   rate(spec.get("rate"), f"QUEUE_LIMITS[{queue!r}]['rate']"))
    return limits
