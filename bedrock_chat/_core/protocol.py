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

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from .._errors import (
    APIError,
    EventStreamError,
    IncompleteStreamError,
    InvalidRequestError,
    ModelStreamError,
    make_api_error,
)
from .._types import ChatCompletion, StreamChunk, Usage
from .models import ModelApi, ResolvedModel, SamplingRule, Surface
from .prompt import HUMAN_PROMPT, Conversation, messages_payload, text_prompt
from .sigv4 import percent_encode_path_segment

__all__ = [
    "ANTHROPIC_VERSION",
    "Invocation",
    "InvokeModelResponse",
    "SamplingParams",
    "StreamAssembler",
    "MESSAGES_API_VERSION",
    "MESSAGES_ENDPOINT_PATH",
    "build_body",
    "choose_surface",
    "invoke_path",
    "parse_error_response",
    "parse_invoke_response",
    "parse_stream_error_event",
    "parse_raw_invoke_response",
    "prepare_invocation",
    "request_id_from",
    "too_deep_error",
    "usage_from_headers",
    "validate_model_rules",
    "validate_tools",
    "validate_sampling",
]

ANTHROPIC_VERSION = "bedrock-2023-05-31"
DEFAULT_MAX_TOKENS = 256

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_loads = json.loads


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


def invoke_path(model_id: str, *, stream: bool) -> str:
    """The wire path, with the model id encoded as botocore encodes it (``:`` -> ``%3A``, ``/`` -> ``%2F``)."""
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
) -> Invocation:
    """Build the path, signed headers and body bytes of one call.

    ``extras`` are validated body fields (tools, beta flags); ``extra_headers`` validated request options.
    On the Messages endpoint, beta flags travel in the ``anthropic-beta`` header rather than the body.
    """
    extras = dict(extras or {})
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
    fields = build_body(model, conversation, sampling, surface=surface, stream=stream, thinking=thinking, extras=extras)
    try:
        body = _dumps(fields)
    except RecursionError:
        deepest = max(fields, key=lambda key: _depth(fields[key]))
        raise too_deep_error(_ARGUMENT_OF_BODY_FIELD.get(deepest, "messages"), fields[deepest]) from None
    except ValueError as exc:  # NaN and Infinity have no JSON form; the service would refuse them anyway
        raise InvalidRequestError("messages", f"cannot be sent as JSON: {exc}") from None
    try:
        encoded = body.encode()
    except UnicodeEncodeError:
        raise InvalidRequestError("messages", "contains text that is not valid Unicode (a lone surrogate)") from None
    return Invocation(model, conversation, sampling, path, encoded, stream, surface, headers)


# ---------------------------------------------------------------------------------------------- responses


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """Bedrock sends ``x-amzn-RequestId``; the Messages endpoint may send ``request-id`` instead."""
    return headers.get("x-amzn-requestid") or headers.get("request-id")


def usage_from_headers(headers: Mapping[str, str]) -> Usage:
    """Token counts and latency from InvokeModel's ``X-Amzn-Bedrock-*`` headers (names lower-case)."""
    return Usage(
        input_tokens=_header_int(headers, "x-amzn-bedrock-input-token-count"),
        output_tokens=_header_int(headers, "x-amzn-bedrock-output-token-count"),
        cache_read_input_tokens=_header_int(headers, "x-amzn-bedrock-cache-read-input-token-count"),
        cache_creation_input_tokens=_header_int(headers, "x-amzn-bedrock-cache-write-input-token-count"),
        invocation_latency_ms=_header_int(headers, "x-amzn-bedrock-invocation-latency"),
    )


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Usage field -> the key each source reports it under.
_BODY_USAGE_KEYS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_input_tokens",
    "cache_creation_input_tokens": "cache_creation_input_tokens",
}
_METRICS_USAGE_KEYS = {
    "input_tokens": "inputTokenCount",
    "output_tokens": "outputTokenCount",
    "cache_read_input_tokens": "cacheReadInputTokenCount",
    "cache_creation_input_tokens": "cacheWriteInputTokenCount",
    "invocation_latency_ms": "invocationLatency",
    "first_byte_latency_ms": "firstByteLatency",
}


