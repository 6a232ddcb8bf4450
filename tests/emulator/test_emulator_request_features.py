"""The emulator's 2026 request features (issue #15, item 8), checked by clients none of us wrote.

boto3 (InvokeModel, event stream), ``AsyncAnthropicBedrock`` (InvokeModel through the anthropic SDK) and
``AsyncAnthropicBedrockMantle`` (``/anthropic/v1/messages``, SSE) read the usage, content blocks and
errors with their own parsers: prompt caching (floors, TTLs on an injected clock, the 5th breakpoint),
structured outputs and strict tools (validated with ``jsonschema``), effort, thinking with signatures
(a tool-use loop round-trips them), citations, and the padding of InvokeModel stream chunks.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import attrs
import boto3
import botocore.exceptions
import jsonschema
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer
from emulator_testing import post_signed

from bedrock_chat.emulator import BedrockEmulator, count_tokens

SONNET_45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"  # cache floor 1,024, 1h TTL, dated: bedrock-2023-05-31
HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"  # floor 2,048, no 1h TTL, no thinking or effort
OPUS_47 = "anthropic.claude-opus-4-7"  # floor 2,048, both surfaces, adaptive thinking only, effort
SONNET_46 = "anthropic.claude-sonnet-4-6"  # no effort
VERSION = "bedrock-2023-05-31"
ADAPTIVE: Any = {"type": "adaptive"}
PADDING_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def words(n: int, word: str = "policy") -> str:
    """``n`` emulator tokens (one per word)."""
    return " ".join([word] * n)


def cached_system(n: int, ttl: str | None = None) -> list[dict[str, Any]]:
    """A system prompt of ``n`` tokens with a breakpoint on it."""
    control: dict[str, Any] = {"type": "ephemeral"}
    if ttl is not None:
        control["ttl"] = ttl
    return [{"type": "text", "text": words(n), "cache_control": control}]


def body(system: list[dict[str, Any]], question: str = "What does it say?", **extra: Any) -> dict[str, Any]:
    return {
        "anthropic_version": VERSION,
        "max_tokens": 60,
        "system": system,
        "messages": [{"role": "user", "content": question}],
        **extra,
    }


@pytest.fixture
def boto3_client(bedrock_emulator: BedrockEmulator) -> Iterator[Any]:
    """A single-attempt boto3 bedrock-runtime client aimed at the session's emulator."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=bedrock_emulator.endpoint_url,
        region_name=bedrock_emulator.region,
        aws_access_key_id=bedrock_emulator.access_key,
        aws_secret_access_key=bedrock_emulator.secret_key,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=10),
    )
    yield client
    client.close()


