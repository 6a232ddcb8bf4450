"""A thousand streams open at once: client CPU per chunk, memory per open stream, event-loop lag, time to first text.

Run: ``python benchmarks/bench_streams.py [--quick] [--rounds N] [--streams N] [--interval-ms MS] [--only NAMES]``.

Why: a chat service holds many streams open, each trickling tokens to a person; what a client costs then
is CPU per chunk, memory per open stream and how long its event loop stalls (every stall delays every
other stream's next token). The sequential-stream figures of ``run.py`` say none of that.

Set-up (``benchmarks/_paced_server.py``): a paced server replays the real emulator's wire bytes --
event-stream frames for InvokeModelWithResponseStream, SSE for the Messages endpoint -- in its own process
pinned to the first CPU, one event per stream every ``--interval-ms`` (default 50 ms) from one timer.
Each contender runs alone in a fresh ``bench_streams.py child`` process pinned to the second CPU, under
asyncio's default loop, with a pool allowing every stream its own connection: it warms up with
``--warmup`` one-event streams, then opens ``--streams`` streams of ``--chunks`` text events, spread
evenly over ``--ramp-s`` seconds (streams arriving at 1,000 a second rather than in one burst, as users'
would), and reads them all to the end. Measured over that wave:

- **CPU per chunk**: ``time.process_time()`` (all threads) / text chunks received;
- **RSS per open stream**: (peak RSS sampled every 20 ms during the wave - RSS before it) / streams,
  connections included (the warm-up opened only ``--warmup`` of them);
- **event-loop lag**: a ticker task sleeps 5 ms at a time; lag = actual - expected wake-up, p50/p99;
- **time to first text**: from calling the client to holding the first text delta, p50/p99;
- **verification**: every stream must carry exactly ``--chunks`` text chunks and the same text length,
  or the contender fails loudly (no figure is reported for it).

Two floors: the aiohttp floor (aiohttp's pool and parser, frames split without checks, ``json.loads``) and,
below every HTTP client, the loop floor (a bare ``asyncio.Protocol`` per stream, httptools parsing the
response, the same frame splitting): what a chunk costs asyncio's default loop itself -- a socket read, a
future, a task wake-up. The report says how far each client is from it.

The server's own CPU (``/proc/<pid>/stat``, sampled every 100 ms by this process) is recorded over each
wave; a figure taken while the server used more than 80% of its core is marked server-bound.

Why 50 ms, not a few: the server writes each event with one ``transport.write`` (a ``send``), and 1,000
streams at 20 ms (50,000 events/s) already took 28-32% of its core here; at 5 ms (200,000 events/s) it
would need more than its whole core, and the figures would measure it. The clients bind sooner: at 20 ms
not even the aiohttp floor kept up on this machine (about 24 us of CPU per chunk, so 1.2 cores at
50,000 chunks/s; its wave took 13 s instead of 5, its loop lag p99 was seconds), which turns the
loop-lag and first-text figures into a measure of saturation for everyone. At 50 ms (20,000 events/s,
a model's real pace of tens of tokens a second per user) the floor needs about half a core, so a client
that costs about what the floor costs keeps up and its lag says what a service would see; a slower one
still gets every chunk (TCP buffers them), its lag and first text grow, and its CPU per chunk may drop as
reads coalesce -- the "wave s" column shows who kept up (about 11 s when paced). ``--interval-ms 20``
gives the saturated picture.

Full run: one round of 8 contenders, 1,000 streams each, about 3-4 minutes on 2 busy cores (anthropic,
CPU-bound at this load, takes a third of it; ``--rounds N`` for medians); ``--quick``: 200 streams, about a
minute. Only a full run with every contender saves
``benchmarks/results/streams.json`` (``--save`` forces it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    BenchmarkError,
    _kill,
    _on_signal,
    _spawn,
    choose_cpus,
    kill_all,
    log,
    median,
)
from _paced_server import MESSAGES_PATH, paced_server, process_cpu_seconds, raise_fd_limit

NAME = "streams"
#: The same wave at 200 ms between chunks (a quarter of the load), where the floors keep up: what loop lag a
#: client adds is measurable there, while at 50 ms every client's lag is mostly the loop's saturation.
LAG_NAME = "streams_lag"
MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
MESSAGES_MODEL = "anthropic.claude-haiku-4-5"
PROMPT = "Hello, emulator"
TICKER_S = 0.005
SERVER_BOUND = 0.8
#: (first text at, text chunks, text characters) of one stream.
StreamOutcome = tuple[float, int, int]
OneStream = Callable[[int], Awaitable[StreamOutcome]]


class ChunkCountError(BenchmarkError):
    """A contender handed its caller fewer (or more) text chunks than the server sent."""


def check_streams(outcomes: list[StreamOutcome], expected_chunks: int) -> None:
    """Every stream carried exactly ``expected_chunks`` text chunks and all the same text length."""
    short = [count for _, count, _ in outcomes if count != expected_chunks]
    lengths = {chars for _, _, chars in outcomes}
    if short:
        raise ChunkCountError(
            f"{len(short)} of {len(outcomes)} streams did not carry {expected_chunks} text chunks "
            f"(e.g. {sorted(set(short))[:5]})"
        )
    if len(lengths) != 1:
        raise ChunkCountError(f"streams carry different text lengths: {sorted(lengths)[:5]}")


# -- the contenders (child side) ---------------------------------------------------------------------


def _messages() -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT}]


class _Counter:
    """Counts text pieces and their characters, noting when the first arrived."""

    __slots__ = ("chars", "count", "first")

    def __init__(self) -> None:
        self.first, self.count, self.chars = 0.0, 0, 0

    def add(self, text: str) -> None:
        if not self.count:
            self.first = time.perf_counter()
        self.count += 1
        self.chars += len(text)

    def outcome(self) -> StreamOutcome:
        return self.first, self.count, self.chars


@contextlib.asynccontextmanager
async def _aiohttp_floor(endpoint: str, pool: int, surface: str) -> AsyncIterator[OneStream]:
    """Floor: aiohttp with a static auth header; frames split without checks (event-stream) or lines split
    on blank lines (SSE), then ``json.loads`` -- the least work that still yields the text."""
    import aiohttp
    from _clients import STATIC_AUTH, _MinimalFrames

    if surface == "invoke":
        url = f"{endpoint}/model/{MODEL.replace(':', '%3A')}/invoke-with-response-stream"
        headers = {**STATIC_AUTH, "content-type": "application/json", "x-amzn-bedrock-accept": "application/json"}
    else:
        url = f"{endpoint}{MESSAGES_PATH}"
        headers = {**STATIC_AUTH, "content-type": "application/json", "anthropic-version": "2023-06-01"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool)) as session:

        async def one(max_tokens: int) -> StreamOutcome:
            if surface == "invoke":
                body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens, "messages": _messages()}
            else:
                body = {"model": MESSAGES_MODEL, "stream": True, "max_tokens": max_tokens, "messages": _messages()}
            counter = _Counter()
            async with session.post(url, data=json.dumps(body).encode(), headers=headers) as response:
                if response.status != 200:
                    raise BenchmarkError(f"HTTP {response.status}: {await response.read()!r}")
                if surface == "invoke":
                    frames = _MinimalFrames()
                    async for piece in response.content.iter_any():
                        for event in frames.feed(piece):
                            if event["type"] == "content_block_delta" and event["delta"].get("text"):
                                counter.add(event["delta"]["text"])
                else:
                    buffer = b""
                    async for piece in response.content.iter_any():
                        buffer += piece
                        *events, buffer = buffer.split(b"\n\n")
                        for raw in events:
                            if raw.startswith(b"event: content_block_delta"):
                                event = json.loads(raw[raw.index(b"data: ") + 6 :])
                                if event["delta"].get("text"):
                                    counter.add(event["delta"]["text"])
            return counter.outcome()

        yield one


@contextlib.asynccontextmanager
async def _protocol_floor(endpoint: str, pool: int, surface: str) -> AsyncIterator[OneStream]:
    """Loop floor: one bare ``asyncio.Protocol`` connection per stream, httptools parsing the response, frames
    split as the aiohttp floor splits them -- what a chunk costs asyncio's default loop itself (a socket
    read, a future, a task wake-up), below any HTTP client. Invoke surface only."""
    from urllib.parse import urlsplit

    import httptools
    from _clients import STATIC_AUTH, _MinimalFrames

    parts = urlsplit(endpoint)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = f"/model/{MODEL.replace(':', '%3A')}/invoke-with-response-stream"
    fixed = {**STATIC_AUTH, "content-type": "application/json", "x-amzn-bedrock-accept": "application/json"}
    loop = asyncio.get_running_loop()

    class Reader(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpResponseParser(self)
            self.pieces: list[bytes] = []
            self.done = False
            self.waiter: asyncio.Future[None] | None = None

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_body(self, body: bytes) -> None:
            self.pieces.append(body)
            self._wake()

        def on_message_complete(self) -> None:
            self.done = True
            self._wake()

        def connection_lost(self, exc: BaseException | None) -> None:
            self.done = True
            self._wake()

        def _wake(self) -> None:
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def one(max_tokens: int) -> StreamOutcome:
        body = json.dumps(
            {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens, "messages": _messages()}
        ).encode()
        head = f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fixed.items()) + "\r\n"
        transport, reader = await loop.create_connection(Reader, host, port)
        counter = _Counter()
        frames = _MinimalFrames()
        try:
            transport.write(head.encode() + body)
            while True:
                pieces, reader.pieces = reader.pieces, []
                for piece in pieces:
                    for event in frames.feed(piece):
                        if event["type"] == "content_block_delta" and event["delta"].get("text"):
                            counter.add(event["delta"]["text"])
                if reader.done and not reader.pieces:
                    break
                reader.waiter = loop.create_future()
                await reader.waiter
            if reader.parser.get_status_code() != 200:
                raise BenchmarkError(f"HTTP {reader.parser.get_status_code()}")
        finally:
            transport.close()
        return counter.outcome()

    yield one


@contextlib.asynccontextmanager
async def _bedrock_chat(endpoint: str, pool: int, surface: str) -> AsyncIterator[OneStream]:
    """bedrock_chat's ``create(stream=True)`` on its default transport, the surface forced."""
    from bedrock_chat import AnthropicBedrock

    forced = "invoke" if surface == "invoke" else "messages-endpoint"
    client = AnthropicBedrock(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, endpoint_url=endpoint, max_connections=pool
    )
    async with client:
        create = client.ChatCompletion.create

        async def one(max_tokens: int) -> StreamOutcome:
            counter = _Counter()
            stream = await create(
                model=MODEL, messages=_messages(), max_tokens_to_sample=max_tokens, stream=True, surface=forced
            )
            async with stream:
                async for chunk in stream:
                    if chunk.text:
                        counter.add(chunk.text)
            return counter.outcome()

        yield one