def _usage_from(source: object, keys: Mapping[str, str]) -> Usage:
    if not isinstance(source, Mapping):
        return Usage()
    return Usage(**{field: _int_or_none(source.get(key)) for field, key in keys.items()})


def usage_from_body(usage: object) -> Usage:
    """The Messages API's ``usage`` object."""
    return _usage_from(usage, _BODY_USAGE_KEYS)


def usage_from_metrics(metrics: object) -> Usage:
    """A stream's ``amazon-bedrock-invocationMetrics``."""
    return _usage_from(metrics, _METRICS_USAGE_KEYS)


def _normalise_stop(api: ModelApi, stop_reason: object, stop: object) -> tuple[str | None, str | None]:
    """One vocabulary for both APIs: the text API's built-in ``\\n\\nHuman:`` stop is a natural end_turn."""
    reason = stop_reason if isinstance(stop_reason, str) else None
    stop_text = stop if isinstance(stop, str) else None
    if api is ModelApi.TEXT_COMPLETIONS and reason == "stop_sequence" and stop_text in (None, HUMAN_PROMPT):
        return "end_turn", None
    return reason, stop_text


def _reply_messages(conversation: Conversation, reply: Any) -> list[dict[str, Any]]:
    """The conversation to feed back: the input, with the reply appended (a prefill shown completed)."""
    messages = list(conversation.original)
    prefill = conversation.prefill
    if prefill is not None:
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if isinstance(prefill, str) and isinstance(reply, str):
            reply = prefill + reply
        else:
            prefill_blocks = [{"type": "text", "text": prefill}] if isinstance(prefill, str) else list(prefill)
            reply_blocks = [{"type": "text", "text": reply}] if isinstance(reply, str) else list(reply)
            reply = prefill_blocks + reply_blocks
    messages.append({"role": "assistant", "content": reply})
    return messages


def _strip_turn_space(text: str) -> str:
    """The text prompt ends with ``Assistant:``, so a completion starts with the space that separates the turn."""
    return text[1:] if text.startswith(" ") else text


def _text_of_blocks(content: Sequence[Mapping[str, Any]]) -> str:
    return "".join(
        block["text"] for block in content if block.get("type") == "text" and isinstance(block.get("text"), str)
    )


def _malformed(what: str, request_id: str | None) -> APIError:
    return make_api_error(
        status=200,
        code="MalformedResponse",
        message=f"unexpected response body: {what}",
        request_id=request_id,
    )


def _assistant_content(api: ModelApi, completion: str, content: list[dict[str, Any]], prefill: object) -> Any:
    """The reply as a message's content: plain text unless the reply (or prefill) has non-text blocks."""
    if api is ModelApi.TEXT_COMPLETIONS:
        return completion
    if all(block.get("type") == "text" for block in content) and not isinstance(prefill, list):
        return completion
    return content


def _json_object(body: bytes, request_id: str | None) -> dict[str, Any]:
    """A 200 body that must be one JSON object; anything else is a malformed answer."""
    try:
        data = _loads(body)
    except ValueError:
        raise _malformed("not JSON", request_id) from None
    except RecursionError:  # nested past the decoder's depth: still the server's fault, typed as such
        raise _malformed("JSON nested too deep to decode", request_id) from None
    if not isinstance(data, dict):
        raise _malformed("not a JSON object", request_id)
    return data


