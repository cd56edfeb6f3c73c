"""``@job`` and the registry: a name -> ``Job`` map that workers resolve rows against.

A ``Job`` is frozen: ``using(...)`` returns a copy with other enqueue options, so a
module-level job is never changed by one caller's options.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone

from . import limits, validation
from .conf import jobs_settings
from .context import JobContext
from .cron import expand
from .exceptions import DjangoJobsError, InvalidJobOption, JobArgumentsError, UnknownJob

# Users' job modules import this one while Django loads the apps, before the models
# exist: ``enqueueing`` (which imports the models) and ``signatures`` (which imports
# this module) are imported inside the methods that use them.

if TYPE_CHECKING:
    from .models import ScheduledTask
    from .signatures import Signature

P = ParamSpec("P")
R = TypeVar("R")

# Options ``using()`` and ``django_jobs.enqueue(**options)`` accept.
ENQUEUE_OPTIONS = frozenset(
    {"queue", "priority", "description", "max_retries", "retry_delay", "backoff", "timeout", "unique_key", "owner",
     "concurrency", "concurrency_key", "rate", "rate_key"}
)
# The columns of an unlimited task's flow control: all NULL, the claim's fast path.
NO_FLOW: dict[str, Any] = {}
# Options that belong to one call, never to a job's declaration.
PER_CALL_OPTIONS = frozenset({"unique_key", "description", "owner"})
# How many call shapes a job remembers as fitting (``Job.check_arguments``).
MAX_SHAPES = 100


class UnknownJobOption(DjangoJobsError, TypeError):
    """An option name that enqueueing does not know (a typo such as ``queu=``)."""


@dataclasses.dataclass(frozen=True)
class Job(Generic[P, R]):
    """A registered job function and the options its tasks are enqueued with.

    ``None`` for ``queue``, ``max_retries`` and ``retry_delay`` means "the setting's
    default at enqueue time", so ``override_settings`` reaches module-level jobs.
    """

    func: Callable[P, R]
    name: str
    queue: str | None = None
    priority: int = 0
    max_retries: int | None = None
    retry_delay: timedelta | None = None
    backoff: str | Callable[[int], timedelta] = "exponential"
    timeout: timedelta | None = None
    takes_context: bool = False
    cron: str | None = None
    cron_overlap: str | None = None
    description: str = ""
    unique_key: str | None = None
    owner_id: Any = None  # the primary key of the owning user (``using(owner=user)``)
    # Flow control: at most ``concurrency`` running per filled ``concurrency_key`` and
    # ``rate`` starts per filled ``rate_key`` (no key: one limit for the whole job).
    concurrency: int | None = None
    concurrency_key: str | None = None
    rate: limits.Rate | None = None
    rate_key: str | None = None

    # -- running inline ---------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function now, in this process, without a task row."""
        if self.takes_context:
            return self.func(JobContext(task=None, attempt=1), *args, **kwargs)  # type: ignore[arg-type]
        return self.func(*args, **kwargs)

    # -- options --------------------------------------------------------------------
    def using(self, **options: Any) -> Job[P, R]:
        """A copy of this job with other enqueue options (queue, priority, unique_key ...)."""
        unknown = set(options) - ENQUEUE_OPTIONS
        if unknown:
            raise UnknownJobOption(
                f"Unknown enqueue option(s) {sorted(unknown)} for job {self.name!r}; "
                f"allowed: {sorted(ENQUEUE_OPTIONS)}"
            )
        job = dataclasses.replace(self, **validated_options(options))
        job.check_limits()
        return job

    def check_limits(self) -> None:
        """A key needs its limit, and a key template may name only the job's parameters."""
        for limit, key in (("concurrency", "concurrency_key"), ("rate", "rate_key")):
            template = getattr(self, key)
            if template is None:
                continue
            if getattr(self, limit) is None:
                raise InvalidJobOption(f"Job {self.name!r} has {key}={template!r} but no {limit}: "
                                       f"a key groups tasks under a limit, so give the limit too.")
            limits.key_template(template, f"{key} of job {self.name!r}", self.parameters)

    @functools.cached_property
    def parameters(self) -> dict[str, inspect.Parameter] | None:
        """The parameters key templates may name (None: any, as ``**kwargs`` takes any)."""
        parameters = self.call_signature.parameters
        if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
            return None
        return dict(parameters)

    def flow_columns(self, args: Iterable[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The flow-control columns of one call: its keys filled from its arguments, and
        its limits where they differ from the job's declaration (NULL: as declared, so
        that workers apply the limits of the code they run; ``limits.Declared``).

        Raises ``JobArgumentsError`` (nothing written) when a template cannot be filled.
        """
        if self.concurrency is None and self.rate is None:
            return NO_FLOW
        arguments = self.named_arguments(args, kwargs)
        declared = self.declared_limits
        columns: dict[str, Any] = {}
        if self.concurrency is not None:
            columns["concurrency_limit"] = None if self.concurrency == declared.concurrency else self.concurrency
            columns["concurrency_key"] = self.name if self.concurrency_key is None else limits.filled(
                self.concurrency_key, arguments, "concurrency_key", self.name)
        if self.rate is not None:
            own = self.rate != declared.rate
            columns["rate_limit"], columns["rate_period"] = (self.rate.limit, self.rate.period) if own else (None, None)
            columns["rate_key"] = self.name if self.rate_key is None else limits.filled(
                self.rate_key, arguments, "rate_key", self.name)
        return columns

    @property
    def declared_limits(self) -> limits.Declared:
        """The limits the registered job of this name declares (``using()`` copies may differ)."""
        return declared_limits(self.name)

    def named_arguments(self, args: Iterable[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name (defaults filled; ``**kwargs`` spread)."""
        try:
            bound = self.call_signature.bind(*args, **kwargs)
        except TypeError as error:
            raise JobArgumentsError(f"Arguments do not fit job {self.name!r}: {error}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for parameter in self.call_signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(arguments.pop(parameter.name, {}))
        return arguments

    def task_columns(self, run_at: datetime | None) -> dict[str, Any]:
        """The columns of a new task that come from this job and its options (due now
        when ``run_at`` is None); the enqueue adds the arguments."""
        return {
            "identifier": validation.job_name(self.name),  # a Django Task's module path is not checked before
            "queue": validation.queue(self.resolved_queue),
            "priority": self.priority,
            "scheduled_at": run_at or timezone.now(),
            "description": self.description,
            "max_retries": self.resolved_max_retries,
            "retry_delay": self.resolved_retry_delay,
            "backoff": self.backoff_kind,
            "timeout": self.timeout,
            "unique_key": self.unique_key,
            "owner_id": self.owner_id,
        }

    @property
    def resolved_queue(self) -> str:
        return self.queue or jobs_settings.DEFAULT_QUEUE

    @property
    def resolved_max_retries(self) -> int:
        return jobs_settings.DEFAULT_MAX_RETRIES if self.max_retries is None else self.max_retries

    @property
    def resolved_retry_delay(self) -> timedelta:
        if self.retry_delay is None:
            return timedelta(seconds=jobs_settings.DEFAULT_RETRY_DELAY)
        return self.retry_delay

    @property
    def backoff_kind(self) -> str:
        """What the row stores: the name, or ``custom`` for a callable of this job."""
        return self.backoff if isinstance(self.backoff, str) else "custom"

    # -- enqueueing ---------------------------------------------------------------------
    def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> ScheduledTask:
        """Store a task that runs as soon as a worker is free."""
        from .enqueueing import enqueue_one

        return enqueue_one(self, args, kwargs, run_at=None)

    def enqueue_in(self, delay: timedelta | float, *args: P.args, **kwargs: P.kwargs) -> ScheduledTask:
        """Store a task that runs no sooner than ``delay`` from now."""
        from .enqueueing import enqueue_one

        wait = validation.duration(delay, "delay")
        return enqueue_one(self, args, kwargs, run_at=timezone.now() + wait)

    def enqueue_at(self, when: datetime, *args: P.args, **kwargs: P.kwargs) -> ScheduledTask:
        """Store a task that runs no sooner than ``when`` (aware when USE_TZ is on)."""
        from .enqueueing import enqueue_one

        return enqueue_one(self, args, kwargs, run_at=validation.run_time(when))

    def enqueue_many(self, calls: Iterable[tuple[Iterable[Any], dict[str, Any]]]) -> list[ScheduledTask]:
        """Store many tasks of this job in one bulk insert: ``[(args, kwargs), ...]``."""
        from .enqueueing import enqueue_many

        return enqueue_many(self, calls)

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Signature[P, R]:
        """This call, checked but not enqueued: for ``django_jobs.enqueue_many`` and workflows."""
        from .signatures import Signature

        return Signature(self, args, kwargs)

    @functools.cached_property
    def call_signature(self) -> inspect.Signature:
        """The signature callers must fit (without ``context``); computed once per Job."""
        signature = inspect.signature(self.func)
        if self.takes_context:
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        return signature

    @functools.cached_property
    def fitting_shapes(self) -> set[tuple[int, frozenset[str]]]:
        """Shapes of calls seen to fit: (number of positional arguments, keyword names)."""
        return set()

    def check_arguments(self, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
        """Raise ``JobArgumentsError`` when the call would not fit the function's signature.

        Whether a call binds depends on its shape alone, and ``Signature.bind`` is slow
        next to a set lookup: a shape seen to fit is not bound again (binding was a large
        share of the time of many ``job.s(...)`` calls; figures: bench/README.md,
        "Measured design choices"). At most ``MAX_SHAPES`` are kept, whatever keywords
        callers invent.
        """
        shape = (len(args), frozenset(kwargs)) if isinstance(args, (list, tuple)) else None
        if shape is not None and shape in self.fitting_shapes:
            return
        try:
            self.call_signature.bind(*args, **kwargs)
        except TypeError as error:
            raise JobArgumentsError(f"Arguments do not fit job {self.name!r}: {error}") from None
        if shape is not None and len(self.fitting_shapes) < MAX_SHAPES:
            self.fitting_shapes.add(shape)

    # -- running (hooks the executor calls; a resolved Django Task overrides them) ----------
    def context_for(self, task: ScheduledTask, worker_id: str) -> Any:
        """What a ``takes_context`` job receives as its first argument while ``task`` runs."""
        return JobContext(task=task, attempt=task.attempt, worker_id=worker_id)

    def stored_result(self, value: Any) -> Any:
        """The return value as the row stores it; TypeError/ValueError if it cannot be stored."""
        return validation.json_value(value, "return value", validation.MAX_JSON_DEPTH)


def validated_options(options: dict[str, Any]) -> dict[str, Any]:
    """Normalise job/enqueue options, raising ``InvalidJobOption`` on bad values."""
    checks: dict[str, Callable[[Any], Any]] = {
        "queue": validation.queue,
        "priority": validation.priority,
        "max_retries": validation.max_retries,
        "retry_delay": lambda value: validation.duration(value, "retry_delay"),
        "timeout": lambda value: validation.duration(value, "timeout", allow_none=True),
        "backoff": validation.backoff,
        "description": validation.description,
        "unique_key": validation.unique_key,
        "concurrency": limits.concurrency,
        "rate": limits.rate,
        "concurrency_key": lambda value: limits.key_template(value, "concurrency_key", None),
        "rate_key": lambda value: limits.key_template(value, "rate_key", None),
    }
    checked = {name: checks[name](value) if name in checks else value for name, value in options.items()}
    if "owner" in checked:
        checked["owner_id"] = validation.owner(checked.pop("owner"))
    return checked


# Finds a job that is not registered (a Django Task, by its module path): returns it,
# None if the name is not its kind, or raises UnknownJob saying why it cannot run.
Resolver = Callable[[str], "Job[Any, Any] | None"]


class JobRegistry:
    """Name -> ``Job``. Iterating yields the registered names.

    ``get`` also asks the resolvers (``add_resolver``) for names nobody registered,
    so rows written by other front ends (Django's ``@task``) run on the same path.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, Job[Any, Any]] = {}
        self._resolvers: list[Resolver] = []

    def register(self, name: str, func: Callable[..., Any], **options: Any) -> Job[Any, Any]:
        existing = self._jobs.get(name)
        if existing is not None and not _same_function(existing.func, func):
            raise ImproperlyConfigured(
                f"Two functions are registered as job {name!r}: {_dotted(existing.func)} and "
                f"{_dotted(func)}. Give one of them another name with @job(name=...)."
            )
        validation.job_name(name)
        if options.get("takes_context"):
            _check_context_parameter(name, func)
        if options.get("cron") is not None:
            _check_cron(name, options["cron"])
        if options.get("cron_overlap") is not None:
            _check_cron_overlap(name, options)
        job = Job(func=func, name=name, **validated_options(options))
        try:
            job.check_limits()
        except InvalidJobOption as error:
            raise ImproperlyConfigured(f"@job {name!r}: {error}") from None
        self._jobs[name] = job
        return job

    def unregister(self, name: str) -> None:
        self._jobs.pop(name, None)

    def is_registered(self, name: str) -> bool:
        return name in self._jobs

    def add_resolver(self, resolver: Resolver) -> None:
        """Ask ``resolver`` for names that are not registered (once, however often added)."""
        if resolver not in self._resolvers:
            self._resolvers.append(resolver)

    def get(self, name: str) -> Job[Any, Any]:
        """The registered job, else the first resolver's answer; ``UnknownJob`` if none."""
        found = self._jobs.get(name)
        for resolver in self._resolvers:
            if found is not None:
                break
            found = resolver(name)
        if found is None:
            raise UnknownJob(name)
        return found

    def find(self, name: str) -> Job[Any, Any] | None:
        """``get``, or None when the name cannot be resolved."""
        try:
            return self.get(name)
        except UnknownJob:
            return None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._jobs))

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)


