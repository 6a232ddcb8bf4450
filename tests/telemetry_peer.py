"""The peer our telemetry is measured against: boto3's ``bedrock-runtime`` client through
``opentelemetry-instrumentation-botocore``, with the real opentelemetry-sdk exporting to memory.

What that instrumentation does for Bedrock (read in its source, 0.66b2: ``extensions/bedrock.py`` and
``extensions/bedrock_utils.py``), which the tests in ``telemetry/test_telemetry_peer.py`` pin down by running it:

- One CLIENT span per API call, named ``chat {modelId}``, with the botocore attributes (``rpc.*``,
  ``cloud.region``, ``server.*``, ``aws.request_id``, ``retry_attempts``, ``http.status_code``) and the
  GenAI ones. The provider is written under the deprecated ``gen_ai.system``; there is no
  ``OTEL_SEMCONV_STABILITY_OPT_IN`` switch in this extension, so ``gen_ai_latest_experimental`` changes
  nothing (a test checks that).
- Claude bodies are parsed only when the model id contains ``anthropic.claude``: a ``global.``/``us.``
  profile id qualifies, an application-inference-profile ARN does not, and then the span has no request
  parameters, no usage and no finish reason; the non-streamed call records no metric at all, and the
  streamed call's span never ends unless the caller closes the body. A Claude stream read to the end
  and then closed records its duration and token usage twice.
- Usage: InvokeModel copies Anthropic's ``input_tokens`` (which exclude cached tokens) and never the
  cache counts; a stream takes ``amazon-bedrock-invocationMetrics``. No ``top_k``, ``stream``,
  ``response.id``/``response.model``, time to first chunk, or chunk-timing metrics.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bedrock_chat.emulator import BedrockEmulator

# The boto3 client is tests/emulator's (emulator_testing), a directory pytest puts on the path only for its own
# tests; this module is also imported from tests/telemetry, by benchmarks/otel_compare.py and by child processes.
_EMULATOR_TESTS = str(Path(__file__).resolve().parent / "emulator")
if _EMULATOR_TESTS not in sys.path:
    sys.path.append(_EMULATOR_TESTS)
from emulator_testing import boto3_runtime_client  # noqa: E402

#: Served on both surfaces by the emulator, with profiles ``global.``/``us.``; its cache floor is 2,048 tokens.
MODEL = "anthropic.claude-opus-4-7"
#: An application inference profile: Bedrock routes it to a model chosen when the profile was created.
APP_PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"
#: The model ids every comparison is made with: a plain id, two cross-region profiles and an opaque ARN.
MODEL_IDS: Mapping[str, str] = {
    "plain id": MODEL,
    "global. profile": f"global.{MODEL}",
    "us. profile": f"us.{MODEL}",
    "application-inference-profile ARN": APP_PROFILE_ARN,
}
#: Request parameters both clients send (the same call, field for field).
PARAMS: Mapping[str, Any] = {
    "max_tokens": 24,
    "temperature": 0.5,
    "top_k": 40,
    "stop_sequences": ["ZZZ-never"],
}
QUESTION: tuple[dict[str, Any], ...] = ({"role": "user", "content": "What does the policy say?"},)
#: Words in the cached system prompt (the emulator counts a word as a token): above the model's floor.
CACHED_SYSTEM_TOKENS = 3000


def cached_system() -> list[dict[str, Any]]:
    """A system prompt with a breakpoint, long enough to be cached: the first call writes it, the next reads it."""
    text = " ".join(f"rule{i}" for i in range(CACHED_SYSTEM_TOKENS))
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


def invoke_body(*, cached: bool) -> bytes:
    """The InvokeModel body for :data:`PARAMS` and :data:`QUESTION` (with :func:`cached_system` when ``cached``)."""
    body: dict[str, Any] = {"anthropic_version": "bedrock-2023-05-31", **PARAMS, "messages": list(QUESTION)}
    if cached:
        body["system"] = cached_system()
    return json.dumps(body).encode()


@attrs.frozen
class CapturedSpan:
    """A finished span as an exporter saw it: the parts a comparison needs."""

    name: str
    kind: str
    status: str
    attributes: Mapping[str, Any]
    events: tuple[str, ...]
    ended: bool

    @classmethod
    def of(cls, span: ReadableSpan) -> CapturedSpan:
        return cls(
            name=span.name,
            kind=span.kind.name,
            status=span.status.status_code.name,
            attributes=dict(span.attributes or {}),
            events=tuple(event.name for event in span.events),
            ended=span.end_time is not None,
        )


@attrs.frozen
class CapturedPoint:
    """One histogram data point: which metric, under which attributes, how many values and their sum."""

    metric: str
    unit: str
    attributes: Mapping[str, Any]
    count: int
    sum: float
    bounds: tuple[float, ...]


@attrs.frozen
class Capture:
    """Everything one instrumented stretch emitted: finished spans and collected histogram points."""

    spans: tuple[CapturedSpan, ...]
    points: tuple[CapturedPoint, ...]

    def metric_names(self) -> set[str]:
        return {point.metric for point in self.points}

    def points_of(self, metric: str) -> list[CapturedPoint]:
        return [point for point in self.points if point.metric == metric]


class MemoryTelemetry:
    """A real SDK TracerProvider and MeterProvider exporting to memory (spans as they end, metrics on demand)."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        # Delta temporality: each capture holds only what was recorded since the one before.
        self.reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def capture(self) -> Capture:
        """What was emitted since the last capture."""
        spans = tuple(CapturedSpan.of(span) for span in self.spans.get_finished_spans())
        self.spans.clear()
        points: list[CapturedPoint] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        if isinstance(point, HistogramDataPoint):
                            points.append(
                                CapturedPoint(
                                    metric.name,
                                    metric.unit or "",
                                    dict(point.attributes or {}),
                                    point.count,
                                    point.sum,
                                    tuple(point.explicit_bounds),
                                )
                            )
        return Capture(spans, tuple(points))

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@attrs.frozen
class PeerReply:
    """What boto3 returned: the reply's JSON (the final chunk's fields merged in, for a stream) and request id."""

    body: Mapping[str, Any]
    request_id: str
    events: tuple[Mapping[str, Any], ...] = ()