@contextlib.asynccontextmanager
async def _aiobotocore(endpoint: str, pool: int, surface: str) -> AsyncIterator[OneStream]:
    """aiobotocore's ``invoke_model_with_response_stream``, each chunk's bytes JSON-decoded."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    client = get_session().create_client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=AioConfig(max_pool_connections=pool, read_timeout=300, connect_timeout=60),
    )
    async with client as bedrock:

        async def one(max_tokens: int) -> StreamOutcome:
            body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens, "messages": _messages()}
            counter = _Counter()
            response = await bedrock.invoke_model_with_response_stream(
                modelId=MODEL, body=json.dumps(body).encode(), contentType="application/json", accept="application/json"
            )
            async for item in response["body"]:
                event = json.loads(item["chunk"]["bytes"])
                if event["type"] == "content_block_delta" and event["delta"].get("text"):
                    counter.add(event["delta"]["text"])
            return counter.outcome()

        yield one


@contextlib.asynccontextmanager
async def _anthropic(endpoint: str, pool: int, surface: str) -> AsyncIterator[OneStream]:
    """anthropic's ``AsyncAnthropicBedrock`` (InvokeModel) or ``AsyncAnthropicBedrockMantle`` (the Messages
    API path), ``messages.create(stream=True)`` iterated to the end; httpx limits allow every stream."""
    import anthropic

    try:  # anthropic 2.x is built on httpx2, earlier releases on httpx
        import httpx2 as http
    except ImportError:
        import httpx as http  # type: ignore[no-redef]

    http_client = anthropic.DefaultAsyncHttpxClient(
        limits=http.Limits(max_connections=pool, max_keepalive_connections=pool), timeout=300.0
    )
    keys: dict[str, Any] = {"aws_access_key": ACCESS_KEY, "aws_secret_key": SECRET_KEY, "aws_region": REGION}
    if surface == "invoke":
        client: Any = anthropic.AsyncAnthropicBedrock(**keys, base_url=endpoint, http_client=http_client)
    else:
        client = anthropic.AsyncAnthropicBedrockMantle(
            **keys, base_url=f"{endpoint}/anthropic", http_client=http_client
        )
    model = MODEL if surface == "invoke" else MESSAGES_MODEL
    async with client:

        async def one(max_tokens: int) -> StreamOutcome:
            counter = _Counter()
            stream = await client.messages.create(model=model, max_tokens=max_tokens, messages=_messages(), stream=True)
            async with stream:
                async for event in stream:
                    if event.type == "content_block_delta" and getattr(event.delta, "text", None):
                        counter.add(event.delta.text)
            return counter.outcome()

        yield one


Factory = Callable[[str, int, str], contextlib.AbstractAsyncContextManager[OneStream]]


@dataclass(frozen=True)
class Contender:
    """A row of the table: who, on which surface."""

    client: str
    surface: str  # "invoke" or "messages"
    factory: Factory

    @property
    def key(self) -> str:
        return f"{self.client} [{self.surface}]"


#: The bare-protocol contender: a socket read, a future and a task wake-up per chunk, below any HTTP client.
LOOP_FLOOR = "asyncio protocol (loop floor)"

#: In table order.
CONTENDERS: dict[str, Contender] = {
    c.key: c
    for c in (
        Contender(LOOP_FLOOR, "invoke", _protocol_floor),
        Contender("aiohttp (floor)", "invoke", _aiohttp_floor),
        Contender("bedrock_chat", "invoke", _bedrock_chat),
        Contender("aiobotocore", "invoke", _aiobotocore),
        Contender("anthropic", "invoke", _anthropic),
        Contender("aiohttp (floor)", "messages", _aiohttp_floor),
        Contender("bedrock_chat", "messages", _bedrock_chat),
        Contender("anthropic (mantle)", "messages", _anthropic),
    )
}


# -- the child: one contender, one wave ---------------------------------------------------------------


def _rss_bytes() -> int:
    """Resident set size now (``/proc/self/statm``; ``ru_maxrss`` elsewhere, which is only a peak)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


