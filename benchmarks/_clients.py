"""The contenders: one async function per client (or floor) for N requests at concurrency C, and for streams.

Each ``invoke_*`` function opens its client the way a user of that library would (pool sized to the
concurrency, so that no library waits for a connection another one would have had), then hands
:func:`drive` a zero-argument coroutine function that performs one InvokeModel and returns the reply
text. Each ``stream_*`` function opens one response stream per call, reads it to the end and reports
when the first text arrived. The floors (raw aiohttp and raw httpx) send a fixed, pre-built
``Authorization`` header -- the emulator runs with signature verification off -- and do the least
parsing that still yields the text, so they bound from below what any client can cost.

Peers are imported inside the functions, so a client's subprocess loads only its own library: import
cost and memory then belong to the contender being measured.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

#: A Messages-API model on InvokeModel that accepts both bedrock-2023-05-31 and the dated
#: anthropic_version anthropic 2.x sends (the emulator refuses the latter for older models).
MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
MODEL_PATH = "/model/anthropic.claude-haiku-4-5-20251001-v1%3A0"
PROMPT = "Hello, emulator"
#: Non-streaming replies are this many words; streams this many one-word chunks (the emulator runs with
#: ``--reply-tokens STREAM_MAX_TOKENS --chunk-tokens 1``, and cuts every reply at the request's max tokens).
INVOKE_MAX_TOKENS = 32
STREAM_MAX_TOKENS = 1000
ANTHROPIC_VERSION = "bedrock-2023-05-31"
#: A syntactically real SigV4 header, never recomputed: the floors' "signing" costs nothing.
STATIC_AUTH = {
    "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/bedrock/aws4_request, "
    "SignedHeaders=accept;content-type;host;x-amz-date, Signature=" + "0" * 64,
    "x-amz-date": "20250101T000000Z",
}


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect, and how many connections each client may keep."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    pool: int
    server_pid: int | None = None


def _server_cpu(target: Target) -> float | None:
    """The server's CPU seconds so far (None when unknown): read at both ends of a measured window."""
    from _harness import process_cpu_seconds

    return process_cpu_seconds(target.server_pid)


def _server_figures(before: float | None, after: float | None, wall_s: float) -> dict[str, float]:
    """Server CPU seconds over the window and its utilisation (CPU / wall: 1.0 is its whole core)."""
    if before is None or after is None:
        return {}
    return {"server_cpu_s": after - before, "server_util": (after - before) / wall_s}


