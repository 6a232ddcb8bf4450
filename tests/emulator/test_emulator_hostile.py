"""Hostile clients against the emulator: descriptor exhaustion, slowloris, idle pools, floods, huge refused bodies.

Each test drives a real server with raw sockets from the test thread, under both anyio backends. Waits are
bounded by socket timeouts and deadlines; the short timeouts of ``ServerLimits`` keep every test under a
few seconds.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from emulator_testing import MESSAGES_BYTES, sign_with_botocore

from bedrock_chat._errors import ConfigurationError
from bedrock_chat.emulator import EmulatorOptions, ServerLimits, run_emulator_in_thread
from bedrock_chat.emulator._server import _Allowance

BACKENDS = ["asyncio", "trio"]
INVOKE = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: A complete, unsigned InvokeModel request (for servers started with --no-verify-signatures).
RAW_REQUEST = (
    f"POST {INVOKE} HTTP/1.1\r\nHost: emulator\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(MESSAGES_BYTES)}\r\n\r\n"
).encode() + MESSAGES_BYTES


def read_response(sock: socket.socket) -> http.client.HTTPResponse:
    """One whole response from ``sock`` (its socket timeout bounds the wait)."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout`` seconds; data read is discarded."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return False
        try:
            if not sock.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


# -- 1. running out of file descriptors ------------------------------------------------------------