async def measure_wave(one: OneStream, streams: int, chunks: int, ramp_s: float, warmup: int) -> dict[str, Any]:
    """Warm up, then ``streams`` streams opened evenly over ``ramp_s`` seconds; the figures of that wave."""
    check_streams(list(await asyncio.gather(*(one(1) for _ in range(warmup)))), 1)
    gc.collect()
    rss_before = _rss_bytes()
    lags: list[float] = []
    rss_peak = rss_before
    running = True
    open_now = open_peak = 0
    clock = time.perf_counter

    async def ticker() -> None:
        nonlocal rss_peak
        ticks = 0
        while running:
            started = clock()
            await asyncio.sleep(TICKER_S)
            lags.append(clock() - started - TICKER_S)
            ticks += 1
            if ticks % 4 == 0:
                rss_peak = max(rss_peak, _rss_bytes())

    async def timed() -> StreamOutcome:
        nonlocal open_now, open_peak
        open_now += 1
        open_peak = max(open_peak, open_now)
        started = clock()
        try:
            first, count, chars = await one(chunks)
        finally:
            open_now -= 1
        return first - started, count, chars

    ticking = asyncio.create_task(ticker())
    cpu_started, wall_started, mono_started = time.process_time(), clock(), time.monotonic()
    tasks: list[asyncio.Task[StreamOutcome]] = []
    gap = ramp_s / streams
    for index in range(streams):
        delay = wall_started + index * gap - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed()))
    try:
        outcomes = list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
    cpu, wall, mono_ended = time.process_time() - cpu_started, clock() - wall_started, time.monotonic()
    running = False
    await ticking
    rss_peak = max(rss_peak, _rss_bytes())
    check_streams(outcomes, chunks)
    ttft = [first for first, _, _ in outcomes]
    received = sum(count for _, count, _ in outcomes)
    return {
        "streams": streams,
        "chunks_per_stream": chunks,
        "open_peak": open_peak,
        "wall_s": wall,
        "wave_start": mono_started,
        "wave_end": mono_ended,
        "cpu_s": cpu,
        "cpu_us_per_chunk": cpu / received * 1e6,
        "rss_before_mib": rss_before / 2**20,
        "rss_peak_mib": rss_peak / 2**20,
        "rss_kib_per_stream": (rss_peak - rss_before) / streams / 1024,
        "lag_ms_p50": statistics.median(lags) * 1e3,
        "lag_ms_p99": _percentile(lags, 0.99) * 1e3,
        "lag_ms_max": max(lags) * 1e3,
        "ttft_ms_p50": statistics.median(ttft) * 1e3,
        "ttft_ms_p99": _percentile(ttft, 0.99) * 1e3,
    }


