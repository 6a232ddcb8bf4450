"""The AWS event-stream (``application/vnd.amazon.eventstream``) codec: bytes in, messages out.

Theory of operation
-------------------
A Bedrock response stream is a run of self-delimiting binary frames::

    total_length u32 | headers_length u32 | prelude_crc u32 | headers | payload | message_crc u32

:class:`EventStreamDecoder` is sans-IO, after h11's ``receive_data``/``next_event``: the caller
feeds it whatever bytes the network delivered, split anywhere, then asks
:meth:`~EventStreamDecoder.next_message` (or iterates) until it answers None ("need more data"), and
calls :meth:`~EventStreamDecoder.close` at end of input, so that a truncated stream is an error
rather than a quiet end. Fed bytes collect in a ``bytearray``; they are joined onto the unread rest
of an immutable buffer only when that completes the next prelude or frame, so every byte is copied
a bounded number of times however finely the stream is split (time linear in the stream), and
frames are read from the buffer by offset, never by re-slicing what is left.

Everything a frame announces is distrusted: the prelude CRC is checked and the lengths bounded as
soon as the first 12 bytes arrive, so a corrupt or hostile length fails at once instead of making
the decoder wait for (and buffer) megabytes that will never make sense. The message CRC is checked
before any header is parsed. A corrupt stream cannot be resynchronised, so once a frame fails,
it stays at the head and every later attempt to read fails the same way.

Every token of a streamed answer is one frame, so the Bedrock ``chunk`` frame has a fast path: its
header block is always the same 75 bytes, so once a frame's first 87 bytes have been validated, a
later frame starting with the same 87 bytes, in any stream of the process, costs a dict lookup and a
CRC over its payload. And
:func:`decode_chunk_payload` unwraps ``{"bytes": "<base64>"}`` without a JSON parser when it can.
The encoders are the mirror image, used by the emulator and the tests.
"""

from __future__ import annotations

import binascii
import datetime
import json
import struct
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Final, TypeAlias

import attrs

from .._errors import EventStreamError, IncompleteStreamError, InvalidRequestError

__all__ = [
    "CHUNK_HEADERS",
    "EventStreamDecoder",
    "EventStreamMessage",
    "HeaderInput",
    "HeaderValue",
    "Int16",
    "Int32",
    "Int64",
    "Int8",
    "MAX_HEADERS_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "decode_chunk_payload",
    "encode_chunk_event",
    "encode_exception_event",
    "encode_message",
]

#: A decoded header value. Wire types 2-5 (int8..int64) all decode to ``int``.
HeaderValue: TypeAlias = bool | int | bytes | str | datetime.datetime | uuid.UUID

#: Largest frame accepted (and produced). Bedrock's largest, a 1 MB ``PayloadPart`` blob in base64
#: inside JSON, is well under it; anything bigger is corruption or hostility.
MAX_MESSAGE_LENGTH: Final = 16 * 1024 * 1024
#: Largest header block accepted (and produced): botocore's limit.
MAX_HEADERS_LENGTH: Final = 128 * 1024

_PRELUDE_LENGTH: Final = 12
_MIN_MESSAGE_LENGTH: Final = 16  # prelude + message CRC: no headers, empty payload
_CHUNK_HEADS_MAX: Final = 4096
#: First 87 bytes of chunk frames already validated -> (total length, CRC of those bytes). Shared by
#: every decoder of the process: the entry is a pure function of its key, and a per-stream copy cost a
#: thousand open streams about 17 KiB each (a stream has dozens of frame lengths) plus a full check of
#: every length each stream met first (``benchmarks/bench_streams.py``). Bounded by clearing, not LRU.
_VALIDATED_CHUNK_HEADS: dict[bytes, tuple[int, int]] = {}

_PRELUDE = struct.Struct(">III")
_LENGTHS = struct.Struct(">II")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_ONE_MS: Final = datetime.timedelta(milliseconds=1)


# --------------------------------------------------------------------------------------------------
# Messages


