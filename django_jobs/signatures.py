"""Signatures: a job, its arguments and its enqueue options, checked, not yet enqueued.

``job.s(*args, **kwargs)`` makes one; ``django_jobs.enqueue_many`` writes many of them,
of any jobs, in one transaction; workflows (chain, group) are built from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from django.utils import timezone

from . import validation
from .exceptions import InvalidJobOption
from .registry import Job, UnknownJobOption, registry

if TYPE_CHECKING:
    from .models import ScheduledTask

P = ParamSpec("P")
R = TypeVar("R")

# When a signature's task may run: what ``Signature.using`` accepts besides ``Job.using``'s options.
TIMING_OPTIONS = frozenset({"delay", "run_at"})
NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


@dataclasses.dataclass(frozen=True)
class Signature(Generic[P, R]):
    """A call of ``job`` to enqueue later: ``job.s(*args, **kwargs)``.

    ``job`` carries the task options (``job.using(queue=..., priority=...)``);
    ``options`` says when the task may run: ``{"delay": timedelta}``, ``{"run_at":
    datetime}`` or nothing (as soon as a worker is free). Made, the arguments are
    checked as ``enqueue`` checks them (they fit the function and survive JSON) and held
    as they will be stored; nothing can be changed afterwards, ``using`` makes a copy.
    """

    job: Job[P, R]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # ``[args, kwargs]`` as stored, in JSON: the text of its row in enqueue_many's document.
    json: str = dataclasses.field(default="[[],{}]", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        registry.get(self.job.name)  # UnknownJob, as at enqueue
        args, kwargs = list(self.args), dict(self.kwargs)
        self.job.check_arguments(args, kwargs)
        text, stored_args, stored_kwargs = validation.json_pair(args, kwargs)
        # Frozen: the fields are set once, here (one update instead of four __setattr__).
        self.__dict__.update(args=tuple(stored_args), kwargs=MappingProxyType(stored_kwargs), json=text,
                             options=MappingProxyType(timing(self.options)) if self.options else NO_OPTIONS)

    def using(self, **options: Any) -> Signature[P, R]:
        """A copy with other options: ``Job.using``'s (queue, priority ...) and ``delay``
        (seconds or timedelta) or ``run_at`` (aware datetime); either replaces the other."""
        job_options = {name: value for name, value in options.items() if name not in TIMING_OPTIONS}
        when = {name: value for name, value in options.items() if name in TIMING_OPTIONS}
        copy = object.__new__(Signature)
        # The arguments fit the same function and are stored already: checked once is enough.
        copy.__dict__.update(self.__dict__, job=self.job.using(**job_options) if job_options else self.job)
        if when:
            copy.__dict__["options"] = MappingProxyType(timing(when))
        return copy

    def run_at(self, now: datetime) -> datetime | None:
        """When the task may run if enqueued at ``now``; None: no time of its own."""
        if "delay" in self.options:
            return now + self.options["delay"]
        return self.options.get("run_at")

    def enqueue(self) -> ScheduledTask:
        """Store this call alone, like ``job.enqueue(*args, **kwargs)`` (``unique_key`` included)."""
        from .enqueueing import enqueue_one  # this module loads with ``django_jobs``, before the models

        return enqueue_one(self.job, list(self.args), dict(self.kwargs), run_at=self.run_at(timezone.now()))


def timing(options: Mapping[str, Any]) -> dict[str, Any]:
    """``{"delay": timedelta}``, ``{"run_at": datetime}`` or ``{}``, checked; else an exception."""
    unknown = set(options) - TIMING_OPTIONS
    if unknown:
        raise UnknownJobOption(f"Unknown signature option(s) {sorted(unknown)}; allowed: {sorted(TIMING_OPTIONS)}")
    if options.get("delay") is not None and options.get("run_at") is not None:
        raise InvalidJobOption("Pass delay or run_at, not both.")
    if options.get("delay") is not None:
        delay: timedelta = validation.duration(options["delay"], "delay")
        return {"delay": delay}
    if options.get("run_at") is not None:
        return {"run_at": validation.run_time(options["run_at"])}
    return {}
