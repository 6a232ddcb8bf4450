"""A real HTTP proxy for tests: forwards absolute-form requests and tunnels CONNECT, on a free loopback port.

It runs in its own thread (so it serves asyncio and trio clients alike) and records what it was asked.
``upstream`` sends every connection to one address whatever host the client named, so a client can
use a real-looking endpoint name (``bedrock.test``) that only the proxy resolves. With ``tls`` set, a
CONNECT tunnel is terminated here with that server context and relayed in plain text -- what an
inspecting corporate proxy does -- so that a client's TLS through the tunnel can be checked against
the emulator behind it. ``credentials`` makes it demand Basic ``Proxy-Authorization`` (407 otherwise);
``connect_status`` makes it answer every CONNECT with that status instead of a tunnel (502, say).
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.from_thread
import attrs
import h11
from anyio.streams.tls import TLSStream

__all__ = ["ForwardProxy", "ProxyRecord", "running_proxy"]

_HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection", b"te", b"upgrade"}
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError, ssl.SSLError)


@attrs.frozen
class ProxyRecord:
    """One request the proxy received: its method, its request target, its Proxy-Authorization value."""

    method: str
    target: str
    authorization: str | None


async def _next_event(conn: h11.Connection, stream: anyio.abc.ByteStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive()
        except _STREAM_ERRORS:
            data = b""
        conn.receive_data(data)


async def _send(conn: h11.Connection, stream: anyio.abc.ByteStream, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        await stream.send(data)


async def _pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream, done: anyio.CancelScope) -> None:
    with suppress(*_STREAM_ERRORS):
        async for chunk in source:
            await sink.send(chunk)
    done.cancel()  # one side ended: the tunnel is over


class ForwardProxy:
    """The proxy's state and connection handler; use :func:`running_proxy` to serve it."""

    def __init__(
        self,
        *,
        upstream: tuple[str, int] | None = None,
        credentials: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        connect_status: int = 200,
    ) -> None:
        self.upstream = upstream
        self.tls = tls
        self.connect_status = connect_status
        self.expected = None
        if credentials is not None:
            pair = f"{credentials[0]}:{credentials[1]}".encode()
            self.expected = b"Basic " + base64.b64encode(pair)
        self.records: list[ProxyRecord] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _route(self, host: str, port: int) -> tuple[str, int]:
        return self.upstream if self.upstream is not None else (host, port)

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        """Serve one client connection: any number of forwarded requests, or one CONNECT tunnel."""
        async with client:
            conn = h11.Connection(h11.SERVER)
            while True:
                try:
                    event = await _next_event(conn, client)
                except h11.RemoteProtocolError:
                    return
                if not isinstance(event, h11.Request):
                    return
                authorization = dict(event.headers).get(b"proxy-authorization")
                self.records.append(
                    ProxyRecord(
                        event.method.decode(),
                        event.target.decode(),
                        authorization.decode() if authorization is not None else None,
                    )
                )
                body = await self._read_body(conn, client)
                if self.expected is not None and authorization != self.expected:
                    await _send(conn, client, h11.Response(status_code=407, headers=_REFUSED))
                    await _send(conn, client, h11.EndOfMessage())
                elif event.method == b"CONNECT" and self.connect_status != 200:  # cannot reach the target, say
                    await _send(conn, client, h11.Response(status_code=self.connect_status, headers=_EMPTY))
                    await _send(conn, client, h11.EndOfMessage())
                elif event.method == b"CONNECT":
                    await self._tunnel(conn, client, event.target.decode())
                    return
                else:
                    await self._forward(conn, client, event, body)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

    @staticmethod
    async def _read_body(conn: h11.Connection, client: anyio.abc.SocketStream) -> bytes:
        chunks = []
        while True:
            event = await _next_event(conn, client)
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            else:
                raise h11.RemoteProtocolError(f"unexpected {event!r} in a request body")

    async def _tunnel(self, conn: h11.Connection, client: anyio.abc.SocketStream, target: str) -> None:
        host, _, port = target.rpartition(":")
        upstream = await anyio.connect_tcp(*self._route(host.strip("[]"), int(port)))
        async with upstream:
            await _send(conn, client, h11.Response(status_code=200, headers=[]))
            near: anyio.abc.ByteStream = client
            if self.tls is not None:
                try:
                    near = await TLSStream.wrap(
                        client, server_side=True, ssl_context=self.tls, standard_compatible=False
                    )
                except _STREAM_ERRORS:
                    return
            async with anyio.create_task_group() as tg:
                tg.start_soon(_pipe, near, upstream, tg.cancel_scope)
                tg.start_soon(_pipe, upstream, near, tg.cancel_scope)

    async def _forward(
        self, conn: h11.Connection, client: anyio.abc.SocketStream, request: h11.Request, body: bytes
    ) -> None:
        parts = urlsplit(request.target.decode())
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [(k, v) for k, v in request.headers if k.lower() not in _HOP_BY_HOP]
        upstream = await anyio.connect_tcp(*self._route(parts.hostname or "", parts.port or 80))
        async with upstream:
            up = h11.Connection(h11.CLIENT)
            await _send(up, upstream, h11.Request(method=request.method, target=target, headers=headers))
            await _send(up, upstream, h11.Data(data=body))
            await _send(up, upstream, h11.EndOfMessage())
            try:
                response = await _next_event(up, upstream)
                if not isinstance(response, h11.Response):
                    return
                kept = [(k, v) for k, v in response.headers if k.lower() not in _HOP_BY_HOP]
                await _send(conn, client, h11.Response(status_code=response.status_code, headers=kept))
                while True:
                    event = await _next_event(up, upstream)
                    if isinstance(event, h11.Data):
                        await _send(conn, client, h11.Data(data=event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        await _send(conn, client, h11.EndOfMessage())
                        return
                    else:
                        return
            except h11.RemoteProtocolError:
                return  # the upstream dropped mid-answer: so does the proxy (the handler closes the client)


_REFUSED = [(b"proxy-authenticate", b'Basic realm="test"'), (b"content-length", b"0")]
_EMPTY = [(b"content-length", b"0")]


@contextmanager
def running_proxy(proxy: ForwardProxy) -> Iterator[ForwardProxy]:
    """Serve ``proxy`` on a free loopback port in a thread until the block ends."""
    with anyio.from_thread.start_blocking_portal() as portal:
        listener = portal.call(lambda: anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0))
        proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        future = portal.start_task_soon(listener.serve, proxy.handle)
        try:
            yield proxy
        finally:
            future.cancel()
            with suppress(BaseException):
                future.result(timeout=10)
            portal.call(listener.aclose)
