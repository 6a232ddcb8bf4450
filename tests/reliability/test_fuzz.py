"""Fuzzing: decoders, response parsers and the prompt builder raise only typed errors, finish, and stay bounded.

Targets: the AWS event-stream decoder (raw bytes, and valid frames mutated with and without repaired
CRCs, so that the header parser is reached), the SSE decoder (with tiny limits, so every limit path is
hit), the client's two stream pipelines (decoder -> source -> StreamAssembler, as ``ChatCompletionStream``
runs them), ``parse_invoke_response``/``parse_raw_invoke_response``, ``parse_error_response``,
``StreamAssembler.feed`` and the prompt builder through to the request body. The only exceptions allowed
are BedrockError subclasses; every input is split at random points, since the network splits anywhere.

CI runs each property a few thousand times (profile ``reliability-ci``, derandomised); the soak run
250,000 times each, over a million in all (profile ``reliability-soak``). Crashing inputs are kept in
``regressions/vectors.json`` and replayed by a table-driven test (a vector of a bug still open carries
``"bug": "bug: ..."`` and runs as a strict xfail).
"""

from __future__ import annotations

import binascii
import contextlib
import itertools
import json
import math
import pickle
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import json_values, response_like_objects

from bedrock_chat import APIError, BedrockError, EventStreamError, InvalidRequestError, resolve_model
from bedrock_chat._core.eventstream import (
    MAX_MESSAGE_LENGTH,
    EventStreamDecoder,
    encode_chunk_event,
    encode_exception_event,
    encode_message,
)
from bedrock_chat._core.models import Surface
from bedrock_chat._core.prompt import messages_payload, normalize_conversation, text_prompt
from bedrock_chat._core.protocol import Invocation, SamplingParams, prepare_invocation
from bedrock_chat._core.responses import (
    StreamAssembler,
    parse_error_response,
    parse_invoke_response,
    parse_raw_invoke_response,
)
from bedrock_chat._core.sse import SSEDecoder
from bedrock_chat._streaming import _EventStreamSource, _SSESource
from reliability.reliability_helpers import FUZZ_CI, FUZZ_SOAK, counted, record_figure, tracemalloc_peak

TEXT_MODEL = "anthropic.claude-v2"
MESSAGES_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
VECTORS = Path(__file__).parent / "regressions" / "vectors.json"

# ---------------------------------------------------------------------------------------------- strategies


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at random offsets (as the network may deliver it)."""
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=8))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def raw_frame(
    header_block: bytes, payload: bytes, *, total: int | None = None, headers_length: int | None = None
) -> bytes:
    """A frame around any header bytes, with both CRCs right (lengths may lie), so parsing gets past them."""
    real_total = 16 + len(header_block) + len(payload)
    lengths = struct.pack(
        ">II", real_total if total is None else total, len(header_block) if headers_length is None else headers_length
    )
    head = lengths + struct.pack(">I", binascii.crc32(lengths))
    body = head + header_block + payload
    return body + struct.pack(">I", binascii.crc32(body))


def _recrc(frame: bytes) -> bytes:
    """Repair a (mutated) frame's CRCs, keeping whatever its lengths now say."""
    if len(frame) < 16:
        return frame
    lengths = frame[:8]
    body = lengths + struct.pack(">I", binascii.crc32(lengths)) + frame[12:-4]
    return body + struct.pack(">I", binascii.crc32(body))


_header_names = st.sampled_from(
    [":message-type", ":event-type", ":exception-type", ":content-type", ":error-code", ":error-message", "x"]
) | st.text(max_size=6)
_header_values = st.one_of(
    st.sampled_from(["event", "exception", "error", "chunk", "throttlingException", "application/json"]),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
)
_inner_events = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    response_like_objects.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40),
)


