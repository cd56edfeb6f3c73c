"""Cron across DST, checked against a reference of the README's policy written here,
independently of django_jobs.cron (no croniter, no fold arithmetic):

- every wall-clock minute that matches the expression fires;
- a matching wall time that occurs once fires then; one that occurs twice (fall back)
  fires at its first occurrence only; one that does not occur (spring forward) fires
  at the same wall time shifted by the gap, i.e. read with the offset from before it;
- several wall times landing on one instant fire once.

The reference maps UTC minutes to wall times (the one direction that is never
ambiguous) and derives the fire instants from that map. For every minute of each
transition day (and a margin) of zones with 1-hour rules in both hemispheres, a
30-minute rule (Lord Howe), an odd offset (Chatham, +12:45/+13:45) and none (Kolkata),
``next_fire_after`` must give the reference's next fire. Then the paths that use it:
the worker's tick in the repeated hour and through the gap, downtime, enabling.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from django_jobs import cron

UTC = timezone.utc
YEAR = 2027
ZONES = ["Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe", "Pacific/Chatham",
         "Asia/Kolkata"]
EXPRESSIONS = ["* * * * *", "*/5 * * * *", "*/20 2 * * *", "30 2 * * *", "0 2 * * 0", "10,35 1-3 * * *",
               "45 0,1,2,3 * * *", "0 0 * * *"]
MARGIN = timedelta(hours=4)


# -- the reference -----------------------------------------------------------------------------------------
def field_values(field: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = map(int, part.split("-"))
        else:
            start = end = int(part)
        values.update(range(start, end + 1, step))
    return values


def matcher(expression: str):
    """A predicate on wall times for a 5-field expression (numbers, ranges, lists, steps, *)."""
    minute, hour, day, month, weekday = expression.split()
    minutes, hours, days = field_values(minute, 0, 59), field_values(hour, 0, 23), field_values(day, 1, 31)
    months, weekdays = field_values(month, 1, 12), field_values(weekday, 0, 6)

    def matches(wall: datetime) -> bool:
        return (wall.minute in minutes and wall.hour in hours and wall.day in days and wall.month in months
                and (wall.isoweekday() % 7) in weekdays)

    return matches


def reference_fires(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The policy's fire instants (UTC) for wall times between those of ``start`` and ``end``."""
    occurrences: dict[datetime, list[datetime]] = {}
    minute = start - timedelta(days=1)
    while minute <= end + timedelta(days=1):
        occurrences.setdefault(minute.astimezone(zone).replace(tzinfo=None), []).append(minute)
        minute += timedelta(minutes=1)
    fires = set()
    matches = matcher(expression)
    wall = (start - timedelta(hours=12)).astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    last_wall = (end + timedelta(hours=12)).astimezone(zone).replace(tzinfo=None)
    while wall <= last_wall:
        if matches(wall):
            instants = occurrences.get(wall)
            fires.add(min(instants) if instants else gap_instant(wall, zone, occurrences))
        wall += timedelta(minutes=1)
    return sorted(fires)


def gap_instant(wall: datetime, zone: ZoneInfo, occurrences: dict[datetime, list[datetime]]) -> datetime:
    """A wall time that never occurs, read with the offset in force just before the gap."""
    before = wall
    while before not in occurrences:  # the last wall time before the gap that did occur
        before -= timedelta(minutes=1)
    instant = max(occurrences[before])
    offset_before = instant.astimezone(zone).utcoffset()
    return (wall - offset_before).replace(tzinfo=UTC)


def transition_days(zone: ZoneInfo) -> list[datetime]:
    """The UTC instants where the zone's offset changes in YEAR (hour by hour, then to the minute)."""
    found = []
    hour = datetime(YEAR, 1, 1, tzinfo=UTC)
    while hour.year == YEAR:
        following = hour + timedelta(hours=1)
        if hour.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            minute = hour
            while minute.astimezone(zone).utcoffset() == hour.astimezone(zone).utcoffset():
                minute += timedelta(minutes=1)
            found.append(minute)
        hour = following
    return found or [datetime(YEAR, 3, 28, 21, tzinfo=UTC)]  # no DST: any day


def cases():
    for name in ZONES:
        for transition in transition_days(ZoneInfo(name)):
            yield pytest.param(name, transition, id=f"{name}-{transition:%Y-%m-%dT%H:%M}")


# -- the property ------------------------------------------------------------------------------------
@pytest.mark.once
@pytest.mark.parametrize("zone_name, transition", list(cases()))
def test_every_minute_of_a_transition_day_gets_the_policy_s_next_fire(zone_name, transition):
    zone = ZoneInfo(zone_name)
    local = transition.astimezone(zone)
    day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC) - MARGIN
    day_end = day_start + timedelta(days=1) + 2 * MARGIN
    mismatches, checked = [], 0
    for expression in EXPRESSIONS:
        fires = reference_fires(expression, zone, day_start, day_end + timedelta(days=8))
        moment = day_start
        while moment <= day_end:
            expected = fires[bisect_right(fires, moment)]
            got = cron.next_fire_after(expression, zone_name, moment)
            checked += 1
            if got != expected:
                mismatches.append((expression, moment.astimezone(zone).isoformat(), got.astimezone(zone).isoformat(),
                                   expected.astimezone(zone).isoformat()))
            moment += timedelta(minutes=1)
    assert not mismatches, f"{len(mismatches)} of {checked} minutes wrong, e.g. {mismatches[:5]}"


