"""OpenTelemetry spans and metrics against the emulator, with the real SDK's in-memory exporter and reader."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from e2e_helpers import child_environment, emulator_client
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import aws_attributes, error_attributes, gen_ai_attributes
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes import server_attributes
from opentelemetry.trace import SpanKind, StatusCode

from bedrock_chat import AnthropicBedrock, AnthropicBedrockSync, ThrottlingError
from bedrock_chat._core import genai
from bedrock_chat._log import LOGGER_NAME
from bedrock_chat._telemetry import TOKEN_BUCKETS, Telemetry
from bedrock_chat.emulator import BedrockEmulator

MODEL = "anthropic.claude-haiku-4-5"  # an alias: served on both surfaces
BASE = "anthropic.claude-haiku-4-5-20251001-v1:0"
LEGACY = "anthropic.claude-v2:1"
PROMPT = "CanaryPromptZebra what is a span"
SYSTEM = "CanarySystemOkapi be brief"
SURFACES = ["invoke", "messages-endpoint"]


class Recorder:
    """A tracer and a meter provider of the real SDK, recording in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def client(self, emu: BedrockEmulator, **kwargs: Any) -> AnthropicBedrock:
        return emulator_client(emu, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def everything_text(self) -> str:
        """Every span's name, attributes and events, and every metric attribute, as one text (for canaries)."""
        parts = []
        for span in self.spans():
            parts.append(span.name)
            parts.append(json.dumps(dict(span.attributes or {}), default=str))
            parts.extend(json.dumps([event.name, dict(event.attributes or {})], default=str) for event in span.events)
            parts.append(str(span.status.description))
        for points in self.points().values():
            parts.extend(json.dumps(dict(point.attributes), default=str) for point in points)
        return "\n".join(parts)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.tracer_provider.shutdown()
    rec.meter_provider.shutdown()


def _messages() -> list[dict[str, Any]]:
    return [{"role": "user", "content": PROMPT}]


async def _call(client: AnthropicBedrock, *, stream: bool, surface: str, **kwargs: Any) -> Any:
    if stream:
        async with await client.ChatCompletion.create(
            model=MODEL, messages=_messages(), stream=True, surface=surface, **kwargs
        ) as chunks:
            return await chunks.final_completion()
    return await client.ChatCompletion.create(model=MODEL, messages=_messages(), surface=surface, **kwargs)


def test_attribute_names_are_the_conventions() -> None:
    """Every name we record is the one the opentelemetry-semantic-conventions package publishes."""
    assert genai.GEN_AI_OPERATION_NAME == gen_ai_attributes.GEN_AI_OPERATION_NAME
    assert genai.GEN_AI_PROVIDER_NAME == gen_ai_attributes.GEN_AI_PROVIDER_NAME
    assert gen_ai_attributes.GenAiProviderNameValues.AWS_BEDROCK.value == genai.PROVIDER
    for name in [n for n in dir(genai) if n.startswith("GEN_AI_")]:
        assert getattr(genai, name) == getattr(gen_ai_attributes, name), name
    assert genai.AWS_BEDROCK_GUARDRAIL_ID == aws_attributes.AWS_BEDROCK_GUARDRAIL_ID
    assert genai.AWS_REQUEST_ID == aws_attributes.AWS_REQUEST_ID
    assert genai.ERROR_TYPE == error_attributes.ERROR_TYPE
    assert genai.SERVER_ADDRESS == server_attributes.SERVER_ADDRESS
    assert genai.SERVER_PORT == server_attributes.SERVER_PORT
    assert gen_ai_attributes.GenAiOperationNameValues.TEXT_COMPLETION.value == "text_completion"
    names = {
        gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE,
        gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION,
        gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK,
        gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK,
    }
    source = Path(sys.modules["bedrock_chat._telemetry"].__file__ or "").read_text()
    assert all(f'"{name}"' in source for name in names)


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_is_one_client_span_with_the_conventions_attributes(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, surface: str, stream: bool
) -> None:
    async with recorder.client(bedrock_emulator) as client:
        chat = await _call(
            client, stream=stream, surface=surface, temperature=0.5, top_k=40, stop_sequences=["STOP"], max_tokens=99
        )
    [span] = recorder.spans()
    assert span.name == f"chat {MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes or {})
    port = int(bedrock_emulator.endpoint_url.rsplit(":", 1)[1].rstrip("/"))
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": MODEL,
        "gen_ai.request.max_tokens": 99,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_k": 40,
        "gen_ai.request.stop_sequences": ("STOP",),
        "gen_ai.request.stream": stream,
        "server.address": "127.0.0.1",
        "server.port": port,
        "gen_ai.response.model": chat.model,
        "gen_ai.response.finish_reasons": (chat.stop_reason,),
        "aws.request_id": chat.request_id,
        "gen_ai.usage.output_tokens": chat.usage.output_tokens,
        "gen_ai.usage.input_tokens": chat.usage.input_tokens,
        "bedrock_chat.model.base_id": BASE,
    }
    assert {key: attributes.get(key) for key in expected} == expected
    assert chat.request_id
    assert chat.usage.output_tokens
    if chat.id:
        assert attributes["gen_ai.response.id"] == chat.id
    assert ("gen_ai.response.time_to_first_chunk" in attributes) is stream
    points = recorder.points()
    tokens = {point.attributes["gen_ai.token.type"]: point for point in points["gen_ai.client.token.usage"]}
    assert tokens["input"].sum == chat.usage.input_tokens
    assert tokens["output"].sum == chat.usage.output_tokens
    assert tuple(tokens["input"].explicit_bounds) == TOKEN_BUCKETS
    [duration] = points["gen_ai.client.operation.duration"]
    assert duration.count == 1
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": MODEL,
        "gen_ai.response.model": chat.model,
        "server.address": "127.0.0.1",
        "server.port": port,
    }
    assert ("gen_ai.client.operation.time_to_first_chunk" in points) is stream
    if stream:
        [per_chunk] = points["gen_ai.client.operation.time_per_output_chunk"]
        assert per_chunk.count >= 1
    else:
        assert "gen_ai.client.operation.time_per_output_chunk" not in points