def invoke(client: Any, model: str, document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    response = client.invoke_model(modelId=model, body=json.dumps(document))
    return json.loads(response["body"].read()), response["ResponseMetadata"]["HTTPHeaders"]


def stream(client: Any, model: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.invoke_model_with_response_stream(modelId=model, body=json.dumps(document))
    try:
        return [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    finally:
        response["body"].close()


def sdk_options(emu: BedrockEmulator) -> dict[str, Any]:
    return {
        "aws_access_key": emu.access_key,
        "aws_secret_key": emu.secret_key,
        "aws_region": emu.region,
        "max_retries": 0,
        "timeout": 10,
    }


def invoke_sdk(emu: BedrockEmulator) -> anthropic.AsyncAnthropicBedrock:
    """The anthropic SDK's InvokeModel client."""
    return anthropic.AsyncAnthropicBedrock(base_url=emu.endpoint_url, **sdk_options(emu))


def mantle_sdk(emu: BedrockEmulator) -> anthropic.AsyncAnthropicBedrockMantle:
    """The anthropic SDK's ``/anthropic/v1/messages`` client."""
    return anthropic.AsyncAnthropicBedrockMantle(base_url=f"{emu.endpoint_url}/anthropic", **sdk_options(emu))


class Clock:
    """A cache clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------------
# Prompt caching


def test_boto3_second_request_reads_what_the_first_wrote(boto3_client: Any) -> None:
    """The first request writes the 1,100-token prefix, the second reads it; body usage and headers agree."""
    document = body(cached_system(1100))
    first, first_headers = invoke(boto3_client, SONNET_45, document)
    second, second_headers = invoke(boto3_client, SONNET_45, document)
    question = count_tokens("What does it say?")
    assert first["usage"]["cache_creation_input_tokens"] == 1100
    assert first["usage"]["cache_read_input_tokens"] == 0
    assert first["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 1100, "ephemeral_1h_input_tokens": 0}
    assert first["usage"]["input_tokens"] == question
    assert (
        first_headers["x-amzn-bedrock-cache-write-input-token-count"],
        first_headers["x-amzn-bedrock-cache-read-input-token-count"],
    ) == ("1100", "0")
    assert second["usage"]["cache_read_input_tokens"] == 1100
    assert second["usage"]["cache_creation_input_tokens"] == 0
    assert second["usage"]["input_tokens"] == question
    assert second_headers["x-amzn-bedrock-cache-read-input-token-count"] == "1100"
    assert second_headers["x-amzn-bedrock-input-token-count"] == str(question)


def test_boto3_stream_reports_cache_usage_in_message_start(boto3_client: Any) -> None:
    """Streams too: ``message_start``'s usage carries the cache counts, on both calls."""
    document = body(cached_system(1100, "1h"))
    first = stream(boto3_client, SONNET_45, document)[0]["message"]["usage"]
    second = stream(boto3_client, SONNET_45, document)[0]["message"]["usage"]
    assert first["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1100}
    assert (first["cache_creation_input_tokens"], first["cache_read_input_tokens"]) == (1100, 0)
    assert (second["cache_creation_input_tokens"], second["cache_read_input_tokens"]) == (0, 1100)


def test_below_the_floor_nothing_is_cached(boto3_client: Any, bedrock_emulator: BedrockEmulator) -> None:
    """A breakpoint under the model's floor (2,048 on Haiku 3.5) caches nothing, and is no error."""
    document = body(cached_system(2000))
    for _ in range(2):
        result, headers = invoke(boto3_client, HAIKU_35, document)
        assert result["usage"]["cache_creation_input_tokens"] == 0
        assert result["usage"]["cache_read_input_tokens"] == 0
        assert result["usage"]["input_tokens"] == 2000 + count_tokens("What does it say?")
        assert headers["x-amzn-bedrock-cache-write-input-token-count"] == "0"
    assert len(bedrock_emulator.prompt_cache) == 0
    result, _ = invoke(boto3_client, HAIKU_35, body(cached_system(2048)))
    assert result["usage"]["cache_creation_input_tokens"] == 2048


def test_ttl_expires_on_the_injected_clock_and_hits_reset_it(
    boto3_client: Any, bedrock_emulator: BedrockEmulator
) -> None:
    """5 minutes after the last hit the prefix is gone; a hit at 4 minutes keeps it alive 5 more."""
    clock = Clock()
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, cache_clock=clock)
    document = body(cached_system(1100))

    def usage() -> tuple[int, int]:
        result, _ = invoke(boto3_client, SONNET_45, document)
        return result["usage"]["cache_creation_input_tokens"], result["usage"]["cache_read_input_tokens"]

    assert usage() == (1100, 0)
    clock.now += 240
    assert usage() == (0, 1100)  # a hit at 4 minutes: the TTL starts again
    clock.now += 240
    assert usage() == (0, 1100)  # 8 minutes after the write, 4 after the hit
    clock.now += 300
    assert usage() == (1100, 0)  # expired: written again


def test_one_hour_ttl(boto3_client: Any, bedrock_emulator: BedrockEmulator) -> None:
    """A 1h breakpoint outlives 5 minutes; a model without the 1h TTL refuses it."""
    clock = Clock()
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, cache_clock=clock)
    document = body(cached_system(1100, "1h"))
    invoke(boto3_client, SONNET_45, document)
    clock.now += 3000
    result, _ = invoke(boto3_client, SONNET_45, document)
    assert result["usage"]["cache_read_input_tokens"] == 1100
    with pytest.raises(botocore.exceptions.ClientError, match="ttl") as error:
        invoke(boto3_client, HAIKU_35, body(cached_system(3000, "1h")))
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_prefix_order_and_longest_hit(boto3_client: Any) -> None:
    """tools -> system -> messages: a later breakpoint extends the cached prefix and reads the earlier one."""
    tool = {"name": "lookup", "input_schema": {"type": "object", "properties": {}}}
    turns = [
        {
            "role": "user",
            "content": [{"type": "text", "text": words(600, "turn"), "cache_control": {"type": "ephemeral"}}],
        }
    ]
    first = {**body(cached_system(1100)), "tools": [tool]}
    result, _ = invoke(boto3_client, SONNET_45, first)
    assert result["usage"]["cache_creation_input_tokens"] == 1100
    second = {**first, "messages": turns}
    result, _ = invoke(boto3_client, SONNET_45, second)
    assert (result["usage"]["cache_read_input_tokens"], result["usage"]["cache_creation_input_tokens"]) == (1100, 600)
    assert result["usage"]["input_tokens"] == 0
    # Another tool list changes the prefix of everything after it: nothing is read.
    result, _ = invoke(boto3_client, SONNET_45, {**second, "tools": [{**tool, "name": "other"}]})
    assert (result["usage"]["cache_read_input_tokens"], result["usage"]["cache_creation_input_tokens"]) == (0, 1700)


def test_a_fifth_breakpoint_is_a_validation_exception(boto3_client: Any, bedrock_emulator: BedrockEmulator) -> None:
    """At most four blocks may carry cache_control; a fifth is Bedrock's 400, and nothing is cached."""
    blocks = [{"type": "text", "text": words(300), "cache_control": {"type": "ephemeral"}} for _ in range(5)]
    with pytest.raises(botocore.exceptions.ClientError, match="A maximum of 4 blocks") as error:
        invoke(boto3_client, SONNET_45, body(blocks))
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert len(bedrock_emulator.prompt_cache) == 0
    result, _ = invoke(boto3_client, SONNET_45, body(blocks[:4]))
    assert result["usage"]["cache_creation_input_tokens"] == 1200  # only the prefixes of 1,200 tokens reach 1,024


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_anthropic_sdk_reads_cache_usage(bedrock_emulator: BedrockEmulator, surface: str, streamed: bool) -> None:
    """The anthropic SDK's own models read our usage: InvokeModel and the Messages endpoint, streamed and not."""
    system: Any = cached_system(2100)
    messages: Any = [{"role": "user", "content": "Summarise it"}]
    usages = []
    message: anthropic.types.Message
    async with invoke_sdk(bedrock_emulator) if surface == "invoke" else mantle_sdk(bedrock_emulator) as client:
        for _ in range(2):
            if streamed:
                async with client.messages.stream(
                    model=OPUS_47, max_tokens=40, system=system, messages=messages
                ) as events:
                    message = await events.get_final_message()
            else:
                message = await client.messages.create(model=OPUS_47, max_tokens=40, system=system, messages=messages)
            usages.append(message.usage)
    first, second = usages
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (2100, 0)
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_5m_input_tokens == 2100
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 2100)
    assert second.input_tokens == count_tokens("Summarise it")


# ---------------------------------------------------------------------------------------------------
# Structured outputs and strict tools

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 3, "uniqueItems": True},
        "score": {"type": "integer", "minimum": 10, "maximum": 20},
        "ratio": {"type": "number", "exclusiveMaximum": 1},
        "kind": {"enum": ["a", "b"]},
        "when": {"type": "string", "format": "date-time"},
        "owner": {"$ref": "#/$defs/person"},
        "maybe": {"type": ["null", "boolean"]},
        "extra": {"type": "string"},
    },
    "required": ["name", "tags", "score", "ratio", "kind", "when", "owner", "maybe"],
    "additionalProperties": False,
    "$defs": {
        "person": {
            "type": "object",
            "properties": {"email": {"type": "string", "format": "email"}, "ids": {"type": "array", "minItems": 2}},
            "required": ["email", "ids"],
            "additionalProperties": False,
        }
    },
}
OUTPUT_CONFIG = {"format": {"type": "json_schema", "schema": SCHEMA}}


