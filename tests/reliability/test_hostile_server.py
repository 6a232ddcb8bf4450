"""The client against a misbehaving server: endless bodies, trickled bytes, and pages of the wrong type.

A small HTTP/1.1 server in the test (raw sockets on a free loopback port, in the test's own event loop)
reads each request and then misbehaves as each test scripts it: it announces or sends a body larger
than the client's cap, sends an answer a kilobyte (or its headers a byte) at a time, answers a stream
with an HTML page. Every test runs on each default transport: aiohttp's under asyncio, httpcore2's
under trio, and httpx's own (under asyncio). Each response says ``connection: close``, so the server's
``requests`` count is the client's attempts.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc
import httpx
import pytest
from e2e_helpers import checked_out_connections

from bedrock_chat import (
    AnthropicBedrock,
    APIError,
    ChatCompletionStream,
    ConfigurationError,
    EventStreamError,
    InvalidRequestError,
    RequestTimeoutError,
    ResponseTooLargeError,
    RetryPolicy,
)
from bedrock_chat._cli.main import main as cli_main
from bedrock_chat.emulator import BedrockEmulator
from reliability.reliability_helpers import LoopbackServer, client_for, read_request, record_figure

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
HI = [{"role": "user", "content": "hello"}]
#: (event loop, http_backend): every default transport.
CONFIGS = [("asyncio", "httptools"), ("asyncio", "aiohttp"), ("trio", "httpcore2"), ("asyncio", "httpx")]
IDS = [f"{loop}-{backend}" for loop, backend in CONFIGS]
#: The deadline of the deadline tests; the read timeout is far longer, so only the deadline can fire.
DEADLINE = 0.5
#: How late past its bound a deadline may fire on a loaded two-core machine before it counts as a hang.
SLACK = 1.0
#: Before the bound means something else ended the call (timer granularity aside).
EARLY = 0.05
#: Every wait of these tests is bounded by this.
HANG = 20.0

Behaviour = Callable[[anyio.abc.SocketStream], Awaitable[None]]
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class HostileServer(LoopbackServer):
    """An HTTP/1.1 server on a free loopback port that reads a request, then runs ``behaviour`` on the socket.

    ``requests`` counts the requests read. The connection is closed once the behaviour returns.
    """

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__()
        self.requests = 0
        self.paths: list[str] = []
        self._behaviour = behaviour

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(*_GONE):
                lines, _ = await read_request(stream)
                self.requests += 1
                self.paths.append(lines[0].split(" ")[1])
                await self._behaviour(stream)


async def wait_for_close(stream: anyio.abc.SocketStream) -> None:
    """Read (and drop) whatever comes until the client closes the connection."""
    with contextlib.suppress(*_GONE):
        while await stream.receive():
            pass


def head(status: int = 200, content_type: str = "application/json", **headers: str) -> bytes:
    """A response head with ``connection: close`` and the given headers (``content_length`` -> content-length)."""
    lines = [f"HTTP/1.1 {status} X", f"content-type: {content_type}", "connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def answer_of_size(size: int) -> bytes:
    """A valid InvokeModel Messages answer of exactly ``size`` bytes (its text padded with 'a')."""
    template = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "text", "text": ""}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    bare = len(json.dumps(template).encode())
    assert size >= bare
    template["content"] = [{"type": "text", "text": "a" * (size - bare)}]
    body = json.dumps(template).encode()
    assert len(body) == size
    return body


def make_client(
    server: HostileServer, backend: str, *, read: float = 5.0, retries: int = 2, **kwargs: object
) -> AnthropicBedrock:
    """A client of ``server`` through ``backend``: read timeout ``read``, ``retries`` retries without backoff."""
    return AnthropicBedrock(
        access_key="AKIDEXAMPLE",
        secret_key="not-a-real-secret",
        region="us-east-1",
        endpoint_url=server.url,
        http_backend=backend,  # type: ignore[arg-type]
        timeout=httpx.Timeout(5.0, read=read),
        retry_policy=RetryPolicy(max_retries=retries, base=0.0, throttle_base=0.0, cap=20.0),
        **kwargs,  # type: ignore[arg-type]
    )


def run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    """Run ``main`` on ``loop``, bounded by HANG."""

    async def bounded() -> None:
        with anyio.fail_after(HANG):
            await main()

    anyio.run(bounded, backend=loop)


# ------------------------------------------------------------------------------------------- body caps


async def endless_chunked(stream: anyio.abc.SocketStream, status: int = 200) -> None:
    """A chunked body that never ends (64 KiB chunks for as long as the client reads)."""
    await stream.send(head(status, transfer_encoding="chunked"))
    piece = chunk(b"x" * 65536)
    while True:
        await stream.send(piece)


async def endless_until_close(stream: anyio.abc.SocketStream) -> None:
    """A body without a length, delimited by the connection's close, that never ends."""
    await stream.send(head(200))
    piece = b"x" * 65536
    while True:
        await stream.send(piece)


