"""Bedrock's answers, parsed: InvokeModel bodies and headers, error responses, and stream events
assembled into chunks and a completion. No function here reads the clock or touches a socket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from .._errors import (
    APIError,
    EventStreamError,
    IncompleteStreamError,
    ModelStreamError,
    StructuredOutputError,
    make_api_error,
)
from .._types import CacheCreation, ChatCompletion, StreamChunk, Usage
from .models import ModelApi
from .prompt import HUMAN_PROMPT, Conversation
from .protocol import Invocation
from .structured import parse_structured

__all__ = [
    "STOP_REASONS",
    "InvokeModelResponse",
    "StreamAssembler",
    "parse_error_response",
    "parse_invoke_response",
    "parse_raw_invoke_response",
    "parse_stream_error_event",
    "request_id_from",
    "usage_from_body",
    "usage_from_headers",
    "usage_from_metrics",
]


_loads = json.loads
#: A second byte that would make json.loads detect UTF-16 or UTF-32, or none at all.
_NUL = (b"\x00", b"")


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
    counts: dict[str, Any] = {field: _int_or_none(source.get(key)) for field, key in keys.items()}
    return Usage(**counts)


def usage_from_body(usage: object) -> Usage:
    """The Messages API's ``usage`` object (with the 5m/1h split of cache writes, when present)."""
    parsed = _usage_from(usage, _BODY_USAGE_KEYS)
    split = usage.get("cache_creation") if isinstance(usage, Mapping) else None
    if isinstance(split, Mapping):
        parsed = attrs.evolve(
            parsed,
            cache_creation=CacheCreation(
                ephemeral_5m_input_tokens=_int_or_none(split.get("ephemeral_5m_input_tokens")),
                ephemeral_1h_input_tokens=_int_or_none(split.get("ephemeral_1h_input_tokens")),
            ),
        )
    return parsed


def invoke_usage(headers: Mapping[str, str], usage: object) -> Usage:
    """``usage_from_headers(headers).merge(usage_from_body(usage))`` in one pass (one object, not three).

    The body's counts win where it reports them as integers, the headers fill the rest; this runs once
    per reply, so the usual case (plain ints in the body) is checked first.
    """
    if type(usage) is not dict and not isinstance(usage, Mapping):
        return usage_from_headers(headers)
    get = usage.get
    input_tokens = get("input_tokens")
    if type(input_tokens) is not int:
        input_tokens = _first_int(input_tokens, headers, "x-amzn-bedrock-input-token-count")
    output_tokens = get("output_tokens")
    if type(output_tokens) is not int:
        output_tokens = _first_int(output_tokens, headers, "x-amzn-bedrock-output-token-count")
    split = get("cache_creation")
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        # Absent from most replies: straight to the header then, without _first_int's checks.
        cache_read_input_tokens=_header_int(headers, "x-amzn-bedrock-cache-read-input-token-count")
        if (cache_read := get("cache_read_input_tokens")) is None
        else _first_int(cache_read, headers, "x-amzn-bedrock-cache-read-input-token-count"),
        cache_creation_input_tokens=_header_int(headers, "x-amzn-bedrock-cache-write-input-token-count")
        if (cache_write := get("cache_creation_input_tokens")) is None
        else _first_int(cache_write, headers, "x-amzn-bedrock-cache-write-input-token-count"),
        invocation_latency_ms=_header_int(headers, "x-amzn-bedrock-invocation-latency"),
        cache_creation=CacheCreation(
            ephemeral_5m_input_tokens=_int_or_none(split.get("ephemeral_5m_input_tokens")),
            ephemeral_1h_input_tokens=_int_or_none(split.get("ephemeral_1h_input_tokens")),
        )
        if isinstance(split, Mapping)
        else None,
    )


def _first_int(value: object, headers: Mapping[str, str], name: str) -> int | None:
    """The body's count if it is an int, else the header's."""
    counted = _int_or_none(value)
    return counted if counted is not None else _header_int(headers, name)


def usage_from_metrics(metrics: object) -> Usage:
    """A stream's ``amazon-bedrock-invocationMetrics``."""
    return _usage_from(metrics, _METRICS_USAGE_KEYS)