def child_main(argv: list[str]) -> None:
    """Measure one contender's wave; print its figures as one JSON line."""
    parser = argparse.ArgumentParser(prog="bench_streams.py child")
    parser.add_argument("--contender", required=True, choices=sorted(CONTENDERS))
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--chunks", type=int, required=True)
    parser.add_argument("--ramp-s", type=float, required=True)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    raise_fd_limit()
    contender = CONTENDERS[args.contender]

    async def main() -> dict[str, Any]:
        async with asyncio.timeout(args.timeout):
            async with contender.factory(args.endpoint, args.streams, contender.surface) as one:
                return await measure_wave(one, args.streams, args.chunks, args.ramp_s, args.warmup)

    print(json.dumps(asyncio.run(main())))


# -- the parent: server, children, server CPU, rounds, report ------------------------------------------------


def server_load(samples: list[tuple[float, float]], start: float, end: float) -> tuple[float, float]:
    """(mean, peak) share of one core the server used between ``start`` and ``end`` (monotonic seconds),
    from (monotonic, CPU seconds) samples; peak over windows of at least 0.25 s."""
    inside = [s for s in samples if start <= s[0] <= end] or samples[-2:]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan"), float("nan")
    mean = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
    peak, anchor = 0.0, inside[0]
    for sample in inside[1:]:
        if sample[0] - anchor[0] >= 0.25:
            peak = max(peak, (sample[1] - anchor[1]) / (sample[0] - anchor[0]))
            anchor = sample
    return mean, max(peak, mean)


