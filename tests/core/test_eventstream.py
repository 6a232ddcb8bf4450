"""Event-stream codec: byte-exact vectors, differential tests against botocore, corruption and truncation."""

from __future__ import annotations

import base64
import binascii
import datetime
import itertools
import json
import random
import struct
import types
import uuid
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_chat._core import eventstream as eventstream_module
from bedrock_chat._core.eventstream import (
    MAX_HEADERS_LENGTH,
    MAX_MESSAGE_LENGTH,
    EventStreamDecoder,
    EventStreamMessage,
    HeaderInput,
    HeaderValue,
    Int8,
    Int16,
    Int32,
    Int64,
    decode_chunk_payload,
    encode_chunk_event,
    encode_exception_event,
    encode_message,
)
from bedrock_chat._errors import EventStreamError, IncompleteStreamError, InvalidRequestError

UTC = datetime.UTC
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
MS = datetime.timedelta(milliseconds=1)

# ---------------------------------------------------------------------------------------------------
# Helpers. Frames for malformed input are built here with struct and zlib, independently of the
# encoder under test, so that the CRCs are right and only the named defect is present.


def frame(
    header_block: bytes, payload: bytes = b"", *, total: int | None = None, headers_length: int | None = None
) -> bytes:
    """A frame around raw header bytes; ``total``/``headers_length`` override the true lengths."""
    true_total = 16 + len(header_block) + len(payload)
    lengths = struct.pack(
        ">II", true_total if total is None else total, len(header_block) if headers_length is None else headers_length
    )
    head = lengths + struct.pack(">I", zlib.crc32(lengths))
    body = head + header_block + payload
    return body + struct.pack(">I", zlib.crc32(body))


def prelude(total: int, headers_length: int) -> bytes:
    """Just a 12-byte prelude with a correct CRC."""
    lengths = struct.pack(">II", total, headers_length)
    return lengths + struct.pack(">I", zlib.crc32(lengths))


def header(name: bytes, tag: int, value: bytes = b"") -> bytes:
    """One raw header: name length, name, type tag, value bytes as given."""
    return bytes((len(name),)) + name + bytes((tag,)) + value


def decode_all(data: bytes, piece_sizes: Iterable[int] = ()) -> list[EventStreamMessage]:
    """Feed ``data`` (in pieces of the given sizes, then the rest), drain after each feed, close."""
    decoder = EventStreamDecoder()
    messages: list[EventStreamMessage] = []
    at = 0
    for size in [*piece_sizes, len(data)]:
        decoder.feed(data[at : at + size])
        at += size
        messages.extend(decoder)
    decoder.close()
    return messages


def botocore_form(value: HeaderValue) -> tuple[type, object]:
    """Our decoded value as botocore gives it (timestamps as int ms, UUIDs as 16 bytes), type included."""
    if isinstance(value, datetime.datetime):
        value = (value - EPOCH) // MS
    elif isinstance(value, uuid.UUID):
        value = value.bytes
    return type(value), value


def ours_as_botocore(messages: Sequence[EventStreamMessage]) -> list[tuple[list[Any], bytes]]:
    """Headers (in order, with types) and payloads of our messages, in botocore's value forms."""
    return [([(name, botocore_form(value)) for name, value in m.headers.items()], m.payload) for m in messages]


