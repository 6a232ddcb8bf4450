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
