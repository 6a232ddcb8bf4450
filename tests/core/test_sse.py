"""SSE codec: spec vectors, differential tests against a reference parse and the anthropic SDK, limits, corruption."""

from __future__ import annotations

import codecs
import json
import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from anthropic._streaming import SSEDecoder as SDKDecoder
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_chat._core.sse import SSEDecoder, SSEEvent, encode_event
from bedrock_chat._errors import EventStreamError, IncompleteStreamError, InvalidRequestError

# ---------------------------------------------------------------------------------------------------
# Helpers


def pieces(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates and out-of-range ones ignored)."""
    points = sorted({cut for cut in cuts if 0 < cut < len(data)})
    return [data[start:end] for start, end in zip([0, *points], [*points, len(data)], strict=True)]


def decode_pieces(chunks: Iterable[bytes], *, close: bool = True, **limits: int) -> list[SSEEvent]:
    """Feed each piece and drain after each, then close (which may raise)."""
    decoder = SSEDecoder(**limits)
    events: list[SSEEvent] = []
    for chunk in chunks:
        decoder.feed(chunk)
        events.extend(decoder)
    if close:
        decoder.close()
    return events


def byte_by_byte(data: bytes) -> list[bytes]:
    """Every byte its own piece: the finest split there is."""
    return [data[i : i + 1] for i in range(len(data))]


_REFERENCE_LINES = re.compile(r"\r\n|\r|\n")


def reference_parse(data: bytes) -> tuple[list[SSEEvent], bool]:
    """The WHATWG algorithm applied to the whole input at once, written for clarity, not speed.

    Returns the events and whether the input ended cleanly (after a blank line, comments allowed).
    """
    utf8 = codecs.getincrementaldecoder("utf-8")()  # strict, like the decoder under test
    text = utf8.decode(data).removeprefix("\ufeff")  # a character cut short at the end is held back
    cut_short = utf8.getstate()[0]
    *lines, partial = _REFERENCE_LINES.split(text)
    events: list[SSEEvent] = []
    event_type, retry, last_id = "", None, None
    data_buffer: list[str] | None = None
    in_event = False
    for line in lines:
        if line == "":
            if data_buffer is not None:
                events.append(SSEEvent(event_type or "message", "\n".join(data_buffer), last_id, retry))
            event_type, data_buffer, retry, in_event = "", None, None, False
            continue
        if line.startswith(":"):
            continue
        in_event = True
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            event_type = value
        elif field == "data":
            data_buffer = [*(data_buffer or []), value]
        elif field == "id" and "\0" not in value:
            last_id = value
        elif field == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return events, not in_event and partial == "" and not cut_short


def sdk_parse(chunks: Sequence[bytes]) -> list[SSEEvent]:
    """What the anthropic SDK's own SSE decoder yields for the same pieces, as our values.

    The SDK dispatches at a blank line whatever the block held; the spec (and we) dispatch only
    blocks with a ``data`` line, so the SDK's other events are dropped here, found from ``raw``.
    """
    events = []
    for sse in SDKDecoder().iter_bytes(iter(chunks)):
        has_data = any(not line.startswith(":") and line.partition(":")[0] == "data" for line in sse.raw)
        if has_data:
            events.append(SSEEvent(sse.event or "message", sse.data, sse.id, sse.retry))
    return events


# ---------------------------------------------------------------------------------------------------
# Spec vectors: wire bytes, the events they must give, and whether ending there is clean.

X = SSEEvent("message", "x")

VECTORS: list[tuple[str, bytes, list[SSEEvent], bool]] = [
    ("empty input", b"", [], True),
    ("lf", b"event: a\ndata: 1\n\n", [SSEEvent("a", "1")], True),
    ("crlf", b"event: a\r\ndata: 1\r\n\r\n", [SSEEvent("a", "1")], True),
    ("cr", b"event: a\rdata: 1\r\r", [SSEEvent("a", "1")], True),
    ("mixed endings", b"event: a\rdata: 1\r\ndata: 2\n\r\n", [SSEEvent("a", "1\n2")], True),
    ("lf then cr blank", b"data: x\n\r", [X], True),
    ("cr lf is one line end", b"data: x\r\ndata: y\r\n\r\n", [SSEEvent("message", "x\ny")], True),
    ("cr, lf-terminated blank", b"data: x\r\n\n", [X], True),
    ("default event type", b"data: x\n\n", [X], True),
    ("empty event type", b"event:\ndata: x\n\n", [X], True),
    ("empty event type, fast-path shape", b"event: \ndata: x\n\n", [X], True),
    ("ping is returned", b'event: ping\ndata: {"type": "ping"}\n\n', [SSEEvent("ping", '{"type": "ping"}')], True),
    ("comments ignored", b": hello\n:\ndata: x\n: between\n\n", [X], True),
    ("comment-only stream", b": keep-alive\n\n: again\n", [], True),
    ("bom skipped", b"\xef\xbb\xbfdata: x\n\n", [X], True),
    ("bom skipped once", b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n", [SSEEvent("message", "y")], True),
    ("no space after colon", b"event:a\ndata:x\n\n", [SSEEvent("a", "x")], True),
    ("only one space stripped", b"data:  x\n\n", [SSEEvent("message", " x")], True),
    ("tab is not stripped", b"data:\tx\n\n", [SSEEvent("message", "\tx")], True),
    ("colons in the value", b"data: a: b:c\n\n", [SSEEvent("message", "a: b:c")], True),
    ("field without colon", b"data\n\n", [SSEEvent("message", "")], True),
    ("empty data lines", b"data:\ndata\n\n", [SSEEvent("message", "\n")], True),
    ("multi-line data", b"data: a\ndata: b\ndata: c\n\n", [SSEEvent("message", "a\nb\nc")], True),
    ("trailing empty data line", b"data: a\ndata:\n\n", [SSEEvent("message", "a\n")], True),
    ("no data, not dispatched", b"event: a\n\nid: 1\n\nretry: 5\n\n", [], True),
    (
        "event type reset after dispatch",
        b"event: a\ndata: 1\n\ndata: 2\n\n",
        [SSEEvent("a", "1"), SSEEvent("message", "2")],
        True,
    ),
    ("event type reset after empty block", b"event: a\n\ndata: 2\n\n", [SSEEvent("message", "2")], True),
    ("last event type wins", b"event: a\nevent: b\ndata: x\n\n", [SSEEvent("b", "x")], True),
    (
        "id persists",
        b"id: 7\ndata: a\n\ndata: b\n\n",
        [SSEEvent("message", "a", "7"), SSEEvent("message", "b", "7")],
        True,
    ),
    ("id from an undispatched block", b"id: 3\n\ndata: a\n\n", [SSEEvent("message", "a", "3")], True),
    (
        "empty id",
        b"id: 1\ndata: a\n\nid\ndata: b\n\n",
        [SSEEvent("message", "a", "1"), SSEEvent("message", "b", "")],
        True,
    ),
    ("id with nul ignored", b"id: 1\n\nid: 2\x003\ndata: a\n\n", [SSEEvent("message", "a", "1")], True),
    (
        "retry digits",
        b"retry: 1500\ndata: a\n\ndata: b\n\n",
        [SSEEvent("message", "a", None, 1500), SSEEvent("message", "b")],
        True,
    ),
    (
        "retry non-digits ignored",
        b"retry: 1a\nretry: -1\nretry:\nretry: +2\ndata: a\n\n",
        [SSEEvent("message", "a")],
        True,
    ),
    ("retry non-ascii digits ignored", "retry: \u0661\ndata: a\n\n".encode(), [SSEEvent("message", "a")], True),
    ("unknown fields ignored", b"foo: bar\nDATA: no\n data: no\ndata: yes\n\n", [SSEEvent("message", "yes")], True),
    ("extra blank lines", b"\n\n\r\ndata: x\n\n\n\n\r\r", [X], True),
    (
        "nul and unicode in data",
        "data: \x00\u00e9\U0001f600\u2028\x85\x0b\n\n".encode(),
        [SSEEvent("message", "\x00\u00e9\U0001f600\u2028\x85\x0b")],
        True,
    ),
    ("trailing partial line", b"data: x\n\ndata: y", [X], False),
    ("trailing event without blank line", b"data: x\n\ndata: y\n", [X], False),
    ("trailing unknown field", b"data: x\n\nfoo\r", [X], False),
    ("trailing bom prefix", b"\xef\xbb", [], False),
    ("trailing comment is clean", b"data: x\n\n: bye\n", [X], True),
    ("trailing cr is a line end", b"data: x\r\r", [X], True),
]


@pytest.mark.parametrize(("name", "wire", "expected", "clean"), VECTORS, ids=[v[0] for v in VECTORS])
@pytest.mark.parametrize("split", ["whole", "bytes"])
def test_vector(name: str, wire: bytes, expected: list[SSEEvent], clean: bool, split: str) -> None:
    """Each vector decodes to its events, whole or byte by byte, and closes cleanly or as incomplete."""
    chunks = [wire] if split == "whole" else byte_by_byte(wire)
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        decoder.feed(chunk)
        events.extend(decoder)
    assert events == expected
    if clean:
        decoder.close()
        assert decoder.pending == 0
    else:
        with pytest.raises(IncompleteStreamError, match="stream ended inside an event"):
            decoder.close()


@pytest.mark.parametrize(("name", "wire", "expected", "clean"), VECTORS, ids=[v[0] for v in VECTORS])
def test_vector_agrees_with_reference(name: str, wire: bytes, expected: list[SSEEvent], clean: bool) -> None:
    """The reference parser used by the property tests gives the table's answers too (it is tested, not trusted)."""
    assert reference_parse(wire) == (expected, clean)


