"""Credentials under load: one refresh off the event loop for 200 waiting requests; expired tokens re-resolved once.

botocore's ``RefreshableCredentials`` refresh inside ``get_frozen_credentials``, which blocks (STS, SSO,
IMDS). The stand-in here blocks for a second in that call; the event loop must keep turning meanwhile
(a ticker measures its largest stall) and 200 concurrent requests must share that one refresh.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import anyio
import attrs
import httpx
import pytest
from e2e_helpers import checked_out_connections

from bedrock_chat import AnthropicBedrock, ExpiredTokenError
from bedrock_chat._http.credentials import BotocoreCredentialSource
from bedrock_chat.emulator import BedrockEmulator
from reliability.reliability_helpers import LoopMonitor, TracingTransport, client_for, record_figure

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
HI = [{"role": "user", "content": "hello"}]
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-temporary-session-token"
STALE_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-stale-session-token"
REFRESH_SECONDS = 1.0


class Frozen(NamedTuple):
    """What botocore's ``get_frozen_credentials`` returns."""

    access_key: str
    secret_key: str
    token: str | None


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)


class SlowRefreshingCredentials:
    """A RefreshableCredentials stand-in: every call after the first refreshes, blocking its thread for a second."""

    def __init__(self, frozen: Frozen, clock: Callable[[], float]) -> None:
        self._frozen = frozen
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry_time = _utc(clock() + 3600)
        self.calls = 0
        self.threads: set[int] = set()
        self.refreshes: list[tuple[float, float]] = []

    def get_frozen_credentials(self) -> Frozen:
        """The keys; refreshed (slowly, as STS would be) on every call but the first."""
        with self._lock:
            self.calls += 1
            self.threads.add(threading.get_ident())
            refresh = self.calls > 1
        if refresh:
            started = time.monotonic()
            time.sleep(REFRESH_SECONDS)  # the blocking refresh under test, in the worker thread
            self._expiry_time = _utc(self._clock() + 3600)
            self.refreshes.append((started, time.monotonic()))
        return self._frozen


class FakeSession:
    """botocore's Session, as far as BotocoreCredentialSource uses it."""

    def __init__(self, credentials: Any) -> None:
        self._credentials = credentials

    def get_credentials(self) -> Any:
        """The (refreshable) credentials object."""
        return self._credentials

    def get_config_variable(self, name: str) -> None:
        """No profile region."""


def with_source(client: AnthropicBedrock, source: BotocoreCredentialSource) -> AnthropicBedrock:
    """Give a client (not used yet) a credential source: the constructor has no parameter for one."""
    client._credentials = source
    return client


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_credentials_near_expiry_refresh_once_off_the_loop(bedrock_emulator: BedrockEmulator, backend: str) -> None:
    """200 concurrent requests on credentials near expiry share one 1-second refresh; the loop never stalls."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, session_token=TOKEN)
    now = [time.time()]
    credentials = SlowRefreshingCredentials(
        Frozen(bedrock_emulator.access_key, bedrock_emulator.secret_key, TOKEN), lambda: now[0]
    )
    source = BotocoreCredentialSource(session_factory=lambda profile: FakeSession(credentials), clock=lambda: now[0])
    monitor = LoopMonitor(interval=0.005)
    completions: list[str] = []
    timing: list[float] = []

    async def main() -> None:
        async with with_source(client_for(bedrock_emulator), source) as client:
            await client.ChatCompletion.create(model=MODEL, messages=HI)
            assert (source.resolutions, credentials.calls) == (1, 1)
            now[0] += 3600 - 300  # five minutes left: inside the ten-minute refresh margin, not expired

            async def one() -> None:
                chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
                completions.append(chat.completion)

            started = time.monotonic()
            with anyio.fail_after(30):
                async with anyio.create_task_group() as outer:
                    outer.start_soon(monitor.run)
                    async with anyio.create_task_group() as tg:
                        for _ in range(200):
                            tg.start_soon(one)
                    outer.cancel_scope.cancel()
            timing.append(time.monotonic() - started)
            assert checked_out_connections(client) == 0

    anyio.run(main, backend=backend)
    (took,) = timing
    assert len(completions) == 200
    assert (source.resolutions, credentials.calls) == (2, 2), "one refresh for all 200 requests"
    assert threading.get_ident() not in credentials.threads, "botocore was only ever called off the loop"
    (refresh_start, refresh_end) = credentials.refreshes[0]
    stall = monitor.max_gap(refresh_start, refresh_end)
    record_figure(
        f"credentials ({backend}): refresh took / loop's largest stall during it (s)",
        (round(refresh_end - refresh_start, 3), round(stall, 4)),
    )
    record_figure(
        f"credentials ({backend}): 200 requests incl. refresh (s) / largest stall overall (s)",
        (round(took, 3), round(monitor.max_gap(), 4)),
    )
    assert took >= REFRESH_SECONDS
    assert stall < 0.05


def _chain(tokens: list[str], emu: BedrockEmulator) -> tuple[BotocoreCredentialSource, list[int]]:
    """A credential source whose n-th botocore session hands out ``tokens[n]`` (the last one thereafter)."""
    sessions: list[int] = []

    class Plain:
        def __init__(self, token: str) -> None:
            self._frozen = Frozen(emu.access_key, emu.secret_key, token)
            self._expiry_time = _utc(time.time() + 3600)

        def get_frozen_credentials(self) -> Frozen:
            return self._frozen

    def factory(profile: str | None) -> FakeSession:
        sessions.append(1)
        return FakeSession(Plain(tokens[min(len(sessions), len(tokens)) - 1]))

    return BotocoreCredentialSource(session_factory=factory), sessions


@pytest.mark.asyncio
async def test_expired_token_is_refreshed_and_re_signed_once(bedrock_emulator: BedrockEmulator) -> None:
    """An expired token (emulator fault expired_token) makes the client re-resolve and re-sign once, then succeed."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, session_token=TOKEN)
    bedrock_emulator.enqueue_faults("expired_token")
    source, sessions = _chain([TOKEN], bedrock_emulator)
    async with with_source(client_for(bedrock_emulator), source) as client:
        with anyio.fail_after(10):
            chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
    assert chat.completion
    assert [r.status for r in bedrock_emulator.requests] == [403, 200]
    assert source.resolutions == len(sessions) == 2, "the retry was signed with freshly resolved credentials"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.asyncio