@pytest.mark.asyncio
async def test_cache_tokens_are_counted_in_input_tokens(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    """The convention's input tokens include cache reads and writes, which Anthropic's input_tokens exclude."""
    system = [{"type": "text", "text": "cached words " * 5000, "cache_control": {"type": "ephemeral"}}]
    async with recorder.client(bedrock_emulator) as client:
        first = await client.ChatCompletion.create(model=MODEL, messages=_messages(), system=system)
        second = await client.ChatCompletion.create(model=MODEL, messages=_messages(), system=system)
    spans = recorder.spans()
    assert first.usage.cache_creation_input_tokens
    assert second.usage.cache_read_input_tokens
    for chat, span in zip([first, second], spans, strict=True):
        attributes = dict(span.attributes or {})
        usage = chat.usage
        total = (usage.input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        total += usage.cache_creation_input_tokens or 0
        assert attributes["gen_ai.usage.input_tokens"] == total
        assert attributes.get("gen_ai.usage.cache_read.input_tokens") == usage.cache_read_input_tokens
        assert attributes.get("gen_ai.usage.cache_creation.input_tokens") == usage.cache_creation_input_tokens


@pytest.mark.asyncio
async def test_legacy_text_models_are_text_completion(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    async with recorder.client(bedrock_emulator) as client:
        await client.ChatCompletion.create(model=LEGACY, messages=_messages())
    [span] = recorder.spans()
    assert span.name == f"text_completion {LEGACY}"
    assert (span.attributes or {})["gen_ai.operation.name"] == "text_completion"


@pytest.mark.asyncio
async def test_guardrail_id(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    async with recorder.client(bedrock_emulator) as client:
        await client.ChatCompletion.create(
            model=MODEL, messages=_messages(), guardrail_identifier="abc123", guardrail_version="1"
        )
    [span] = recorder.spans()
    assert (span.attributes or {})["aws.bedrock.guardrail.id"] == "abc123"


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_retries_are_span_events(bedrock_emulator: BedrockEmulator, recorder: Recorder, stream: bool) -> None:
    bedrock_emulator.enqueue_faults("throttle", "throttle")
    async with recorder.client(bedrock_emulator) as client:
        await _call(client, stream=stream, surface="invoke")
    [span] = recorder.spans()
    retries = [event for event in span.events if event.name == "bedrock_chat.retry"]
    assert [dict(event.attributes or {})["error.type"] for event in retries] == ["ThrottlingError"] * 2
    assert all((event.attributes or {})["bedrock_chat.retry.throttled"] for event in retries)
    assert all((event.attributes or {})["aws.request_id"] for event in retries)
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_typed_error_sets_status_and_error_type(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, surface: str, stream: bool
) -> None:
    bedrock_emulator.enqueue_faults("throttle", "throttle", "throttle")
    async with recorder.client(bedrock_emulator) as client:
        with pytest.raises(ThrottlingError) as raised:
            await _call(client, stream=stream, surface=surface)
    [span] = recorder.spans()
    assert span.status.status_code is StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["error.type"] == "ThrottlingError"
    assert attributes["aws.request_id"] == raised.value.request_id
    [duration] = recorder.points()["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "ThrottlingError"
    assert "gen_ai.client.token.usage" not in recorder.points()


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", SURFACES)
async def test_a_stream_closed_early_ends_its_span_as_cancelled(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, surface: str
) -> None:
    async with recorder.client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(model=MODEL, messages=_messages(), stream=True, surface=surface)
        async with stream:
            await stream.__anext__()
            assert recorder.spans() == []  # open while the stream is
    [span] = recorder.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "cancelled"
    assert "gen_ai.usage.output_tokens" not in (span.attributes or {})
    assert "gen_ai.response.time_to_first_chunk" in (span.attributes or {})


@pytest.mark.asyncio
async def test_a_cancelled_call_is_cancelled(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    """The task running a call is cancelled (the emulator stalls): the span ends, error.type ``cancelled``."""
    bedrock_emulator.enqueue_faults("stall")
    async with recorder.client(bedrock_emulator) as client:
        with anyio.move_on_after(0.5):
            await client.ChatCompletion.create(model=MODEL, messages=_messages())
    [span] = recorder.spans()
    assert (span.attributes or {})["error.type"] == "cancelled"


@pytest.mark.asyncio
async def test_count_tokens_span(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    async with recorder.client(bedrock_emulator) as client:
        count = await client.count_tokens(model=MODEL, messages=_messages())
    [span] = recorder.spans()
    assert span.name == f"count_tokens {MODEL}"
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "count_tokens"
    assert attributes["gen_ai.usage.input_tokens"] == count
    assert attributes["aws.request_id"]
    assert "gen_ai.client.token.usage" not in recorder.points()


@pytest.mark.asyncio
async def test_spans_nest_under_the_callers_span(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    tracer = recorder.tracer_provider.get_tracer("test")
    async with recorder.client(bedrock_emulator) as client:
        with tracer.start_as_current_span("caller") as caller:
            await client.ChatCompletion.create(model=MODEL, messages=_messages())
    chat_span = next(span for span in recorder.spans() if span.name.startswith("chat"))
    assert chat_span.parent is not None
    assert chat_span.parent.span_id == caller.get_span_context().span_id


def test_the_sync_facade_nests_under_the_callers_span(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    """The facade's event loop runs in another thread: the caller's context travels with each call."""
    tracer = recorder.tracer_provider.get_tracer("test")
    emu = bedrock_emulator
    with (
        AnthropicBedrockSync(
            access_key=emu.access_key,
            secret_key=emu.secret_key,
            endpoint_url=emu.endpoint_url,
            region=emu.region,
            tracer_provider=recorder.tracer_provider,
            meter_provider=recorder.meter_provider,
        ) as client,
        tracer.start_as_current_span("caller") as caller,
    ):
        client.ChatCompletion.create(model=MODEL, messages=_messages())
        with client.ChatCompletion.create(model=MODEL, messages=_messages(), stream=True) as chunks:
            list(chunks)
    ours = [span for span in recorder.spans() if span.name.startswith("chat")]
    assert len(ours) == 2
    assert all(span.parent and span.parent.span_id == caller.get_span_context().span_id for span in ours)


@pytest.mark.asyncio
async def test_a_batch_is_a_parent_span_with_its_summary(bedrock_emulator: BedrockEmulator, recorder: Recorder) -> None:
    bedrock_emulator.enqueue_faults("throttle")
    requests = [{"model": MODEL, "messages": _messages()} for _ in range(3)] + [{"model": MODEL, "messages": []}]
    async with recorder.client(bedrock_emulator) as client:
        results = await client.ChatCompletion.batch_in_order(requests, concurrency=2)
    assert [result.ok for result in results] == [True, True, True, False]
    batch = next(span for span in recorder.spans() if span.name == "bedrock_chat.batch")
    children = [span for span in recorder.spans() if span.name.startswith("chat")]
    assert len(children) == 3  # the invalid request was refused before any I/O: no span
    assert all(span.parent and span.parent.span_id == batch.context.span_id for span in children)
    attributes = dict(batch.attributes or {})
    completions = [result.unwrap() for result in results[:3]]
    assert attributes["bedrock_chat.batch.ok"] == 3
    assert attributes["bedrock_chat.batch.failed"] == 1
    assert attributes["bedrock_chat.batch.throttles"] == 1
    assert attributes["gen_ai.usage.output_tokens"] == sum(c.usage.output_tokens or 0 for c in completions)
    assert attributes["gen_ai.usage.input_tokens"] == sum(c.usage.input_tokens or 0 for c in completions)
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_canaries_no_secret_and_no_content_without_opt_in(
    bedrock_emulator: BedrockEmulator,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    bedrock_emulator.enqueue_faults("throttle")
    async with recorder.client(bedrock_emulator, session_token=bedrock_emulator.session_token) as client:
        chat = await _call(client, stream=stream, surface="invoke", system=SYSTEM)
    text = recorder.everything_text() + "\n".join(r.getMessage() for r in caplog.records)
    assert "chat " in text
    for canary in (bedrock_emulator.secret_key, "CanaryPromptZebra", "CanarySystemOkapi", chat.completion[:20]):
        assert canary
        assert canary not in text
    if bedrock_emulator.session_token:
        assert bedrock_emulator.session_token not in text


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["option", "environment"])
async def test_content_on_opt_in_and_still_no_secret(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    tools = [{"name": "lookup", "description": "find a thing", "input_schema": {"type": "object"}}]
    if how == "environment":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        options: dict[str, Any] = {}
    else:
        options = {"telemetry_content": True}
    async with recorder.client(bedrock_emulator, **options) as client:
        chat = await client.ChatCompletion.create(model=MODEL, messages=_messages(), system=SYSTEM, tools=tools)
    [span] = recorder.spans()
    attributes = dict(span.attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert json.loads(str(attributes["gen_ai.system_instructions"])) == [{"type": "text", "content": SYSTEM}]
    [tool] = json.loads(str(attributes["gen_ai.tool.definitions"]))
    assert tool["name"] == "lookup"
    assert tool["parameters"] == {"type": "object"}
    [output] = json.loads(str(attributes["gen_ai.output.messages"]))
    assert output["role"] == "assistant"
    assert output["finish_reason"] == chat.stop_reason
    assert bedrock_emulator.secret_key not in recorder.everything_text()


def test_no_sdk_means_no_instruments_and_off_means_off() -> None:
    """With only the API's proxy providers (no SDK set), nothing is made; False is off even with an SDK."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert Telemetry().instruments() is None
    assert Telemetry(False).instruments() is None
    assert Telemetry(True).instruments() is not None


def test_bad_options_are_configuration_errors() -> None:
    from bedrock_chat import ConfigurationError

    with pytest.raises(ConfigurationError, match="telemetry:"):
        AnthropicBedrock(region="us-east-1", api_key="k", telemetry="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="telemetry_content:"):
        AnthropicBedrock(region="us-east-1", api_key="k", telemetry_content=1)  # type: ignore[arg-type]


_WITHOUT_OTEL = """
import sys, asyncio
sys.modules["opentelemetry"] = None  # import opentelemetry -> ImportError
from bedrock_chat import AnthropicBedrock, ConfigurationError
from bedrock_chat.emulator import BedrockEmulator

async def main():
    async with BedrockEmulator() as emu:
        async with AnthropicBedrock(access_key=emu.access_key, secret_key=emu.secret_key,
                                    endpoint_url=emu.endpoint_url, region=emu.region) as client:
            chat = await client.ChatCompletion.create(model="%s", messages=[{"role": "user", "content": "hi"}])
            async with await client.ChatCompletion.create(
                model="%s", messages=[{"role": "user", "content": "hi"}], stream=True) as s:
                await s.final_completion()
            await client.count_tokens(model="%s", messages=[{"role": "user", "content": "hi"}])
            batch = [{"model": "%s", "messages": [{"role": "user", "content": "x"}]}]
            results = await client.ChatCompletion.batch_in_order(batch)
            assert results[0].ok and chat.completion
    try:
        AnthropicBedrock(region="us-east-1", api_key="k", telemetry=True)
    except ConfigurationError as exc:
        print("refused:", exc)
    print("ok")

asyncio.run(main())
"""


def test_works_with_opentelemetry_unimportable(tmp_path: Path) -> None:
    code = _WITHOUT_OTEL % (MODEL, MODEL, MODEL, MODEL)
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_environment(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "refused: telemetry: OpenTelemetry is not installed" in done.stdout
    assert done.stdout.strip().endswith("ok")


def test_a_global_sdk_set_after_the_client_turns_it_on(tmp_path: Path) -> None:
    """Auto mode looks until a real provider is set (in a child: a global provider is set once per process)."""
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from bedrock_chat._telemetry import Telemetry\n"
        "t = Telemetry()\n"
        "assert t.instruments() is None\n"
        "trace.set_tracer_provider(TracerProvider())\n"
        "assert t.instruments() is not None\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_environment(tmp_path), capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