@dataclass
class InvokeResult:
    """One measured batch of InvokeModel calls (the warm-up excluded)."""

    requests: int
    concurrency: int
    wall_s: float
    cpu_s: float
    latencies_s: list[float] = field(repr=False)
    server: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """The numbers the report uses: throughput, CPU per request, latency percentiles, the server's CPU."""
        ordered = sorted(self.latencies_s)
        return {
            **self.server,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "rps": self.requests / self.wall_s,
            "cpu_ms_per_request": self.cpu_s / self.requests * 1e3,
            "latency_ms_p50": statistics.median(ordered) * 1e3,
            "latency_ms_p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        }


@dataclass
class StreamResult:
    """Sequential streams: CPU per stream and time from sending to the first text of each."""

    streams: int
    wall_s: float
    cpu_s: float
    ttft_s: list[float] = field(repr=False)
    chunks: int
    server: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """CPU per stream, time to first text (median, and minimum: the least noisy estimate of the
        client's own share, as the server's time to build the stream varies by milliseconds on a busy
        machine), text chunks seen per stream."""
        return {
            **self.server,
            "streams": self.streams,
            "cpu_ms_per_stream": self.cpu_s / self.streams * 1e3,
            "wall_ms_per_stream": self.wall_s / self.streams * 1e3,
            "ttft_ms_p50": statistics.median(self.ttft_s) * 1e3,
            "ttft_ms_min": min(self.ttft_s) * 1e3,
            "text_chunks_per_stream": self.chunks,
        }


OneCall = Callable[[], Awaitable[str]]
#: One stream: returns (perf_counter at the first text, number of text chunks).
OneStream = Callable[[], Awaitable[tuple[float, int]]]


def _messages_body(max_tokens: int) -> dict[str, Any]:
    return {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": PROMPT}],
    }


def _static_headers(stream: bool) -> dict[str, str]:
    accept = {"x-amzn-bedrock-accept": "application/json"} if stream else {"accept": "application/json"}
    return {**STATIC_AUTH, "content-type": "application/json", **accept}


def _url(target: Target, stream: bool) -> str:
    return f"{target.endpoint}{MODEL_PATH}/{'invoke-with-response-stream' if stream else 'invoke'}"


def _reply_text(document: Any) -> str:
    text = document["content"][0]["text"]
    assert isinstance(text, str)
    return text


async def drive(one: OneCall, requests: int, concurrency: int, target: Target | None = None) -> InvokeResult:
    """Warm up (open the pool, fill caches), then time ``requests`` calls from ``concurrency`` workers.

    The warm-up is ``concurrency`` calls at once plus a few rounds, so every client starts the measured
    part with its connections open; its first reply is checked to be real text.
    """
    first = await one()
    if not first:
        raise RuntimeError("the client got an empty reply")
    await asyncio.gather(*(one() for _ in range(concurrency)))
    await asyncio.gather(*(one() for _ in range(concurrency)))
    counter = itertools.count()
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker() -> None:
        while next(counter) < requests:
            started = clock()
            await one()
            latencies.append(clock() - started)

    server_started = _server_cpu(target) if target else None
    cpu_started, wall_started = time.process_time(), clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = clock() - wall_started, time.process_time() - cpu_started
    server = _server_figures(server_started, _server_cpu(target) if target else None, wall)
    return InvokeResult(requests, concurrency, wall, cpu, latencies, server)


async def drive_streams(one: OneStream, streams: int, target: Target | None = None) -> StreamResult:
    """Two warm-up streams, then ``streams`` sequential streams; all must carry the same text chunk count."""
    counts = {(await one())[1] for _ in range(2)}
    ttft: list[float] = []
    clock = time.perf_counter
    server_started = _server_cpu(target) if target else None
    cpu_started, wall_started = time.process_time(), clock()
    for _ in range(streams):
        started = clock()
        first_text, count = await one()
        ttft.append(first_text - started)
        counts.add(count)
    wall, cpu = clock() - wall_started, time.process_time() - cpu_started
    server = _server_figures(server_started, _server_cpu(target) if target else None, wall)
    if len(counts) != 1 or 0 in counts:
        raise RuntimeError(f"streams differ in length or carry no text: {sorted(counts)} text chunks")
    return StreamResult(streams, wall, cpu, ttft, counts.pop(), server)


# -- the floors' minimal event-stream reader -----------------------------------------------------


class _MinimalFrames:
    """The least work that turns event-stream bytes into model events: no CRC and no header checks.

    Only a floor may skip them (the emulator sends no faults here); real clients must verify frames.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 12:
            total = int.from_bytes(buffer[0:4], "big")
            if len(buffer) < total:
                break
            headers_length = int.from_bytes(buffer[4:8], "big")
            payload = bytes(buffer[12 + headers_length : total - 4])
            del buffer[:total]
            event: dict[str, Any] = json.loads(base64.b64decode(json.loads(payload)["bytes"]))
            yield event


async def _floor_stream(pieces: AsyncIterator[bytes], clock: Callable[[], float]) -> tuple[float, int]:
    frames = _MinimalFrames()
    first, count = 0.0, 0
    async for piece in pieces:
        for event in frames.feed(piece):
            if event["type"] == "content_block_delta" and event["delta"].get("text"):
                if not count:
                    first = clock()
                count += 1
    return first, count


# -- raw aiohttp ------------------------------------------------------------------------------------


async def invoke_aiohttp(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """Floor: aiohttp POST with a static auth header, ``json.loads`` of the body."""
    import aiohttp

    url, headers = _url(target, False), _static_headers(False)
    body = json.dumps(_messages_body(INVOKE_MAX_TOKENS)).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=target.pool)) as session:

        async def one() -> str:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {await response.read()!r}")
                return _reply_text(json.loads(await response.read()))

        return await drive(one, requests, concurrency, target)


async def stream_aiohttp(target: Target, streams: int) -> StreamResult:
    """Floor: aiohttp POST, body pieces through the minimal frame reader."""
    import aiohttp

    url, headers = _url(target, True), _static_headers(True)
    body = json.dumps(_messages_body(STREAM_MAX_TOKENS)).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=target.pool)) as session:

        async def one() -> tuple[float, int]:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {await response.read()!r}")
                return await _floor_stream(response.content.iter_any(), time.perf_counter)

        return await drive_streams(one, streams, target)


# -- raw httpx --------------------------------------------------------------------------------------


def _httpx_client(pool: int) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))


async def invoke_httpx(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """Floor for httpx users: ``AsyncClient.post`` with a static auth header, ``json.loads`` of the body."""
    url, headers = _url(target, False), _static_headers(False)
    body = json.dumps(_messages_body(INVOKE_MAX_TOKENS)).encode()
    async with _httpx_client(target.pool) as client:

        async def one() -> str:
            response = await client.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.content!r}")
            return _reply_text(json.loads(response.content))

        return await drive(one, requests, concurrency, target)


async def stream_httpx(target: Target, streams: int) -> StreamResult:
    """httpx ``AsyncClient.stream`` with the minimal frame reader."""
    url, headers = _url(target, True), _static_headers(True)
    body = json.dumps(_messages_body(STREAM_MAX_TOKENS)).encode()
    async with _httpx_client(target.pool) as client:

        async def one() -> tuple[float, int]:
            async with client.stream("POST", url, content=body, headers=headers) as response:
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}")
                return await _floor_stream(response.aiter_raw(), time.perf_counter)

        return await drive_streams(one, streams, target)


# -- httpx requests straight into httpx_aiohttp's transport ----------------------------------------------


async def invoke_httpx_aiohttp(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """What bedrock_chat's transport layer costs at least with aiohttp underneath: a prebuilt-header
    ``httpx.Request`` handed to ``AiohttpTransport.handle_async_request``, no ``AsyncClient``."""
    import httpx
    from httpx_aiohttp import AiohttpTransport

    url, headers = _url(target, False), _static_headers(False)
    body = json.dumps(_messages_body(INVOKE_MAX_TOKENS)).encode()
    transport = AiohttpTransport(
        limits=httpx.Limits(max_connections=target.pool, max_keepalive_connections=target.pool)
    )
    try:

        async def one() -> str:
            request = httpx.Request("POST", url, headers=headers, content=body)
            response = await transport.handle_async_request(request)
            try:
                data = await response.aread()
            finally:
                await response.aclose()
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {data!r}")
            return _reply_text(json.loads(data))

        return await drive(one, requests, concurrency, target)
    finally:
        await transport.aclose()


# -- aiobotocore ------------------------------------------------------------------------------------


def _aiobotocore_client(target: Target, *, default_pool: bool = False) -> Any:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    return get_session().create_client(
        "bedrock-runtime",
        region_name=target.region,
        endpoint_url=target.endpoint,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        config=None if default_pool else AioConfig(max_pool_connections=target.pool),
    )


async def invoke_aiobotocore(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """aiobotocore's ``bedrock-runtime`` ``invoke_model``, body read and JSON-decoded."""
    return await _invoke_aiobotocore(target, requests, concurrency, default_pool=False)


async def invoke_aiobotocore_default_pool(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """The same as users get it out of the box: botocore's default pool of 10 connections."""
    return await _invoke_aiobotocore(target, requests, concurrency, default_pool=True)


async def _invoke_aiobotocore(target: Target, requests: int, concurrency: int, *, default_pool: bool) -> InvokeResult:
    body = json.dumps(_messages_body(INVOKE_MAX_TOKENS)).encode()
    async with _aiobotocore_client(target, default_pool=default_pool) as client:

        async def one() -> str:
            response = await client.invoke_model(
                modelId=MODEL, body=body, contentType="application/json", accept="application/json"
            )
            return _reply_text(json.loads(await response["body"].read()))

        return await drive(one, requests, concurrency, target)


async def stream_aiobotocore(target: Target, streams: int) -> StreamResult:
    """aiobotocore's ``invoke_model_with_response_stream``, each chunk's bytes JSON-decoded."""
    body = json.dumps(_messages_body(STREAM_MAX_TOKENS)).encode()
    async with _aiobotocore_client(target) as client:

        async def one() -> tuple[float, int]:
            response = await client.invoke_model_with_response_stream(
                modelId=MODEL, body=body, contentType="application/json", accept="application/json"
            )
            first, count = 0.0, 0
            async for item in response["body"]:
                event = json.loads(item["chunk"]["bytes"])
                if event["type"] == "content_block_delta" and event["delta"].get("text"):
                    if not count:
                        first = time.perf_counter()
                    count += 1
            return first, count

        return await drive_streams(one, streams, target)


# -- anthropic --------------------------------------------------------------------------------------


def _anthropic_client(target: Target) -> Any:
    import anthropic

    try:  # anthropic 2.x is built on httpx2, earlier releases on httpx
        import httpx2 as http
    except ImportError:
        import httpx as http  # type: ignore[no-redef]

    limits = http.Limits(max_connections=target.pool, max_keepalive_connections=target.pool)
    return anthropic.AsyncAnthropicBedrock(
        aws_access_key=target.access_key,
        aws_secret_key=target.secret_key,
        aws_region=target.region,
        base_url=target.endpoint,
        http_client=anthropic.DefaultAsyncHttpxClient(limits=limits),
    )


async def invoke_anthropic(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """anthropic's ``AsyncAnthropicBedrock.messages.create``."""
    async with _anthropic_client(target) as client:

        async def one() -> str:
            message = await client.messages.create(
                model=MODEL, max_tokens=INVOKE_MAX_TOKENS, messages=[{"role": "user", "content": PROMPT}]
            )
            text = message.content[0].text
            assert isinstance(text, str)
            return text

        return await drive(one, requests, concurrency, target)


async def stream_anthropic(target: Target, streams: int) -> StreamResult:
    """anthropic's ``messages.create(stream=True)``, iterated to the end."""
    async with _anthropic_client(target) as client:

        async def one() -> tuple[float, int]:
            stream = await client.messages.create(
                model=MODEL,
                max_tokens=STREAM_MAX_TOKENS,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
            first, count = 0.0, 0
            async with stream:
                async for event in stream:
                    if event.type == "content_block_delta" and getattr(event.delta, "text", None):
                        if not count:
                            first = time.perf_counter()
                        count += 1
            return first, count

        return await drive_streams(one, streams, target)


# -- bedrock_chat -----------------------------------------------------------------------------------


def _bedrock_chat_client(target: Target, transport: Any = None) -> Any:
    from bedrock_chat import AnthropicBedrock

    return AnthropicBedrock(
        access_key=target.access_key,
        secret_key=target.secret_key,
        region=target.region,
        endpoint_url=target.endpoint,
        max_connections=target.pool,
        transport=transport,
    )


def _aiohttp_transport(pool: int) -> Any:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool))


async def _invoke_bedrock_chat(target: Target, requests: int, concurrency: int, transport: Any) -> InvokeResult:
    messages = [{"role": "user", "content": PROMPT}]
    try:
        async with _bedrock_chat_client(target, transport) as client:
            create = client.ChatCompletion.create

            async def one() -> str:
                chat = await create(model=MODEL, messages=messages, max_tokens_to_sample=INVOKE_MAX_TOKENS)
                text = chat.completion
                assert isinstance(text, str)
                return text

            return await drive(one, requests, concurrency, target)
    finally:
        if transport is not None:
            await transport.aclose()


async def _stream_bedrock_chat(target: Target, streams: int, transport: Any) -> StreamResult:
    messages = [{"role": "user", "content": PROMPT}]
    try:
        async with _bedrock_chat_client(target, transport) as client:
            create = client.ChatCompletion.create

            async def one() -> tuple[float, int]:
                stream = await create(
                    model=MODEL, messages=messages, max_tokens_to_sample=STREAM_MAX_TOKENS, stream=True
                )
                first, count = 0.0, 0
                async with stream:
                    async for chunk in stream:
                        if chunk.text:
                            if not count:
                                first = time.perf_counter()
                            count += 1
                return first, count

            return await drive_streams(one, streams, target)
    finally:
        if transport is not None:
            await transport.aclose()


async def invoke_bedrock_chat(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """bedrock_chat's ``ChatCompletion.create`` with its default transport (``httpx.AsyncHTTPTransport``)."""
    return await _invoke_bedrock_chat(target, requests, concurrency, None)


async def stream_bedrock_chat(target: Target, streams: int) -> StreamResult:
    """bedrock_chat's ``create(stream=True)`` with its default transport."""
    return await _stream_bedrock_chat(target, streams, None)


async def invoke_bedrock_chat_aiohttp(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """bedrock_chat with ``transport=httpx_aiohttp.AiohttpTransport(...)``."""
    return await _invoke_bedrock_chat(target, requests, concurrency, _aiohttp_transport(target.pool))


async def stream_bedrock_chat_aiohttp(target: Target, streams: int) -> StreamResult:
    """bedrock_chat streaming with ``transport=httpx_aiohttp.AiohttpTransport(...)``."""
    return await _stream_bedrock_chat(target, streams, _aiohttp_transport(target.pool))


@dataclass(frozen=True)
class Contender:
    """A row of the report: its InvokeModel function and (where it has one) its streaming function."""

    name: str
    invoke: Callable[[Target, int, int], Awaitable[InvokeResult]]
    stream: Callable[[Target, int], Awaitable[StreamResult]] | None
    floor: bool = False


#: In report order. The first is the floor every ratio to "the floor" refers to.
CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender("aiohttp (floor)", invoke_aiohttp, stream_aiohttp, floor=True),
        Contender("httpx (raw)", invoke_httpx, stream_httpx, floor=True),
        Contender("httpx->AiohttpTransport", invoke_httpx_aiohttp, None, floor=True),
        Contender("bedrock_chat", invoke_bedrock_chat, stream_bedrock_chat),
        Contender("bedrock_chat+aiohttp", invoke_bedrock_chat_aiohttp, stream_bedrock_chat_aiohttp),
        Contender("aiobotocore", invoke_aiobotocore, stream_aiobotocore),
        Contender("aiobotocore (10-conn pool)", invoke_aiobotocore_default_pool, None),
        Contender("anthropic", invoke_anthropic, stream_anthropic),
    )
}
FLOOR = "aiohttp (floor)"