registry = JobRegistry()


def declared_limits(name: str) -> limits.Declared:
    """The limits the code declares for the job ``name`` (none for a name it does not know)."""
    found = registry.find(name)
    return limits.NOT_DECLARED if found is None else limits.Declared(found.concurrency, found.rate)


@overload
def job(func: Callable[P, R], /) -> Job[P, R]: ...
@overload
def job(*, name: str | None = None, **options: Any) -> Callable[[Callable[P, R]], Job[P, R]]: ...


def job(func: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any) -> Any:
    """Register a function as a job: ``@job`` or ``@job(name=..., queue=..., ...)``.

    Options: ``queue``, ``priority`` (-100..100 or critical/high/normal/low),
    ``max_retries``, ``retry_delay``, ``backoff`` (exponential, fixed or a callable
    attempt -> timedelta), ``timeout``, ``takes_context``, ``cron``, ``cron_overlap``
    (skip, queue or allow: what a fire does while the previous task still runs),
    ``concurrency`` and ``concurrency_key``, ``rate`` ("N/s", "N/m", "N/h") and ``rate_key``
    (flow control: limits every worker enforces together, in the claim).
    """
    unknown = (set(options) - (ENQUEUE_OPTIONS - PER_CALL_OPTIONS)
               - {"takes_context", "cron", "cron_overlap"})
    if unknown:
        raise UnknownJobOption(f"Unknown @job option(s) {sorted(unknown)}")

    def decorate(function: Callable[P, R]) -> Job[P, R]:
        return registry.register(name or _dotted(function), function, **options)

    return decorate(func) if func is not None else decorate


def _dotted(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module imported twice (e.g. as __main__ and by name) yields distinct but equal functions.
    return a is b or _dotted(a) == _dotted(b)


def _check_cron(name: str, expression: str) -> None:
    try:
        expand(expression)
    except ValidationError as error:
        raise ImproperlyConfigured(f"@job {name!r} has an invalid cron: {'; '.join(error.messages)}") from None


def _check_cron_overlap(name: str, options: dict[str, Any]) -> None:
    if options.get("cron") is None:
        raise ImproperlyConfigured(f"@job {name!r} has cron_overlap but no cron: it applies to cron fires only.")
    try:
        validation.overlap(options["cron_overlap"])
    except InvalidJobOption as error:
        raise ImproperlyConfigured(f"@job {name!r}: cron_{error}") from None


def _check_context_parameter(name: str, func: Callable[..., Any]) -> None:
    parameters = list(inspect.signature(func).parameters)
    if not parameters or parameters[0] != "context":
        raise ImproperlyConfigured(
            f"Job {name!r} has takes_context=True, so its first parameter must be named 'context'."
        )
