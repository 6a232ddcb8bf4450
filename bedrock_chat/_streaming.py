"""A streamed response: event-stream frames in, chunks out, one ChatCompletion at the end.

Theory of operation: :class:`ChatCompletionStream` pulls raw bytes from the open HTTP response (each
read bounded by the idle timeout -- enforced by the transport where it can, here otherwise -- so a
half-open socket cannot hang a reader) and feeds them to a sans-IO source: the AWS event-stream
decoder for InvokeModel, the SSE decoder for ``/anthropic/v1/messages``. The model events become
:class:`StreamChunk` values through the :class:`StreamAssembler`; exception frames and ``event: error``
become the same typed errors an HTTP error of that code raises. A failure before the first text
reached the caller is retried by re-sending the request, within the call's one retry budget (nothing
was shown yet, so nothing is duplicated); after that the error propagates carrying ``partial_text``.
It is written as an explicit ``__anext__`` rather than an async generator so that no cancel scope
ever spans a ``yield`` and closing is immediate and deterministic.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import anyio
import httpx

from ._core.caching import warn_if_uncached
from ._core.eventstream import CHUNK_HEADERS, EventStreamDecoder, EventStreamMessage, decode_chunk_payload
from ._core.genai import OUTPUT_CHUNK_TYPES
from ._core.models import Surface
from ._core.protocol import Invocation
from ._core.responses import StreamAssembler, parse_stream_error_event, request_id_from, usage_from_headers
from ._core.sse import SSEDecoder
from ._errors import (
    BedrockError,
    EventStreamError,
    IncompleteStreamError,
    InvalidRequestError,
    RequestTimeoutError,
    from_the_server,
    make_api_error,
)
from ._http.transport import RawResponse, close_response, translate_httpx_error
from ._types import ChatCompletion, StreamChunk

if TYPE_CHECKING:
    from ._telemetry import CallObserver

__all__ = ["ChatCompletionStream", "check_stream_content_type", "deadline_expired"]

_loads = json.loads
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner json.loads ends in, without its three Python frames


def _loads_object(text: str) -> Any:
    """``json.loads(text)`` for the per-token path: the C scanner straight away when the text is exactly one
    value with nothing around it (what Bedrock sends); anything else -- whitespace, trailing data, an
    error -- goes through ``json.loads``, so the answers and the errors are json.loads' own."""
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        value, end = None, -1
    return value if end == len(text) else _loads(text)


#: The media type of a stream on each surface (Bedrock sends it; an HTML error page from a proxy does not).
_STREAM_MEDIA_TYPES = {
    Surface.MESSAGES_ENDPOINT: "text/event-stream",
    Surface.INVOKE: "application/vnd.amazon.eventstream",
}


def deadline_expired(seconds: float) -> RequestTimeoutError:
    """The error of a call whose total deadline passed; never retried, since the budget is spent."""
    error = RequestTimeoutError(f"the call did not finish within its deadline of {seconds:g} s")
    error.retryable = False
    return error


def check_stream_content_type(response: RawResponse, surface: Surface) -> RawResponse:
    """``response``, if its media type is the surface's stream's; otherwise an EventStreamError (not retried).

    Without this, an HTML page on the Messages endpoint reads as an SSE stream with no events: a
    cut-short stream, retried. A response without a Content-Type is let through, and decoded. Used
    as the transport's ``read``, which scrubs the error (it quotes headers) and closes the response.
    """
    expected = _STREAM_MEDIA_TYPES[surface]
    content_type = response.headers.get("content-type")
    if content_type is None or content_type.partition(";")[0].strip().lower() == expected:
        return response
    request_id = request_id_from(response.headers)
    raise EventStreamError(
        f"the response is {content_type[:100]!r}, not a {expected} stream"
        + (f" [request id {request_id}]" if request_id else "")
    )


def _exception_from_frame(message: EventStreamMessage, request_id: str | None) -> BedrockError:
    """An exception/error frame -> the typed error of its code (a mid-stream throttle is a ThrottlingError)."""
    headers = message.headers
    if message.message_type == "exception":
        code = message.exception_type or "UnknownStreamException"
        try:
            body = _loads(message.payload) if message.payload else {}
        except ValueError:
            body = {"message": message.payload.decode("utf-8", "replace")}
        if not isinstance(body, dict):
            body = {}
        text = body.get("message") or body.get("Message")
    else:
        code = str(headers.get(":error-code") or "UnknownStreamError")
        text = headers.get(":error-message")
        body = {}
    return make_api_error(status=200, code=code, message=str(text) if text else None, request_id=request_id, body=body)


