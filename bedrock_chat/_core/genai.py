"""OpenTelemetry GenAI attributes of one call, built from the prepared request and its answer (pure, sans-IO).

The names are the GenAI semantic conventions' (checked against the ``opentelemetry-semantic-conventions``
package's constants by a test); this module imports no OpenTelemetry package, so it builds plain dicts that
``bedrock_chat._telemetry`` hands to a span only when the span is recording.

Decisions, with the conventions' reasons:

- ``gen_ai.operation.name`` is ``chat`` for Messages models and ``text_completion`` for the legacy
  ``Human:/Assistant:`` models (Claude 2.x, Instant): the conventions name ``text_completion`` for
  "Completions API (Legacy)" operations, which is what those models' API is. CountTokens has no
  well-known value; ``count_tokens`` is used (the conventions allow a custom value where none applies).
- ``gen_ai.request.model`` is the id exactly as the caller named it (an inference-profile id or an ARN
  routes differently from its base model); the registry's base model id, when known, is
  ``bedrock_chat.model.base_id``.
- ``gen_ai.usage.input_tokens`` includes cache reads and cache writes, as the conventions define it (all
  input tokens); Anthropic's ``input_tokens`` excludes them, so they are added here. The two cache
  counts are also given under their own names.
- Message content (``gen_ai.input.messages`` ...) is built only on opt-in, by the caller of
  :func:`content_attributes`; nothing else here holds text of the conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from .._types import ChatCompletion, Usage
from .models import ModelApi, ResolvedModel
from .prompt import Conversation
from .protocol import Invocation

__all__ = [
    "AWS_BEDROCK_GUARDRAIL_ID",
    "AWS_REQUEST_ID",
    "BASE_MODEL_ID",
    "COUNT_TOKENS",
    "ERROR_TYPE",
    "GEN_AI_INPUT_MESSAGES",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_OUTPUT_MESSAGES",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MAX_TOKENS",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_REQUEST_STOP_SEQUENCES",
    "GEN_AI_REQUEST_STREAM",
    "GEN_AI_REQUEST_TEMPERATURE",
    "GEN_AI_REQUEST_TOP_K",
    "GEN_AI_REQUEST_TOP_P",
    "GEN_AI_RESPONSE_FINISH_REASONS",
    "GEN_AI_RESPONSE_ID",
    "GEN_AI_RESPONSE_MODEL",
    "GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK",
    "GEN_AI_SYSTEM_INSTRUCTIONS",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_TOOL_DEFINITIONS",
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS",
    "GEN_AI_USAGE_INPUT_TOKENS",
    "GEN_AI_USAGE_OUTPUT_TOKENS",
    "OUTPUT_CHUNK_TYPES",
    "PROVIDER",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "content_attributes",
    "input_tokens",
    "metric_attributes",
    "model_operation_name",
    "operation_name",
    "output_attributes",
    "raw_content_attributes",
    "raw_output_attributes",
    "raw_request_attributes",
    "raw_response_attributes",
    "request_attributes",
    "response_attributes",
    "usage_attributes",
]

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_STREAM = "gen_ai.request.stream"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
AWS_BEDROCK_GUARDRAIL_ID = "aws.bedrock.guardrail.id"
AWS_REQUEST_ID = "aws.request_id"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
#: Ours (no convention names it): the registry's base model behind the id the caller named.
BASE_MODEL_ID = "bedrock_chat.model.base_id"

#: ``gen_ai.provider.name`` for every call: the conventions' well-known value for Bedrock.
PROVIDER = "aws.bedrock"
#: The operation name of ``count_tokens`` (no well-known value applies).
COUNT_TOKENS = "count_tokens"
#: The stream events (``StreamChunk.type``) that are the conventions' output chunks, timed by
#: ``time_to_first_chunk`` and ``time_per_output_chunk``: those carrying the model's output (a legacy
#: model's ``completion`` events; a Messages model's ``content_block_delta``: text, thinking, tool-call
#: arguments, citations). The envelope (``message_start``, ``content_block_start``/``stop``,
#: ``message_delta``, ``message_stop``, ``ping``) carries none: a gap before ``message_stop`` is not the time
#: per output chunk, and the first chunk is the first output, what a reader waits for.
OUTPUT_CHUNK_TYPES = frozenset({"completion", "content_block_delta"})

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def operation_name(invocation: Invocation) -> str:
    """``text_completion`` for the legacy text-completion models, ``chat`` for Messages models."""
    return model_operation_name(invocation.model)


def model_operation_name(model: ResolvedModel) -> str:
    """The operation name of a call to ``model`` (see :func:`operation_name`)."""
    return "text_completion" if model.api is ModelApi.TEXT_COMPLETIONS else "chat"


def _guardrail_id(headers: Iterable[tuple[str, str]]) -> str | None:
    return next((value for name, value in headers if name == "x-amzn-bedrock-guardrailidentifier"), None)


def request_attributes(
    invocation: Invocation, *, operation: str, server_address: str, server_port: int
) -> dict[str, Any]:
    """The span's attributes known before sending: the request's parameters and where it goes."""
    sampling = invocation.sampling
    attributes = _base_attributes(invocation.model, operation, invocation.stream, server_address, server_port)
    attributes[GEN_AI_REQUEST_MAX_TOKENS] = sampling.max_tokens
    if sampling.temperature is not None:
        attributes[GEN_AI_REQUEST_TEMPERATURE] = float(sampling.temperature)
    if sampling.top_p is not None:
        attributes[GEN_AI_REQUEST_TOP_P] = float(sampling.top_p)
    if sampling.top_k is not None:
        attributes[GEN_AI_REQUEST_TOP_K] = sampling.top_k
    if sampling.stop_sequences:
        attributes[GEN_AI_REQUEST_STOP_SEQUENCES] = list(sampling.stop_sequences)
    guardrail = _guardrail_id(invocation.headers)
    if guardrail is not None:
        attributes[AWS_BEDROCK_GUARDRAIL_ID] = guardrail
    return attributes


def _base_attributes(
    model: ResolvedModel, operation: str, stream: bool, server_address: str, server_port: int
) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        GEN_AI_OPERATION_NAME: operation,
        GEN_AI_PROVIDER_NAME: PROVIDER,
        GEN_AI_REQUEST_MODEL: model.model_id,
        GEN_AI_REQUEST_STREAM: stream,
        SERVER_ADDRESS: server_address,
        SERVER_PORT: server_port,
    }
    if model.info is not None:
        attributes[BASE_MODEL_ID] = model.info.id
    return attributes


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def raw_request_attributes(
    model: ResolvedModel,
    body: Mapping[str, Any],
    headers: Iterable[tuple[str, str]],
    *,
    operation: str,
    server_address: str,
    server_port: int,
) -> dict[str, Any]:
    """:func:`request_attributes` of a request sent as a ready JSON body (the CLI's batch records), read
    from the body's own keys; a value of the wrong type is left out (Bedrock will refuse it anyway)."""
    attributes = _base_attributes(model, operation, False, server_address, server_port)
    max_tokens = body.get("max_tokens", body.get("max_tokens_to_sample"))
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attributes[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    for key, name in (("temperature", GEN_AI_REQUEST_TEMPERATURE), ("top_p", GEN_AI_REQUEST_TOP_P)):
        if _number(body.get(key)):
            attributes[name] = float(body[key])
    top_k = body.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        attributes[GEN_AI_REQUEST_TOP_K] = top_k
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops and all(isinstance(stop, str) for stop in stops):
        attributes[GEN_AI_REQUEST_STOP_SEQUENCES] = list(stops)
    guardrail = _guardrail_id(headers)
    if guardrail is not None:
        attributes[AWS_BEDROCK_GUARDRAIL_ID] = guardrail
    return attributes


def input_tokens(usage: Usage) -> int | None:
    """All input tokens, as the conventions count them: Anthropic's uncached input plus cache reads and writes."""
    if usage.input_tokens is None:
        return None
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


def usage_attributes(usage: Usage) -> dict[str, Any]:
    """The usage the service reported (counts it did not report are left out, not zeroed)."""
    attributes: dict[str, Any] = {}
    total = input_tokens(usage)
    if total is not None:
        attributes[GEN_AI_USAGE_INPUT_TOKENS] = total
    if usage.output_tokens is not None:
        attributes[GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
    if usage.cache_read_input_tokens is not None:
        attributes[GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_input_tokens
    if usage.cache_creation_input_tokens is not None:
        attributes[GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_creation_input_tokens
    return attributes


def response_attributes(chat: ChatCompletion) -> dict[str, Any]:
    """The answer's id, model, finish reason, request id and usage.

    The finish reason is Anthropic's ``stop_reason`` as sent (``end_turn``, ``max_tokens``,
    ``tool_use``...): the conventions define no mapping (their examples are OpenAI's values, and the
    output-messages schema accepts any string), and the provider's value is what its docs explain.
    """
    return _response_attributes(chat.id, chat.model, chat.stop_reason, chat.usage, chat.request_id)


def _response_attributes(
    response_id: object, model: object, stop_reason: object, usage: Usage, request_id: str | None
) -> dict[str, Any]:
    attributes = usage_attributes(usage)
    if response_id and isinstance(response_id, str):
        attributes[GEN_AI_RESPONSE_ID] = response_id
    if model and isinstance(model, str):
        attributes[GEN_AI_RESPONSE_MODEL] = model
    if stop_reason and isinstance(stop_reason, str):
        attributes[GEN_AI_RESPONSE_FINISH_REASONS] = [stop_reason]
    if request_id:
        attributes[AWS_REQUEST_ID] = request_id
    return attributes


def raw_response_attributes(body: Mapping[str, Any], usage: Usage, request_id: str | None) -> dict[str, Any]:
    """:func:`response_attributes` of a model's JSON body as sent (the CLI's batch records)."""
    return _response_attributes(body.get("id"), body.get("model"), body.get("stop_reason"), usage, request_id)


def metric_attributes(span_attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The conventions' metric attributes, taken from a span's (low cardinality: no ids, no parameters)."""
    return {key: span_attributes[key] for key in _METRIC_KEYS if key in span_attributes}


_METRIC_KEYS = (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
    ERROR_TYPE,
)


# -- content (opt-in only) ------------------------------------------------------------------------


def _parts(content: object) -> list[dict[str, Any]]:
    """Content blocks -> the conventions' message parts (text, tool_call, tool_call_response, reasoning, blob,
    uri; others as given, a generic part)."""
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, Mapping):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "content": block.get("text", "")})
        elif kind == "tool_use":
            parts.append(
                {"type": "tool_call", "id": block.get("id"), "name": block.get("name"), "arguments": block.get("input")}
            )
        elif kind == "tool_result":
            parts.append(
                {"type": "tool_call_response", "id": block.get("tool_use_id"), "response": block.get("content")}
            )
        elif kind == "thinking":
            parts.append({"type": "reasoning", "content": block.get("thinking", "")})
        elif kind in ("image", "document") and (media := _media_part(str(kind), block.get("source"))) is not None:
            parts.append(media)
        else:
            parts.append({"type": str(kind), **{k: v for k, v in block.items() if k not in ("type", "cache_control")}})
    return parts


def _media_part(kind: str, source: object) -> dict[str, Any] | None:
    """An image or document given inline (base64) or by URL -> the conventions' ``blob`` or ``uri`` part."""
    if not isinstance(source, Mapping):
        return None
    if source.get("type") == "base64":
        return {"type": "blob", "modality": kind, "mime_type": source.get("media_type"), "content": source.get("data")}
    if source.get("type") == "url":
        return {"type": "uri", "modality": kind, "uri": source.get("url")}
    return None  # a plain-text document, or a file id: kept as it is, a generic part


def _system_parts(system: str | list[Any] | None) -> list[dict[str, Any]]:
    return _parts(system) if system else []


def content_attributes(conversation: Conversation, tools: object = None) -> dict[str, Any]:
    """Prompts, system instructions and tool definitions, as JSON strings in the conventions' form (opt-in)."""
    turns: list[tuple[object, object]] = [(turn.role, turn.content) for turn in conversation.turns]
    return _content(turns, conversation.system, tools)


def raw_content_attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`content_attributes` of a ready JSON body (opt-in): its messages, or a legacy model's prompt."""
    messages = body.get("messages")
    if isinstance(messages, list):
        turns = [(m.get("role"), m.get("content")) for m in messages if isinstance(m, Mapping)]
    else:
        turns = [("user", body.get("prompt") if isinstance(body.get("prompt"), str) else "")]
    system = body.get("system")
    return _content(turns, system if isinstance(system, str | list) else None, body.get("tools"))


def _content(turns: list[tuple[object, object]], system: str | list[Any] | None, tools: object) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        GEN_AI_INPUT_MESSAGES: _dumps([{"role": role, "parts": _parts(content)} for role, content in turns])
    }
    system_parts = _system_parts(system)
    if system_parts:
        attributes[GEN_AI_SYSTEM_INSTRUCTIONS] = _dumps(system_parts)
    if isinstance(tools, list) and tools:
        attributes[GEN_AI_TOOL_DEFINITIONS] = _dumps(
            [
                {"type": "function", "name": tool.get("name"), "description": tool.get("description")}
                | ({"parameters": tool["input_schema"]} if "input_schema" in tool else {})
                for tool in tools
                if isinstance(tool, Mapping)
            ]
        )
    return attributes


def output_attributes(chat: ChatCompletion) -> dict[str, Any]:
    """The reply, as ``gen_ai.output.messages`` (opt-in)."""
    content: object = chat.content or chat.completion
    return _output(content, chat.stop_reason)


def raw_output_attributes(body: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`output_attributes` of a model's JSON body as sent (opt-in)."""
    return _output(body.get("content") or body.get("completion") or "", body.get("stop_reason"))


def _output(content: object, stop_reason: object) -> dict[str, Any]:
    reason = stop_reason if isinstance(stop_reason, str) else ""
    message = {"role": "assistant", "parts": _parts(content), "finish_reason": reason}
    return {GEN_AI_OUTPUT_MESSAGES: _dumps([message])}
