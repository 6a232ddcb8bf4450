"""A lean HTTP/1.1 transport: a keep-alive pool of ``asyncio.Protocol`` connections, httptools parsing.

Why our own: per request, aiohttp's ``ClientSession`` is most of the aiohttp floor's CPU (the
benchmarks' ``cpu_ab.py`` measures it), and a bare protocol feeding llhttp (Node's C parser, through
``httptools``, as uvicorn uses it) costs a fraction of that. What this module adds to the bare
protocol is what a client needs to survive real and hostile servers, and no more:

- **Pool**: one per origin (the client has one endpoint per transport), at most ``max_connections``
  connections, idle ones reused last-in first-out (within ``KEEPALIVE_EXPIRY`` seconds); a request
  that finds no free slot waits at most the ``pool`` timeout (``httpx.PoolTimeout``). A connection
  goes back only after a complete response the server will keep alive; anything else (cancelled,
  failed, a stream closed early, ``Connection: close``, a body delimited by EOF, bytes the server sent
  unasked) closes it. An idle connection that receives anything or is closed by the server is
  dropped, never handed out.
- **Timeouts** as httpx's: ``connect`` (TCP and TLS), ``write`` (a write the kernel stopped taking),
  ``read`` (each wait for bytes: one ``call_at`` timer per connection, re-armed lazily when it fires
  early because data pushed the deadline on),
  ``pool``. Errors are httpx's classes; their messages never quote a header (headers hold the
  signature and the session token).
- **Hostile servers**: the response head (status line and headers, 1xx responses included) is capped
  in bytes and in header count; ``max_body`` refuses a Content-Length past it before reading any of
  the body, and counts the bytes of any other; malformed, cut-short and upgraded responses are
  ``httpx.RemoteProtocolError``. A streamed body stops reading from the socket while more than
  ``_HIGH_WATER`` bytes wait unread, so a slow consumer holds bounded memory.

No proxies (the client picks aiohttp's transport when one applies), asyncio only, HTTP/1.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx

from .._errors import ResponseTooLargeError
from .cache import BoundedCache

__all__ = ["HttptoolsTransport"]

#: The most bytes of response head (status lines and headers of the final and any 1xx responses).
MAX_HEAD_BYTES = 64 * 1024
#: The most header fields one response head may have.
MAX_HEADERS = 256
#: Seconds an idle connection may wait in the pool before it is closed rather than reused (aiohttp's
#: default): a middlebox may have dropped it without a word, and a request sent on it would only learn
#: that from its read timeout.
KEEPALIVE_EXPIRY = 15.0
#: A streamed body pauses reading from the socket above this many unread bytes (the reader takes all
#: that is buffered at once, and reading resumes then).
_HIGH_WATER = 64 * 1024
#: Request bodies above this are written as two buffers instead of being concatenated with the head.
_COPY_LIMIT = 64 * 1024


class _Stop(Exception):
    """Raised from a parser callback to stop llhttp; the reason is already recorded on the connection."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the parser's callbacks fill in the current response."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_deadline",
        "_loop",
        "_max_body",
        "_paused",
        "_pool",
        "_read_timeout",
        "_received",
        "_stream",
        "_timer",
        "_waiter",
        "_waiting",
        "broken",
        "busy",
        "complete",
        "counted",
        "error",
        "head_bytes",
        "head_done",
        "header_bytes",
        "header_count",
        "headers",
        "idle_since",
        "informational",
        "keep_alive",
        "parser",
        "status",
        "transport",
        "write_paused",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: _Pool) -> None:
        self._loop = loop
        self._pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        #: Checked out by a request (or its unfinished stream).
        self.busy = True
        #: Must not serve another request: failed, closed, not keep-alive, or sent bytes unasked.
        self.broken = False
        #: Holds a slot of the pool until connection_lost (or a failed connect) gives it back.
        self.counted = True
        self.write_paused = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._waiting = False
        self._reset(False, None, None)

    def _reset(self, stream: bool, max_body: int | None, read_timeout: float | None) -> None:
        """Start a new exchange on this connection."""
        self._stream = stream
        self._max_body = max_body
        self._read_timeout = read_timeout
        self._received = 0
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_count = 0
        self.header_bytes = 0
        self.head_bytes = 0
        self.head_done = False
        self.informational = False
        self.complete = False
        self.keep_alive = False
        self.error: BaseException | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.complete or self.error is not None:
            self._unsolicited()
            return
        if self._waiting and self._read_timeout is not None:
            self._deadline = self._loop.time() + self._read_timeout
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.complete:  # bytes after the response: the response stands, the connection goes
                self._unsolicited()
            elif self.error is None:  # llhttp's reasons are fixed phrases, never the offending bytes
                reason = "the server switched protocols" if isinstance(exc, httptools.HttpParserUpgrade) else exc
                self.fail(httpx.RemoteProtocolError(f"malformed HTTP response: {reason}"))
            return
        if not self.head_done:
            self.head_bytes += len(data)
            if self.head_bytes > MAX_HEAD_BYTES:
                self.fail(httpx.RemoteProtocolError(f"the response head is longer than {MAX_HEAD_BYTES} bytes"))

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        self.broken = True
        if self.busy and not self.complete and self.error is None:
            if self.head_done and self._delimited_by_eof():
                self.complete = True  # the body ran to EOF, as announced (httptools has no finish())
                self._wake()
            else:
                self.error = httpx.RemoteProtocolError("the server closed the connection before the response ended")
        self._wake()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._pool.lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            self.broken = True  # a second response nobody asked for
            raise _Stop
        self.headers = []
        self.informational = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        self.header_bytes += len(name) + len(value)
        if self.header_count > MAX_HEADERS:
            self.fail(httpx.RemoteProtocolError(f"the response has more than {MAX_HEADERS} header fields"))
            raise _Stop
        if self.header_bytes > MAX_HEAD_BYTES:  # a head that arrived whole in one read (see data_received)
            self.fail(httpx.RemoteProtocolError(f"the response head is longer than {MAX_HEAD_BYTES} bytes"))
            raise _Stop
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: skipped (101 stops llhttp with an upgrade)
            self.informational = True
            return
        self.status = status
        self.head_done = True
        limit = self._max_body
        if limit is not None:
            length = _content_length(self.headers)
            if length is not None and length > limit:
                self.fail(ResponseTooLargeError.past(status=status, limit=limit))
                raise _Stop
        if self._stream:
            self._wake()

    def on_body(self, body: bytes) -> None:
        limit = self._max_body
        if limit is not None:
            self._received += len(body)
            if self._received > limit:
                self.fail(ResponseTooLargeError.past(status=self.status, limit=limit))
                raise _Stop
        self._chunks.append(body)
        if self._stream:
            self._buffered += len(body)
            if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            if self._waiting:
                self._wake()

    def on_message_complete(self) -> None:
        if self.informational:  # its head counts towards the caps of the final one
            self.informational = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._wake()

    # -- used by the pool and the streams -----------------------------------------------------------

    def _delimited_by_eof(self) -> bool:
        """The body has neither a length nor chunked coding: it ends where the connection does."""
        if self.status in (204, 304):
            return False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    def _unsolicited(self) -> None:
        """The server sent bytes (or more of them) outside an exchange: never reuse this connection."""
        self.broken = True
        if not self.busy and self.transport is not None:
            self.transport.abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        """Record why the exchange failed (the first reason wins), drop the connection, wake the waiter."""
        if self.error is None and not self.complete:
            self.error = error
        self.broken = True
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _on_timer(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._on_timer)
            return
        self.fail(httpx.ReadTimeout("timed out waiting for the server to send data"))

    async def wait(self, ready_head: bool) -> None:
        """Wait until the head (``ready_head``) or the whole response is in, or the exchange failed.

        Every wait is bounded by the read timeout; bytes arriving push the deadline forward.
        """
        while self.error is None and not (self.head_done if ready_head else self.complete):
            await self._wait_for_bytes()
        error = self.error
        if error is not None:
            raise error

    async def _wait_for_bytes(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        timeout = self._read_timeout
        if timeout is not None:
            deadline = self._deadline = self._loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:  # one timer, pushed forward lazily (see _on_timer)
                if timer is not None:
                    timer.cancel()
                self._timer = self._loop.call_at(deadline, self._on_timer)
        self._waiting = True
        try:
            await waiter
        finally:
            self._waiting = False

    async def drain(self, seconds: float | None) -> None:
        """Wait while the kernel takes no more of the request (bounded by the write timeout)."""
        try:
            async with asyncio.timeout(seconds):
                while self.write_paused and self.error is None and not self.complete:
                    self._waiter = self._loop.create_future()
                    await self._waiter
        except TimeoutError:
            self.fail(httpx.WriteTimeout("timed out writing the request"))
        if self.error is not None:
            raise self.error

    def take_body(self) -> bytes:
        """The whole buffered body (a non-streamed response)."""
        chunks = self._chunks
        self._chunks = []
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def take_chunk(self) -> bytes | None:
        """What the stream has buffered, as one piece (None when nothing is); resumes a paused socket."""
        chunks = self._chunks
        if not chunks:
            return None
        self._chunks = []
        self._buffered = 0
        if self._paused and self.transport is not None and not self.broken:
            self._paused = False
            self.transport.resume_reading()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        """Drop the connection: no longer checked out, and never reused."""
        self.broken = True
        self.busy = False
        self._waiting = False
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if self.transport is not None:
            self.transport.abort()


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if len(name) == 14 and name.lower() == b"content-length":
            return int(value)  # llhttp has checked that it is a number
    return None


class _Pool:
    """The connections to one origin: idle ones (LIFO), a slot count, and who waits for a slot."""

    #: What a new connection is (tests substitute a subclass that reports its stages).
    connection_class: type[_Connection] = _Connection

    __slots__ = (
        "closed",
        "conns",
        "count",
        "host",
        "idle",
        "limit",
        "on_empty",
        "port",
        "server_hostname",
        "ssl",
        "waiters",
    )

    def __init__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None, server_hostname: str | None, limit: int
    ) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.server_hostname = server_hostname
        self.limit = limit
        self.idle: list[_Connection] = []
        self.conns: set[_Connection] = set()
        self.count = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        self.on_empty: asyncio.Future[None] | None = None

    async def acquire(self, timeouts: Mapping[str, Any]) -> _Connection:
        """An idle connection if one is sound, else a new one within the limit, else wait for a slot."""
        while True:
            if self.closed:
                raise httpx.ConnectError("the transport is closed")
            idle = self.idle
            while idle:
                conn = idle.pop()
                if not conn.broken and conn._loop.time() - conn.idle_since < KEEPALIVE_EXPIRY:
                    conn.busy = True
                    return conn
                conn.close()
            if self.count < self.limit:
                return await self._connect(timeouts.get("connect"))
            await self._wait_for_slot(timeouts.get("pool"))

    async def _connect(self, seconds: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = self.connection_class(loop, self)
        self.count += 1
        self.conns.add(conn)
        try:
            async with asyncio.timeout(seconds):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, ssl=self.ssl, server_hostname=self.server_hostname
                )
        except TimeoutError:
            error: httpx.TransportError = httpx.ConnectTimeout("timed out connecting to the server")
        except (OSError, ssl.SSLError) as exc:
            error = httpx.ConnectError(str(exc) or type(exc).__name__)
        except BaseException:
            conn.close()
            self.lost(conn)
            raise
        else:
            return conn
        conn.close()
        self.lost(conn)
        raise error

    async def _wait_for_slot(self, seconds: float | None) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            error = httpx.PoolTimeout("timed out waiting for a connection from the pool")
        except BaseException:
            self._leave(waiter)
            raise
        else:
            return
        self._leave(waiter)
        raise error

    def _leave(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gives up: out of the queue, and a wake-up it was given passes to the next one."""
        if waiter.done() and not waiter.cancelled():
            self.wake()
        else:
            with contextlib.suppress(ValueError):
                self.waiters.remove(waiter)

    def wake(self) -> None:
        """A slot or an idle connection is free: the longest waiter tries again."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def release(self, conn: _Connection) -> None:
        """After an exchange: back to the idle list if sound and kept alive, else closed."""
        if conn.keep_alive and conn.complete and not conn.broken and not self.closed:
            conn.busy = False
            conn._chunks = []
            conn.headers = []
            conn.idle_since = conn._loop.time()
            self.idle.append(conn)
            if self.waiters:
                self.wake()
        else:
            conn.close()

    def lost(self, conn: _Connection) -> None:
        """The connection is gone: its slot is free (once)."""
        if conn.counted:
            conn.counted = False
            self.count -= 1
            self.conns.discard(conn)
            if self.waiters:
                self.wake()
            if self.count == 0 and self.on_empty is not None and not self.on_empty.done():
                self.on_empty.set_result(None)

    async def aclose(self) -> None:
        self.closed = True
        for conn in list(self.conns):
            if conn.busy:
                conn.fail(httpx.ReadError("the transport was closed"))
            conn.close()
        self.idle.clear()
        while self.waiters:
            self.wake()
        if self.count:
            self.on_empty = asyncio.get_running_loop().create_future()
            # Each abort has connection_lost follow on the next loop turn; the bound is for a loop gone wrong.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.on_empty


class _ResponseStream(httpx.AsyncByteStream):
    """A streamed body; its own async iterator (no generator frame per chunk). ``aclose`` releases or drops."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, conn: _Connection, pool: _Pool) -> None:
        self._conn: _Connection | None = conn
        self._pool = pool

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        chunk = conn.take_chunk()
        while chunk is None:
            if conn.error is not None:
                error = conn.error
                self._conn = None
                conn.close()
                raise error
            if conn.complete:
                self._conn = None
                self._pool.release(conn)
                raise StopAsyncIteration
            try:
                await conn._wait_for_bytes()
            except BaseException:
                self._conn = None
                conn.close()
                raise
            chunk = conn.take_chunk()
        return chunk

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            if conn.complete and conn.error is None:
                self._pool.release(conn)  # the whole response is in: the connection is clean
            else:
                conn.close()  # abandoned mid-body


def _encode_head(method: bytes, target: bytes, text: str, lines: int) -> bytes:
    """The request head; a header holding CR, LF or NUL would split the request, so it is refused."""
    if text.count("\n") != lines or text.count("\r") != lines or "\0" in text:
        raise httpx.LocalProtocolError("a header name or value holds CR, LF or NUL (not shown: it may be a secret)")
    try:
        encoded = text.encode("latin-1")
    except UnicodeEncodeError:
        raise httpx.LocalProtocolError("a header is not latin-1 text (not shown: it may be a secret)") from None
    return method + b" " + target + b" HTTP/1.1\r\n" + encoded + b"\r\n"


class HttptoolsTransport(httpx.AsyncBaseTransport):
    """Sends requests over a pool of asyncio connections per origin, parsing responses with httptools."""

    #: Every wait for response bytes is bounded by the request's read timeout.
    enforces_read_timeouts = True
    #: The pool per origin (tests substitute a subclass that reports its stages).
    pool_class: type[_Pool] = _Pool

    def __init__(
        self,
        *,
        max_connections: int = 100,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self._max_connections = max_connections
        self._ssl = ssl_context  # made on the first https request (loading the CA bundle costs start-up time)
        self._server_hostname = server_hostname
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._routes: BoundedCache[str, tuple[_Pool, bytes]] = BoundedCache(self._route)
        self._closed = False

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context https connections use: the one given, else httpx's (verifying), made on first use."""
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    @property
    def checked_out(self) -> int:
        """Connections in use by a request or an unfinished stream (tests check that none leak)."""
        return sum(1 for pool in self._pools.values() for conn in pool.conns if conn.busy)

    @property
    def idle(self) -> int:
        """Connections waiting in the pool for the next request."""
        return sum(len(pool.idle) for pool in self._pools.values())

    def _pool(self, scheme: str, host: str, port: int | None) -> _Pool:
        if self._closed:
            raise httpx.ConnectError("the transport is closed")
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        port = port if port is not None else (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        pool = self._pools.get(key)
        if pool is None:
            context = None
            if scheme == "https":
                context = self.ssl_context
            hostname = (self._server_hostname or host) if context is not None else None
            pool = self._pools[key] = self.pool_class(host, port, context, hostname, self._max_connections)
        return pool

    def _route(self, url: str) -> tuple[_Pool, bytes]:
        parts = urlsplit(url)
        if parts.hostname is None:
            raise httpx.UnsupportedProtocol("the URL has no host")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return self._pool(parts.scheme, parts.hostname, parts.port), target.encode("ascii")

    async def post_and_read(
        self,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        timeouts: Mapping[str, Any],
        max_body: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """POST and read the whole answer without building httpx objects (the client's hot path).

        ``headers`` are sent exactly as given, so they must carry ``host`` and ``content-length`` (the
        client's signed headers do). Returns the status, the headers with lower-case names, and the
        body; a body longer than ``max_body`` raises :class:`ResponseTooLargeError`.
        """
        pool, target = self._routes[url]
        head = _encode_head(b"POST", target, "".join([f"{name}: {value}\r\n" for name, value in headers]), len(headers))
        conn = await self._exchange(pool, head, body, timeouts, stream=False, max_body=max_body)
        answer = conn.take_body()
        status, raw = conn.status, conn.headers
        pool.release(conn)
        return status, {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}, answer

    @staticmethod
    async def _exchange(
        pool: _Pool, head: bytes, body: bytes, timeouts: Mapping[str, Any], *, stream: bool, max_body: int | None
    ) -> _Connection:
        """Send a request on a pooled connection; the connection once the response is in (for a stream, its
        head). Any failure or cancellation on the way closes the connection: it is never returned half-used."""
        conn = await pool.acquire(timeouts)
        try:
            conn._reset(stream, max_body, timeouts.get("read"))
            transport = conn.transport
            if transport is None or transport.is_closing():
                raise httpx.WriteError("the connection closed before the request was sent")
            if len(body) > _COPY_LIMIT:
                transport.writelines([head, body])
            else:
                transport.write(head + body)
            if conn.write_paused:
                await conn.drain(timeouts.get("write"))
            if not (conn.head_done if stream else conn.complete):
                await conn.wait(stream)
        except BaseException:
            conn.close()
            raise
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = request.method.encode("ascii")
        if method == b"HEAD":  # llhttp cannot be told that a HEAD response has no body
            raise httpx.UnsupportedProtocol("HEAD requests are not supported by this transport")
        url = request.url
        pool = self._pool(url.scheme, url.host, url.port)
        raw = request.headers.raw
        text = "".join([f"{name.decode('latin-1')}: {value.decode('latin-1')}\r\n" for name, value in raw])
        head = _encode_head(method, url.raw_path, text, len(raw))
        body = await request.aread()
        if request.headers.get("transfer-encoding", "").lower() == "chunked":
            body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        timeouts: Mapping[str, Any] = request.extensions.get("timeout", {})
        conn = await self._exchange(pool, head, body, timeouts, stream=True, max_body=None)
        return httpx.Response(
            status_code=conn.status,
            headers=conn.headers,
            stream=_ResponseStream(conn, pool),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        """Close every connection, idle and checked out (a request still running fails with ReadError)."""
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        self._routes.clear()
        for pool in pools:
            await pool.aclose()
