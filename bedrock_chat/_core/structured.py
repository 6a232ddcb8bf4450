"""``output_config`` (structured outputs, effort), strict tools and the parsed JSON of a reply (pure, sans-IO).

Theory of operation: :func:`validate_output_config` checks the caller's ``output_config`` against the
model before any I/O and returns the body field to send; :func:`check_strict_tools` does the same for
``"strict": true`` tools. After the answer, :func:`parse_structured` turns the reply's text into the
parsed JSON, or raises :class:`StructuredOutputError` when it is not JSON or (when the optional
``jsonschema`` package is importable) not valid for the schema. Nothing here runs for a call that uses
none of these features.

Facts (``shared/CLAUDE_REQUEST_FEATURES_2026.md``): ``output_config.format`` is
``{"type": "json_schema", "schema": {...}}`` (AWS "Get validated JSON results from models"; the Messages
endpoint takes the same body); ``output_config.effort`` is one of the registry's ``EFFORT_LEVELS`` (which
models take which level: registry data, UNVERIFIED per model).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import InvalidRequestError, StructuredOutputError
from .models import EFFORT_LEVELS, ModelApi, ResolvedModel

__all__ = [
    "OutputConfig",
    "check_strict_tools",
    "parse_structured",
    "validate_output_config",
]

#: The ``output_config`` keys this client checks; others go through ``extra_body`` (the service judges them).
_OUTPUT_CONFIG_KEYS = ("effort", "format")
_FORMAT_KEYS = ("schema", "type")


class OutputConfig:
    """The validated ``output_config``: the body field to send, and the schema a reply must follow (or None)."""

    __slots__ = ("body", "schema")

    def __init__(self, body: dict[str, Any], schema: Mapping[str, Any] | None) -> None:
        self.body = body
        self.schema = schema


def _supports_structured_outputs(model: ResolvedModel) -> bool:
    return model.info is None or model.info.structured_outputs


def validate_output_config(model: ResolvedModel, output_config: object) -> OutputConfig:
    """Check ``output_config`` (shape, and what the registry says the model takes); raises InvalidRequestError."""
    if not isinstance(output_config, Mapping):
        raise InvalidRequestError("output_config", 'must be a dict like {"effort": "low"} or {"format": {...}}')
    if model.api is ModelApi.TEXT_COMPLETIONS:
        raise InvalidRequestError("output_config", f"{model.display_name} is a text-completion model: no output_config")
    for key in output_config:
        if key not in _OUTPUT_CONFIG_KEYS:
            raise InvalidRequestError(
                f"output_config.{key}",
                f"is not a field this client checks ({', '.join(_OUTPUT_CONFIG_KEYS)}); "
                "send newer fields with extra_body={'output_config': {...}}",
            )
    if not output_config:
        raise InvalidRequestError("output_config", "is empty: give 'effort' or 'format'")
    body: dict[str, Any] = {}
    schema: Mapping[str, Any] | None = None
    if "effort" in output_config:
        body["effort"] = _check_effort(model, output_config["effort"])
    if "format" in output_config:
        schema = _check_format(model, output_config["format"])
        body["format"] = {"type": "json_schema", "schema": schema}
    return OutputConfig(body, schema)


def _check_effort(model: ResolvedModel, effort: object) -> str:
    if not isinstance(effort, str) or effort not in EFFORT_LEVELS:
        raise InvalidRequestError("output_config.effort", f"must be one of {', '.join(EFFORT_LEVELS)}, got {effort!r}")
    info = model.info
    if info is not None and effort not in info.effort_levels:
        if not info.effort_levels:
            raise InvalidRequestError("output_config.effort", f"{info.name} takes no effort setting")
        allowed = ", ".join(level for level in EFFORT_LEVELS if level in info.effort_levels)
        raise InvalidRequestError("output_config.effort", f"{info.name} takes {allowed}, not {effort!r}")
    return effort


def _check_format(model: ResolvedModel, output_format: object) -> Mapping[str, Any]:
    if not isinstance(output_format, Mapping) or output_format.get("type") != "json_schema":
        raise InvalidRequestError(
            "output_config.format", 'must be {"type": "json_schema", "schema": {...a JSON schema...}}'
        )
    for key in output_format:
        if key not in _FORMAT_KEYS:
            raise InvalidRequestError(f"output_config.format.{key}", "is not a field of a json_schema format")
    schema = output_format.get("schema")
    if not isinstance(schema, Mapping) or not schema:
        raise InvalidRequestError("output_config.format.schema", "must be a JSON schema (a non-empty dict)")
    if not _supports_structured_outputs(model):
        raise InvalidRequestError("output_config.format", f"{model.display_name} has no structured outputs")
    _check_schema_document("output_config.format.schema", schema)
    return schema


def _check_schema_document(field: str, schema: Mapping[str, Any]) -> None:
    """A schema ``jsonschema`` (when installed) finds malformed is refused here rather than by a 400."""
    jsonschema = _jsonschema()
    if jsonschema is None:
        return
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        where = "".join(f"[{part!r}]" for part in error.path)
        raise InvalidRequestError(f"{field}{where}", f"is not a valid JSON schema: {error.message}") from None


def check_strict_tools(model: ResolvedModel, tools: Sequence[Mapping[str, Any]]) -> None:
    """``"strict"`` on a tool is a boolean, and ``true`` needs a model with structured outputs."""
    for i, tool in enumerate(tools):
        if "strict" not in tool:
            continue
        strict = tool["strict"]
        if not isinstance(strict, bool):
            raise InvalidRequestError(f"tools[{i}].strict", f"must be true or false, got {strict!r}")
        if strict and not _supports_structured_outputs(model):
            raise InvalidRequestError(
                f"tools[{i}].strict", f"{model.display_name} has no structured outputs (strict tool use)"
            )


_JSONSCHEMA: list[Any] = []


def _jsonschema() -> Any:
    """The ``jsonschema`` module, or None when it is not installed (looked up once, on the first schema).

    Imported by name: it is optional (the ``test`` extra has it), so neither a dependency nor typed here.
    """
    if not _JSONSCHEMA:
        try:
            _JSONSCHEMA.append(importlib.import_module("jsonschema"))
        except ImportError:
            _JSONSCHEMA.append(None)
    return _JSONSCHEMA[0]


def parse_structured(text: str, schema: Mapping[str, Any], *, stop_reason: str | None) -> Any:
    """The reply's JSON, checked against ``schema`` when ``jsonschema`` is importable.

    The error's message says where parsing or validation failed, never the reply's text (it may
    quote anything the server sent); the text is on ``error.text``.
    """
    why = f" (stop_reason {stop_reason!r})" if stop_reason not in (None, "end_turn") else ""
    try:
        value = json.loads(text)
    except ValueError as error:
        reason = getattr(error, "msg", "not JSON")
        position = f" at line {error.lineno} column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        raise StructuredOutputError(
            f"the reply is not valid JSON: {reason}{position}{why}; {len(text)} characters, in error.text",
            text=text,
            stop_reason=stop_reason,
        ) from None
    except RecursionError:
        raise StructuredOutputError(
            f"the reply is JSON nested too deep to decode{why}", text=text, stop_reason=stop_reason
        ) from None
    jsonschema = _jsonschema()
    if jsonschema is not None:
        failure = next(iter(jsonschema.Draft202012Validator(schema).iter_errors(value)), None)
        if failure is not None:
            # Only the schema's side of the failure is shown (its path in the schema and the keyword's value):
            # the caller wrote it. The reply's keys and values stay out of the message.
            raise StructuredOutputError(
                f"the reply does not match the schema: it fails {'/'.join(map(str, failure.schema_path))} "
                f"({json.dumps(failure.validator_value, default=str)[:200]}){why}; the text is in error.text",
                text=text,
                stop_reason=stop_reason,
            )
    return value
