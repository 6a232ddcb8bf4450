"""The fake model's deterministic tool use: its rules, and one call non-streamed, streamed, over SSE and via SDKs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, TextBlock, ToolParam, ToolUseBlock
from emulator_testing import boto3_runtime_client, chunk_events, post_signed

from bedrock_chat._core.sse import SSEDecoder
from bedrock_chat.emulator import BedrockEmulator, count_tokens, fake_reply
from bedrock_chat.emulator._models import ModelRef, parse_model_id
from bedrock_chat.emulator._tools import JSON_PIECE_CHARS, MAX_DEPTH, choose_tool, tool_input
from bedrock_chat.emulator._validation import parse_body

HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"  # accepts the anthropic SDK's default anthropic_version
INVOKE = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke"
STREAM = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke-with-response-stream"
ENDPOINT = "/anthropic/v1/messages"
PROMPT = "Find cheap kites in Paris now"  # six words
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "City name."},
        "days": {"type": "integer"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "detailed": {"type": "boolean"},
        "note": {"type": "string"},
    },
    "required": ["city", "days", "unit", "detailed"],
}
WEATHER = {"name": "get_weather", "description": "Weather by city.", "input_schema": WEATHER_SCHEMA}
SEARCH = {
    "name": "search",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}
WEATHER_INPUT = {"city": PROMPT, "days": 6, "unit": "celsius", "detailed": True}
TOOL_ID = re.compile(r"^toolu_bdrk_[0-9a-f]{24}$")


# -- input derivation (pure) -----------------------------------------------------------------------


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    """An object schema."""
    return {"type": "object", "properties": properties, "required": required}


INPUT_VECTORS: list[tuple[dict[str, Any] | None, str, dict[str, Any]]] = [
    (WEATHER_SCHEMA, PROMPT, WEATHER_INPUT),
    (
        obj(["s"], s={"type": "string"}),
        "one two three four five six seven eight nine ten",
        {"s": "one two three four five six seven eight"},
    ),
    (
        obj(["s", "i", "b"], s={"type": "string"}, i={"type": "integer"}, b={"type": "boolean"}),
        "",
        {"s": "s", "i": 0, "b": True},
    ),
    (obj(["n", "z"], n={"type": "number"}, z={"type": "null"}), "a b c", {"n": 1.5, "z": None}),
    (obj(["b"], b={"type": "boolean"}), "a b c", {"b": False}),
    (obj(["e", "c"], e={"enum": [3, "x"]}, c={"const": {"k": 1}}), "a", {"e": 3, "c": {"k": 1}}),
    (obj(["a"], a={"type": "array", "items": {"type": "integer"}}), "a b", {"a": [2]}),
    (obj(["a"], a={"type": "array"}), "a b", {"a": ["a b"]}),
    (obj(["t"], t={"type": ["null", "integer"]}), "a b", {"t": 2}),
    (obj(["u"], u={"anyOf": [{"type": "integer"}, {"type": "string"}]}), "a b", {"u": 2}),
    (obj(["o"], o=obj(["x"], x={"type": "integer"}, y={"type": "string"})), "a b", {"o": {"x": 2}}),
    (obj(["o"], o={"properties": {"x": {"type": "boolean"}}, "required": ["x"]}), "a", {"o": {"x": False}}),
    (obj(["missing"]), "a b", {"missing": "a b"}),  # required but not described: a string
    (obj([], optional={"type": "string"}), "a b", {}),
    ({"type": "object"}, "a b", {}),
    (None, "a b", {}),  # a typed tool
]


@pytest.mark.parametrize(("schema", "prompt", "expected"), INPUT_VECTORS)
def test_tool_input_vectors(schema: dict[str, Any] | None, prompt: str, expected: dict[str, Any]) -> None:
    """Each JSON-schema construct gets the value the rules in ``_tools`` give it."""
    assert tool_input(schema, prompt) == expected


def test_tool_input_depth_is_bounded() -> None:
    """An input nests at most MAX_DEPTH objects; the value below the deepest one is null."""
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(MAX_DEPTH + 2):
        schema = obj(["x"], x=schema)
    value: Any = tool_input(schema, "a")
    depth = 0
    while isinstance(value, dict):
        value = value["x"]
        depth += 1
    assert (value, depth) == (None, MAX_DEPTH)


# -- which tool (pure) -----------------------------------------------------------------------------


def messages_body(
    prompt: str = PROMPT,
    *,
    tools: list[dict[str, Any]] | None = None,
    choice: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An InvokeModel Messages body with tools (both by default) and an optional tool_choice."""
    body: dict[str, Any] = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": prompt}],
        "tools": [SEARCH, WEATHER] if tools is None else tools,
        **fields,
    }
    if choice is not None:
        body["tool_choice"] = choice
    return body