def parse_invoke_response(
    invocation: Invocation, headers: Mapping[str, str], body: bytes, *, latency: float
) -> ChatCompletion:
    """A 200 InvokeModel response -> ChatCompletion (``headers`` with lower-case names)."""
    request_id = request_id_from(headers)
    data = _json_object(body, request_id)
    api = invocation.model.api
    usage = usage_from_headers(headers)
    message_id: str | None = None
    if api is ModelApi.TEXT_COMPLETIONS:
        completion = data.get("completion")
        if not isinstance(completion, str):
            raise _malformed("no 'completion' text", request_id)
        if invocation.conversation.prefill is None:
            completion = _strip_turn_space(completion)
        content = [{"type": "text", "text": completion}]
        stop_reason, stop = _normalise_stop(api, data.get("stop_reason"), data.get("stop"))
    else:
        raw_content = data.get("content")
        if not isinstance(raw_content, list) or not all(isinstance(block, dict) for block in raw_content):
            raise _malformed("no 'content' list of blocks", request_id)
        content = raw_content
        completion = _text_of_blocks(content)
        stop_reason, stop = _normalise_stop(api, data.get("stop_reason"), data.get("stop_sequence"))
        usage = usage.merge(usage_from_body(data.get("usage")))
        message_id = data.get("id") if isinstance(data.get("id"), str) else None
    prefill = invocation.conversation.prefill
    return ChatCompletion(
        messages=_reply_messages(invocation.conversation, _assistant_content(api, completion, content, prefill)),
        completion=completion,
        stop_reason=stop_reason,
        stop=stop,
        model=invocation.model.model_id,
        usage=usage,
        request_id=request_id,
        latency=latency,
        id=message_id,
        content=content,
    )


@attrs.frozen
class InvokeModelResponse:
    """The answer of ``invoke_model``: the model's JSON body as sent, and the metadata around it."""

    body: dict[str, Any]
    request_id: str | None
    usage: Usage
    latency: float


def parse_raw_invoke_response(headers: Mapping[str, str], body: bytes, *, latency: float) -> InvokeModelResponse:
    """A 200 InvokeModel response, kept as the model's JSON object (usage from headers and body)."""
    request_id = request_id_from(headers)
    data = _json_object(body, request_id)
    usage = usage_from_headers(headers).merge(usage_from_body(data.get("usage")))
    return InvokeModelResponse(data, request_id, usage, latency)


def parse_error_response(
    status: int, headers: Mapping[str, str], body: bytes, scrub: Callable[[str], str] | None = None
) -> APIError:
    """Any non-200 answer -> the typed error, from ``x-amzn-ErrorType``, the body's code, or the status.

    ``scrub`` cleans a body that is not JSON before it is cut to 2,000 characters (a secret cut in
    two would no longer be found); the caller scrubs the decoded fields of the error afterwards.
    """
    request_id = request_id_from(headers)
    code = headers.get("x-amzn-errortype")
    message: str | None = None
    data: Any = None
    try:
        data = _loads(body) if body else None
    except (ValueError, RecursionError):  # not JSON, or nested too deep to decode: shown as text
        text = body.decode("utf-8", "replace")
        message = (scrub(text) if scrub is not None else text)[:2000].strip() or None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, Mapping):  # Anthropic-style: {"type": "error", "error": {"type", "message"}}
            code = code or (error.get("type") if isinstance(error.get("type"), str) else None)
            message = error.get("message") if isinstance(error.get("message"), str) else None
        else:
            for key in ("__type", "code", "Code"):
                if not code and isinstance(data.get(key), str):
                    code = data[key]
            for key in ("message", "Message"):
                if isinstance(data.get(key), str):
                    message = data[key]
                    break
    return make_api_error(
        status=status,
        code=code,
        message=message,
        request_id=request_id,
        body=data if isinstance(data, dict) else None,
    )


# ---------------------------------------------------------------------------------------------- streams

#: Anthropic error types that mean something else mid-stream (an ``error`` event after a 200) than in an
#: HTTP error. A model failing while it streams is ``modelStreamErrorException`` on InvokeModel; on the
#: Messages endpoint it can only be ``api_error``, which before the 200 means a server fault.
_MID_STREAM_CLASSES: Mapping[str, type[APIError]] = {"api_error": ModelStreamError}


