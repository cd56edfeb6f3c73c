"""Plain-text tables for the management commands: aligned columns, no dependencies."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

RIGHT_ALIGNED = (int, float)


def render(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns as wide as their widest cell; numbers right-aligned; a rule under the header."""
    cells = [[cell_text(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[index]) for row in cells)]) for index, header in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(row[index], RIGHT_ALIGNED) for row in rows) for index in range(len(headers))]
    lines = [line(headers, widths, [False] * len(headers)), "  ".join("-" * width for width in widths)]
    lines += [line(row, widths, numeric) for row in cells]
    return "\n".join(lines)


def line(values: Sequence[str], widths: list[int], numeric: list[bool]) -> str:
    parts = [value.rjust(width) if right else value.ljust(width) for value, width, right in zip(values, widths, numeric)]
    return "  ".join(parts).rstrip()


def cell_text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return local_time(value)
    return str(value)


def local_time(value: datetime) -> str:
    """In the project's TIME_ZONE, to the second."""
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def shorten(text: str, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters with an ellipsis."""
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"
