"""Cron expressions, time zones and DST: fire times on the schedule's wall clock."""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError

from django_jobs.cron import expand, next_fire_after, upcoming

UTC = ZoneInfo("UTC")


@pytest.mark.parametrize("expression, field", [
    ("61 * * * *", "minute field '61'"),
    ("* 24 * * *", "hour field '24'"),
    ("* * 0 * *", "day of month field '0'"),
    ("* * * 13 *", "month field '13'"),
    ("* * * * 8", "day of week field '8'"),
    ("*/x * * * *", "minute field '*/x'"),
])
def test_a_bad_field_is_named(expression, field):
    with pytest.raises(ValidationError, match=re.escape(field)):
        expand(expression)


@pytest.mark.parametrize("expression", ["* * *", "", "0 0 * * * *", "0 0 1 1 * 2030"])
def test_wrong_number_of_fields(expression):
    with pytest.raises(ValidationError, match="5 fields"):
        expand(expression)


def test_macros():
    assert expand("@hourly") == "0 * * * *"
    assert expand("@daily") == expand("@midnight") == "0 0 * * *"
    assert expand("@weekly") == "0 0 * * 0"
    assert expand("@monthly") == "0 0 1 * *"
    assert expand("@yearly") == expand("@annually") == "0 0 1 1 *"
    with pytest.raises(ValidationError, match="Unknown cron macro '@reboot'"):
        expand("@reboot")


def test_valid_expressions_are_normalised():
    assert expand("  0  9 * *   1-5 ") == "0 9 * * 1-5"
    assert expand("0 0 * * MON") == "0 0 * * MON"


def test_next_fire_is_strictly_after_and_aware_utc():
    after = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    fire = next_fire_after("0 9 * * *", "UTC", after)
    assert fire == datetime(2026, 5, 2, 9, 0, tzinfo=UTC)
    assert fire.utcoffset().total_seconds() == 0


def test_fire_times_are_in_the_schedule_time_zone():
    after = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)
    fire = next_fire_after("0 9 * * *", "Asia/Tokyo", after)
    assert fire.astimezone(ZoneInfo("Asia/Tokyo")).hour == 9
    assert fire == datetime(2026, 5, 1, 0, 0, tzinfo=UTC) + (fire - after)


def daily(expression, zone, start, days):
    local = ZoneInfo(zone)
    return [fire.astimezone(local) for fire in upcoming(expression, zone, start, days)]


@pytest.mark.parametrize("zone, start, expected_gap_day", [
    ("Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC), 29),     # 2026-03-29 02:00 -> 03:00
    ("America/New_York", datetime(2026, 3, 6, 12, tzinfo=UTC), 8),    # 2026-03-08 02:00 -> 03:00
])
def test_spring_forward_neither_skips_nor_doubles_a_daily_run(zone, start, expected_gap_day):
    fires = daily("30 2 * * *", zone, start, 5)
    dates = [fire.date() for fire in fires]
    # One run a day, no day missed.
    assert [(later - earlier).days for earlier, later in zip(dates, dates[1:])] == [1, 1, 1, 1]
    gap = next(fire for fire in fires if fire.day == expected_gap_day)
    assert (gap.hour, gap.minute) == (3, 30)  # 02:30 does not exist that day
    assert all((fire.hour, fire.minute) == (2, 30) for fire in fires if fire.day != expected_gap_day)


@pytest.mark.parametrize("zone, start, expression", [
    ("Europe/Berlin", datetime(2026, 10, 23, 12, tzinfo=UTC), "30 2 * * *"),     # 03:00 -> 02:00 on 10-25
    ("America/New_York", datetime(2026, 10, 30, 12, tzinfo=UTC), "30 1 * * *"),  # 02:00 -> 01:00 on 11-01
])
def test_fall_back_runs_an_ambiguous_daily_time_once(zone, start, expression):
    fires = daily(expression, zone, start, 5)
    days = [fire.date() for fire in fires]
    assert len(set(days)) == 5
    assert all(fire.fold == 0 for fire in fires)
    # Consecutive runs are a day apart in wall time, 23-25 hours in real time.
    for earlier, later in zip(fires, fires[1:]):
        hours = (later - earlier).total_seconds() / 3600
        assert 23 <= hours <= 25


def test_fall_back_from_inside_the_repeated_hour_does_not_fire_again():
    # 2026-10-25 in Berlin: 02:30 CEST (00:30 UTC) fired; now is 02:10 CET (01:10 UTC).
    inside_second_pass = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)
    fire = next_fire_after("30 2 * * *", "Europe/Berlin", inside_second_pass)
    assert fire.astimezone(ZoneInfo("Europe/Berlin")).day == 26


def test_unknown_time_zone():
    with pytest.raises(ValidationError, match="Unknown time zone 'Mars/Base'"):
        next_fire_after("* * * * *", "Mars/Base", datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *"])
def test_an_expression_that_never_fires_is_refused(expression):
    with pytest.raises(ValidationError, match="never fires"):
        expand(expression)


def test_february_29th_fires_in_leap_years():
    assert expand("0 0 29 2 *") == "0 0 29 2 *"
