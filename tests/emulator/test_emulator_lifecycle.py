"""Running the emulator: asyncio and trio, the thread runner, stopping with stalled connections, body faults."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import anyio
import httpx
import pytest
import trio
from emulator_testing import Signer, sign_with_botocore

from bedrock_chat._core.eventstream import EventStreamDecoder, decode_chunk_payload
from bedrock_chat._errors import EventStreamError, IncompleteStreamError
from bedrock_chat.emulator import BedrockEmulator, EmulatorOptions, Faults, run_emulator_in_thread

QUOTED = "anthropic.claude-3-5-haiku-20241022-v1%3A0"
STREAM = f"/model/{QUOTED}/invoke-with-response-stream"
INVOKE = f"/model/{QUOTED}/invoke"
BODY = json.dumps(
    {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
).encode()
UNSIGNED = EmulatorOptions(verify_signatures=False)


@pytest.fixture
def signer() -> Signer:
    """botocore's signer, as a fixture."""
    return sign_with_botocore


def raw_post(path: str, body: bytes = BODY) -> bytes:
    """An unsigned POST (for emulators with verify_signatures=False)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body as far as it goes; whether the terminating zero-size chunk arrived."""
    out = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return out, True
        out += rest[:size]
        body = rest[size + 2 :]
    return out, False


@pytest.mark.asyncio
async def test_asyncio_emulator_serves_httpx(signer: Signer) -> None:
    """Under asyncio: an in-process emulator on port 0 answers an httpx client signed by botocore."""
    with anyio.fail_after(10):
        async with BedrockEmulator() as emu, httpx.AsyncClient(base_url=emu.endpoint_url) as client:
            assert emu.endpoint_url.startswith("http://127.0.0.1:")
            assert emu.port > 0
            response = await client.post(INVOKE, content=BODY, headers=signer(emu, INVOKE, BODY))
            assert response.status_code == 200
            assert response.json()["type"] == "message"


def test_trio_emulator_serves_httpx(signer: Signer) -> None:
    """Under trio: the same emulator code serves a streaming request."""

    async def main() -> tuple[int, bytes]:
        with trio.fail_after(10):
            async with BedrockEmulator() as emu, httpx.AsyncClient(base_url=emu.endpoint_url) as client:
                response = await client.post(STREAM, content=BODY, headers=signer(emu, STREAM, BODY))
                return response.status_code, response.content

    status, content = trio.run(main)
    assert status == 200
    decoder = EventStreamDecoder()
    decoder.feed(content)
    assert len(list(decoder)) > 5
    decoder.close()


@pytest.mark.asyncio
async def test_callers_exception_propagates_unwrapped() -> None:
    """An exception inside ``async with`` comes out as itself, not inside an ExceptionGroup."""
    with anyio.fail_after(10), pytest.raises(KeyError):
        async with BedrockEmulator():
            raise KeyError("mine")


@pytest.mark.asyncio
async def test_lifecycle_errors() -> None:
    """endpoint_url needs a running emulator, and one emulator cannot run twice at once."""
    emu = BedrockEmulator()
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.endpoint_url
    with anyio.fail_after(10):
        async with emu:
            with pytest.raises(RuntimeError, match="already running"):
                await emu.__aenter__()
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.port


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "path"), [("stall", STREAM), ("stall_mid_stream", STREAM), ("stall", INVOKE)])
async def test_stop_ends_stalled_responses(fault: str, path: str) -> None:
    """A stalled response sends headers (and maybe some frames), then nothing until the emulator stops it."""
    with anyio.fail_after(10):
        emu = BedrockEmulator(UNSIGNED)
        await emu.__aenter__()
        try:
            emu.enqueue_faults(fault)
            stream = await anyio.connect_tcp("127.0.0.1", emu.port)
        except BaseException:
            await emu.__aexit__(None, None, None)
            raise
        async with stream:
            received = b""
            try:
                await stream.send(raw_post(path))
                while b"\r\n\r\n" not in received:
                    received += await stream.receive()
                assert received.startswith(b"HTTP/1.1 200 ")
                assert emu.requests[-1].fault == fault
            finally:
                await emu.__aexit__(None, None, None)  # stopping must not wait for the stalled client
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break  # the emulator's stop closed the stalled connection
    body = received.partition(b"\r\n\r\n")[2]
    if path == STREAM:
        data, complete = dechunk(body)
        assert not complete
        decoder = EventStreamDecoder()
        decoder.feed(data)
        assert (len(list(decoder)) > 0) == (fault == "stall_mid_stream")


@pytest.mark.asyncio
async def test_stall_ends_when_the_client_leaves() -> None:
    """A stalled handler ends when its client disconnects; the server keeps serving others."""
    with anyio.fail_after(10):
        async with BedrockEmulator(UNSIGNED) as emu:
            emu.enqueue_faults("stall")
            stream = await anyio.connect_tcp("127.0.0.1", emu.port)
            await stream.send(raw_post(INVOKE))
            received = b""
            while b"\r\n\r\n" not in received:
                received += await stream.receive()
            await stream.aclose()
            async with httpx.AsyncClient(base_url=emu.endpoint_url) as client:
                response = await client.post(INVOKE, content=BODY, headers={"Content-Type": "application/json"})
            assert response.status_code == 200


def test_drop_mid_stream_closes_without_terminator(bedrock_emulator: BedrockEmulator) -> None:
    """drop_mid_stream sends about half the frames, then closes the socket without the last chunk."""
    emu = bedrock_emulator
    emu.options = UNSIGNED
    emu.enqueue_faults("drop_mid_stream")
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw_post(STREAM))
        data = read_until_closed(sock)
    body, complete = dechunk(data.partition(b"\r\n\r\n")[2])
    assert not complete
    decoder = EventStreamDecoder()
    decoder.feed(body)
    received = list(decoder)
    assert len(received) >= 1
    decoder.close()  # the cut falls between frames: what arrived is whole


