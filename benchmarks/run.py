"""The benchmark suite in one command: bedrock_chat against its peers and the raw-HTTP floors.

Run: ``python benchmarks/run.py [--quick] [--rounds N] [--requests N]`` (see ``benchmarks/README.md``).

One server runs pinned to one core for the whole run -- the replay server by default (``_replay_server.py``:
the emulator's own wire replies, captured at its start-up and replayed, so the server is never what is
measured), or the full emulator with ``--server emulator`` -- and every measurement runs in a fresh client
process pinned to the other core. Each measurement records the server's CPU time over its window; a figure
taken while the server used more than ``SERVER_BOUND`` of its core is marked server-bound and left out of
every target verdict. A round
measures every contender back to back -- non-streaming at each concurrency, streaming, the signer and
decoder micro-benchmarks, import times -- and the target ratios are computed *within* the round, so a
burst of load from elsewhere on this noisy machine moves both sides of a ratio. The report gives the
median over rounds of each number and of each per-round ratio, prints a markdown table, and saves the
document to ``benchmarks/results/suite.json`` (:func:`render` turns it into the README's tables).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import _results
from _clients import CONTENDERS, FLOOR, STREAM_MAX_TOKENS
from _harness import (
    HERE,
    SERVERS,
    BenchmarkError,
    import_seconds,
    log,
    median,
    run_client,
    run_python,
    run_rounds,
)

OURS = "bedrock_chat"
OURS_AIOHTTP = "bedrock_chat+aiohttp"
CONCURRENCIES = (1, 32, 256)
BARE, EXPLICIT, DEFAULT_CHAIN = "bedrock_chat", "bedrock_chat + 1st request, keys", "bedrock_chat + 1st request, chain"
PEER_BARE, PEER_FIRST = "aiobotocore.session", "aiobotocore.session + 1st request"
#: Each import row: the modules one fresh interpreter imports, in order. "+ 1st request" adds the packages
#: the first request loads on top (found by diffing sys.modules around a real first request; checked by
#: tests/test_benchmark_report.py): for bedrock_chat the asyncio transport (httptools), anyio's asyncio
#: backend and certifi and, when the default credential chain is used rather than explicit keys, botocore's
#: session; aiobotocore.session has loaded all of botocore already, and its first request adds only the
#: default executor's thread pool. The OpenTelemetry API is not among them even where it is installed: the
#: client looks for an SDK only once the application has imported the API. The saved results list the
#: modules of every row.
IMPORTS: dict[str, tuple[str, ...]] = {
    BARE: ("bedrock_chat",),
    EXPLICIT: ("bedrock_chat", "bedrock_chat._http.httptools_transport", "anyio._backends._asyncio", "certifi"),
    DEFAULT_CHAIN: (
        "bedrock_chat",
        "bedrock_chat._http.httptools_transport",
        "anyio._backends._asyncio",
        "botocore.session",
        "certifi",
    ),
    PEER_BARE: ("aiobotocore.session",),
    PEER_FIRST: ("aiobotocore.session", "concurrent.futures.thread"),
    "anthropic": ("anthropic",),
    "httpx": ("httpx",),
    "aiohttp": ("aiohttp",),
}
RESULTS = HERE / "results"
#: A figure taken while the server used more than this share of its core measures the server: marked, never
#: used for a target verdict.
SERVER_BOUND = 0.8


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much to measure: the full run by default, ``--quick`` for a smoke run of the whole suite."""

    rounds: int
    requests: int
    streams: int
    decoder_repeats: int
    import_samples: int
    contenders: tuple[str, ...]
    micro: bool
    quick: bool = False
    server: str = "replay"

    @property
    def single_requests(self) -> int:
        """Concurrency 1 is for latency; a quarter of the requests gives a steady median in less time."""
        return max(100, self.requests // 4)


Round = dict[str, Any]


def _client_timeout(requests: int) -> float:
    """Generous: the slowest contender (~300 req/s here) with a 5x margin, plus start-up."""
    return 60.0 + requests / 60.0


# -- one round ------------------------------------------------------------------------------------------


def _rotated(names: tuple[str, ...], by: int) -> list[str]:
    """Each round starts with a different contender, so no one always runs first (or right after another)."""
    shift = by % len(names)
    return list(names[shift:] + names[:shift])


def _measure_invoke(settings: Settings, target: Any, cpu: int | None, order: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for concurrency in CONCURRENCIES:
        requests = settings.single_requests if concurrency == 1 else settings.requests
        for name in order:
            try:
                results.setdefault(name, {})[str(concurrency)] = run_client_logged(
                    name, "invoke", target, cpu, requests=requests, concurrency=concurrency
                )
            except BenchmarkError as exc:
                log(f"  FAILED {name} c={concurrency}: {exc}")
    return results


def run_client_logged(name: str, kind: str, target: Any, cpu: int | None, **kw: int) -> dict[str, Any]:
    """run_client, with a one-line progress note on stderr."""
    count = kw.get("requests") or kw.get("streams") or 0
    result = run_client(
        name, kind, target, cpu, timeout=_client_timeout(count * 10 if kind == "stream" else count), **kw
    )
    if kind == "invoke":
        log(
            f"  {name:<24} c={kw['concurrency']:<4} {result['rps']:8.0f} req/s  "
            f"{result['cpu_ms_per_request']:6.3f} ms CPU/req  p50 {result['latency_ms_p50']:7.2f} ms"
        )
    else:
        log(f"  {name:<24} stream {result['cpu_ms_per_stream']:7.2f} ms CPU  TTFT {result['ttft_ms_p50']:6.2f} ms")
    return result


def _measure_streams(settings: Settings, target: Any, cpu: int | None, order: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in order:
        if CONTENDERS[name].stream is None:
            continue
        try:
            results[name] = run_client_logged(name, "stream", target, cpu, streams=settings.streams)
        except BenchmarkError as exc:
            log(f"  FAILED {name} stream: {exc}")
    return results


_SIGV4 = {"ours_us": r"SigV4Signer\.sign\s*:\s*([\d.]+)", "botocore_us": r"SigV4Auth\.add_auth\s*:\s*([\d.]+)"}
_DECODER_BOTOCORE = r"botocore EventStreamBuffer \+ json \+ base64:\s*([\d.]+)"
_DECODER_OURS = r"bedrock_chat decoder \+ decode_chunk_payload:\s*([\d.]+)"


def _numbers(pattern: str, text: str, script: str) -> list[float]:
    found = [float(value) for value in re.findall(pattern, text)]
    if not found:
        raise BenchmarkError(f"{script}: its output no longer matches {pattern!r}:\n{text}")
    return found


def _measure_micro(settings: Settings, cpu: int | None) -> dict[str, Any]:
    """Run the existing micro-benchmark scripts, pinned to the client core, and read their numbers."""
    results: dict[str, Any] = {}
    try:
        out = run_python([str(HERE / "bench_sigv4.py"), "--no-save"], cpu, timeout=180)
        results["sigv4"] = {key: _numbers(pattern, out, "bench_sigv4.py")[0] for key, pattern in _SIGV4.items()}
        log(f"  sigv4: ours {results['sigv4']['ours_us']:.2f} us, botocore {results['sigv4']['botocore_us']:.2f} us")
    except BenchmarkError as exc:
        log(f"  FAILED bench_sigv4.py: {exc}")
    try:
        args = [str(HERE / "bench_eventstream.py"), "--no-save", "--repeats", str(settings.decoder_repeats)]
        out = run_python(args, cpu, 180)
        theirs = _numbers(_DECODER_BOTOCORE, out, "bench_eventstream.py")
        ours = _numbers(_DECODER_OURS, out, "bench_eventstream.py")
        if len(theirs) < 2 or len(ours) < 2:
            raise BenchmarkError(f"bench_eventstream.py: expected two rows, got:\n{out}")
        results["decoder"] = {
            "botocore_ms": theirs[0],
            "ours_ms": ours[0],
            "botocore_frames_ms": theirs[1],
            "ours_frames_ms": ours[1],
        }
        log(f"  decoder: ours {ours[0]:.2f} ms, botocore {theirs[0]:.2f} ms per 1,000-chunk stream")
    except BenchmarkError as exc:
        log(f"  FAILED bench_eventstream.py: {exc}")
    return results


def _measure_imports(settings: Settings, cpu: int | None, by: int) -> dict[str, float]:
    """Median of a few fresh-interpreter import times per row of IMPORTS, rows interleaved."""
    samples: dict[str, list[float]] = {label: [] for label in IMPORTS}
    for _ in range(settings.import_samples):
        for label in _rotated(tuple(IMPORTS), by):
            try:
                samples[label].append(import_seconds(IMPORTS[label], cpu) * 1e3)
            except BenchmarkError as exc:
                log(f"  FAILED import {label}: {exc}")
    result = {label: median(values) for label, values in samples.items() if values}
    log("  import ms: " + ", ".join(f"{label} {ms:.0f}" for label, ms in result.items()))
    return result


def measure_round(settings: Settings, index: int, target: Any, cpu: int | None) -> Round:
    """Everything once, contenders back to back; the ratios come from this round's numbers alone."""
    order = _rotated(settings.contenders, index)
    round_: Round = {
        "invoke": _measure_invoke(settings, target, cpu, order),
        "stream": _measure_streams(settings, target, cpu, order),
        "micro": _measure_micro(settings, cpu) if settings.micro else {},
        "import_ms": _measure_imports(settings, cpu, index) if settings.micro else {},
    }
    round_["ratios"] = ratios(round_)
    round_["loadavg"] = os.getloadavg()
    return round_


# -- ratios and targets -------------------------------------------------------------------------------


def _get(data: dict[str, Any], *path: str) -> float:
    """A nested number, or NaN when a contender failed (NaN ratios are left out of the medians)."""
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return math.nan
        node = node[key]
    return float(node)


@dataclasses.dataclass(frozen=True)
class Target:
    """One of the issue's targets: how to compute it from a round, and the bound it must meet."""

    key: str
    label: str
    compute: Callable[[Round], float]
    bound: float
    at_most: bool  # True: measured <= bound passes; False: measured >= bound passes
    unit: str = "x"


def _ratio(numerator: tuple[str, ...], denominator: tuple[str, ...]) -> Callable[[Round], float]:
    return lambda r: _get(r, *numerator) / _get(r, *denominator)


def _difference(minuend: tuple[str, ...], subtrahend: tuple[str, ...]) -> Callable[[Round], float]:
    return lambda r: _get(r, *minuend) - _get(r, *subtrahend)


def _targets_for(ours: str) -> list[Target]:
    """The issue's end-to-end targets, for one bedrock_chat configuration."""
    targets: list[Target] = []
    for c in ("32", "256"):
        targets += [
            Target(
                f"{ours}:rps_vs_aiobotocore@{c}",
                f"req/s vs aiobotocore, c={c}",
                _ratio(("invoke", ours, c, "rps"), ("invoke", "aiobotocore", c, "rps")),
                2.5,
                False,
            ),
            Target(
                f"{ours}:rps_vs_anthropic@{c}",
                f"req/s vs anthropic, c={c}",
                _ratio(("invoke", ours, c, "rps"), ("invoke", "anthropic", c, "rps")),
                5.0,
                False,
            ),
            Target(
                f"{ours}:cpu_vs_floor@{c}",
                f"CPU/request vs aiohttp floor, c={c}",
                _ratio(("invoke", ours, c, "cpu_ms_per_request"), ("invoke", FLOOR, c, "cpu_ms_per_request")),
                1.15,  # issue #19 item 5 (was 1.5)
                True,
            ),
        ]
    return [
        *targets,
        Target(
            f"{ours}:latency_vs_floor@1",
            "p50 latency vs aiohttp floor, c=1",
            _ratio(("invoke", ours, "1", "latency_ms_p50"), ("invoke", FLOOR, "1", "latency_ms_p50")),
            1.5,
            True,
        ),
        Target(
            f"{ours}:stream_cpu_vs_aiobotocore",
            f"stream CPU vs aiobotocore ({STREAM_MAX_TOKENS} chunks)",
            _ratio(("stream", ours, "cpu_ms_per_stream"), ("stream", "aiobotocore", "cpu_ms_per_stream")),
            0.5,
            True,
        ),
        Target(
            f"{ours}:ttft_minus_floor",
            "time to first text minus floor's (minimum over streams)",
            _difference(("stream", ours, "ttft_ms_min"), ("stream", FLOOR, "ttft_ms_min")),
            0.2,
            True,
            " ms",
        ),
        Target(
            f"{ours}:ttft_p50_minus_floor",
            "the same with medians over streams (noisier)",
            _difference(("stream", ours, "ttft_ms_p50"), ("stream", FLOOR, "ttft_ms_p50")),
            0.2,
            True,
            " ms",
        ),
        Target(
            f"{ours}:rss_vs_aiobotocore@256",
            "peak RSS vs aiobotocore, c=256",
            _ratio(("invoke", ours, "256", "maxrss_mb"), ("invoke", "aiobotocore", "256", "maxrss_mb")),
            1.0,
            True,
        ),
    ]


_LIBRARY_TARGETS = [
    Target(
        "signer_speedup",
        "signer speed-up vs SigV4Auth.add_auth",
        _ratio(("micro", "sigv4", "botocore_us"), ("micro", "sigv4", "ours_us")),
        10.0,
        False,
    ),
    Target(
        "decoder_speedup",
        "decoder + payload parsing vs botocore (full)",
        _ratio(("micro", "decoder", "botocore_ms"), ("micro", "decoder", "ours_ms")),
        3.0,
        False,
    ),
    Target(
        "decoder_frames_speedup",
        "the same without the shared final json.loads",
        _ratio(("micro", "decoder", "botocore_frames_ms"), ("micro", "decoder", "ours_frames_ms")),
        3.0,
        False,
    ),
    Target(
        "import_vs_aiobotocore",
        "import + 1st request's modules vs aiobotocore's (default credential chain)",
        _ratio(("import_ms", DEFAULT_CHAIN), ("import_ms", PEER_FIRST)),
        0.5,
        True,
    ),
    Target(
        "import_keys_vs_aiobotocore",
        "the same with explicit keys (no botocore)",
        _ratio(("import_ms", EXPLICIT), ("import_ms", PEER_FIRST)),
        0.5,
        True,
    ),
    Target(
        "import_bare_vs_aiobotocore",
        "bare import bedrock_chat vs aiobotocore.session (unequal work)",
        _ratio(("import_ms", BARE), ("import_ms", PEER_BARE)),
        0.5,
        True,
    ),
]
TARGETS = _targets_for(OURS) + _LIBRARY_TARGETS + _targets_for(OURS_AIOHTTP)


def server_bound(figures: Any) -> bool:
    """Whether one measurement was taken while the server used more than ``SERVER_BOUND`` of its core."""
    util = figures.get("server_util") if isinstance(figures, dict) else None
    return util is not None and not math.isnan(util) and util > SERVER_BOUND


def _without_server_bound(round_: Round) -> Round:
    """The round with every server-bound measurement left out (so no target ratio uses one)."""
    invoke = {
        name: {c: figures for c, figures in by_c.items() if not server_bound(figures)}
        for name, by_c in round_.get("invoke", {}).items()
    }
    stream = {name: figures for name, figures in round_.get("stream", {}).items() if not server_bound(figures)}
    return {**round_, "invoke": invoke, "stream": stream}


def ratios(round_: Round) -> dict[str, float]:
    """Every target's value in one round (NaN where an input is missing or was server-bound)."""
    values: dict[str, float] = {}
    clean = _without_server_bound(round_)
    for target in TARGETS:
        try:
            values[target.key] = target.compute(clean)
        except ZeroDivisionError:
            values[target.key] = math.nan
    return values


def _computable(target: Target, round_: Round) -> bool:
    """Whether the target has a value in this round when server-bound figures are kept."""
    try:
        return not math.isnan(target.compute(round_))
    except ZeroDivisionError:
        return False


def _finite_median(values: list[float]) -> float:
    return median([v for v in values if not math.isnan(v)])


# -- aggregation and report -----------------------------------------------------------------------------


def aggregate(rounds: list[Round]) -> dict[str, Any]:
    """Per-number medians over rounds, and per-target medians of the per-round ratios."""

    def med(*path: str) -> float:
        return _finite_median([_get(r, *path) for r in rounds])

    invoke_keys = ("rps", "cpu_ms_per_request", "latency_ms_p50", "latency_ms_p99", "maxrss_mb", "server_util")
    stream_keys = ("cpu_ms_per_stream", "ttft_ms_p50", "ttft_ms_min", "wall_ms_per_stream", "maxrss_mb", "server_util")
    names = list(CONTENDERS)
    summary: dict[str, Any] = {
        "invoke": {
            n: {str(c): {k: med("invoke", n, str(c), k) for k in invoke_keys} for c in CONCURRENCIES} for n in names
        },
        "stream": {n: {k: med("stream", n, k) for k in stream_keys} for n in names if CONTENDERS[n].stream},
        "micro": {
            "sigv4": {k: med("micro", "sigv4", k) for k in ("ours_us", "botocore_us")},
            "decoder": {
                k: med("micro", "decoder", k)
                for k in ("ours_ms", "botocore_ms", "ours_frames_ms", "botocore_frames_ms")
            },
        },
        "import_ms": {label: med("import_ms", label) for label in IMPORTS},
        "targets": {},
    }
    for target in TARGETS:
        value = _finite_median([r["ratios"][target.key] for r in rounds])
        met = None if math.isnan(value) else (value <= target.bound if target.at_most else value >= target.bound)
        # Rounds whose value was left out because an input was server-bound.
        left_out = sum(1 for r in rounds if math.isnan(r["ratios"][target.key]) and _computable(target, r))
        summary["targets"][target.key] = {
            "label": target.label,
            "value": value,
            "bound": target.bound,
            "met": met,
            "server_bound_rounds": left_out,
        }
    summary["server_bound"] = sorted(
        {f"{n} c={c}" for r in rounds for n, by_c in r["invoke"].items() for c, f in by_c.items() if server_bound(f)}
        | {f"{n} stream" for r in rounds for n, f in r["stream"].items() if server_bound(f)}
    )
    return summary


def _fmt(value: float | None, digits: int = 2) -> str:
    """A figure, or ``-`` where it failed (NaN in a run, null once saved)."""
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _util(figures: dict[str, Any]) -> str:
    """The server's share of its core, with ``*`` when that made the figure server-bound."""
    util = figures.get("server_util")
    if util is None or math.isnan(util):
        return "-"
    return f"{util * 100:.0f}%{'*' if util > SERVER_BOUND else ''}"


_SERVER_NAMES = {
    "replay": "the replay server (the emulator's replies, replayed)",
    "emulator": "the full emulator",
}


def render_tables(summary: dict[str, Any]) -> list[str]:
    """The non-streaming and streaming tables, each with the server's share of its core per measurement."""
    lines = [
        "## Non-streaming InvokeModel (32-token replies)",
        "",
        "| client | c=1 p50 ms | c=1 CPU ms/req | c=32 req/s | c=32 CPU ms/req | c=32 server | c=256 req/s "
        "| c=256 CPU ms/req | c=256 server | c=256 p99 ms | peak RSS MB (c=256) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_c in summary["invoke"].items():
        one, mid, high = by_c["1"], by_c["32"], by_c["256"]
        lines.append(
            f"| {name} | {_fmt(one['latency_ms_p50'], 3)} | {_fmt(one['cpu_ms_per_request'], 3)} | "
            f"{_fmt(mid['rps'], 0)} | {_fmt(mid['cpu_ms_per_request'], 3)} | {_util(mid)} | {_fmt(high['rps'], 0)} | "
            f"{_fmt(high['cpu_ms_per_request'], 3)} | {_util(high)} | {_fmt(high['latency_ms_p99'], 1)} | "
            f"{_fmt(high['maxrss_mb'], 1)} |"
        )
    lines += [
        "",
        f"## Streaming ({STREAM_MAX_TOKENS} text chunks per stream, one stream at a time)",
        "",
        "| client | CPU ms/stream | time to first text ms: p50 | min | wall ms/stream | server |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in summary["stream"].items():
        lines.append(
            f"| {name} | {_fmt(row['cpu_ms_per_stream'])} | {_fmt(row['ttft_ms_p50'], 3)} | "
            f"{_fmt(row['ttft_ms_min'], 3)} | {_fmt(row['wall_ms_per_stream'])} | {_util(row)} |"
        )
    bound = summary.get("server_bound") or []
    lines += [
        "",
        f"*server*: the server's CPU time over the measured window / its wall time (100% = its whole core). "
        f"A `*` marks a figure taken while the server was above {SERVER_BOUND:.0%} of its core: it measures the "
        "server, not the client, and no target verdict uses it"
        + (f" (server-bound in some round: {', '.join(bound)})." if bound else " (none was)."),
    ]
    return lines


def markdown(summary: dict[str, Any], meta: dict[str, Any], settings: Settings) -> str:
    """The report: environment line, then one table per kind of measurement, then the targets."""
    server = _SERVER_NAMES.get(settings.server, settings.server)
    lines = [
        f"# bedrock_chat benchmarks ({meta['started']})",
        "",
        f"{meta['machine']}; Python {meta['python']}; {server} on CPU {meta['server_cpu']}, clients on CPU "
        f"{meta['client_cpu']}; {settings.rounds} rounds, {settings.requests} requests at c=32/256, "
        f"{settings.single_requests} at c=1, {settings.streams} streams; medians over rounds "
        f"(ratios: median of per-round ratios); load average {meta['loadavg_start']} -> {meta.get('loadavg_end')}; "
        f"bedrock_chat at {meta['commit']}{' (+ uncommitted changes)' if meta['dirty'] else ''}.",
        "",
        *render_tables(summary),
    ]
    micro, imports = summary["micro"], summary["import_ms"]
    lines += [
        "",
        "## Micro-benchmarks and import time",
        "",
        "| measurement | bedrock_chat | reference | reference is |",
        "|---|---:|---:|---|",
        f"| SigV4 signature, us | {_fmt(micro['sigv4']['ours_us'])} | {_fmt(micro['sigv4']['botocore_us'])} "
        "| botocore SigV4Auth.add_auth |",
        f"| decode 1,000-chunk stream, ms | {_fmt(micro['decoder']['ours_ms'])} | "
        f"{_fmt(micro['decoder']['botocore_ms'])} | botocore EventStreamBuffer + json + base64 |",
        f"| the same without the final json.loads, ms | {_fmt(micro['decoder']['ours_frames_ms'])} | "
        f"{_fmt(micro['decoder']['botocore_frames_ms'])} | (both pay that one alike) |",
    ]
    for ours, theirs in ((BARE, PEER_BARE), (EXPLICIT, PEER_FIRST), (DEFAULT_CHAIN, PEER_FIRST)):
        lines.append(f"| import {ours}, ms | {_fmt(imports[ours], 0)} | {_fmt(imports[theirs], 0)} | import {theirs} |")
    for other in ("anthropic", "httpx", "aiohttp"):
        lines.append(f"| import, ms | | {_fmt(imports[other], 0)} | import {other} |")
    lines += [
        "",
        "## Targets (median of per-round values)",
        "",
        "| target | bound | measured | met |",
        "|---|---|---:|:-:|",
    ]
    for target in TARGETS:
        row = summary["targets"][target.key]
        verdict = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        if row.get("server_bound_rounds"):
            verdict += f" ({row['server_bound_rounds']} server-bound round(s) left out)"
        who = target.key.split(":")[0] if ":" in target.key else "bedrock_chat"
        bound = f"{'<=' if target.at_most else '>='} {target.bound:g}{target.unit}"
        lines.append(f"| {who}: {target.label} | {bound} | {_fmt(row['value'])}{target.unit} | {verdict} |")
    return "\n".join(lines) + "\n"


# -- main -----------------------------------------------------------------------------------------------


def _metadata(server_cpu: int | None, client_cpu: int | None) -> dict[str, Any]:
    return _results.metadata(server_cpu=server_cpu, client_cpu=client_cpu)


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Command-line flags -> Settings (``--quick`` changes the defaults; explicit flags still win)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 500 requests, 5 streams (~1-1.5 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; quick 2)")
    parser.add_argument("--requests", type=int, help="requests per client at c=32 and c=256 (default 2000; quick 500)")
    parser.add_argument("--streams", type=int, help="measured streams per client and round (default 30; quick 5)")
    parser.add_argument(
        "--only", help=f"comma-separated contenders (default all: {', '.join(CONTENDERS)}); targets need the peers"
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the signer/decoder benchmarks and import times")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="replay",
        help="replay: the emulator's captured replies, replayed (default; never the bottleneck); "
        "emulator: the full emulator",
    )
    args = parser.parse_args(argv)
    contenders = tuple(CONTENDERS)
    if args.only:
        contenders = tuple(name.strip() for name in args.only.split(","))
        unknown = [name for name in contenders if name not in CONTENDERS]
        if unknown:
            parser.error(f"unknown contenders {unknown}; known: {list(CONTENDERS)}")
    quick = args.quick
    settings = Settings(
        rounds=args.rounds or (2 if quick else 5),
        requests=args.requests or (500 if quick else 2000),
        streams=args.streams or (5 if quick else 30),
        decoder_repeats=5 if quick else 15,
        import_samples=1 if quick else 3,
        contenders=contenders,
        micro=not args.no_micro,
        quick=quick,
        server=args.server,
    )
    if settings.rounds < 1 or settings.requests < 1 or settings.streams < 1:
        parser.error("--rounds, --requests and --streams must be >= 1")
    return settings


_json_safe = _results.json_safe  # bench_trio.py imports it from here


def main(argv: list[str] | None = None) -> int:
    """Run all rounds against one emulator, then print and save the report."""
    settings = parse_settings(argv)

    def warm(client_cpu: int | None) -> None:
        if settings.micro:  # compile and cache bytecode once, so no round pays for it
            for modules in IMPORTS.values():
                import_seconds(modules, client_cpu)

    rounds, meta = run_rounds(
        settings.rounds,
        lambda index, target, client_cpu: measure_round(settings, index, target, client_cpu),
        _metadata,
        *("--reply-tokens", str(STREAM_MAX_TOKENS), "--chunk-tokens", "1"),
        before=warm,
        server=settings.server,
    )
    summary = aggregate(rounds)
    report = markdown(summary, meta, settings)
    print(report)
    data = {"settings": dataclasses.asdict(settings), "summary": summary, "rounds": rounds}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    data["import_rows"] = {label: list(modules) for label, modules in IMPORTS.items()}
    saved = _results.save("suite", data, {**meta, "quick": settings.quick})
    for name in (f"results-{stamp}", "latest"):  # git-ignored copies of each run
        (RESULTS / f"{name}.json").write_text(saved.read_text())
        (RESULTS / f"{name}.md").write_text(report)
    log(f"written: {saved} (and results-{stamp}.md/.json) in {meta['seconds']:.0f} s")
    return 0


def render(document: dict[str, Any]) -> str:
    """The README's suite tables, from ``results/suite.json``: the printed report under the README's headings."""
    data = document["data"]
    fields = {f.name for f in dataclasses.fields(Settings)}
    saved: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data["settings"].items()}
    settings = Settings(**{k: v for k, v in saved.items() if k in fields})
    report = markdown(data["summary"], document["meta"], settings).split("\n", 2)[2]  # no title
    rows = "; ".join(f"{label}: `{' '.join(modules)}`" for label, modules in data.get("import_rows", {}).items())
    notes = f"Import rows (the modules each imports): {rows}.\n\n" if rows else ""
    return report.replace("## ", "#### ") + "\n" + notes + _results.caption(document, "python benchmarks/run.py")


if __name__ == "__main__":
    sys.exit(main())