def botocore_decode(data: bytes) -> list[tuple[list[Any], bytes]]:
    """The same view of what botocore's EventStreamBuffer decodes."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [([(name, (type(value), value)) for name, value in m.headers.items()], m.payload) for m in buffer]


# ---------------------------------------------------------------------------------------------------
# Byte-exact vectors

# BEDROCK_PROTOCOL.md 6.4: a Bedrock chunk event carrying {"completion":"Hi",...}.
WORKED_INNER = b'{"completion":"Hi","stop_reason":null,"stop":null}'
WORKED_DUMP = """
0000  00 00 00 ab 00 00 00 4b 83 db e9 f6 0b 3a 65 76
0010  65 6e 74 2d 74 79 70 65 07 00 05 63 68 75 6e 6b
0020  0d 3a 63 6f 6e 74 65 6e 74 2d 74 79 70 65 07 00
0030  10 61 70 70 6c 69 63 61 74 69 6f 6e 2f 6a 73 6f
0040  6e 0d 3a 6d 65 73 73 61 67 65 2d 74 79 70 65 07
0050  00 05 65 76 65 6e 74 7b 22 62 79 74 65 73 22 3a
0060  22 65 79 4a 6a 62 32 31 77 62 47 56 30 61 57 39
0070  75 49 6a 6f 69 53 47 6b 69 4c 43 4a 7a 64 47 39
0080  77 58 33 4a 6c 59 58 4e 76 62 69 49 36 62 6e 56
0090  73 62 43 77 69 63 33 52 76 63 43 49 36 62 6e 56
00a0  73 62 48 30 3d 22 7d 88 04 37 ef
"""  # the hex columns of the dump in 6.4, offsets kept so the transcription can be checked
WORKED_FRAME = bytes.fromhex("".join("".join(line.split()[1:]) for line in WORKED_DUMP.strip().splitlines()))

TS = datetime.datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)  # 1714566896789 ms = 0x18f34269c95
ID = uuid.UUID("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")

ALL_TYPES_HEADERS: list[tuple[str, HeaderInput]] = [
    ("t", True),
    ("f", False),
    ("i8", Int8(-128)),
    ("i16", Int16(32767)),
    ("i32", -(2**31)),
    ("i64", Int64(2**63 - 1)),
    ("raw", b"\x00\xff"),
    ("s", "h\u00e9"),
    ("ts", TS),
    ("id", ID),
]
ALL_TYPES_DECODED: dict[str, HeaderValue] = {
    "t": True,
    "f": False,
    "i8": -128,
    "i16": 32767,
    "i32": -(2**31),
    "i64": 2**63 - 1,
    "raw": b"\x00\xff",
    "s": "h\u00e9",
    "ts": TS,
    "id": ID,
}

# (id, frame bytes laid out by hand, headers it encodes, decoded headers, payload)
VECTORS: list[tuple[str, bytes, Sequence[tuple[str, HeaderInput]], dict[str, HeaderValue], bytes]] = [
    (
        "empty",
        bytes.fromhex(
            "00000010"
            "00000000"
            "05c248eb"  # total 16, no headers, prelude CRC
            "7d98c8ff"  # message CRC
        ),
        [],
        {},
        b"",
    ),
    (
        "all-ten-types",
        bytes.fromhex(
            "00000074"
            "00000059"
            "7bc77036"  # total 116, headers 89, prelude CRC
            "01"
            "74"
            "00"  # "t" true
            "01"
            "66"
            "01"  # "f" false
            "02"
            "6938"
            "02"
            "80"  # "i8" int8 -128
            "03"
            "693136"
            "03"
            "7fff"  # "i16" int16 32767
            "03"
            "693332"
            "04"
            "80000000"  # "i32" int32 -2**31
            "03"
            "693634"
            "05"
            "7fffffffffffffff"  # "i64" int64 2**63-1
            "03"
            "726177"
            "06"
            "0002"
            "00ff"  # "raw" bytes, 2 long
            "01"
            "73"
            "07"
            "0003"
            "68c3a9"  # "s" string "hé" (3 UTF-8 bytes)
            "02"
            "7473"
            "08"
            "0000018f34269c95"  # "ts" timestamp 1714566896789 ms
            "02"
            "6964"
            "09"
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # "id" uuid
            "7b226f6b223a747275657d"  # payload {"ok":true}
            "ca10be11"  # message CRC
        ),
        ALL_TYPES_HEADERS,
        ALL_TYPES_DECODED,
        b'{"ok":true}',
    ),
    (
        "exception",
        bytes.fromhex(
            "00000090"
            "00000061"
            "8e91a9b7"  # total 144, headers 97, prelude CRC
            "0f"
            "3a657863657074696f6e2d74797065"
            "07"
            "0013"
            "7468726f74746c696e67457863657074696f6e"
            "0d"
            "3a636f6e74656e742d74797065"
            "07"
            "0010"
            "6170706c69636174696f6e2f6a736f6e"
            "0d"
            "3a6d6573736167652d74797065"
            "07"
            "0009"
            "657863657074696f6e"
            "7b226d657373616765223a22546f6f206d616e79207265717565737473227d"  # {"message":"Too many requests"}
            "e67f8005"  # message CRC
        ),
        [
            (":exception-type", "throttlingException"),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        {
            ":exception-type": "throttlingException",
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        b'{"message":"Too many requests"}',
    ),
    (
        "error",
        bytes.fromhex(
            "0000005a"
            "0000004a"
            "8188a08d"  # total 90, headers 74, prelude CRC
            "0d"
            "3a6d6573736167652d74797065"
            "07"
            "0005"
            "6572726f72"  # :message-type error
            "0b"
            "3a6572726f722d636f6465"
            "07"
            "000f"
            "496e7465726e616c4661696c757265"  # :error-code
            "0e"
            "3a6572726f722d6d657373616765"
            "07"
            "0004"
            "626f6f6d"  # :error-message boom
            "d78e0703"  # message CRC, no payload
        ),
        [(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")],
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"},
        b"",
    ),
]
VECTOR_IDS = [v[0] for v in VECTORS]


def test_worked_frame_is_the_documented_hex_dump() -> None:
    """The 6.4 vector as transcribed is 171 bytes with the documented CRCs (guards the transcription)."""
    assert len(WORKED_FRAME) == 0xAB
    assert WORKED_FRAME[8:12] == bytes.fromhex("83dbe9f6")
    assert WORKED_FRAME[-4:] == bytes.fromhex("880437ef")
    assert b'{"bytes":"eyJjb21wbGV0aW9uIjoiSGkiLCJzdG9wX3JlYXNvbiI6bnVsbCwic3RvcCI6bnVsbH0="}' in WORKED_FRAME


def test_encode_chunk_event_reproduces_the_worked_frame() -> None:
    """encode_chunk_event lays out a chunk exactly as Bedrock does, byte for byte."""
    assert encode_chunk_event(WORKED_INNER) == WORKED_FRAME


def test_worked_frame_decodes() -> None:
    """Decoding the worked frame gives its three headers in wire order and the inner JSON back."""
    [message] = decode_all(WORKED_FRAME)
    assert list(message.headers.items()) == [
        (":event-type", "chunk"),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ]
    assert (message.message_type, message.event_type, message.exception_type) == ("event", "chunk", None)
    assert decode_chunk_payload(message.payload) == WORKED_INNER
    assert ours_as_botocore([message]) == botocore_decode(WORKED_FRAME)


@pytest.mark.parametrize(("name", "wire", "headers", "decoded", "payload"), VECTORS, ids=VECTOR_IDS)
def test_vector_decodes(
    name: str, wire: bytes, headers: Sequence[tuple[str, HeaderInput]], decoded: dict[str, HeaderValue], payload: bytes
) -> None:
    """Each hand-laid-out vector decodes to the expected headers (in order, with types) and payload."""
    [message] = decode_all(wire)
    assert list(message.headers.items()) == list(decoded.items())
    assert [type(v) for v in message.headers.values()] == [type(v) for v in decoded.values()]
    assert all(v.tzinfo is UTC for v in message.headers.values() if isinstance(v, datetime.datetime))
    assert message.payload == payload


@pytest.mark.parametrize(("name", "wire", "headers", "decoded", "payload"), VECTORS, ids=VECTOR_IDS)
def test_vector_encodes(
    name: str, wire: bytes, headers: Sequence[tuple[str, HeaderInput]], decoded: dict[str, HeaderValue], payload: bytes
) -> None:
    """The encoder produces each vector byte for byte from its headers and payload."""
    assert encode_message(headers, payload) == wire


@pytest.mark.parametrize(("name", "wire", "headers", "decoded", "payload"), VECTORS, ids=VECTOR_IDS)
def test_vector_agrees_with_botocore(
    name: str, wire: bytes, headers: Sequence[tuple[str, HeaderInput]], decoded: dict[str, HeaderValue], payload: bytes
) -> None:
    """botocore's decoder reads each vector as we do, so the vectors and CRCs are right."""
    assert ours_as_botocore(decode_all(wire)) == botocore_decode(wire)


