"""Cancellation: creates and streams cancelled at every stage of a request leak nothing and report nothing.

Each operation picks a stage -- credential resolution before signing, TCP connect, sending the request,
waiting for the response headers, reading the body (mid-stream for streams), the backoff sleep between
retries, or simply a random moment -- and its cancel scope gets a deadline the moment the request reaches
that stage (plus a random few milliseconds, so that it lands inside the stage, not at its edge). Stages
are recognised through the HTTP engine's own tracing (aiohttp's TraceConfig signals for the default
transport under asyncio, the ``trace`` extension for httpcore2's pool, the default under trio, and for
httpx's own transport),
a counting credential source and a hooked backoff sleep. Afterwards: no connection is checked out, the
client still works, and neither the event loop's exception handler, the unraisable hook nor the warnings
machinery heard of a destroyed task, an unretrieved exception or an unclosed resource, even after
``gc.collect()``.
"""

from __future__ import annotations

import collections
import gc
import random
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx
import pytest
from e2e_helpers import checked_out_connections

from bedrock_chat import AwsCredentials, BedrockError, RetryPolicy
from bedrock_chat.emulator import BedrockEmulator, Faults
from reliability.reliability_helpers import (
    PHASE_HOOK,
    CountingCredentials,
    FastPathTracingTransport,
    LeakWatch,
    TracingHttptoolsTransport,
    TracingTransport,
    client_for,
    create_or_stream,
    install_aiohttp_trace,
    record_figure,
)

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
HI = [{"role": "user", "content": "hi"}]
#: The warning trio gives for httpx's and httpcore's async generators collected unexhausted.
HTTPX_GENERATORS = ("Async generator 'httpx.", "Async generator 'httpcore.")

_POOL_BUG = (
    "upstream bug: on httpx's own transport (http_backend='httpx'), a request cancelled while its new connection is "
    "being assigned leaves that connection CONNECTING in httpcore 1.0.9's pool forever (encode/httpcore#1093), so "
    "the pool's slots run out and later requests end in PoolTimeout; the default transports are not affected"
)
#: The HTTP engines: the defaults under asyncio (httptools) and trio (httpcore2), aiohttp (asyncio through a
#: proxy), and httpx's own transport.
ENGINES = ("httptools", "aiohttp", "httpcore2", "httpx")

#: Stage -> the event that arms the cancellation, per HTTP engine (None: a random moment after the start).
_AIOHTTP_STAGES: dict[str, str | None] = {
    "signing": "credentials.get",
    "connect": "aiohttp.connection_create_start",
    "send request": "aiohttp.request_start",
    "response headers": "aiohttp.request_headers_sent",
    "body": "aiohttp.request_end",
    "backoff": "backoff.started",
    "random moment": None,
}
#: httpcore and httpcore2 name their trace events alike.
_HTTPCORE_STAGES: dict[str, str | None] = {
    "signing": "credentials.get",
    "connect": "connection.connect_tcp.started",
    "send request": "http11.send_request_headers.started",
    "response headers": "http11.receive_response_headers.started",
    "body": "http11.receive_response_body.started",
    "backoff": "backoff.started",
    "random moment": None,
}
#: Our httptools pool, as TracingHttptoolsTransport reports it.
_HTTPTOOLS_STAGES: dict[str, str | None] = {
    "signing": "credentials.get",
    "connect": "httptools.connect",
    "send request": "httptools.request_start",
    "response headers": "httptools.response_wait",
    "body": "httptools.body",
    "backoff": "backoff.started",
    "random moment": None,
}
STAGES: dict[str, dict[str, str | None]] = {
    stage: {
        "httptools": _HTTPTOOLS_STAGES[stage],
        "aiohttp": _AIOHTTP_STAGES[stage],
        "httpcore2": _HTTPCORE_STAGES[stage],
        "httpx": _HTTPCORE_STAGES[stage],
    }
    for stage in _AIOHTTP_STAGES
}


async def _phase(event: str) -> None:
    """Report a stage of our own hooks to the task's phase hook, as the HTTP engines report theirs."""
    hook = PHASE_HOOK.get()
    if hook is not None:
        await hook(event, {})


