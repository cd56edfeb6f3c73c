"""Cron expressions: validation with messages that name the bad field, and fire
times computed on the schedule's own wall clock.

Policy (documented in the README):
- 5 fields (minute hour day-of-month month day-of-week), as croniter reads them, or
  one of the macros in ``MACROS``. Seconds and year fields are refused.
- Fire times are wall-clock times in the schedule's time zone. A time that does not
  exist (spring forward) fires at the same wall time shifted by the gap (02:30 becomes
  03:30 in Europe/Berlin); a time that occurs twice (fall back) fires once, at its
  first occurrence. So a daily run is neither skipped nor doubled by DST.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from django.conf import settings
from django.core.exceptions import ValidationError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = ("minute", "hour", "day of month", "month", "day of week")
RANGES = ("0-59", "0-23", "1-31", "1-12 or JAN-DEC", "0-6 or SUN-SAT")
# Enough to step over any DST ambiguity while looking for the next fire time.
MAX_STEPS = 10


def expand(expression: str) -> str:
    """The 5-field form of ``expression`` (macros expanded), or ValidationError."""
    text = " ".join(str(expression).split())
    if text.startswith("@"):
        if text.lower() in MACROS:
            return MACROS[text.lower()]
        raise ValidationError(
            f"Unknown cron macro {text!r}; supported: {', '.join(MACROS)}.", code="invalid_cron"
        )
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise ValidationError(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week); "
            f"{text!r} has {len(fields)}.", code="invalid_cron",
        )
    for index, field in enumerate(fields):
        probe = ["*"] * 5
        probe[index] = field
        if not croniter.is_valid(" ".join(probe)):
            raise ValidationError(
                f"Invalid {FIELDS[index]} field {field!r} in {text!r} (allowed: {RANGES[index]}, with , - / *).",
                code="invalid_cron",
            )
    if not croniter.is_valid(text):
        raise ValidationError(f"Invalid cron expression {text!r}.", code="invalid_cron")
    check_it_fires(text)
    return text


def check_it_fires(text: str) -> None:
    """Valid fields can still name a day that never comes (``0 0 30 2 *``): refuse it."""
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValidationError(f"Cron expression {text!r} never fires (no such date).", code="invalid_cron") from None


def validate_expression(expression: str) -> None:
    """Field validator for forms and ``full_clean``."""
    expand(expression)


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or settings.TIME_ZONE when empty."""
    try:
        return ZoneInfo(name or settings.TIME_ZONE or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Unknown time zone {name!r}; use an IANA name such as 'Europe/Berlin'.",
                              code="invalid_timezone") from None


def validate_timezone(name: str) -> None:
    zone(name)


def next_fire_after(expression: str, timezone_name: str, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware), as an aware UTC datetime."""
    tz = zone(timezone_name)
    local_after = after.astimezone(tz)
    wall = croniter(expand(expression), local_after.replace(tzinfo=None))
    for _ in range(MAX_STEPS):
        candidate = wall.get_next(datetime)
        # fold=0: an ambiguous wall time means its first occurrence; a wall time in a
        # spring-forward gap resolves to the instant the gap ends plus its offset.
        fire = candidate.replace(tzinfo=tz, fold=0).astimezone(ZoneInfo("UTC"))
        if fire > after:
            return fire
    raise ValueError(f"No fire time found for {expression!r} after {after.isoformat()}")


def upcoming(expression: str, timezone_name: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``."""
    times = []
    for _ in range(count):
        after = next_fire_after(expression, timezone_name, after)
        times.append(after)
    return times


