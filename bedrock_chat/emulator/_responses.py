"""Replies as plain data: what to send, in which pieces, with which delays, and how the body ends.

Handlers never touch a socket: they return a :class:`Reply` and the server (``_server``) plays it. That
keeps every fault (a dropped connection, a stall, a corrupted frame) a property of the data, testable
without I/O, and keeps the server's loop one generic piece of code.
"""

from __future__ import annotations

import enum
import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence

import attrs

from .._core.eventstream import encode_chunk_event, encode_exception_event
from ._cache import CacheUsage
from ._fake_model import FakeReply
from ._faults import STREAM_EXCEPTIONS, Fault, FaultKind
from ._quota import Reservation
from ._tools import ToolCall, content_blocks, tool_events
from ._wire_errors import ServiceError

__all__ = [
    "NO_ADDITIONS",
    "NO_PADDING",
    "PADDING_ALPHABET",
    "Additions",
    "Ending",
    "Reply",
    "block_events",
    "padder",
    "reply_content",
    "apply_fault",
    "error_reply",
    "messages_body",
    "messages_stream_frames",
    "new_request_id",
    "ok_json_reply",
    "ok_reply",
    "stream_reply",
    "text_body",
    "text_stream_frames",
]

_JSON = (b"content-type", b"application/json")
_EVENTSTREAM = (b"content-type", b"application/vnd.amazon.eventstream")
_BEDROCK_CONTENT_TYPE = (b"x-amzn-bedrock-content-type", b"application/json")
_NO_FIELDS: Mapping[str, object] = {}
Headers = tuple[tuple[bytes, bytes], ...]
#: Bedrock pads each stream chunk's payload with ``"p"``, a prefix of this of varying length (against
#: token-length side channels; aws-sdk-js-v3#6919 shows lengths from 3 to 61).
PADDING_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def NO_PADDING() -> bytes:
    """No ``"p"`` field (``EmulatorOptions(stream_padding=False)``)."""
    return b""


def padder(seed: int) -> Callable[[], bytes]:
    """Paddings for one stream: prefixes of :data:`PADDING_ALPHABET`, 1 to 62 long, seeded (deterministic)."""
    rng = random.Random(seed ^ 0x9AD)
    top = len(PADDING_ALPHABET)
    return lambda: PADDING_ALPHABET[: rng.randint(1, top)]


@attrs.frozen
class Additions:
    """What a reply carries beyond text and tool calls: a thinking block, citations, cache usage."""

    thinking: Mapping[str, str] | None = None
    citations: tuple[Mapping[str, object], ...] = ()
    cache: CacheUsage | None = None


NO_ADDITIONS = Additions()


def reply_content(generation: FakeReply, call: ToolCall | None, add: Additions) -> list[dict[str, object]]:
    """The reply's content blocks: the thinking block first, citations on the first text block."""
    blocks = content_blocks(generation, call)
    if add.citations:
        blocks = [
            {**block, "citations": [dict(c) for c in add.citations]} if block["type"] == "text" and i == 0 else block
            for i, block in enumerate(blocks)
        ]
    if add.thinking is not None:
        blocks.insert(0, dict(add.thinking))
    return blocks


