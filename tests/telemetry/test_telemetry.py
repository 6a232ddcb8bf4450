"""OpenTelemetry spans and metrics against the emulator, with the real SDK's in-memory exporter and reader."""

from __future__ import annotations

import gc
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
import trio
from e2e_helpers import child_environment, emulator_client
from opentelemetry import trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.semconv._incubating.attributes import aws_attributes, error_attributes, gen_ai_attributes
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes import server_attributes
from opentelemetry.trace import SpanKind, StatusCode
from reliability.reliability_helpers import LoopbackServer, read_request

from bedrock_chat import AnthropicBedrock, AnthropicBedrockSync, BedrockError, RetryPolicy, ThrottlingError, _telemetry
from bedrock_chat._core import genai
from bedrock_chat._core.eventstream import encode_chunk_event, encode_exception_event
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
            while (await stream.__anext__()).type not in genai.OUTPUT_CHUNK_TYPES:
                pass
            assert recorder.spans() == []  # open while the stream is
    [span] = recorder.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "cancelled"
    assert "gen_ai.usage.output_tokens" not in (span.attributes or {})
    assert "gen_ai.response.time_to_first_chunk" in (span.attributes or {})


@pytest.mark.asyncio
@pytest.mark.parametrize(("model", "surface"), [(MODEL, "invoke"), (MODEL, "messages-endpoint"), (LEGACY, "invoke")])
async def test_output_chunks_are_the_content_events_not_the_envelope(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, model: str, surface: str
) -> None:
    """time_per_output_chunk is recorded for each output chunk after the first; message_start, block
    start/stop, message_delta and message_stop are not output chunks."""
    async with recorder.client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(
            model=model, messages=_messages(), stream=True, surface=surface, max_tokens=40
        )
        async with stream:
            types = [chunk.type async for chunk in stream]
    outputs = sum(kind in ("content_block_delta", "completion") for kind in types)
    assert outputs >= 3
    if model == MODEL:
        assert len(types) > outputs  # the envelope was there, and is not counted
    points = recorder.points()
    [first] = points["gen_ai.client.operation.time_to_first_chunk"]
    [per_chunk] = points["gen_ai.client.operation.time_per_output_chunk"]
    assert (first.count, per_chunk.count) == (1, outputs - 1)


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", SURFACES)
async def test_a_stream_closed_before_its_first_output_has_no_time_to_first_chunk(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, surface: str
) -> None:
    async with recorder.client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(model=MODEL, messages=_messages(), stream=True, surface=surface)
        async with stream:
            assert (await stream.__anext__()).type == "message_start"
    [span] = recorder.spans()
    assert (span.attributes or {})["error.type"] == "cancelled"
    assert "gen_ai.response.time_to_first_chunk" not in (span.attributes or {})
    assert "gen_ai.client.operation.time_to_first_chunk" not in recorder.points()


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


# ---------------------------------------------------------------------------------------------- review of #16