def run_child(
    contender: str, endpoint: str, server_pid: int, cpu: int | None, args: argparse.Namespace
) -> dict[str, Any]:
    """One contender's wave in a fresh pinned process, with the server's CPU sampled alongside."""
    command = [sys.executable, str(Path(__file__).resolve()), "child", "--contender", contender, "--endpoint", endpoint]
    command += ["--streams", str(args.streams), "--chunks", str(args.chunks), "--ramp-s", str(args.ramp_s)]
    command += ["--warmup", str(args.warmup), "--timeout", str(args.timeout)]
    samples: list[tuple[float, float]] = []
    with tempfile.TemporaryFile("w+") as errors:
        process = _spawn(command, cpu, stderr=errors)
        try:
            deadline = time.monotonic() + args.timeout + 60
            while process.poll() is None:
                samples.append((time.monotonic(), process_cpu_seconds(server_pid)))
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{contender}: timed out")
                with contextlib.suppress(Exception):
                    process.wait(timeout=0.1)
            samples.append((time.monotonic(), process_cpu_seconds(server_pid)))
            assert process.stdout is not None
            out = process.stdout.read()
            if process.returncode != 0:
                errors.seek(0)
                tail = "\n".join(errors.read().strip().splitlines()[-12:])
                raise BenchmarkError(f"{contender}: exit {process.returncode}\n{tail}")
        finally:
            _kill(process)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    mean, peak = server_load(samples, result["wave_start"], result["wave_end"])
    result["server_cpu"] = mean
    result["server_cpu_peak"] = peak
    result["server_bound"] = bool(mean > SERVER_BOUND)
    return result


