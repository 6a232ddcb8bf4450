"""A paced streaming server: many open streams at once, each trickling Bedrock's exact wire bytes.

Run: ``python benchmarks/_paced_server.py [--port 0] [--interval-ms 50] [--chunks 200] [--truncate N]``;
the first stdout line is ``endpoint_url=http://127.0.0.1:PORT`` (as the emulator prints it).

Why not the emulator: it builds and writes every stream from its own task, which is right for
correctness and far too costly for a thousand streams trickling at once (the server, not the client,
would be measured). So this server asks the real emulator (in a thread, at start-up) for one stream of
each kind -- InvokeModelWithResponseStream (``application/vnd.amazon.eventstream``) and the Messages
endpoint's ``/anthropic/v1/messages`` (``text/event-stream``) -- keeps the response head and every HTTP
chunk exactly as the emulator wrote them (one event per chunk, chunked transfer encoding), and replays
them to any number of clients.

Pacing: a response's head, the events before the first text and the first text event go out at once
(so time to first text measures the client); every further text event waits one interval, and the last
one carries the closing events with it. One timer, ticking every millisecond, drives every stream: a
stream lives in one of ``interval / tick`` buckets (by the tick its request arrived on), and each tick
writes one event to every stream of its bucket. Streams opened at different times are therefore out of
phase, as real users' streams are, and the server's cost is one ``transport.write`` per event.

Requests are routed by path (``.../invoke-with-response-stream`` or ``/anthropic/v1/messages``) and by the
body's ``max_tokens``: ``--chunks`` (the paced stream of that many text events) or 1 (a one-event stream,
sent at once, for warming up pools). Anything else is a 400, so a client sending what we did not expect
fails loudly instead of being measured on a different stream. Signatures are not checked.

``--truncate N`` ends every paced stream cleanly (the chunked terminator) after N text events, without
the closing events: the benchmark's chunk-count check must catch that.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import resource
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ACCESS_KEY, BenchmarkError, _server

INVOKE_PATH = "/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke-with-response-stream"
MESSAGES_PATH = "/anthropic/v1/messages"
TICK_S = 0.001
_MAX_TOKENS = re.compile(rb'"max_tokens"\s*:\s*(\d+)')
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_BAD_REQUEST = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
)


@dataclass(frozen=True)
class Recording:
    """One response as the emulator sent it: the head, the HTTP chunks before the first text event, the
    text events' chunks, the chunks after them, and the terminating chunk -- bytes exactly as captured."""

    head: bytes
    before: tuple[bytes, ...]
    texts: tuple[bytes, ...]
    after: tuple[bytes, ...]
    end: bytes

    def text_pieces(self) -> list[str]:
        """The text of every text event (what a client must hand its caller, in order)."""
        return [_text_of(_chunk_data(chunk)) or "" for chunk in self.texts]


def _chunk_data(chunk: bytes) -> bytes:
    """The data of one HTTP chunk (``size CRLF data CRLF``)."""
    size_line, _, rest = chunk.partition(b"\r\n")
    return rest[: int(size_line, 16)]


def _text_of(data: bytes) -> str | None:
    """The text of an event, if it is a text delta: an event-stream frame or an SSE event."""
    if data.startswith(b"event:"):
        name, _, rest = data.partition(b"\n")
        if name != b"event: content_block_delta":
            return None
        event = json.loads(rest.removeprefix(b"data: "))
    else:
        headers_length = int.from_bytes(data[4:8], "big")
        payload = json.loads(data[12 + headers_length : -4])
        event = json.loads(base64.b64decode(payload["bytes"]))
    delta = event.get("delta", {})
    text = delta.get("text") if event.get("type") == "content_block_delta" else None
    return text if isinstance(text, str) else None