ANSWERED = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "get_weather: sunny"}]},
]


@pytest.mark.parametrize(
    ("body", "chosen"),
    [
        (messages_body(), None),  # auto, no tool named
        (messages_body("use GET_WEATHER please"), "get_weather"),  # auto, named (case-insensitive)
        (messages_body("search or get_weather?"), "search"),  # the first tool in ``tools`` order wins
        (messages_body(choice={"type": "auto"}), None),
        (messages_body(choice={"type": "any"}), "search"),  # nothing named: the first tool
        (messages_body("get_weather", choice={"type": "any"}), "get_weather"),
        (messages_body("search", choice={"type": "tool", "name": "get_weather"}), "get_weather"),
        (messages_body("search", choice={"type": "none"}), None),
        (messages_body("search", tools=[]), None),
        (messages_body(messages=ANSWERED), None),  # the turn answers a tool call: text, so agent loops end
        (messages_body(messages=ANSWERED, choice={"type": "any"}), "get_weather"),
    ],
)
def test_which_tool_is_called(body: dict[str, Any], chosen: str | None) -> None:
    """tool_choice and the last user text decide the tool, by the rules in ``_tools``."""
    model = parse_model_id(HAIKU_35)
    assert isinstance(model, ModelRef)
    tool = choose_tool(parse_body(body, model))
    assert (tool.name if tool is not None else None) == chosen


# -- InvokeModel, non-streamed and streamed --------------------------------------------------------