def test_split_crlf_is_one_line_end() -> None:
    """A CR ending one piece and the LF starting the next are one terminator, not an extra blank line."""
    chunks = [b"data: a\r", b"\ndata: b\r", b"\n", b"\r", b"\n", b"data: c\r", b"\r", b"\n"]
    assert decode_pieces(chunks) == [SSEEvent("message", "a\nb"), SSEEvent("message", "c")]


def test_split_character_comes_out_whole() -> None:
    """A four-byte emoji fed one byte per call decodes to the one character."""
    wire = "event: \U0001f600\ndata: \U0001f600\u00e9\n\n".encode()
    assert decode_pieces(byte_by_byte(wire)) == [SSEEvent("\U0001f600", "\U0001f600\u00e9")]


# ---------------------------------------------------------------------------------------------------
# Differential: generated streams, cut anywhere, against the reference parse and the SDK.

_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)
_json_leaves = st.none() | st.booleans() | st.integers() | _text
_json = st.recursive(
    _json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_json_text = _json.map(lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":")))
_data_values = st.lists(_json_text | _text, min_size=1, max_size=3).map("\n".join)
_sep = st.sampled_from([":", ": "])


@st.composite
def _field_lines(draw: st.DrawFn) -> list[str]:
    """The lines of one field (several for multi-line data), in any of the spellings the spec allows."""
    kind = draw(st.sampled_from(["event", "data", "data", "data", "id", "retry", "comment", "unknown"]))
    if kind == "data":
        lines = []
        for value in draw(_data_values).split("\n"):
            bare = value == "" and draw(st.booleans())
            lines.append("data" if bare else f"data{draw(_sep)}{value}")
        return lines
    if kind == "event":
        return [f"event{draw(_sep)}{draw(st.sampled_from(['message_start', 'ping', 'error', '']) | _text)}"]
    if kind == "id":
        value = draw(_text | st.just("a\x00b"))
        return [f"id{draw(_sep)}{value}"]
    if kind == "retry":
        # ASCII digits or letters: the SDK's int() also takes " 5", "+5" and "1_0", which the spec ignores.
        return [f"retry{draw(_sep)}{draw(st.from_regex(r'[0-9]{1,6}|[a-z]{1,3}', fullmatch=True))}"]
    if kind == "comment":
        return [":" + draw(_text)]
    return [f"{draw(st.sampled_from(['foo', 'Data', 'eventx', ' data']))}{draw(_sep)}{draw(_text)}"]