@attrs.define
class Operation:
    """One create or stream and where it is to be cancelled."""

    kind: str
    stage: str
    delay: float
    event: str | None = None
    scope: anyio.CancelScope | None = None
    armed: bool = False
    outcome: str = "?"

    async def on_event(self, event: str, info: dict[str, Any]) -> None:
        """The engines' trace callback (and our hooks'): arm the deadline when the chosen stage begins."""
        if not self.armed and event == self.event and self.scope is not None:
            self.armed = True
            self.scope.deadline = min(self.scope.deadline, anyio.current_time() + self.delay)


def plan(count: int, seed: int) -> list[Operation]:
    """``count`` operations over every stage and both kinds, with random delays."""
    rng = random.Random(seed)
    operations = []
    for i in range(count):
        stage = list(STAGES)[i % len(STAGES)]
        if stage == "random moment":
            delay = rng.uniform(0.0, 0.06)
        elif stage == "body":
            delay = rng.uniform(0.0, 0.03)
        else:
            delay = rng.choice([0.0, rng.uniform(0.0, 0.003)])
        operations.append(Operation(rng.choice(("create", "stream")), stage, delay))
    rng.shuffle(operations)
    return operations


async def run_cancellations(
    emu: BedrockEmulator, operations: list[Operation], *, concurrency: int, engine: str
) -> None:
    """Run the operations through our httptools pool, the aiohttp transport, httpcore2's or httpx's own (``engine``)."""
    emu.options = attrs.evolve(
        emu.options, faults=Faults(seed=3, throttle_rate=0.25, latency=0.003, chunk_delay=0.002), chunk_tokens=1
    )
    for op in operations:
        op.event = STAGES[op.stage][engine]
    # httpcore pools: few keep-alive connections, so that connections are opened (and so connect) all the time.
    # httpcore2 (the trio default) with its fast path, as the client uses it: creates skip httpx's objects.
    given: httpx.AsyncBaseTransport | None = None
    if engine == "httptools":
        given = TracingHttptoolsTransport(max_connections=32)
    elif engine == "httpcore2":
        given = FastPathTracingTransport(max_connections=32, max_keepalive_connections=4)
    elif engine == "httpx":
        given = TracingTransport(engine=engine, max_connections=32, max_keepalive_connections=4)
    client = client_for(
        emu,
        retry=RetryPolicy(max_retries=2, base=0.01, throttle_base=0.02),
        transport=given,
        http_backend="aiohttp" if engine == "aiohttp" else "auto",
        stream_idle_timeout=5.0,
        max_connections=32,
    )
    client._credentials = CountingCredentials(AwsCredentials(emu.access_key, emu.secret_key), thread_hop=True)
    pending = iter(operations)
    async with client:
        bedrock = await client._ready()
        assert install_aiohttp_trace(bedrock.transport) == (engine == "aiohttp")
        backoff_sleep: Callable[[float], Awaitable[Any]] = bedrock._sleep

        async def hooked_sleep(delay: float) -> None:
            await _phase("backoff.started")
            await backoff_sleep(delay)

        bedrock._sleep = hooked_sleep

        async def one(op: Operation) -> None:
            PHASE_HOOK.set(op.on_event)
            messages = [{"role": "user", "content": "cancel me somewhere"}]
            with anyio.CancelScope() as scope:
                op.scope = scope
                if op.stage == "random moment":
                    scope.deadline = anyio.current_time() + op.delay
                try:
                    await create_or_stream(client, op.kind, model=MODEL, messages=messages, max_tokens=30)
                except BedrockError as exc:
                    op.outcome = type(exc).__name__
                else:
                    op.outcome = "completed"
            if scope.cancelled_caught:
                op.outcome = "cancelled"

        async def worker() -> None:
            for op in pending:
                await one(op)

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        PHASE_HOOK.set(None)
        assert checked_out_connections(client) == 0
        # The client is still whole: a plain call works and releases its connection.
        emu.options = attrs.evolve(emu.options, faults=Faults())
        chat = await client.ChatCompletion.create(model=MODEL, messages=[{"role": "user", "content": "still there?"}])
        assert chat.completion
        assert checked_out_connections(client) == 0
    if given is not None:
        await given.aclose()


