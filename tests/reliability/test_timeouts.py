"""Timeouts: a silent server, stalled headers and stalled streams each end in RequestTimeoutError within its bound.

Each test measures how long the typed timeout took against the bound it configured (the measured value
is published as a figure): never earlier than the configured timeout, never later than it plus a slack
for a noisy machine. A slow but steady stream, whose every gap is shorter than the idle timeout but whose
whole length is many times it, must not be cut.
"""

from __future__ import annotations

import itertools
import time

import anyio
import attrs
import httpx
import pytest
from e2e_helpers import checked_out_connections

from bedrock_chat import AnthropicBedrock, ChatCompletionStream, RequestTimeoutError, RetryPolicy
from bedrock_chat.emulator import BedrockEmulator, Faults
from reliability.reliability_helpers import SilentServer, client_for, record_figure

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
HI = [{"role": "user", "content": "take your time"}]
#: The configured read / idle timeout of these tests.
BOUND = 0.5
#: How late past its bound a timeout may fire on a loaded two-core machine before it counts as a hang.
SLACK = 1.0
#: Before the bound means something else than the configured timeout fired (timer granularity aside).
EARLY = 0.05
NO_RETRY = RetryPolicy(max_retries=0)
#: The default transports: httptools' (asyncio), aiohttp's (asyncio through a proxy) and httpcore2's (trio;
#: here under asyncio, and under trio below).
BACKENDS = ["httptools", "aiohttp", "httpcore2"]


def silent_client(
    server: SilentServer, *, max_retries: int = 0, cap: float = 0.0, backend: str = "auto"
) -> AnthropicBedrock:
    """A client of the silent server with read timeout BOUND and the given retries."""
    return AnthropicBedrock(
        http_backend=backend,  # type: ignore[arg-type]
        access_key="AKIDEXAMPLE",
        secret_key="not-a-real-secret",
        region="us-east-1",
        endpoint_url=server.url,
        timeout=httpx.Timeout(5.0, read=BOUND),
        retry_policy=RetryPolicy(max_retries=max_retries, base=cap, throttle_base=cap, cap=cap),
    )


async def drain(stream: ChatCompletionStream, received: list[str], stamps: list[float]) -> None:
    """Read a stream to its end, keeping each piece of text and when it came."""
    async with stream:
        async for chunk in stream:
            received.append(chunk.text)
            stamps.append(time.monotonic())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.asyncio
async def test_a_server_that_never_answers_times_out_at_the_read_timeout(stream: bool, backend: str) -> None:
    """A server that accepts and never answers raises RequestTimeoutError at the read timeout, not never."""
    async with SilentServer() as server, silent_client(server, backend=backend) as client:
        started = time.monotonic()
        with anyio.fail_after(BOUND + SLACK + 1), pytest.raises(RequestTimeoutError):
            await client.ChatCompletion.create(model=MODEL, messages=HI, stream=stream)
        took = time.monotonic() - started
        assert checked_out_connections(client) == 0
    record_figure(
        f"timeout, silent server, {'stream' if stream else 'create'}, {backend}: took / bound (s)",
        (round(took, 3), BOUND),
    )
    assert BOUND - EARLY <= took <= BOUND + SLACK
    assert server.accepted == 1
    assert server.received > 0, "the request was sent; only the answer never came"


def test_a_server_that_never_answers_times_out_under_trio() -> None:
    """Under trio (httpcore2's pool over trio's sockets) a silent server times out a create and a stream alike."""
    took: dict[str, float] = {}

    async def main() -> None:
        async with SilentServer() as server, silent_client(server) as client:
            for stream in (False, True):
                started = time.monotonic()
                with anyio.fail_after(BOUND + SLACK + 1), pytest.raises(RequestTimeoutError):
                    await client.ChatCompletion.create(model=MODEL, messages=HI, stream=stream)
                took["stream" if stream else "create"] = time.monotonic() - started
                assert checked_out_connections(client) == 0

    anyio.run(main, backend="trio")
    record_figure("timeout, silent server, trio: took / bound (s)", ({k: round(v, 3) for k, v in took.items()}, BOUND))
    assert all(BOUND - EARLY <= value <= BOUND + SLACK for value in took.values()), took


