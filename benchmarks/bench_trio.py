"""bedrock_chat under trio: its new default transport (httpcore2) against the old one (httpx) and a floor.

Run: ``python benchmarks/bench_trio.py [--quick] [--rounds N] [--requests N] [--streams N]``.

Why: under trio the client's default transport changed from httpx's own ``AsyncHTTPTransport`` (over
httpcore 1.0.9) to ``bedrock_chat._http.httpcore_transport.HttpcoreTransport`` (over httpcore2, with a
whole-body ``post_and_read`` fast path), for correctness under cancellation. This measures what the
switch costs or saves, all under trio:

- ``bedrock_chat[httpcore2]``: ``ChatCompletion.create`` with ``http_backend="httpcore2"`` (the default);
- ``bedrock_chat[httpx]``: the same with ``http_backend="httpx"`` (the old default);
- ``httpx (floor)``: a bare ``httpx.AsyncClient`` (default transport) POSTing a pre-built body with a
  static ``Authorization`` header, ``json.loads`` of the reply -- what every ratio "vs floor" refers to;
- ``httpcore2 (raw)``: informational, the same through a bare ``httpcore2.AsyncConnectionPool``
  (what the new transport costs at least: the httpx floor includes httpx's own layers).

Set-up (``benchmarks/_harness.py``): one emulator (``--no-verify-signatures``, so the floor need not
sign; bedrock_chat still signs every request as it would in production) in its own process pinned to
the first CPU; every measurement in a fresh ``bench_trio.py child`` process pinned to the second CPU,
so the client's CPU time (``time.process_time``, all threads) is its own. Non-streaming at concurrency
32 and 256: warm-up (one call, then two waves of ``concurrency`` calls), then N calls (at least
``4 x concurrency``: with fewer, c=256 measures mostly ramp-up and ramp-down) from ``concurrency``
tasks: requests/s, client CPU ms per request, p50/p99 latency. Streaming: sequential
1,000-chunk streams, CPU per stream and time to first text (median and minimum). Each round measures
every contender back to back in an order rotated per round, ratios are computed within the round, and
the report gives medians over rounds. Results go to ``benchmarks/results/trio.json`` (not with ``--no-save``).

Every wait is bounded: the emulator's start-up, each child (its own ``fail_after`` and the parent's
``communicate`` timeout), and the emulator's exit.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import _results
import anyio
from _clients import (
    INVOKE_MAX_TOKENS,
    MODEL,
    PROMPT,
    STREAM_MAX_TOKENS,
    InvokeResult,
    OneCall,
    StreamResult,
    Target,
    _floor_stream,
    _httpx_client,
    _messages_body,
    _reply_text,
    _static_headers,
    _url,
    drive_streams,
    stream_httpx,
)
from _harness import HERE, REGION, BenchmarkError, child_parser, log, median, package_version, run_python, run_rounds
from run import _rotated

CONCURRENCIES = (32, 256)
NEW = "bedrock_chat[httpcore2]"
OLD = "bedrock_chat[httpx]"
FLOOR = "httpx (floor)"
RAW_CORE = "httpcore2 (raw)"
#: Fewer calls than this per worker and a measurement is mostly its ramp-up and ramp-down.
MIN_CALLS_PER_WORKER = 4
_VERSIONED = ("bedrock-chat", "trio", "anyio", "httpx", "httpcore", "httpcore2")


# -- child side: the contenders, run under trio ----------------------------------------------------------


async def drive(one: OneCall, requests: int, concurrency: int) -> InvokeResult:
    """``_clients.drive`` for any anyio backend (that one gathers with asyncio): same warm-up and timing."""
    if not await one():
        raise RuntimeError("the client got an empty reply")

    async def call() -> None:
        await one()

    for _ in range(2):
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(call)
    counter = itertools.count()
    latencies: list[float] = []
    clock = time.perf_counter

    async def worker() -> None:
        while next(counter) < requests:
            started = clock()
            await one()
            latencies.append(clock() - started)

    cpu_started, wall_started = time.process_time(), clock()
    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
    wall, cpu = clock() - wall_started, time.process_time() - cpu_started
    return InvokeResult(requests, concurrency, wall, cpu, latencies)


def _ours(target: Target, backend: str) -> Any:
    """bedrock_chat's client on one named transport; ``_check_transport`` proves which one it used."""
    from bedrock_chat import AnthropicBedrock

    return AnthropicBedrock(
        access_key=target.access_key,
        secret_key=target.secret_key,
        region=target.region,
        endpoint_url=target.endpoint,
        max_connections=target.pool,
        http_backend="httpcore2" if backend == "httpcore2" else "httpx",
    )