def test_exception_encoder_matches_vector() -> None:
    """encode_exception_event lays out the exception frame of the vector table."""
    wire = {v[0]: v[1] for v in VECTORS}["exception"]
    assert encode_exception_event("throttlingException", b'{"message":"Too many requests"}') == wire
    [message] = decode_all(wire)
    assert (message.message_type, message.exception_type, message.event_type) == (
        "exception",
        "throttlingException",
        None,
    )


def test_all_vectors_in_one_stream() -> None:
    """All vectors concatenated decode in order, whole or one byte at a time."""
    stream = WORKED_FRAME + b"".join(v[1] for v in VECTORS)
    expected = decode_all(stream)
    assert len(expected) == 1 + len(VECTORS)
    assert decode_all(stream, [1] * len(stream)) == expected
    assert ours_as_botocore(expected) == botocore_decode(stream)


# ---------------------------------------------------------------------------------------------------
# Differential: random frames, random cuts, against botocore

names = st.text(max_size=12)
values: st.SearchStrategy[HeaderInput] = st.one_of(
    st.booleans(),
    st.integers(-(2**7), 2**7 - 1).map(Int8),
    st.integers(-(2**15), 2**15 - 1).map(Int16),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**31), 2**31 - 1).map(Int32),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.binary(max_size=40),
    st.text(max_size=40),
    st.datetimes(
        min_value=datetime.datetime(1, 1, 1),
        max_value=datetime.datetime(9999, 12, 31, 23, 59, 59, 999000),
        timezones=st.just(UTC),
    ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
    st.uuids(),
)
header_lists = st.lists(st.tuples(names, values), max_size=8, unique_by=lambda item: item[0])
# Chunk frames with short inner events repeat their lengths, so the decoder's fast path is exercised.
chunk_frames = st.binary(max_size=9).map(encode_chunk_event)
any_frames = st.builds(encode_message, header_lists, st.binary(max_size=200))
streams = st.lists(st.one_of(any_frames, chunk_frames), min_size=1, max_size=8)


def expected_value(value: HeaderInput) -> HeaderValue:
    """What decoding an encoded header value must give back."""
    return value.value if isinstance(value, Int8 | Int16 | Int32 | Int64) else value


@settings(max_examples=500, deadline=None)
@given(frames=streams, data=st.data())
def test_split_stream_matches_botocore(frames: list[bytes], data: st.DataObject) -> None:
    """Random frames of every header type, concatenated and cut anywhere, decode as botocore decodes them."""
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    sizes = [b - a for a, b in itertools.pairwise([0, *cuts])]
    messages = decode_all(stream, sizes)
    assert len(messages) == len(frames)
    assert ours_as_botocore(messages) == botocore_decode(stream)


