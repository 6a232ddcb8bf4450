"""An ``httpx.AsyncBaseTransport`` over httpcore2's connection pool: the default under trio.

Why not httpx's own ``AsyncHTTPTransport`` (over httpcore 1.0.9): two bugs that cancellation finds.
A request cancelled between being assigned a new connection and starting to connect leaves that
connection CONNECTING in the pool forever (encode/httpcore#1093), so a busy service runs out of
slots and every later call ends in ``PoolTimeout``; and a response closed before its end leaves
httpcore's nested body generators suspended, which trio reports as ``ResourceWarning``. httpcore2
(the same authors' successor, which the ``anthropic`` SDK also runs on) drops such connections from
the pool and closes its generators with ``aclosing``. What is left for us is the small mapping
httpx's transport does: requests in, responses out, httpcore's errors as httpx's, and a body
iterator that is a plain object (no generator of ours to leave suspended) and closes the one it
drives.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any, cast

import httpcore2
import httpx

from .._core.proxy import Proxy
from .._errors import ResponseTooLargeError
from .bodies import collect_capped
from .cache import BoundedCache

__all__ = ["HttpcoreTransport"]

#: httpcore2's exceptions -> httpx's, most specific first (the mapping httpx's own transport applies).
_ERROR_MAP: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx.ReadTimeout),
    (httpcore2.WriteTimeout, httpx.WriteTimeout),
    (httpcore2.PoolTimeout, httpx.PoolTimeout),
    (httpcore2.TimeoutException, httpx.TimeoutException),
    (httpcore2.ConnectError, httpx.ConnectError),
    (httpcore2.ReadError, httpx.ReadError),
    (httpcore2.WriteError, httpx.WriteError),
    (httpcore2.NetworkError, httpx.NetworkError),
    (httpcore2.ProxyError, httpx.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore2.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore2.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore2.ProtocolError, httpx.ProtocolError),
)
_ERRORS = tuple(core for core, _ in _ERROR_MAP)


def _map_error(exc: Exception) -> httpx.TransportError:
    for core, mapped in _ERROR_MAP:
        if isinstance(exc, core):
            return mapped(str(exc) or type(exc).__name__)
    raise AssertionError(f"unmapped httpcore2 error {type(exc).__name__}")  # pragma: no cover


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:  # h11 refuses such a response before we see it; be safe regardless
                return None
    return None


async def _read_capped(response: httpcore2.Response, limit: int) -> bytes:
    """The whole body, or ResponseTooLargeError having taken at most ``limit`` bytes and one read of it.

    A Content-Length within the cap is read as usual (h11 reads exactly that many bytes); one past it
    is refused before any of the body is read.
    """
    length = _content_length(response.headers)
    if length is not None:
        if length > limit:
            raise ResponseTooLargeError.past(status=response.status, limit=limit)
        return await response.aread()
    return await collect_capped(response.aiter_stream(), limit, response.status)


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one httpcore2 response, read through one iterator that ``aclose`` also closes."""

    __slots__ = ("_body", "_closed", "_iterator")

    def __init__(self, body: AsyncIterable[bytes]) -> None:
        self._body = body
        self._iterator: AsyncIterator[bytes] | None = None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:  # the connection may already serve another request
            raise httpx.StreamClosed()
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = self._body.__aiter__()
        try:
            return await iterator.__anext__()
        except _ERRORS as exc:
            raise _map_error(exc) from exc

    async def aclose(self) -> None:
        # Closing the generator first unwinds httpcore2's nested ones (each under ``aclosing``); the
        # body's own ``aclose`` then returns the connection to the pool or drops a half-read one.
        self._closed = True
        iterator, self._iterator = self._iterator, None
        try:
            if iterator is not None:
                await cast(Any, iterator).aclose()
        finally:
            await cast(Any, self._body).aclose()


def _core_proxy(proxy: Proxy, context: ssl.SSLContext) -> httpcore2.Proxy:
    """httpcore2's proxy: forwarding for http endpoints, a CONNECT tunnel for https ones."""
    authorization = proxy.authorization
    headers = None if authorization is None else [("Proxy-Authorization", authorization)]
    return httpcore2.Proxy(proxy.url, headers=headers, ssl_context=context if proxy.url.startswith("https:") else None)


class HttpcoreTransport(httpx.AsyncBaseTransport):
    """Sends ``httpx.Request`` objects through one ``httpcore2.AsyncConnectionPool`` (asyncio or trio)."""

    #: httpcore2 bounds every read of a response by the request's read timeout.
    enforces_read_timeouts = True

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        keepalive = max_connections if max_keepalive_connections is None else max_keepalive_connections
        # httpx's context: certifi's bundle, or SSL_CERT_FILE/SSL_CERT_DIR; always verifying.
        context = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        self.pool = httpcore2.AsyncConnectionPool(
            ssl_context=context,
            proxy=None if proxy is None else _core_proxy(proxy, context),
            max_connections=max_connections,
            max_keepalive_connections=keepalive,
            keepalive_expiry=keepalive_expiry,
        )
        self._urls: BoundedCache[str, httpcore2.URL] = BoundedCache(self._core_url)
        #: Through a proxy, an http request is sent in absolute form; we give that form ourselves, because
        #: httpcore2 would write an IPv6 host without its brackets.
        self._forwarding = proxy is not None

    def _core_url(self, url: str) -> httpcore2.URL:
        parsed = httpcore2.URL(url)  # splits the text; %3A stays as it was signed
        if self._forwarding and parsed.scheme == b"http":
            return httpcore2.URL(scheme=b"http", host=parsed.host, port=parsed.port, target=url.encode("ascii"))
        return parsed

    async def post_and_read(
        self,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        timeouts: Mapping[str, Any],
        extensions: Mapping[str, Any] | None = None,
        max_body: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """POST and read the whole answer without building httpx objects (the client's hot path).

        ``headers`` must carry ``host`` and ``content-length`` (the client's signed headers do);
        ``extensions`` are httpcore2's request extensions besides the timeouts (``trace``, say). A body
        longer than ``max_body`` raises :class:`ResponseTooLargeError` (and drops the connection).
        """
        options = {"timeout": timeouts} if extensions is None else {**extensions, "timeout": timeouts}
        request = httpcore2.Request(b"POST", self._urls[url], headers=headers, content=body, extensions=options)
        try:
            response = await self.pool.handle_async_request(request)
            try:
                answer = await response.aread() if max_body is None else await _read_capped(response, max_body)
            finally:
                await response.aclose()
        except _ERRORS as exc:
            raise _map_error(exc) from exc
        lowered = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in response.headers}
        return response.status, lowered, answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        core_request = httpcore2.Request(
            request.method.encode("ascii"),
            httpcore2.URL(
                scheme=url.raw_scheme,
                host=url.raw_host,
                port=url.port,
                target=str(url).encode("ascii") if self._forwarding and url.scheme == "http" else url.raw_path,
            ),
            headers=request.headers.raw,
            content=cast(AsyncIterable[bytes], request.stream),
            extensions=request.extensions,
        )
        try:
            response = await self.pool.handle_async_request(core_request)
        except _ERRORS as exc:
            raise _map_error(exc) from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(cast(AsyncIterable[bytes], response.stream)),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.pool.aclose()