#: The stop reasons of the spec (CLAUDE_REQUEST_FEATURES_2026.md), one vocabulary on both surfaces: the
#: classic four (``end_turn``, ``max_tokens``, ``stop_sequence``, ``tool_use``) and ``pause_turn`` (a server
#: tool paused a long turn: send the reply back to continue), ``refusal`` (the reply is not the requested
#: output), ``model_context_window_exceeded``. Any other string the service sends is passed through unchanged.
STOP_REASONS = (
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
)


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
    texts = []
    for block in content:  # a loop, not a generator: usually one block, and this runs per reply
        text = block.get("text")
        if isinstance(text, str) and block.get("type") == "text":
            texts.append(text)
    return texts[0] if len(texts) == 1 else "".join(texts)


def _malformed(what: str, request_id: str | None) -> APIError:
    return make_api_error(
        status=200,
        code="MalformedResponse",
        message=f"unexpected response body: {what}",
        request_id=request_id,
    )


def _assistant_content(api: ModelApi, completion: str, content: list[dict[str, Any]], prefill: object) -> Any:
    """The reply as a message's content: plain text unless the reply (or prefill) has other blocks.

    Thinking blocks (with their signatures) and text blocks carrying citations stay blocks, unchanged, so the
    message can be sent back as it came (a tool-use loop with thinking must return them byte for byte).
    """
    if api is ModelApi.TEXT_COMPLETIONS:
        return completion
    if isinstance(prefill, list):
        return content
    for block in content:  # a loop, not all(<generator>): this runs per reply
        if block.get("type") != "text" or block.get("citations"):
            return content
    return completion


def _structured(invocation: Invocation, completion: str, stop_reason: str | None) -> tuple[Any, Any] | None:
    """Under ``output_config["format"]``: the reply's JSON, or the error reading it (``chat.parsed`` raises it)."""
    if invocation.output_schema is None:
        return None
    try:
        return parse_structured(completion, invocation.output_schema, stop_reason=stop_reason), None
    except StructuredOutputError as error:
        return None, error


def _json_object(body: bytes, request_id: str | None) -> dict[str, Any]:
    """A 200 body that must be one JSON object; anything else is a malformed answer."""
    try:
        # An object whose second byte is not NUL is UTF-8 to json.loads (no BOM, not UTF-16/32), so
        # decode it here as it would, without its Python-level encoding detection (every reply).
        data = _loads(body.decode("utf-8", "surrogatepass") if body[:1] == b"{" and body[1:2] not in _NUL else body)
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
    usage: Usage
    message_id: str | None = None
    if api is ModelApi.TEXT_COMPLETIONS:
        completion = data.get("completion")
        if not isinstance(completion, str):
            raise _malformed("no 'completion' text", request_id)
        if invocation.conversation.prefill is None:
            completion = _strip_turn_space(completion)
        usage = usage_from_headers(headers)
        content = [{"type": "text", "text": completion}]
        stop_reason, stop = _normalise_stop(api, data.get("stop_reason"), data.get("stop"))
    else:
        raw_content = data.get("content")
        if type(raw_content) is not list:
            raise _malformed("no 'content' list of blocks", request_id)
        for block in raw_content:
            if type(block) is not dict:
                raise _malformed("no 'content' list of blocks", request_id)
        content = raw_content
        completion = _text_of_blocks(content)
        stop_reason, stop = _normalise_stop(api, data.get("stop_reason"), data.get("stop_sequence"))
        usage = invoke_usage(headers, data.get("usage"))
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
        structured=_structured(invocation, completion, stop_reason),
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
    usage = invoke_usage(headers, data.get("usage"))
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


class TextPieces:
    """Streamed text kept as pieces, the small ones joined in runs of :attr:`RUN`.

    A stream's tokens are a few characters each, and a small ``str`` costs ~50 bytes of object header:
    a list of them holds ~10x the text's size for the life of the stream (memory per open stream, for a
    service holding thousands). Joining each run of small pieces once keeps it near the text's size, and
    keeps the copying linear (each character is copied into a run once, and once more at the end).
    """

    __slots__ = ("_runs", "_tail")

    RUN = 64

    def __init__(self, first: str = "") -> None:
        self._runs: list[str] = [first] if first else []
        self._tail: list[str] = []

    def append(self, piece: str) -> None:
        tail = self._tail
        tail.append(piece)
        if len(tail) == self.RUN:
            self._runs.append("".join(tail))
            tail.clear()

    def join(self) -> str:
        return "".join(self._runs) + "".join(self._tail)

    def __bool__(self) -> bool:
        return bool(self._runs or self._tail)