def _check_transport(client: Any, backend: str) -> None:
    """Fail the measurement unless the client really sent through the transport its row names."""
    import httpx

    from bedrock_chat._http.httpcore_transport import HttpcoreTransport

    expected = HttpcoreTransport if backend == "httpcore2" else httpx.AsyncHTTPTransport
    used = client._transport.transport
    if type(used) is not expected:
        raise RuntimeError(f"{backend}: the client used {type(used).__name__}, not {expected.__name__}")


async def _invoke_ours(target: Target, requests: int, concurrency: int, backend: str) -> InvokeResult:
    messages = [{"role": "user", "content": PROMPT}]
    async with _ours(target, backend) as client:
        create = client.ChatCompletion.create

        async def one() -> str:
            chat = await create(model=MODEL, messages=messages, max_tokens_to_sample=INVOKE_MAX_TOKENS)
            text = chat.completion
            assert isinstance(text, str)
            return text

        result = await drive(one, requests, concurrency)
        _check_transport(client, backend)
        return result


async def _stream_ours(target: Target, streams: int, backend: str) -> StreamResult:
    messages = [{"role": "user", "content": PROMPT}]
    async with _ours(target, backend) as client:
        create = client.ChatCompletion.create

        async def one() -> tuple[float, int]:
            stream = await create(model=MODEL, messages=messages, max_tokens_to_sample=STREAM_MAX_TOKENS, stream=True)
            first, count = 0.0, 0
            async with stream:
                async for chunk in stream:
                    if chunk.text:
                        if not count:
                            first = time.perf_counter()
                        count += 1
            return first, count

        result = await drive_streams(one, streams)
        _check_transport(client, backend)
        return result