def test_boto3_structured_output_conforms(boto3_client: Any) -> None:
    """``output_config.format``: the reply's text is JSON that validates against the schema, streamed too."""
    document = {**body([{"type": "text", "text": "Be terse."}]), "output_config": OUTPUT_CONFIG, "max_tokens": 500}
    result, _ = invoke(boto3_client, SONNET_45, document)
    value = json.loads(result["content"][0]["text"])
    jsonschema.validate(value, SCHEMA)
    assert len(value["tags"]) == 3
    events = stream(boto3_client, SONNET_45, document)
    text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert json.loads(text) == value


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages"])
async def test_anthropic_sdk_structured_output_and_strict_tool(bedrock_emulator: BedrockEmulator, surface: str) -> None:
    """Through the SDK on both surfaces: the JSON validates, and a strict tool's input validates against its schema."""
    async with invoke_sdk(bedrock_emulator) if surface == "invoke" else mantle_sdk(bedrock_emulator) as client:
        message = await client.messages.create(
            model=OPUS_47,
            max_tokens=500,
            messages=[{"role": "user", "content": "Describe a widget"}],
            extra_body={"output_config": OUTPUT_CONFIG},
        )
        block = message.content[0]
        assert isinstance(block, anthropic.types.TextBlock)
        jsonschema.validate(json.loads(block.text), SCHEMA)
        tool: Any = {"name": "record", "input_schema": SCHEMA, "strict": True}
        message = await client.messages.create(
            model=OPUS_47,
            max_tokens=500,
            messages=[{"role": "user", "content": "record this widget"}],
            tools=[tool],
            tool_choice={"type": "tool", "name": "record"},
        )
    (call,) = [b for b in message.content if isinstance(b, anthropic.types.ToolUseBlock)]
    jsonschema.validate(call.input, SCHEMA)


