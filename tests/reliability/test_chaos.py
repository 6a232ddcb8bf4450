"""Chaos: many creates and streams against an emulator that throttles, fails, drops and delays at random.

Every request must end -- in a result, or in a typed BedrockError once its retries are spent -- within a
bound; a stream that fails after handing out text must carry exactly that text; the pool must end with
nothing checked out. The soak variant runs 5,000 requests at concurrency 128, twice more under
tracemalloc, and compares the two runs' peak memory.
"""

from __future__ import annotations

import collections
import gc
import random
import time

import anyio
import attrs
import httpx
import pytest
from e2e_helpers import checked_out_connections

from bedrock_chat import AnthropicBedrock, AwsCredentials, BedrockError, RetryPolicy
from bedrock_chat.emulator import BedrockEmulator, Faults
from reliability.reliability_helpers import (
    ATTEMPTS,
    CountingCredentials,
    Tally,
    client_for,
    create_or_stream,
    record_figure,
    tracemalloc_peak,
)

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
#: Small backoffs keep the run short; their shape (exponential, jittered, throttles longer) is the library's.
RETRY = RetryPolicy(max_retries=2, base=0.01, throttle_base=0.05, cap=0.5)
#: Most attempts a create may make, and a stream (its re-opens spend the same one budget).
CREATE_ATTEMPTS = RETRY.max_retries + 1
STREAM_ATTEMPTS = RETRY.max_retries + 1
#: No request of this mix should come near this; hitting it is a hang.
PER_REQUEST_BOUND = 60.0

#: The issue's mix: 30% throttling, 5% 500/503, 2% dropped mid-stream, 2% exception frames.
CHAOS = Faults(
    throttle_rate=0.30,
    internal_error_rate=0.025,
    service_unavailable_rate=0.025,
    drop_mid_stream_rate=0.02,
    stream_exception_rate=0.02,
)


@attrs.define
class Outcome:
    """How one request of the run ended."""

    kind: str
    result: str
    attempts: int
    error: BedrockError | None
    received: str
    seconds: float


@attrs.define
class ChaosRun:
    """The outcomes of one run, and what the client's pool held at its end."""

    outcomes: list[Outcome]
    seconds: float
    checked_out: int
    sent: int

    def counts(self) -> dict[str, int]:
        """Outcome counts: ``ok`` or the error class name, by request kind."""
        counter = collections.Counter(f"{o.kind}:{o.result}" for o in self.outcomes)
        return dict(sorted(counter.items()))


async def _jitter_latency(emu: BedrockEmulator, rng: random.Random) -> None:
    """Random latency: every 20 ms the emulator gets new delays (and a new fault seed) until cancelled."""
    while True:
        faults = attrs.evolve(
            CHAOS,
            seed=rng.randrange(2**32),
            latency=rng.uniform(0.0, 0.02),
            time_to_first_byte=rng.uniform(0.0, 0.01),
            chunk_delay=rng.uniform(0.0, 0.002),
        )
        emu.options = attrs.evolve(emu.options, faults=faults)
        await anyio.sleep(0.02)


async def run_chaos(
    emu: BedrockEmulator, *, requests: int, concurrency: int, seed: int, http_backend: str = "auto"
) -> ChaosRun:
    """Send ``requests`` creates and streams (half each, shuffled) from ``concurrency`` workers.

    The client is the default one (pool of 100: 128 workers share it); only its credentials are
    wrapped, to count each request's attempts.
    """
    rng = random.Random(seed)
    kinds = iter(enumerate(rng.choice(("create", "stream")) for _ in range(requests)))
    outcomes: list[Outcome] = []
    client = client_for(
        emu, retry=RETRY, timeout=httpx.Timeout(10.0), stream_idle_timeout=5.0, http_backend=http_backend
    )
    credentials = CountingCredentials(AwsCredentials(emu.access_key, emu.secret_key))
    client._credentials = credentials

    async def one(index: int, kind: str) -> None:
        tally = Tally()
        ATTEMPTS.set(tally)
        received: list[str] = []
        error: BedrockError | None = None
        messages = [{"role": "user", "content": f"chaos request {index}"}]
        started = time.monotonic()
        try:
            with anyio.fail_after(PER_REQUEST_BOUND):
                await create_or_stream(client, kind, model=MODEL, messages=messages, max_tokens=40, received=received)
        except TimeoutError:
            result = "HANG"
        except BedrockError as exc:
            # Kept without its traceback: the frames would hold the run's objects, and the memory
            # comparison is about what the client holds, not what the test keeps to check.
            result, error = type(exc).__name__, exc.with_traceback(None)
        else:
            result = "ok"
        outcomes.append(Outcome(kind, result, tally.attempts, error, "".join(received), time.monotonic() - started))

    async def worker() -> None:
        for index, kind in kinds:
            await one(index, kind)

    started = time.monotonic()
    async with client:
        async with anyio.create_task_group() as jitter:
            jitter.start_soon(_jitter_latency, emu, random.Random(seed + 1))
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(worker)
            jitter.cancel_scope.cancel()
        checked_out = checked_out_connections(client)
    return ChaosRun(outcomes, time.monotonic() - started, checked_out, credentials.asked)