def parse_stream_error_event(event: Mapping[str, Any], request_id: str | None) -> APIError:
    """An SSE ``error`` event (``{"type": "error", "error": {"type", "message"}}``) -> InvokeModel's class for it."""
    error = event.get("error")
    error = error if isinstance(error, Mapping) else {}
    found = error.get("type")
    code = found if isinstance(found, str) else "error"
    message = error.get("message") if isinstance(error.get("message"), str) else None
    cls = _MID_STREAM_CLASSES.get(code)
    if cls is not None:
        return cls(message or "(no message)", status=200, code=code, request_id=request_id, body=event)
    return make_api_error(status=200, code=code, message=message, request_id=request_id, body=event)


def _event_field(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A nested object of a stream event ({} when absent); anything else is a malformed stream."""
    value = event.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventStreamError(f"malformed stream event: {key!r} is not an object")
    return value


def _event_text(container: Mapping[str, Any], key: str) -> str:
    """A text field of a stream event ("" when absent); anything but a string is a malformed stream."""
    value = container.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventStreamError(f"malformed stream event: {key!r} is not a string")
    return value


def _event_index(event: Mapping[str, Any]) -> int:
    index = event.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        raise EventStreamError("malformed stream event: 'index' is not an integer")
    return index


class StreamAssembler:
    """Folds a stream's decoded JSON events into chunks and, at the end, one ChatCompletion.

    Accepts text-completion chunks (``{"completion", "stop_reason", "stop"}``) and the Messages event
    sequence (``message_start`` ... ``message_stop``); both may carry
    ``amazon-bedrock-invocationMetrics``. A stream is complete only once its final event arrived.

    Deltas are kept as lists of pieces and joined once, when their block closes (or at the end):
    adding each delta to the block's text would copy the whole text per delta, quadratic in the answer.
    """

    __slots__ = (
        "_api",
        "_block_parts",
        "_blocks",
        "_finished",
        "_json_parts",
        "_message_id",
        "_parts",
        "_stop",
        "_stop_reason",
        "_usage",
        "invocation",
    )

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        self._api = invocation.model.api
        self._parts: list[str] = []
        self._blocks: dict[int, dict[str, Any]] = {}
        #: (index, field) -> the block the pieces belong to, and its pieces (the field's first value first).
        self._block_parts: dict[tuple[int, str], tuple[dict[str, Any], list[str]]] = {}
        self._json_parts: dict[int, list[str]] = {}
        self._stop_reason: object = None
        self._stop: object = None
        self._usage = Usage()
        self._message_id: str | None = None
        self._finished = False

    @property
    def text(self) -> str:
        """All text received so far (the partial text of an interrupted stream)."""
        return "".join(self._parts)

    @property
    def finished(self) -> bool:
        """True once the stream's final event arrived."""
        return self._finished

    def feed(self, event: Mapping[str, Any]) -> StreamChunk:
        """Take one decoded event; returns the chunk to hand to the caller."""
        metrics = event.get("amazon-bedrock-invocationMetrics")
        if metrics is not None:
            self._usage = self._usage.merge(usage_from_metrics(metrics))
        if self._api is ModelApi.TEXT_COMPLETIONS and "completion" in event:
            return self._feed_completion(event)
        event_type = event.get("type")
        if event_type == "content_block_delta":
            delta = _event_field(event, "delta")
            index = _event_index(event)
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                text = _event_text(delta, "text")
                self._parts.append(text)
                block = self._blocks.get(index)
                if block is not None and block.get("type") == "text":
                    self._add_piece(index, "text", block, text)
                return StreamChunk(text, "content_block_delta", event)
            if delta_type == "input_json_delta":
                self._json_parts.setdefault(index, []).append(_event_text(delta, "partial_json"))
            elif delta_type in ("thinking_delta", "signature_delta"):
                key = "thinking" if delta_type == "thinking_delta" else "signature"
                block = self._blocks.setdefault(index, {"type": "thinking"})
                self._add_piece(index, key, block, _event_text(delta, key))
            return StreamChunk("", "content_block_delta", event)
        if event_type == "message_start":
            message = _event_field(event, "message")
            message_id = message.get("id")
            self._message_id = message_id if isinstance(message_id, str) else None
            self._usage = self._usage.merge(usage_from_body(message.get("usage")))
        elif event_type == "content_block_start":
            index = _event_index(event)
            self._join_pieces(index)  # a block started again at an index: the old one keeps its pieces
            self._blocks[index] = dict(_event_field(event, "content_block"))
        elif event_type == "content_block_stop":
            self._close_block(_event_index(event))
        elif event_type == "message_delta":
            delta = _event_field(event, "delta")
            self._stop_reason = delta.get("stop_reason")
            self._stop = delta.get("stop_sequence")
            self._usage = self._usage.merge(usage_from_body(event.get("usage")))
        elif event_type == "message_stop":
            self._finished = True
        return StreamChunk("", event_type if isinstance(event_type, str) else "unknown", event)

    def _feed_completion(self, event: Mapping[str, Any]) -> StreamChunk:
        text = _event_text(event, "completion")
        if not self._parts and self.invocation.conversation.prefill is None:
            text = _strip_turn_space(text)
        self._parts.append(text)
        if event.get("stop_reason") is not None:
            self._stop_reason = event["stop_reason"]
            self._stop = event.get("stop")
            self._finished = True
        return StreamChunk(text, "completion", event)

    def _add_piece(self, index: int, key: str, block: dict[str, Any], piece: str) -> None:
        entry = self._block_parts.get((index, key))
        if entry is None or entry[0] is not block:
            self._join_pieces(index)
            entry = self._block_parts[(index, key)] = (block, [_event_text(block, key)])
        entry[1].append(piece)

    def _join_pieces(self, index: int | None = None) -> None:
        """Write the pieces of block ``index`` (None: of every block) into their blocks, once."""
        if not self._block_parts:
            return
        for key in [k for k in self._block_parts if index is None or k[0] == index]:
            block, pieces = self._block_parts.pop(key)
            block[key[1]] = "".join(pieces)

    def _close_block(self, index: int) -> None:
        self._join_pieces(index)
        block = self._blocks.get(index)
        parts = self._json_parts.pop(index, None)
        if block is not None and block.get("type") in ("tool_use", "server_tool_use") and parts is not None:
            raw = "".join(parts)
            try:
                block["input"] = _loads(raw) if raw else {}
            except ValueError:
                raise IncompleteStreamError(f"tool input of block {index} is not valid JSON") from None

    def completion(
        self, *, request_id: str | None, latency: float, header_usage: Usage | None = None
    ) -> ChatCompletion:
        """The final result; raises IncompleteStreamError if the final event never came."""
        if not self._finished:
            error = IncompleteStreamError(
                "the response stream ended before its final event"
                + (f" [request id {request_id}]" if request_id else "")
            )
            error.partial_text = self.text
            raise error
        self._join_pieces()
        completion = self.text
        api = self._api
        if api is ModelApi.TEXT_COMPLETIONS:
            content = [{"type": "text", "text": completion}]
        else:
            content = [self._blocks[i] for i in sorted(self._blocks)]
        stop_reason, stop = _normalise_stop(api, self._stop_reason, self._stop)
        usage = (header_usage or Usage()).merge(self._usage)
        prefill = self.invocation.conversation.prefill
        reply = (
            completion if api is ModelApi.TEXT_COMPLETIONS else _assistant_content(api, completion, content, prefill)
        )
        return ChatCompletion(
            messages=_reply_messages(self.invocation.conversation, reply),
            completion=completion,
            stop_reason=stop_reason,
            stop=stop,
            model=self.invocation.model.model_id,
            usage=usage,
            request_id=request_id,
            latency=latency,
            id=self._message_id,
            content=content,
        )