def split_response(raw: bytes) -> Recording:
    """Cut a captured chunked response into its head and its HTTP chunks (each the emulator's one event)."""
    head_end = raw.index(b"\r\n\r\n") + 4
    head, body = raw[:head_end], raw[head_end:]
    if b"transfer-encoding: chunked" not in head.lower():
        raise BenchmarkError(f"the emulator's stream is not chunked: {head!r}")
    chunks: list[bytes] = []
    at = 0
    while True:
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end], 16)
        stop = line_end + 2 + size + 2
        if size == 0:
            end = body[at:stop]
            break
        chunks.append(body[at:stop])
        at = stop
    is_text = [_text_of(_chunk_data(chunk)) is not None for chunk in chunks]
    first = is_text.index(True)
    last = len(is_text) - 1 - is_text[::-1].index(True)
    if not all(is_text[first : last + 1]):
        raise BenchmarkError("the emulator's text events are not contiguous")
    return Recording(head, tuple(chunks[:first]), tuple(chunks[first : last + 1]), tuple(chunks[last + 1 :]), end)


def _exchange(host: str, port: int, path: str, body: dict[str, Any], extra: str) -> bytes:
    """One keep-alive request over a plain socket; the raw response up to its chunked terminator."""
    data = json.dumps(body).encode()
    auth = f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host"
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\nauthorization: {auth}, Signature={'0' * 64}\r\n"
        f"x-amz-date: 20250101T000000Z\r\n{extra}\r\n"
    ).encode() + data
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        raw = b""
        while not raw.endswith(b"\r\n0\r\n\r\n"):
            piece = sock.recv(65536)
            if not piece:
                raise BenchmarkError(f"the emulator closed {path} early: {raw[-200:]!r}")
            raw += piece
    return raw


def capture(chunks: int) -> dict[tuple[str, int], Recording]:
    """Ask the real emulator for each surface's stream of ``chunks`` text events and of one."""
    from bedrock_chat.emulator import EmulatorOptions, run_emulator_in_thread

    options = EmulatorOptions(verify_signatures=False, reply_tokens=chunks + 10, chunk_tokens=1)
    recordings: dict[tuple[str, int], Recording] = {}
    messages = [{"role": "user", "content": "Hello, emulator"}]
    with run_emulator_in_thread(options) as emulator:
        host, _, port = emulator.endpoint_url.removeprefix("http://").rpartition(":")
        for tokens in (chunks, 1):
            invoke = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": tokens, "messages": messages}
            raw = _exchange(host, int(port), INVOKE_PATH, invoke, "x-amzn-bedrock-accept: application/json\r\n")
            recordings["invoke", tokens] = split_response(raw)
            body = {"model": "anthropic.claude-haiku-4-5", "stream": True, "max_tokens": tokens, "messages": messages}
            raw = _exchange(host, int(port), MESSAGES_PATH, body, "anthropic-version: 2023-06-01\r\n")
            recordings["messages", tokens] = split_response(raw)
    for key, recording in recordings.items():
        if len(recording.texts) != key[1]:
            raise BenchmarkError(f"{key}: the emulator sent {len(recording.texts)} text events, not {key[1]}")
    return recordings


class _Connection(asyncio.Protocol):
    """One client connection: parses requests (keep-alive, one at a time) and holds its stream's place."""

    def __init__(self, server: PacedServer) -> None:
        self.server = server
        self.transport: asyncio.WriteTransport | None = None
        self.buffer = b""
        self.pending: tuple[bytes, ...] = ()  # the paced chunks still to send
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.pending = ()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        match = _CONTENT_LENGTH.search(self.buffer, 0, head_end + 2)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < head_end + 4 + length:
            return
        request, self.buffer = self.buffer[: head_end + 4 + length], self.buffer[head_end + 4 + length :]
        self.server.respond(self, request, head_end)


