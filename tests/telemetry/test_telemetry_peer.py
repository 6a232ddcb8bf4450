"""What opentelemetry-instrumentation-botocore emits for Claude on Bedrock, run against the emulator.

These pin the peer's behaviour that the README's comparison table states (see ``telemetry_peer``'s
docstring), so a new release that changes it fails here and the table gets revisited.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from telemetry_peer import (
    APP_PROFILE_ARN,
    CACHED_SYSTEM_TOKENS,
    MODEL_IDS,
    PARAMS,
    Capture,
    PeerReply,
    instrumented_boto3,
    invoke_body,
    peer_spans,
)

from bedrock_chat.emulator import BedrockEmulator

CLAUDE_IDS = [MODEL_IDS["plain id"], MODEL_IDS["global. profile"], MODEL_IDS["us. profile"]]
#: The convention's advised bucket boundaries (gen_ai.client.operation.duration, gen_ai.client.token.usage).
DURATION_BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BOUNDS = tuple(float(4**i) for i in range(14))


def _span_attributes(emu: BedrockEmulator, model_id: str, operation: str, reply: PeerReply) -> dict[str, Any]:
    """Every attribute the peer puts on a successful Claude span, with the values it must have."""
    usage = reply.body["usage"]
    return {
        "rpc.system": "aws-api",
        "rpc.service": "Bedrock Runtime",
        "rpc.method": operation,
        "cloud.region": emu.region,
        "server.address": "127.0.0.1",
        "server.port": emu.port,
        "aws.request_id": reply.request_id,
        "retry_attempts": 0,
        "http.status_code": 200,
        gen_ai.GEN_AI_SYSTEM: "aws.bedrock",
        gen_ai.GEN_AI_OPERATION_NAME: "chat",
        gen_ai.GEN_AI_REQUEST_MODEL: model_id,
        gen_ai.GEN_AI_REQUEST_MAX_TOKENS: PARAMS["max_tokens"],
        gen_ai.GEN_AI_REQUEST_TEMPERATURE: PARAMS["temperature"],
        gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES: tuple(PARAMS["stop_sequences"]),
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: usage["input_tokens"],
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: usage["output_tokens"],
        gen_ai.GEN_AI_RESPONSE_FINISH_REASONS: (reply.body["stop_reason"],),
    }


def _metric_attributes(emu: BedrockEmulator, model_id: str) -> dict[str, Any]:
    return {
        gen_ai.GEN_AI_SYSTEM: "aws.bedrock",
        "server.address": "127.0.0.1",
        "server.port": emu.port,
        gen_ai.GEN_AI_REQUEST_MODEL: model_id,
        gen_ai.GEN_AI_OPERATION_NAME: "chat",
    }


def _only_span(capture: Capture) -> Any:
    assert len(capture.spans) == 1, capture.spans
    return capture.spans[0]


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("model_id", CLAUDE_IDS)
def test_claude_ids_get_the_genai_attributes_and_metrics(
    bedrock_emulator: BedrockEmulator, model_id: str, stream: bool
) -> None:
    """A model id containing ``anthropic.claude`` (plain or behind a cross-region profile) is parsed in full."""
    [(reply, capture)], leftovers = peer_spans(bedrock_emulator, model_id, stream=stream)
    operation = "InvokeModelWithResponseStream" if stream else "InvokeModel"
    span = _only_span(capture)
    assert (span.name, span.kind, span.status, span.events) == (f"chat {model_id}", "CLIENT", "UNSET", ())
    assert dict(span.attributes) == _span_attributes(bedrock_emulator, model_id, operation, reply)
    # No top_k, stream flag, response id/model, provider name, cache tokens or time to first chunk.
    for missing in (
        gen_ai.GEN_AI_REQUEST_TOP_K,
        gen_ai.GEN_AI_REQUEST_STREAM,
        gen_ai.GEN_AI_RESPONSE_ID,
        gen_ai.GEN_AI_RESPONSE_MODEL,
        gen_ai.GEN_AI_PROVIDER_NAME,
        gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK,
    ):
        assert missing not in span.attributes

    base = _metric_attributes(bedrock_emulator, model_id)
    [duration] = capture.points_of(gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION)
    assert (duration.unit, dict(duration.attributes), duration.count, duration.bounds) == (
        "s",
        base,
        1,
        DURATION_BOUNDS,
    )
    tokens = {
        p.attributes[gen_ai.GEN_AI_TOKEN_TYPE]: p for p in capture.points_of(gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE)
    }
    assert set(tokens) == {"input", "output"}
    for kind, point in tokens.items():
        assert (point.unit, point.count, point.bounds) == ("{token}", 1, TOKEN_BOUNDS)
        assert dict(point.attributes) == {**base, gen_ai.GEN_AI_TOKEN_TYPE: kind}
        assert point.sum == reply.body["usage"][f"{kind}_tokens"]
    # Only those two metrics: no time to first chunk, no time per output chunk.
    assert capture.metric_names() == {
        gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
        gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
    }
    assert leftovers.spans == ()
    assert leftovers.points == ()


def test_an_application_inference_profile_arn_gets_no_genai_detail(bedrock_emulator: BedrockEmulator) -> None:
    """Not ``anthropic.claude`` in the id: no request parameters, no usage, no finish reason, and no metric."""
    [(reply, capture)], _ = peer_spans(bedrock_emulator, APP_PROFILE_ARN, stream=False)
    assert reply.body["usage"]["output_tokens"] > 0  # the call itself worked
    span = _only_span(capture)
    assert span.name == f"chat {APP_PROFILE_ARN}"
    assert dict(span.attributes) == {
        "rpc.system": "aws-api",
        "rpc.service": "Bedrock Runtime",
        "rpc.method": "InvokeModel",
        "cloud.region": bedrock_emulator.region,
        "server.address": "127.0.0.1",
        "server.port": bedrock_emulator.port,
        "aws.request_id": reply.request_id,
        "retry_attempts": 0,
        "http.status_code": 200,
        gen_ai.GEN_AI_SYSTEM: "aws.bedrock",
        gen_ai.GEN_AI_OPERATION_NAME: "chat",
        gen_ai.GEN_AI_REQUEST_MODEL: APP_PROFILE_ARN,
    }
    assert capture.points == ()


def test_a_claude_stream_read_and_then_closed_is_counted_twice(bedrock_emulator: BedrockEmulator) -> None:
    """``message_stop`` records the metrics and ends the span; ``close()`` records the same metrics again."""
    [(reply, capture)], _ = peer_spans(bedrock_emulator, MODEL_IDS["plain id"], stream=True, close=True)
    assert len(capture.spans) == 1
    [duration] = capture.points_of(gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.count == 2
    output = reply.body["usage"]["output_tokens"]
    [point] = [
        p
        for p in capture.points_of(gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE)
        if p.attributes[gen_ai.GEN_AI_TOKEN_TYPE] == "output"
    ]
    assert (point.count, point.sum) == (2, 2 * output)


def test_an_arn_stream_read_to_the_end_never_ends_its_span(bedrock_emulator: BedrockEmulator) -> None:
    """The stream wrapper ends the span on Claude's ``message_stop``, which it only looks for in a Claude id."""
    [(reply, capture)], leftovers = peer_spans(bedrock_emulator, APP_PROFILE_ARN, stream=True)
    assert reply.events[-1]["type"] == "message_stop"  # every event was read
    assert capture.spans == ()
    assert leftovers.spans == ()
    assert capture.points == ()


