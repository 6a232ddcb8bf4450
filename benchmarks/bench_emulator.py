"""Requests per second of the Bedrock emulator on one core, driven by a raw-socket client in another process.

Run: ``python benchmarks/bench_emulator.py [--quick] [--seconds 3] [--connections 16] [--no-save]``; the figures
go to ``benchmarks/results/emulator.json``.

The emulator runs as ``python -m bedrock_chat.emulator`` pinned to one CPU; this process (the client)
pins itself to the others, when the machine has them. The client is deliberately dumb: requests are
built and signed once (with botocore; the emulator accepts a replayed signature for 5 minutes), sent
over keep-alive connections without pipelining, and responses are read just far enough to find their
end. A client this cheap measures the server, not itself: its own cost per request is printed next to
the server's so the reader can check that claim.

Scenarios: InvokeModel with a short reply, with signature verification on and off, and a 100-chunk
response stream (requests/s and frames/s).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import _results
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS_KEY = "AKIDBENCHMARK"
SECRET_KEY = "benchmark-secret"
REGION = "us-east-1"


@contextmanager
def emulator(*extra: str) -> Iterator[str]:
    """Start the emulator in its own process on CPU 0; yields its endpoint URL."""
    command = [sys.executable, "-m", "bedrock_chat.emulator", "--port", "0"]
    command += ["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--region", REGION, *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(process.pid, {0})
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("endpoint_url="):
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield line.removeprefix("endpoint_url=")
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def build_request(endpoint: str, path: str, body: dict[str, object]) -> bytes:
    """The raw bytes of one signed POST (signed once, replayed for the whole run)."""
    data = json.dumps(body).encode()
    host = endpoint.removeprefix("http://")
    request = AWSRequest(
        method="POST", url=f"{endpoint}{path}", data=data, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "bedrock", REGION).add_auth(request)
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class Connection:
    """One keep-alive connection that knows where a response ends (Content-Length or chunked)."""

    def __init__(self, address: tuple[str, int], request: bytes) -> None:
        self.sock = socket.create_connection(address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.request = request
        self.buffer = b""
        self.completed = 0

    def send(self) -> None:
        self.sock.sendall(self.request)  # small requests: the socket buffer always takes them whole

    def on_readable(self) -> bool:
        """Consume data; returns True when a whole response has arrived."""
        self.buffer += self.sock.recv(1 << 20)
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end == -1:
            return False
        head = self.buffer[: head_end + 2].lower()  # keep one CRLF so every header line ends with one
        if not head.startswith(b"http/1.1 200"):
            raise RuntimeError(f"unexpected response: {self.buffer[:300]!r}")
        marker = b"content-length: "
        at = head.find(marker)
        if at != -1:
            length = int(head[at + len(marker) : head.find(b"\r\n", at)])
            done = len(self.buffer) >= head_end + 4 + length
        else:
            done = self.buffer.endswith(b"\r\n0\r\n\r\n")
        if done:
            self.buffer = b""
            self.completed += 1
        return done


def drive(endpoint: str, request: bytes, *, connections: int, seconds: float) -> tuple[float, float]:
    """Requests/s over ``seconds`` after a short warm-up, and the client's CPU seconds per request."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    conns = [Connection((host, int(port)), request) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        conn.send()
    try:
        started = cpu_started = 0.0
        warm_until = time.perf_counter() + 0.5
        measuring = False
        while True:
            now = time.perf_counter()
            if not measuring and now >= warm_until:
                measuring, started, cpu_started = True, now, time.process_time()
                for conn in conns:
                    conn.completed = 0
            if measuring and now - started >= seconds:
                break
            for key, _ in selector.select(timeout=5):
                conn = key.data
                if conn.on_readable():
                    conn.send()
        elapsed = time.perf_counter() - started
        total = sum(conn.completed for conn in conns)
        return total / elapsed, (time.process_time() - cpu_started) / max(total, 1)
    finally:
        selector.close()
        for conn in conns:
            conn.sock.close()


def main(argv: list[str] | None = None) -> None:
    """Run the scenarios, print one line each and save them (unless ``--no-save``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, help="measured seconds per scenario (default 3; quick 1)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="1 s per scenario")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/emulator.json alone")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (1.0 if args.quick else 3.0)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
    messages = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "Hello, emulator"}],
    }
    model = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0"
    print(f"emulator on 1 core, {args.connections} keep-alive connections, {args.seconds:.0f} s per scenario")
    scenarios = [
        ("InvokeModel, SigV4 verified", (), f"{model}/invoke", messages),
        ("InvokeModel, --no-verify-signatures", ("--no-verify-signatures",), f"{model}/invoke", messages),
        (
            "stream of 100 text chunks, verified",
            ("--reply-tokens", "100", "--chunk-tokens", "1"),
            f"{model}/invoke-with-response-stream",
            {**messages, "max_tokens": 100},
        ),
    ]
    rows: list[dict[str, Any]] = []
    for label, flags, path, body in scenarios:
        with emulator(*flags) as endpoint:
            rate, client_cpu = drive(
                endpoint,
                build_request(endpoint, path, body),
                connections=args.connections,
                seconds=args.seconds,
            )
        extra = f" ({rate * 105:,.0f} frames/s)" if "stream" in label else ""
        print(
            f"  {label:<40} {rate:>8,.0f} requests/s{extra};  server {1e6 / rate:6.0f} us/request, "
            f"client {client_cpu * 1e6:4.0f} us/request"
        )
        rows.append({"scenario": label, "rps": rate, "client_cpu_us_per_request": client_cpu * 1e6})
    if not args.no_save:
        data = {"connections": args.connections, "seconds": args.seconds, "scenarios": rows}
        _results.save("emulator", data, _results.metadata(quick=args.quick))


def render(document: dict[str, Any]) -> str:
    """The README's emulator table, from ``results/emulator.json``."""
    data = document["data"]
    lines = [
        f"| emulator on one core, {data['connections']} keep-alive connections | requests/s | "
        "server us/request | the load client's CPU us/request |",
        "|---|---:|---:|---:|",
    ]
    for row in data["scenarios"]:
        lines.append(
            f"| {row['scenario']} | {row['rps']:,.0f} | {1e6 / row['rps']:,.0f} | "
            f"{row['client_cpu_us_per_request']:,.0f} |"
        )
    lines += ["", _results.caption(document, "python benchmarks/bench_emulator.py")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