def test_structured_output_refused_where_the_model_has_none(boto3_client: Any) -> None:
    """Claude 3.5 Haiku has no structured outputs: ``output_config.format`` and strict tools are 400s."""
    document = {**body([{"type": "text", "text": "x"}]), "output_config": OUTPUT_CONFIG}
    with pytest.raises(botocore.exceptions.ClientError, match="structured outputs"):
        invoke(boto3_client, HAIKU_35, document)
    tool = {"name": "t", "input_schema": {"type": "object"}, "strict": True}
    with pytest.raises(botocore.exceptions.ClientError, match="strict"):
        invoke(boto3_client, HAIKU_35, {**body([{"type": "text", "text": "x"}]), "tools": [tool]})


# ---------------------------------------------------------------------------------------------------
# Effort and thinking


@pytest.mark.parametrize(
    ("model", "output_config", "refused"),
    [
        (OPUS_47, {"effort": "low"}, None),
        (OPUS_47, {"effort": "max"}, None),
        (OPUS_47, {"effort": "xhigh"}, None),
        (HAIKU_35, {"effort": "low"}, "not supported for this model"),
        ("anthropic.claude-opus-4-5-20251101-v1:0", {"effort": "max"}, "not supported for this model"),
        (OPUS_47, {"effort": "extreme"}, "Input should be one of"),
        (OPUS_47, {"verbosity": "low"}, "Extra inputs"),
    ],
)
def test_effort_rules(boto3_client: Any, model: str, output_config: dict[str, Any], refused: str | None) -> None:
    """Effort is accepted where the model takes it, and a 400 naming the field elsewhere."""
    document = {**body([{"type": "text", "text": "x"}]), "output_config": output_config}
    if refused is None:
        result, _ = invoke(boto3_client, model, document)
        assert result["stop_reason"] == "end_turn"
        return
    with pytest.raises(botocore.exceptions.ClientError, match=refused) as error:
        invoke(boto3_client, model, document)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "output_config" in str(error.value)


