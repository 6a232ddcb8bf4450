"""Our httptools transport (the default under asyncio) against real peers: the emulator and raw loopback servers.

The emulator verifies every SigV4 signature, so a request whose path or headers changed on the way
fails there. The raw servers (asyncio servers on port 0, scripted per test) check what the emulator
cannot make happen: how the pool reuses and drops connections, and how each shape of response --
chunked, delimited by EOF, preceded by 1xx, oversized, cut short, followed by bytes nobody asked for --
is read or refused. Every wait is bounded by ``BOUND``; nothing synchronises on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from e2e_helpers import checked_out_connections, emulator_client, self_signed_certificate

from bedrock_chat import AnthropicBedrock, ConfigurationError, ResponseTooLargeError
from bedrock_chat._http.aiohttp_transport import AiohttpTransport
from bedrock_chat._http.httptools_transport import (
    _HIGH_WATER,
    KEEPALIVE_EXPIRY,
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    HttptoolsTransport,
)
from bedrock_chat.emulator import BedrockEmulator

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"  # has a ':' that must arrive as %3A
MESSAGES_MODEL = "anthropic.claude-opus-4-7"
HI = [{"role": "user", "content": "hi"}]
#: Every wait of these tests is bounded by this many seconds.
BOUND = 10.0
TIMEOUTS = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
#: Bytes one socket read may hand the protocol (asyncio's selector transport reads at most this much).
ONE_READ = 256 * 1024

Responder = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


def response(status: str = "200 OK", body: bytes = b"{}", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body


async def read_request(reader: asyncio.StreamReader) -> tuple[list[str], bytes]:
    """One request: its head's lines (request line first) and its ``content-length`` body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[:-2]
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    return lines, await reader.readexactly(length)


class Server:
    """An asyncio server on a free loopback port; ``respond`` runs per connection (they are counted)."""

    def __init__(self, respond: Responder, tls: ssl.SSLContext | None = None) -> None:
        self._respond = respond
        self._tls = tls
        self.connections = 0
        self.requests: list[list[str]] = []
        self.closed_by_client = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/model/m%3A0/invoke"

    async def read(self, reader: asyncio.StreamReader) -> list[str]:
        lines, _ = await read_request(reader)
        self.requests.append(lines)
        return lines

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._respond(reader, writer, self)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._tls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        for task in list(self._tasks):
            task.cancel()
        self._server.close()
        await self._server.wait_closed()


def keep_answering(answer: bytes = response()) -> Responder:
    """A keep-alive server: every request on the connection gets ``answer``."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while True:
            await server.read(reader)
            writer.write(answer)

    return respond


def answer_once(answer: bytes) -> Responder:
    """Read one request, send ``answer`` (bytes as given), then wait for the client to close."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read(reader)
        writer.write(answer)
        await reader.read()
        server.closed_by_client.set()

    return respond


@contextlib.asynccontextmanager
async def serving(respond: Responder, **kwargs: Any) -> AsyncIterator[tuple[Server, HttptoolsTransport]]:
    async with asyncio.timeout(BOUND), Server(respond) as server:
        transport = HttptoolsTransport(**kwargs)
        try:
            yield server, transport
        finally:
            await transport.aclose()


