"""What OpenTelemetry costs bedrock_chat: client CPU per request with the API absent, present without an SDK,
and with the SDK exporting to memory.

Run: ``python benchmarks/bench_telemetry.py [--quick] [--rounds N] [--requests N] [--streams N]``
(full run: 5 rounds, about 4 minutes on 2 busy cores; ``--quick``: 2 rounds, under a minute).

Why: issue #16 makes telemetry optional and promises the hot path pays nothing measurable without it.
Four configurations of the same client, each in its own fresh child process (``_harness.run_python``,
pinned to the client CPU; the emulator on the other), measured back to back in an order rotated per round:

- ``absent`` (the baseline): ``opentelemetry`` made unimportable by a meta-path finder installed before
  bedrock_chat is imported, as if the ``[otel]`` extra were not installed;
- ``absent (A/A)``: the same again, so the report shows how far two identical runs differ on this
  machine (a 3% target means little if A/A moves 5%);
- ``api, no SDK``: the API importable, no SDK configured (the global providers are the API's no-ops);
- ``sdk -> memory``: an SDK ``TracerProvider`` with a ``BatchSpanProcessor`` into an
  ``InMemorySpanExporter`` and a ``MeterProvider`` with an ``InMemoryMetricReader``, set as the global
  providers before bedrock_chat is imported. Batch, not Simple: it is what a production service runs
  (Simple exports inline, for debugging); its export thread's CPU counts, as ``time.process_time`` covers
  every thread. The child checks afterwards that every call produced its span.

Each child runs ``_clients.invoke_bedrock_chat`` (non-streaming ``create`` at concurrency 32: warm-up,
then N calls; CPU per request = process CPU over the measured part / N) or ``_clients.stream_bedrock_chat``
(sequential 1,000-chunk streams: CPU per stream, where per-chunk telemetry work would show). Ratios to
``absent`` are taken within each round; the report gives medians over rounds and judges the targets on
them: ``api, no SDK`` within 3%, ``sdk -> memory`` within 25%, for both kinds (NOISY, not FAIL, when over the
target while the A/A pair differed by at least the target: the machine was too busy to tell). Results go to
``benchmarks/results/telemetry.json`` (``_results.save``); :func:`render` turns that file into the README's table.

Each ``sdk -> memory`` child then times the SDK's own work for what one call records (:func:`_sdk_floor`: a
span with the attributes the client gave its last span, three histogram records with the client's metric
attributes, and one chunk record), so the report can say how much of the overhead no instrumentation could
avoid with this SDK set-up.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.abc
import importlib.machinery
import json
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from _harness import HERE, REGION, BenchmarkError, child_parser, log, median, run_python, run_rounds

NAME = "telemetry"
BASELINE = "absent"
NOISE = "absent (A/A)"
CONFIGS = ("absent", "absent (A/A)", "api, no SDK", "sdk -> memory")
#: Configuration -> the most its CPU may exceed the baseline's (None: informational).
TARGETS: dict[str, float | None] = {"absent (A/A)": None, "api, no SDK": 0.03, "sdk -> memory": 0.25}
KINDS = ("invoke", "stream")
CONCURRENCY = 32
_MODES = {"absent": "absent", "absent (A/A)": "absent", "api, no SDK": "api", "sdk -> memory": "sdk"}
SDK = "sdk -> memory"


# -- child side -----------------------------------------------------------------------------------------


class _BlockOpenTelemetry(importlib.abc.MetaPathFinder):
    """Refuses ``opentelemetry`` and its submodules, as an environment without the package would."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "opentelemetry" or fullname.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by bench_telemetry)", name=fullname)
        return None


def _otel_loaded() -> bool:
    return any(name == "opentelemetry" or name.startswith("opentelemetry.") for name in sys.modules)


def _prepare(mode: str) -> Any:
    """Set up the configuration before bedrock_chat is imported; for ``sdk``, the exporter and reader."""
    if "bedrock_chat" in sys.modules or _otel_loaded():
        raise SystemExit("bedrock_chat or opentelemetry was imported before the configuration was set")
    if mode == "absent":
        sys.meta_path.insert(0, _BlockOpenTelemetry())
        try:
            import opentelemetry  # noqa: F401
        except ModuleNotFoundError:
            return None
        raise SystemExit("opentelemetry is still importable")
    if mode == "api":
        return None
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return tracer_provider, exporter, reader, meter_provider


def _emitted(mode: str, sdk: Any) -> dict[str, Any]:
    """After the measured part: what was emitted (sdk), and whether bedrock_chat loaded opentelemetry at all."""
    found: dict[str, Any] = {"otel_loaded": _otel_loaded()}
    if mode == "sdk":
        tracer_provider, exporter, reader, _ = sdk
        tracer_provider.force_flush(30_000)
        found["spans"] = len(exporter.get_finished_spans())
        data = reader.get_metrics_data()
        found["metrics"] = sorted(
            {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics} if data else set()
        )
    return found