def invoke(emu: BedrockEmulator, body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer of a signed InvokeModel request (which must succeed)."""
    answer = post_signed(emu, INVOKE, json.dumps(body).encode())
    assert answer.status == 200, answer.body
    result: dict[str, Any] = answer.json()
    return result


def test_forced_tool_call(bedrock_emulator: BedrockEmulator) -> None:
    """tool_choice ``tool``: one tool_use block with the derived input, stop_reason tool_use, JSON-counted output."""
    result = invoke(bedrock_emulator, messages_body(choice={"type": "tool", "name": "get_weather"}))
    (block,) = result["content"]
    assert block == {"type": "tool_use", "id": block["id"], "name": "get_weather", "input": WEATHER_INPUT}
    assert TOOL_ID.match(block["id"])
    assert (result["stop_reason"], result["stop_sequence"]) == ("tool_use", None)
    compact = json.dumps(WEATHER_INPUT, separators=(",", ":"))
    assert result["usage"] == {"input_tokens": count_tokens(PROMPT), "output_tokens": count_tokens(compact)}


def test_auto_tool_call_has_a_preamble(bedrock_emulator: BedrockEmulator) -> None:
    """tool_choice ``auto`` with the tool named: a text block, then the call; the text counts as output."""
    prompt = "What does get_weather say"
    result = invoke(bedrock_emulator, messages_body(prompt))
    text, call = result["content"]
    assert text == {"type": "text", "text": "Calling get_weather."}
    assert (call["name"], call["input"]["city"], call["input"]["days"]) == ("get_weather", prompt, 4)
    compact = json.dumps(call["input"], separators=(",", ":"))
    assert result["usage"]["output_tokens"] == 2 + count_tokens(compact)
    assert result["stop_reason"] == "tool_use"


def test_ids_differ_between_calls(bedrock_emulator: BedrockEmulator) -> None:
    """Every call gets its own tool_use id (the input stays the same)."""
    body = messages_body(choice={"type": "any"})
    first, second = (invoke(bedrock_emulator, body)["content"][0] for _ in range(2))
    assert first["id"] != second["id"]
    assert first["input"] == second["input"] == {"q": PROMPT}


@pytest.mark.parametrize("choice", [None, {"type": "none"}])
def test_text_reply_when_no_tool_is_called(bedrock_emulator: BedrockEmulator, choice: dict[str, Any] | None) -> None:
    """Without a tool call the reply is the fake model's usual text."""
    result = invoke(bedrock_emulator, messages_body("search for kites", choice=choice) if choice else messages_body())
    prompt = "search for kites" if choice else PROMPT
    expected = fake_reply(input_text=prompt, last_user_text=prompt, max_tokens=200)
    assert result["content"] == [{"type": "text", "text": expected.text}]
    assert result["stop_reason"] == "end_turn"


def test_no_call_when_it_would_exceed_max_tokens(bedrock_emulator: BedrockEmulator) -> None:
    """A call longer than max_tokens is not made: the text reply, cut at max_tokens, comes instead."""
    result = invoke(bedrock_emulator, messages_body(choice={"type": "tool", "name": "get_weather"}, max_tokens=3))
    expected = fake_reply(input_text=PROMPT, last_user_text=PROMPT, max_tokens=3)
    assert result["content"] == [{"type": "text", "text": expected.text}]
    assert (result["stop_reason"], result["usage"]["output_tokens"]) == ("max_tokens", 3)


def assert_tool_stream(events: list[dict[str, Any]], index: int) -> dict[str, Any]:
    """Check the tool block's events at ``index`` (start, 7-character deltas, stop); return the reassembled input."""
    starts = [event for event in events if event["type"] == "content_block_start" and event["index"] == index]
    assert [start["content_block"]["type"] for start in starts] == ["tool_use"]
    assert starts[0]["content_block"]["input"] == {}
    assert TOOL_ID.match(starts[0]["content_block"]["id"])
    deltas = [event["delta"] for event in events if event["type"] == "content_block_delta" and event["index"] == index]
    assert {delta["type"] for delta in deltas} == {"input_json_delta"}
    parts = [delta["partial_json"] for delta in deltas]
    assert len(parts) > 1
    assert all(len(part) == JSON_PIECE_CHARS for part in parts[:-1])
    assert 0 < len(parts[-1]) <= JSON_PIECE_CHARS
    stops = [event for event in events if event["type"] == "content_block_stop"]
    assert stops[-1] == {"type": "content_block_stop", "index": index}
    delta = next(event for event in events if event["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    reassembled: dict[str, Any] = json.loads("".join(parts))
    return reassembled


@pytest.mark.parametrize(
    ("body", "types"),
    [
        (messages_body(choice={"type": "any"}), ["tool_use"]),
        (messages_body("call get_weather now"), ["text", "tool_use"]),
    ],
)
def test_invoke_stream_matches_the_non_streamed_call(
    bedrock_emulator: BedrockEmulator, body: dict[str, Any], types: list[str]
) -> None:
    """The event stream's blocks, reassembled from input_json_delta pieces, equal the non-streamed content."""
    whole = invoke(bedrock_emulator, body)
    answer = post_signed(bedrock_emulator, STREAM, json.dumps(body).encode())
    assert answer.status == 200
    events = chunk_events(answer.body)
    starts = [event["content_block"]["type"] for event in events if event["type"] == "content_block_start"]
    assert starts == types == [block["type"] for block in whole["content"]]
    assert assert_tool_stream(events, len(types) - 1) == whole["content"][-1]["input"]
    if "text" in types:
        pieces = [
            event["delta"]["text"] for event in events if event["type"] == "content_block_delta" and event["index"] == 0
        ]
        assert "".join(pieces) == whole["content"][0]["text"]
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == whole["usage"]["output_tokens"]


def test_non_ascii_input_streams_through_escapes(bedrock_emulator: BedrockEmulator) -> None:
    """Pieces may cut inside a JSON escape; only the joined JSON needs to parse."""
    body = messages_body("Météo à Zürich ☀ aujourd'hui", choice={"type": "any"})
    whole = invoke(bedrock_emulator, body)
    events = chunk_events(post_signed(bedrock_emulator, STREAM, json.dumps(body).encode()).body)
    assert assert_tool_stream(events, 0) == whole["content"][0]["input"] == {"q": "Météo à Zürich ☀ aujourd'hui"}


# -- /anthropic/v1/messages (SSE) --------------------------------------------------------------------


def endpoint(emu: BedrockEmulator, body: dict[str, Any]) -> bytes:
    """The body of a successful signed /anthropic/v1/messages request."""
    fields = {key: value for key, value in body.items() if key != "anthropic_version"}
    data = json.dumps({**fields, "model": "anthropic.claude-opus-4-7"}).encode()
    answer = post_signed(emu, ENDPOINT, data, headers={"anthropic-version": "2023-06-01"})
    assert answer.status == 200, answer.body
    return answer.body


def test_messages_endpoint_tool_use(bedrock_emulator: BedrockEmulator) -> None:
    """The Messages endpoint makes the same call as JSON and as SSE (ping after the first block start)."""
    body = messages_body("call get_weather now")
    whole = json.loads(endpoint(bedrock_emulator, body))
    assert [block["type"] for block in whole["content"]] == ["text", "tool_use"]
    decoder = SSEDecoder()
    decoder.feed(endpoint(bedrock_emulator, {**body, "stream": True}))
    sse = list(decoder)
    decoder.close()
    assert [event.event for event in sse[:3]] == ["message_start", "content_block_start", "ping"]
    named = [event for event in sse if event.event != "ping"]
    events = [json.loads(event.data) for event in named]
    assert [event["type"] for event in events] == [event.event for event in named]
    assert assert_tool_stream(events, 1) == whole["content"][1]["input"]


# -- boto3 and the anthropic SDK -------------------------------------------------------------------


@pytest.fixture
def boto3_client(bedrock_emulator: BedrockEmulator) -> Iterator[Any]:
    """A single-attempt boto3 bedrock-runtime client aimed at the emulator, closed after the test."""
    with boto3_runtime_client(bedrock_emulator) as made:
        yield made


def test_boto3_tool_use(boto3_client: Any) -> None:
    """boto3 gets the same tool input from invoke_model and from the reassembled stream."""
    body = json.dumps(messages_body(choice={"type": "tool", "name": "get_weather"}))
    whole = json.loads(boto3_client.invoke_model(modelId=HAIKU_35, body=body)["body"].read())
    response = boto3_client.invoke_model_with_response_stream(modelId=HAIKU_35, body=body)
    try:
        events = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    finally:
        response["body"].close()
    assert whole["content"][0]["input"] == WEATHER_INPUT == assert_tool_stream(events, 0)


SDK_TOOLS: list[ToolParam] = [
    {"name": "get_weather", "description": "Weather by city.", "input_schema": WEATHER_SCHEMA},
]
SDK_MESSAGES: list[MessageParam] = [{"role": "user", "content": PROMPT}]


def anthropic_client(emu: BedrockEmulator) -> anthropic.AsyncAnthropicBedrock:
    """An AsyncAnthropicBedrock aimed at the emulator, without retries."""
    return anthropic.AsyncAnthropicBedrock(
        base_url=emu.endpoint_url,
        aws_access_key=emu.access_key,
        aws_secret_key=emu.secret_key,
        aws_region=emu.region,
        max_retries=0,
        timeout=10,
    )


@pytest.mark.asyncio
async def test_anthropic_sdk_tool_use(bedrock_emulator: BedrockEmulator) -> None:
    """AsyncAnthropicBedrock gets a ToolUseBlock from create and assembles the same input from its stream."""
    async with anthropic_client(bedrock_emulator) as client:
        message = await client.messages.create(
            model=HAIKU_45, max_tokens=200, messages=SDK_MESSAGES, tools=SDK_TOOLS, tool_choice={"type": "any"}
        )
        async with client.messages.stream(
            model=HAIKU_45, max_tokens=200, messages=SDK_MESSAGES, tools=SDK_TOOLS, tool_choice={"type": "any"}
        ) as stream:
            json_events = [event async for event in stream if event.type == "input_json"]
            final = await stream.get_final_message()
    (block,) = message.content
    assert isinstance(block, ToolUseBlock)
    assert (block.name, block.input, message.stop_reason) == ("get_weather", WEATHER_INPUT, "tool_use")
    (streamed,) = final.content
    assert isinstance(streamed, ToolUseBlock)
    assert (streamed.name, streamed.input, final.stop_reason) == ("get_weather", WEATHER_INPUT, "tool_use")
    assert len(json_events) > 1
    assert bedrock_emulator.requests[-1].operation == "InvokeModelWithResponseStream"


@pytest.mark.asyncio
async def test_anthropic_sdk_tool_round_trip(bedrock_emulator: BedrockEmulator) -> None:
    """The SDK sends the tool_result back; the model, answering it, replies in text."""
    async with anthropic_client(bedrock_emulator) as client:
        first = await client.messages.create(
            model=HAIKU_45, max_tokens=200, messages=[{"role": "user", "content": "Ask get_weather"}], tools=SDK_TOOLS
        )
        text, call = first.content
        assert isinstance(text, TextBlock)
        assert isinstance(call, ToolUseBlock)
        second = await client.messages.create(
            model=HAIKU_45,
            max_tokens=200,
            tools=SDK_TOOLS,
            messages=[
                {"role": "user", "content": "Ask get_weather"},
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
            ],
        )
    assert second.stop_reason == "end_turn"
    assert isinstance(second.content[0], TextBlock)
