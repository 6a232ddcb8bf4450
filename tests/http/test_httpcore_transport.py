"""httpcore2's transport (the default under trio) against real peers: the emulator and a closed port.

The emulator verifies every SigV4 signature, so a request whose path or headers changed on the way
(``%3A`` decoded to ``:``, a header added or dropped) fails there; these tests add what the signature
cannot show: which transport and path were used, what arrived on the wire, and how errors map.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest
from e2e_helpers import checked_out_connections, emulator_client

from bedrock_chat import AnthropicBedrock, APIConnectionError
from bedrock_chat._http.httpcore_transport import HttpcoreTransport
from bedrock_chat.emulator import BedrockEmulator

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"  # has a ':' that must arrive as %3A
HI = [{"role": "user", "content": "hi"}]


def run_on(backend: str, main: Callable[[], Awaitable[None]]) -> None:
    anyio.run(main, backend=backend)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_creates_take_the_fast_path_and_arrive_as_signed(bedrock_emulator: BedrockEmulator, backend: str) -> None:
    """A create goes through httpcore2's whole-body fast path with the path encoded exactly as it was signed."""

    async def main() -> None:
        async with emulator_client(bedrock_emulator, http_backend="httpcore2") as client:
            chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
            bedrock = await client._ready()
            assert isinstance(bedrock.transport, HttpcoreTransport)
            assert bedrock._fast_post is not None
            assert checked_out_connections(client) == 0
        assert chat.completion

    run_on(backend, main)
    (request,) = bedrock_emulator.requests
    assert request.status == 200
    assert request.path == "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke"
    names = [name for name, _ in request.headers]
    assert names.count("host") == 1
    assert names.count("content-length") == 1


def test_trio_picks_httpcore2_by_default(bedrock_emulator: BedrockEmulator) -> None:
    """Under trio, ``http_backend="auto"`` means httpcore2's pool (httpx's own strands slots, httpcore#1093)."""

    async def main() -> None:
        async with emulator_client(bedrock_emulator) as client:
            stream = await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True)
            chat = await stream.final_completion()
            assert chat.completion
            assert isinstance((await client._ready()).transport, HttpcoreTransport)

    run_on("trio", main)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_a_refused_connection_is_a_typed_connection_error(backend: str, stream: bool) -> None:
    """httpcore2's ConnectError reaches the caller as APIConnectionError, after the retries, chained to httpx's."""
    port = closed_port()
    raised: list[BaseException] = []

    async def main() -> None:
        client = AnthropicBedrock(
            access_key="AKIDEXAMPLE",
            secret_key="not-a-real-secret",
            region="us-east-1",
            endpoint_url=f"http://127.0.0.1:{port}",
            http_backend="httpcore2",
            max_retries=1,
        )
        async with client:
            with anyio.fail_after(10), pytest.raises(APIConnectionError) as info:
                await client.ChatCompletion.create(model=MODEL, messages=HI, stream=stream)
            raised.append(info.value)
            assert checked_out_connections(client) == 0

    run_on(backend, main)
    (error,) = raised
    assert isinstance(error.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_connection_dropped_mid_body_is_an_httpx_error_and_frees_the_slot(
    bedrock_emulator: BedrockEmulator, backend: str
) -> None:
    """A body cut short maps to httpx's RemoteProtocolError/ReadError, and the connection leaves the pool."""
    bedrock_emulator.enqueue_faults("drop_mid_stream")

    async def main() -> None:
        transport = HttpcoreTransport(max_connections=1)
        async with emulator_client(bedrock_emulator, transport=transport, max_retries=0) as client:
            bedrock = await client._ready()
            path = f"/model/{MODEL.replace(':', '%3A')}/invoke-with-response-stream"
            body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": HI}).encode()
            assert bedrock.credentials is not None
            credentials = await bedrock.credentials.get()
            headers = bedrock.signed_headers(path, body, [("content-type", "application/json")], credentials)
            request = httpx.Request("POST", bedrock._url(path), headers=headers, content=body)
            response = await transport.handle_async_request(request)
            try:
                with anyio.fail_after(10), pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                    async for _ in response.stream:  # type: ignore[union-attr]
                        pass
            finally:
                await response.aclose()
            assert transport.pool.connections == []
        await transport.aclose()

    run_on(backend, main)


def test_reading_a_closed_body_is_refused(bedrock_emulator: BedrockEmulator) -> None:
    """After ``aclose`` the body cannot be read again: its connection may already serve another request."""

    async def main() -> None:
        transport = HttpcoreTransport(max_connections=1)
        async with emulator_client(bedrock_emulator, transport=transport) as client:
            stream = await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True)
            body = stream._http.stream
            await stream.aclose()
            with pytest.raises(httpx.StreamClosed):
                await body.__aiter__().__anext__()  # type: ignore[union-attr]
            assert transport.pool.connections == [] or all(c.is_idle() for c in transport.pool.connections)
        await transport.aclose()

    run_on("asyncio", main)
