"""What one attempt of a task came to, and how an exception becomes that outcome.

The bottom of the execution package: the executor, the child process of a job with a
timeout and the recorder all speak in ``Outcome``s, and this module imports none of them.
"""

from __future__ import annotations

import traceback as traceback_module
from dataclasses import dataclass
from typing import Any

from ..conf import jobs_settings


@dataclass
class Outcome:
    """What one attempt came to. ``retryable`` is False for faults a retry cannot fix."""

    succeeded: bool
    result: Any = None
    exception: BaseException | None = None
    error: str = ""
    traceback: str = ""
    retryable: bool = True
    exception_class: str = ""  # dotted path, as Django's TaskError.exception_class_path
    duration: float | None = None  # seconds the attempt ran, for metrics


def failure(error: BaseException, *, retryable: bool = True) -> Outcome:
    return Outcome(
        succeeded=False,
        exception=error,
        error=describe(error),
        traceback=format_traceback(error),
        retryable=retryable,
        exception_class=class_path(error),
    )


def class_path(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def describe(error: BaseException) -> str:
    """``Class: message``, even for an exception whose ``__str__`` raises."""
    try:
        message = str(error)
    except Exception:
        message = "<exception message could not be rendered>"
    name = type(error).__qualname__
    return f"{name}: {message}" if message else name


def format_traceback(error: BaseException) -> str:
    text = "".join(traceback_module.format_exception(error))
    limit = jobs_settings.MAX_TRACEBACK_LENGTH
    if len(text) > limit:
        # Keep the end: it names the exception and the innermost frames.
        text = f"... ({len(text) - limit} characters cut)\n" + text[-limit:]
    return text