async def post(transport: HttptoolsTransport, server: Server, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    headers = [("host", "127.0.0.1"), ("content-length", "2")]
    return await transport.post_and_read(server.url, headers, b"{}", kwargs.pop("timeouts", TIMEOUTS), **kwargs)


def stream_request(server: Server, timeouts: dict[str, float] = TIMEOUTS) -> httpx.Request:
    return httpx.Request("POST", server.url, content=b"{}", extensions={"timeout": timeouts})


# ------------------------------------------------------------------------------ the client, end to end


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages"])
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_auto_picks_httptools_and_requests_arrive_as_signed(
    bedrock_emulator: BedrockEmulator, surface: str, stream: bool
) -> None:
    """Under asyncio without a proxy, ``auto`` is our pool; the emulator accepts its requests' signatures."""
    model = MODEL if surface == "invoke" else MESSAGES_MODEL
    async with emulator_client(bedrock_emulator) as client:
        for _ in range(3):
            if stream:
                chunks = await client.ChatCompletion.create(model=model, messages=HI, stream=True)
                chat = await chunks.final_completion()
            else:
                chat = await client.ChatCompletion.create(model=model, messages=HI)
            assert chat.completion
        bedrock = await client._ready()
        assert isinstance(bedrock.transport, HttptoolsTransport)
        assert checked_out_connections(client) == 0
        assert bedrock.transport.idle == 1  # three calls, one kept-alive connection
    assert [request.status for request in bedrock_emulator.requests] == [200, 200, 200]
    names = [name for name, _ in bedrock_emulator.requests[0].headers]
    assert sorted(set(names)) == sorted(names)  # nothing twice (host, content-length)
    if surface == "invoke":
        assert bedrock_emulator.requests[0].path.startswith("/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke")


@pytest.mark.asyncio
async def test_a_proxy_keeps_auto_on_aiohttp_and_refuses_httptools() -> None:
    """httptools' pool speaks to the endpoint only: ``auto`` with a proxy is aiohttp; asking for it is refused."""
    with pytest.raises(ConfigurationError, match="http_backend"):
        AnthropicBedrock(region="us-east-1", api_key="k", http_backend="httptools", proxy="http://127.0.0.1:9")
    client = AnthropicBedrock(region="us-east-1", api_key="k", proxy="http://127.0.0.1:9")
    transport = client._default_transport("https://bedrock-runtime.us-east-1.amazonaws.com")
    assert isinstance(transport, AiohttpTransport)
    await transport.aclose()
    direct = AnthropicBedrock(region="us-east-1", api_key="k", trust_env=False)
    transport = direct._default_transport("https://bedrock-runtime.us-east-1.amazonaws.com")
    assert isinstance(transport, HttptoolsTransport)
    await transport.aclose()


# ------------------------------------------------------------------------------ what goes on the wire


@pytest.mark.asyncio
async def test_the_request_carries_exactly_the_given_headers() -> None:
    """No User-Agent, Accept or Accept-Encoding of ours; the target is sent as encoded (``%3A`` stays)."""
    async with serving(keep_answering()) as (server, transport):
        await transport.post_and_read(
            server.url, [("host", "h"), ("x-amz-date", "d"), ("content-length", "2")], b"{}", TIMEOUTS
        )
    assert server.requests == [["POST /model/m%3A0/invoke HTTP/1.1", "host: h", "x-amz-date: d", "content-length: 2"]]


@pytest.mark.asyncio
@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\0b", "caf\u00e9\u2603"])
async def test_a_header_that_would_split_the_request_is_refused_before_connecting(value: str) -> None:
    """CR, LF, NUL or a non-latin-1 character: LocalProtocolError (which never shows the value), no connection."""
    async with serving(keep_answering()) as (server, transport):
        with pytest.raises(httpx.LocalProtocolError) as info:
            await transport.post_and_read(server.url, [("x-amz-security-token", value)], b"", TIMEOUTS)
        assert value not in str(info.value)
    assert server.connections == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("by", ["url", "server_hostname"])
async def test_tls_verifies_the_endpoint_name(by: str, tmp_path: Any) -> None:
    """https: the certificate is checked against the URL's host, or ``server_hostname`` when given."""
    certificate, key = self_signed_certificate(tmp_path, "localhost")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certificate, key)
    trusted = ssl.create_default_context(cafile=str(certificate))
    async with asyncio.timeout(BOUND), Server(keep_answering(response(body=b"[]")), served) as server:
        url = server.url.replace("http://127.0.0.1", "https://localhost" if by == "url" else "https://127.0.0.1")
        headers = [("host", "localhost"), ("content-length", "0")]
        transport = HttptoolsTransport(ssl_context=trusted, server_hostname="localhost" if by != "url" else None)
        try:
            for _ in range(2):
                assert await transport.post_and_read(url, headers, b"", TIMEOUTS) == (
                    200,
                    {"content-length": "2"},
                    b"[]",
                )
        finally:
            await transport.aclose()
        assert server.connections == 1
        untrusting = HttptoolsTransport()  # httpx's default context: the self-signed certificate is refused
        try:
            with pytest.raises(httpx.ConnectError, match=r"(?i)certificate"):
                await untrusting.post_and_read(url, headers, b"", TIMEOUTS)
        finally:
            await untrusting.aclose()


# ------------------------------------------------------------------------------ the pool