class _EventStreamSource:
    """InvokeModelWithResponseStream: AWS event-stream frames whose ``chunk`` payloads wrap the model's events."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = EventStreamDecoder()

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def close(self) -> None:
        self._decoder.close()  # raises IncompleteStreamError if the body ended inside a frame

    def next_event(self, request_id: str | None) -> dict[str, Any] | None:
        while (message := self._decoder.next_message()) is not None:
            # Chunk frames share one headers mapping (the decoder's fast path): no header lookups for them.
            message_type = "event" if message.headers is CHUNK_HEADERS else message.message_type
            if message_type == "event":
                if message.headers is not CHUNK_HEADERS and message.event_type != "chunk":
                    continue  # an event type this client does not know: nothing in it is text
                try:
                    # json on str skips its encoding sniffing: measurably cheaper per token.
                    event = _loads_object(decode_chunk_payload(message.payload).decode())
                except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                    raise EventStreamError("a chunk's model event is not JSON") from None
                if not isinstance(event, dict):
                    raise EventStreamError("a chunk's payload is not a JSON object")
                return event
            if message_type in ("exception", "error"):
                raise _exception_from_frame(message, request_id)
            raise EventStreamError(f"unexpected event-stream message type {message_type!r}")
        return None


class _SSESource:
    """The /anthropic/v1/messages surface: server-sent events whose data is the model's event."""

    __slots__ = ("_decoder",)

    def __init__(self) -> None:
        self._decoder = SSEDecoder()

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def close(self) -> None:
        self._decoder.close()

    def next_event(self, request_id: str | None) -> dict[str, Any] | None:
        while (sse := self._decoder.next_event()) is not None:
            if sse.event == "ping":
                continue
            try:
                event = _loads_object(sse.data)
            except ValueError:
                raise EventStreamError(f"the data of a {sse.event!r} event is not JSON") from None
            if not isinstance(event, dict):
                raise EventStreamError(f"the data of a {sse.event!r} event is not a JSON object")
            if sse.event == "error" or event.get("type") == "error":
                raise parse_stream_error_event(event, request_id)
            return event
        return None