@pytest.mark.asyncio
async def test_retry_numbers_run_across_a_stream_resent_after_a_mid_stream_failure(
    bedrock_emulator: BedrockEmulator, recorder: Recorder
) -> None:
    """Throttled, then failed mid-stream before any text (re-sent), then throttled again: retries 1, 2, 3."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, reply_tokens=0)  # the fault comes before text
    bedrock_emulator.enqueue_faults("throttle", "stream_exception:internalServerException", "throttle")
    async with recorder.client(bedrock_emulator, max_retries=3) as client:
        chat = await _call(client, stream=True, surface="invoke")
    assert chat.stop_reason
    assert [request.status for request in bedrock_emulator.requests] == [429, 200, 429, 200]
    [span] = recorder.spans()
    retries = [dict(event.attributes or {}) for event in span.events if event.name == "bedrock_chat.retry"]
    assert [event["bedrock_chat.retry.number"] for event in retries] == [1, 2, 3]
    assert [event["error.type"] for event in retries] == ["ThrottlingError", "InternalServerError", "ThrottlingError"]


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", SURFACES)
async def test_a_stream_dropped_unclosed_ends_its_span_when_collected(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, surface: str
) -> None:
    """Neither closed nor read to its end: the span ends when the stream is garbage-collected, ``abandoned``."""

    async def read_one_chunk_and_drop(client: AnthropicBedrock) -> None:
        stream = await client.ChatCompletion.create(model=MODEL, messages=_messages(), stream=True, surface=surface)
        await stream.__anext__()

    async with recorder.client(bedrock_emulator) as client:
        await read_one_chunk_and_drop(client)
        gc.collect()
        [span] = recorder.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "abandoned"
    assert "gen_ai.usage.output_tokens" not in (span.attributes or {})
    [duration] = recorder.points()["gen_ai.client.operation.duration"]
    assert duration.attributes["error.type"] == "abandoned"


@pytest.mark.asyncio
async def test_a_stream_read_to_its_end_is_not_abandoned_when_collected(
    bedrock_emulator: BedrockEmulator, recorder: Recorder
) -> None:
    """The finalizer of a stream that ended is a no-op: one span, not failed afterwards."""

    async def read_all_and_drop(client: AnthropicBedrock) -> None:
        stream = await client.ChatCompletion.create(model=MODEL, messages=_messages(), stream=True)
        await stream.final_completion()

    async with recorder.client(bedrock_emulator) as client:
        await read_all_and_drop(client)
        gc.collect()
    [span] = recorder.spans()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in (span.attributes or {})


class _RecordingSampler(Sampler):
    """Samples everything, keeping the attributes each span had when it was created."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}

    def should_sample(self, parent_context: Any, trace_id: int, name: str, *args: Any, **kwargs: Any) -> SamplingResult:
        attributes = kwargs.get("attributes") if "attributes" in kwargs else (args[1] if len(args) > 1 else None)
        self.seen[name] = dict(attributes or {})
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "recording"


@pytest.mark.asyncio
async def test_a_sampler_sees_the_conventions_sampling_attributes_at_creation(
    bedrock_emulator: BedrockEmulator,
) -> None:
    """The conventions ask for operation, provider, model, server address and port at span creation."""
    sampler = _RecordingSampler()
    provider = TracerProvider(sampler=sampler)
    try:
        async with emulator_client(bedrock_emulator, tracer_provider=provider) as client:
            await client.ChatCompletion.create(model=MODEL, messages=_messages())
    finally:
        provider.shutdown()
    seen = sampler.seen[f"chat {MODEL}"]
    for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "server.address"):
        assert seen[key], key
    assert seen["server.port"] == int(bedrock_emulator.endpoint_url.rsplit(":", 1)[1].rstrip("/"))


def test_under_trio_calls_streams_and_a_batch_nest_under_the_callers_span(
    bedrock_emulator: BedrockEmulator, recorder: Recorder
) -> None:
    """The same spans under trio: a call and a stream under the caller's span, a batch's requests under it."""
    tracer = recorder.tracer_provider.get_tracer("test")
    ids: dict[str, int] = {}

    async def main() -> None:
        async with recorder.client(bedrock_emulator) as client:
            with tracer.start_as_current_span("caller") as caller:
                ids["caller"] = caller.get_span_context().span_id
                await client.ChatCompletion.create(model=MODEL, messages=_messages())
                async with await client.ChatCompletion.create(model=MODEL, messages=_messages(), stream=True) as s:
                    await s.final_completion()
                requests = [{"model": MODEL, "messages": _messages()} for _ in range(3)]
                results = await client.ChatCompletion.batch_in_order(requests, concurrency=2)
                assert all(result.ok for result in results)

    trio.run(main)
    spans = recorder.spans()
    batch = next(span for span in spans if span.name == "bedrock_chat.batch")
    calls = [span for span in spans if span.name == f"chat {MODEL}"]
    assert len(calls) == 5
    parents = sorted(
        "batch"
        if span.parent and span.parent.span_id == batch.context.span_id
        else "caller"
        if span.parent and span.parent.span_id == ids["caller"]
        else "none"
        for span in calls
    )
    assert parents == ["batch", "batch", "batch", "caller", "caller"]
    assert batch.parent is not None
    assert batch.parent.span_id == ids["caller"]
    streamed = [span for span in calls if (span.attributes or {})["gen_ai.request.stream"]]
    assert len(streamed) == 1
    assert "gen_ai.response.time_to_first_chunk" in (streamed[0].attributes or {})
    assert dict(batch.attributes or {})["bedrock_chat.batch.ok"] == 3