@pytest.mark.asyncio
async def test_keep_alive_reuses_one_connection() -> None:
    """Five requests in a row go over one connection, which is idle in the pool between them."""
    async with serving(keep_answering(response(body=b'{"n": 1}'))) as (server, transport):
        for _ in range(5):
            assert await post(transport, server) == (200, {"content-length": "8"}, b'{"n": 1}')
            assert (transport.checked_out, transport.idle) == (0, 1)
    assert (server.connections, len(server.requests)) == (1, 5)


@pytest.mark.asyncio
async def test_a_connection_idle_past_the_keepalive_expiry_is_closed_not_reused() -> None:
    """Idle longer than KEEPALIVE_EXPIRY (its idle clock set back, no waiting): closed, and a new one is opened."""
    async with serving(keep_answering()) as (server, transport):
        assert (await post(transport, server))[0] == 200
        (conn,) = transport._pools[("http", "127.0.0.1", int(server.url.split(":")[2].split("/")[0]))].idle
        conn.idle_since -= KEEPALIVE_EXPIRY
        assert (await post(transport, server))[0] == 200
        assert conn.broken
    assert server.connections == 2


@pytest.mark.asyncio
async def test_connection_close_is_not_reused() -> None:
    """``Connection: close`` (and an HTTP/1.0 answer without keep-alive): a new connection per request."""
    answers = [response(extra="connection: close\r\n"), b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    for answer in answers:
        async with serving(keep_answering(answer)) as (server, transport):
            for _ in range(2):
                assert (await post(transport, server))[0] == 200
            assert (transport.checked_out, transport.idle) == (0, 0)
        assert server.connections == 2


@pytest.mark.asyncio
async def test_the_pool_limit_queues_requests_on_one_connection() -> None:
    """With ``max_connections=1``, three concurrent requests share one connection, one after another."""
    async with serving(keep_answering(), max_connections=1) as (server, transport):
        results = await asyncio.gather(*(post(transport, server) for _ in range(3)))
    assert [status for status, _, _ in results] == [200, 200, 200]
    assert (server.connections, len(server.requests)) == (1, 3)


@pytest.mark.asyncio
async def test_a_request_waiting_past_the_pool_timeout_gets_pool_timeout() -> None:
    """The only connection is held (its answer withheld): the next request waits ``pool`` seconds, then fails."""
    release, held = asyncio.Event(), asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while True:
            await server.read(reader)
            held.set()
            await release.wait()
            writer.write(response())

    async with serving(respond, max_connections=1) as (server, transport):
        first = asyncio.create_task(post(transport, server))
        await held.wait()
        with pytest.raises(httpx.PoolTimeout):
            await post(transport, server, timeouts={**TIMEOUTS, "pool": 0.05})
        release.set()
        assert (await first)[0] == 200
        assert (await post(transport, server))[0] == 200  # the slot the timed-out waiter left is usable
    assert server.connections == 1


@pytest.mark.asyncio
async def test_an_idle_connection_that_receives_bytes_or_eof_is_dropped() -> None:
    """Bytes nobody asked for, or the server's EOF, on an idle connection: it is closed, and never handed out."""
    for unasked in (b"HTTP/1.1 200 OK\r\n", b""):
        go = asyncio.Event()

        async def respond(
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            server: Server,
            unasked: bytes = unasked,
            go: asyncio.Event = go,
        ) -> None:
            await server.read(reader)
            writer.write(response())
            if server.connections == 1:
                await go.wait()
                writer.write(unasked) if unasked else writer.write_eof()
                await reader.read()  # the client closes its side
                server.closed_by_client.set()
            else:
                while True:
                    await server.read(reader)
                    writer.write(response())

        async with serving(respond) as (server, transport):
            assert (await post(transport, server))[0] == 200
            go.set()
            await server.closed_by_client.wait()
            assert (await post(transport, server))[0] == 200
            assert (transport.checked_out, transport.idle) == (0, 1)
        assert server.connections == 2


@pytest.mark.asyncio
async def test_bytes_after_the_response_keep_the_response_but_drop_the_connection() -> None:
    """A second response in the same packet as the first: the first is returned, the connection is not reused."""
    async with serving(answer_once(response(body=b"[1]") + response(body=b"[2]"))) as (server, transport):
        assert (await post(transport, server))[2] == b"[1]"
        assert (transport.checked_out, transport.idle) == (0, 0)
        await server.closed_by_client.wait()


# ------------------------------------------------------------------------------ shapes of response


CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"


@pytest.mark.asyncio
async def test_a_chunked_body_is_read_whole_and_streamed() -> None:
    """Chunked coding is decoded both ways, and the connection is reused after each."""
    async with serving(keep_answering(CHUNKED)) as (server, transport):
        assert (await post(transport, server))[2] == b"abcdefg"
        reply = await transport.handle_async_request(stream_request(server))
        assert b"".join([chunk async for chunk in reply.stream]) == b"abcdefg"  # type: ignore[union-attr]
        await reply.aclose()
        assert (transport.checked_out, transport.idle) == (0, 1)
    assert server.connections == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_body_delimited_by_eof_ends_at_eof(stream: bool) -> None:
    """Neither a length nor chunked coding: the body is what came before the server closed (not reused)."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the ")
        await writer.drain()
        writer.write(b"end")
        writer.close()

    async with serving(respond) as (server, transport):
        if stream:
            reply = await transport.handle_async_request(stream_request(server))
            body = b"".join([chunk async for chunk in reply.stream])  # type: ignore[union-attr]
            await reply.aclose()
        else:
            body = (await post(transport, server))[2]
        assert body == b"until the end"
        assert (transport.checked_out, transport.idle) == (0, 0)


@pytest.mark.asyncio
async def test_informational_responses_are_skipped() -> None:
    """100 Continue and 103 Early Hints before the answer: the answer's status and headers only."""
    hints = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n"
    async with serving(keep_answering(hints + response(body=b"ok"))) as (server, transport):
        for _ in range(2):
            assert await post(transport, server) == (200, {"content-length": "2"}, b"ok")
    assert server.connections == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"x: y\r\n" * (MAX_HEADERS + 1) + b"\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n" * (MAX_HEAD_BYTES // 25 + 1),
    ],
    ids=["long header", "many headers", "endless 1xx"],
)
async def test_an_oversized_head_is_refused(head: bytes) -> None:
    """Past the byte or field cap of the head (1xx heads count): RemoteProtocolError, the connection dropped."""
    async with serving(answer_once(head)) as (server, transport):
        with pytest.raises(httpx.RemoteProtocolError, match=r"head|header"):
            await post(transport, server)
        await server.closed_by_client.wait()
        assert transport.checked_out == 0


