"""A throughput server for the benchmarks: Bedrock's exact wire replies, captured once, replayed by route.

Why: the emulator builds every reply (routing, validation, the fake model, JSON, event-stream frames) and
tops out near the fastest client's rate on one core, so the suite's requests/s figures measured the
server. This server does the least HTTP/1.1 work that is still correct and answers with bytes the
emulator produced, so the clients see the same wire and the server stays far from its core's limit.

Theory of operation
-------------------
At start-up :func:`capture` runs the real emulator in this process (a thread, port 0, signatures unchecked,
``reply_tokens=1000``, ``chunk_tokens=1``, as the suite's emulator runs), sends it one real request per
kind over a plain socket -- InvokeModel with the suite's 32-token body, and InvokeModelWithResponseStream
with the suite's 1,000-chunk body -- and keeps each raw reply: status line, headers and body bytes
(chunked framing included). The requests carry ``Connection: close`` so the reply ends at EOF; that one
header, which only the capture asked for, is cut from the kept bytes. The emulator is then stopped.

Each kept reply becomes a :class:`Template`: the bytes split around the places that must differ per
reply -- the request id (``x-amzn-requestid``, and the message id Bedrock derives from it in a JSON
body) and the ``Date`` header. Per reply the first eight hex digits of the id are a counter (fixed
width, so lengths and ``Content-Length`` never change) and the date is the current second's; the reply
is one ``b"".join`` of the pieces and one ``transport.write``. The stream's message id lives inside a
base64 payload under a frame CRC and stays as captured.

:class:`ReplayProtocol` is one ``asyncio.Protocol`` per keep-alive connection (uvloop's loop when it is
installed; plain asyncio otherwise, noted on start-up). It buffers what arrives and answers each
request only once its headers and its whole ``Content-Length`` body are in; several pipelined requests
in one read get their replies in order, in one write. Route = method + path (the path percent-decoded
once on a miss, so ``:`` and ``%3A`` in the model id agree). Refused, then the connection closed: a
chunked request body (none of the contenders sends one: aiohttp, httpx, botocore and bedrock_chat all
send ``Content-Length``), a malformed or oversized request head, a bad ``Content-Length``. An unknown
route gets a 404 and the connection stays open. ``Expect: 100-continue`` gets its ``100 Continue``.

Run: ``python benchmarks/_replay_server.py [--host H] [--port P]``; the first line on stdout is
``endpoint_url=http://H:P``, the second names the event loop (the harness reads both).
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import itertools
import json
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from _clients import INVOKE_MAX_TOKENS, MODEL_PATH, STREAM_MAX_TOKENS, _messages_body

#: The request head may not be longer than this (the emulator's limit too).
MAX_HEAD_BYTES = 64 * 1024
#: Bodies longer than this are refused (Bedrock's documented maximum InvokeModel body).
MAX_BODY_BYTES = 25_000_000
#: The replies :func:`capture` takes: route path -> max_tokens of the suite's request for it.
SUITE_ROUTES = {
    f"{MODEL_PATH}/invoke": INVOKE_MAX_TOKENS,
    f"{MODEL_PATH}/invoke-with-response-stream": STREAM_MAX_TOKENS,
}
_CLOSE_LINE = b"\r\nConnection: close"
_ID_WIDTH = 8  # hex digits of the per-reply counter at the start of the request id


@dataclass(frozen=True)
class Template:
    """A captured reply split around its per-reply slots: ``pieces[0] slot[0] pieces[1] ... pieces[-1]``.

    ``slots`` name what goes between the pieces: ``"id"`` (the counter, ``_ID_WIDTH`` hex digits) or
    ``"date"`` (an HTTP date, 29 bytes).
    """

    pieces: tuple[bytes, ...]
    slots: tuple[str, ...]
    request_id: str

    def render(self, counter: int, date: bytes) -> bytes:
        """The reply with this counter and date."""
        fill = {"id": b"%08x" % (counter & 0xFFFFFFFF), "date": date}
        out = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            out.append(fill[slot])
            out.append(piece)
        return b"".join(out)


def make_template(raw: bytes) -> Template:
    """Split a raw reply at its request id (and the message id derived from it) and its ``Date`` value.

    The body is searched too when it is small (the InvokeModel JSON names ``msg_bdrk_<id hex>``); a long
    body (the event stream) is kept whole.
    """
    head_end = raw.index(b"\r\n\r\n") + 4
    head = raw[:head_end].decode("latin-1")
    request_id = date = ""
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-amzn-requestid":
            request_id = value.strip()
        elif name.strip().lower() == "date":
            date = value.strip()
    if len(request_id) != 36 or len(date) != 29:
        raise ValueError(f"the captured reply has no request id or date to patch: {head!r}")
    searched = len(raw) if len(raw) - head_end <= 65536 else head_end
    marks: list[tuple[int, int, str]] = []  # (start, length, slot)
    for needle in (request_id, request_id.replace("-", "")[:24]):
        at = raw.find(needle.encode(), 0, searched)
        while at != -1:
            marks.append((at, _ID_WIDTH, "id"))
            at = raw.find(needle.encode(), at + len(needle), searched)
    marks.append((raw.index(date.encode(), 0, head_end), len(date), "date"))
    marks.sort()
    pieces, slots, position = [], [], 0
    for start, length, slot in marks:
        pieces.append(raw[position:start])
        slots.append(slot)
        position = start + length
    pieces.append(raw[position:])
    return Template(tuple(pieces), tuple(slots), request_id)


def _drop_close_header(raw: bytes) -> bytes:
    """The reply as a keep-alive request gets it: without the ``Connection: close`` the capture asked for."""
    head_end = raw.index(b"\r\n\r\n")
    if raw.count(_CLOSE_LINE, 0, head_end + 2) != 1:
        raise ValueError(f"expected one 'Connection: close' in the captured head: {raw[:head_end]!r}")
    return raw.replace(_CLOSE_LINE, b"", 1)


def _exchange(host: str, port: int, path: str, body: bytes, timeout: float) -> bytes:
    """One request over a fresh socket; the raw reply up to EOF."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    return bytes(received)


