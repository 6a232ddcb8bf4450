"""Request building and response parsing for both Claude APIs on InvokeModel (pure, sans-IO).

Theory of operation: :func:`prepare_invocation` validates the call's parameters against the model and
returns an :class:`Invocation` -- the wire path, the JSON body bytes and what the response parser will
need (the conversation, to append the reply to). :func:`parse_invoke_response` turns a 200 body into a
:class:`ChatCompletion`; :func:`parse_error_response` turns anything else into the typed error.
Streams are assembled by :class:`StreamAssembler`, which takes the decoded JSON event of each ``chunk``
frame (either API) and yields :class:`StreamChunk` values, then the final ``ChatCompletion``.
No function here reads the clock or touches a socket: latencies and headers are passed in.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._errors import (
    InvalidRequestError,
)
from .caching import CachePlan, plan_cache
from .extras import merge_headers
from .models import ModelApi, ResolvedModel, SamplingRule, Surface
from .prompt import Conversation, messages_payload, text_prompt
from .sigv4 import percent_encode_path_segment

__all__ = [
    "ANTHROPIC_VERSION",
    "Invocation",
    "SamplingParams",
    "MESSAGES_API_VERSION",
    "MESSAGES_ENDPOINT_PATH",
    "build_body",
    "choose_surface",
    "invoke_path",
    "prepare_invocation",
    "too_deep_error",
    "validate_model_rules",
    "validate_tools",
    "validate_sampling",
]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
DEFAULT_MAX_TOKENS = 256

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@attrs.frozen(kw_only=True)
class SamplingParams:
    """The validated sampling parameters of one call; None means "the model's default" (not sent)."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    stop_sequences: tuple[str, ...] = ()
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None