@settings(max_examples=500, deadline=None)
@given(headers=header_lists, payload=st.binary(max_size=300))
def test_encode_decode_round_trip(headers: list[tuple[str, HeaderInput]], payload: bytes) -> None:
    """Decoding an encoded frame gives back its headers (in order, wrappers unwrapped) and payload."""
    [message] = decode_all(encode_message(headers, payload))
    assert list(message.headers.items()) == [(name, expected_value(value)) for name, value in headers]
    assert message.payload == payload


# ---------------------------------------------------------------------------------------------------
# Corruption and malformed input

CHUNK_A = encode_chunk_event(b'{"type":"content_block_delta","text":"aaaa"}')
CHUNK_B = encode_chunk_event(b'{"type":"content_block_delta","text":"bbbb"}')  # same length as A
CORRUPTION_STREAM = CHUNK_A + CHUNK_B + VECTORS[1][1] + VECTORS[2][1]


@pytest.mark.parametrize("piece_size", [None, 7])
def test_single_byte_corruption_never_changes_a_message(piece_size: int | None) -> None:
    """Every single-byte corruption raises EventStreamError or decodes identically, never differently."""
    expected = decode_all(CORRUPTION_STREAM)
    assert len(expected) == 4
    sizes = [piece_size] * (len(CORRUPTION_STREAM) // piece_size) if piece_size else []
    raised = 0
    for position in range(len(CORRUPTION_STREAM)):
        for mask in (0x01, 0x80, 0xFF):
            corrupted = bytearray(CORRUPTION_STREAM)
            corrupted[position] ^= mask
            try:
                got = decode_all(bytes(corrupted), sizes)
            except EventStreamError:
                raised += 1
            else:
                assert got == expected, (position, mask)
    # CRC32 detects every burst of up to 32 bits, so in fact nothing gets through.
    assert raised == 3 * len(CORRUPTION_STREAM)


def test_corrupt_payload_behind_a_known_header_prefix_is_caught() -> None:
    """A chunk frame starting like an earlier valid one (the fast path) still has its payload CRC checked."""
    corrupted = bytearray(CHUNK_A + CHUNK_B)
    corrupted[len(CHUNK_A) + 100] ^= 0x20
    decoder = EventStreamDecoder()
    decoder.feed(bytes(corrupted))
    assert decoder.next_message() == decode_all(CHUNK_A)[0]
    with pytest.raises(EventStreamError, match=f"message CRC mismatch in the frame at stream offset {len(CHUNK_A)}"):
        decoder.next_message()


def test_chunk_heads_validated_by_one_stream_serve_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second stream's frames of lengths the process has seen take the fast path from its first frame:
    the validated heads are the process's, not each decoder's (a thousand open streams held a copy each)."""
    frames = [encode_chunk_event(b'{"type":"content_block_delta","n":%d}' % n, b"p" * n) for n in range(40)]
    monkeypatch.setattr(eventstream_module, "_VALIDATED_CHUNK_HEADS", {})
    decoded: list[int] = []
    full_check = EventStreamDecoder._decode_frame

    def counting(self: EventStreamDecoder) -> EventStreamMessage | None:
        message = full_check(self)
        if message is not None:
            decoded.append(1)
        return message

    monkeypatch.setattr(EventStreamDecoder, "_decode_frame", counting)
    assert len(decode_all(b"".join(frames))) == 40
    assert len(decoded) == 40  # every length new to the process: each checked in full once
    second = decode_all(b"".join(frames))
    assert len(decoded) == 40  # the second stream: all on the fast path
    assert second == decode_all(b"".join(frames))
    assert not hasattr(EventStreamDecoder(), "__dict__")  # and no per-decoder table (slots only)


def test_a_corrupt_frame_is_caught_in_a_stream_after_its_head_was_validated_elsewhere() -> None:
    """The shared table trusts only the 87 head bytes: the payload CRC is still checked in every stream."""
    assert decode_all(CHUNK_A + CHUNK_B)  # validates both heads for the process
    corrupted = bytearray(CHUNK_B)
    corrupted[100] ^= 0x20
    decoder = EventStreamDecoder()
    decoder.feed(bytes(corrupted))
    with pytest.raises(EventStreamError, match="message CRC mismatch in the frame at stream offset 0"):
        decoder.next_message()


MALFORMED_HEADERS = [
    ("duplicate", header(b"a", 7, b"\x00\x01x") + header(b"a", 7, b"\x00\x01y"), "duplicate header 'a'"),
    ("duplicate-other-type", header(b"a", 0) + header(b"a", 1), "duplicate header 'a'"),
    ("unknown-tag-10", header(b"a", 10, b"\x00"), "unknown value type 10"),
    ("unknown-tag-255", header(b"a", 255), "unknown value type 255"),
    ("name-overruns", b"\x05ab", "name at byte 0 overruns"),
    ("type-tag-missing", b"\x01a", "name at byte 0 overruns"),
    ("int8-missing", header(b"a", 2), "overruns"),
    ("int16-short", header(b"a", 3, b"\x00"), "overruns"),
    ("int32-short", header(b"a", 4, b"\x00\x00\x00"), "overruns"),
    ("int64-short", header(b"a", 5, b"\x00" * 7), "overruns"),
    ("bytes-length-missing", header(b"a", 6, b"\x00"), "overruns"),
    ("bytes-overrun", header(b"a", 6, b"\x00\x05abc"), "overruns"),
    ("string-overrun", header(b"ok", 0) + header(b"a", 7, b"\x00\x05ab"), "value at byte 4 overruns"),
    ("timestamp-short", header(b"a", 8, b"\x00" * 4), "overruns"),
    ("uuid-short", header(b"a", 9, b"\x00" * 15), "overruns"),
    ("name-not-utf8", header(b"\xff\xfe", 0), "not valid UTF-8"),
    ("string-not-utf8", header(b"a", 7, b"\x00\x02\xc3\x28"), "not valid UTF-8"),
    ("string-surrogate", header(b"a", 7, b"\x00\x03\xed\xa0\x80"), "not valid UTF-8"),
    ("timestamp-out-of-range", header(b"a", 8, struct.pack(">q", 2**63 - 1)), "outside years 1-9999"),
]


@pytest.mark.parametrize(("name", "block", "match"), MALFORMED_HEADERS, ids=[m[0] for m in MALFORMED_HEADERS])
def test_malformed_header_block_raises(name: str, block: bytes, match: str) -> None:
    """A header block that does not parse exactly (with valid CRCs around it) is an EventStreamError."""
    decoder = EventStreamDecoder()
    decoder.feed(frame(block, b"payload"))
    with pytest.raises(EventStreamError, match=match) as info:
        decoder.next_message()
    assert not isinstance(info.value, IncompleteStreamError)


BAD_PRELUDES = [
    ("total-over-16MiB", prelude(MAX_MESSAGE_LENGTH + 1, 0), "exceeds the limit"),
    ("total-17MiB", prelude(17 * 1024 * 1024, 10), "exceeds the limit"),
    ("total-max-u32", prelude(2**32 - 1, 0), "exceeds the limit"),
    ("total-below-16", prelude(15, 0), "below the minimum"),
    ("total-zero", prelude(0, 0), "below the minimum"),
    ("headers-over-128KiB", prelude(MAX_MESSAGE_LENGTH, MAX_HEADERS_LENGTH + 1), "header block of"),
    ("headers-longer-than-frame", prelude(20, 5), "does not fit frame length 20"),
    ("prelude-crc", prelude(20, 0)[:8] + b"\x00\x00\x00\x00", "prelude CRC mismatch"),
]


@pytest.mark.parametrize(("name", "head", "match"), BAD_PRELUDES, ids=[b[0] for b in BAD_PRELUDES])
def test_bad_prelude_rejected_before_the_body(name: str, head: bytes, match: str) -> None:
    """A bad prelude is rejected as soon as its 12 bytes are in, without waiting for the body it announces."""
    decoder = EventStreamDecoder()
    decoder.feed(head[:11])
    assert decoder.next_message() is None
    decoder.feed(head[11:])
    with pytest.raises(EventStreamError, match=match):
        decoder.next_message()
    with pytest.raises(EventStreamError, match=match):
        list(decoder)  # the bad frame stays at the head: asking again fails again


def test_prelude_at_the_limits_is_accepted() -> None:
    """A prelude announcing exactly 16 MiB with a 128 KiB header block is valid: the decoder waits."""
    decoder = EventStreamDecoder()
    decoder.feed(prelude(MAX_MESSAGE_LENGTH, MAX_HEADERS_LENGTH))
    assert decoder.next_message() is None
    assert decoder.pending == 12


def test_largest_frame_round_trips() -> None:
    """A frame of exactly 16 MiB encodes and decodes; one byte more is refused by the encoder."""
    payload = b"x" * (MAX_MESSAGE_LENGTH - 16)
    [message] = decode_all(encode_message({}, payload))
    assert message.payload == payload
    with pytest.raises(InvalidRequestError, match="exceeds"):
        encode_message({}, payload + b"x")


def test_message_crc_mismatch() -> None:
    """A wrong message CRC is an error naming the frame's stream offset."""
    bad = WORKED_FRAME[:-1] + bytes((WORKED_FRAME[-1] ^ 1,))
    decoder = EventStreamDecoder()
    decoder.feed(WORKED_FRAME + bad)
    assert decoder.next_message() is not None
    with pytest.raises(
        EventStreamError, match=f"message CRC mismatch in the frame at stream offset {len(WORKED_FRAME)}"
    ):
        decoder.next_message()


# ---------------------------------------------------------------------------------------------------
# Truncation

TRUNCATION_STREAM = WORKED_FRAME + VECTORS[1][1] + VECTORS[2][1]
BOUNDARIES = {0, len(WORKED_FRAME), len(WORKED_FRAME) + len(VECTORS[1][1]), len(TRUNCATION_STREAM)}


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_every_truncation_inside_a_frame_is_incomplete(byte_by_byte: bool) -> None:
    """Each prefix ending inside a frame makes close() raise IncompleteStreamError; frame boundaries end cleanly."""
    expected = decode_all(TRUNCATION_STREAM)
    for cut in range(len(TRUNCATION_STREAM) + 1):
        decoder = EventStreamDecoder()
        messages: list[EventStreamMessage] = []
        for piece in [TRUNCATION_STREAM[i : i + 1] for i in range(cut)] if byte_by_byte else [TRUNCATION_STREAM[:cut]]:
            decoder.feed(piece)
            messages.extend(decoder)
        assert messages == expected[: len(messages)]
        if cut in BOUNDARIES:
            decoder.close()
            assert len(messages) == sorted(BOUNDARIES).index(cut)
        else:
            with pytest.raises(IncompleteStreamError, match=f"{decoder.pending} bytes of a partial frame"):
                decoder.close()


def test_close_with_unread_messages_is_an_error_but_not_incomplete() -> None:
    """Closing with whole messages still unread is a caller bug, reported as such rather than as truncation."""
    decoder = EventStreamDecoder()
    decoder.feed(WORKED_FRAME)
    with pytest.raises(EventStreamError, match="unread messages") as info:
        decoder.close()
    assert not isinstance(info.value, IncompleteStreamError)


def test_close_on_empty_input_is_clean() -> None:
    """A stream with no frames at all ends cleanly (whether it should have had some is the client's call)."""
    EventStreamDecoder().close()


# ---------------------------------------------------------------------------------------------------
# Linear behaviour (structural: bounded buffering and bounded copying, no timing)


def test_ten_megabytes_in_small_pieces_copy_linearly() -> None:
    """10 MB of small frames fed in ~1 KB pieces: buffering stays within a frame plus a piece, copying within 3x."""
    rng = random.Random(20240501)
    frames = [encode_chunk_event(b'{"text":"%s"}' % (b"x" * rng.randint(0, 300))) for _ in range(64)]
    frames += [VECTORS[1][1], VECTORS[2][1]]
    stream = b"".join(rng.choice(frames) for _ in range(10_000_000 // 250))
    assert len(stream) > 10_000_000
    largest_frame, largest_piece = max(map(len, frames)), 2048
    decoder = EventStreamDecoder()
    count = at = worst_pending = 0
    while at < len(stream):
        size = rng.randint(1, largest_piece)
        decoder.feed(stream[at : at + size])
        at += size
        count += sum(1 for _ in decoder)
        worst_pending = max(worst_pending, decoder.pending)
    decoder.close()
    assert count == 10_000_000 // 250
    assert worst_pending < largest_frame
    assert decoder._copied <= 3 * len(stream)  # the decoder counts the bytes its joins copy


def test_one_large_frame_in_small_pieces_copies_linearly() -> None:
    """A 4 MiB frame fed 1 KB at a time is joined once, not re-copied on every piece."""
    wire = encode_message({":message-type": "event"}, bytes(4 * 1024 * 1024))
    decoder = EventStreamDecoder()
    messages: list[EventStreamMessage] = []
    for at in range(0, len(wire), 1024):
        decoder.feed(wire[at : at + 1024])
        messages.extend(decoder)
        assert decoder.pending == min(at + 1024, len(wire)) * (not messages)
    decoder.close()
    assert len(messages) == 1
    assert decoder._copied <= 3 * len(wire)


# ---------------------------------------------------------------------------------------------------
# Decoder API


def test_iteration_yields_what_is_complete_and_resumes_after_feed() -> None:
    """Iterating stops when data runs out and picks up where it left off after the next feed."""
    decoder = EventStreamDecoder()
    decoder.feed(WORKED_FRAME + CHUNK_A[:50])
    assert len(list(decoder)) == 1
    assert list(decoder) == []
    assert decoder.pending == 50
    decoder.feed(CHUNK_A[50:])
    assert [decode_chunk_payload(m.payload) for m in decoder] == [b'{"type":"content_block_delta","text":"aaaa"}']
    assert decoder.pending == 0
    decoder.close()


def test_next_message_and_next() -> None:
    """next_message answers None and next() raises StopIteration when more bytes are needed."""
    decoder = EventStreamDecoder()
    assert decoder.next_message() is None
    with pytest.raises(StopIteration):
        next(decoder)
    decoder.feed(CHUNK_A + CHUNK_B)
    assert next(decoder).payload == decode_all(CHUNK_A)[0].payload
    assert decoder.next_message() == decode_all(CHUNK_B)[0]
    assert decoder.next_message() is None


def test_mixed_next_message_and_iteration_neither_skips_nor_repeats() -> None:
    """Calling next_message inside a for loop over the decoder shares one read position."""
    stream = CHUNK_A + CHUNK_B + WORKED_FRAME + VECTORS[1][1]
    decoder = EventStreamDecoder()
    decoder.feed(stream)
    seen = []
    for message in decoder:
        seen.append(message)
        inner = decoder.next_message()
        if inner is not None:
            seen.append(inner)
    assert seen == decode_all(stream)


def test_feed_copies_mutable_buffers() -> None:
    """Bytes fed from a bytearray or memoryview are copied, so the caller may reuse its buffer."""
    buffer = bytearray(WORKED_FRAME)
    decoder = EventStreamDecoder()
    decoder.feed(memoryview(buffer)[:100])
    decoder.feed(buffer[100:])
    buffer[:] = bytes(len(buffer))
    [message] = list(decoder)
    assert decode_chunk_payload(message.payload) == WORKED_INNER


def test_messages_are_frozen_values() -> None:
    """Messages compare by value, their headers are read-only, and (holding a mapping) they are unhashable."""
    [first] = decode_all(WORKED_FRAME)
    [second] = decode_all(WORKED_FRAME, [1] * 171)
    assert first == second
    with pytest.raises(TypeError):
        first.headers[":event-type"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        first.payload = b""  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(first)


def test_convenience_properties_read_only_string_headers() -> None:
    """message_type/event_type/exception_type are None when absent or not strings."""
    [message] = decode_all(encode_message({":message-type": b"event", ":event-type": 7}, b""))
    assert (message.message_type, message.event_type, message.exception_type) == (None, None, None)


# ---------------------------------------------------------------------------------------------------
# Encoder


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (True, "00"),
        (False, "01"),
        (Int8(-1), "02ff"),
        (Int16(-2), "03fffe"),
        (7, "0400000007"),
        (Int32(-7), "04fffffff9"),
        (Int64(1), "050000000000000001"),
        (b"ab", "0600026162"),
        ("ab", "0700026162"),
        (datetime.datetime(1970, 1, 1, 0, 0, 0, 1999, tzinfo=UTC), "080000000000000001"),  # floored to the ms
        (datetime.datetime(1970, 1, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=1))), "080000000000000000"),
        (uuid.UUID(int=1), "09" + "00" * 15 + "01"),
    ],
)
def test_python_types_choose_wire_types(value: HeaderInput, wire: str) -> None:
    """Each Python type (or int wrapper) encodes as its wire type tag and value."""
    expected = frame(b"\x01k" + bytes.fromhex(wire))
    assert encode_message({"k": value}, b"") == expected
    assert encode_message([("k", value)], b"") == expected


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"k": 2**31}, "use Int64"),
        ({"k": Int8(128)}, "does not fit"),
        ({"k": Int16(-(2**15) - 1)}, "does not fit"),
        ({"k": Int64(2**63)}, "does not fit"),
        ({"k": 1.5}, "cannot encode a float"),
        ({"k": None}, "cannot encode a NoneType"),
        ({"k": datetime.datetime(2024, 1, 1)}, "naive datetime"),
        ({"k": "x" * 65536}, "exceeds 65535"),
        ({"k": b"x" * 65536}, "exceeds 65535"),
        ({"n" * 256: True}, "exceeds 255 bytes"),
        ([("k", True), ("k", False)], "duplicate header 'k'"),
        ({f"h{i}": "x" * 60000 for i in range(3)}, "header block of"),
    ],
)
def test_encoder_refuses_what_has_no_wire_form(headers: Any, match: str) -> None:
    """Values without a wire form, duplicates and oversize blocks are refused, never silently mangled."""
    with pytest.raises(InvalidRequestError, match=match):
        encode_message(headers, b"")