async def announced_huge(stream: anyio.abc.SocketStream) -> None:
    """A Content-Length of 200 MiB, ten bytes of it, then silence until the client closes."""
    await stream.send(head(200, content_length=str(200 * 1024 * 1024)) + b"x" * 10)
    await wait_for_close(stream)


async def error_endless(stream: anyio.abc.SocketStream) -> None:
    """A 500 whose error body never ends (a 500 is otherwise retried)."""
    await endless_chunked(stream, status=500)


CAP = 1024 * 1024


@pytest.mark.parametrize(
    "behaviour",
    [endless_chunked, endless_until_close, announced_huge, error_endless],
    ids=["chunked", "close-delimited", "content-length", "error-body"],
)
@pytest.mark.parametrize(("loop", "backend"), CONFIGS, ids=IDS)
def test_a_body_past_the_cap_is_refused_having_read_no_more_than_the_cap(
    loop: str, backend: str, behaviour: Behaviour
) -> None:
    """An endless or over-announced body (answer or error) raises ResponseTooLargeError once, holding about the cap."""
    took: list[float] = []

    async def main() -> None:
        async with HostileServer(behaviour) as server, make_client(server, backend, max_response_bytes=CAP) as client:
            started = time.monotonic()
            tracemalloc.start()
            try:
                with pytest.raises(ResponseTooLargeError) as raised:
                    await client.ChatCompletion.create(model=MODEL, messages=HI)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            took.append(time.monotonic() - started)
            assert checked_out_connections(client) == 0
            assert server.requests == 1, "a body past the cap is not retried"
            assert raised.value.limit == CAP
            assert raised.value.status == (500 if behaviour is error_endless else 200)
            assert "max_response_bytes=1,048,576" in str(raised.value)
            record_figure(
                f"body cap 1 MiB, {behaviour.__name__}, {loop}/{backend}: peak MiB (tracemalloc), s",
                (round(peak / 2**20, 2), round(took[0], 3)),
            )
            # The cap, one read past it, and the decoder's and parser's buffers: not the endless rest.
            assert peak < 4 * CAP

    run(loop, main)
    if behaviour is announced_huge:
        assert took[0] < 4.0, "refused on its Content-Length, without waiting for the body (read timeout 5 s)"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(("loop", "backend"), CONFIGS, ids=IDS)
def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_not(loop: str, backend: str, framing: str) -> None:
    """The cap is inclusive: an answer of exactly max_response_bytes is parsed; one byte over the cap is refused."""
    body = answer_of_size(200_000)

    async def answer(stream: anyio.abc.SocketStream) -> None:
        if framing == "chunked":
            await stream.send(head(200, transfer_encoding="chunked"))
            for start in range(0, len(body), 30_000):
                await stream.send(chunk(body[start : start + 30_000]))
            await stream.send(b"0\r\n\r\n")
        else:
            await stream.send(head(200, content_length=str(len(body))) + body)

    async def main() -> None:
        async with HostileServer(answer) as server:
            async with make_client(server, backend, max_response_bytes=len(body)) as client:
                chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
                assert chat.completion == json.loads(body)["content"][0]["text"]
            async with make_client(server, backend, max_response_bytes=len(body) - 1) as client:
                with pytest.raises(ResponseTooLargeError):
                    await client.ChatCompletion.create(model=MODEL, messages=HI)
                assert checked_out_connections(client) == 0
            assert server.requests == 2

    run(loop, main)


@pytest.mark.parametrize("backend", ["httptools", "aiohttp"])
def test_an_error_body_past_the_cap_on_a_stream_request_is_refused(backend: str) -> None:
    """A stream request answered with an endless error body: ResponseTooLargeError too (the error-read path)."""

    async def main() -> None:
        async with (
            HostileServer(error_endless) as server,
            make_client(server, backend, max_response_bytes=CAP) as client,
        ):
            with pytest.raises(ResponseTooLargeError):
                await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True)
            assert server.requests == 1
            assert checked_out_connections(client) == 0

    run("asyncio", main)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "1"])
def test_a_bad_max_response_bytes_is_a_configuration_error(value: object) -> None:
    """max_response_bytes must be an integer >= 1; the error names it."""
    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        AnthropicBedrock(region="us-east-1", api_key="k", max_response_bytes=value)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- deadlines


async def trickled_body(stream: anyio.abc.SocketStream) -> None:
    """Headers, then a kilobyte of a chunked body every 50 ms, forever: every read is within any read timeout."""
    await stream.send(head(200, transfer_encoding="chunked"))
    while True:
        await stream.send(chunk(b" " * 1024))
        await anyio.sleep(0.05)