async def invoke_new(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """bedrock_chat, ``http_backend="httpcore2"`` (the trio default)."""
    return await _invoke_ours(target, requests, concurrency, "httpcore2")


async def invoke_old(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """bedrock_chat, ``http_backend="httpx"`` (the old trio default)."""
    return await _invoke_ours(target, requests, concurrency, "httpx")


async def stream_new(target: Target, streams: int) -> StreamResult:
    """bedrock_chat streaming, ``http_backend="httpcore2"``."""
    return await _stream_ours(target, streams, "httpcore2")


async def stream_old(target: Target, streams: int) -> StreamResult:
    """bedrock_chat streaming, ``http_backend="httpx"``."""
    return await _stream_ours(target, streams, "httpx")


async def invoke_floor(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """``_clients.invoke_httpx`` (static auth header, ``json.loads``), driven by the anyio ``drive``."""
    url, headers = _url(target, False), _static_headers(False)
    body = json.dumps(_messages_body(INVOKE_MAX_TOKENS)).encode()
    async with _httpx_client(target.pool) as client:

        async def one() -> str:
            response = await client.post(url, content=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.content!r}")
            return _reply_text(json.loads(response.content))

        return await drive(one, requests, concurrency)


def _core_pool(pool: int) -> Any:
    import httpcore2

    return httpcore2.AsyncConnectionPool(max_connections=pool, max_keepalive_connections=pool)


#: httpcore2 applies no timeout of its own; the floors' httpx client uses 60 s.
_CORE_TIMEOUTS = {"timeout": {"connect": 60.0, "read": 60.0, "write": 60.0, "pool": 60.0}}


async def invoke_core(target: Target, requests: int, concurrency: int) -> InvokeResult:
    """Bare ``httpcore2.AsyncConnectionPool.request`` with the floor's static headers, ``json.loads``."""
    url, headers = _url(target, False), _static_headers(False)
    body = json.dumps(_messages_body(INVOKE_MAX_TOKENS)).encode()
    async with _core_pool(target.pool) as pool:

        async def one() -> str:
            response = await pool.request("POST", url, headers=headers, content=body, extensions=_CORE_TIMEOUTS)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {response.content!r}")
            return _reply_text(json.loads(response.content))

        return await drive(one, requests, concurrency)


async def stream_core(target: Target, streams: int) -> StreamResult:
    """Bare ``httpcore2`` stream through ``_clients``' minimal frame reader."""
    url, headers = _url(target, True), _static_headers(True)
    body = json.dumps(_messages_body(STREAM_MAX_TOKENS)).encode()
    async with _core_pool(target.pool) as pool:

        async def one() -> tuple[float, int]:
            async with pool.stream("POST", url, headers=headers, content=body, extensions=_CORE_TIMEOUTS) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
                return await _floor_stream(response.aiter_stream(), time.perf_counter)

        return await drive_streams(one, streams)


@dataclass(frozen=True)
class Contender:
    """A row: its InvokeModel and streaming functions (both plain async, run here under trio)."""

    invoke: Callable[[Target, int, int], Awaitable[InvokeResult]]
    stream: Callable[[Target, int], Awaitable[StreamResult]]


#: In report order. ``stream_httpx`` is ``_clients``' own: it awaits nothing asyncio-specific.
CONTENDERS: dict[str, Contender] = {
    NEW: Contender(invoke_new, stream_new),
    OLD: Contender(invoke_old, stream_old),
    FLOOR: Contender(invoke_floor, stream_httpx),
    RAW_CORE: Contender(invoke_core, stream_core),
}


async def _child_run(args: argparse.Namespace) -> dict[str, Any]:
    import sniffio

    contender = CONTENDERS[args.client]
    target = Target(args.endpoint, REGION, args.access_key, args.secret_key, pool=max(args.concurrency, 1))
    with anyio.fail_after(args.timeout):
        if args.kind == "invoke":
            summary: dict[str, Any] = (await contender.invoke(target, args.requests, args.concurrency)).summary()
        else:
            summary = (await contender.stream(target, args.streams)).summary()
    summary["async_library"] = sniffio.current_async_library()
    return summary


def child_main(argv: list[str]) -> None:
    """One contender under trio; its summary (plus peak RSS in MiB) as one JSON line on stdout."""
    parser = child_parser("bench_trio.py child")
    parser.add_argument("--client", choices=tuple(CONTENDERS), required=True)
    args = parser.parse_args(argv)
    summary = anyio.run(_child_run, args, backend="trio")
    summary["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps(summary))


# -- parent side: rounds, ratios, report ----------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How much to measure (``--quick`` lowers the defaults; explicit flags win)."""

    rounds: int
    requests: int
    streams: int
    quick: bool = False
    save: bool = True


def _measure(
    kind: str, name: str, target: Any, cpu: int | None, *, requests: int = 0, concurrency: int = 1, streams: int = 0
) -> dict[str, Any]:
    """One contender in a fresh pinned child; bounded by the child's own deadline plus a margin."""
    timeout = 60.0 + (requests / 30.0 if kind == "invoke" else streams * 0.5)
    args = [str(HERE / "bench_trio.py"), "child", "--client", name, "--kind", kind, "--endpoint", target.endpoint]
    args += ["--access-key", target.access_key, "--secret-key", target.secret_key, "--timeout", str(timeout)]
    args += ["--requests", str(requests), "--concurrency", str(concurrency), "--streams", str(streams)]
    lines = run_python(args, cpu, timeout + 30).strip().splitlines()
    if not lines:
        raise BenchmarkError(f"{name} {kind}: no result line")
    result: dict[str, Any] = json.loads(lines[-1])
    if result.get("async_library") != "trio":
        raise BenchmarkError(f"{name} {kind}: ran under {result.get('async_library')!r}, not trio")
    if kind == "invoke":
        log(
            f"  {name:<24} c={concurrency:<4} {result['rps']:8.0f} req/s  "
            f"{result['cpu_ms_per_request']:6.3f} ms CPU/req  p50 {result['latency_ms_p50']:7.2f} ms"
        )
    else:
        log(f"  {name:<24} stream {result['cpu_ms_per_stream']:7.2f} ms CPU  TTFT {result['ttft_ms_p50']:6.2f} ms")
    return result


def measure_round(settings: Settings, index: int, target: Any, cpu: int | None) -> dict[str, Any]:
    """Every contender once at each concurrency and streaming, in this round's rotated order."""
    order = _rotated(tuple(CONTENDERS), index)
    invoke: dict[str, dict[str, Any]] = {}
    stream: dict[str, Any] = {}
    for concurrency in CONCURRENCIES:
        requests = max(settings.requests, MIN_CALLS_PER_WORKER * concurrency)
        for name in order:
            try:
                invoke.setdefault(name, {})[str(concurrency)] = _measure(
                    "invoke", name, target, cpu, requests=requests, concurrency=concurrency
                )
            except BenchmarkError as exc:
                log(f"  FAILED {name} c={concurrency}: {exc}")
    for name in order:
        try:
            stream[name] = _measure("stream", name, target, cpu, streams=settings.streams)
        except BenchmarkError as exc:
            log(f"  FAILED {name} stream: {exc}")
    round_ = {"order": order, "invoke": invoke, "stream": stream, "loadavg": os.getloadavg()}
    round_["ratios"] = ratios(round_)
    return round_


def _get(data: dict[str, Any], *path: str) -> float:
    """The number at ``path``, or NaN where a failed measurement left it out."""
    value: Any = data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return float("nan")
        value = value[key]
    return float(value)


#: (label, numerator contender, denominator contender): req/s and CPU ratios at each concurrency.
RATIO_PAIRS = (
    ("httpcore2 / httpx-backend", NEW, OLD),
    ("httpcore2 / floor", NEW, FLOOR),
    ("httpx-backend / floor", OLD, FLOOR),
    ("raw httpcore2 / floor", RAW_CORE, FLOOR),
)


def ratios(round_: dict[str, Any]) -> dict[str, float]:
    """This round's ratios: req/s and CPU/request per pair and concurrency, stream CPU and TTFT (min)."""
    found: dict[str, float] = {}
    invoke, stream = round_["invoke"], round_["stream"]
    for label, top, bottom in RATIO_PAIRS:
        for c in map(str, CONCURRENCIES):
            found[f"{label} req/s c={c}"] = _get(invoke, top, c, "rps") / _get(invoke, bottom, c, "rps")
            found[f"{label} CPU c={c}"] = _get(invoke, top, c, "cpu_ms_per_request") / _get(
                invoke, bottom, c, "cpu_ms_per_request"
            )
        found[f"{label} stream CPU"] = _get(stream, top, "cpu_ms_per_stream") / _get(
            stream, bottom, "cpu_ms_per_stream"
        )
        found[f"{label} TTFT min"] = _get(stream, top, "ttft_ms_min") / _get(stream, bottom, "ttft_ms_min")
    return found


_INVOKE_KEYS = ("rps", "cpu_ms_per_request", "latency_ms_p50", "latency_ms_p99", "maxrss_mb")
_STREAM_KEYS = ("cpu_ms_per_stream", "ttft_ms_p50", "ttft_ms_min", "text_chunks_per_stream")


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of every number and of every per-round ratio (failed rounds left out)."""

    def med(*path: str) -> float:
        values = [_get(r, *path) for r in rounds]
        return median([v for v in values if v == v])

    invoke = {
        name: {str(c): {key: med("invoke", name, str(c), key) for key in _INVOKE_KEYS} for c in CONCURRENCIES}
        for name in CONTENDERS
    }
    stream = {name: {key: med("stream", name, key) for key in _STREAM_KEYS} for name in CONTENDERS}
    labels = rounds[0]["ratios"] if rounds else {}
    return {"invoke": invoke, "stream": stream, "ratios": {label: med("ratios", label) for label in labels}}


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


_RATIO_COLUMNS = (*(f"{kind} c={c}" for c in CONCURRENCIES for kind in ("req/s", "CPU")), "stream CPU", "TTFT min")


def report(summary: dict[str, Any], meta: dict[str, Any], settings: Settings) -> str:
    """The printed table: medians over rounds, then the ratios (each the median of per-round ratios)."""
    calls = ", ".join(f"{max(settings.requests, MIN_CALLS_PER_WORKER * c)} at c={c}" for c in CONCURRENCIES)
    lines = [
        f"bench_trio: {settings.rounds} rounds; requests {calls}; {settings.streams} streams; "
        f"{meta['machine']}, server CPU {meta['server_cpu']}, client CPU {meta['client_cpu']}; "
        f"loadavg {meta['loadavg_start']} -> {meta['loadavg_end']}",
        "",
        "| contender | c | req/s | CPU ms/req | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for c in map(str, CONCURRENCIES):
        for name, rows in summary["invoke"].items():
            row = rows[c]
            lines.append(
                f"| {name} | {c} | {_fmt(row['rps'], 0)} | {_fmt(row['cpu_ms_per_request'], 3)} | "
                f"{_fmt(row['latency_ms_p50'])} | {_fmt(row['latency_ms_p99'])} |"
            )
    lines += ["", "| contender | stream CPU ms | TTFT p50 ms | TTFT min ms |", "|---|---|---|---|"]
    for name, row in summary["stream"].items():
        lines.append(
            f"| {name} | {_fmt(row['cpu_ms_per_stream'])} | {_fmt(row['ttft_ms_p50'])} | {_fmt(row['ttft_ms_min'])} |"
        )
    lines += ["", "| ratio (median of per-round ratios) | " + " | ".join(_RATIO_COLUMNS) + " |"]
    lines.append("|---" * (len(_RATIO_COLUMNS) + 1) + "|")
    for label, _, _ in RATIO_PAIRS:
        cells = [_fmt(summary["ratios"].get(f"{label} {column}", float("nan"))) for column in _RATIO_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "req/s ratio > 1: the first is faster; CPU ratio < 1: the first is cheaper."]
    return "\n".join(lines)


def _metadata(server_cpu: int | None, client_cpu: int | None, quick: bool = False) -> dict[str, Any]:
    """``_results.metadata`` plus the pinning and the trio-side versions."""
    meta = _results.metadata(server_cpu=server_cpu, client_cpu=client_cpu, quick=quick)
    meta["versions"].update({name: package_version(name) for name in _VERSIONED})
    return meta


def parse_settings(argv: list[str]) -> Settings:
    """Command-line flags -> Settings."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 300 requests (1,024 at c=256), 5 streams")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; quick 2)")
    parser.add_argument(
        "--requests", type=int, help="requests per measurement, at least 4 x concurrency (default 2000; quick 300)"
    )
    parser.add_argument("--streams", type=int, help="streams per contender and round (default 20; quick 5)")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/trio.json alone")
    args = parser.parse_args(argv)
    settings = Settings(
        rounds=args.rounds or (2 if args.quick else 5),
        requests=args.requests or (300 if args.quick else 2000),
        streams=args.streams or (5 if args.quick else 20),
        quick=args.quick,
        save=not args.no_save,
    )
    if min(settings.rounds, settings.requests, settings.streams) < 1:
        parser.error("--rounds, --requests and --streams must be >= 1")
    return settings


def main(argv: list[str]) -> int:
    """All rounds against one emulator; print the report and write benchmarks/results/trio.json."""
    settings = parse_settings(argv)
    rounds, meta = run_rounds(
        settings.rounds,
        lambda index, target, client_cpu: measure_round(settings, index, target, client_cpu),
        lambda server_cpu, client_cpu: _metadata(server_cpu, client_cpu, settings.quick),
        *("--reply-tokens", str(STREAM_MAX_TOKENS), "--chunk-tokens", "1"),
    )
    summary = aggregate(rounds)
    print(report(summary, meta, settings))
    if settings.save:
        path = _results.save("trio", {"settings": asdict(settings), "summary": summary, "rounds": rounds}, meta)
        log(f"written: {path} ({meta['seconds']:.0f} s)")
    return 0


def render(document: dict[str, Any]) -> str:
    """The README's trio tables, from ``results/trio.json`` (the printed report without its first line)."""
    data = document["data"]
    table = report(data["summary"], document["meta"], Settings(**data["settings"])).split("\n", 2)[2]
    return table + "\n\n" + _results.caption(document, "python benchmarks/bench_trio.py")


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