@contextlib.contextmanager
def emulator_with_fd_limit(limit: int, backend: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``python -m bedrock_chat.emulator`` in a process whose RLIMIT_NOFILE is ``limit``; yields it and its port."""
    code = (
        "import resource, sys\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, hard))\n"
        "from bedrock_chat.emulator.__main__ import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["--port", "0", "--no-verify-signatures", "--backend", backend]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout

    def read_lines() -> None:  # a reader thread gives readline() a timeout
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    try:
        first = lines.get(timeout=30)
        assert first.startswith("endpoint_url=http://127.0.0.1:"), first
        yield process, int(first.strip().rsplit(":", 1)[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        reader.join(timeout=10)
        process.stdout.close()
        process.stderr.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts the server's descriptors in /proc")
@pytest.mark.parametrize("backend", BACKENDS)
def test_emfile_is_survived_and_the_server_recovers(backend: str) -> None:
    """Out of descriptors (RLIMIT_NOFILE 64), the server keeps serving what it holds, then accepts the rest.

    Before: the first accept() that failed with EMFILE escaped the task group and the process exited 1.
    """
    limit = 64
    with emulator_with_fd_limit(limit, backend) as (process, port):
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        first.sendall(RAW_REQUEST)
        assert read_response(first).status == 200
        # The server is idle now: every descriptor it has is one it keeps (this connection included).
        free = limit - len(os.listdir(f"/proc/{process.pid}/fd"))
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(free + 50)]
        for sock in socks:
            sock.sendall(RAW_REQUEST)
        # Connections are accepted in order; once the first `free` are answered the table is full, and the
        # server has already tried (and failed, EMFILE) to accept the next.
        for sock in socks[:free]:
            assert read_response(sock).status == 200
        first.sendall(RAW_REQUEST)
        assert read_response(first).status == 200
        assert len(os.listdir(f"/proc/{process.pid}/fd")) == limit
        # Each connection closed frees a descriptor, with which the server accepts the next one waiting.
        for index, sock in enumerate(socks):
            if index >= free:
                assert read_response(sock).status == 200
            sock.close()
        first.sendall(RAW_REQUEST)
        assert read_response(first).status == 200
        first.close()
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()


# -- 2. slowloris, idle keep-alive connections, floods ---------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_slowloris_connections_are_closed_by_the_header_timeout(backend: str) -> None:
    """50 connections trickling a header byte every 50 ms are all closed once the 0.5 s header timeout passes.

    The idle timeout (30 s) never fires here: only a bound on the whole header read catches a steady trickle.
    Before: no timeout at all, and the connections stayed open for as long as they trickled.
    """
    header_timeout = 0.5
    limits = ServerLimits(header_timeout=header_timeout, idle_timeout=30)
    with run_emulator_in_thread(EmulatorOptions(verify_signatures=False), limits=limits, backend=backend) as emu:
        opened = time.monotonic()
        socks = [socket.create_connection(("127.0.0.1", emu.port), timeout=5) for _ in range(50)]
        for sock in socks:
            sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: emulator\r\nX-Slow: ".encode())
            sock.setblocking(False)
        alive = set(socks)
        closed_after: list[float] = []
        deadline = opened + 5
        while alive and time.monotonic() < deadline:
            for sock in list(alive):
                try:
                    sock.send(b"a")
                except OSError:  # reset or broken pipe: closed by the server
                    alive.discard(sock)
                    closed_after.append(time.monotonic() - opened)
            for sock in select.select(list(alive), [], [], 0.05)[0]:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    alive.discard(sock)
                    closed_after.append(time.monotonic() - opened)
        for sock in socks:
            sock.close()
        assert not alive, f"{len(alive)} slow connections still open after 5 s"
        assert min(closed_after) >= header_timeout * 0.9
        # The server itself is fine.
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
        conn.request("POST", INVOKE, body=MESSAGES_BYTES, headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
        assert emu.errors == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_idle_keep_alive_connection_is_closed(backend: str) -> None:
    """A keep-alive connection left idle after its request is closed after ``idle_timeout``, not kept forever."""
    limits = ServerLimits(idle_timeout=0.3)
    with run_emulator_in_thread(EmulatorOptions(verify_signatures=False), limits=limits, backend=backend) as emu:
        sock = socket.create_connection(("127.0.0.1", emu.port), timeout=10)
        sock.sendall(RAW_REQUEST)
        assert read_response(sock).status == 200
        served = time.monotonic()
        assert wait_closed(sock, timeout=5)
        assert time.monotonic() - served >= 0.25
        sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_stalled_body_is_closed_by_the_idle_timeout(backend: str) -> None:
    """A request that announces 100 bytes of body and sends 10 is closed after ``idle_timeout``."""
    limits = ServerLimits(idle_timeout=0.3)
    with run_emulator_in_thread(EmulatorOptions(verify_signatures=False), limits=limits, backend=backend) as emu:
        sock = socket.create_connection(("127.0.0.1", emu.port), timeout=10)
        sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: e\r\nContent-Length: 100\r\n\r\n".encode() + b"{" * 10)
        assert wait_closed(sock, timeout=5)
        sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_connections_over_the_cap_wait_to_be_accepted(backend: str) -> None:
    """With ``max_connections=3``, a fourth connection is served only once one of three idle ones goes away."""
    limits = ServerLimits(max_connections=3, header_timeout=30, idle_timeout=30)
    with run_emulator_in_thread(EmulatorOptions(verify_signatures=False), limits=limits, backend=backend) as emu:
        holders = [socket.create_connection(("127.0.0.1", emu.port), timeout=10) for _ in range(3)]
        fourth = socket.create_connection(("127.0.0.1", emu.port), timeout=0.5)
        fourth.sendall(RAW_REQUEST)
        with pytest.raises(TimeoutError):  # not accepted: nothing reads the request
            fourth.recv(1)
        holders.pop().close()
        fourth.settimeout(10)
        assert read_response(fourth).status == 200
        for sock in [*holders, fourth]:
            sock.close()


def trickle(socks: list[socket.socket], every: float, within: float) -> list[float]:
    """Send one body byte on each socket every ``every`` seconds until the server closes them all, or ``within`` s.

    Returns when each socket was found closed, in seconds from the call; fewer entries than sockets if some
    were still open at the end. The pace comes from ``select``'s timeout, not from sleeps.
    """
    started = time.monotonic()
    alive = set(socks)
    closed_after: list[float] = []
    next_byte = started
    while alive and time.monotonic() - started < within:
        if time.monotonic() >= next_byte:
            next_byte += every
            for sock in list(alive):
                try:
                    sock.send(b"x")
                except OSError:  # reset or broken pipe: closed by the server
                    alive.discard(sock)
                    closed_after.append(time.monotonic() - started)
        wait = max(0.0, min(next_byte, started + within) - time.monotonic())
        for sock in select.select(list(alive), [], [], wait)[0] if alive else ():
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                alive.discard(sock)
                closed_after.append(time.monotonic() - started)
    return closed_after


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("head_start", [0, 50_000], ids=["trickle", "burst-then-trickle"])
def test_trickled_body_is_closed_by_the_minimum_rate(backend: str, head_start: int) -> None:
    """Three bodies trickled a byte every 0.25 s (each wait inside the 1 s idle timeout) hold no slot for long.

    With ``max_connections=3`` they hold every slot; the minimum rate (1,000 bytes/s by default) closes them
    about ``idle_timeout`` after their bodies start, and a fourth client is then served. Sending 50 KB at
    once first buys no longer pause: what the allowance gains is capped at ``idle_timeout``.
    Before: ``idle_timeout`` was the only bound, and the trickles held the server for as long as their
    declared 100,000 bytes lasted (7 hours at this pace).
    """
    limits = ServerLimits(header_timeout=0.5, idle_timeout=1.0, max_connections=3)
    with run_emulator_in_thread(EmulatorOptions(verify_signatures=False), limits=limits, backend=backend) as emu:
        head = f"POST {INVOKE} HTTP/1.1\r\nHost: e\r\nContent-Length: 100000\r\n\r\n".encode()
        socks = [socket.create_connection(("127.0.0.1", emu.port), timeout=5) for _ in range(3)]
        for sock in socks:
            sock.sendall(head + b"{" * head_start)
            sock.setblocking(False)
        closed_after = trickle(socks, every=0.25, within=5.0)
        for sock in socks:
            sock.close()
        assert len(closed_after) == 3, f"{3 - len(closed_after)} trickled bodies still open after 5 s"
        assert min(closed_after) >= 0.9
        assert max(closed_after) < 3.0
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=5)
        conn.request("POST", INVOKE, body=MESSAGES_BYTES, headers={"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        conn.close()
        assert emu.errors == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_body_timeout_bounds_a_body_at_any_rate(backend: str) -> None:
    """A body moving at 8,000 bytes/s (eight times the minimum rate) is still closed at ``body_timeout``.

    Before: no bound on a body's total time (and no ``body_timeout`` limit to set).
    """
    limits = ServerLimits(idle_timeout=5.0, body_timeout=0.6)
    with run_emulator_in_thread(EmulatorOptions(verify_signatures=False), limits=limits, backend=backend) as emu:
        sock = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
        sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: e\r\nContent-Length: 100000\r\n\r\n".encode())
        sock.setblocking(False)
        started = time.monotonic()
        alive = True
        while alive and time.monotonic() - started < 5.0:
            try:
                sock.send(b" " * 400)
            except OSError:
                break
            if select.select([sock], [], [], 0.05)[0]:
                try:
                    alive = bool(sock.recv(65536))
                except ConnectionResetError:
                    alive = False
        elapsed = time.monotonic() - started
        sock.close()
        assert 0.55 <= elapsed < 2.0, f"closed after {elapsed:.2f} s"
        assert emu.errors == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_steady_body_above_the_rate_gets_through(backend: str) -> None:
    """A body sent at 4,000 bytes/s over 1 s, twice the idle timeout, under a 2,000 bytes/s minimum: answered.

    The minimum rate cuts trickles, not slow links: a client that keeps up is never cut, however long its
    body takes.
    """
    body = MESSAGES_BYTES + b" " * (4000 - len(MESSAGES_BYTES))
    limits = ServerLimits(idle_timeout=0.5, min_data_rate=2000)
    with run_emulator_in_thread(EmulatorOptions(verify_signatures=False), limits=limits, backend=backend) as emu:
        sock = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
        sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: e\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        started = time.monotonic()
        for offset in range(0, len(body), 200):
            select.select([], [], [], max(0.0, started + offset / 4000 - time.monotonic()))
            sock.sendall(body[offset : offset + 200])
        assert time.monotonic() - started >= 0.9
        assert read_response(sock).status == 200
        sock.close()
        assert emu.errors == []


def test_allowance_arithmetic_shared_by_reads_and_sends() -> None:
    """The rule both directions use (a send is allowed ``wait_for(len(piece))``), without sockets or clocks.

    The send side has no socket test: on loopback the kernel queues megabytes of a reply and wakes a blocked
    writer only after about 800 KB have drained, so a reader's pace reaches the server through kernel tuning.
    """
    # A byte every 0.5 s at 1,000 bytes/s runs out of a 1 s allowance on the third wait.
    trickle = _Allowance(1.0, 1 / 1000)
    trickle.charge(0.5, 1)
    trickle.charge(0.5, 1)
    assert trickle.wait_for(0) == pytest.approx(0.002)
    # Exactly at the rate, for as long as it lasts: never short.
    steady = _Allowance(1.0, 1 / 1000)
    for _ in range(10_000):
        steady.charge(steady.wait_for(100) - 1.0, 100)
    assert steady.seconds == pytest.approx(1.0)
    # Moving fast banks nothing beyond the cap; a send's own bytes buy its time on top.
    burst = _Allowance(1.0, 1 / 1000)
    burst.charge(0.01, 50_000)
    assert burst.seconds == 1.0
    assert burst.wait_for(16384) == pytest.approx(1.0 + 16.384)
    # Without a minimum rate, any progress restores the idle timeout; none takes the wait off.
    idle = _Allowance(1.0, None)
    idle.charge(0.9, 1)
    assert idle.wait_for(16384) == 1.0
    idle.charge(0.4, 0)
    assert idle.wait_for(0) == pytest.approx(0.6)


# -- 3. the request log's memory --------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_bodies_cost_the_log_nothing(backend: str) -> None:
    """Twenty unsigned 2 MB uploads (403 each) leave the log without their bodies: traced memory stays flat.

    Before: each refused body was kept whole, and the log grew by 40 MB.
    """
    body = b"x" * 2_000_000
    with run_emulator_in_thread(backend=backend) as emu:
        conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
        tracemalloc.start()
        try:
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(20):
                conn.request("POST", INVOKE, body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                assert response.status == 403
            gc.collect()  # a request's frames may sit in a reference cycle until the next collection
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            conn.close()
        assert len(emu.requests) == 20
        assert {(r.body, r.body_size, r.body_truncated) for r in emu.requests} == {(b"", 2_000_000, True)}
        assert grown < 1_000_000, f"the log grew by {grown:,} bytes"


def test_long_authenticated_bodies_are_kept_truncated() -> None:
    """A signed body longer than ``max_recorded_body_bytes`` keeps its head and its full size; None keeps all."""
    for keep in (100, None):
        with run_emulator_in_thread(limits=ServerLimits(max_recorded_body_bytes=keep)) as emu:
            conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
            conn.request("POST", INVOKE, body=MESSAGES_BYTES, headers=sign_with_botocore(emu, INVOKE, MESSAGES_BYTES))
            assert conn.getresponse().status == 200
            conn.close()
            (recorded,) = emu.requests
            assert recorded.body == (MESSAGES_BYTES[:keep] if keep else MESSAGES_BYTES)
            assert recorded.body_size == len(MESSAGES_BYTES)
            assert recorded.body_truncated is (keep is not None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("header_timeout", 0),
        ("header_timeout", float("inf")),
        ("idle_timeout", -1.0),
        ("idle_timeout", "5"),
        ("max_connections", 0),
        ("max_connections", True),
        ("max_recorded_body_bytes", -1),
        ("max_recorded_body_bytes", 1.5),
        ("min_data_rate", 0),
        ("min_data_rate", float("nan")),
        ("min_data_rate", "1000"),
        ("body_timeout", 0),
        ("body_timeout", None),
    ],
)
def test_bad_limits_are_configuration_errors(field: str, value: object) -> None:
    """Each bad limit is refused with a ConfigurationError that names it."""
    with pytest.raises(ConfigurationError, match=f"^{field}: "):
        ServerLimits(**{field: value})  # type: ignore[arg-type]