@st.composite
def sse_streams(draw: st.DrawFn) -> bytes:
    """A stream of event blocks with random line endings, optionally with a BOM and a truncated tail."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        for field in draw(st.lists(_field_lines(), max_size=4)):
            lines.extend(field)
        lines.append("")
    endings = st.sampled_from(["\n", "\r\n", "\r"])
    text = "".join(line + draw(endings) for line in lines)
    if draw(st.booleans()):  # a tail that stops mid-event, or mid-line
        text += "".join(line + draw(endings) for line in draw(_field_lines()))[: draw(st.integers(0, 40))]
    return ("\ufeff" if draw(st.booleans()) else "").encode() + text.encode()


def _interesting_cuts(wire: bytes) -> list[int]:
    """Offsets inside multi-byte characters and between a CR and its LF: the splits that are easy to get wrong."""
    inside_char = [i for i, byte in enumerate(wire) if 0x80 <= byte < 0xC0]
    between_cr_lf = [i + 1 for i in range(len(wire) - 1) if wire[i : i + 2] == b"\r\n"]
    return inside_char + between_cr_lf


@settings(max_examples=300, deadline=None)
@given(wire=sse_streams(), data=st.data())
def test_split_stream_matches_reference_and_sdk(wire: bytes, data: st.DataObject) -> None:
    """Any stream cut anywhere decodes like the reference parse of the whole and like the anthropic SDK."""
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    interesting = _interesting_cuts(wire)
    if interesting:
        cuts += data.draw(st.lists(st.sampled_from(interesting), max_size=8))
    chunks = pieces(wire, cuts)
    expected, clean = reference_parse(wire)

    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        decoder.feed(chunk)
        events.extend(decoder)
    assert events == expected
    if clean:
        decoder.close()
    else:
        with pytest.raises(IncompleteStreamError):
            decoder.close()

    # The SDK does not skip a BOM: give it the same pieces without one.
    sdk_chunks = pieces(wire[3:], [cut - 3 for cut in cuts]) if wire.startswith(b"\xef\xbb\xbf") else chunks
    assert events == sdk_parse(sdk_chunks)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), min_size=1), _data_values)
    ),
    data=st.data(),
)
def test_encode_decode_round_trip(items: list[tuple[str, str]], data: st.DataObject) -> None:
    """encode_event output, concatenated and cut anywhere, decodes back to the same names and data."""
    wire = b"".join(encode_event(name, value) for name, value in items)
    chunks = pieces(wire, data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    assert decode_pieces(chunks) == [SSEEvent(name, value) for name, value in items]


# ---------------------------------------------------------------------------------------------------
# Limits: rejected as soon as the buffered bytes prove it.


def test_overlong_line_rejected_before_its_terminator() -> None:
    """max+1 bytes of one line, no newline yet: the next call raises, without waiting for the rest."""
    decoder = SSEDecoder(max_line_bytes=100)
    decoder.feed(b"data: x\n\n" + b"d" * 101)
    assert decoder.next_event() == X
    with pytest.raises(EventStreamError, match="line exceeds the limit of 100 bytes"):
        decoder.next_event()
    with pytest.raises(EventStreamError, match="line exceeds the limit"):  # sticky
        decoder.next_event()


def test_line_at_the_limit_is_accepted() -> None:
    """A line of exactly max_line_bytes is fine, whole or split; one byte more is not."""
    line = b"data: " + b"x" * 94
    assert decode_pieces([line + b"\n\n"], max_line_bytes=100) == [SSEEvent("message", "x" * 94)]
    assert decode_pieces(byte_by_byte(line + b"\n\n"), max_line_bytes=100) == [SSEEvent("message", "x" * 94)]
    with pytest.raises(EventStreamError, match="exceeds the limit of 100"):
        decode_pieces([line + b"x\n\n"], max_line_bytes=100)


@pytest.mark.parametrize("piece", [1, 7, 1000])
def test_overlong_line_fed_in_pieces_fails_at_the_first_byte_over(piece: int) -> None:
    """Fed in pieces, the error comes with the piece that takes the partial line past the limit."""
    decoder = SSEDecoder(max_line_bytes=1000)
    stream = b"data: " + b"y" * 5000
    fed = 0
    with pytest.raises(EventStreamError, match="line exceeds the limit"):  # noqa: PT012 - the loop is the test
        while True:
            decoder.feed(stream[fed : fed + piece])
            fed += piece
            assert decoder.next_event() is None
    assert 1000 < fed <= 1000 + piece
    assert decoder.pending <= 1000 + piece


@pytest.mark.parametrize("head", [b"", b"event: e\n"])
def test_event_data_over_the_limit_across_lines(head: bytes) -> None:
    """Data lines that together pass max_event_bytes fail at the line that passes it, not at the blank line."""
    decoder = SSEDecoder(max_event_bytes=25)
    decoder.feed(b"data: x\n\n" + head + b"data: 0123456789\ndata: 0123456789\ndata: 012")  # 10+1+10+1+3 = 25
    assert decoder.next_event() == X
    assert decoder.next_event() is None
    decoder.feed(b"3")  # 26 bytes: over the limit, though the third line has no terminator yet
    with pytest.raises(EventStreamError, match="event data exceeds the limit of 25 bytes"):
        decoder.next_event()


def test_event_data_at_the_limit_is_accepted() -> None:
    """Data of exactly max_event_bytes, line feeds included, is dispatched."""
    wire = b"data: 0123456789\ndata: 0123456789\ndata: 012\n\n"  # 10 + 1 + 10 + 1 + 3 = 25
    assert decode_pieces([wire], max_event_bytes=25) == [SSEEvent("message", "0123456789\n0123456789\n012")]
    with pytest.raises(EventStreamError, match="event data exceeds"):
        decode_pieces([wire.replace(b"012\n\n", b"0123\n\n")], max_event_bytes=25)


def test_complete_overlong_line_in_the_fast_path_shape() -> None:
    """An event/data block over the limit, delivered whole, is still refused (the fast path declines it)."""
    wire = encode_event("content_block_delta", "z" * 200)
    with pytest.raises(EventStreamError, match="exceeds the limit of 100"):
        decode_pieces([wire], max_line_bytes=100)
    with pytest.raises(EventStreamError, match="event data exceeds the limit of 150"):
        decode_pieces([wire], max_event_bytes=150)


@pytest.mark.parametrize("limit", ["max_line_bytes", "max_event_bytes"])
def test_limits_must_be_positive(limit: str) -> None:
    """A limit below 1 is refused when the decoder is made."""
    with pytest.raises(InvalidRequestError, match=limit):
        SSEDecoder(**{limit: 0})


# ---------------------------------------------------------------------------------------------------
# Corruption


@pytest.mark.parametrize(
    "bad",
    [
        b"\x80",  # a continuation byte on its own
        b"\xc3",  # a two-byte sequence cut short by the line end
        b"\xc0\xaf",  # an overlong encoding of "/"
        b"\xed\xa0\x80",  # an encoded surrogate
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xff",
    ],
)
@pytest.mark.parametrize("where", ["data: ", "event: ", ":", "unknown: ", "id: "])
def test_invalid_utf8_is_an_error(bad: bytes, where: str) -> None:
    """Invalid UTF-8 anywhere in a line raises EventStreamError, after the events before it."""
    wire = b"event: a\ndata: 1\n\n" + where.encode() + bad + b"\n\n"
    decoder = SSEDecoder()
    decoder.feed(wire)
    assert decoder.next_event() == SSEEvent("a", "1")
    with pytest.raises(EventStreamError, match=r"invalid UTF-8 .* at stream offset \d+"):
        decoder.next_event()
    with pytest.raises(EventStreamError, match="invalid UTF-8"):  # the bad line stays at the head
        list(decoder)


def test_invalid_utf8_in_the_fast_path_shape_reports_the_offset() -> None:
    """A bad byte inside an event/data block is reported at its exact stream offset."""
    wire = b'event: a\ndata: 1\n\nevent: b\ndata: {"t":"\xff"}\n\n'
    offset = wire.index(b"\xff")
    with pytest.raises(EventStreamError, match=f"at stream offset {offset}$"):
        decode_pieces([wire])


# ---------------------------------------------------------------------------------------------------
# Linear behaviour (structural: bounded buffering and bounded copying, no timing)


def test_ten_megabytes_in_random_pieces_copy_linearly() -> None:
    """10 MB of small events in 1-2048 byte pieces: pending stays within an event plus a piece, copying within 4x."""
    rng = random.Random(20240611)
    events = [
        encode_event("content_block_delta", json.dumps({"text": "\u00e9" * rng.randint(0, 150)})) for _ in range(64)
    ]
    events += [b": ping\n\n", b"id: 1\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n"]
    stream = b"".join(rng.choice(events) for _ in range(10_000_000 // 200))
    assert len(stream) > 10_000_000
    largest_event, largest_piece = max(map(len, events)), 2048
    decoder = SSEDecoder()
    count = at = worst_pending = 0
    while at < len(stream):
        size = rng.randint(1, largest_piece)
        decoder.feed(stream[at : at + size])
        at += size
        count += sum(1 for _ in decoder)
        worst_pending = max(worst_pending, decoder.pending)
    decoder.close()
    assert count == sum(1 for _ in reference_parse(stream)[0])
    assert worst_pending < largest_event + largest_piece
    assert decoder._copied <= 4 * len(stream)  # the decoder counts its copies; four per byte at worst


def test_one_long_line_in_small_pieces_copies_linearly() -> None:
    """A 900 KB data line fed 100 bytes at a time is joined once, not re-copied on every piece."""
    wire = encode_event("big", "q" * 900_000)
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for at in range(0, len(wire), 100):
        decoder.feed(wire[at : at + 100])
        events.extend(decoder)
    decoder.close()
    assert events == [SSEEvent("big", "q" * 900_000)]
    assert decoder._copied <= 4 * len(wire)


@pytest.mark.parametrize("piece", [1, 100, 1024])
def test_one_event_of_many_lines_in_small_pieces_copies_linearly(piece: int) -> None:
    """A 900 KB event of short data lines, fed in small pieces, is not re-copied as it grows."""
    wire = b"event: e\n" + b"data: ab\n" * 100_000 + b"\n"
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for at in range(0, len(wire), piece):
        decoder.feed(wire[at : at + piece])
        events.extend(decoder)
    decoder.close()
    assert events == [SSEEvent("e", "\n".join(["ab"] * 100_000))]
    assert decoder._copied <= 4 * len(wire)


def test_many_lines_of_one_event_parse_linearly() -> None:
    """A 2 MB event of short CR-terminated data lines in one piece is read once, line by line."""
    wire = b"event: e\r" + b"data: ab\r" * 200_000 + b"\r"
    decoder = SSEDecoder()
    decoder.feed(wire)
    (event,) = list(decoder)
    decoder.close()
    assert event == SSEEvent("e", "\n".join(["ab"] * 200_000))
    assert decoder._copied == 0  # one piece of whole lines is parsed where it lies


# ---------------------------------------------------------------------------------------------------
# A realistic Anthropic Messages stream


def messages_stream(deltas: int) -> list[tuple[str, dict[str, Any]]]:
    """message_start, a text block with a ping and ``deltas`` text deltas, message_delta, message_stop."""
    words = ["Hello", " world", ",", " \u00e9t\u00e9", " \U0001f600", " \u65e5\u672c", ' "quoted"', " back\\slash"]
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bdrk_01XyZ",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 25, "cache_read_input_tokens": 0, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": words[i % len(words)]}},
        )
        for i in range(deltas)
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": deltas},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


@pytest.mark.parametrize("piece", [1, 3, 64, 1500, 4096, 1 << 30])
def test_anthropic_messages_stream_round_trips(piece: int) -> None:
    """A full Messages stream through encode_event and the decoder gives back every event, ping included, in order."""
    source = messages_stream(200)
    wire = b"".join(encode_event(name, json.dumps(body, ensure_ascii=False)) for name, body in source)
    chunks = [wire[i : i + piece] for i in range(0, len(wire), piece)]
    events = decode_pieces(chunks)
    assert [(event.event, json.loads(event.data)) for event in events] == source
    assert all(event.id is None and event.retry is None for event in events)
    assert events == sdk_parse(chunks)


# ---------------------------------------------------------------------------------------------------
# Decoder API


def test_iteration_yields_what_is_complete_and_resumes_after_feed() -> None:
    """Iterating stops when data runs out and picks up where it left off after the next feed."""
    decoder = SSEDecoder()
    decoder.feed(b"data: 1\n\ndata: 2\n")
    assert list(decoder) == [SSEEvent("message", "1")]
    assert list(decoder) == []
    decoder.feed(b"\ndata: 3\n\n")
    assert list(decoder) == [SSEEvent("message", "2"), SSEEvent("message", "3")]
    decoder.close()


def test_next_event_and_next() -> None:
    """next_event answers None and next() raises StopIteration when more bytes are needed."""
    decoder = SSEDecoder()
    assert decoder.next_event() is None
    with pytest.raises(StopIteration):
        next(decoder)
    decoder.feed(b"data: 1\n\ndata: 2\n\n")
    assert next(decoder) == SSEEvent("message", "1")
    assert decoder.next_event() == SSEEvent("message", "2")
    assert decoder.next_event() is None


def test_mixed_next_event_and_iteration_neither_skips_nor_repeats() -> None:
    """Calling next_event() inside a for loop over the decoder shares one position, on both paths."""
    decoder = SSEDecoder()
    seen = []
    fast_path = b"".join(encode_event("e", str(i)) for i in range(6))
    general_path = b"data: 6\r\rdata: 7\r\r: c\r\nid: 1\ndata: 8\n\n"
    for wire in (fast_path, general_path):
        decoder.feed(wire)
        for event in decoder:
            seen.append(event.data)
            other = decoder.next_event()
            if other is not None:
                seen.append(other.data)
    assert seen == [str(i) for i in range(9)]


def test_feed_copies_mutable_buffers() -> None:
    """Bytes fed from a bytearray or memoryview are copied, so the caller may reuse its buffer."""
    decoder = SSEDecoder()
    buffer = bytearray(b"data: abc\n\n")
    decoder.feed(buffer)
    decoder.feed(memoryview(buffer)[:6])
    buffer[:] = b"X" * len(buffer)
    decoder.feed(b"z\n\n")
    assert list(decoder) == [SSEEvent("message", "abc"), SSEEvent("message", "z")]


def test_pending_counts_bytes_since_the_last_boundary() -> None:
    """pending is what would be lost if the input ended now: the event in progress and unparsed bytes."""
    decoder = SSEDecoder()
    decoder.feed(b"data: 1\n\ndata: 2\n")
    assert decoder.pending == 17
    assert decoder.next_event() == SSEEvent("message", "1")
    assert decoder.pending == 8
    assert decoder.next_event() is None
    assert decoder.pending == 8
    decoder.feed(b"\n: comment\n")
    assert decoder.next_event() == SSEEvent("message", "2")
    assert decoder.next_event() is None
    assert decoder.pending == 0


def test_close_with_unread_events_is_an_error_but_not_incomplete() -> None:
    """close() before draining is a caller bug, reported as such."""
    decoder = SSEDecoder()
    decoder.feed(b"data: 1\n\n")
    with pytest.raises(EventStreamError, match="unread events") as caught:
        decoder.close()
    assert not isinstance(caught.value, IncompleteStreamError)


@pytest.mark.parametrize("cut", range(1, 28))
def test_every_truncation_inside_an_event_is_incomplete(cut: int) -> None:
    """A stream cut anywhere before its closing blank line is incomplete at close, never a quiet end."""
    wire = b'event: a\r\ndata: {"x":1}\r\n\r\n'
    assert len(wire) == 27
    decoder = SSEDecoder()
    decoder.feed(wire[:cut])
    assert list(decoder) == ([SSEEvent("a", '{"x":1}')] if cut >= 26 else [])
    if cut >= 26:  # after the blank line's CR: its LF may follow or not
        decoder.close()
    else:
        with pytest.raises(IncompleteStreamError):
            decoder.close()


def test_events_are_frozen_values() -> None:
    """SSEEvent compares by value, hashes, and cannot be changed."""
    event = SSEEvent("a", "b")
    assert event == SSEEvent("a", "b", None, None)
    assert hash(event) == hash(SSEEvent("a", "b"))
    with pytest.raises(AttributeError):
        event.data = "c"  # type: ignore[misc]


def test_encode_event_layout() -> None:
    """encode_event writes one data line per line of data and ends with a blank line."""
    assert encode_event("ping", '{"type":"ping"}') == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert encode_event("x", "a\n\nb") == b"event: x\ndata: a\ndata: \ndata: b\n\n"
    assert encode_event("x", "") == b"event: x\ndata: \n\n"


@pytest.mark.parametrize(
    ("event", "data", "field"),
    [("", "x", "event"), ("a\nb", "x", "event"), ("a\r", "x", "event"), ("a", "x\ry", "data")],
)
def test_encode_event_refuses_what_cannot_round_trip(event: str, data: str, field: str) -> None:
    """An empty or multi-line event name, or a CR in the data, is refused rather than mangled."""
    with pytest.raises(InvalidRequestError, match=field):
        encode_event(event, data)