def test_an_arn_stream_closed_ends_its_span_without_usage(bedrock_emulator: BedrockEmulator) -> None:
    """Closing the body ends the span; it still has no usage or finish reason, and only a duration metric."""
    [(_, capture)], _ = peer_spans(bedrock_emulator, APP_PROFILE_ARN, stream=True, close=True)
    span = _only_span(capture)
    for missing in (
        gen_ai.GEN_AI_REQUEST_MAX_TOKENS,
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS,
        gen_ai.GEN_AI_RESPONSE_FINISH_REASONS,
    ):
        assert missing not in span.attributes
    assert capture.metric_names() == {gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION}


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_prompt_caching_usage_is_not_recorded(bedrock_emulator: BedrockEmulator, stream: bool) -> None:
    """The reply reports cache writes and reads; the peer records neither, and its input tokens exclude them."""
    (write, write_capture), (read, read_capture) = peer_spans(
        bedrock_emulator, MODEL_IDS["plain id"], stream=stream, cached=True
    )[0]
    assert write.body["usage"]["cache_creation_input_tokens"] == CACHED_SYSTEM_TOKENS
    assert read.body["usage"]["cache_read_input_tokens"] == CACHED_SYSTEM_TOKENS
    for reply, capture in ((write, write_capture), (read, read_capture)):
        span = _only_span(capture)
        assert gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS not in span.attributes
        assert gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS not in span.attributes
        # Anthropic's input_tokens (the uncached part), where the convention wants cached tokens included.
        uncached = reply.body["usage"]["input_tokens"]
        assert uncached < CACHED_SYSTEM_TOKENS
        assert span.attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == uncached
        [input_point] = [
            p
            for p in capture.points_of(gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE)
            if p.attributes[gen_ai.GEN_AI_TOKEN_TYPE] == "input"
        ]
        assert input_point.sum == uncached