# -- the CLI's batch, under a global SDK (as `opentelemetry-instrument` would set one) ------------------------


@pytest.fixture
def global_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    """The API's global providers set to the real SDK's, and restored after (the API sets them once per
    process otherwise; its own test utilities reset the same globals)."""
    rec = Recorder()
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", rec.tracer_provider)
    monkeypatch.setattr(metrics_internal, "_METER_PROVIDER", rec.meter_provider)
    yield rec
    rec.tracer_provider.shutdown()
    rec.meter_provider.shutdown()


def test_cli_batch_is_a_parent_span_with_a_child_per_record(
    run_batch: Any,
    bedrock_emulator: BedrockEmulator,
    global_sdk: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``bedrock-chat batch`` (raw bodies through ``_send_raw``): the batch span, one CLIENT span per record
    sent, the summary; a record refused before sending has no span but counts as failed."""
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    bedrock_emulator.enqueue_faults("throttle")
    cli_model = "anthropic.claude-3-haiku-20240307-v1:0"
    lines = [
        {
            "recordId": "b0",
            "modelId": cli_model,
            "modelInput": {
                "anthropic_version": "bedrock-2023-05-31",
                "max_tokens": 16,
                "temperature": 0.25,
                "stop_sequences": ["END"],
                "messages": [{"role": "user", "content": PROMPT}],
            },
        },
        {"id": "o1", "model": cli_model, "messages": [{"role": "user", "content": PROMPT}], "top_k": 5},
        {"id": "bad", "model": cli_model, "messages": []},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert run_batch(str(source), "-o", "out.jsonl") == 1  # the bad record is an error line
    results = {line["recordId"]: line for line in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    spans = global_sdk.spans()
    [batch] = [span for span in spans if span.name == "bedrock_chat.batch"]
    children = [span for span in spans if span.name == f"chat {cli_model}"]
    assert len(children) == 2
    assert all(span.kind is SpanKind.CLIENT for span in children)
    assert all(span.parent is not None and span.parent.span_id == batch.context.span_id for span in children)
    by_tokens = {
        dict(span.attributes or {})["gen_ai.request.max_tokens"]: dict(span.attributes or {}) for span in children
    }
    first = by_tokens[16]
    assert first["gen_ai.request.temperature"] == 0.25
    assert first["gen_ai.request.stop_sequences"] == ("END",)
    assert first["gen_ai.provider.name"] == "aws.bedrock"
    assert first["gen_ai.request.stream"] is False
    assert first["gen_ai.response.model"] == results["b0"]["modelOutput"]["model"]
    assert first["gen_ai.response.id"] == results["b0"]["modelOutput"]["id"]
    assert first["gen_ai.response.finish_reasons"] == (results["b0"]["modelOutput"]["stop_reason"],)
    assert first["gen_ai.usage.output_tokens"] == results["b0"]["modelOutput"]["usage"]["output_tokens"]
    assert first["aws.request_id"]
    second = next(attributes for attributes in by_tokens.values() if attributes.get("gen_ai.request.top_k") == 5)
    assert "gen_ai.request.temperature" not in second
    summary = dict(batch.attributes or {})
    assert summary["bedrock_chat.batch.ok"] == 2
    assert summary["bedrock_chat.batch.failed"] == 1
    assert summary["bedrock_chat.batch.throttles"] == 1
    outputs = [results[key]["modelOutput"]["usage"]["output_tokens"] for key in ("b0", "o1")]
    assert summary["gen_ai.usage.output_tokens"] == sum(outputs)
    retries = [event for span in children for event in span.events if event.name == "bedrock_chat.retry"]
    assert len(retries) == 1
    assert [point.attributes["gen_ai.token.type"] for point in global_sdk.points()["gen_ai.client.token.usage"]]
    text = global_sdk.everything_text()
    assert PROMPT not in text  # no content without the opt-in
    assert bedrock_emulator.secret_key not in text


def test_cli_batch_records_content_on_opt_in(
    run_batch: Any,
    bedrock_emulator: BedrockEmulator,
    global_sdk: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``: the record's messages and reply, in the
    conventions' form (the CLI has no option of its own)."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    line = {
        "id": "c",
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "system": SYSTEM,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(line) + "\n")
    assert run_batch(str(source), "-o", "out.jsonl") == 0
    [span] = [span for span in global_sdk.spans() if span.name.startswith("chat ")]
    attributes = dict(span.attributes or {})
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]}
    ]
    assert json.loads(str(attributes["gen_ai.system_instructions"])) == [{"type": "text", "content": SYSTEM}]
    [output] = json.loads(str(attributes["gen_ai.output.messages"]))
    assert output["role"] == "assistant"
    assert output["parts"][0]["type"] == "text"


def test_cli_batch_without_an_sdk_makes_no_span(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path
) -> None:
    """No SDK set (only the API's proxy providers): the CLI sends as before, and the proxy records nothing."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "x", "model": MODEL, "messages": _messages()}) + "\n")
    assert run_batch(str(source), "-o", "out.jsonl") == 0


# -- secrets a hostile server echoes, through a retry and a mid-stream error ---------------------------------

CANARY_SECRET = "CanarySecretKey/0123456789+abcdefghijKLMN"
CANARY_TOKEN = "CanarySessionToken/IQoJb3JpZ2luX2VjEXAMPLE+ZZZ="
_SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")


class _EchoingBedrock(LoopbackServer):
    """Answers request n with ``answers[n](echoed)``; ``echoed`` is what the request carried that must not come
    back: its Authorization header and signature, the session token, and the secret key (the test's)."""

    def __init__(self, answers: list[Callable[[list[str]], bytes]]) -> None:
        super().__init__()
        self.answers = answers
        self.signatures: list[str] = []

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            lines, _ = await read_request(stream)
            fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if ": " in line)}
            authorization = fields.get("authorization", "")
            self.signatures += _SIGNATURE.findall(authorization)
            echoed = [authorization, *_SIGNATURE.findall(authorization), CANARY_SECRET, fields["x-amz-security-token"]]
            await stream.send(self.answers.pop(0)(echoed))


