"""A stacked bar chart as SVG geometry, computed here and drawn by a template.

No JavaScript and nothing fetched: the page works offline and the chart is in
the HTML the server sends (screen readers get each bar's ``<title>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from ..stats.history import Bucket

WIDTH, HEIGHT = 960, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28  # room for the axes' labels
X_LABELS = 8
Y_TICKS = 4
LABEL_STEPS = (5, 10, 15, 30, 60, 120, 180, 240, 360)  # minutes
GAP = 0.2  # share of a slot left empty between bars


@dataclass
class Bar:
    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    top: int = TOP
    baseline: int = HEIGHT - BOTTOM
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[tuple[float, int]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    total_completed: int = 0
    total_failed: int = 0
    peak: int = 0

    @property
    def middle_x(self) -> float:
        return (self.left + self.right_edge) / 2

    @property
    def middle_y(self) -> float:
        return (self.top + self.baseline) / 2

    @property
    def empty(self) -> bool:
        return not (self.total_completed or self.total_failed)


def nice_step(value: float) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def y_scale(peak: int) -> tuple[int, list[int]]:
    """A top of the scale and about four round ticks from 0 up to it."""
    step = nice_step(peak / Y_TICKS)
    top = max(step, math.ceil(peak / step) * step)
    return top, list(range(0, top + 1, step))


def throughput_chart(buckets: list[Bucket], bucket: timedelta) -> Chart:
    chart = Chart()
    chart.peak = max((b.completed + b.failed for b in buckets), default=0)
    chart.total_completed = sum(b.completed for b in buckets)
    chart.total_failed = sum(b.failed for b in buckets)
    top, ticks = y_scale(chart.peak)
    plot_height = chart.baseline - chart.top
    slot = (chart.right_edge - chart.left) / max(1, len(buckets))

    def height_of(count: int) -> float:
        return round(plot_height * count / top, 2)

    for index, item in enumerate(buckets):
        completed, failed = height_of(item.completed), height_of(item.failed)
        chart.bars.append(Bar(
            x=round(chart.left + index * slot + slot * GAP / 2, 2), width=round(slot * (1 - GAP), 2),
            completed_y=round(chart.baseline - completed, 2), completed_height=completed,
            failed_y=round(chart.baseline - completed - failed, 2), failed_height=failed,
            title=f"{label(item.start, bucket)}: {item.completed} completed, {item.failed} failed",
        ))
    chart.y_ticks = [(round(chart.baseline - height_of(value), 2), value) for value in ticks]
    every = label_interval(len(buckets) * bucket)
    chart.x_ticks = [(round(chart.left + index * slot, 2), clock(item.start))
                     for index, item in enumerate(buckets) if on_the_clock(item.start, every)]
    return chart


def label_interval(span: timedelta) -> int:
    """Minutes between time labels: a round interval giving at most X_LABELS labels."""
    minutes = span.total_seconds() / 60
    return next((step for step in LABEL_STEPS if minutes / step <= X_LABELS), LABEL_STEPS[-1])


def on_the_clock(moment: datetime, every: int) -> bool:
    """Whether local ``moment`` falls on a multiple of ``every`` minutes (10:00, 10:30 ...)."""
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    return (local.hour * 60 + local.minute) % every == 0


def clock(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M") if timezone.is_aware(moment) else moment.strftime("%H:%M")


def label(start: datetime, bucket: timedelta) -> str:
    return f"{clock(start)}–{clock(start + bucket)}"