class InstrumentedBoto3:
    """boto3's bedrock-runtime client aimed at an emulator, with ``BotocoreInstrumentor`` on it."""

    def __init__(self, emu: BedrockEmulator, telemetry: MemoryTelemetry, client: Any) -> None:
        self.emu = emu
        self.telemetry = telemetry
        self.client = client

    def invoke(self, model_id: str, body: bytes, *, stream: bool, close: bool = False) -> PeerReply:
        """One InvokeModel (``stream=False``) or InvokeModelWithResponseStream, read to the end.

        A streamed body is only iterated, as botocore's examples do; ``close`` closes it afterwards too.
        """
        if not stream:
            response = self.client.invoke_model(modelId=model_id, body=body)
            reply = json.loads(response["body"].read())
            return PeerReply(reply, response["ResponseMetadata"]["RequestId"])
        response = self.client.invoke_model_with_response_stream(modelId=model_id, body=body)
        events = tuple(json.loads(event["chunk"]["bytes"]) for event in response["body"])
        if close:
            response["body"].close()
        merged: dict[str, Any] = {}
        for event in events:
            if event.get("type") == "message_start":
                merged.update(event["message"])
            elif event.get("type") == "message_delta":
                merged.update(event["delta"])
                merged["usage"] = {**merged.get("usage", {}), **event.get("usage", {})}
        return PeerReply(merged, response["ResponseMetadata"]["RequestId"], events)

    def capture(self) -> Capture:
        return self.telemetry.capture()


@contextmanager
def instrumented_boto3(emu: BedrockEmulator, *, max_attempts: int = 1) -> Iterator[InstrumentedBoto3]:
    """Instrument botocore for the duration (it patches the class, so every client is instrumented), then undo it.

    ``BotocoreInstrumentor`` is a process-wide singleton: nesting this is refused rather than silently sharing.
    """
    instrumentor = BotocoreInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        raise RuntimeError("botocore is already instrumented in this process")
    telemetry = MemoryTelemetry()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        with boto3_runtime_client(emu, retries=max_attempts - 1) as client:
            yield InstrumentedBoto3(emu, telemetry, client)
    finally:
        instrumentor.uninstrument()
        telemetry.shutdown()


def peer_spans(
    emu: BedrockEmulator, model_id: str, *, stream: bool, cached: bool = False, close: bool = False
) -> tuple[list[tuple[PeerReply, Capture]], Capture]:
    """The same call made once (twice when ``cached``: write, then read): each reply with what it emitted.

    Returns ``([(reply, capture), ...], leftovers)``: leftovers is a final capture after the client is
    closed and the instrumentation removed (spans that ended late, if any).
    """
    results: list[tuple[PeerReply, Capture]] = []
    with instrumented_boto3(emu) as peer:
        for _ in range(2 if cached else 1):
            reply = peer.invoke(model_id, invoke_body(cached=cached), stream=stream, close=close)
            results.append((reply, peer.capture()))
        leftovers = peer.capture()
    return results, leftovers


def all_attribute_names(captures: Sequence[Capture]) -> set[str]:
    """Every span attribute and metric-point attribute name the captures hold."""
    names: set[str] = set()
    for capture in captures:
        for span in capture.spans:
            names.update(span.attributes)
        for point in capture.points:
            names.update(point.attributes)
    return names