@pytest.mark.asyncio
async def test_a_silent_server_is_tried_max_retries_plus_one_times_within_the_sum_of_bounds() -> None:
    """With two retries, three read timeouts and two capped backoffs bound the whole call."""
    cap = 0.05
    async with SilentServer() as server, silent_client(server, max_retries=2, cap=cap) as client:
        started = time.monotonic()
        with anyio.fail_after(3 * BOUND + SLACK + 1), pytest.raises(RequestTimeoutError):
            await client.ChatCompletion.create(model=MODEL, messages=HI)
        took = time.monotonic() - started
        assert checked_out_connections(client) == 0
    bound = 3 * BOUND + 2 * cap
    record_figure("timeout, silent server, 2 retries: took / bound (s)", (round(took, 3), bound))
    assert server.accepted == 3
    assert 3 * (BOUND - EARLY) <= took <= bound + SLACK


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.asyncio
async def test_headers_then_nothing_times_out_a_create_at_the_read_timeout(
    bedrock_emulator: BedrockEmulator, backend: str
) -> None:
    """Headers followed by silence (fault ``stall``) raise RequestTimeoutError from create at the read timeout."""
    bedrock_emulator.enqueue_faults("stall")
    async with client_for(
        bedrock_emulator, retry=NO_RETRY, timeout=httpx.Timeout(5.0, read=BOUND), http_backend=backend
    ) as client:
        started = time.monotonic()
        with anyio.fail_after(BOUND + SLACK + 1), pytest.raises(RequestTimeoutError):
            await client.ChatCompletion.create(model=MODEL, messages=HI)
        took = time.monotonic() - started
        assert checked_out_connections(client) == 0
    record_figure(f"timeout, stall (headers only), create, {backend}: took / bound (s)", (round(took, 3), BOUND))
    assert BOUND - EARLY <= took <= BOUND + SLACK


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("idle", [BOUND, None], ids=["idle-timeout", "read-timeout"])
@pytest.mark.asyncio
async def test_headers_then_nothing_times_out_a_stream(
    bedrock_emulator: BedrockEmulator, idle: float | None, backend: str
) -> None:
    """A stream whose body never starts raises RequestTimeoutError at the idle timeout (or else the read timeout)."""
    bedrock_emulator.enqueue_faults("stall")
    read = 5.0 if idle is not None else BOUND
    async with client_for(
        bedrock_emulator,
        retry=NO_RETRY,
        timeout=httpx.Timeout(5.0, read=read),
        stream_idle_timeout=idle,
        http_backend=backend,
    ) as client:
        started = time.monotonic()
        with anyio.fail_after(BOUND + SLACK + 1), pytest.raises(RequestTimeoutError):
            await drain(await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True), [], [])
        took = time.monotonic() - started
        assert checked_out_connections(client) == 0
    record_figure(
        f"timeout, stall (headers only), stream, {'idle' if idle else 'read'}, {backend}: took / bound (s)",
        (round(took, 3), BOUND),
    )
    assert BOUND - EARLY <= took <= BOUND + SLACK


@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
@pytest.mark.asyncio
async def test_a_stream_stalled_mid_body_times_out_at_the_idle_timeout(
    bedrock_emulator: BedrockEmulator, surface: str
) -> None:
    """A stream stopping half-way raises RequestTimeoutError one idle timeout after its last byte, keeping its text."""
    bedrock_emulator.enqueue_faults("stall_mid_stream")
    received: list[str] = []
    stamps: list[float] = []
    async with client_for(bedrock_emulator, retry=NO_RETRY, stream_idle_timeout=BOUND) as client:
        stream = await client.ChatCompletion.create(
            model=MODEL, messages=HI, stream=True, surface=surface, max_tokens_to_sample=60
        )
        with anyio.fail_after(BOUND + SLACK + 1), pytest.raises(RequestTimeoutError) as raised:
            await drain(stream, received, stamps)
        took = time.monotonic() - stamps[-1]
        assert checked_out_connections(client) == 0
    record_figure(f"timeout, stall_mid_stream, {surface}: after last chunk / bound (s)", (round(took, 3), BOUND))
    assert "".join(received), "half the stream arrived before the stall"
    assert raised.value.partial_text == "".join(received)
    assert BOUND - EARLY <= took <= BOUND + SLACK


async def _steady(emu: BedrockEmulator, *, gap: float, chunks: int, idle: float) -> tuple[float, float, str]:
    """Stream ``chunks`` words one frame every ``gap`` seconds under idle and read timeouts of ``idle``."""
    emu.options = attrs.evolve(emu.options, reply_tokens=chunks, chunk_tokens=1, faults=Faults(chunk_delay=gap))
    received: list[str] = []
    stamps: list[float] = []
    async with client_for(
        emu, retry=NO_RETRY, timeout=httpx.Timeout(10.0, read=idle), stream_idle_timeout=idle
    ) as client:
        started = time.monotonic()
        stream = await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True, max_tokens_to_sample=chunks)
        with anyio.fail_after(chunks * gap * 3 + 30):
            await drain(stream, received, stamps)
        took = time.monotonic() - started
    assert stream.completion.stop_reason in ("end_turn", "max_tokens")
    assert stream.completion.completion == "".join(received)
    largest_gap = max(b - a for a, b in itertools.pairwise(stamps))
    return took, largest_gap, stream.completion.completion


@pytest.mark.asyncio
async def test_a_slow_but_steady_stream_is_not_cut(bedrock_emulator: BedrockEmulator) -> None:
    """A frame every 0.2 s for about 2.5 s, under 0.5 s idle and read timeouts, arrives whole."""
    took, largest_gap, text = await _steady(bedrock_emulator, gap=0.2, chunks=8, idle=0.5)
    record_figure(
        "steady stream (CI): duration / largest gap / idle timeout (s)", (round(took, 2), round(largest_gap, 3), 0.5)
    )
    assert len(text.split()) == 8
    assert took >= 4 * 0.5, "the stream lasted several idle timeouts"


@pytest.mark.soak
@pytest.mark.asyncio
async def test_a_slow_but_steady_stream_is_not_cut_soak(bedrock_emulator: BedrockEmulator) -> None:
    """A frame every second for about 90 s, under 2.5 s idle and read timeouts, arrives whole."""
    took, largest_gap, text = await _steady(bedrock_emulator, gap=1.0, chunks=86, idle=2.5)
    record_figure(
        "steady stream (soak): duration / largest gap / idle timeout (s)", (round(took, 2), round(largest_gap, 3), 2.5)
    )
    assert len(text.split()) == 86
    assert took >= 90