def test_string_of_exactly_65535_bytes_and_name_of_255_bytes_encode() -> None:
    """The largest string value and the longest header name fit and round-trip."""
    headers = {"n" * 255: "\u00e9" * 32767 + "x"}
    [message] = decode_all(encode_message(headers, b""))
    assert dict(message.headers) == headers


# ---------------------------------------------------------------------------------------------------
# Chunk payloads


def strict_b64decode(data: bytes) -> bytes:
    """Base64 that rejects stray characters and bad padding."""
    return binascii.a2b_base64(data, strict_mode=True)


def reference_chunk_payload(payload: bytes) -> bytes:
    """The obvious implementation: parse the JSON, take "bytes", decode it as strict base64."""
    document = json.loads(payload)
    if not isinstance(document, dict) or not isinstance(document.get("bytes"), str):
        raise ValueError("no bytes")
    return strict_b64decode(document["bytes"].encode("ascii"))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"bytes":"aGk="}',
        b'{"bytes":"aGk=","p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}',
        b'{"p":"abcdef","bytes":"aGk="}',
        b'{ "bytes" : "aGk=" }',
        b'{"bytes":"aGk\\u003d"}',
        b'{"bytes":"aGk=","bytes2":"x"}',
    ],
)
def test_chunk_payload_layouts(payload: bytes) -> None:
    """Padding keys, spacing and JSON escapes all give the same inner bytes."""
    assert decode_chunk_payload(payload) == b"hi"


