"""Cron expressions: validation with messages that name the bad field, and fire
times computed on the schedule's own wall clock.

Policy (documented in the README):
- 5 fields (minute hour day-of-month month day-of-week), as croniter reads them, or
  one of the macros in ``MACROS``. Seconds and year fields are refused.
- Fire times are wall-clock times in the schedule's time zone. A time that does not
  exist (spring forward) fires at the same wall time shifted by the gap (02:30 becomes
  03:30 in Europe/Berlin; ``*/20 2 * * *`` fires at 03:00, 03:20 and 03:40 that day),
  once if that lands on a time that fires anyway; a time that occurs twice (fall back)
  fires once, at its first occurrence, so nothing fires in the second pass of the
  repeated hour. So a daily run is neither skipped nor doubled by DST.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from functools import lru_cache
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


@lru_cache(maxsize=1024)
def expanded(expression: str) -> str:
    """``expand``, remembered: validating costs several croniter parses, and the scheduler
    computes fire times of the same few expressions over and over."""
    return expand(expression)


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
    """The first fire time strictly after ``after`` (aware), as an aware UTC datetime.

    Walks the expression's wall times with croniter and turns each into an instant
    with ``fold=0``: an ambiguous wall time (fall back) is its first occurrence, and
    a wall time in a spring-forward gap is read with the offset from before the gap,
    which is the same wall time shifted by the gap. Near a transition those instants
    are not in wall-time order (02:20, shifted to 03:20, comes after 03:00), so the
    walk starts a little before ``after`` and keeps the earliest instant past it.
    """
    tz = zone(timezone_name)
    text = expanded(expression)
    if shift := offset_change_near(tz, after):
        return earliest_near_transition(text, tz, after, shift)
    fire = first_after(text, tz, after, after.astimezone(tz).replace(tzinfo=None))
    if shift := offset_change_near(tz, fire):
        # The first fire lies by a transition: a wall time after it may come first (Lord
        # Howe's 30-minute gap moves 02:10 to 02:40, after a real 02:35).
        return earliest_near_transition(text, tz, after, shift)
    return fire


# No time zone moves its clock by more than this at once (Antarctica/Troll: 2 h).
LARGEST_SHIFT = timedelta(hours=3)
UTC = ZoneInfo("UTC")


def offset_change_near(tz: ZoneInfo, instant: datetime) -> timedelta:
    """How far the zone's clock jumps within LARGEST_SHIFT of ``instant`` (zero: no transition)."""
    offsets = [offset(instant + delta, tz) for delta in (-LARGEST_SHIFT, timedelta(0), LARGEST_SHIFT)]
    return max(offsets) - min(offsets)


def offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    """The zone's UTC offset at ``instant`` (an aware time in a ZoneInfo always has one)."""
    found = instant.astimezone(tz).utcoffset()
    assert found is not None
    return found


@lru_cache(maxsize=256)
def parsed(text: str) -> croniter:
    return croniter(text, datetime(2000, 1, 1))


def walker(text: str, start: datetime) -> croniter:
    """A croniter from ``start``: a copy of one parsed once (parsing is most of its cost)."""
    walk = copy.copy(parsed(text))
    walk.set_current(start, force=True)
    return walk


def instant_of(wall: datetime, tz: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def first_after(text: str, tz: ZoneInfo, after: datetime, start_wall: datetime) -> datetime:
    """Far from a transition wall times and instants run in step: the first one past is it."""
    walk = walker(text, start_wall)
    while True:
        fire = instant_of(walk.get_next(datetime), tz)
        if fire > after:
            return fire


def earliest_near_transition(text: str, tz: ZoneInfo, after: datetime, shift: timedelta) -> datetime:
    """The earliest instant past ``after`` among wall times from its own on (from ``shift``
    before it if the clock sprang forward just before).

    Instants follow wall times everywhere but in a spring-forward gap, whose wall times
    move forward by the gap: no wall time earlier than ``shift`` before ``after`` can land
    past it, and the first wall time outside a gap that lands past it ends the search
    (every later one lands later still, and so does every gap wall time after it).
    """
    start = after.astimezone(tz).replace(tzinfo=None)
    if offset(after - shift, tz) < offset(after, tz):
        start -= shift  # the clock sprang forward just before: the gap's wall times lie behind ``after``'s
    walk = walker(text, start)
    best: datetime | None = None
    while True:
        wall = walk.get_next(datetime)
        fire = instant_of(wall, tz)
        if fire > after:
            best = fire if best is None else min(best, fire)
            if not in_gap(wall, tz):
                return best


def in_gap(wall: datetime, tz: ZoneInfo) -> bool:
    """A wall time the clock skips (spring forward) does not survive a round trip."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall


def upcoming(expression: str, timezone_name: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``."""
    times = []
    for _ in range(count):
        after = next_fire_after(expression, timezone_name, after)
        times.append(after)
    return times


