"""The server-sent events (``text/event-stream``) codec: bytes in, events out.

Theory of operation
-------------------
The ``/anthropic/v1/messages`` surface streams WHATWG server-sent events: UTF-8 text in lines that
end in CRLF, LF or a lone CR; a line is ``field: value`` (one space after the colon is dropped, a
line without a colon is a field with an empty value) or a ``:comment``, and a blank line dispatches
the event the lines before it built::

    event: content_block_delta
    data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}
    <blank line>

:class:`SSEDecoder` is sans-IO with the shape of
:class:`~bedrock_chat._core.eventstream.EventStreamDecoder`: :meth:`~SSEDecoder.feed` bytes split
anywhere, ask :meth:`~SSEDecoder.next_event` (or iterate) until it answers None ("need more data"),
and call :meth:`~SSEDecoder.close` at end of input, so that a truncated stream is an error rather
than a quiet end.

Buffering. ``feed`` cuts each piece after its last line terminator (two ``rfind`` calls): the
complete lines before the cut, prefixed with the partial line left by earlier pieces, become a
*region*; what follows the cut becomes the new partial line. Regions are parsed in place by offset,
and the partial line is joined exactly once, when its terminator arrives, so every byte is copied at
most four times (into the partial line, into a region, by a join of regions, by one carry, below)
however finely the stream is split: time linear in the stream. Lines are decoded as whole lines, so
a character split between pieces comes out whole; a CR ending one region and an LF starting the
next are one terminator (``_skip_lf``), never two line ends.

Fast path. Every token is one ``content_block_delta`` event, so the common shape has its own path:
in a region without any CR, with no event in progress, the next event ends at the next ``\\n\\n``;
if that block is exactly ``event: X\\ndata: Y``, one ``find``, one decode and two slices make the
event. An event cut off by the end of a region (one per fed piece) is not parsed line by line but
carried over: its few hundred bytes are joined onto the next region, once, so that the fast path
takes it too. Anything else (more lines, comments, ``id``, CRs, invalid UTF-8, a block over the
limits, an event that still does not complete) goes line by line through the general path, the
spec's algorithm with its fields as a table; the fast path only ever declines, so every error is
raised by the general path, at the exact line.

Limits and errors. A line longer than ``max_line_bytes`` or an event whose data exceeds
``max_event_bytes`` is an :class:`EventStreamError` as soon as the buffered bytes prove it, not when
the terminator finally arrives: a hostile stream without newlines costs at most the limit plus one
fed piece. Invalid UTF-8 is an error, not U+FFFD. ``feed`` never raises: errors surface from
``next_event``, after every event before the bad line was returned, so nothing already received is
lost; the bad line stays at the head, so asking again fails again.

Deliberate departures from the browser algorithm: strict UTF-8 (the spec substitutes U+FFFD),
``retry`` reported on the event it came with (there is no reconnecting here), and an input that
ends inside an event raises :class:`IncompleteStreamError` where a browser silently discards it.
``ping`` events are returned like any other: filtering is the client's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import attrs

from .._errors import EventStreamError, IncompleteStreamError, InvalidRequestError

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_LINE_BYTES",
    "SSEDecoder",
    "SSEEvent",
    "encode_event",
]

#: Longest line accepted by default: a whole Messages event (one JSON document) is one line.
DEFAULT_MAX_LINE_BYTES: Final = 1 << 20
#: Largest event data accepted by default, matching the event-stream decoder's frame limit.
DEFAULT_MAX_EVENT_BYTES: Final = 16 << 20

_BOM: Final = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"[\r\n]")
_CR: Final = 13
_LF: Final = 10


@attrs.frozen
class SSEEvent:
    """One dispatched event.

    ``event`` is the ``event:`` field (``"message"`` when absent or empty, as the spec says),
    ``data`` the ``data:`` lines joined with ``"\\n"``, ``id`` the last event id seen so far in the
    stream (it persists across events, per the spec), ``retry`` the ``retry:`` value sent with
    this event, if any.
    """

    event: str
    data: str
    id: str | None = None
    retry: int | None = None


# --------------------------------------------------------------------------------------------------
# Encoding


def encode_event(event: str, data: str) -> bytes:
    """``event: <event>\\ndata: <line>\\n...\\n\\n``, one ``data:`` line per line of ``data``.

    Raises:
        InvalidRequestError: an event name that is empty or holds a line break, or data holding a
            CR, which no decoder could give back unchanged.
    """
    if not event or "\n" in event or "\r" in event:
        raise InvalidRequestError("event", f"{event!r} must be non-empty and hold no CR or LF")
    if "\r" in data:
        raise InvalidRequestError("data", "a CR would read back as a line break; use LF")
    return f"event: {event}\ndata: {data.replace(chr(10), chr(10) + 'data: ')}\n\n".encode()


# --------------------------------------------------------------------------------------------------
# Decoding


def _on_event(decoder: SSEDecoder, value: str, size: int) -> None:
    """Set the event type; the last ``event`` line before the blank line wins."""
    decoder._event = value


def _on_data(decoder: SSEDecoder, value: str, size: int) -> None:
    """Append a data line; the limit is checked before anything changes, so a retry fails alike."""
    lines = decoder._data
    total = size if lines is None else decoder._data_size + 1 + size
    if total > decoder._max_event:
        raise decoder._corrupt(f"event data exceeds the limit of {decoder._max_event} bytes")
    if lines is None:
        decoder._data = [value]
    else:
        lines.append(value)
    decoder._data_size = total


def _on_id(decoder: SSEDecoder, value: str, size: int) -> None:
    """Set the last event id at once (it outlives this event), unless it holds a NUL."""
    if "\0" not in value:
        decoder._last_id = value


def _on_retry(decoder: SSEDecoder, value: str, size: int) -> None:
    """Record a reconnection time for this event, if the value is ASCII digits only."""
    if value.isascii() and value.isdigit():  # str.isdigit alone would take "²" and "٣"
        decoder._retry = int(value)


#: Field name -> handler(decoder, value, value size in bytes). Other fields are ignored.
_FIELDS: Final[Mapping[str, Callable[[SSEDecoder, str, int], None]]] = {
    "event": _on_event,
    "data": _on_data,
    "id": _on_id,
    "retry": _on_retry,
}


class SSEDecoder:
    """Incremental decoder: :meth:`feed` bytes split anywhere, take whole events out.

    ``for event in decoder`` yields the events complete so far and stops when more bytes are
    needed; feed more and iterate again. Errors are :class:`EventStreamError`, raised at the first
    line that cannot be valid; the bad line stays at the head, so asking again fails again.
    """

    __slots__ = (
        "_blank_at",
        "_bom_pending",
        "_buf",
        "_buf_offset",
        "_carry_end",
        "_clean",
        "_copied",
        "_data",
        "_data_size",
        "_event",
        "_event_start",
        "_fast_limit",
        "_fed_total",
        "_last_id",
        "_lf_only",
        "_max_event",
        "_max_line",
        "_pos",
        "_reader",
        "_regions",
        "_retry",
        "_skip_lf",
        "_tail",
    )

    def __init__(
        self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> None:
        """Set the limits; both must be positive.

        Raises:
            InvalidRequestError: a limit below 1.
        """
        if max_line_bytes < 1:
            raise InvalidRequestError("max_line_bytes", f"must be positive, not {max_line_bytes}")
        if max_event_bytes < 1:
            raise InvalidRequestError("max_event_bytes", f"must be positive, not {max_event_bytes}")
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._fast_limit = min(max_line_bytes, max_event_bytes)  # a block this small obeys both
        # Input: the region being parsed (from _pos), whole-line regions queued behind it, and the
        # partial line after the last terminator fed.
        self._buf = b""
        self._pos = 0
        self._regions: list[bytes] = []
        self._tail = bytearray()
        self._buf_offset = 0  # stream offset of _buf[0], for error messages
        self._fed_total = 0  # stream offset of the end of _tail
        self._event_start = 0  # stream offset of the first field line of the event in progress
        self._copied = 0  # bytes copied by joins; the tests check it stays linear in the input
        self._bom_pending = True  # until the first three bytes have been seen
        self._skip_lf = False  # the last line ended in a CR at the end of a region
        self._lf_only = True  # _buf holds no CR: the fast path may apply
        self._carry_end = 0  # _buf[:_carry_end] was carried over from the previous region
        self._blank_at = -1  # where the next "\n\n" at or after _pos is (len(_buf) if none); -1: unknown
        # The event in progress, as the spec's buffers.
        self._clean = True  # no field line since the last blank line
        self._event = ""
        self._data: list[str] | None = None  # None: no data line yet, so nothing to dispatch
        self._data_size = 0  # bytes of data so far, line feeds included
        self._retry: int | None = None
        self._last_id: str | None = None  # persists across events, per the spec
        self._reader: Iterator[SSEEvent] | None = None  # next_event()'s live generator

    @property
    def pending(self) -> int:
        """Bytes received since the last event boundary: the event in progress and anything unparsed."""
        return self._fed_total - self._boundary()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer more of the stream (copied: the caller may reuse its buffer); any split is fine."""
        if not isinstance(data, bytes):
            data = bytes(data)
        if not data:
            return
        self._fed_total += len(data)
        tail = self._tail
        if self._bom_pending:
            if tail:  # a prefix of the BOM, held back by an earlier call
                data = bytes(tail) + data
                tail.clear()
            if len(data) < 3 and _BOM.startswith(data):
                tail += data
                return
            self._bom_pending = False
            if data.startswith(_BOM):
                data = data[3:]
                self._buf_offset = 3
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        if not cut:
            tail += data  # still inside one line: next_event checks its length
            self._copied += len(data)
            return
        if tail:
            region = b"".join((tail, memoryview(data)[:cut]))
            self._copied += len(region)
            tail.clear()
        elif cut == len(data):
            region = data
        else:
            region = data[:cut]
            self._copied += cut
        self._regions.append(region)
        if cut < len(data):
            tail += memoryview(data)[cut:]
            self._copied += len(data) - cut

    def next_event(self) -> SSEEvent | None:
        """The next complete event, or None when more bytes are needed.

        Raises:
            EventStreamError: invalid UTF-8, or a line or event data over the limits (as soon as the
                buffered bytes prove it, before its terminator arrives).
        """
        # Resuming one live generator is much cheaper than starting one per call, and the
        # streaming client calls this once per token. The generator ends when data runs out.
        reader = self._reader or self.__iter__()
        try:
            event = next(reader, None)
        except BaseException:
            self._reader = None  # an ended generator would answer None: let the next call re-raise
            raise
        self._reader = None if event is None else reader
        return event

    def __next__(self) -> SSEEvent:
        """The next complete event; StopIteration when more bytes are needed."""
        event = self.next_event()
        if event is None:
            raise StopIteration
        return event

    def __iter__(self) -> Iterator[SSEEvent]:
        """The events complete so far; stops (without error) when more bytes are needed."""
        search = _LINE_END.search
        fast_limit = self._fast_limit
        fields = _FIELDS
        new, setattr_ = object.__new__, object.__setattr__
        while True:
            buf = self._buf  # re-read both: a new region, or a nested next_event(), changes them
            pos = self._pos
            size = len(buf)
            if pos == size:
                if self._next_region():
                    continue
                self._check_partial_line()
                return
            if self._clean and self._lf_only:
                end = self._blank_at
                if end < pos:
                    end = buf.find(b"\n\n", pos)
                    if end < 0:
                        end = size
                # The fast path, as a loop of its own: one event per "\n\n", as long as the shape holds.
                while end < size and end - pos <= fast_limit:
                    try:
                        text = buf[pos:end].decode()
                    except UnicodeDecodeError:
                        break  # the general path reports it, at the exact line
                    if not text.startswith("event: "):
                        break
                    nl = text.find("\n", 7)
                    if nl < 0 or not text.startswith("data: ", nl + 1) or text.find("\n", nl + 7) >= 0:
                        break
                    # attrs' documented escape hatch for frozen classes: what __init__ would do, for
                    # less, on the per-token path.
                    fast = new(SSEEvent)
                    setattr_(fast, "event", text[7:nl] or "message")
                    setattr_(fast, "data", text[nl + 7 :])
                    setattr_(fast, "id", self._last_id)
                    setattr_(fast, "retry", None)
                    pos = end + 2
                    self._pos = pos
                    yield fast
                    if self._pos != pos or self._buf is not buf:
                        break  # a nested next_event() moved on: start over from where it left off
                    end = buf.find(b"\n\n", pos)
                    if end < 0:
                        end = size
                if self._pos != pos or self._buf is not buf:
                    continue
                self._blank_at = end  # the general path takes this block; don't search for its end again
                if pos == size:
                    continue
                if end == size and pos >= self._carry_end and buf.startswith(b"event: ", pos):
                    # The next event is cut off at the end of this region, as happens at every piece
                    # boundary: rather than parse it line by line, wait for the rest while what is held
                    # of it obeys both limits, then carry it over to the next region (once: a carried
                    # event that still does not complete takes the general path, keeping copying linear).
                    if self._regions:
                        self._next_region()
                        continue
                    if size - pos + len(self._tail) <= fast_limit:
                        return

            # The general path: one line, by the spec.
            found = search(buf, pos)
            assert found is not None, "a region always ends in a line terminator"
            end = found.start()
            after = end + 1
            lone_cr_at_end = False
            if buf[end] == _CR:
                if after < size:
                    after += buf[after] == _LF
                else:
                    lone_cr_at_end = True  # its LF, if any, starts the next region
            if end - pos > self._max_line:
                raise self._corrupt(f"line of {end - pos} bytes exceeds the limit of {self._max_line}")
            try:
                line = buf[pos:end].decode()
            except UnicodeDecodeError as exc:
                raise EventStreamError(
                    f"invalid UTF-8 ({exc.reason}) at stream offset {self._buf_offset + pos + exc.start}"
                ) from None
            event: SSEEvent | None = None
            if not line:
                event = self._dispatch()
            elif line[0] != ":":  # a comment changes nothing
                name, _, value = line.partition(":")
                if value[:1] == " ":
                    value = value[1:]
                handler = fields.get(name)
                if handler is not None:
                    # The prefix before a known field's value is ASCII: chars and bytes agree.
                    handler(self, value, end - pos - (len(line) - len(value)))
                if self._clean:
                    self._clean = False
                    self._event_start = self._buf_offset + pos
            self._pos = after
            self._skip_lf = lone_cr_at_end
            if event is not None:
                yield event

    def _dispatch(self) -> SSEEvent | None:
        """At a blank line: the event built so far (None if it has no data line), then a fresh start."""
        lines = self._data
        event = None
        if lines is not None:
            event = SSEEvent(self._event or "message", "\n".join(lines), self._last_id, self._retry)
        self._event = ""
        self._data = None
        self._data_size = 0
        self._retry = None
        self._clean = True
        return event

    def _next_region(self) -> bool:
        """Move on to the queued regions, the unparsed rest of this one first; False if there are none."""
        regions = self._regions
        if not regions:
            return False
        rest = len(self._buf) - self._pos
        self._buf_offset += self._pos
        if rest:
            buf = b"".join((memoryview(self._buf)[self._pos :], *regions))
            self._copied += len(buf)
        elif len(regions) == 1:
            buf = regions[0]
        else:
            buf = b"".join(regions)
            self._copied += len(buf)
        regions.clear()
        pos = 0
        if self._skip_lf:  # only set once a region was read to its end, so rest is 0
            self._skip_lf = False
            if buf[0] == _LF:  # the second half of a CRLF split between regions
                pos = 1
        self._buf = buf
        self._pos = pos
        self._carry_end = rest
        self._lf_only = b"\r" not in buf
        self._blank_at = -1
        return True

    def _check_partial_line(self) -> None:
        """With every whole line parsed, fail early if the partial line already breaks a limit."""
        tail = self._tail
        length = len(tail)
        at = self._fed_total - length
        if length > self._max_line:
            raise EventStreamError(
                f"line exceeds the limit of {self._max_line} bytes ({length} so far) at stream offset {at}"
            )
        if length > 5 and tail.startswith(b"data:"):
            value = length - 5 - (tail[5] == 0x20)
            total = value if self._data is None else self._data_size + 1 + value
            if total > self._max_event:
                raise EventStreamError(
                    f"event data exceeds the limit of {self._max_event} bytes in the line at stream offset {at}"
                )

    def close(self) -> None:
        """Declare the end of input: fine after a blank line (or comments after one), an error anywhere else.

        Raises:
            IncompleteStreamError: the input stopped inside a line or an event.
            EventStreamError: complete events were left unread (a caller bug), or are invalid.
        """
        if self.next_event() is not None:
            raise EventStreamError("close() with unread events: iterate the decoder before closing")
        if self.pending:
            raise IncompleteStreamError(
                f"stream ended inside an event: {self.pending} bytes after the last blank line, "
                f"at stream offset {self._boundary()}"
            )

    def _boundary(self) -> int:
        """Stream offset of the last event boundary: where the event in progress began, or the read offset."""
        return self._buf_offset + self._pos if self._clean else self._event_start

    def _corrupt(self, problem: str) -> EventStreamError:
        """The error for the line at the read offset; the offset helps match it to a capture."""
        return EventStreamError(f"{problem} in the line at stream offset {self._buf_offset + self._pos}")