# -- the policy's examples, by hand ------------------------------------------------------------------
BERLIN = ZoneInfo("Europe/Berlin")


def berlin(*args, fold=0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold).astimezone(UTC)


def test_every_twenty_minutes_of_hour_two_fires_three_times_on_spring_forward_day():
    after = berlin(YEAR, 3, 28, 1, 59)
    assert [moment.astimezone(BERLIN).strftime("%H:%M") for moment in cron.upcoming("*/20 2 * * *", "Europe/Berlin",
                                                                                      after, 4)] == \
        ["03:00", "03:20", "03:40", "02:00"]  # then the next day's 02:00, which exists again


def test_two_thirty_enabled_at_three_ten_on_spring_forward_day_fires_at_three_thirty():
    fire = cron.next_fire_after("30 2 * * *", "Europe/Berlin", berlin(YEAR, 3, 28, 3, 10))
    assert fire == berlin(YEAR, 3, 28, 3, 30)


def test_nothing_fires_in_the_second_pass_of_the_repeated_hour_and_the_next_fire_is_after_it():
    second_pass = berlin(YEAR, 10, 31, 2, 30, fold=1)
    assert cron.next_fire_after("* * * * *", "Europe/Berlin", second_pass) == berlin(YEAR, 10, 31, 3, 0)
    first_pass = berlin(YEAR, 10, 31, 2, 30, fold=0)
    assert cron.next_fire_after("* * * * *", "Europe/Berlin", first_pass) == berlin(YEAR, 10, 31, 2, 31)


# -- the paths that compute fire times: the worker's tick, downtime, enabling --------------------------------
def make_schedule(expression: str, next_run: datetime, zone: str = "Europe/Berlin"):
    from django_jobs.models import CronSchedule

    # "allow": these tests count the fire times, with no worker to finish the tasks.
    schedule = CronSchedule.objects.create(name=f"s-{expression}", job_name="tests.noop", expression=expression,
                                           timezone=zone, overlap="allow")
    CronSchedule.objects.filter(pk=schedule.pk).update(next_run=next_run)
    return schedule


def fired_at(schedule) -> list[str]:
    from django_jobs.models import ScheduledTask

    return [moment.astimezone(BERLIN).strftime("%d %H:%M%z") for moment in
            ScheduledTask.objects.filter(cron_schedule=schedule).order_by("cron_fire_time")
            .values_list("cron_fire_time", flat=True)]


@pytest.mark.django_db(transaction=True)
def test_ticks_through_the_repeated_hour_fire_each_wall_minute_once_and_never_disable():
    from django_jobs import scheduler

    first = berlin(YEAR, 10, 31, 2, 58)
    schedule = make_schedule("* * * * *", first)
    # A worker ticking every minute from 02:58 (first pass) through the second pass to 03:02.
    moment = first
    while moment <= berlin(YEAR, 10, 31, 3, 2):
        scheduler.tick(moment)
        moment += timedelta(minutes=1)
    schedule.refresh_from_db()
    assert schedule.enabled
    # 02:58 and 02:59 in the first pass, nothing in the second, then 03:00 to 03:02.
    assert fired_at(schedule) == ["31 02:58+0200", "31 02:59+0200", "31 03:00+0100", "31 03:01+0100",
                                  "31 03:02+0100"]
    assert schedule.next_run == berlin(YEAR, 10, 31, 3, 3)


@pytest.mark.django_db(transaction=True)
def test_a_worker_back_from_downtime_in_the_second_pass_fires_once_and_keeps_the_schedule():
    from django_jobs import scheduler

    schedule = make_schedule("*/5 * * * *", berlin(YEAR, 10, 31, 1, 40))  # missed since 01:40
    scheduler.tick(berlin(YEAR, 10, 31, 2, 32, fold=1))
    schedule.refresh_from_db()
    assert schedule.enabled and fired_at(schedule) == ["31 01:40+0200"]  # once, not once per missed fire
    assert schedule.next_run == berlin(YEAR, 10, 31, 3, 0)


@pytest.mark.django_db(transaction=True)
def test_ticks_through_the_spring_gap_fire_every_shifted_time():
    from django_jobs import scheduler

    schedule = make_schedule("*/20 2 * * *", berlin(YEAR, 3, 28, 3, 0))
    moment = berlin(YEAR, 3, 28, 1, 59)
    while moment <= berlin(YEAR, 3, 28, 4, 0):
        scheduler.tick(moment)
        moment += timedelta(minutes=1)
    assert fired_at(schedule) == ["28 03:00+0200", "28 03:20+0200", "28 03:40+0200"]
    schedule.refresh_from_db()
    assert schedule.next_run == berlin(YEAR, 3, 29, 2, 0)


@pytest.mark.django_db(transaction=True)
def test_enabling_or_editing_computes_from_now_with_the_same_rules():
    from django_jobs.models import CronSchedule

    schedule = CronSchedule.objects.create(name="edited", job_name="tests.noop", expression="30 2 * * *",
                                           timezone="Europe/Berlin", enabled=False)
    assert schedule.next_run is None
    # save() computes from the real clock; compute_next_run is what it calls, with the time given.
    assert schedule.compute_next_run(berlin(YEAR, 3, 28, 3, 10)) == berlin(YEAR, 3, 28, 3, 30)
    assert schedule.compute_next_run(berlin(YEAR, 10, 31, 2, 45, fold=1)) == berlin(YEAR, 11, 1, 2, 30)
    schedule.enable()
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_run is not None