class StreamAssembler:
    """Folds a stream's decoded JSON events into chunks and, at the end, one ChatCompletion.

    Accepts text-completion chunks (``{"completion", "stop_reason", "stop"}``) and the Messages event
    sequence (``message_start`` ... ``message_stop``); both may carry
    ``amazon-bedrock-invocationMetrics``. A stream is complete only once its final event arrived.

    Deltas are kept as :class:`TextPieces` and joined once, when their block closes (or at the end):
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
        self._parts = TextPieces()
        self._blocks: dict[int, dict[str, Any]] = {}
        #: (index, field) -> the block the pieces belong to, and its pieces (the field's first value first).
        self._block_parts: dict[tuple[int, str], tuple[dict[str, Any], TextPieces]] = {}
        self._json_parts: dict[int, list[str]] = {}
        self._stop_reason: object = None
        self._stop: object = None
        self._usage = Usage()
        self._message_id: str | None = None
        self._finished = False

    @property
    def text(self) -> str:
        """All text received so far (the partial text of an interrupted stream)."""
        return self._parts.join()

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
            chunk = self._text_delta(event)
            if chunk is not None:
                return chunk
            delta = _event_field(event, "delta")
            index = _event_index(event)
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                return self._add_text(index, _event_text(delta, "text"), event)
            if delta_type == "input_json_delta":
                self._json_parts.setdefault(index, []).append(_event_text(delta, "partial_json"))
            elif delta_type in ("thinking_delta", "signature_delta"):
                key = "thinking" if delta_type == "thinking_delta" else "signature"
                block = self._blocks.setdefault(index, {"type": "thinking"})
                self._add_piece(index, key, block, _event_text(delta, key))
            elif delta_type == "citations_delta":
                self._add_citation(index, delta.get("citation"))
            return StreamChunk("", "content_block_delta", event)
        if event_type == "message_start":
            message = _event_field(event, "message")
            message_id = message.get("id")
            self._message_id = message_id if isinstance(message_id, str) else None
            self._usage = self._usage.merge(usage_from_body(message.get("usage")))
        elif event_type == "content_block_start":
            index = _event_index(event)
            self._join_pieces(index)  # a block started again at an index: the old one keeps its pieces
            block = self._blocks[index] = dict(_event_field(event, "content_block"))
            if isinstance(block.get("citations"), list):  # ours to append to: chunk.event keeps the original
                block["citations"] = list(block["citations"])
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

    def _text_delta(self, event: Mapping[str, Any]) -> StreamChunk | None:
        """A well-formed text delta, the per-token event, with the checks of the general path done by exact
        types; None for anything else (the general path then checks it, and says what is wrong)."""
        delta = event.get("delta")
        if type(delta) is not dict or delta.get("type") != "text_delta":
            return None
        text = delta.get("text")
        index = event.get("index", 0)
        if type(text) is not str or type(index) is not int:
            return None
        return self._add_text(index, text, event)

    def _add_text(self, index: int, text: str, event: Mapping[str, Any]) -> StreamChunk:
        """A checked text delta: to the stream's text, and to its block's when that is a text block."""
        self._parts.append(text)
        block = self._blocks.get(index)
        if block is not None and block.get("type") == "text":
            self._add_piece(index, "text", block, text)
        return StreamChunk(text, "content_block_delta", event)

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

    def _add_citation(self, index: int, citation: object) -> None:
        """A ``citations_delta`` adds one citation to its text block's list (appended: linear in the count)."""
        if not isinstance(citation, Mapping):
            raise EventStreamError("malformed stream event: 'citation' is not an object")
        block = self._blocks.setdefault(index, {"type": "text", "text": ""})
        citations = block.get("citations")
        if not isinstance(citations, list):
            citations = block["citations"] = []
        citations.append(dict(citation))

    def _add_piece(self, index: int, key: str, block: dict[str, Any], piece: str) -> None:
        entry = self._block_parts.get((index, key))
        if entry is None or entry[0] is not block:
            self._join_pieces(index)
            entry = self._block_parts[(index, key)] = (block, TextPieces(_event_text(block, key)))
        entry[1].append(piece)

    def _join_pieces(self, index: int | None = None) -> None:
        """Write the pieces of block ``index`` (None: of every block) into their blocks, once."""
        if not self._block_parts:
            return
        for key in [k for k in self._block_parts if index is None or k[0] == index]:
            block, pieces = self._block_parts.pop(key)
            block[key[1]] = pieces.join()

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
            structured=_structured(self.invocation, completion, stop_reason),
        )