@attrs.frozen(unsafe_hash=False)
class EventStreamMessage:
    """One decoded frame.

    ``headers`` is a read-only mapping in wire order (frames of the same shape may share one).
    The class is deliberately unhashable: it compares by value, and a mapping has no hash.
    """

    headers: Mapping[str, HeaderValue]
    payload: bytes

    @property
    def message_type(self) -> str | None:
        """``:message-type``: ``event``, ``exception`` or ``error`` (None if absent or not a string)."""
        return _str_header(self.headers, ":message-type")

    @property
    def event_type(self) -> str | None:
        """``:event-type`` of an event frame, e.g. ``chunk``."""
        return _str_header(self.headers, ":event-type")

    @property
    def exception_type(self) -> str | None:
        """``:exception-type`` of an exception frame, e.g. ``throttlingException``."""
        return _str_header(self.headers, ":exception-type")


def _str_header(headers: Mapping[str, HeaderValue], name: str) -> str | None:
    """A protocol header is only meaningful as a string; any other type reads as absent."""
    value = headers.get(name)
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------------------------------
# Header values: one reader per wire type tag, as a table.

_Reader: TypeAlias = Callable[[bytes, int], tuple[HeaderValue, int]]


def _fixed(fmt: str, convert: Callable[[int], HeaderValue] | None = None) -> _Reader:
    """A reader for a fixed-width big-endian value; bounds are the header block's, via unpack_from."""
    unpacker = struct.Struct(fmt)
    size = unpacker.size

    def read(block: bytes, i: int) -> tuple[HeaderValue, int]:
        (value,) = unpacker.unpack_from(block, i)  # struct.error past the block's end
        return (value if convert is None else convert(value)), i + size

    return read


def _sized(block: bytes, i: int) -> tuple[bytes, int]:
    """A uint16-length-prefixed run of bytes, which must lie inside the header block."""
    (length,) = _U16.unpack_from(block, i)
    start = i + 2
    end = start + length
    if end > len(block):
        raise struct.error("value overruns the header block")
    return block[start:end], end


def _read_str(block: bytes, i: int) -> tuple[HeaderValue, int]:
    """A sized run of UTF-8; a UnicodeDecodeError is reported as corruption by the caller."""
    raw, end = _sized(block, i)
    return raw.decode("utf-8"), end


def _timestamp(ms: int) -> datetime.datetime:
    """Milliseconds since the epoch as an aware UTC datetime (OverflowError outside years 1-9999)."""
    return _EPOCH + datetime.timedelta(milliseconds=ms)


def _read_uuid(block: bytes, i: int) -> tuple[HeaderValue, int]:
    """16 raw bytes, as a UUID rather than botocore's bytes: the type says what the value is."""
    end = i + 16
    if end > len(block):
        raise struct.error("uuid overruns the header block")
    return uuid.UUID(bytes=block[i:end]), end


_READERS: Final[Mapping[int, _Reader]] = {
    0: lambda block, i: (True, i),
    1: lambda block, i: (False, i),
    2: _fixed(">b"),
    3: _fixed(">h"),
    4: _fixed(">i"),
    5: _fixed(">q"),
    6: _sized,
    7: _read_str,
    8: _fixed(">q", _timestamp),
    9: _read_uuid,
}


def _parse_headers(block: bytes) -> dict[str, HeaderValue]:
    """Decode a whole header block; raises EventStreamError on anything but a perfect fit."""
    headers: dict[str, HeaderValue] = {}
    i = 0
    size = len(block)
    try:
        while i < size:
            name_end = i + 1 + block[i]
            if name_end >= size:  # the name and its type tag must both fit
                raise EventStreamError(f"header name at byte {i} overruns the header block")
            name = block[i + 1 : name_end].decode("utf-8")
            tag = block[name_end]
            reader = _READERS.get(tag)
            if reader is None:
                raise EventStreamError(f"header {name!r} has unknown value type {tag}")
            value, i = reader(block, name_end + 1)
            if name in headers:
                raise EventStreamError(f"duplicate header {name!r}")
            headers[name] = value
    except struct.error:
        raise EventStreamError(f"header value at byte {i} overruns the header block") from None
    except UnicodeDecodeError as exc:
        raise EventStreamError(f"header at byte {i} is not valid UTF-8: {exc.reason}") from None
    except OverflowError:
        raise EventStreamError(f"header at byte {i} has a timestamp outside years 1-9999") from None
    return headers


