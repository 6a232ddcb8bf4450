"""Shared tools of the reliability tests: figures, an instrumented transport, a loop-stall meter, loopback servers.

Everything here is a measuring or provoking device; none of it replaces a part of the library. The
instrumented transport wraps a real pool (so ``checked_out_connections`` still sees it): it only
counts attempts and hands httpcore a ``trace`` callback, both per task through
context variables, so that concurrent requests are told apart without any global bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import itertools
import os
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp
import anyio
import anyio.abc
import anyio.to_thread
import httpx
from hypothesis import HealthCheck, settings

from bedrock_chat import AnthropicBedrock, AwsCredentials, RetryPolicy
from bedrock_chat._http.aiohttp_transport import AiohttpTransport
from bedrock_chat._http.httpcore_transport import HttpcoreTransport
from bedrock_chat._http.httptools_transport import HttptoolsTransport, _Connection, _Pool
from bedrock_chat.emulator import BedrockEmulator

__all__ = [
    "ATTEMPTS",
    "CountingCredentials",
    "FIGURES",
    "FUZZ_CI",
    "FUZZ_SOAK",
    "LeakWatch",
    "LoopMonitor",
    "LoopbackServer",
    "PHASE_HOOK",
    "SilentServer",
    "Tally",
    "TracingHttptoolsTransport",
    "TracingTransport",
    "client_for",
    "counted",
    "install_aiohttp_trace",
    "machine",
    "read_request",
    "record_figure",
    "tracemalloc_peak",
]

# ---------------------------------------------------------------------------------------------- figures

#: Measurements of this session, printed by the conftest's terminal summary when RELIABILITY_FIGURES is set.
FIGURES: dict[str, object] = {}


def record_figure(name: str, value: object) -> None:
    """Keep one measurement for the report (the last value of a name wins)."""
    FIGURES[name] = value


def machine() -> str:
    """The machine the figures were measured on: ``uname -a``, cores and Python."""
    uname = " ".join(os.uname())
    return f"{uname}; nproc={os.cpu_count()}; Python {sys.version.split()[0]}"


# ---------------------------------------------------------------------------------------------- hypothesis

# Profiles, applied per test as a parent of its own settings: loading one globally would change every
# other hypothesis test of the session too.
settings.register_profile(
    "reliability-ci",
    max_examples=3000,
    deadline=None,
    derandomize=True,  # CI-sized runs are reproducible; the soak profile explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)
settings.register_profile(
    "reliability-soak",
    max_examples=100_000,  # each soak test sets its own count; over a million in all
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)
FUZZ_CI = settings.get_profile("reliability-ci")
FUZZ_SOAK = settings.get_profile("reliability-soak")

#: Examples run per fuzz target in this session (a property runs its body once per example).
_EXAMPLES: dict[str, int] = {}


def counted(target: str) -> None:
    """Count one example of ``target`` and publish the running total as a figure."""
    _EXAMPLES[target] = _EXAMPLES.get(target, 0) + 1
    record_figure(f"fuzz examples: {target}", _EXAMPLES[target])


# ---------------------------------------------------------------------------------------------- transport


class Tally:
    """Attempts made by one logical request (each signed send counts one)."""

    __slots__ = ("attempts",)

    def __init__(self) -> None:
        self.attempts = 0


#: The tally of the request running in this task, if any.
ATTEMPTS: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("attempts", default=None)
#: httpcore's ``trace`` callback for requests sent from this task, if any: ``await hook(event, info)``.
PHASE_HOOK: contextvars.ContextVar[Callable[[str, dict[str, Any]], Awaitable[None]] | None] = contextvars.ContextVar(
    "phase_hook", default=None
)


class TracingTransport(httpx.AsyncBaseTransport):
    """A real pool (httpcore2's, the default under trio, or httpx's own), tracing phases per sending task.

    It has no whole-body fast path, so every request goes through ``handle_async_request`` and
    carries the task's ``trace`` callback; ``checked_out_connections`` looks at ``inner``'s pool.
    """

    enforces_read_timeouts = True

    def __init__(
        self, *, engine: str = "httpcore2", max_connections: int = 100, max_keepalive_connections: int | None = None
    ) -> None:
        keepalive = max_connections if max_keepalive_connections is None else max_keepalive_connections
        self.inner: httpx.AsyncBaseTransport
        if engine == "httpx":
            limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=keepalive)
            self.inner = httpx.AsyncHTTPTransport(limits=limits)
        else:
            assert engine == "httpcore2", engine
            self.inner = HttpcoreTransport(max_connections=max_connections, max_keepalive_connections=keepalive)
        self.sent = 0
        self.requests: list[httpx.Request] = []
        self.keep_requests = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Count, attach the task's trace hook, and send through the real pool."""
        self.sent += 1
        if self.keep_requests:
            self.requests.append(request)
        hook = PHASE_HOOK.get()
        if hook is not None:
            request.extensions = {**request.extensions, "trace": hook}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class FastPathTracingTransport(TracingTransport):
    """httpcore2's pool with the whole-body fast path the client uses for creates, traced like the rest."""

    def __init__(self, *, max_connections: int = 100, max_keepalive_connections: int | None = None) -> None:
        super().__init__(
            engine="httpcore2", max_connections=max_connections, max_keepalive_connections=max_keepalive_connections
        )

    async def post_and_read(
        self,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        timeouts: Mapping[str, Any],
        max_body: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Count, and send through httpcore2's fast path with the task's trace hook."""
        self.sent += 1
        assert isinstance(self.inner, HttpcoreTransport)
        hook = PHASE_HOOK.get()
        extensions = None if hook is None else {"trace": hook}
        return await self.inner.post_and_read(url, headers, body, timeouts, extensions, max_body=max_body)


async def _report(event: str) -> None:
    hook = PHASE_HOOK.get()
    if hook is not None:
        await hook(event, {})


class CountingCredentials:
    """A credential source that counts, per task, how often it is asked: once per signed attempt.

    Counting here rather than in a transport works whatever transport the client uses (aiohttp's
    whole-body fast path never builds an httpx request). It also reports the stage ``credentials.get``
    to the task's phase hook, and with ``thread_hop`` hands the keys out from a worker thread, as
    botocore's chain does.
    """

    def __init__(self, credentials: AwsCredentials, *, thread_hop: bool = False) -> None:
        self._credentials = credentials
        self._thread_hop = thread_hop
        self.asked = 0

    async def get(self) -> AwsCredentials:
        """The credentials; counted."""
        self.asked += 1
        tally = ATTEMPTS.get()
        if tally is not None:
            tally.attempts += 1
        await _report("credentials.get")
        if self._thread_hop:
            return await anyio.to_thread.run_sync(lambda: self._credentials)
        return self._credentials

    async def invalidate(self, stale: AwsCredentials) -> None:
        """Nothing to re-resolve."""


class _TracingConnection(_Connection):
    """Reports ``httptools.response_wait`` (request sent, waiting for the answer) and ``httptools.body``."""

    async def wait(self, ready_head: bool) -> None:
        await _report("httptools.response_wait")
        await super().wait(ready_head)

    async def _wait_for_bytes(self) -> None:
        if self.head_done:
            await _report("httptools.body")
        await super()._wait_for_bytes()


class _TracingPool(_Pool):
    """Reports ``httptools.connect`` before opening a connection; its connections report their stages."""

    connection_class = _TracingConnection

    async def _connect(self, seconds: float | None) -> _Connection:
        await _report("httptools.connect")
        return await super()._connect(seconds)


class TracingHttptoolsTransport(HttptoolsTransport):
    """Our httptools pool, reporting its stages to the sending task's phase hook as ``httptools.<stage>``."""

    pool_class = _TracingPool

    async def post_and_read(
        self,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        timeouts: Mapping[str, Any],
        max_body: int | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        await _report("httptools.request_start")
        return await super().post_and_read(url, headers, body, timeouts, max_body)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await _report("httptools.request_start")
        return await super().handle_async_request(request)


def install_aiohttp_trace(transport: httpx.AsyncBaseTransport) -> bool:
    """Report aiohttp's request stages to the sending task's phase hook as ``aiohttp.<signal>`` events.

    The client's aiohttp transport builds its session itself, so the trace config is appended to the
    session's list (what ``ClientSession(trace_configs=...)`` fills). False if ``transport`` is not one.
    """
    if not isinstance(transport, AiohttpTransport):
        return False
    config = aiohttp.TraceConfig()
    for signal in (
        "on_connection_create_start",
        "on_request_start",
        "on_request_headers_sent",
        "on_request_end",
        "on_response_chunk_received",
    ):

        async def callback(session: object, context: object, params: object, event: str = signal[3:]) -> None:
            await _report(f"aiohttp.{event}")

        getattr(config, signal).append(callback)
    config.freeze()
    transport._get_session()._trace_configs.append(config)
    return True


def client_for(
    emu: BedrockEmulator,
    *,
    retry: RetryPolicy | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **kwargs: Any,
) -> AnthropicBedrock:
    """An AnthropicBedrock pointed at ``emu`` with its credentials and the given retry policy."""
    kwargs.setdefault("access_key", emu.access_key)
    kwargs.setdefault("secret_key", emu.secret_key)
    if emu.session_token is not None:
        kwargs.setdefault("session_token", emu.session_token)
    return AnthropicBedrock(
        region=emu.region,
        endpoint_url=emu.endpoint_url,
        retry_policy=retry or RetryPolicy(max_retries=2, base=0.0, throttle_base=0.0),
        transport=transport,
        **kwargs,
    )


async def create_or_stream(
    client: AnthropicBedrock,
    kind: str,
    *,
    model: str,
    messages: list[dict[str, Any]],
    max_tokens: int,
    received: list[str] | None = None,
) -> None:
    """One ``create`` (``kind == "create"``), or one stream read to its end, each text piece kept in ``received``."""
    if kind == "create":
        await client.ChatCompletion.create(model=model, messages=messages, max_tokens_to_sample=max_tokens)
        return
    stream = await client.ChatCompletion.create(
        model=model, messages=messages, max_tokens_to_sample=max_tokens, stream=True
    )
    async with stream:
        async for chunk in stream:
            if received is not None:
                received.append(chunk.text)


# ---------------------------------------------------------------------------------------------- loop stalls


class LoopMonitor:
    """Wakes every ``interval`` seconds on the event loop and keeps the wake-up times, to find its longest stall.

    A stall is a gap between consecutive wake-ups; a loop that never blocks shows gaps of about ``interval``.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.ticks: list[float] = []

    async def run(self) -> None:
        """Tick until cancelled."""
        self.ticks.append(time.monotonic())
        while True:
            await anyio.sleep(self.interval)
            self.ticks.append(time.monotonic())

    def max_gap(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The longest gap between ticks among the gaps that overlap ``[start, end]`` (monotonic seconds)."""
        gaps = [b - a for a, b in itertools.pairwise(self.ticks) if b >= start and a <= end]
        return max(gaps, default=0.0)


# ---------------------------------------------------------------------------------------------- servers


class LoopbackServer:
    """A TCP server on a free loopback port, in the test's own event loop, that runs ``_handle`` on each connection.

    Use as ``async with Server(...) as server:``; leaving the block cancels the connections still open
    and closes the listener. Subclasses say what a connection gets by overriding ``_handle``.
    """

    def __init__(self) -> None:
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._group: anyio.abc.TaskGroup | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._listener is not None
        port: int = self._listener.extra(anyio.abc.SocketAttribute.local_port)
        return port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._listener.serve, self._handle)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._group is not None
        assert self._listener is not None
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        await self._listener.aclose()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        raise NotImplementedError


async def read_request(stream: anyio.abc.SocketStream) -> tuple[list[str], bytes]:
    """Read one HTTP/1.1 request: its head's lines (request line first) and its body (``content-length`` bytes).

    Raises what the stream raises (``anyio.EndOfStream`` when the client goes before the request ends).
    """
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0)
    while len(body) < length:
        body += await stream.receive()
    return lines, body


