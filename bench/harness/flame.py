"""Summarise a py-spy profile of a worker as text: where the samples went, by part of
the worker (claim, run, record, ...) and, inside each part, by layer (driver, ORM, ...).

    py-spy record --threads --format raw -o drain.txt -- python -m django run_jobworker --burst ...
    python -m bench.harness.flame drain.txt

``--format raw`` is py-spy's collapsed-stack output: one line per distinct stack,
``frame;frame;...;frame COUNT``, the thread first, the innermost frame last.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

# (part of the worker, a frame that marks it): the innermost frame that matches decides,
# and within one frame the first row of this table.
PARTS = [
    ("claim (SELECT ... FOR UPDATE SKIP LOCKED + UPDATE)", "claiming.py"),
    ("record outcomes: signals", "announce_completed"),
    ("record outcomes: UPDATE", "recording.py"),
    ("run: job_started signal + log line", "attempt (django_jobs/executor.py"),
    ("run: resolve job, check arguments", "check_arguments"),
    ("run: resolve job, check arguments", "check_stored_arguments"),
    ("run: the job function", "call (django_jobs/executor.py"),
    ("run: JSON check of the result", "json_value"),
    ("run: connection health check", "release_broken_connections"),
    ("job thread: take from buffer / hand over outcome", "job_thread"),
    ("heartbeat", "heartbeat_thread"),
    ("wake-up: wait for work or a notification", "wakeup.py"),
    ("cron", "cron_thread"),
    ("worker loop (no claim)", "JobWorker.loop"),
    ("start-up and shut-down", "run_jobworker"),
    ("start-up and shut-down", "execute_from_command_line"),
    ("start-up and shut-down", "_find_and_load"),
    ("recorder thread: waiting for outcomes", "recorder_thread"),
]
LAYERS = [
    ("driver (psycopg)", "psycopg/"),
    ("SQL compiler", "django/db/models/sql/"),
    ("model instances", "django/db/models/base.py"),
    ("ORM other", "django/db/"),
    ("signals", "django/dispatch/"),
    ("logging", "logging/"),
    ("json", "json/"),
    ("threads, queues, locks", "threading.py"),
    ("threads, queues, locks", "queue.py"),
]


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks.append((stack.split(";"), int(count)))
    return stacks


def first_match(frames: list[str], table: list[tuple[str, str]], default: str) -> str:
    for frame in frames:
        for name, marker in table:
            if marker in frame:
                return name
    return default


def leaf_layer(frames: list[str]) -> str:
    """The layer of the innermost frame (a C call shows as its Python caller)."""
    for frame in reversed(frames):
        if "django_jobs/" in frame:
            return "django_jobs"
        layer = first_match([frame], LAYERS, "")
        if layer:
            return layer
    return "other"


def thread_role(frames: list[str]) -> str:
    """py-spy's first frame is ``thread (id): name``; job threads are numbered."""
    name = frames[0].partition(": ")[2] or "unnamed"
    return "job threads" if name.startswith("django-jobs-job-") else name.removeprefix("django-jobs-")


def summarise(stacks: list[tuple[list[str], int]]) -> str:
    """Per thread role, its share of all samples; inside, each part and its layers."""
    roles: Counter[str] = Counter()
    parts: dict[str, Counter[str]] = defaultdict(Counter)
    layers: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for frames, count in stacks:
        role, part = thread_role(frames), first_match(list(reversed(frames[1:])), PARTS, "other")
        roles[role] += count
        parts[role][part] += count
        layers[role, part][leaf_layer(frames)] += count
    total = sum(roles.values()) or 1
    lines = [f"{total} samples"]
    for role, role_count in roles.most_common():
        lines.append(f"{role_count * 100 / total:5.1f}%  thread: {role}")
        for part, count in parts[role].most_common():
            split = ", ".join(f"{name} {n * 100 / count:.0f}%" for name, n in layers[role, part].most_common(4))
            lines.append(f"   {count * 100 / total:5.1f}%  {part}  [{split}]")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    for name in argv or ["-"]:
        print(f"== {name}")
        print(summarise(parse(Path(name))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