def test_chunk_payload_escaped_slash() -> None:
    """A JSON-escaped "/" inside the base64 (legal JSON) decodes like the plain one."""
    assert decode_chunk_payload(b'{"bytes":"/w=="}') == decode_chunk_payload(b'{"bytes":"\\/w=="}') == b"\xff"


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "not JSON"),
        (b'{"bytes":"aGk="', "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[]", 'no "bytes" string'),
        (b'{"byte":"aGk="}', 'no "bytes" string'),
        (b'{"bytes":null}', 'no "bytes" string'),
        (b'{"bytes":123}', 'no "bytes" string'),
        (b'{"bytes":"aGk"}', "not valid base64"),
        (b'{"bytes":"a Gk="}', "not valid base64"),
        (b'{"bytes":"aGk=aGk="}', "not valid base64"),
        (b'{"bytes":"\\u00e9"}', "not valid base64"),
    ],
)
def test_malformed_chunk_payload(payload: bytes, match: str) -> None:
    """Anything but a JSON object with a base64 "bytes" string is an EventStreamError."""
    with pytest.raises(EventStreamError, match=match):
        decode_chunk_payload(payload)


json_layouts = st.fixed_dictionaries(
    {"sort_keys": st.booleans(), "separators": st.sampled_from([(",", ":"), (", ", ": ")])}
)