@pytest.mark.parametrize(
    ("model", "thinking", "refused"),
    [
        (OPUS_47, {"type": "enabled", "budget_tokens": 2000}, "'enabled' is not supported"),
        (HAIKU_35, {"type": "enabled", "budget_tokens": 2000}, "not supported for this model"),
        (SONNET_45, {"type": "enabled", "budget_tokens": 500}, "greater than or equal to 1024"),
        (SONNET_45, {"type": "enabled", "budget_tokens": 5000}, "max_tokens"),
    ],
)
def test_thinking_rules(boto3_client: Any, model: str, thinking: dict[str, Any], refused: str) -> None:
    """Opus 4.7 takes adaptive thinking only, Claude 3.5 none; budgets are checked against 1,024 and max_tokens."""
    document = {**body([{"type": "text", "text": "x"}]), "thinking": thinking, "max_tokens": 4000}
    with pytest.raises(botocore.exceptions.ClientError, match=refused):
        invoke(boto3_client, model, document)


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages"])
async def test_thinking_tool_loop_round_trips_signatures(bedrock_emulator: BedrockEmulator, surface: str) -> None:
    """Streamed thinking (``thinking_delta``, ``signature_delta``) assembled by the SDK, sent back in a tool loop.

    The next turn is accepted with the block as it came; a tampered signature, or a dropped thinking block,
    is refused as Anthropic refuses them.
    """
    tool: Any = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    question: Any = {"role": "user", "content": "get_weather in Paris?"}
    async with invoke_sdk(bedrock_emulator) if surface == "invoke" else mantle_sdk(bedrock_emulator) as client:
        async with client.messages.stream(
            model=OPUS_47, max_tokens=2000, messages=[question], tools=[tool], thinking=ADAPTIVE
        ) as events:
            kinds = [event.delta.type async for event in events if event.type == "content_block_delta"]
            reply = await events.get_final_message()
        assert {"thinking_delta", "signature_delta"} <= set(kinds)
        thinking, *_, call = reply.content
        assert isinstance(thinking, anthropic.types.ThinkingBlock)
        assert thinking.signature
        assert isinstance(call, anthropic.types.ToolUseBlock)
        assert reply.stop_reason == "tool_use"
        result: Any = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C"}]}
        turn: Any = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in reply.content]}
        final = await client.messages.create(
            model=OPUS_47,
            max_tokens=2000,
            messages=[question, turn, result],
            tools=[tool],
            thinking=ADAPTIVE,
        )
        assert final.stop_reason == "end_turn"
        assert isinstance(final.content[0], anthropic.types.ThinkingBlock)
        tampered: Any = {**turn, "content": [{**turn["content"][0], "signature": base64.b64encode(b"x" * 32).decode()}]}
        tampered["content"] += turn["content"][1:]
        with pytest.raises(anthropic.BadRequestError, match="signature"):
            await client.messages.create(
                model=OPUS_47,
                max_tokens=2000,
                messages=[question, tampered, result],
                tools=[tool],
                thinking=ADAPTIVE,
            )
        dropped: Any = {**turn, "content": turn["content"][1:]}
        with pytest.raises(anthropic.BadRequestError, match="thinking block"):
            await client.messages.create(
                model=OPUS_47,
                max_tokens=2000,
                messages=[question, dropped, result],
                tools=[tool],
                thinking=ADAPTIVE,
            )


# ---------------------------------------------------------------------------------------------------
# Citations

DOCUMENT: dict[str, Any] = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue. Grass is green."},
    "title": "Colours",
    "citations": {"enabled": True},
}


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_citations(bedrock_emulator: BedrockEmulator, surface: str, streamed: bool) -> None:
    """A document with citations enabled is cited (``citations_delta`` in streams, assembled by the SDK)."""
    content: Any = [DOCUMENT, {"type": "text", "text": "What colour is the sky?"}]
    message: anthropic.types.Message
    async with invoke_sdk(bedrock_emulator) if surface == "invoke" else mantle_sdk(bedrock_emulator) as client:
        if streamed:
            async with client.messages.stream(
                model=OPUS_47, max_tokens=100, messages=[{"role": "user", "content": content}]
            ) as events:
                message = await events.get_final_message()
        else:
            message = await client.messages.create(
                model=OPUS_47, max_tokens=100, messages=[{"role": "user", "content": content}]
            )
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    assert block.citations
    (citation,) = block.citations
    assert isinstance(citation, anthropic.types.CitationCharLocation)
    assert (citation.cited_text, citation.document_index, citation.document_title) == ("The sky is blue.", 0, "Colours")
    assert (citation.start_char_index, citation.end_char_index) == (0, 16)