#: Stages every run must have cancelled in: each has many operations armed with certainty. The backoff
#: stage is reached only by an operation the emulator's seeded 25% throttling happens to hit first (one
#: in four of its 15 operations in a 105-operation run: none at all in a few percent of runs), so the CI runs
#: leave it to ``test_cancelled_during_backoff_leaks_nothing`` (scripted, certain) and only the soak
#: (143 backoff operations) requires it.
CERTAIN_STAGES = ("signing", "connect", "send request", "response headers", "body")


def summarise(prefix: str, operations: list[Operation], *, required: tuple[str, ...] = CERTAIN_STAGES) -> None:
    """Check every operation ended in a known way, and publish where the cancellations landed."""
    outcomes = collections.Counter(op.outcome for op in operations)
    assert "?" not in outcomes
    by_stage = collections.Counter(op.stage for op in operations if op.outcome == "cancelled" and op.armed)
    for stage in required:
        assert by_stage[stage] > 0, f"no operation was cancelled during {stage}: {by_stage}"
    record_figure(f"{prefix}: outcomes", dict(sorted(outcomes.items())))
    record_figure(f"{prefix}: cancelled once armed, by stage", dict(sorted(by_stage.items())))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.asyncio
async def test_cancellation_at_every_stage_leaks_nothing(bedrock_emulator: BedrockEmulator, engine: str) -> None:
    """210 creates and streams cancelled at every stage leave no connection, task, exception or warning behind."""
    operations = plan(210, seed=5)
    with LeakWatch() as watch, anyio.fail_after(60):
        await run_cancellations(bedrock_emulator, operations, concurrency=24, engine=engine)
    assert watch.problems == []
    summarise(f"cancellation (CI, asyncio, {engine})", operations)


def test_cancellation_on_trio_leaks_nothing(bedrock_emulator: BedrockEmulator) -> None:
    """The same under trio (httpcore2's pool, its default): 105 operations cancelled at every stage leave nothing.

    Trio reports every async generator collected unexhausted, so this also checks that no body
    generator is left suspended by a cancelled request.
    """
    operations = plan(105, seed=9)

    async def main() -> None:
        with anyio.fail_after(60):
            await run_cancellations(bedrock_emulator, operations, concurrency=12, engine="httpcore2")

    with LeakWatch() as watch:
        anyio.run(main, backend="trio")
    assert watch.problems == []
    summarise("cancellation (CI, trio, httpcore2)", operations)


def test_cancellation_on_trio_through_httpx_own_transport(bedrock_emulator: BedrockEmulator) -> None:
    """Trio with ``http_backend="httpx"``: nothing checked out; only httpx's/httpcore's generator warnings remain.

    Those warnings are httpx's and httpcore 1.0.9's own (their body streams are nested async generators
    closed without ``aclosing``); they are counted, and anything else is a failure.
    """
    operations = plan(105, seed=9)

    async def main() -> None:
        with anyio.fail_after(60):
            await run_cancellations(bedrock_emulator, operations, concurrency=12, engine="httpx")

    with LeakWatch(ignore=HTTPX_GENERATORS) as watch:
        anyio.run(main, backend="trio")
    assert watch.problems == []
    record_figure("cancellation (CI, trio, httpx own transport): httpx/httpcore generator warnings", watch.ignored)
    summarise("cancellation (CI, trio, httpx)", operations)


@pytest.mark.soak
@pytest.mark.parametrize(
    "engine",
    [
        "httptools",
        "aiohttp",
        "httpcore2",
        pytest.param("httpx", marks=pytest.mark.xfail(strict=True, reason=_POOL_BUG)),
    ],
)
@pytest.mark.asyncio
async def test_cancellation_soak(bedrock_emulator: BedrockEmulator, engine: str) -> None:
    """1,000 operations cancelled at every stage, at concurrency 64, leave nothing behind."""
    operations = plan(1000, seed=13)
    with LeakWatch() as watch, anyio.fail_after(600):
        await run_cancellations(bedrock_emulator, operations, concurrency=64, engine=engine)
    assert watch.problems == []
    summarise(f"cancellation (soak, asyncio, {engine})", operations, required=(*CERTAIN_STAGES, "backoff"))