def block_events(
    generation: FakeReply, pieces: Sequence[str], call: ToolCall | None, add: Additions
) -> list[dict[str, object]]:
    """The content-block events of a streamed reply (``content_block_start``, deltas, ``_stop``), in order.

    A thinking block streams as ``thinking_delta`` (its text in two pieces) then ``signature_delta``; a cited
    text block sends one ``citations_delta`` per citation before its text. The text block is left out when a
    tool call has no text; the tool block follows (``_tools``).
    """
    events: list[dict[str, object]] = []
    index = 0
    if add.thinking is not None:
        text = add.thinking["thinking"]
        half = len(text) // 2
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events.append({"type": "content_block_start", "index": 0, "content_block": start})
        for piece in (text[:half], text[half:]):
            events.append(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": piece}}
            )
        signature = {"type": "signature_delta", "signature": add.thinking["signature"]}
        events.append({"type": "content_block_delta", "index": 0, "delta": signature})
        events.append({"type": "content_block_stop", "index": 0})
        index = 1
    has_text = call is None or bool(generation.text)
    if has_text:
        events.append({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
        events.extend(
            {"type": "content_block_delta", "index": index, "delta": {"type": "citations_delta", "citation": dict(c)}}
            for c in add.citations
        )
        events.extend(
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
            for piece in pieces
        )
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    if call is not None:
        events.extend(tool_events(call, index))
    return events


class Ending(enum.Enum):
    """How a reply's body ends."""

    COMPLETE = "complete"  # every part, then the end of the message
    DROP = "drop"  # some parts, then the socket is closed without finishing the body
    STALL = "stall"  # some parts, then nothing until the client leaves or the emulator stops


@attrs.frozen(kw_only=True)
class Reply:
    """One response as data. ``parts`` are HTTP chunks when ``chunked``, else pieces of a sized body.

    ``sent_parts`` says how many parts go out before a DROP or STALL ending; ``fault`` (the injected
    fault's name) only feeds the request log.
    """

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    parts: tuple[bytes, ...] = ()
    chunked: bool = False
    delay: float = 0.0
    first_part_delay: float = 0.0
    part_delay: float = 0.0
    ending: Ending = Ending.COMPLETE
    sent_parts: int = 0
    fault: str | None = None
    #: Tokens the request reserves from a tokens-per-minute quota, and what it used (``_quota``).
    reservation: Reservation | None = None


def new_request_id() -> str:
    """A request id like Bedrock's (a UUID4)."""
    return str(uuid.uuid4())


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def error_reply(error: ServiceError, request_id: str) -> Reply:
    """An AWS rest-json error: status, ``x-amzn-ErrorType``, ``x-amzn-RequestId`` and a ``{"message"}`` body."""
    body = _dumps(error.body())
    return Reply(
        status=error.status,
        headers=(
            _JSON,
            (b"content-length", str(len(body)).encode()),
            (b"x-amzn-requestid", request_id.encode()),
            (b"x-amzn-errortype", error.error_type_header.encode()),
        ),
        parts=(body,),
    )


def text_body(generation: FakeReply, extra: Mapping[str, object] = _NO_FIELDS) -> dict[str, object]:
    """The InvokeModel body of a text-completion model (``extra``: top-level fields such as a guardrail's)."""
    return {
        "completion": generation.text,
        "stop_reason": generation.stop_reason,
        "stop": generation.stop_sequence,
        **extra,
    }


def messages_body(
    generation: FakeReply,
    *,
    message_id: str,
    model: str,
    input_tokens: int,
    call: ToolCall | None = None,
    extra: Mapping[str, object] = _NO_FIELDS,
    add: Additions = NO_ADDITIONS,
) -> dict[str, object]:
    """The InvokeModel body of a Messages model: the text block, or the tool call (see ``_tools``).

    With cache usage (a request with breakpoints), ``usage`` carries the cache counts too.
    """
    usage: dict[str, object] = {"input_tokens": input_tokens, "output_tokens": generation.output_tokens}
    if add.cache is not None:
        usage.update(add.cache.fields())
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply_content(generation, call, add)
        if add is not NO_ADDITIONS
        else content_blocks(generation, call),
        "stop_reason": generation.stop_reason,
        "stop_sequence": generation.stop_sequence,
        "usage": usage,
        **extra,
    }


def ok_json_reply(body: Mapping[str, object], *, request_id: str, headers: Headers = ()) -> Reply:
    """A 200 ``application/json`` reply with a request id (and ``headers``)."""
    data = _dumps(body)
    return Reply(
        status=200,
        headers=(
            _JSON,
            (b"content-length", str(len(data)).encode()),
            (b"x-amzn-requestid", request_id.encode()),
            *headers,
        ),
        parts=(data,),
    )


def ok_reply(
    body: dict[str, object],
    *,
    request_id: str,
    input_tokens: int,
    output_tokens: int,
    latency_ms: int,
    headers: Headers = (),
    cache: CacheUsage | None = None,
    reservation: Reservation | None = None,
) -> Reply:
    """A 200 InvokeModel reply with Bedrock's usage headers (and ``headers``, e.g. echoed options).

    ``cache``: a request with breakpoints also gets ``X-Amzn-Bedrock-Cache-{Read,Write}-Input-Token-Count``.
    """
    usage: Headers = (
        (b"x-amzn-bedrock-invocation-latency", str(latency_ms).encode()),
        (b"x-amzn-bedrock-output-token-count", str(output_tokens).encode()),
        (b"x-amzn-bedrock-input-token-count", str(input_tokens).encode()),
    )
    if cache is not None:
        usage += (
            (b"x-amzn-bedrock-cache-read-input-token-count", str(cache.read).encode()),
            (b"x-amzn-bedrock-cache-write-input-token-count", str(cache.write).encode()),
        )
    reply = ok_json_reply(body, request_id=request_id, headers=(*usage, *headers))
    return reply if reservation is None else attrs.evolve(reply, reservation=reservation)


def _metrics(input_tokens: int, output_tokens: int, latency_ms: int, first_byte_ms: int) -> dict[str, int]:
    return {
        "inputTokenCount": input_tokens,
        "outputTokenCount": output_tokens,
        "invocationLatency": latency_ms,
        "firstByteLatency": first_byte_ms,
    }


def _latency(frame_count: int, first_byte_ms: int, chunk_delay_ms: float) -> int:
    """The planned (not measured) latency of a stream: deterministic, and what the delays are set to produce."""
    return first_byte_ms + round(chunk_delay_ms * (frame_count - 1))


def text_stream_frames(
    generation: FakeReply,
    pieces: Sequence[str],
    *,
    input_tokens: int,
    first_byte_ms: int,
    chunk_delay_ms: float,
    extra: Mapping[str, object] = _NO_FIELDS,
    pad: Callable[[], bytes] = NO_PADDING,
) -> list[bytes]:
    """Text-completion chunks, one per piece of text, then a final chunk with the stop reason and metrics.

    Whether Bedrock sends the stop reason in a separate empty chunk (as here) or on the last text
    chunk is UNVERIFIED; clients must handle both. ``extra`` goes into the final chunk; ``pad`` gives
    each chunk's ``"p"``.
    """
    frames = [
        encode_chunk_event(b'{"completion":' + _dumps(piece) + b',"stop_reason":null,"stop":null}', pad())
        for piece in pieces
    ]
    latency_ms = _latency(len(frames) + 1, first_byte_ms, chunk_delay_ms)
    final = {
        "completion": "",
        "stop_reason": generation.stop_reason,
        "stop": generation.stop_sequence,
        "amazon-bedrock-invocationMetrics": _metrics(input_tokens, generation.output_tokens, latency_ms, first_byte_ms),
        **extra,
    }
    frames.append(encode_chunk_event(_dumps(final), pad()))
    return frames


def messages_stream_frames(
    generation: FakeReply,
    pieces: Sequence[str],
    *,
    message_id: str,
    model: str,
    input_tokens: int,
    first_byte_ms: int,
    chunk_delay_ms: float,
    call: ToolCall | None = None,
    extra: Mapping[str, object] = _NO_FIELDS,
    add: Additions = NO_ADDITIONS,
    pad: Callable[[], bytes] = NO_PADDING,
) -> list[bytes]:
    """The Messages event sequence, each event in a ``chunk`` frame; the last carries the metrics (and ``extra``).

    The content blocks are :func:`block_events`' (a plain text reply takes a pre-encoded fast path);
    ``message_start``'s usage carries the cache counts of a request with breakpoints; ``pad`` gives each
    chunk's ``"p"``.
    """
    usage: dict[str, object] = {"input_tokens": input_tokens, "output_tokens": 1}
    if add.cache is not None:
        usage.update(add.cache.fields())
    start = {
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }
    frames = [encode_chunk_event(_dumps(start), pad())]
    if add.thinking is not None or add.citations:
        frames.extend(encode_chunk_event(_dumps(event), pad()) for event in block_events(generation, pieces, call, add))
    else:
        has_text = call is None or bool(generation.text)
        if has_text:
            frames.append(
                encode_chunk_event(
                    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}', pad()
                )
            )
            frames.extend(
                encode_chunk_event(
                    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
                    + _dumps(piece)
                    + b"}}",
                    pad(),
                )
                for piece in pieces
            )
            frames.append(encode_chunk_event(b'{"type":"content_block_stop","index":0}', pad()))
        if call is not None:
            frames.extend(encode_chunk_event(_dumps(event), pad()) for event in tool_events(call, int(has_text)))
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": generation.stop_reason, "stop_sequence": generation.stop_sequence},
        "usage": {"output_tokens": generation.output_tokens},
    }
    frames.append(encode_chunk_event(_dumps(delta), pad()))
    latency_ms = _latency(len(frames) + 1, first_byte_ms, chunk_delay_ms)
    stop = {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": _metrics(input_tokens, generation.output_tokens, latency_ms, first_byte_ms),
        **extra,
    }
    frames.append(encode_chunk_event(_dumps(stop), pad()))
    return frames


