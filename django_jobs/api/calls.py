"""A job call (``job``, ``args``, ``kwargs``) in a request body: checked by binding the
arguments to the job's signature, and described by a JSON Schema generated from that
same signature, so that the OpenAPI document accepts exactly the calls the server
accepts (``tests/api/test_api_openapi.py`` compares the two on every registered job).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from ..exceptions import JobArgumentsError
from ..registry import Job, registry
from .fields import JSON_VALUE, Rule

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
BY_NAME = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def argument_errors(job: Job[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> dict[str, list[str]]:
    """Why a call does not fit the job's function, under ``args`` or ``kwargs``; {} if it fits."""
    unexpected = unexpected_keywords(job, kwargs)
    if unexpected:
        takes = ", ".join(job.call_signature.parameters) or "no arguments"
        return {"kwargs": [f"Unexpected keyword argument(s) {', '.join(map(repr, unexpected))}: "
                           f"job {job.name!r} takes {takes}."]}
    try:
        job.check_arguments(args, kwargs)
    except JobArgumentsError as error:
        return {arguments_field(job, args, kwargs): [str(error)]}
    return {}


def unexpected_keywords(job: Job[Any, Any], kwargs: dict[str, Any]) -> list[str]:
    # Python reports a missing argument before an unexpected one; a typo ("yaer")
    # is better named for what it is.
    parameters = job.call_signature.parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters):
        return []
    accepted = {parameter.name for parameter in parameters if parameter.kind in BY_NAME}
    return sorted(set(kwargs) - accepted)


def arguments_field(job: Job[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> str:
    # The positional arguments alone fit: what is wrong is in (or missing from) kwargs.
    try:
        job.call_signature.bind_partial(*args)
    except TypeError:
        return "args"
    return "kwargs" if kwargs else "args"


def call_schemas(name: str, signature: inspect.Signature) -> list[dict[str, Any]]:
    """One schema per number of positional arguments the signature accepts: the
    arguments given by position can no longer be given by name, the rest must be."""
    parameters = list(signature.parameters.values())
    positional = [parameter for parameter in parameters if parameter.kind in POSITIONAL]
    variadic = any(parameter.kind is parameter.VAR_POSITIONAL for parameter in parameters)
    counts = range(len(positional) + 1)
    schemas = [call_schema(name, parameters, count, variadic and count == len(positional)) for count in counts]
    return [schema for schema in schemas if schema is not None]


def call_schema(name: str, parameters: list[inspect.Parameter], count: int, more: bool) -> dict[str, Any] | None:
    """The calls of job ``name`` with ``count`` positional arguments (or more, when ``more``)."""
    positional = [parameter for parameter in parameters if parameter.kind in POSITIONAL]
    taken, left = positional[:count], positional[count:]
    if any(parameter.kind is parameter.POSITIONAL_ONLY and parameter.default is parameter.empty
           for parameter in left):
        return None  # a positional-only parameter without default cannot be given by name
    by_name = [parameter for parameter in left if parameter.kind in BY_NAME]
    by_name += [parameter for parameter in parameters if parameter.kind is parameter.KEYWORD_ONLY]
    required = [parameter.name for parameter in by_name if parameter.default is parameter.empty]
    args: dict[str, Any] = {"type": "array", "items": JSON_VALUE, "minItems": count}
    if not more:
        args["maxItems"] = count
    kwargs = keyword_schema(parameters, by_name, taken, required)
    schema: dict[str, Any] = {"properties": {"job": {"const": name}, "args": args, "kwargs": kwargs}}
    schema["required"] = ["job"] + (["args"] if count else []) + (["kwargs"] if required else [])
    return schema


def keyword_schema(parameters: list[inspect.Parameter], by_name: list[inspect.Parameter],
                   taken: list[inspect.Parameter], required: list[str]) -> dict[str, Any]:
    variadic = any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)
    properties: dict[str, Any] = {parameter.name: JSON_VALUE for parameter in by_name}
    # Given by position already: by name too would be "multiple values". A positional-only
    # name is an ordinary key of **kwargs, and unexpected without it.
    properties.update({parameter.name: False for parameter in taken if parameter.kind in BY_NAME})
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": JSON_VALUE if variadic else False}
    if required:
        schema["required"] = required
    return schema


@dataclass(frozen=True)
class JobCall(Rule):
    """``args`` and ``kwargs`` fit the signature of the job named by ``job`` (the
    fields check the job is registered; ``args`` and ``kwargs`` default to empty)."""

    def check(self, data: dict[str, Any]) -> dict[str, list[str]]:
        if "job" not in data or data["job"] not in registry:
            return {}
        return argument_errors(registry.get(data["job"]), data.get("args", []), data.get("kwargs", {}))

    def schema(self) -> dict[str, Any]:
        branches = [branch for name in sorted(registry)
                    for branch in call_schemas(name, registry.get(name).call_signature)]
        # Without "job" in the body (PATCH of other fields) there is no call to check.
        return {"anyOf": [{"not": {"required": ["job"]}}, *branches]}