METRICS = (
    "cpu_us_per_chunk",
    "rss_kib_per_stream",
    "lag_ms_p50",
    "lag_ms_p99",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "wall_s",
    "open_peak",
    "server_cpu",
    "server_cpu_peak",
)


def targets(round_: dict[str, dict[str, Any]], streams: int) -> list[dict[str, Any]]:
    """The issue's targets within one round: (name, value, bound, met)."""
    out: list[dict[str, Any]] = []
    botocore = round_.get("aiobotocore [invoke]")
    for surface in ("invoke", "messages"):
        ours = round_.get(f"bedrock_chat [{surface}]")
        if ours is None:
            continue
        if botocore is not None:
            ratio = ours["cpu_us_per_chunk"] / botocore["cpu_us_per_chunk"]
            out.append({"target": f"CPU per chunk [{surface}] vs aiobotocore", "value": ratio, "bound": 0.5})
            ratio = ours["rss_kib_per_stream"] / max(botocore["rss_kib_per_stream"], 1e-9)
            out.append({"target": f"RSS per stream [{surface}] vs aiobotocore", "value": ratio, "bound": 1.0})
        lag = ours["lag_ms_p99"]
        out.append({"target": f"loop lag p99 [{surface}] at {streams:,} streams (ms)", "value": lag, "bound": 10.0})
    return out


def summarize(rounds: list[dict[str, dict[str, Any]]], streams: int) -> dict[str, Any]:
    """Medians over rounds of every figure, and of every per-round target value."""
    rows = []
    for key, contender in CONTENDERS.items():
        measured = [r[key] for r in rounds if key in r]
        if not measured:
            continue
        row: dict[str, Any] = {"contender": contender.client, "surface": contender.surface, "rounds": len(measured)}
        for metric in METRICS:
            row[metric] = median([float(m[metric]) for m in measured])
        row["server_bound"] = any(m["server_bound"] for m in measured)
        rows.append(row)
    per_round = [targets(r, streams) for r in rounds]
    names = [t["target"] for t in per_round[0]] if per_round else []
    goals = []
    for name in names:
        values = [t["value"] for ts in per_round for t in ts if t["target"] == name]
        bound = next(t["bound"] for t in per_round[0] if t["target"] == name)
        value = median(values)
        goals.append({"target": name, "value": value, "bound": bound, "met": bool(value <= bound)})
    return {"rows": rows, "targets": goals}


def _num(value: Any, spec: str, scale: float = 1.0) -> str:
    """A figure formatted, or "-" for a missing one (NaN is saved as null)."""
    if value is None or value != value:
        return "-"
    return format(value * scale, spec)