def stream_reply(frames: Sequence[bytes], *, request_id: str, headers: Headers = ()) -> Reply:
    """A 200 InvokeModelWithResponseStream reply: one HTTP chunk per event-stream frame (and ``headers``)."""
    return Reply(
        status=200,
        headers=(_EVENTSTREAM, _BEDROCK_CONTENT_TYPE, (b"x-amzn-requestid", request_id.encode()), *headers),
        parts=tuple(frames),
        chunked=True,
    )


def _corrupt_crc(frame: bytes) -> bytes:
    return frame[:-4] + bytes(byte ^ 0xFF for byte in frame[-4:])


def apply_fault(reply: Reply, fault: Fault) -> Reply:
    """``reply`` changed by a mid-body fault; the fault strikes at part ``max(1, n // 2)``."""
    kind = fault.kind
    if kind is FaultKind.STALL:
        return attrs.evolve(reply, ending=Ending.STALL, sent_parts=0, fault=fault.name)
    parts = reply.parts
    if not reply.chunked and kind in (FaultKind.DROP_MID_STREAM, FaultKind.STALL_MID_STREAM):
        # A sized body has one part: split it so that half of it goes out before the fault.
        body = parts[0]
        parts = (body[: len(body) // 2], body[len(body) // 2 :])
    at = max(1, len(parts) // 2)
    if kind is FaultKind.DROP_MID_STREAM:
        return attrs.evolve(reply, parts=parts, ending=Ending.DROP, sent_parts=at, fault=fault.name)
    if kind is FaultKind.STALL_MID_STREAM:
        return attrs.evolve(reply, parts=parts, ending=Ending.STALL, sent_parts=at, fault=fault.name)
    if not reply.chunked:
        return attrs.evolve(reply, fault=fault.name)  # bad_crc and none: nothing to do to a JSON body
    if kind is FaultKind.STREAM_EXCEPTION and fault.exception_type is not None:
        body_fields = STREAM_EXCEPTIONS[fault.exception_type][0]
        frame = encode_exception_event(fault.exception_type, _dumps(body_fields))
        return attrs.evolve(reply, parts=(*parts[:at], frame), fault=fault.name)
    if kind is FaultKind.BAD_CRC:
        at = min(at, len(parts) - 1)
        return attrs.evolve(reply, parts=(*parts[:at], _corrupt_crc(parts[at]), *parts[at + 1 :]), fault=fault.name)
    return attrs.evolve(reply, fault=fault.name)