async def _child_run(args: argparse.Namespace) -> dict[str, Any]:
    from _clients import Target, invoke_bedrock_chat, stream_bedrock_chat

    target = Target(args.endpoint, REGION, args.access_key, args.secret_key, pool=max(args.concurrency, 1))
    if args.kind == "invoke":
        invoke = await asyncio.wait_for(invoke_bedrock_chat(target, args.requests, args.concurrency), args.timeout)
        return dict(invoke.summary())
    streamed = await asyncio.wait_for(stream_bedrock_chat(target, args.streams), args.timeout)
    return dict(streamed.summary())


#: Keys a call's span gets when it ends (the rest were given at its creation).
_RESPONSE_KEYS = ("gen_ai.response.", "gen_ai.usage.", "aws.request_id")
FLOOR_REPEATS = 2000


def _sdk_floor(sdk: Any) -> dict[str, float]:
    """The SDK's own work for what one call records, in this process after the measured part: a CLIENT span
    given the attributes the client gave its last span (request ones at creation, response ones at the end),
    the three histogram records of a request with the client's metric attributes, and one record of a chunk.

    A hot loop (best of 3), so a lower bound: what no instrumentation could avoid, to set beside what the
    measured part added. Microseconds per request and per record."""
    import time

    from opentelemetry.trace import SpanKind

    tracer_provider, exporter, reader, meter_provider = sdk
    finished = exporter.get_finished_spans()
    if not finished:
        raise SystemExit("no span to time the SDK floor with")
    span_attributes = dict(finished[-1].attributes or {})
    created = {k: v for k, v in span_attributes.items() if not k.startswith(_RESPONSE_KEYS)}
    ended = {k: v for k, v in span_attributes.items() if k.startswith(_RESPONSE_KEYS)}
    data = reader.get_metrics_data()
    points = {m.name: m.data.data_points for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    duration_attributes = dict(points["gen_ai.client.operation.duration"][0].attributes)
    token_attributes = [dict(point.attributes) for point in points["gen_ai.client.token.usage"]][:2]
    chunk_attributes = {k: v for k, v in duration_attributes.items() if k != "gen_ai.response.model"}
    tracer = tracer_provider.get_tracer("bench_telemetry.floor")
    meter = meter_provider.get_meter("bench_telemetry.floor")
    duration = meter.create_histogram("floor.duration", unit="s")
    tokens = meter.create_histogram("floor.tokens", unit="{token}")
    kind = SpanKind.CLIENT

    def request() -> None:
        span = tracer.start_span(finished[-1].name, kind=kind, attributes=created)
        span.set_attributes(ended)
        for attributes in token_attributes:
            tokens.record(100, attributes)
        duration.record(0.01, duration_attributes)
        span.end()

    def record() -> None:
        duration.record(0.001, chunk_attributes)

    def best(step: Any) -> float:
        times = []
        for _ in range(3):
            started = time.process_time()
            for _ in range(FLOOR_REPEATS):
                step()
            times.append((time.process_time() - started) / FLOOR_REPEATS * 1e6)
        return min(times)

    return {"request_us": best(request), "record_us": best(record)}


def child_main(argv: list[str]) -> None:
    """One configuration, one kind: its summary and what it emitted, as one JSON line on stdout."""
    parser = child_parser("bench_telemetry.py child")
    parser.add_argument("--mode", choices=("absent", "api", "sdk"), required=True)
    args = parser.parse_args(argv)
    sdk = _prepare(args.mode)
    summary = asyncio.run(_child_run(args))
    summary.update(_emitted(args.mode, sdk))
    if args.mode == "sdk":
        summary["sdk_floor_us"] = _sdk_floor(sdk)
    calls = args.requests + 1 + 2 * args.concurrency if args.kind == "invoke" else args.streams + 2
    summary["calls"] = calls
    print(json.dumps(summary))


# -- parent side ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How much to measure (``--quick`` lowers the defaults; explicit flags win)."""

    rounds: int
    requests: int
    streams: int


def _measure(config: str, kind: str, settings: Settings, target: Any, cpu: int | None) -> dict[str, Any]:
    """One configuration and kind in a fresh pinned child, bounded by its own deadline plus a margin."""
    timeout = 60.0 + (settings.requests / 50.0 if kind == "invoke" else settings.streams * 1.0)
    args = [str(HERE / "bench_telemetry.py"), "child", "--mode", _MODES[config], "--kind", kind]
    args += ["--endpoint", target.endpoint, "--access-key", target.access_key, "--secret-key", target.secret_key]
    args += ["--requests", str(settings.requests), "--concurrency", str(CONCURRENCY)]
    args += ["--streams", str(settings.streams), "--timeout", str(timeout)]
    lines = run_python(args, cpu, timeout + 30).strip().splitlines()
    if not lines:
        raise BenchmarkError(f"{config} {kind}: no result line")
    result: dict[str, Any] = json.loads(lines[-1])
    _check(config, result)
    cpu_ms = result["cpu_ms_per_request"] if kind == "invoke" else result["cpu_ms_per_stream"]
    log(f"  {config:<14} {kind:<6} {cpu_ms:8.3f} ms CPU per {'request' if kind == 'invoke' else 'stream'}")
    return result


def _check(config: str, result: dict[str, Any]) -> None:
    """A configuration that did not hold (telemetry loaded when absent, spans missing with the SDK) is an error."""
    mode = _MODES[config]
    if mode == "absent" and result["otel_loaded"]:
        raise BenchmarkError(f"{config}: opentelemetry was loaded although blocked")
    if mode == "sdk" and result.get("spans", 0) < result["calls"]:
        raise BenchmarkError(f"{config}: {result.get('spans')} spans for {result['calls']} calls")


def _rotated(items: tuple[str, ...], index: int) -> tuple[str, ...]:
    shift = index % len(items)
    return items[shift:] + items[:shift]


def measure_round(settings: Settings, index: int, target: Any, cpu: int | None) -> dict[str, Any]:
    """Every configuration once per kind, in this round's rotated order; the ratios to the baseline."""
    order = _rotated(CONFIGS, index)
    found: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        for config in order:
            try:
                found[kind][config] = _measure(config, kind, settings, target, cpu)
            except BenchmarkError as exc:
                log(f"  FAILED {config} {kind}: {exc}")
    return {"order": order, "results": found, "ratios": ratios(found), "loadavg": os.getloadavg()}


def _cpu(result: dict[str, Any] | None, kind: str) -> float:
    if result is None:
        return float("nan")
    return float(result["cpu_ms_per_request" if kind == "invoke" else "cpu_ms_per_stream"])


def ratios(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """CPU of each configuration / the baseline's, per kind, within one round."""
    return {
        kind: {
            config: _cpu(found[kind].get(config), kind) / _cpu(found[kind].get(BASELINE), kind)
            for config in CONFIGS
            if config != BASELINE
        }
        for kind in KINDS
    }


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of each CPU figure and of each per-round ratio (failed measurements left out)."""

    def med(values: list[float]) -> float:
        return median([v for v in values if v == v])

    cpu = {
        kind: {config: med([_cpu(r["results"][kind].get(config), kind) for r in rounds]) for config in CONFIGS}
        for kind in KINDS
    }
    ratio = {
        kind: {config: med([r["ratios"][kind][config] for r in rounds]) for config in CONFIGS if config != BASELINE}
        for kind in KINDS
    }
    verdicts: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
    for kind in KINDS:
        noise = abs(ratio[kind][NOISE] - 1)
        for config, limit in TARGETS.items():
            value = ratio[kind][config]
            if limit is None:
                verdicts[kind][config] = "-"
            elif value != value:
                verdicts[kind][config] = "FAIL (no figure)"
            elif value <= 1 + limit:
                verdicts[kind][config] = "PASS"
            else:
                # Over the target, but two identical runs differed as much: this machine cannot tell.
                verdicts[kind][config] = "NOISY" if noise >= limit or noise != noise else "FAIL"
    return {"cpu_ms": cpu, "ratio": ratio, "verdict": verdicts, "sdk_floor": sdk_floor(rounds, cpu)}


def sdk_floor(rounds: list[dict[str, Any]], cpu: dict[str, dict[str, float]]) -> dict[str, float]:
    """Medians of the SDK's own work per request and per record (timed in the sdk children), and what that
    floor alone would add to ``absent``: per request, and per stream (a span, its three records, and one
    record per text chunk)."""
    found: dict[str, list[float]] = {"request_us": [], "record_us": [], "chunks": []}
    for r in rounds:
        for kind in KINDS:
            result = r["results"][kind].get(SDK) or {}
            for key in ("request_us", "record_us"):
                if key in result.get("sdk_floor_us", {}):
                    found[key].append(result["sdk_floor_us"][key])
            if "text_chunks_per_stream" in result:
                found["chunks"].append(result["text_chunks_per_stream"])
    if not found["request_us"]:
        return {}
    request_us, record_us = median(found["request_us"]), median(found["record_us"])
    floor = {"request_us": request_us, "record_us": record_us}
    floor["invoke_ratio"] = 1 + request_us / 1e3 / cpu["invoke"][BASELINE]
    if found["chunks"]:
        per_stream_us = request_us + record_us * median(found["chunks"])  # first chunk + one per later chunk
        floor["stream_ratio"] = 1 + per_stream_us / 1e3 / cpu["stream"][BASELINE]
    return floor


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def render(document: dict[str, Any]) -> str:
    """The README's table from ``results/telemetry.json``: CPU per call, ratio to ``absent``, target, verdict."""
    data, meta = document["data"], document["meta"]
    settings, summary = data["settings"], data["summary"]
    lines = [
        "| configuration | CPU ms/request (c=32) | vs absent | CPU ms/stream (1,000 chunks) | vs absent | target |",
        "|---|---|---|---|---|---|",
    ]
    for config in CONFIGS:
        cells = [config]
        verdicts = []
        for kind in KINDS:
            cells.append(_fmt(summary["cpu_ms"][kind][config], 3 if kind == "invoke" else 2))
            cells.append("1 (baseline)" if config == BASELINE else _fmt(summary["ratio"][kind][config], 3))
            verdicts.append(summary["verdict"][kind].get(config, "-"))
        limit = TARGETS.get(config)
        if limit is None:
            cells.append("noise reference" if config != BASELINE else "-")
        else:
            shown = next((v for v in ("FAIL", "NOISY") if any(x.startswith(v) for x in verdicts)), "PASS")
            cells.append(f"within {limit:.0%}: {shown}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Medians of {settings['rounds']} rounds ({settings['requests']} requests at concurrency {CONCURRENCY}, "
        f"{settings['streams']} streams per configuration and round; ratios within each round); "
        f"{meta.get('machine', '?')}, commit {meta.get('commit', '?')}, {meta.get('started', '?')}.",
    ]
    floor = summary.get("sdk_floor")
    if floor:
        lines[-1] += (
            f" The SDK's own work for what a call records, timed in the sdk child in a hot loop with the"
            f" client's attributes (a lower bound): {floor['request_us']:.0f} µs per request (a span and three"
            f" histogram records; alone {_fmt(floor['invoke_ratio'], 3)}x absent) and {floor['record_us']:.1f} µs"
            f" per histogram record (one per text chunk: alone {_fmt(floor.get('stream_ratio'), 2)}x absent"
            " per stream)."
        )
    full = parse_settings([])
    if settings["rounds"] < full.rounds or settings["requests"] < full.requests or settings["streams"] < full.streams:
        lines[-1] += " A reduced run: indicative only."
    return "\n".join(lines)


def parse_settings(argv: list[str]) -> Settings:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 300 requests, 5 streams (under a minute)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5; quick 2)")
    parser.add_argument("--requests", type=int, help=f"requests per measurement, at least {CONCURRENCY} (default 2000)")
    parser.add_argument("--streams", type=int, help="streams per measurement (default 20; quick 5)")
    args = parser.parse_args(argv)
    settings = Settings(
        rounds=args.rounds or (2 if args.quick else 5),
        requests=args.requests or (300 if args.quick else 2000),
        streams=args.streams or (5 if args.quick else 20),
    )
    if settings.rounds < 1 or settings.streams < 1 or settings.requests < CONCURRENCY:
        parser.error(f"--rounds and --streams must be >= 1, --requests >= {CONCURRENCY}")
    return settings


def main(argv: list[str]) -> int:
    """All rounds against one emulator; print the table and PASS/FAIL, save ``results/telemetry.json``."""
    import _results
    from _clients import STREAM_MAX_TOKENS

    settings = parse_settings(argv)
    rounds, meta = run_rounds(
        settings.rounds,
        lambda index, target, cpu: measure_round(settings, index, target, cpu),
        lambda server_cpu, client_cpu: _results.metadata(server_cpu=server_cpu, client_cpu=client_cpu),
        *("--reply-tokens", str(STREAM_MAX_TOKENS), "--chunk-tokens", "1"),
    )
    summary = aggregate(rounds)
    data = {"settings": asdict(settings), "summary": summary, "rounds": rounds}
    path = _results.save(NAME, data, meta)
    document = _results.load(NAME)
    print(render(document))
    unmeasured = False
    for kind in KINDS:
        for config, verdict in summary["verdict"][kind].items():
            if verdict != "-":
                print(f"{verdict}: {config} {kind} CPU {_fmt(summary['ratio'][kind][config], 3)} x absent")
                unmeasured |= verdict.startswith("FAIL (no figure)")
    log(f"written: {path} ({meta['seconds']:.0f} s)")
    # A missed target is a result (printed, saved, shown in the table), like the suite's; exit 1 means a
    # configuration was not measured, so all.py stops before the README is rebuilt from a partial run.
    return 1 if unmeasured else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2:])
    else:
        sys.exit(main(sys.argv[1:]))