class PacedServer:
    """The buckets, the timer and the routing; see the module docstring."""

    def __init__(self, recordings: dict[tuple[str, int], Recording], interval_s: float, truncate: int | None) -> None:
        self.recordings = recordings
        self.ticks_per_interval = max(1, round(interval_s / TICK_S))
        self.buckets: list[list[_Connection]] = [[] for _ in range(self.ticks_per_interval)]
        self.truncate = truncate
        self.tick = 0
        self.start = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None

    def respond(self, connection: _Connection, request: bytes, head_end: int) -> None:
        transport = connection.transport
        assert transport is not None
        line = request[: request.index(b"\r\n")]
        path = line.split(b" ")[1].decode()
        surface = "messages" if path == MESSAGES_PATH else "invoke" if path.endswith("-with-response-stream") else ""
        match = _MAX_TOKENS.search(request, head_end)
        recording = self.recordings.get((surface, int(match.group(1)) if match else -1))
        if recording is None or connection.pending:
            message = json.dumps({"message": f"paced server: no stream for {line!r}"}).encode()
            transport.write(_BAD_REQUEST % (len(message), message))
            transport.close()
            return
        texts = recording.texts
        if self.truncate is not None and len(texts) > 1:
            paced = (*texts[1 : self.truncate], recording.end)
        else:
            paced = (*texts[1:-1], b"".join((texts[-1], *recording.after, recording.end)))
        if len(texts) == 1:
            transport.write(b"".join((recording.head, *recording.before, texts[0], *recording.after, recording.end)))
            return
        transport.write(b"".join((recording.head, *recording.before, texts[0])))
        connection.pending, connection.sent = paced, 0
        self.buckets[(self.tick - 1) % self.ticks_per_interval].append(connection)

    def on_tick(self) -> None:
        loop = self.loop
        assert loop is not None
        now = loop.time()
        buckets, count = self.buckets, self.ticks_per_interval
        while self.start + self.tick * TICK_S <= now:
            index = self.tick % count
            bucket = buckets[index]
            if bucket:
                kept: list[_Connection] = []
                for connection in bucket:
                    transport, pending = connection.transport, connection.pending
                    if transport is None or not pending:
                        continue
                    transport.write(pending[connection.sent])
                    connection.sent += 1
                    if connection.sent == len(pending):
                        connection.pending = ()
                    else:
                        kept.append(connection)
                buckets[index] = kept
            self.tick += 1
        loop.call_at(self.start + self.tick * TICK_S, self.on_tick)

    async def serve(self, host: str, port: int) -> None:
        self.loop = asyncio.get_running_loop()
        server = await self.loop.create_server(lambda: _Connection(self), host, port, backlog=4096)
        bound = server.sockets[0].getsockname()
        self.start = self.loop.time()
        self.loop.call_at(self.start, self.on_tick)
        print(f"endpoint_url=http://{bound[0]}:{bound[1]}", flush=True)
        async with server:
            await server.serve_forever()


def raise_fd_limit() -> None:
    """A thousand connections need more descriptors than the usual soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="_paced_server.py", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interval-ms", type=float, default=50.0, help="pause between text events (default 50)")
    parser.add_argument("--chunks", type=int, default=200, help="text events per paced stream (default 200)")
    parser.add_argument("--truncate", type=int, default=None, help="end streams after N text events (a test)")
    args = parser.parse_args(argv)
    if args.chunks < 2 or args.interval_ms < TICK_S * 1e3 or (args.truncate is not None and args.truncate < 1):
        parser.error("--chunks must be >= 2, --interval-ms >= 1 and --truncate >= 1")
    raise_fd_limit()
    server = PacedServer(capture(args.chunks), args.interval_ms / 1e3, args.truncate)
    try:
        import uvloop
    except ImportError:  # the bench extra has it; without it the server is slower, not wrong
        asyncio.run(server.serve(args.host, args.port))
    else:
        uvloop.run(server.serve(args.host, args.port))


@dataclass(frozen=True)
class PacedInfo:
    """A running paced server: its URL and its pid (for its CPU time in /proc)."""

    endpoint: str
    pid: int


@contextmanager
def paced_server(
    cpu: int | None, *, interval_ms: float, chunks: int, truncate: int | None = None, startup_timeout: float = 60.0
) -> Iterator[PacedInfo]:
    """Run this module as a server process pinned to ``cpu``; killed (its process group) on the way out."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--interval-ms",
        str(interval_ms),
        "--chunks",
        str(chunks),
    ]
    if truncate is not None:
        command += ["--truncate", str(truncate)]
    with _server(command, cpu, startup_timeout, lines=1) as info:
        assert info.pid is not None  # taskset execs the server: the pid is the server's own
        yield PacedInfo(info.endpoint, info.pid)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15, in clock ticks)."""
    import os

    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
