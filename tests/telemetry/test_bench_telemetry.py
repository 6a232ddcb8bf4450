"""The telemetry benchmark's own logic: its "absent" configuration really hides opentelemetry, and its verdicts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

_ABSENT_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import bench_telemetry
bench_telemetry._prepare("absent")
try:
    import opentelemetry.trace
except ModuleNotFoundError as exc:
    print("blocked:", exc.name)
from bedrock_chat import AnthropicBedrock
AnthropicBedrock(region="us-east-1", access_key="AKIDEXAMPLE", secret_key="not-a-secret")
print("loaded:", any(name.split(".")[0] == "opentelemetry" for name in sys.modules))
"""


def test_absent_makes_opentelemetry_unimportable_and_bedrock_chat_still_works() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ABSENT_CHILD, str(BENCHMARKS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["blocked: opentelemetry", "loaded: False"]


@pytest.fixture
def bench() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_telemetry

        yield bench_telemetry
    finally:
        sys.path.remove(str(BENCHMARKS))


def _round(bench: ModuleType, cpu: dict[str, float]) -> dict[str, Any]:
    """A round in which every configuration's invoke and stream CPU is ``cpu[config]`` (ms)."""
    found = {
        "invoke": {config: {"cpu_ms_per_request": value} for config, value in cpu.items()},
        "stream": {config: {"cpu_ms_per_stream": value * 30} for config, value in cpu.items()},
    }
    return {"results": found, "ratios": bench.ratios(found)}


@pytest.mark.parametrize(
    ("aa", "api", "sdk", "expected"),
    [
        (1.0, 1.02, 1.20, {"api, no SDK": "PASS", "sdk -> memory": "PASS"}),
        (1.0, 1.05, 1.30, {"api, no SDK": "FAIL", "sdk -> memory": "FAIL"}),
        # Two identical runs 6% apart: a 5% excess over a 3% target cannot be told from noise.
        (1.06, 1.05, 1.30, {"api, no SDK": "NOISY", "sdk -> memory": "FAIL"}),
    ],
)
def test_verdicts_are_judged_on_median_ratios_and_the_noise(
    bench: ModuleType, aa: float, api: float, sdk: float, expected: dict[str, str]
) -> None:
    rounds = [
        _round(
            bench, {"absent": base, "absent (A/A)": base * aa, "api, no SDK": base * api, "sdk -> memory": base * sdk}
        )
        for base in (0.5, 0.6, 0.4)
    ]
    summary = bench.aggregate(rounds)
    for kind in ("invoke", "stream"):
        assert {config: summary["verdict"][kind][config] for config in expected} == expected
        assert summary["ratio"][kind]["sdk -> memory"] == pytest.approx(sdk)
    document = {"meta": {}, "data": {"settings": {"rounds": 3, "requests": 2000, "streams": 20}, "summary": summary}}
    table = bench.render(document)
    assert f"within 3%: {expected['api, no SDK']}" in table
    assert "A reduced run" in table  # 3 rounds, fewer than a full run's 5


def test_the_sdk_floor_is_aggregated_and_rendered(bench: ModuleType) -> None:
    """The SDK's own work, timed in the sdk children, becomes what it alone adds to ``absent``."""
    rounds = []
    for base, request_us, record_us in ((0.5, 100.0, 10.0), (0.5, 120.0, 12.0), (0.5, 110.0, 11.0)):
        found = _round(bench, {"absent": base, "absent (A/A)": base, "api, no SDK": base, "sdk -> memory": base * 1.4})
        sdk = {"sdk_floor_us": {"request_us": request_us, "record_us": record_us}}
        found["results"]["invoke"]["sdk -> memory"].update(sdk)
        found["results"]["stream"]["sdk -> memory"].update(sdk, text_chunks_per_stream=1000)
        rounds.append(found)
    summary = bench.aggregate(rounds)
    floor = summary["sdk_floor"]
    assert (floor["request_us"], floor["record_us"]) == (110.0, 11.0)
    assert floor["invoke_ratio"] == pytest.approx(1 + 0.110 / 0.5)
    assert floor["stream_ratio"] == pytest.approx(1 + (0.110 + 11.0) / 15.0)  # a stream's CPU is 30x here
    document = {"meta": {}, "data": {"settings": {"rounds": 5, "requests": 2000, "streams": 20}, "summary": summary}}
    table = bench.render(document)
    assert "110 µs per request" in table
    assert "11.0 µs per histogram record" in table
    assert "A reduced run" not in table
    del summary["sdk_floor"]  # a results file from before the floor was measured
    assert "µs per request" not in bench.render(document)


@pytest.mark.asyncio
async def test_sdk_floor_times_the_sdk_calls_with_the_clients_own_attributes(
    bench: ModuleType, bedrock_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from e2e_helpers import emulator_client
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider, meter_provider = TracerProvider(), MeterProvider(metric_readers=[reader])
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(bench, "FLOOR_REPEATS", 3)
    try:
        async with emulator_client(
            bedrock_emulator, tracer_provider=tracer_provider, meter_provider=meter_provider
        ) as client:
            await client.ChatCompletion.create(
                model="anthropic.claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], max_tokens=20
            )
        [ours] = exporter.get_finished_spans()
        floor = bench._sdk_floor((tracer_provider, exporter, reader, meter_provider))
        timed = exporter.get_finished_spans()[1:]
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    assert floor["request_us"] > floor["record_us"] > 0
    assert len(timed) == 3 * 3  # best of 3, FLOOR_REPEATS each
    assert all(span.attributes == ours.attributes and span.name == ours.name for span in timed)