def render(document: dict[str, Any]) -> str:
    """The README's tables: one row per contender and surface, then the targets (PASS/FAIL)."""
    data = document["data"]
    config = data["config"]
    paced = config["ramp_s"] + config["chunks"] * config["interval_ms"] / 1e3
    lines = [
        f"{config['streams']:,} streams x {config['chunks']} text chunks, one chunk per stream every "
        f"{config['interval_ms']:g} ms, opened over {config['ramp_s']:g} s (a client that keeps up finishes "
        f"the wave in about {paced:.1f} s); medians of {config['rounds']} round(s).",
        "",
        "| contender | surface | CPU us/chunk | RSS KiB/stream | loop lag p50 / p99 ms | first text p50 / p99 ms "
        "| wave s | server CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        server = f"{_num(row['server_cpu'], '.0f', 100)}% (peak {_num(row['server_cpu_peak'], '.0f', 100)}%)"
        if row["server_bound"]:
            server += " **server-bound**"
        lines.append(
            f"| {row['contender']} | {row['surface']} | {_num(row['cpu_us_per_chunk'], '.1f')} "
            f"| {_num(row['rss_kib_per_stream'], '.1f')} "
            f"| {_num(row['lag_ms_p50'], '.2f')} / {_num(row['lag_ms_p99'], '.1f')} "
            f"| {_num(row['ttft_ms_p50'], '.1f')} / {_num(row['ttft_ms_p99'], '.1f')} "
            f"| {_num(row['wall_s'], '.1f')} | {server} |"
        )
    lines += ["", "| target | value | bound | |", "|---|---:|---:|---|"]
    for goal in data["targets"]:
        verdict = "PASS" if goal["met"] else "FAIL"
        lines.append(f"| {goal['target']} | {_num(goal['value'], '.2f')} | <= {goal['bound']:g} | {verdict} |")
    cpu = {(row["contender"], row["surface"]): row["cpu_us_per_chunk"] for row in data["rows"]}
    loop_floor, botocore = cpu.get((LOOP_FLOOR, "invoke")), cpu.get(("aiobotocore", "invoke"))
    ours = cpu.get(("bedrock_chat", "invoke"))
    if loop_floor and botocore and ours:
        lines.append(
            f"\nWhat the default loop itself costs: the {LOOP_FLOOR} reads the same bytes at "
            f"{loop_floor / botocore:.2f}x aiobotocore's CPU per chunk; bedrock_chat [invoke] is "
            f"{ours / loop_floor:.2f}x that floor."
        )
    for failure in data.get("failures", []):
        lines.append(f"\nFAILED: {failure.splitlines()[0]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_streams.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 200 streams")
    parser.add_argument("--rounds", type=int, default=None, help="rounds, medians reported (default 1)")
    parser.add_argument("--streams", type=int, default=None, help="concurrent streams (default 1000; quick 200)")
    parser.add_argument("--chunks", type=int, default=200, help="text chunks per stream (default 200)")
    parser.add_argument("--interval-ms", type=float, default=50.0, help="pause between a stream's chunks (default 50)")
    parser.add_argument(
        "--ramp-s", type=float, default=None, help="seconds over which streams open (default streams/1000)"
    )
    parser.add_argument("--warmup", type=int, default=20, help="one-chunk streams before the wave (default 20)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per child (default 300)")
    parser.add_argument("--only", default="", help="comma-separated contender keys, e.g. 'bedrock_chat [invoke]'")
    parser.add_argument("--save", action="store_true", help="save the results even for a quick or partial run")
    parser.add_argument(
        "--name", default=NAME, help=f"results/<name>.json to save (default {NAME}; {LAG_NAME}: the loop-lag run)"
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or 1
    args.streams = args.streams or (200 if args.quick else 1000)
    args.ramp_s = args.ramp_s if args.ramp_s is not None else args.streams / 1000
    chosen = [key.strip() for key in args.only.split(",") if key.strip()] or list(CONTENDERS)
    unknown = [key for key in chosen if key not in CONTENDERS]
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {list(CONTENDERS)}")
    raise_fd_limit()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # end through the finally blocks that kill the children
        signal.signal(sig, _on_signal)
    import _results

    server_cpu, client_cpu = choose_cpus()
    meta = _results.metadata(server_cpu=server_cpu, client_cpu=client_cpu, loop="asyncio (default)")
    started = time.perf_counter()
    rounds: list[dict[str, dict[str, Any]]] = []
    failures: list[str] = []
    try:
        with paced_server(server_cpu, interval_ms=args.interval_ms, chunks=args.chunks) as server:
            for index in range(args.rounds):
                order = chosen[index % len(chosen) :] + chosen[: index % len(chosen)]
                measured: dict[str, dict[str, Any]] = {}
                for key in order:
                    log(f"round {index + 1}/{args.rounds}: {key} ({time.perf_counter() - started:.0f} s elapsed)")
                    try:
                        measured[key] = run_child(key, server.endpoint, server.pid, client_cpu, args)
                    except BenchmarkError as exc:
                        failures.append(f"round {index + 1}: {exc}")
                        log(f"FAILED {key}: {exc}")
                rounds.append(measured)
    finally:
        kill_all()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    config = {k: getattr(args, k) for k in ("streams", "chunks", "interval_ms", "ramp_s", "warmup", "rounds")}
    data = {"config": config, **summarize(rounds, args.streams), "rounds": rounds, "failures": failures}
    document = {"benchmark": args.name, "meta": meta, "data": data}
    print(render(document))
    for failure in failures:
        print(f"FAILED: {failure}")
    complete = not args.quick and len(chosen) == len(CONTENDERS) and not failures
    if complete or args.save:
        log(f"saved {_results.save(args.name, data, meta)}")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2:])
    else:
        raise SystemExit(main(sys.argv[1:]))