@st.composite
def event_frames(draw: st.DrawFn) -> bytes:
    """One valid frame: a chunk (of any inner bytes), an exception, or any headers and payload."""
    kind = draw(st.sampled_from(["chunk", "exception", "any"]))
    if kind == "chunk":
        return encode_chunk_event(draw(_inner_events))
    if kind == "exception":
        return encode_exception_event(
            draw(st.sampled_from(["throttlingException", "modelStreamErrorException", "x"]) | st.text(max_size=8)),
            draw(st.binary(max_size=30) | json_values.map(lambda v: json.dumps(v).encode())),
        )
    headers = draw(st.dictionaries(_header_names, _header_values, max_size=4))
    return encode_message(headers, draw(st.binary(max_size=40)))


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    """Valid frames, then flipped, truncated or spliced bytes, with CRCs repaired or not; or raw-header frames."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=300))
    if choice == 1:
        return raw_frame(
            draw(st.binary(max_size=80)),
            draw(st.binary(max_size=40)),
            total=draw(st.none() | st.integers(0, 2**32 - 1)),
            headers_length=draw(st.none() | st.integers(0, 2**32 - 1)),
        )
    frames = draw(st.lists(event_frames(), min_size=1, max_size=4))
    data = bytearray(b"".join(frames))
    for _ in range(draw(st.integers(0 if choice == 3 else 1, 3))):
        at = draw(st.integers(0, len(data) - 1))
        operation = draw(st.sampled_from(["flip", "cut", "splice"]))
        if operation == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif operation == "cut":
            del data[at:]
            if not data:
                break
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    out = bytes(data)
    if draw(st.booleans()) and len(frames) == 1:
        out = _recrc(out)
    return out


_SSE_ATOMS = st.sampled_from(
    [
        b"event: ",
        b"data: ",
        b"data:",
        b"id: ",
        b"retry: 12",
        b": comment",
        b"\n",
        b"\r",
        b"\r\n",
        b"\n\n",
        b"\xef\xbb\xbf",
        b"\xff",
        b"\xc3",
        b"\xa9",
        b"message_start",
        b'{"type":"message_stop"}',
        b"ping",
        b"error",
        b'{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}',
        b"\x00",
        b"id: a\x00b",
    ]
)
sse_streams = st.one_of(
    st.lists(_SSE_ATOMS | st.binary(max_size=6), max_size=30).map(b"".join), st.binary(max_size=200)
)

_header_maps = st.dictionaries(
    st.sampled_from(
        [
            "x-amzn-requestid",
            "request-id",
            "x-amzn-errortype",
            "x-amzn-bedrock-input-token-count",
            "x-amzn-bedrock-output-token-count",
            "x-amzn-bedrock-invocation-latency",
            "retry-after",
            "content-type",
        ]
    ),
    st.text(max_size=30) | st.integers().map(str),
    max_size=5,
)
_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    response_like_objects.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"content": st.lists(response_like_objects, max_size=3)}, optional={"usage": json_values, "id": json_values}
    ).map(lambda value: json.dumps(value).encode()),
)

_PROMPT_KEYS = st.sampled_from(
    [
        "role",
        "content",
        "type",
        "text",
        "source",
        "media_type",
        "data",
        "id",
        "name",
        "input",
        "tool_use_id",
        "thinking",
    ]
)
_python_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included: not JSON
    st.text(max_size=8),
    st.binary(max_size=4),
    st.sampled_from(["user", "assistant", "system", "text", "image", "tool_use", "base64", "image/png"]),
)
python_values = st.recursive(
    _python_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(_PROMPT_KEYS | st.text(max_size=3), children, max_size=4)
        | st.frozensets(st.integers(), max_size=2)
    ),
    max_leaves=12,
)
_messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system"]) | python_values, "content": python_values}
)
conversations_of_anything = st.one_of(python_values, st.lists(_messages | python_values, max_size=5))


# ---------------------------------------------------------------------------------------------- harnesses


def _invocation(model: str, *, stream: bool, surface: Surface = Surface.INVOKE, prefill: bool = False) -> Invocation:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
    if prefill:
        messages.append({"role": "assistant", "content": "Sure:"})
    resolved = resolve_model(model)
    return prepare_invocation(
        resolved, normalize_conversation(messages), SamplingParams(), stream=stream, surface=surface
    )


def decode_eventstream(pieces: Sequence[bytes]) -> None:
    """Feed an event-stream decoder, taking messages out after each piece; only EventStreamError may escape."""
    decoder = EventStreamDecoder()
    fed = 0
    try:
        for piece in pieces:
            decoder.feed(piece)
            fed += len(piece)
            for message in decoder:
                assert isinstance(message.payload, bytes)
                _ = (message.message_type, message.event_type, message.exception_type)
            assert decoder.pending <= fed
        decoder.close()
    except EventStreamError:
        pass


def decode_sse(pieces: Sequence[bytes], max_line: int, max_event: int) -> None:
    """Feed an SSE decoder; only EventStreamError may escape, and what it holds stays under its limits."""
    decoder = SSEDecoder(max_line_bytes=max_line, max_event_bytes=max_event)
    try:
        for piece in pieces:
            decoder.feed(piece)
            for event in decoder:
                assert len(event.data.encode()) <= max_event
            assert len(decoder._tail) <= max_line, "a partial line over the limit must already have failed"
            assert decoder._data_size <= max_event
        decoder.close()
    except EventStreamError:
        pass


def stream_pipeline(pieces: Sequence[bytes], *, sse: bool, model: str) -> None:
    """What ChatCompletionStream does with the bytes of a 200: decode, turn frames into events, assemble."""
    surface = Surface.MESSAGES_ENDPOINT if sse else Surface.INVOKE
    invocation = _invocation(model, stream=True, surface=surface)
    source: _EventStreamSource | _SSESource = _SSESource() if sse else _EventStreamSource()
    assembler = StreamAssembler(invocation)
    try:
        for piece in pieces:
            source.feed(piece)
            while (event := source.next_event("req-1")) is not None:
                assert isinstance(assembler.feed(event).text, str)
        source.close()
        assembler.completion(request_id="req-1", latency=0.0)
    except BedrockError:
        pass


def build_request(messages: object, system: object) -> None:
    """The prompt builder to the request body, for both APIs: a Conversation and bytes, or InvalidRequestError."""
    try:
        conversation = normalize_conversation(messages, system=system)
    except InvalidRequestError:
        return
    payload = messages_payload(conversation)
    assert len(payload) == len(conversation.turns)
    for model in (TEXT_MODEL, MESSAGES_MODEL):
        resolved = resolve_model(model)
        try:
            if model == TEXT_MODEL:
                assert isinstance(text_prompt(conversation, model=model), str)
            invocation = prepare_invocation(resolved, conversation, SamplingParams(), stream=False)
        except InvalidRequestError:
            continue
        assert isinstance(json.loads(invocation.body), dict)


# ---------------------------------------------------------------------------------------------- properties


def _eventstream_property(data: st.DataObject) -> None:
    counted("event-stream decoder")
    stream = data.draw(mutated_streams())
    decode_eventstream(data.draw(split(stream)))


def _sse_property(data: st.DataObject) -> None:
    counted("SSE decoder")
    stream = data.draw(sse_streams)
    limits = data.draw(st.sampled_from([(1, 1), (8, 16), (64, 32), (1 << 20, 16 << 20)]))
    decode_sse(data.draw(split(stream)), *limits)


def _pipeline_property(data: st.DataObject) -> None:
    counted("stream pipelines")
    sse = data.draw(st.booleans())
    if sse:
        stream = data.draw(sse_streams | st.lists(response_like_objects, max_size=5).map(_as_sse))
    else:
        stream = data.draw(
            mutated_streams()
            | st.lists(_inner_events, max_size=5).map(lambda xs: b"".join(map(encode_chunk_event, xs)))
        )
    model = MESSAGES_MODEL if sse else data.draw(st.sampled_from([TEXT_MODEL, MESSAGES_MODEL]))
    stream_pipeline(data.draw(split(stream)), sse=sse, model=model)


def _as_sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(f"event: {e.get('type', 'x')}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


def _parsers_property(data: st.DataObject) -> None:
    counted("response parsers")
    headers = data.draw(_header_maps)
    body = data.draw(_bodies)
    model = data.draw(st.sampled_from([TEXT_MODEL, MESSAGES_MODEL]))
    invocation = _invocation(model, stream=False, prefill=data.draw(st.booleans()))
    for parse in (
        lambda: parse_invoke_response(invocation, headers, body, latency=0.1),
        lambda: parse_raw_invoke_response(headers, body, latency=0.1),
    ):
        with contextlib.suppress(APIError):
            parse()
    error = parse_error_response(data.draw(st.integers(100, 599)), headers, body)
    assert isinstance(error, APIError)
    assert isinstance(str(error), str)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy)) == (type(error), str(error))


def _assembler_property(data: st.DataObject) -> None:
    counted("StreamAssembler.feed")
    model = data.draw(st.sampled_from([TEXT_MODEL, MESSAGES_MODEL]))
    invocation = _invocation(model, stream=True, prefill=data.draw(st.booleans()))
    assembler = StreamAssembler(invocation)
    events = data.draw(
        st.lists(response_like_objects | st.dictionaries(st.text(max_size=4), json_values, max_size=3), max_size=6)
    )
    try:
        for event in events:
            assert isinstance(assembler.feed(event).text, str)
        chat = assembler.completion(request_id=None, latency=0.0)
    except BedrockError:
        return
    json.dumps(chat.to_dict())


def _prompt_property(data: st.DataObject) -> None:
    counted("prompt builder")
    build_request(data.draw(conversations_of_anything), data.draw(st.none() | python_values))


PROPERTIES: dict[str, Callable[[st.DataObject], None]] = {
    "event-stream decoder": _eventstream_property,
    "SSE decoder": _sse_property,
    "stream pipelines": _pipeline_property,
    "response parsers": _parsers_property,
    "StreamAssembler.feed": _assembler_property,
    "prompt builder": _prompt_property,
}


@pytest.mark.parametrize("target", list(PROPERTIES))
def test_fuzz(target: str) -> None:
    """Each fuzz target, 500 to 1,200 examples (5,000 in all): typed errors only, always finishing."""

    @settings(FUZZ_CI, max_examples=CI_EXAMPLES[target])
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        PROPERTIES[target](data)

    run()


@pytest.mark.soak
@pytest.mark.parametrize("target", list(PROPERTIES))
def test_fuzz_soak(target: str) -> None:
    """Each fuzz target 30,000 to 450,000 times (a million examples in all): typed errors only, always finishing."""

    @settings(FUZZ_SOAK, max_examples=SOAK_EXAMPLES[target])
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        PROPERTIES[target](data)

    run()


#: Soak examples per target, weighted towards the cheap ones: 1,000,000 in all.
SOAK_EXAMPLES = {
    "event-stream decoder": 300_000,
    "SSE decoder": 450_000,
    "stream pipelines": 80_000,
    "response parsers": 70_000,
    "StreamAssembler.feed": 30_000,
    "prompt builder": 70_000,
}
#: CI examples per target: a few thousand in all, fewer for the slower targets, within the directory's time budget.
CI_EXAMPLES = {
    "event-stream decoder": 1200,
    "SSE decoder": 1200,
    "stream pipelines": 700,
    "response parsers": 700,
    "StreamAssembler.feed": 500,
    "prompt builder": 700,
}


# ---------------------------------------------------------------------------------------------- memory bounds


@pytest.mark.parametrize(
    ("total", "headers_length"),
    [(0xFFFFFFFF, 0), (MAX_MESSAGE_LENGTH + 1, 0), (4096, 0xFFFFFFFF), (2**31, 2**31)],
    ids=["4GiB-frame", "just-over-limit", "4GiB-headers", "2GiB-both"],
)
def test_a_frame_announcing_gigabytes_is_refused_from_its_prelude(total: int, headers_length: int) -> None:
    """A prelude announcing a frame over the limit fails on its 12 bytes, allocating next to nothing."""
    lengths = struct.pack(">II", total, headers_length)
    prelude = lengths + struct.pack(">I", binascii.crc32(lengths))
    decoder = EventStreamDecoder()
    with tracemalloc_peak() as box:
        decoder.feed(prelude)
        with pytest.raises(EventStreamError, match=r"exceeds the limit|does not fit"):
            decoder.next_message()
    record_figure(f"fuzz: peak bytes refusing a {total}-byte frame", box[0])
    assert box[0] < 64 * 1024


def test_an_endless_sse_line_is_refused_at_the_line_limit() -> None:
    """4 MiB without a line end, fed in 64 KiB pieces as the client reads, fails just past 1 MiB; memory is bounded."""
    decoder = SSEDecoder()
    piece = b"data: " + b"a" * (64 * 1024 - 6)
    fed = 0
    with tracemalloc_peak() as box, pytest.raises(EventStreamError, match="exceeds the limit"):  # noqa: PT012
        # The whole feeding loop is under test: the error must come from within it, before it ends.
        for _ in range(64):
            decoder.feed(piece)
            fed += len(piece)
            decoder.next_event()
            piece = b"a" * (64 * 1024)
    record_figure("fuzz: SSE endless line refused after (bytes) / peak (bytes)", (fed, box[0]))
    assert fed <= (1 << 20) + 64 * 1024
    assert box[0] < 4 * (1 << 20)


# ---------------------------------------------------------------------------------------------- regressions


def _load_vectors() -> list[Any]:
    rows = json.loads(VECTORS.read_text())
    params = []
    for row in rows:
        marks = [pytest.mark.xfail(strict=True, reason=row["bug"])] if row.get("bug") else []
        params.append(pytest.param(row, id=row["id"], marks=marks))  # a vector of an open bug says "bug"
    return params


def _replay(row: dict[str, Any]) -> None:
    target = row["target"]
    if target in ("eventstream-client", "sse-client"):
        data = bytes.fromhex(row["hex"])
        model = row.get("model", MESSAGES_MODEL)
        stream_pipeline([data], sse=target == "sse-client", model=model)
        stream_pipeline([data[i : i + 1] for i in range(len(data))], sse=target == "sse-client", model=model)
    elif target == "eventstream":
        decode_eventstream([bytes.fromhex(row["hex"])])
    elif target == "conversation":
        build_request(row["messages"], row.get("system"))
    else:
        raise AssertionError(f"unknown target {target!r}")


@pytest.mark.parametrize("row", _load_vectors())
def test_regression_vector(row: dict[str, Any]) -> None:
    """Every input that once crashed a target (or nearly did) now raises only typed errors."""
    _replay(row)


def test_regression_vectors_are_well_formed() -> None:
    """Each vector names a known target and, if it pins a bug, says so in a reason starting with 'bug:'."""
    rows = json.loads(VECTORS.read_text())
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        assert row["target"] in ("eventstream", "eventstream-client", "sse-client", "conversation")
        assert not row.get("bug") or row["bug"].startswith("bug: ")
    assert math.isnan(
        next(r for r in rows if r["id"] == "nan-in-a-block")["messages"][0]["content"][0]["cache_control"]
    )
