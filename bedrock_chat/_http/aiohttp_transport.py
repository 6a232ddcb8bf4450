"""An ``httpx.AsyncBaseTransport`` with aiohttp's connection pool and C HTTP parser underneath.

Why not httpx's default transport: httpcore's pool costs several times more CPU per request than
aiohttp's, and the gap grows with concurrency (measured in the performance issue: 252 vs 3,665
requests/s for the bare floors at concurrency 32). Why not the ``httpx-aiohttp`` package: it hands
aiohttp the URL as a string, and yarl then *decodes* ``%3A`` back to ``:`` -- the path on the wire
would no longer be the path that was signed -- and it maps a dropped connection to a connect
timeout. This module is the small part of that idea we need, done for SigV4: the URL is passed
already encoded, errors map to httpx's classes exactly, timeouts come from
``request.extensions["timeout"]`` like httpx's own transports, and closing a response before its
end drops the connection instead of returning a half-read one to the pool.

asyncio only (aiohttp has no trio backend); the client picks httpcore2's pool under trio.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
from yarl import URL

from .._core.proxy import Proxy
from .._errors import ResponseTooLargeError
from .cache import BoundedCache

__all__ = ["AiohttpTransport"]


def _map_error(exc: BaseException) -> httpx.TransportError:
    """aiohttp's exceptions -> httpx's, so the client's single translation boundary sees one vocabulary.

    The caller raises the result outside its ``except`` block: aiohttp's response errors hold the
    request's headers (``Authorization``, the session token, ``Proxy-Authorization``) in their
    ``request_info``, so they must not stay reachable as a cause or context. Other errors are the cause.
    """
    mapped = _translate(exc)
    mapped.__cause__ = None if isinstance(exc, aiohttp.ClientResponseError) else exc
    return mapped


def _translate(exc: BaseException) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientHttpProxyError):  # a CONNECT the proxy refused (message without URLs)
        return httpx.ProxyError(f"{exc.status} {exc.message}")
    if isinstance(exc, aiohttp.ClientResponseError):  # its str names the URL and status only
        return httpx.RemoteProtocolError(f"{exc.status} {exc.message}")
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
        return httpx.RemoteProtocolError(message)
    return httpx.ReadError(message)


_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or ResponseTooLargeError having taken at most ``limit + 1`` bytes of it.

    A Content-Length within the cap is read as usual (the parser reads exactly that many bytes, so
    the hot path is unchanged); one past it is refused before any of the body is read.
    """
    length = response.content_length
    if length is not None:
        if length > limit:
            raise ResponseTooLargeError.past(status=response.status, limit=limit)
        return await response.read()
    parts: list[bytes] = []
    total = 0
    content = response.content
    while chunk := await content.read(limit + 1 - total):
        total += len(chunk)
        if total > limit:
            raise ResponseTooLargeError.past(status=response.status, limit=limit)
        parts.append(chunk)
    return b"".join(parts)


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one aiohttp response; ``aclose`` releases (whole body read) or drops the connection."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except _ERRORS as exc:
            error = _map_error(exc)
        else:
            return
        raise error

    async def aclose(self) -> None:
        response = self._response
        if response.content.at_eof():
            response.release()  # read to the end: the connection goes back to the pool
        else:
            response.close()  # abandoned mid-body: the connection cannot be reused


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends ``httpx.Request`` objects through one lazily created ``aiohttp.ClientSession``."""

    #: Every read of a response is bounded by the request's read timeout (aiohttp's ``sock_read``).
    enforces_read_timeouts = True

    def __init__(
        self, *, max_connections: int = 100, ssl_context: ssl.SSLContext | None = None, proxy: Proxy | None = None
    ) -> None:
        self._max_connections = max_connections
        self._ssl = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        #: Every request goes through the proxy (the client chose it for this transport's one endpoint).
        self._proxy_url = URL(proxy.url) if proxy is not None else None
        self._proxy = proxy if proxy is not None and proxy.username is not None else None  # one with credentials
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[Any, Any, Any], aiohttp.ClientTimeout] = {}
        # Keep %3A as sent: it is what was signed.
        self._urls: BoundedCache[str, URL] = BoundedCache(lambda url: URL(url, encoded=True))

    @property
    def connector(self) -> aiohttp.BaseConnector | None:
        """The pool (None before the first request); tests inspect it for checked-out connections."""
        return self._session.connector if self._session is not None else None

    def _get_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._ssl, ttl_dns_cache=300)
            # No automatic headers: the request carries exactly the headers that were signed.
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
            self._session = session
        return session

    def _timeout(self, timeout: Mapping[str, Any]) -> aiohttp.ClientTimeout:
        key = (timeout.get("pool"), timeout.get("connect"), timeout.get("read"))
        cached = self._timeouts.get(key)
        if cached is None:
            cached = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
        return cached

    async def post_and_read(
        self,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        timeouts: Mapping[str, Any],
        max_body: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """POST and read the whole answer without building httpx objects (the client's hot path).

        Returns the status, the headers with lower-case names, and the body. A cancelled or failed
        read drops the connection; a complete one returns it to the pool. A body longer than
        ``max_body`` raises :class:`ResponseTooLargeError` (and drops the connection).
        """
        session = self._get_session()
        try:
            response = await session.request(
                "POST",
                self._urls[url],
                headers=headers if self._proxy is None else self._with_proxy_auth(headers, url.startswith("http:")),
                data=body,
                allow_redirects=False,
                timeout=self._timeout(timeouts),
                proxy=self._proxy_url,
                proxy_headers=self._connect_headers(),
            )
            try:
                answer = await response.read() if max_body is None else await _read_capped(response, max_body)
            except BaseException:
                response.close()
                raise
            response.release()
        except _ERRORS as exc:
            error = _map_error(exc)
        else:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, answer
        raise error

    def _connect_headers(self) -> dict[str, str] | None:
        """The headers of a CONNECT (https endpoints): the proxy's credentials, if it has any."""
        proxy = self._proxy
        return None if proxy is None else {"Proxy-Authorization": proxy.authorization or ""}

    def _with_proxy_auth(self, headers: list[tuple[str, str]], forwarded: bool) -> list[tuple[str, str]]:
        """A forwarded request (http endpoints) carries the proxy's credentials itself."""
        proxy = self._proxy
        if proxy is None or not forwarded:
            return headers
        return [*headers, ("Proxy-Authorization", proxy.authorization or "")]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        client_timeout = self._timeout(request.extensions.get("timeout", {}))
        session = self._get_session()
        try:
            response = await session.request(
                request.method,
                self._urls[str(request.url)],
                headers=self._with_proxy_auth(
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                    request.url.scheme == "http",
                ),
                data=request.content,
                allow_redirects=False,
                timeout=client_timeout,
                proxy=self._proxy_url,
                proxy_headers=self._connect_headers(),
            )
        except _ERRORS as exc:
            error = _map_error(exc)
        else:
            return httpx.Response(
                status_code=response.status,
                headers=response.raw_headers,
                stream=_ResponseStream(response),
                request=request,
                extensions={"http_version": b"HTTP/1.1"},
            )
        raise error

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