def _http(status: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(body)}"]
    return ("\r\n".join([*head, "Connection: close"]) + "\r\n\r\n").encode("latin-1") + body


def _echoing_500(echoed: list[str]) -> bytes:
    body = json.dumps({"message": "internal error for " + " | ".join(echoed)}).encode()
    headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": "InternalServerException",
        "x-amzn-RequestId": "req-" + echoed[2],
    }
    return _http("500 Internal Server Error", headers, body)


def _echoing_stream(*, text_first: bool) -> Callable[[list[str]], bytes]:
    def answer(echoed: list[str]) -> bytes:
        body = b""
        if text_first:
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}
            body += encode_chunk_event(json.dumps(delta).encode())
        kind = "modelStreamErrorException" if text_first else "throttlingException"
        body += encode_exception_event(kind, json.dumps({"message": "stream broke: " + " | ".join(echoed)}).encode())
        headers = {"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": "req-" + echoed[3]}
        return _http("200 OK", headers, body)

    return answer


@pytest.mark.asyncio
async def test_canaries_a_server_echoing_secrets_in_a_retried_error_and_a_mid_stream_error(
    recorder: Recorder,
) -> None:
    """A 500 (retried), a stream failing before text (re-sent) and one failing after it, every one echoing the
    secret key, session token and signature in its message and request id: none reaches a span or metric."""
    answers = [_echoing_500, _echoing_stream(text_first=False), _echoing_stream(text_first=True)]
    async with _EchoingBedrock(answers) as server:
        client = AnthropicBedrock(
            access_key="AKIDCANARYEXAMPLE",
            secret_key=CANARY_SECRET,
            session_token=CANARY_TOKEN,
            region="us-east-1",
            endpoint_url=server.url,
            tracer_provider=recorder.tracer_provider,
            meter_provider=recorder.meter_provider,
            retry_policy=RetryPolicy(max_retries=3, base=0.0, throttle_base=0.0),
        )
        with anyio.fail_after(10):
            async with client:
                stream = await client.ChatCompletion.create(
                    model="anthropic.claude-3-5-haiku-20241022-v1:0", messages=_messages(), stream=True
                )
                with pytest.raises(BedrockError) as raised:
                    async with stream:
                        await stream.final_completion()
    assert raised.value.partial_text == "Hel"
    assert not answers  # all three were sent
    [span] = recorder.spans()
    retries = [dict(event.attributes or {}) for event in span.events if event.name == "bedrock_chat.retry"]
    assert [event["bedrock_chat.retry.number"] for event in retries] == [1, 2]
    assert "<redacted>" in str(retries[0]["aws.request_id"])  # the scrubbed echo, not the secret
    assert (span.attributes or {})["error.type"] == type(raised.value).__name__
    text = recorder.everything_text()
    for canary in (CANARY_SECRET, CANARY_TOKEN, *server.signatures):
        assert canary not in text