@settings(max_examples=500, deadline=None)
@given(
    inner=st.binary(max_size=200),
    extra=st.dictionaries(st.text(max_size=5).filter(lambda k: k != "bytes"), st.text(max_size=20), max_size=3),
    layout=json_layouts,
    escape_slashes=st.booleans(),
)
def test_chunk_payload_any_json_layout(
    inner: bytes, extra: dict[str, str], layout: dict[str, Any], escape_slashes: bool
) -> None:
    """Whatever the JSON layout and extra keys, decode_chunk_payload returns the base64-encoded bytes."""
    text = json.dumps({"bytes": base64.b64encode(inner).decode(), **extra}, **layout)
    if escape_slashes:
        text = text.replace("/", "\\/")
    assert decode_chunk_payload(text.encode()) == inner


@settings(max_examples=500, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=40),
        st.builds(lambda middle: b'{"bytes":"' + middle + b'"}', st.binary(max_size=20)),
        st.builds(
            lambda middle: b'{"bytes":"' + middle + b'"}',
            st.text('AQgw+/="\\ ,:{}', max_size=20).map(str.encode),
        ),
    )
)
def test_chunk_payload_fast_path_agrees_with_json(payload: bytes) -> None:
    """On arbitrary input the JSON-free fast path answers exactly as parsing the JSON would, or raises."""
    try:
        expected = reference_chunk_payload(payload)
    except (ValueError, binascii.Error):
        with pytest.raises(EventStreamError):
            decode_chunk_payload(payload)
    else:
        assert decode_chunk_payload(payload) == expected


