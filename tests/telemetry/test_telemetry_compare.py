"""Our spans and metrics against opentelemetry-instrumentation-botocore's, on the same calls (issue #16).

The agreements are asserted (a regression on either side fails), and so is every attribute we record that
the peer does not. The README's table is rendered from ``benchmarks/results/otel_compare.json``; the last
test checks that file says what a fresh comparison says.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telemetry_compare import SCENARIOS, SPAN_EVENTS, SPAN_KIND, SPAN_NAME, SPAN_STATUS, compare

from bedrock_chat.emulator import BedrockEmulator

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
LABELS = [scenario.label for scenario in SCENARIOS]
ARN = {"app-profile ARN", "app-profile ARN, stream"}
STREAMED = {s.label for s in SCENARIOS if s.stream}
CACHED = {s.label for s in SCENARIOS if s.cached}
FAILED = {s.label for s in SCENARIOS if s.fault and not s.retried}
RETRIED = {s.label for s in SCENARIOS if s.retried}
#: The peer's ARN stream never ends its span (it is read to the end, not closed), so there is nothing to compare.
NO_PEER_SPAN = {"app-profile ARN, stream"}
EVERYWHERE = set(LABELS)


@pytest.fixture(scope="module")
def findings(bedrock_emulator_server: BedrockEmulator) -> Iterator[dict[str, Any]]:
    """One comparison for the module: every scenario on both sides (the emulator is reset before each call)."""
    emu = bedrock_emulator_server
    try:
        yield compare(emu)
    finally:
        errors = list(emu.errors)
        emu.reset()
        assert not errors


def _cells(findings: dict[str, Any], name: str, kind: str = "spans") -> dict[str, str]:
    [row] = [row for row in findings[kind] if row["name"] == name]
    return dict(zip(findings["scenarios"], row["cells"], strict=True))


def _where(findings: dict[str, Any], name: str, value: str, kind: str = "spans") -> set[str]:
    return {label for label, cell in _cells(findings, name, kind).items() if cell == value}


#: attribute -> the calls where both sides record it with the same value.
AGREE: dict[str, set[str]] = {
    SPAN_NAME: EVERYWHERE - NO_PEER_SPAN,
    SPAN_KIND: EVERYWHERE - NO_PEER_SPAN,
    SPAN_STATUS: EVERYWHERE - NO_PEER_SPAN,
    "gen_ai.operation.name": EVERYWHERE - NO_PEER_SPAN,
    "gen_ai.request.model": EVERYWHERE - NO_PEER_SPAN,
    "server.address": EVERYWHERE - NO_PEER_SPAN,
    "server.port": EVERYWHERE - NO_PEER_SPAN,
    "aws.request_id": EVERYWHERE - NO_PEER_SPAN,
    "gen_ai.request.max_tokens": EVERYWHERE - ARN,
    "gen_ai.request.temperature": EVERYWHERE - ARN,
    "gen_ai.request.stop_sequences": EVERYWHERE - ARN,
    "gen_ai.usage.output_tokens": EVERYWHERE - ARN - FAILED,
    "gen_ai.response.finish_reasons": EVERYWHERE - ARN - FAILED,
    # Without cached tokens both count the same input; with them, see the next test.
    "gen_ai.usage.input_tokens": EVERYWHERE - ARN - FAILED - CACHED,
}
#: attribute -> the calls where only we record it.
OURS_ONLY: dict[str, set[str]] = {
    "gen_ai.provider.name": EVERYWHERE,
    "gen_ai.request.stream": EVERYWHERE,
    "gen_ai.request.top_k": EVERYWHERE,
    "gen_ai.response.id": EVERYWHERE - FAILED,
    "gen_ai.response.model": EVERYWHERE - FAILED,
    "gen_ai.response.time_to_first_chunk": STREAMED,
    "gen_ai.usage.cache_read.input_tokens": CACHED,
    "gen_ai.usage.cache_creation.input_tokens": CACHED,
    # Behind an application-inference-profile ARN the peer parses nothing.
    "gen_ai.request.max_tokens": ARN,
    "gen_ai.request.temperature": ARN,
    "gen_ai.request.stop_sequences": ARN,
    "gen_ai.usage.input_tokens": ARN,
    "gen_ai.usage.output_tokens": ARN,
    "gen_ai.response.finish_reasons": ARN,
}
#: The peer's own attributes, outside the GenAI conventions or deprecated there.
PEER_ONLY = {"gen_ai.system", "rpc.system", "rpc.service", "rpc.method", "cloud.region", "http.status_code"}


@pytest.mark.parametrize("name", sorted(AGREE))
def test_where_both_record_an_attribute_they_agree(findings: dict[str, Any], name: str) -> None:
    assert _where(findings, name, "=") == AGREE[name]


@pytest.mark.parametrize("name", sorted(OURS_ONLY))
def test_what_only_we_record(findings: dict[str, Any], name: str) -> None:
    assert OURS_ONLY[name] <= _where(findings, name, "ours")


def test_the_peer_records_no_cached_tokens_and_counts_input_without_them(findings: dict[str, Any]) -> None:
    """The convention's input tokens include cached ones; Anthropic's usage excludes them, and the peer copies it."""
    for label in CACHED:
        raw = findings["raw"][LABELS.index(label)]
        ours, peer = raw["ours"], raw["peer"]
        cached = int(ours["gen_ai.usage.cache_read.input_tokens"]) + int(
            ours["gen_ai.usage.cache_creation.input_tokens"]
        )
        assert cached > 0
        assert int(ours["gen_ai.usage.input_tokens"]) == int(peer["gen_ai.usage.input_tokens"]) + cached


def test_a_retry_is_an_event_on_our_span_and_a_count_on_the_peer_s(findings: dict[str, Any]) -> None:
    """One span per call on both sides; we add an event per retry (class, number, request id), botocore a count."""
    assert _where(findings, SPAN_EVENTS, "ours") == RETRIED
    raw = findings["raw"][LABELS.index("throttled, retried")]
    assert raw["ours"][SPAN_EVENTS] == "[bedrock_chat.retry]"
    assert raw["peer"]["retry_attempts"] == "1"


def test_errors_are_typed_on_both_sides_by_their_own_class_names(findings: dict[str, Any]) -> None:
    """``error.type`` is each library's exception class (both within the convention's advice)."""
    assert _cells(findings, "error.type")["throttled"] == "ThrottlingError | ThrottlingException"
    assert _cells(findings, SPAN_STATUS)["throttled"] == "="
    # The peer's span also carries the SDK's standard ``exception`` event (type, message, stack trace); ours
    # records none (its error.type and status say the call failed).
    assert _where(findings, SPAN_EVENTS, "peer") == FAILED
    assert findings["raw"][LABELS.index("throttled")]["peer"][SPAN_EVENTS] == "[exception]"


def test_the_peer_s_extra_attributes_are_botocore_s_or_deprecated(findings: dict[str, Any]) -> None:
    for name in PEER_ONLY:
        assert _where(findings, name, "peer") == EVERYWHERE - NO_PEER_SPAN
    status = {row["name"]: row["convention"] for row in findings["spans"]}
    assert status["gen_ai.system"] == "deprecated: use gen_ai.provider.name"
    assert status["http.status_code"].startswith("deprecated")


def test_every_genai_name_we_record_is_a_current_convention_name(findings: dict[str, Any]) -> None:
    """Checked against the names the opentelemetry-semantic-conventions package publishes."""
    ours = {
        row["name"]
        for row in findings["spans"] + findings["metrics"]
        if any(cell == "ours" or cell == "=" or cell == "both" or " | " in cell for cell in row["cells"])
    }
    ours = {name for name in ours if not name.startswith(("(", "bedrock_chat."))}
    status = {row["name"]: row["convention"] for row in findings["spans"] + findings["metrics"]}
    assert {name: status[name] for name in ours} == dict.fromkeys(ours, "current")


def test_metrics(findings: dict[str, Any]) -> None:
    """Both record duration and token usage for a Claude id; only we for an ARN, and only we time chunks."""
    duration, usage = "gen_ai.client.operation.duration", "gen_ai.client.token.usage"
    assert _where(findings, duration, "both", "metrics") == EVERYWHERE - ARN
    assert _where(findings, duration, "ours", "metrics") == ARN
    assert _where(findings, usage, "both", "metrics") == EVERYWHERE - ARN - FAILED
    assert _where(findings, usage, "ours", "metrics") == ARN
    for chunked in ("gen_ai.client.operation.time_to_first_chunk", "gen_ai.client.operation.time_per_output_chunk"):
        assert _where(findings, chunked, "ours", "metrics") == STREAMED


def test_the_committed_results_are_current(findings: dict[str, Any]) -> None:
    """``benchmarks/results/otel_compare.json`` (which the README's table is rendered from) matches this run."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import _results
    finally:
        sys.path.remove(str(BENCHMARKS))
    saved = _results.load("otel_compare")["data"]
    fresh = {key: findings[key] for key in ("scenarios", "spans", "metrics")}
    assert {key: saved[key] for key in fresh} == fresh, "run: python benchmarks/otel_compare.py"