def check_run(run: ChaosRun, requests: int) -> None:
    """Everything the issue asks of a chaos run, asserted."""
    assert len(run.outcomes) == requests
    assert [o for o in run.outcomes if o.result == "HANG"] == []
    assert run.checked_out == 0
    for outcome in run.outcomes:
        if outcome.kind == "create":
            assert 1 <= outcome.attempts <= CREATE_ATTEMPTS
            if outcome.error is not None and getattr(outcome.error, "retryable", False):
                assert outcome.attempts == CREATE_ATTEMPTS, "a retryable error surfaces only after every retry"
        else:
            assert 1 <= outcome.attempts <= STREAM_ATTEMPTS
            if outcome.error is not None:
                # Nothing is lost: the error carries exactly the text handed out before it.
                assert (outcome.error.partial_text or "") == outcome.received
    succeeded = sum(o.result == "ok" for o in run.outcomes)
    assert succeeded >= 0.75 * requests, run.counts()


def record_run(prefix: str, run: ChaosRun, requests: int, concurrency: int) -> None:
    """Publish a run's figures."""
    record_figure(f"{prefix}: requests x concurrency", f"{requests} x {concurrency} in {run.seconds:.1f} s")
    record_figure(f"{prefix}: outcomes", run.counts())
    record_figure(f"{prefix}: attempts sent", run.sent)
    stream_attempts = [o.attempts for o in run.outcomes if o.kind == "stream"]
    record_figure(f"{prefix}: most attempts by one stream", max(stream_attempts, default=0))
    record_figure(f"{prefix}: slowest request (s)", round(max(o.seconds for o in run.outcomes), 3))


@pytest.mark.parametrize("http_backend", ["auto", "aiohttp"])
@pytest.mark.asyncio
async def test_chaos_every_request_ends_typed_and_the_pool_is_idle(
    bedrock_emulator: BedrockEmulator, http_backend: str
) -> None:
    """600 creates and streams at concurrency 64 under the issue's fault mix each end in a result or a typed error.

    ``auto`` is our httptools pool; aiohttp's, which asyncio uses through a proxy, gets the same mix.
    """
    with anyio.fail_after(120):
        run = await run_chaos(bedrock_emulator, requests=600, concurrency=64, seed=1, http_backend=http_backend)
    record_run("chaos (CI)" if http_backend == "auto" else f"chaos (CI, {http_backend})", run, 600, 64)
    check_run(run, 600)


def test_chaos_under_trio_every_request_ends_typed_and_the_pool_is_idle(bedrock_emulator: BedrockEmulator) -> None:
    """300 creates and streams at concurrency 32 under trio (httpcore2's pool) end in a result or a typed error."""

    async def main() -> ChaosRun:
        with anyio.fail_after(120):
            return await run_chaos(bedrock_emulator, requests=300, concurrency=32, seed=3)

    run = anyio.run(main, backend="trio")
    record_run("chaos (CI, trio)", run, 300, 32)
    check_run(run, 300)


@pytest.mark.soak
@pytest.mark.asyncio
async def test_chaos_soak_with_memory(bedrock_emulator: BedrockEmulator) -> None:
    """5,000 requests at concurrency 128, twice more under tracemalloc: the second run's peak is within 10%."""
    with anyio.fail_after(1800):
        warm = await run_chaos(bedrock_emulator, requests=1500, concurrency=128, seed=7)
        check_run(warm, 1500)
        run = await run_chaos(bedrock_emulator, requests=5000, concurrency=128, seed=11)
        record_run("chaos (soak)", run, 5000, 128)
        check_run(run, 5000)
        peaks: list[int] = []
        retained: list[int] = []
        for _ in range(2):
            gc.collect()  # both runs start from the same heap, not from whatever the last one left to collect
            with tracemalloc_peak() as box:
                measured = await run_chaos(bedrock_emulator, requests=5000, concurrency=128, seed=11)
            check_run(measured, 5000)
            peaks.append(box[0])
            retained.append(box[1])
    record_figure("chaos (soak): tracemalloc peak run 1 / run 2 (MiB)", [round(p / 2**20, 2) for p in peaks])
    record_figure("chaos (soak): retained after run 1 / run 2 (KiB)", [round(r / 2**10, 1) for r in retained])
    assert abs(peaks[1] - peaks[0]) <= 0.10 * peaks[0]


@pytest.mark.soak
@pytest.mark.asyncio
async def test_chaos_soak_on_httpcore2_transport(bedrock_emulator: BedrockEmulator) -> None:
    """5,000 requests at concurrency 128 through httpcore2 (the transport under trio) end typed, pool idle."""
    with anyio.fail_after(1800):
        run = await run_chaos(bedrock_emulator, requests=5000, concurrency=128, seed=17, http_backend="httpcore2")
    record_run("chaos (soak, httpcore2 transport)", run, 5000, 128)
    check_run(run, 5000)


async def read_stream(client: AnthropicBedrock) -> None:
    """Open a stream and read it to its end."""
    stream = await client.ChatCompletion.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    async with stream:
        async for _ in stream:
            pass


@pytest.mark.asyncio
async def test_a_stream_makes_at_most_max_retries_plus_one_attempts(bedrock_emulator: BedrockEmulator) -> None:
    """A stream throttled twice then stalled before any text, thrice over, is sent max_retries + 1 times at most."""
    bedrock_emulator.enqueue_faults(*(["throttle", "throttle", "stall"] * 3))
    async with client_for(bedrock_emulator, stream_idle_timeout=0.2) as client:
        with anyio.fail_after(30), pytest.raises(BedrockError):
            await read_stream(client)
        assert checked_out_connections(client) == 0
    record_figure("stream attempts with max_retries=2 (throttle, throttle, stall) x 3", len(bedrock_emulator.requests))
    assert len(bedrock_emulator.requests) <= 3