@pytest.mark.asyncio
async def test_a_content_length_past_max_body_is_refused_before_reading() -> None:
    """A Content-Length past ``max_body`` fails at once (the server sends no body at all), naming the cap."""
    async with serving(answer_once(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n")) as (server, transport):
        with pytest.raises(ResponseTooLargeError):
            await post(transport, server, max_body=1000)
        await server.closed_by_client.wait()


@pytest.mark.asyncio
async def test_an_endless_chunked_body_stops_at_max_body() -> None:
    """An endless chunked body: ResponseTooLargeError once ``max_body`` bytes have come, the connection closed."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            await writer.drain()

    async with serving(respond) as (server, transport):
        with pytest.raises(ResponseTooLargeError):
            await post(transport, server, max_body=100_000)
        assert (transport.checked_out, transport.idle) == (0, 0)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b", CHUNKED[:-7], b"HTTP/1.1 200 OK\r\ncontent-le"],
    ids=["short body", "unfinished chunks", "half a head"],
)
async def test_a_response_cut_short_is_a_protocol_error(answer: bytes) -> None:
    """The server closes before the response ends: RemoteProtocolError, nothing left checked out."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read(reader)
        writer.write(answer)
        writer.close()

    async with serving(respond) as (server, transport):
        with pytest.raises(httpx.RemoteProtocolError, match=r"closed the connection before the response ended"):
            await post(transport, server)
        assert transport.checked_out == 0


@pytest.mark.asyncio
async def test_a_malformed_response_is_a_protocol_error_that_quotes_nothing() -> None:
    """llhttp's refusal becomes RemoteProtocolError; its message names the fault, not the bytes sent."""
    async with serving(answer_once(b"HTTP/1.1 200 OK\r\nBad Header Line SECRET\r\n\r\n")) as (server, transport):
        with pytest.raises(httpx.RemoteProtocolError, match="malformed HTTP response") as info:
            await post(transport, server)
        assert "SECRET" not in str(info.value)
        await server.closed_by_client.wait()


# ------------------------------------------------------------------------------ timeouts, cancellation, closing


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_a_silent_server_is_a_read_timeout(stream: bool) -> None:
    """No answer within ``read`` seconds: ReadTimeout, and the connection is closed, not pooled."""

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read(reader)
        if stream:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
        await reader.read()
        server.closed_by_client.set()

    timeouts = {**TIMEOUTS, "read": 0.2}

    async def call(transport: HttptoolsTransport, server: Server) -> None:
        if stream:
            reply = await transport.handle_async_request(stream_request(server, timeouts))
            async for _ in reply.stream:  # type: ignore[union-attr]
                pass
        else:
            await post(transport, server, timeouts=timeouts)

    async with serving(respond) as (server, transport):
        with pytest.raises(httpx.ReadTimeout):
            await call(transport, server)
        await server.closed_by_client.wait()
        assert (transport.checked_out, transport.idle) == (0, 0)


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_cancelled_mid_body_drops_the_connection(stream: bool) -> None:
    """Cancelled with half the body read: the half-read connection is closed, never returned to the pool."""
    half_sent = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
        await writer.drain()
        half_sent.set()
        await reader.read()
        server.closed_by_client.set()

    async with serving(respond) as (server, transport):

        async def call() -> None:
            if stream:
                reply = await transport.handle_async_request(stream_request(server))
                async for _ in reply.stream:  # type: ignore[union-attr]
                    pass
            else:
                await post(transport, server)

        task = asyncio.create_task(call())
        await half_sent.wait()
        # A yield, not a timed sleep: until the half body has reached the client (bounded by serving's timeout).
        while transport.checked_out and not any(  # noqa: ASYNC110
            conn._chunks for pool in transport._pools.values() for conn in pool.conns
        ):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.closed_by_client.wait()
        assert (transport.checked_out, transport.idle) == (0, 0)


@pytest.mark.asyncio
async def test_closing_the_transport_closes_idle_and_checked_out_connections() -> None:
    """aclose: the idle connection and the one an open stream holds are closed; the stream fails with ReadError."""
    closed: list[int] = []
    both_closed = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        number = server.connections
        await server.read(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345" if number == 1 else response())
        await reader.read()
        closed.append(number)
        if len(closed) == 2:
            both_closed.set()

    async with serving(respond) as (server, transport):
        reply = await transport.handle_async_request(stream_request(server))  # holds the first connection
        await post(transport, server)  # on a second one, then idle
        assert (transport.checked_out, transport.idle) == (1, 1)
        await transport.aclose()
        assert (transport.checked_out, transport.idle) == (0, 0)
        await both_closed.wait()
        with pytest.raises(httpx.ReadError):
            async for _ in reply.stream:  # type: ignore[union-attr]
                pass
        with pytest.raises(httpx.ConnectError, match="closed"):
            await post(transport, server)


@pytest.mark.asyncio
async def test_a_slow_reader_holds_a_bounded_buffer() -> None:
    """A stream nobody reads stops taking bytes from the socket at the high-water mark (the server blocks)."""
    total = 8 * 1024 * 1024
    sent = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.read(reader)
        writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n".encode())
        writer.write(bytes(range(256)) * (total // 256))
        sent.set()
        await writer.drain()
        await reader.read()

    async with serving(respond) as (server, transport):
        reply = await transport.handle_async_request(stream_request(server))
        await sent.wait()
        (conn,) = next(iter(transport._pools.values())).conns
        while not conn._paused:  # noqa: ASYNC110 (a yield, not a timed sleep; bounded by serving's timeout)
            await asyncio.sleep(0)
        for _ in range(100):  # the loop runs on; a connection that kept reading would buffer more
            await asyncio.sleep(0)
        assert conn._buffered <= _HIGH_WATER + ONE_READ
        received = 0
        async for chunk in reply.stream:  # type: ignore[union-attr]
            assert len(chunk) <= _HIGH_WATER + ONE_READ
            assert chunk[:1] == bytes([received % 256])
            received += len(chunk)
        await reply.aclose()
        assert received == total
        assert (transport.checked_out, transport.idle) == (0, 1)