# ---------------------------------------------------------------------------------------------------
# Stream padding


def padded_payloads(data: bytes) -> list[dict[str, Any]]:
    """The chunk payloads of an event stream, decoded by botocore's own frame parser."""
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [json.loads(message.payload) for message in buffer]


@pytest.mark.parametrize("padding", [True, False])
def test_stream_chunks_carry_padding(bedrock_emulator: BedrockEmulator, padding: bool) -> None:
    """Every InvokeModel stream chunk has ``"p"``, a prefix of the alphabet of varying length, unless turned off."""
    if not padding:
        bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, stream_padding=False)
    document = body([{"type": "text", "text": "x"}], question=words(40, "hello"))
    answer = post_signed(
        bedrock_emulator, f"/model/{SONNET_45}/invoke-with-response-stream", json.dumps(document).encode()
    )
    assert answer.status == 200
    payloads = padded_payloads(answer.body)
    assert len(payloads) > 10
    if not padding:
        assert all(set(p) == {"bytes"} for p in payloads)
        return
    assert all(set(p) == {"bytes", "p"} for p in payloads)
    assert all(PADDING_ALPHABET.startswith(p["p"]) and p["p"] for p in payloads)
    assert len({len(p["p"]) for p in payloads}) > 3


# ---------------------------------------------------------------------------------------------------
# API versions (issue #15, item 7): what a user of the current anthropic SDK must pin

#: InvokeModel Messages models that take the SDK's default ``anthropic_version`` (an API date): those
#: without an ARN-versioned id, and Haiku 4.5 (UNVERIFIED, see ``emulator/_features``).
TAKES_API_DATES = {"anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-opus-4-7"}


def invoke_models() -> list[str]:
    from bedrock_chat._core.models import MODELS, ModelApi, Surface

    return [m.id for m in MODELS if m.api is ModelApi.MESSAGES and Surface.INVOKE in m.surfaces]


@pytest.mark.asyncio
@pytest.mark.parametrize("model", invoke_models())
async def test_anthropic_sdk_default_version_and_the_pin(bedrock_emulator: BedrockEmulator, model: str) -> None:
    """The SDK's default ``anthropic_version`` (2026-10-21) is a 400 on every dated model; pinned, every model works."""
    from anthropic._constants import ANTHROPIC_API_VERSION

    hello: Any = [{"role": "user", "content": "Hello"}]
    async with invoke_sdk(bedrock_emulator) as client:
        if model in TAKES_API_DATES:
            await client.messages.create(model=model, max_tokens=20, messages=hello)
        else:
            with pytest.raises(anthropic.BadRequestError, match="anthropic_version"):
                await client.messages.create(model=model, max_tokens=20, messages=hello)
        assert json.loads(bedrock_emulator.requests[-1].body)["anthropic_version"] == ANTHROPIC_API_VERSION
        message = await client.messages.create(
            model=model, max_tokens=20, messages=hello, extra_body={"anthropic_version": VERSION}
        )
    assert message.stop_reason == "end_turn"
    assert json.loads(bedrock_emulator.requests[-1].body)["anthropic_version"] == VERSION


def test_every_served_messages_model_has_a_feature_row() -> None:
    """The feature table covers every Claude 3+ model the emulator's own model table serves, and nothing else."""
    from bedrock_chat.emulator._features import FEATURES
    from bedrock_chat.emulator._models import SERVED_MODELS, Api

    messages_era = {m.id for m in SERVED_MODELS if m.apis == {Api.MESSAGES}}
    assert set(FEATURES) == messages_era