def test_images_and_documents_are_the_conventions_blob_and_uri_parts() -> None:
    """An inline (base64) image or PDF is a ``blob`` part, one by URL a ``uri`` part, per the input-messages
    schema; a plain-text document stays a generic part."""
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                    {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
                    {"type": "text", "text": "what are these?"},
                ],
            }
        ]
    }
    [message] = json.loads(genai.raw_content_attributes(body)["gen_ai.input.messages"])
    assert message["parts"] == [
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw0K"},
        {"type": "uri", "modality": "document", "uri": "https://example.com/a.pdf"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}},
        {"type": "text", "content": "what are these?"},
    ]


@pytest.mark.asyncio
async def test_a_batch_span_starts_when_the_batch_runs_under_the_span_current_there(
    bedrock_emulator: BedrockEmulator, recorder: Recorder
) -> None:
    """Made outside any span, run inside one: the batch nests under the running caller; a batch made and never
    run starts no span at all."""
    started: list[str] = []

    class Starts(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            started.append(span.name)

    recorder.tracer_provider.add_span_processor(Starts())
    tracer = recorder.tracer_provider.get_tracer("test")
    requests = [{"model": MODEL, "messages": _messages()}]
    async with recorder.client(bedrock_emulator) as client:
        client.ChatCompletion.batch(requests)  # never run
        run = client.ChatCompletion.batch(requests)
        assert started == []
        with tracer.start_as_current_span("caller") as caller:
            async with run:
                results = [result async for result in run]
    assert [result.ok for result in results] == [True]
    assert started.count("bedrock_chat.batch") == 1
    batch = next(span for span in recorder.spans() if span.name == "bedrock_chat.batch")
    assert batch.parent is not None
    assert batch.parent.span_id == caller.get_span_context().span_id


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_metric_attributes_are_built_once_per_model_and_server(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Calls to the same model and endpoint reuse one set of metric attribute dicts (the SDK copies them)."""
    built: list[dict[str, Any]] = []
    original = genai.metric_attributes

    def counting(span_attributes: Any) -> dict[str, Any]:
        built.append(original(span_attributes))
        return built[-1]

    monkeypatch.setattr(genai, "metric_attributes", counting)
    async with recorder.client(bedrock_emulator) as client:
        for _ in range(3):
            await _call(client, stream=stream, surface="invoke")
        await client.ChatCompletion.create(model=LEGACY, messages=_messages())
    assert len(built) == 2  # MODEL once, LEGACY once
    assert "gen_ai.response.model" not in built[0]  # never mutated by an answer
    points = recorder.points()
    [mine, legacy] = sorted(points["gen_ai.client.operation.duration"], key=lambda p: -p.count)
    assert (mine.count, legacy.count) == (3, 1)
    assert mine.attributes["gen_ai.request.model"] == MODEL
    assert mine.attributes["gen_ai.response.model"]
    tokens = {
        p.attributes["gen_ai.token.type"]: p.count
        for p in points["gen_ai.client.token.usage"]
        if p.attributes["gen_ai.request.model"] == MODEL
    }
    assert tokens == {"input": 3, "output": 3}


def test_metric_attribute_cache_is_bounded_and_right() -> None:
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    try:
        instruments = Telemetry(True, meter_provider=provider).instruments()
        assert instruments is not None
        limit = _telemetry._MAX_DIMENSIONS
        for port in range(limit + 10):
            attributes = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "aws.bedrock",
                "gen_ai.request.model": "m",
                "gen_ai.request.max_tokens": 5,
                "server.address": "h",
                "server.port": port,
            }
            dims = instruments._dimensions(attributes)
            assert dims.base == genai.metric_attributes(attributes)
            assert instruments._dimensions(attributes) is dims
            duration, tokens_in, tokens_out = dims.answered(f"r{port}")
            assert duration == {**dims.base, "gen_ai.response.model": f"r{port}"}
            assert tokens_in == {**duration, "gen_ai.token.type": "input"}
            assert tokens_out == {**duration, "gen_ai.token.type": "output"}
            assert dims.answered(None)[0] == dims.base
            assert len(instruments._dims) <= limit
    finally:
        provider.shutdown()


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_a_sampled_out_call_records_metrics_and_builds_no_span_attributes(
    bedrock_emulator: BedrockEmulator, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """A span the sampler drops costs no response attributes; the metrics are recorded all the same."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("response attributes built for a span that is not recording")

    monkeypatch.setattr(genai, "response_attributes", refuse)
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        async with emulator_client(bedrock_emulator, tracer_provider=tracer_provider, meter_provider=meters) as client:
            await _call(client, stream=stream, surface="invoke")
        data = reader.get_metrics_data()
        assert data is not None
        points: dict[str, Any] = {
            m.name: m.data.data_points for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }
    finally:
        tracer_provider.shutdown()
        meters.shutdown()
    assert exporter.get_finished_spans() == ()
    [duration] = points["gen_ai.client.operation.duration"]
    assert duration.attributes["gen_ai.response.model"]
    assert sorted(p.attributes["gen_ai.token.type"] for p in points["gen_ai.client.token.usage"]) == ["input", "output"]
    assert ("gen_ai.client.operation.time_per_output_chunk" in points) is stream


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("caller_span", [False, True])
async def test_a_calls_metrics_have_exemplars_of_its_own_span(
    bedrock_emulator: BedrockEmulator, recorder: Recorder, stream: bool, caller_span: bool
) -> None:
    """Duration, token usage and time to first chunk are recorded in the call span's context, so the SDK's
    default (trace-based) exemplar filter links them to that span, with or without a span of the caller's."""
    tracer = recorder.tracer_provider.get_tracer("test")
    async with recorder.client(bedrock_emulator) as client:
        if caller_span:
            with tracer.start_as_current_span("caller"):
                await _call(client, stream=stream, surface="invoke")
        else:
            await _call(client, stream=stream, surface="invoke")
    [call] = [span for span in recorder.spans() if span.name != "caller"]
    assert call.context is not None
    points = recorder.points()
    names = ["gen_ai.client.operation.duration", "gen_ai.client.token.usage"]
    if stream:
        names.append("gen_ai.client.operation.time_to_first_chunk")
    for name in names:
        for point in points[name]:
            assert point.exemplars, name
            assert {exemplar.span_id for exemplar in point.exemplars} == {call.context.span_id}, name