def test_a_throttle_is_an_error_span_and_retries_are_a_count(bedrock_emulator: BedrockEmulator) -> None:
    """botocore retries inside one span: the attempts show only as ``retry_attempts``, no event per attempt."""
    bedrock_emulator.enqueue_faults("throttle", "throttle")
    with instrumented_boto3(bedrock_emulator, max_attempts=3) as peer:
        reply = peer.invoke(MODEL_IDS["plain id"], invoke_body(cached=False), stream=False)
        retried = peer.capture()
    bedrock_emulator.enqueue_faults("throttle")
    with instrumented_boto3(bedrock_emulator, max_attempts=1) as peer:
        with pytest.raises(peer.client.exceptions.ThrottlingException):
            peer.invoke(MODEL_IDS["plain id"], invoke_body(cached=False), stream=False)
        failed = peer.capture()
    span = _only_span(retried)
    assert (span.attributes["retry_attempts"], span.events, span.status) == (2, (), "UNSET")
    assert span.attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == reply.body["usage"]["output_tokens"]
    error = _only_span(failed)
    assert error.status == "ERROR"
    assert error.attributes["error.type"] == "ThrottlingException"
    assert error.attributes["http.status_code"] == 429
    [duration] = failed.points_of(gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.attributes["error.type"] == "ThrottlingException"


_OPT_IN_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from telemetry_peer import MODEL_IDS, instrumented_boto3, invoke_body

class Emu:  # just what instrumented_boto3 reads
    endpoint_url, region, access_key, secret_key = sys.argv[2:6]

with instrumented_boto3(Emu()) as peer:
    peer.invoke(MODEL_IDS["plain id"], invoke_body(cached=True), stream=False)
    capture = peer.capture()
[span] = capture.spans
names = sorted(set(span.attributes) | {k for p in capture.points for k in p.attributes})
print(json.dumps({"span": sorted(span.attributes), "all": names}))
"""


@pytest.mark.parametrize("opt_in", [None, "gen_ai_latest_experimental"])
def test_the_semconv_opt_in_changes_nothing(
    bedrock_emulator: BedrockEmulator, opt_in: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` is read once per process, so each setting runs in a fresh one."""
    if opt_in is None:
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    else:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    emu = bedrock_emulator
    args = [str(Path(__file__).resolve().parents[1]), emu.endpoint_url, emu.region, emu.access_key, emu.secret_key]
    done = subprocess.run(
        [sys.executable, "-c", _OPT_IN_CHILD, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = json.loads(done.stdout.splitlines()[-1])
    assert gen_ai.GEN_AI_SYSTEM in names["span"]
    assert gen_ai.GEN_AI_PROVIDER_NAME not in names["all"]
    assert not any("cache" in name for name in names["all"])