#: Bedrock's padding alphabet: ``"p"`` is a prefix of it (aws-sdk-js-v3#6919).
PADDING_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@pytest.mark.parametrize("length", [0, 1, 26, len(PADDING_ALPHABET)])
def test_padded_chunk_payload_takes_the_fast_path(length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bedrock's padded layout is unwrapped without a JSON parser, as the unpadded one is (the per-token path)."""
    frame = encode_chunk_event(b'{"type":"ping"}', PADDING_ALPHABET[:length])
    decoder = EventStreamDecoder()
    decoder.feed(frame)
    (message,) = list(decoder)
    padding = b',"p":"' + PADDING_ALPHABET[:length] + b'"' if length else b""
    expected = b'{"bytes":"eyJ0eXBlIjoicGluZyJ9"' + padding + b"}"
    assert message.payload == expected

    def no_parser(_data: object) -> object:
        raise AssertionError("the JSON parser was used")

    monkeypatch.setattr(eventstream_module, "json", types.SimpleNamespace(loads=no_parser))
    assert decode_chunk_payload(message.payload) == b'{"type":"ping"}'


@settings(max_examples=500, deadline=None)
@given(
    middle=st.text('AQgw+/="\\ ,:{}', max_size=12).map(str.encode),
    padding=st.one_of(
        st.binary(max_size=12), st.text('ab9"\\ ,:{}p', max_size=12).map(str.encode), st.just(PADDING_ALPHABET)
    ),
    key=st.sampled_from([b"p", b"bytes", b"q"]),
)
def test_padded_fast_path_agrees_with_json(middle: bytes, padding: bytes, key: bytes) -> None:
    """Payloads shaped like the padded layout (quotes, escapes, a second "bytes" inside) answer as the JSON does."""
    payload = b'{"bytes":"' + middle + b'","' + key + b'":"' + padding + b'"}'
    try:
        expected = reference_chunk_payload(payload)
    except (ValueError, binascii.Error):
        with pytest.raises(EventStreamError):
            decode_chunk_payload(payload)
    else:
        assert decode_chunk_payload(payload) == expected