async def test_an_expired_token_that_stays_expired_does_not_loop(
    bedrock_emulator: BedrockEmulator, stream: bool
) -> None:
    """When the refreshed credentials are refused as expired too, the call fails after two attempts, not in a loop."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, session_token=TOKEN)
    bedrock_emulator.enqueue_faults(*["expired_token"] * 6)
    source, _ = _chain([TOKEN], bedrock_emulator)
    async with with_source(client_for(bedrock_emulator), source) as client:
        with anyio.fail_after(10), pytest.raises(ExpiredTokenError):
            await client.ChatCompletion.create(model=MODEL, messages=HI, stream=stream)
        assert checked_out_connections(client) == 0
    assert [r.status for r in bedrock_emulator.requests] == [403, 403]
    assert len(bedrock_emulator.pending_faults) == 4
    assert source.resolutions == 2


class ExpiringTransport(TracingTransport):
    """Answers like AWS for the stale session token (403 ExpiredTokenException); sends everything else on.

    The 403s are held back until ``burst`` requests carrying the stale token have arrived, so that every one
    of them was signed before any was told: the burst the client must absorb with one re-resolution.
    """

    def __init__(self, burst: int) -> None:
        super().__init__()
        self.expired_answers = 0
        self._burst = burst
        self._all_arrived = anyio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """A 403 for STALE_TOKEN, without touching the network; otherwise the default transport."""
        if request.headers.get("x-amz-security-token") == STALE_TOKEN:
            self.expired_answers += 1
            if self.expired_answers == self._burst:
                self._all_arrived.set()
            await self._all_arrived.wait()
            return httpx.Response(
                403,
                headers={
                    "x-amzn-ErrorType": "ExpiredTokenException:http://internal.amazon.com/coral/com.amazon.coral.service/"
                },
                json={"message": "The security token included in the request is expired"},
            )
        return await super().handle_async_request(request)


@pytest.mark.asyncio
async def test_a_burst_of_expired_answers_re_resolves_once(bedrock_emulator: BedrockEmulator) -> None:
    """50 concurrent requests all told their token expired share one re-resolution, then succeed with the new token."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, session_token=TOKEN)
    source, sessions = _chain([STALE_TOKEN, TOKEN], bedrock_emulator)
    transport = ExpiringTransport(burst=50)
    done: list[str] = []
    async with with_source(client_for(bedrock_emulator, transport=transport), source) as client:

        async def one() -> None:
            done.append((await client.ChatCompletion.create(model=MODEL, messages=HI)).completion)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(one)
        assert checked_out_connections(client) == 0
    await transport.aclose()
    record_figure("credentials: 50 expired answers -> resolutions", source.resolutions)
    assert len(done) == 50
    assert transport.expired_answers == 50
    assert source.resolutions == len(sessions) == 2
    assert len(bedrock_emulator.requests) == 50
    assert {r.header("x-amz-security-token") for r in bedrock_emulator.requests} == {TOKEN}