def capture(routes: dict[str, int] | None = None, *, timeout: float = 30.0) -> dict[str, bytes]:
    """Start the emulator as the suite runs it, send each route its suite request; path -> raw reply."""
    from bedrock_chat.emulator import EmulatorOptions, run_emulator_in_thread

    options = EmulatorOptions(verify_signatures=False, reply_tokens=STREAM_MAX_TOKENS, chunk_tokens=1)
    replies: dict[str, bytes] = {}
    with run_emulator_in_thread(options) as emu:
        url = urllib.parse.urlsplit(emu.endpoint_url)
        assert url.hostname is not None
        assert url.port is not None
        for path, max_tokens in (routes or SUITE_ROUTES).items():
            body = json.dumps(_messages_body(max_tokens)).encode()
            raw = _exchange(url.hostname, url.port, path, body, timeout)
            if not raw.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"the emulator refused the capture request for {path}: {raw[:500]!r}")
            replies[path] = _drop_close_header(raw)
        if emu.errors:
            raise RuntimeError(f"the emulator failed during the capture: {emu.errors!r}")
    return replies


class _Date:
    """The ``Date`` value, formatted at most once a second."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(self._clock())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode()
        return self._value


def _simple_reply(status: str, message: str, *, close: bool) -> bytes:
    body = json.dumps({"message": message}).encode()
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + ("connection: close\r\n" if close else "") + "\r\n").encode() + body


class Replayer:
    """The routes and the per-server counter; one per server, shared by its connections."""

    def __init__(self, replies: dict[str, bytes]) -> None:
        self._routes: dict[bytes, Template] = {}
        for path, raw in replies.items():
            self._routes[b"POST " + urllib.parse.unquote(path).encode()] = make_template(raw)
        self._aliases: dict[bytes, Template | None] = {}
        self._counter: Iterator[int] = itertools.count(1)
        self.date = _Date()
        self.served = 0

    def reply(self, method: bytes, target: bytes) -> bytes | None:
        """The reply for this route, with the next request id; None for an unknown route."""
        key = method + b" " + target
        template = self._routes.get(key) or self._aliases.get(key)
        if template is None:
            if key in self._aliases or len(self._aliases) > 1024:
                return None
            decoded = method + b" " + urllib.parse.unquote_to_bytes(target.partition(b"?")[0])
            template = self._aliases[key] = self._routes.get(decoded)
            if template is None:
                return None
        self.served += 1
        return template.render(next(self._counter), self.date())


class ReplayProtocol(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection: buffer, answer each complete request in order."""

    def __init__(self, replayer: Replayer) -> None:
        self._replayer = replayer
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._continued = -1  # buffer offset of the head already answered with 100 Continue

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        out: list[bytes] = []
        close = False
        while buffer:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end == -1:
                if len(buffer) > MAX_HEAD_BYTES:
                    out.append(
                        _simple_reply("431 Request Header Fields Too Large", "request head too long", close=True)
                    )
                    close = True
                break
            parsed = self._parse_head(bytes(buffer[:head_end]))
            if isinstance(parsed, bytes):  # refused
                out.append(parsed)
                close = True
                break
            method, target, length, expect, wants_close = parsed
            total = head_end + 4 + length
            if len(buffer) < total:
                if expect and self._continued != head_end:
                    self._continued = head_end
                    out.append(b"HTTP/1.1 100 Continue\r\n\r\n")
                break
            del buffer[:total]
            self._continued = -1
            reply = self._replayer.reply(method, target)
            if reply is None:
                reply = _simple_reply(
                    "404 Not Found", f"replay server: no reply for {method.decode()} {target.decode()}", close=False
                )
            out.append(reply)
            if wants_close:
                close = True
                break
        transport = self._transport
        if transport is None:
            return
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if close:
            buffer.clear()
            transport.close()

    @staticmethod
    def _parse_head(head: bytes) -> tuple[bytes, bytes, int, bool, bool] | bytes:
        """(method, target, content length, expects 100-continue, wants close), or a refusal to send."""
        request_line, _, fields = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _simple_reply("400 Bad Request", "malformed request line", close=True)
        lowered = b"\r\n" + fields.lower() + b"\r\n"
        length = 0
        at = lowered.find(b"\r\ncontent-length:")
        if at != -1:
            value = lowered[at + 17 : lowered.find(b"\r\n", at + 17)].strip()
            if not value.isdigit() or int(value) > MAX_BODY_BYTES:
                return _simple_reply("400 Bad Request", "bad content-length", close=True)
            length = int(value)
        if b"\r\ntransfer-encoding:" in lowered:
            return _simple_reply("400 Bad Request", "chunked request bodies are not replayed", close=True)
        expect = b"\r\nexpect: 100-continue" in lowered
        wants_close = b"\r\nconnection: close" in lowered or parts[2] == b"HTTP/1.0"
        return parts[0], parts[1], length, expect, wants_close


def new_event_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """uvloop's loop if installed (the point of this server is speed), else asyncio's; and which it is."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop(), "asyncio (uvloop is not installed: slower, still correct)"
    return uvloop.new_event_loop(), "uvloop"


async def serve(replayer: Replayer, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start serving (``reuse_address``, a deep backlog for c=256 connection bursts)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: ReplayProtocol(replayer), host, port, backlog=1024)


def main(argv: list[str] | None = None) -> int:
    """Capture, serve, print the endpoint; run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    replayer = Replayer(capture())
    loop, name = new_event_loop()
    asyncio.set_event_loop(loop)

    async def run() -> None:
        server = await serve(replayer, args.host, args.port)
        bound = server.sockets[0].getsockname()
        host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        print(f"endpoint_url=http://{host}:{bound[1]}", flush=True)
        print(f"loop={name}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        loop.run_until_complete(run())
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