@pytest.mark.parametrize(
    ("engine", "loop"),
    [
        ("httptools", "asyncio"),
        ("aiohttp", "asyncio"),
        ("httpcore2", "asyncio"),
        ("httpcore2", "trio"),
        ("httpx", "asyncio"),
    ],
)
@pytest.mark.parametrize("kind", ["create", "stream"])
def test_cancelled_during_backoff_leaks_nothing(
    bedrock_emulator: BedrockEmulator, engine: str, loop: str, kind: str
) -> None:
    """A call throttled once (scripted) and cancelled in the sleep before its retry leaves nothing behind."""
    slept: list[float] = []

    async def main() -> None:
        async with client_for(bedrock_emulator, http_backend=engine) as client:
            bedrock = await client._ready()

            async def sleep_then_be_cancelled(delay: float) -> None:
                slept.append(delay)
                scope.cancel()  # cancelled exactly while backing off, whatever the jitter drew
                await anyio.sleep(delay)

            bedrock._sleep = sleep_then_be_cancelled
            bedrock_emulator.enqueue_faults("throttle")
            with anyio.fail_after(10):
                with anyio.CancelScope() as scope:
                    stream = await client.ChatCompletion.create(model=MODEL, messages=HI, stream=kind == "stream")
                    raise AssertionError(f"the call returned {stream!r} instead of being cancelled")
                assert scope.cancelled_caught
                assert checked_out_connections(client) == 0
                chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
            assert chat.completion
            assert checked_out_connections(client) == 0

    with LeakWatch() as watch:
        anyio.run(main, backend=loop)
    assert watch.problems == []
    assert len(slept) == 1
    assert [r.status for r in bedrock_emulator.requests] == [429, 200]


@pytest.mark.parametrize(
    "engine",
    [
        "httpcore2",
        pytest.param(
            "httpx",
            marks=pytest.mark.xfail(
                strict=True,
                reason="upstream: httpx's own transport and httpcore 1.0.9 nest body generators without aclosing, "
                "so trio reports them (ResourceWarning) when a stream is left early",
            ),
        ),
    ],
)
def test_leaving_a_stream_early_on_trio_closes_every_generator(bedrock_emulator: BedrockEmulator, engine: str) -> None:
    """Under trio, breaking out of a stream and closing it leaves no async generator for the GC to find."""

    async def main() -> None:
        async with client_for(bedrock_emulator, http_backend=engine) as client:
            stream = await client.ChatCompletion.create(
                model=MODEL, messages=[{"role": "user", "content": "a long answer please"}], stream=True
            )
            async with stream:
                async for chunk in stream:
                    if chunk.text:
                        break
            del stream
            gc.collect()
            await anyio.lowlevel.checkpoint()  # let trio run the finalizer it scheduled

    with LeakWatch() as watch:
        anyio.run(main, backend="trio")
    record_figure(f"trio, {engine}: warnings after leaving one stream early", len(watch.problems))
    assert watch.problems == []


@pytest.mark.parametrize(
    "engine", ["httpcore2", pytest.param("httpx", marks=pytest.mark.xfail(strict=True, reason=_POOL_BUG))]
)
def test_requests_cancelled_under_pool_contention_release_their_slots(
    bedrock_emulator: BedrockEmulator, engine: str
) -> None:
    """Two requests on a one-connection pool, cancelled after 0 to 29 checkpoints, never strand its slot."""
    leaks: list[tuple[int, int]] = []
    after: list[str] = []

    async def main() -> None:
        for checkpoints in range(30):
            async with client_for(
                bedrock_emulator, http_backend=engine, max_connections=1, timeout=httpx.Timeout(5.0, pool=0.5)
            ) as client:
                await client._ready()
                async with anyio.create_task_group() as tg:
                    for _ in range(2):
                        tg.start_soon(
                            lambda: client.ChatCompletion.create(
                                model=MODEL, messages=[{"role": "user", "content": "x"}]
                            )
                        )
                    for _ in range(checkpoints):
                        await anyio.lowlevel.checkpoint()
                    tg.cancel_scope.cancel()
                if stranded := checked_out_connections(client):
                    leaks.append((checkpoints, stranded))
                    with anyio.fail_after(10):
                        try:
                            await client.ChatCompletion.create(
                                model=MODEL, messages=[{"role": "user", "content": "next"}]
                            )
                        except BedrockError as exc:
                            after.append(type(exc).__name__)

    anyio.run(main)  # deterministic under asyncio; trio strands connections too, at timing-dependent points
    record_figure(f"{engine} pool, asyncio: (checkpoints, stranded connections) / next request", (leaks, after))
    assert leaks == []