# --------------------------------------------------------------------------------------------------
# Encoding


@attrs.frozen
class Int8:
    """Send an int as wire type 2 (int8) rather than the default int32."""

    value: int


@attrs.frozen
class Int16:
    """Send an int as wire type 3 (int16)."""

    value: int


@attrs.frozen
class Int32:
    """Send an int as wire type 4 (int32), the default for a plain int; here for symmetry."""

    value: int


@attrs.frozen
class Int64:
    """Send an int as wire type 5 (int64)."""

    value: int


#: What :func:`encode_message` accepts: a decoded value, or an int with an explicit width.
HeaderInput: TypeAlias = HeaderValue | Int8 | Int16 | Int32 | Int64

_INT_WIDTHS: Final[Mapping[type, tuple[int, struct.Struct]]] = {
    Int8: (2, struct.Struct(">b")),
    Int16: (3, struct.Struct(">h")),
    Int32: (4, struct.Struct(">i")),
    Int64: (5, struct.Struct(">q")),
}
_Q = struct.Struct(">q")


def _sized_value(tag: int, raw: bytes, name: str) -> bytes:
    """Tag, uint16 length, bytes: the wire form of byte arrays and strings."""
    if len(raw) > 0xFFFF:
        raise InvalidRequestError("headers", f"{name!r}: value of {len(raw)} bytes exceeds 65535")
    return bytes((tag,)) + _U16.pack(len(raw)) + raw