def validate_sampling(
    model: ResolvedModel,
    *,
    max_tokens_to_sample: object = DEFAULT_MAX_TOKENS,
    stop_sequences: object = None,
    temperature: object = None,
    top_p: object = None,
    top_k: object = None,
) -> SamplingParams:
    """Check each parameter's type and range (and max tokens against the model's limit)."""
    if not isinstance(max_tokens_to_sample, int) or isinstance(max_tokens_to_sample, bool):
        raise InvalidRequestError("max_tokens_to_sample", f"must be an integer, got {max_tokens_to_sample!r}")
    limit = model.max_output_tokens
    if max_tokens_to_sample < 1 or (limit is not None and max_tokens_to_sample > limit):
        bound = f"1..{limit} for {model.display_name}" if limit is not None else ">= 1"
        raise InvalidRequestError("max_tokens_to_sample", f"must be {bound}, got {max_tokens_to_sample}")
    stops: tuple[str, ...] = ()
    if stop_sequences is not None:
        if isinstance(stop_sequences, (str, bytes)) or not isinstance(stop_sequences, Sequence):
            raise InvalidRequestError("stop_sequences", "must be a list of strings")
        for i, stop in enumerate(stop_sequences):
            if not isinstance(stop, str) or not stop:
                raise InvalidRequestError(f"stop_sequences[{i}]", f"must be a non-empty string, got {stop!r}")
        stops = tuple(stop_sequences)
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and (not _is_number(value) or not 0 <= value <= 1):  # type: ignore[operator]
            raise InvalidRequestError(name, f"must be a number from 0 to 1, got {value!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or not 0 <= top_k <= 500):
        raise InvalidRequestError("top_k", f"must be an integer from 0 to 500, got {top_k!r}")
    return SamplingParams(
        max_tokens=max_tokens_to_sample,
        stop_sequences=stops,
        temperature=temperature,  # type: ignore[arg-type]
        top_p=top_p,  # type: ignore[arg-type]
        top_k=top_k,
    )


#: The Messages-API surface of bedrock-runtime (model in the body, SSE streaming).
MESSAGES_ENDPOINT_PATH = "/anthropic/v1/messages"
#: The ``anthropic-version`` header sent on that surface (the Messages API's stable version).
MESSAGES_API_VERSION = "2023-06-01"

# The request headers that get signed, per surface and mode. botocore sends these for InvokeModel
# (the stream operation takes ``X-Amzn-Bedrock-Accept`` instead of ``Accept``).
_INVOKE_HEADERS = (("accept", "application/json"), ("content-type", "application/json"))
_INVOKE_STREAM_HEADERS = (("content-type", "application/json"), ("x-amzn-bedrock-accept", "application/json"))
_MESSAGES_ENDPOINT_HEADERS = (
    ("accept", "application/json"),
    ("anthropic-version", MESSAGES_API_VERSION),
    ("content-type", "application/json"),
)


@attrs.frozen
class Invocation:
    """Everything needed to send one call and to read its answer: where, what, and how it was asked."""

    model: ResolvedModel
    conversation: Conversation
    sampling: SamplingParams
    path: str
    body: bytes
    stream: bool
    surface: Surface = Surface.INVOKE
    headers: tuple[tuple[str, str], ...] = _INVOKE_HEADERS
    #: The prompt-cache breakpoints (None: none), to judge the reply's cache usage by.
    cache: CachePlan | None = None
    #: ``output_config["format"]["schema"]``: the reply is parsed (and checked) as JSON for it.
    output_schema: Mapping[str, Any] | None = None


def invoke_path(model_id: str, *, stream: bool) -> str:
    """The wire path, with the model id encoded as botocore encodes it (``:`` -> ``%3A``, ``/`` -> ``%2F``)."""
    return _invoke_path(model_id, stream)


@functools.lru_cache(maxsize=256)
def _invoke_path(model_id: str, stream: bool) -> str:
    """Memoised: an application calls a handful of models, each path is built once."""
    operation = "invoke-with-response-stream" if stream else "invoke"
    return f"/model/{percent_encode_path_segment(model_id)}/{operation}"


def choose_surface(model: ResolvedModel, requested: object = None) -> Surface:
    """The registry's preferred surface for the model, or the one the caller forces (if it serves the model)."""
    if requested is None:
        return model.info.default_surface if model.info is not None else Surface.INVOKE
    surface = next((s for s in Surface if s == requested), None)  # a StrEnum member equals its value
    if surface is None:
        choices = ", ".join(repr(s.value) for s in Surface)
        raise InvalidRequestError("surface", f"must be one of {choices}, got {requested!r}")
    if model.api is ModelApi.TEXT_COMPLETIONS and surface is Surface.MESSAGES_ENDPOINT:
        raise InvalidRequestError("surface", f"{model.display_name} is a text-completion model: InvokeModel only")
    if model.info is not None and surface not in model.info.surfaces:
        served = ", ".join(sorted(s.value for s in model.info.surfaces))
        raise InvalidRequestError("surface", f"{model.display_name} is not served on {surface.value!r} (only {served})")
    return surface


def validate_model_rules(model: ResolvedModel, sampling: SamplingParams, thinking: object) -> dict[str, Any] | None:
    """The rules the registry knows for this model, checked before any I/O; returns the ``thinking`` to send."""
    info = model.info
    if info is not None and info.sampling is not SamplingRule.ANY:
        given = [name for name in ("temperature", "top_p", "top_k") if getattr(sampling, name) is not None]
        if info.sampling is SamplingRule.DEFAULTS_ONLY and given:
            raise InvalidRequestError(
                given[0], f"{info.name} accepts only its default temperature, top_p and top_k: leave it unset"
            )
        if info.sampling is SamplingRule.TEMPERATURE_OR_TOP_P and {"temperature", "top_p"} <= set(given):
            raise InvalidRequestError("top_p", f"{info.name} accepts temperature or top_p, not both")
    if thinking is None:
        return None
    if not isinstance(thinking, Mapping) or not isinstance(thinking.get("type"), str):
        raise InvalidRequestError("thinking", 'must be a dict like {"type": "adaptive"} or {"type": "enabled", ...}')
    kind = thinking["type"]
    if model.api is ModelApi.TEXT_COMPLETIONS:
        raise InvalidRequestError("thinking", f"{model.display_name} is a text-completion model: no extended thinking")
    if info is not None:
        if not info.thinking_types:
            raise InvalidRequestError("thinking", f"{info.name} has no extended thinking")
        if kind not in info.thinking_types:
            allowed = ", ".join(repr(t) for t in sorted(info.thinking_types))
            raise InvalidRequestError("thinking.type", f"{info.name} accepts {allowed}, not {kind!r}")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
            raise InvalidRequestError("thinking.budget_tokens", f"must be an integer >= 1024, got {budget!r}")
        if budget >= sampling.max_tokens:
            raise InvalidRequestError(
                "thinking.budget_tokens", f"must be below max_tokens_to_sample ({sampling.max_tokens}), got {budget}"
            )
    return dict(thinking)


_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_TOOL_CHOICES = ("auto", "any", "tool", "none")


def _check_tools(tools: object) -> list[dict[str, Any]]:
    if isinstance(tools, (str, bytes)) or not isinstance(tools, Sequence):
        raise InvalidRequestError("tools", "must be a list of tool definitions")
    names: set[str] = set()
    checked: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise InvalidRequestError(f"tools[{i}]", "must be a dict with 'name' and 'input_schema'")
        name = tool.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            raise InvalidRequestError(f"tools[{i}].name", f"must match [a-zA-Z0-9_-]{{1,64}}, got {name!r}")
        if name in names:
            raise InvalidRequestError(f"tools[{i}].name", f"{name!r} is defined twice")
        names.add(name)
        # Server tools (``"type": "bash_20250124"`` ...) are defined by the service; custom ones need a schema.
        if tool.get("type") in (None, "custom"):
            schema = tool.get("input_schema")
            if not isinstance(schema, Mapping) or schema.get("type") != "object":
                raise InvalidRequestError(
                    f"tools[{i}].input_schema", 'must be a JSON schema object: {"type": "object", ...}'
                )
        checked.append(dict(tool))
    return checked


def validate_tools(
    model: ResolvedModel, *, tools: object = None, tool_choice: object = None, anthropic_beta: object = None
) -> dict[str, Any]:
    """Tool use and beta flags (Messages models only), as body fields to send."""
    if tools is None and tool_choice is None and anthropic_beta is None:
        return {}  # the common call: nothing to check
    given = [
        name
        for name, value in (("tools", tools), ("tool_choice", tool_choice), ("anthropic_beta", anthropic_beta))
        if value is not None
    ]
    if given and model.api is ModelApi.TEXT_COMPLETIONS:
        raise InvalidRequestError(
            given[0], f"{model.display_name} is a text-completion model: tools and beta flags need a Claude 3+ model"
        )
    extras: dict[str, Any] = {}
    if tools is not None:
        extras["tools"] = _check_tools(tools)
    if tool_choice is not None:
        if not isinstance(tool_choice, Mapping) or tool_choice.get("type") not in _TOOL_CHOICES:
            raise InvalidRequestError(
                "tool_choice", f"must be a dict whose 'type' is one of {', '.join(_TOOL_CHOICES)}"
            )
        if "tools" not in extras:
            raise InvalidRequestError("tool_choice", "needs tools")
        if tool_choice["type"] == "tool" and tool_choice.get("name") not in {t["name"] for t in extras["tools"]}:
            raise InvalidRequestError("tool_choice.name", f"names no tool in tools: {tool_choice.get('name')!r}")
        extras["tool_choice"] = dict(tool_choice)
    if anthropic_beta is not None:
        if isinstance(anthropic_beta, (str, bytes)) or not isinstance(anthropic_beta, Sequence):
            raise InvalidRequestError("anthropic_beta", "must be a list of beta flag names")
        for i, flag in enumerate(anthropic_beta):
            if not isinstance(flag, str) or not flag or not flag.isascii() or "," in flag or not flag.isprintable():
                raise InvalidRequestError(f"anthropic_beta[{i}]", f"must be a beta flag name, got {flag!r}")
        extras["anthropic_beta"] = list(anthropic_beta)
    return extras


def _sampling_fields(sampling: SamplingParams, body: dict[str, Any]) -> None:
    if sampling.stop_sequences:
        body["stop_sequences"] = list(sampling.stop_sequences)
    if sampling.temperature is not None:
        body["temperature"] = sampling.temperature
    if sampling.top_p is not None:
        body["top_p"] = sampling.top_p
    if sampling.top_k is not None:
        body["top_k"] = sampling.top_k


def build_body(
    model: ResolvedModel,
    conversation: Conversation,
    sampling: SamplingParams,
    *,
    surface: Surface = Surface.INVOKE,
    stream: bool = False,
    thinking: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body for the model's API on the given surface.

    InvokeModel bodies carry ``anthropic_version`` (the model is in the URL, streaming is the
    operation); Messages-endpoint bodies carry the model and ``stream`` instead.
    """
    body: dict[str, Any]
    if model.api is ModelApi.TEXT_COMPLETIONS:
        body = {
            "prompt": text_prompt(conversation, model=model.model_id),
            "max_tokens_to_sample": sampling.max_tokens,
        }
    else:
        if surface is Surface.INVOKE:
            body = {"anthropic_version": ANTHROPIC_VERSION, "max_tokens": sampling.max_tokens}
        else:
            body = {"model": model.model_id, "max_tokens": sampling.max_tokens}
        if conversation.system:
            body["system"] = conversation.system
        body["messages"] = messages_payload(conversation)
        if thinking is not None:
            body["thinking"] = dict(thinking)
        if extras:
            body.update(extras)
    _sampling_fields(sampling, body)
    if stream and surface is Surface.MESSAGES_ENDPOINT:
        body["stream"] = True
    return body


#: Body fields named after the argument they came from, where the names differ.
_ARGUMENT_OF_BODY_FIELD: Mapping[str, str] = {
    "tools": "tools",
    "tool_choice": "tool_choice",
    "output_config": "output_config",
    "thinking": "thinking",
    "system": "system",
}


def _depth(value: object) -> int:
    """How deeply lists and dicts nest in ``value``, counted without recursion (it may be very deep)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def too_deep_error(field: str, value: object) -> InvalidRequestError:
    """The error for a value nested past what the JSON encoder (Python's recursion limit) can write."""
    return InvalidRequestError(field, f"is nested {_depth(value)} levels deep, too deep to send as JSON")


def _unencodable_field(fields: Mapping[str, Any], extra_body: Mapping[str, Any] | None) -> str:
    """The argument to blame for a body that cannot be encoded: ``extra_body`` when its fields are the cause."""
    if extra_body:
        try:
            _dumps({key: fields[key] for key in extra_body})
        except (ValueError, TypeError, RecursionError):
            return "extra_body"
    return "messages"


def prepare_invocation(
    model: ResolvedModel,
    conversation: Conversation,
    sampling: SamplingParams,
    *,
    stream: bool,
    surface: Surface = Surface.INVOKE,
    thinking: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
    output_schema: Mapping[str, Any] | None = None,
    extra_body: Mapping[str, Any] | None = None,
    user_headers: tuple[tuple[str, str], ...] = (),
) -> Invocation:
    """Build the path, signed headers and body bytes of one call.

    ``extras`` are validated body fields (tools, beta flags, output_config); ``extra_headers`` validated
    request options. On the Messages endpoint, beta flags travel in the ``anthropic-beta`` header rather
    than the body. ``extra_body`` and ``user_headers`` (the caller's ``extra_headers``, checked by
    ``_core.extras``) go in last and win over the fields and headers set from named arguments.
    """
    extras = dict(extras or {})
    cache = None
    if conversation.breakpoints or "tools" in extras:
        cache = plan_cache(
            model,
            conversation.breakpoints,
            tools=extras.get("tools", ()),
            system=conversation.system,
            turns=conversation.turns,
        )
    headers: tuple[tuple[str, str], ...]
    if surface is Surface.MESSAGES_ENDPOINT:
        path, headers = MESSAGES_ENDPOINT_PATH, _MESSAGES_ENDPOINT_HEADERS
        betas = extras.pop("anthropic_beta", None)
        if betas:
            headers = (*headers, ("anthropic-beta", ",".join(betas)))
    else:
        path = invoke_path(model.model_id, stream=stream)
        headers = _INVOKE_STREAM_HEADERS if stream else _INVOKE_HEADERS
    if extra_headers:
        headers = tuple(sorted((*headers, *extra_headers)))
    if user_headers:
        headers = merge_headers(headers, user_headers)
    fields = build_body(model, conversation, sampling, surface=surface, stream=stream, thinking=thinking, extras=extras)
    if extra_body:
        fields.update(extra_body)
    try:
        body = _dumps(fields)
    except RecursionError:
        deepest = max(fields, key=lambda key: _depth(fields[key]))
        field = (
            "extra_body" if extra_body and deepest in extra_body else _ARGUMENT_OF_BODY_FIELD.get(deepest, "messages")
        )
        raise too_deep_error(field, fields[deepest]) from None
    except (ValueError, TypeError) as exc:  # NaN, Infinity, a set...: no JSON form; the service would refuse them
        raise InvalidRequestError(_unencodable_field(fields, extra_body), f"cannot be sent as JSON: {exc}") from None
    try:
        encoded = body.encode()
    except UnicodeEncodeError:
        raise InvalidRequestError("messages", "contains text that is not valid Unicode (a lone surrogate)") from None
    return Invocation(
        model, conversation, sampling, path, encoded, stream, surface, headers, cache=cache, output_schema=output_schema
    )


# ---------------------------------------------------------------------------------------------- responses


# ---------------------------------------------------------------------------------------------- streams