class ChatCompletionStream:
    """The response stream of ``create(..., stream=True)``.

    Use it as ``async with stream: async for chunk in stream: ...``; ``stream.completion`` is the
    final :class:`ChatCompletion` once the loop ended. Leaving the ``async with`` block early closes
    the HTTP response at once; iterating it after that (or after :meth:`aclose`) raises
    :class:`InvalidRequestError`, whatever was still buffered.
    """

    def __init__(
        self,
        *,
        invocation: Invocation,
        response: RawResponse,
        reopen: Callable[[], Awaitable[RawResponse]],
        retry_after: Callable[[BedrockError], Awaitable[bool]],
        idle_timeout: float | None,
        started: float,
        deadline_at: float | None = None,
        deadline: float | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._invocation = invocation
        #: The call's span and metrics (None: telemetry is off, and nothing here costs more than this check).
        self._observer = observer
        #: When the call's deadline passes (``anyio.current_time()``), and its length in seconds.
        self._deadline_at = deadline_at
        self._deadline = deadline
        self._reopen = reopen
        self._retry_after = retry_after
        self._idle_timeout = idle_timeout
        self._started = started
        self._completion: ChatCompletion | None = None
        self._closed = False
        self._released = False  # closed by the caller: iterating further is a mistake, said so
        self._text_handed_out = False
        self._attach(response)
        if observer is not None:
            observer.watch(self)  # a stream dropped unclosed still ends its span

    def _attach(self, response: RawResponse) -> None:
        self._response = response
        self.headers = response.headers
        self.request_id = request_id_from(response.headers)
        http = response.response
        assert http is not None, "a stream is sent through the httpx transport interface"
        self._http = http
        self._raw = cast(AsyncIterator[bytes], http.stream.__aiter__())  # type: ignore[union-attr]
        self._source = _SSESource() if self._invocation.surface is Surface.MESSAGES_ENDPOINT else _EventStreamSource()
        self._assembler = StreamAssembler(self._invocation)
        self._eof = False

    # -- public surface -----------------------------------------------------------------------

    @property
    def completion(self) -> ChatCompletion:
        """The final result; available once the stream has been read to its end."""
        if self._completion is None:
            raise InvalidRequestError("completion", "the stream has not been read to its end yet")
        return self._completion

    @property
    def text(self) -> str:
        """All text received so far."""
        return self._assembler.text

    async def final_completion(self) -> ChatCompletion:
        """Read whatever is left of the stream and return the final result."""
        async for _ in self:
            pass
        return self.completion

    @property
    def text_stream(self) -> AsyncIterator[str]:
        """The text pieces only (events without text are skipped)."""
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        async for chunk in self:
            if chunk.text:
                yield chunk.text

    async def aclose(self) -> None:
        """Close the HTTP response (idempotent); the connection goes back to the pool or is dropped."""
        self._released = True
        if self._observer is not None:
            self._observer.closed()
        if not self._closed:
            self._closed = True
            await close_response(self._http)

    async def __aenter__(self) -> ChatCompletionStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> ChatCompletionStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._released:
            raise InvalidRequestError(
                "stream", "is closed (its async with block was left, or aclose() called); read it inside the block"
            )
        if self._deadline_at is None:  # _next_or_recover inlined: a coroutine fewer per token
            while True:
                try:
                    return await self._next_chunk()
                except BedrockError as failure:
                    await self._recover_or_raise(failure)
        # One cancel scope per step, never across a yield: each step gets what is left of the deadline.
        with anyio.CancelScope(deadline=self._deadline_at):
            return await self._next_or_recover()
        await close_response(self._http)
        self._closed = True
        error = deadline_expired(self._deadline or 0.0)
        error.partial_text = self._assembler.text
        if self._observer is not None:
            self._observer.fail(error)
        raise error

    async def _next_or_recover(self) -> StreamChunk:
        while True:
            try:
                return await self._next_chunk()
            except BedrockError as error:
                await self._recover_or_raise(error)

    # -- internals -----------------------------------------------------------------------------

    async def _next_chunk(self) -> StreamChunk:
        while True:
            event = self._source.next_event(self.request_id)
            if event is not None:
                chunk = self._assembler.feed(event)
                if chunk.text:
                    self._text_handed_out = True
                if self._observer is not None and chunk.type in OUTPUT_CHUNK_TYPES:
                    self._observer.chunk()
                return chunk
            if self._eof or self._closed:
                raise StopAsyncIteration
            try:  # the transport bounds each read itself, or a coroutine of ours bounds it (one fewer per token)
                data = await (self._raw.__anext__() if self._idle_timeout is None else self._read_within_idle_timeout())
            except StopAsyncIteration:
                data = b""
            except httpx.HTTPError as exc:
                raise translate_httpx_error(exc) from exc
            if data:
                self._source.feed(data)
            else:
                # The body is over: give the connection back now, not when the caller closes the stream
                # (aiohttp would on its own; httpcore's pools wait for the response to be closed).
                await close_response(self._http)
                self._finish()

    async def _read_within_idle_timeout(self) -> bytes:
        """The next bytes, for a transport that does not bound its reads itself (``stream_idle_timeout``); the
        caller maps the end of the body and httpx's errors, as for the others."""
        assert self._idle_timeout is not None
        try:
            with anyio.fail_after(self._idle_timeout):
                return await self._raw.__anext__()
        except TimeoutError:
            raise RequestTimeoutError(
                f"no data on the response stream for {self._idle_timeout} s (stream idle timeout)"
            ) from None

    def _finish(self) -> None:
        self._eof = True
        self._source.close()  # raises IncompleteStreamError if the body ended inside a frame or event
        self._completion = self._assembler.completion(
            request_id=self.request_id,
            latency=time.monotonic() - self._started,
            header_usage=usage_from_headers(self.headers),
        )
        plan = self._assembler.invocation.cache
        if plan is not None:
            warn_if_uncached(plan, self._completion.usage, self._assembler.invocation.model.display_name, stacklevel=4)
        if self._observer is not None:
            self._observer.succeed(self._completion)

    async def _recover_or_raise(self, error: BedrockError) -> None:
        """Retry a stream that failed before any text was handed out; otherwise propagate, keeping the text.

        The error comes from what the server sent: it is scrubbed of the request's credentials, and it
        propagates without the decoder's frames, whose locals hold the server's bytes (an echo, maybe).
        """
        from_the_server(error, self._response.scrubber)
        await close_response(self._http)
        retryable = getattr(error, "retryable", False) or isinstance(error, IncompleteStreamError)
        if self._text_handed_out or not retryable or self._closed or not await self._retry_after(error):
            error.partial_text = self._assembler.text
            self._closed = True
            if self._observer is not None:
                self._observer.fail(error)
            raise error
        try:
            self._attach(await self._reopen())
        except BaseException as failure:
            self._closed = True
            if self._observer is not None:
                self._observer.fail(failure)
            raise