class SilentServer(LoopbackServer):
    """A raw TCP server on a free loopback port that accepts connections and never answers.

    ``accepted`` counts connections, ``received`` the bytes read from them (and discarded). With
    ``send`` set, each connection is first sent those bytes, then nothing more.
    """

    def __init__(self, send: bytes = b"", then: Callable[[anyio.abc.SocketStream], Awaitable[None]] | None = None):
        super().__init__()
        self.accepted = 0
        self.received = 0
        self._send = send
        self._then = then

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        async with stream:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError, OSError):
                if self._send:
                    await stream.send(self._send)
                if self._then is not None:
                    await self._then(stream)
                while data := await stream.receive():
                    self.received += len(data)


# ---------------------------------------------------------------------------------------------- leaks


class LeakWatch:
    """Catches what a leaked task or resource reports: loop exception-handler calls, unraisable exceptions, warnings.

    Use inside a running asyncio loop: ``with LeakWatch() as watch: ...``; on exit it collects garbage
    (so that finalisers run while it is still listening) and ``watch.problems`` lists what was reported:
    "Task was destroyed but it is pending", "Task exception was never retrieved", unclosed transports,
    ResourceWarnings.
    """

    def __init__(self, *, ignore: tuple[str, ...] = ()) -> None:
        self.problems: list[str] = []
        self.ignored = 0
        self._ignore = ignore
        self._loop: asyncio.AbstractEventLoop | None = None
        self._old_handler: Any = None
        self._old_hook: Any = None
        self._warnings: contextlib.ExitStack | None = None
        self._caught: list[warnings.WarningMessage] = []

    def __enter__(self) -> LeakWatch:
        with contextlib.suppress(RuntimeError):  # not on asyncio (trio has no such handler)
            self._loop = asyncio.get_running_loop()
        if self._loop is not None:
            self._old_handler = self._loop.get_exception_handler()
            self._loop.set_exception_handler(self._on_loop_exception)
        self._old_hook = sys.unraisablehook
        sys.unraisablehook = self._on_unraisable
        self._warnings = contextlib.ExitStack()
        self._caught = self._warnings.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            for _ in range(3):
                gc.collect()
        finally:
            assert self._warnings is not None
            self._warnings.close()
            sys.unraisablehook = self._old_hook
            if self._loop is not None:
                self._loop.set_exception_handler(self._old_handler)
        for caught in self._caught:
            text = f"warning: {caught.category.__name__}: {caught.message}"
            if any(pattern in text for pattern in self._ignore):
                self.ignored += 1
            else:
                self.problems.append(text)

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.problems.append(f"loop: {context.get('message')!s}: {context.get('exception')!r}")

    def _on_unraisable(self, unraisable: Any) -> None:
        self.problems.append(f"unraisable: {unraisable.exc_type.__name__}: {unraisable.exc_value!r}")


@contextlib.contextmanager
def tracemalloc_peak() -> Iterator[list[int]]:
    """``with tracemalloc_peak() as box:`` -- box holds [peak bytes, bytes still allocated] afterwards."""
    import tracemalloc

    box: list[int] = [0, 0]
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield box
    finally:
        current, peak = tracemalloc.get_traced_memory()
        box[0], box[1] = peak - base, current - base
        if started:
            tracemalloc.stop()