def _encode_value(name: str, value: HeaderInput) -> bytes:
    """Type tag and value bytes; bool before int, since a bool is an int."""
    if isinstance(value, bool):
        return b"\x00" if value else b"\x01"
    if isinstance(value, int):
        value = Int32(value)
    if isinstance(value, (Int8, Int16, Int32, Int64)):
        tag, packer = _INT_WIDTHS[type(value)]
        try:
            return bytes((tag,)) + packer.pack(value.value)
        except struct.error:
            raise InvalidRequestError(
                "headers", f"{name!r}: {value!r} does not fit its wire type (use Int64 for big ints)"
            ) from None
    if isinstance(value, str):
        return _sized_value(7, value.encode("utf-8"), name)
    if isinstance(value, bytes):
        return _sized_value(6, value, name)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise InvalidRequestError("headers", f"{name!r}: naive datetime; give it a timezone")
        # Floor to whole milliseconds: the wire has no finer resolution.
        return b"\x08" + _Q.pack((value - _EPOCH) // _ONE_MS)
    if isinstance(value, uuid.UUID):
        return b"\x09" + value.bytes
    raise InvalidRequestError("headers", f"{name!r}: cannot encode a {type(value).__name__}")


def _encode_headers(headers: Mapping[str, HeaderInput] | Sequence[tuple[str, HeaderInput]]) -> bytes:
    """The header block; a sequence of pairs fixes the order (a mapping's own order serves too)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    parts: list[bytes] = []
    seen: set[str] = set()
    for name, value in items:
        if name in seen:
            raise InvalidRequestError("headers", f"duplicate header {name!r}")
        seen.add(name)
        raw_name = name.encode("utf-8")
        if len(raw_name) > 0xFF:
            raise InvalidRequestError("headers", f"header name {name!r} exceeds 255 bytes")
        parts.append(bytes((len(raw_name),)) + raw_name + _encode_value(name, value))
    return b"".join(parts)


def _frame(header_block: bytes, payload: bytes) -> bytes:
    """Wrap an encoded header block and a payload in prelude and CRCs."""
    total = _MIN_MESSAGE_LENGTH + len(header_block) + len(payload)
    if len(header_block) > MAX_HEADERS_LENGTH:
        raise InvalidRequestError("headers", f"header block of {len(header_block)} bytes is over the limit")
    if total > MAX_MESSAGE_LENGTH:
        raise InvalidRequestError("payload", f"a {total}-byte frame exceeds {MAX_MESSAGE_LENGTH} bytes")
    lengths = _LENGTHS.pack(total, len(header_block))
    head = lengths + _U32.pack(binascii.crc32(lengths))
    body = head + header_block + payload
    return body + _U32.pack(binascii.crc32(body))


def encode_message(headers: Mapping[str, HeaderInput] | Sequence[tuple[str, HeaderInput]], payload: bytes) -> bytes:
    """One frame, headers in the given order.

    Python types choose wire types: bool -> 0/1, int -> int32 (or wrap it in :class:`Int8`,
    :class:`Int16`, :class:`Int64`), bytes -> 6, str -> 7, aware datetime -> 8 (floored to the
    millisecond), UUID -> 9.

    Raises:
        InvalidRequestError: a value that has no wire form (or does not fit it), a duplicate name,
            or a frame over the size limits, which no decoder would accept.
    """
    return _frame(_encode_headers(headers), payload)


def _chunk_payload(inner_json: bytes, padding: bytes = b"") -> bytes:
    """Bedrock's ``PayloadPart`` JSON, compact, exactly as the service writes it (``"p"``: its padding)."""
    encoded = binascii.b2a_base64(inner_json, newline=False)
    if padding:
        return b'{"bytes":"' + encoded + b'","p":"' + padding + b'"}'
    return b'{"bytes":"' + encoded + b'"}'


_CHUNK_HEADER_ITEMS: Final = (
    (":event-type", "chunk"),
    (":content-type", "application/json"),
    (":message-type", "event"),
)
_CHUNK_BLOCK: Final = _encode_headers(_CHUNK_HEADER_ITEMS)
_CHUNK_BLOCK_LENGTH: Final = len(_CHUNK_BLOCK)
_CHUNK_HEAD_LENGTH: Final = _PRELUDE_LENGTH + _CHUNK_BLOCK_LENGTH
_CHUNK_HEADERS: Final[Mapping[str, HeaderValue]] = MappingProxyType(dict(_CHUNK_HEADER_ITEMS))
#: The headers of every Bedrock chunk frame the decoder validated by its fast path, one shared mapping: a
#: message whose ``headers`` *is* this one is an ``event`` of type ``chunk`` (no lookups per token).
CHUNK_HEADERS: Final = _CHUNK_HEADERS


def encode_chunk_event(inner_json: bytes, padding: bytes = b"") -> bytes:
    """A Bedrock ``chunk`` event frame carrying one model event, exactly as Bedrock lays it out.

    ``padding`` is the ``"p"`` field Bedrock adds next to ``bytes`` against token-length side channels
    (a prefix of ``a-zA-Z0-9`` of varying length); empty: no ``"p"``.
    """
    return _frame(_CHUNK_BLOCK, _chunk_payload(inner_json, padding))


def encode_exception_event(exception_type: str, body: bytes) -> bytes:
    """A Bedrock mid-stream exception frame, e.g. ``throttlingException`` with ``{"message": ...}``."""
    return encode_message(
        (
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ),
        body,
    )


# --------------------------------------------------------------------------------------------------
# Decoding


class EventStreamDecoder:
    """Incremental decoder: :meth:`feed` bytes split anywhere, take whole messages out.

    ``for message in decoder`` yields the messages complete so far and stops when more bytes are
    needed; feed more and iterate again. Errors are :class:`EventStreamError`, raised at the first
    frame that cannot be valid; the bad frame stays at the head, so asking again fails again.
    """

    __slots__ = ("_buf", "_consumed", "_copied", "_fed", "_pos", "_reader")

    def __init__(self) -> None:
        self._buf = b""  # joined input, immutable so that slicing it yields bytes; read from _pos
        self._pos = 0
        self._fed = bytearray()  # fed but not joined yet: joined only once a frame can progress
        self._consumed = 0  # stream offset of _buf[0], for error messages
        self._copied = 0  # bytes copied by joins; the tests check it stays linear in the input
        self._reader: Iterator[EventStreamMessage] | None = None  # next_message()'s live generator

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf) - self._pos + len(self._fed)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer more of the stream (copied: the caller may reuse its buffer); any split is fine."""
        self._fed += data

    def next_message(self) -> EventStreamMessage | None:
        """The next complete message, or None when more bytes are needed.

        Raises:
            EventStreamError: the next frame is corrupt (checked as soon as its 12-byte prelude is
                here, before waiting for the rest), or announces a size over the limits.
        """
        # Resuming one live generator is much cheaper than starting one per call, and the
        # streaming client calls this once per token. The generator ends when data runs out.
        reader = self._reader or self.__iter__()
        try:
            message = next(reader, None)
        except BaseException:
            self._reader = None  # an ended generator would answer None: let the next call re-raise
            raise
        self._reader = None if message is None else reader
        return message

    def __next__(self) -> EventStreamMessage:
        """The next complete message; StopIteration when more bytes are needed."""
        message = self.next_message()
        if message is None:
            raise StopIteration
        return message

    def __iter__(self) -> Iterator[EventStreamMessage]:
        """The messages complete so far; stops (without error) when more bytes are needed.

        Bedrock chunk frames take a fast path: a frame whose first 87 bytes (prelude plus the
        fixed chunk header block) were already validated once in this process needs only a CRC over
        its payload, continued from the CRC of those 87 bytes. Everything else, including the first
        chunk frame of each length the process meets, goes through :meth:`_decode_frame`.
        """
        heads = _VALIDATED_CHUNK_HEADS
        head_length = _CHUNK_HEAD_LENGTH
        unpack_u32 = _U32.unpack_from
        crc32 = binascii.crc32
        chunk_headers = _CHUNK_HEADERS
        new, setattr_ = object.__new__, object.__setattr__
        while True:
            buf = self._buf  # re-read both: a join, or a nested next_message(), changes them
            pos = self._pos
            known = heads.get(buf[pos : pos + head_length])
            if known is not None:
                total, head_crc = known
                end = pos + total
                if end <= len(buf):
                    payload = buf[pos + head_length : end - 4]
                    if crc32(payload, head_crc) != unpack_u32(buf, end - 4)[0]:
                        raise self._corrupt("message CRC mismatch")
                    self._pos = end
                    # attrs' documented escape hatch for frozen classes: the object __init__ would
                    # build, for less, on the per-token path.
                    message = new(EventStreamMessage)
                    setattr_(message, "headers", chunk_headers)
                    setattr_(message, "payload", payload)
                    yield message
                    continue
            if self._fed and self._join_if_it_helps():
                continue  # the fast path may apply now
            general = self._decode_frame()
            if general is None:
                return
            yield general

    def _decode_frame(self) -> EventStreamMessage | None:
        """Validate and decode the next frame of any kind; None if it is not all here yet."""
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if available < _PRELUDE_LENGTH:
            return None
        total, headers_length, prelude_crc = _PRELUDE.unpack_from(buf, pos)
        if binascii.crc32(buf[pos : pos + 8]) != prelude_crc:
            raise self._corrupt("prelude CRC mismatch")
        if total > MAX_MESSAGE_LENGTH:
            raise self._corrupt(f"frame of {total} bytes exceeds the limit of {MAX_MESSAGE_LENGTH}")
        if total < _MIN_MESSAGE_LENGTH:
            raise self._corrupt(f"frame length {total} is below the minimum of {_MIN_MESSAGE_LENGTH}")
        if headers_length > MAX_HEADERS_LENGTH:
            raise self._corrupt(f"header block of {headers_length} bytes exceeds the limit of {MAX_HEADERS_LENGTH}")
        if headers_length > total - _MIN_MESSAGE_LENGTH:
            raise self._corrupt(f"header length {headers_length} does not fit frame length {total}")
        if total > available:
            return None
        crc_at = pos + total - 4
        frame = buf[pos:crc_at]
        if binascii.crc32(frame) != _U32.unpack_from(buf, crc_at)[0]:
            raise self._corrupt("message CRC mismatch")
        headers_end = _PRELUDE_LENGTH + headers_length
        headers: Mapping[str, HeaderValue]
        if headers_length == _CHUNK_BLOCK_LENGTH and frame.startswith(_CHUNK_BLOCK, _PRELUDE_LENGTH):
            headers = _CHUNK_HEADERS
            if len(_VALIDATED_CHUNK_HEADS) >= _CHUNK_HEADS_MAX:
                _VALIDATED_CHUNK_HEADS.clear()  # a bound, not an LRU: streams repeat a few hundred lengths
            head = frame[:_CHUNK_HEAD_LENGTH]
            _VALIDATED_CHUNK_HEADS[head] = (total, binascii.crc32(head))
        else:
            try:
                headers = MappingProxyType(_parse_headers(frame[_PRELUDE_LENGTH:headers_end]))
            except EventStreamError as exc:
                raise self._corrupt(str(exc)) from None
        self._pos = crc_at + 4
        return EventStreamMessage(headers, frame[headers_end:])

    def _join_if_it_helps(self) -> bool:
        """Append the fed bytes to the unread ones if that completes the next prelude or frame.

        Joining only when decoding can progress keeps copying linear: a byte is copied into
        ``_fed``, then by a join, and again by at most two later joins (as the unread start of a
        frame) however finely the stream was split. ``_copied`` counts, for the tests.
        """
        fed = self._fed
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        # The length is only a hint here (unvalidated); _decode_frame judges it.
        need = _PRELUDE.unpack_from(buf, pos)[0] if available >= _PRELUDE_LENGTH else _PRELUDE_LENGTH
        if need <= available or available + len(fed) < need:
            return False
        self._buf = b"".join((memoryview(buf)[pos:], fed))
        self._copied += len(self._buf)
        fed.clear()
        self._consumed += pos
        self._pos = 0
        return True

    def close(self) -> None:
        """Declare the end of input: fine between frames, an error anywhere else.

        Raises:
            IncompleteStreamError: the input stopped inside a frame.
            EventStreamError: complete messages were left unread (a caller bug), or are corrupt.
        """
        if not self.pending:
            return
        if self.next_message() is not None:
            raise EventStreamError("close() with unread messages: iterate the decoder before closing")
        raise IncompleteStreamError(
            f"stream ended inside a frame: {self.pending} bytes of a partial frame at stream offset {self._offset()}"
        )

    def _offset(self) -> int:
        return self._consumed + self._pos

    def _corrupt(self, problem: str) -> EventStreamError:
        """The error for the frame at the read offset; the offset helps match it to a capture."""
        return EventStreamError(f"{problem} in the frame at stream offset {self._offset()}")


# --------------------------------------------------------------------------------------------------
# Bedrock chunk payloads

_CHUNK_PREFIX: Final = b'{"bytes":"'  # 10 bytes; the literal lengths below save a len() per token
_CHUNK_SUFFIX: Final = b'"}'
_PADDING_KEY: Final = b'","p":"'  # 7 bytes
_a2b_base64 = binascii.a2b_base64


def _b64decode(data: bytes) -> bytes:
    """Strict base64: a stray character is corruption, not something to skip."""
    return binascii.a2b_base64(data, strict_mode=True)


def decode_chunk_payload(payload: bytes) -> bytes:
    """The model event inside a ``chunk`` payload ``{"bytes": "<base64>"}``; other keys are ignored.

    Bedrock's exact layouts, ``{"bytes":"<b64>"}`` and ``{"bytes":"<b64>","p":"<padding>"}`` with an
    alphanumeric padding, are unwrapped without a JSON parser; anything else (spacing, another key
    order, escapes) takes the general path and gives the same answer.

    Raises:
        EventStreamError: not a JSON object with a base64 string ``bytes``.
    """
    if payload.startswith(_CHUNK_PREFIX) and payload.endswith(_CHUNK_SUFFIX):
        # Strict base64 admits no quote or backslash, so the first quote after the prefix ends the
        # string; success below proves the JSON was exactly one of the two layouts (the padding
        # has no quote, backslash or escape: alphanumerics only). Failure may be another valid
        # layout, hence the general path. (Method calls, not slices: no copies on the per-token path.)
        end = payload.find(b'"', 10)
        tail = len(payload) - end
        if tail == 2 or (payload.startswith(_PADDING_KEY, end) and (tail == 9 or payload[end + 7 : -2].isalnum())):
            try:
                return _a2b_base64(payload[10:end], strict_mode=True)
            except binascii.Error:
                pass
    try:
        document = json.loads(payload)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise EventStreamError(f"chunk payload is not JSON: {exc}") from None
    encoded = document.get("bytes") if isinstance(document, dict) else None
    if not isinstance(encoded, str):
        raise EventStreamError('chunk payload has no "bytes" string')
    try:
        return _b64decode(encoded.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        raise EventStreamError('chunk payload "bytes" is not valid base64') from None