async def trickled_headers(stream: anyio.abc.SocketStream) -> None:
    """The status line, then a header one byte every 20 ms, forever."""
    await stream.send(b"HTTP/1.1 200 OK\r\nx-slow: ")
    while True:
        await stream.send(b"a")
        await anyio.sleep(0.02)


async def throttled_with_a_long_retry_after(stream: anyio.abc.SocketStream) -> None:
    """A 503 that asks for a 10 s backoff."""
    body = b'{"message":"busy"}'
    await stream.send(
        head(
            503,
            content_length=str(len(body)),
            x_amzn_ErrorType="ServiceUnavailableException",
            x_amz_retry_after="10000",
        )
        + body
    )


def sse(event: str, data: dict[str, object]) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def trickled_sse_stream(stream: anyio.abc.SocketStream) -> None:
    """A Messages-endpoint stream that starts, then sends a word every 50 ms and never ends."""
    await stream.send(head(200, "text/event-stream", transfer_encoding="chunked"))
    start = sse("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}})
    block = sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
    await stream.send(chunk(start + block))
    while True:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word "}}
        await stream.send(chunk(sse("content_block_delta", delta)))
        await anyio.sleep(0.05)


async def create_and_drain(
    client: AnthropicBedrock, stream: bool, deadline: float | None, opened: list[ChatCompletionStream]
) -> None:
    """One create (a stream is read to its end and kept in ``opened``)."""
    if not stream:
        await client.ChatCompletion.create(model=MODEL, messages=HI, deadline=deadline)
        return
    answer = await client.ChatCompletion.create(
        model=MODEL, messages=HI, stream=True, surface="messages-endpoint", deadline=deadline
    )
    opened.append(answer)
    async with answer:
        async for _ in answer:
            pass


DEADLINE_CASES = {
    "trickled-body": (trickled_body, False),
    "trickled-headers": (trickled_headers, False),
    "retry-after-backoff": (throttled_with_a_long_retry_after, False),
    "trickled-stream": (trickled_sse_stream, True),
}


@pytest.mark.parametrize("where", ["client", "call"])
@pytest.mark.parametrize("case", list(DEADLINE_CASES))
@pytest.mark.parametrize(("loop", "backend"), CONFIGS, ids=IDS)
def test_the_deadline_ends_a_call_that_no_read_timeout_would(loop: str, backend: str, case: str, where: str) -> None:
    """A trickled body or headers, a long backoff or an endless stream end in RequestTimeoutError at the deadline.

    The read timeout (5 s) never fires: each byte comes in time. The deadline covers the whole call
    (the backoff between attempts, and a stream until it is closed) and is not retried.
    """
    behaviour, stream = DEADLINE_CASES[case]
    took: list[float] = []
    opened: list[ChatCompletionStream] = []

    async def main() -> None:
        client_deadline = DEADLINE if where == "client" else 3600.0
        call = None if where == "client" else DEADLINE
        async with HostileServer(behaviour) as server, make_client(server, backend, deadline=client_deadline) as client:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError, match="deadline") as raised:
                await create_and_drain(client, stream, call, opened)
            took.append(time.monotonic() - started)
            assert server.requests == 1, "the deadline is one budget: not retried"
            assert checked_out_connections(client) == 0
            if stream:
                assert raised.value.partial_text == opened[0].text
                assert opened[0].text.startswith("word word ")

    run(loop, main)
    record_figure(f"deadline {DEADLINE} s, {case}, {loop}/{backend}, per {where}: took (s)", round(took[0], 3))
    assert DEADLINE - EARLY <= took[0] <= DEADLINE + SLACK


@pytest.mark.parametrize(("loop", "backend"), CONFIGS, ids=IDS)
def test_a_slow_steady_body_is_not_cut_without_a_deadline(loop: str, backend: str) -> None:
    """By default there is no total deadline: a body trickled over 4x the read timeout arrives whole."""
    body = answer_of_size(20 * 1024)

    async def slow(stream: anyio.abc.SocketStream) -> None:
        await stream.send(head(200, transfer_encoding="chunked"))
        for start in range(0, len(body), 1024):
            await stream.send(chunk(body[start : start + 1024]))
            await anyio.sleep(0.05)
        await stream.send(b"0\r\n\r\n")

    async def main() -> None:
        async with HostileServer(slow) as server, make_client(server, backend, read=0.25) as client:
            started = time.monotonic()
            chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
            assert time.monotonic() - started > 4 * 0.25
            assert chat.completion == json.loads(body)["content"][0]["text"]

    run(loop, main)