def test_drop_on_invoke_cuts_the_sized_body(bedrock_emulator: BedrockEmulator) -> None:
    """On InvokeModel, drop_mid_stream sends half the announced Content-Length and closes."""
    emu = bedrock_emulator
    emu.options = UNSIGNED
    emu.enqueue_faults("drop_mid_stream")
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw_post(INVOKE))
        data = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    length = int(lengths[0])
    assert 0 < len(body) < length


def test_bad_crc_frame_is_detected(bedrock_emulator: BedrockEmulator) -> None:
    """bad_crc corrupts one frame's message CRC; a decoder fails exactly there."""
    emu = bedrock_emulator
    emu.options = UNSIGNED
    emu.enqueue_faults("bad_crc")
    response = httpx.post(f"{emu.endpoint_url}{STREAM}", content=BODY, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    decoder = EventStreamDecoder()
    decoder.feed(response.content)
    good = 0
    with pytest.raises(EventStreamError) as caught:  # noqa: PT012  (counts the frames before the bad one)
        for _ in decoder:
            good += 1
    assert not isinstance(caught.value, IncompleteStreamError)
    assert good >= 1
    assert "crc" in str(caught.value).lower()


@pytest.mark.parametrize(
    ("exception_type", "fields"),
    [
        ("throttlingException", {"message"}),
        ("modelStreamErrorException", {"message", "originalStatusCode", "originalMessage"}),
        ("internalServerException", {"message"}),
    ],
)
def test_stream_exception_frame(bedrock_emulator: BedrockEmulator, exception_type: str, fields: set[str]) -> None:
    """An exception frame replaces the rest of the stream, which still ends properly."""
    emu = bedrock_emulator
    emu.options = UNSIGNED
    emu.enqueue_faults(f"stream_exception:{exception_type}")
    response = httpx.post(f"{emu.endpoint_url}{STREAM}", content=BODY, headers={"Content-Type": "application/json"})
    decoder = EventStreamDecoder()
    decoder.feed(response.content)
    messages = list(decoder)
    decoder.close()
    last = messages[-1]
    assert (last.message_type, last.exception_type) == ("exception", exception_type)
    assert set(json.loads(last.payload)) == fields
    assert all(message.event_type == "chunk" for message in messages[:-1])
    assert len(messages) >= 2


def test_latency_and_stream_delays_are_applied(bedrock_emulator: BedrockEmulator) -> None:
    """Fixed latency, time to first byte and per-chunk delay slow the answer down and show in the metrics."""
    emu = bedrock_emulator
    faults = Faults(latency=0.05, time_to_first_byte=0.05, chunk_delay=0.005)
    emu.options = EmulatorOptions(verify_signatures=False, chunk_tokens=1, reply_tokens=10, faults=faults)
    started = time.monotonic()
    response = httpx.post(f"{emu.endpoint_url}{STREAM}", content=BODY, headers={"Content-Type": "application/json"})
    elapsed = time.monotonic() - started
    decoder = EventStreamDecoder()
    decoder.feed(response.content)
    frames = list(decoder)
    assert len(frames) == 15  # 10 text chunks and 5 structural events
    assert elapsed >= 0.05 + 0.05 + 14 * 0.005
    stop = json.loads(decode_chunk_payload(frames[-1].payload))
    assert stop["amazon-bedrock-invocationMetrics"]["firstByteLatency"] == 100
    assert stop["amazon-bedrock-invocationMetrics"]["invocationLatency"] == 100 + 14 * 5
    started = time.monotonic()
    response = httpx.post(f"{emu.endpoint_url}{INVOKE}", content=BODY, headers={"Content-Type": "application/json"})
    assert time.monotonic() - started >= 0.05
    assert response.headers["X-Amzn-Bedrock-Invocation-Latency"] == "50"


def test_thread_runner_serves_and_stops(signer: Signer) -> None:
    """run_emulator_in_thread serves from a daemon thread and frees its port on exit."""
    with run_emulator_in_thread() as emu:
        port = emu.port
        response = httpx.post(f"{emu.endpoint_url}{INVOKE}", content=BODY, headers=signer(emu, INVOKE, BODY))
        assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}{INVOKE}", content=BODY, timeout=5)


def test_thread_runner_on_trio() -> None:
    """The thread runner can use the trio backend."""
    with run_emulator_in_thread(UNSIGNED, backend="trio") as emu:
        response = httpx.post(f"{emu.endpoint_url}{INVOKE}", content=BODY, headers={"Content-Type": "application/json"})
        assert response.status_code == 200


def test_thread_runner_reports_bind_failures() -> None:
    """A port already in use raises OSError in the caller, promptly."""
    with (
        run_emulator_in_thread(UNSIGNED) as emu,
        pytest.raises(OSError, match=r"(?i)address already in use"),
        run_emulator_in_thread(port=emu.port),
    ):
        pass


def test_session_token_emulator(signer: Signer) -> None:
    """An emulator with a session token accepts requests carrying it and refuses those without."""
    options: Any = EmulatorOptions(session_token="SESSION")
    with run_emulator_in_thread(options) as emu:
        assert emu.session_token == "SESSION"
        good = httpx.post(
            f"{emu.endpoint_url}{INVOKE}", content=BODY, headers=signer(emu, INVOKE, BODY, session_token="SESSION")
        )
        bad = httpx.post(f"{emu.endpoint_url}{INVOKE}", content=BODY, headers=signer(emu, INVOKE, BODY))
    assert good.status_code == 200
    assert bad.status_code == 403
    assert bad.headers["x-amzn-ErrorType"].startswith("UnrecognizedClientException:")