def test_infinite_deadline_means_none() -> None:
    """``deadline=math.inf`` is accepted and cuts nothing."""
    body = answer_of_size(1000)

    async def answer(stream: anyio.abc.SocketStream) -> None:
        await stream.send(head(200, content_length=str(len(body))) + body)

    async def main() -> None:
        async with HostileServer(answer) as server, make_client(server, "httptools", deadline=math.inf) as client:
            chat = await client.ChatCompletion.create(model=MODEL, messages=HI, deadline=math.inf)
            assert chat.stop_reason == "end_turn"

    run("asyncio", main)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, True, "1"])
def test_a_bad_deadline_is_refused_naming_it(value: object) -> None:
    """A deadline must be seconds > 0: the client's is a ConfigurationError, a call's an InvalidRequestError."""
    with pytest.raises(ConfigurationError, match="deadline"):
        AnthropicBedrock(region="us-east-1", api_key="k", deadline=value)  # type: ignore[arg-type]

    async def main() -> None:
        async with AnthropicBedrock(region="us-east-1", api_key="k", endpoint_url="http://127.0.0.1:9") as client:
            with pytest.raises(InvalidRequestError, match="deadline") as raised:
                await client.ChatCompletion.create(model=MODEL, messages=HI, deadline=value)  # type: ignore[call-overload]
            assert raised.value.field == "deadline"

    run("asyncio", main)


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_the_cli_timeout_flag_is_the_deadline(stream: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """``chat --timeout`` bounds a call whose headers come and whose body never does (read timeout 600 s)."""
    started = time.monotonic()
    flags = [] if stream else ["--no-stream"]
    code = cli_main(["chat", "--emulator", "--stall-rate", "1", "--timeout", str(DEADLINE), *flags, "hello"])
    took = time.monotonic() - started
    assert code != 0
    assert "deadline" in capsys.readouterr().err
    assert took < DEADLINE + 2 * SLACK + 3  # the emulator's start and stop included


def test_the_batch_cli_timeout_flag_is_the_deadline(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    """``batch --timeout`` gives every record the deadline: a stalled answer becomes that record's timeout error."""
    import pathlib

    assert isinstance(tmp_path, pathlib.Path)
    source = tmp_path / "in.jsonl"
    record = {"anthropic_version": "bedrock-2023-05-31", "messages": HI, "max_tokens": 10}
    source.write_text(json.dumps({"recordId": "r1", "modelInput": record}) + "\n")
    target = tmp_path / "out.jsonl"
    args = ["batch", str(source), "-o", str(target), "--emulator", "--stall-rate", "1", "--timeout", str(DEADLINE)]
    cli_main(args)
    capsys.readouterr()
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == 1
    assert "deadline" in json.dumps(lines[0])


# ------------------------------------------------------------------------------------------- content type


async def html_page(stream: anyio.abc.SocketStream) -> None:
    """A 200 HTML page, as a captive portal or a misrouted proxy sends."""
    page = b"<html><body>Please sign in</body></html>"
    await stream.send(head(200, "text/html; charset=utf-8", content_length=str(len(page))) + page)


@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
@pytest.mark.parametrize(("loop", "backend"), CONFIGS, ids=IDS)
def test_a_stream_answered_with_an_html_page_fails_once_with_a_typed_error(
    loop: str, backend: str, surface: str
) -> None:
    """A 200 whose content type is not the surface's stream type is an EventStreamError, not a cut stream to retry."""

    async def main() -> None:
        async with HostileServer(html_page) as server, make_client(server, backend) as client:
            with pytest.raises(EventStreamError, match="text/html") as raised:
                await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True, surface=surface)
            assert not raised.value.retryable
            assert server.requests == 1
            assert checked_out_connections(client) == 0

    run(loop, main)


def test_a_create_answered_with_an_html_page_fails_once() -> None:
    """The non-streaming twin: a typed APIError (MalformedResponse), one attempt."""

    async def main() -> None:
        async with HostileServer(html_page) as server, make_client(server, "httptools") as client:
            with pytest.raises(APIError, match="MalformedResponse"):
                await client.ChatCompletion.create(model=MODEL, messages=HI)
            assert server.requests == 1

    run("asyncio", main)


@pytest.mark.asyncio
async def test_a_batch_runs_within_the_clients_deadline_and_refuses_a_per_request_one(
    bedrock_emulator: BedrockEmulator,
) -> None:
    """``create`` gained ``deadline``; a batch request without one still runs, and one with it fails, naming it."""
    async with client_for(bedrock_emulator, deadline=30.0) as client:
        ok, refused = await client.ChatCompletion.batch_in_order(
            [{"model": MODEL, "messages": HI}, {"model": MODEL, "messages": HI, "deadline": 5}]
        )
    assert ok.error is None
    assert isinstance(refused.error, InvalidRequestError)
    assert refused.error.field == "deadline"
