"""Messages content blocks, tools, tool_choice and anthropic_beta over real HTTP: what is refused, what passes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from emulator_testing import post_signed

from bedrock_chat.emulator import BedrockEmulator, count_tokens

INVOKE = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke"
ENDPOINT = "/anthropic/v1/messages"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n-not-really-an-image").decode()
SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
TOOL = {"name": "search", "description": "Search the web.", "input_schema": SCHEMA}


def image(media_type: str = "image/png", data: str = PNG, kind: str = "base64") -> dict[str, Any]:
    """An image block."""
    return {"type": "image", "source": {"type": kind, "media_type": media_type, "data": data}}


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    """A user turn of blocks."""
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    """An assistant turn of blocks."""
    return {"role": "assistant", "content": list(blocks)}


def text(words: str) -> dict[str, Any]:
    """A text block."""
    return {"type": "text", "text": words}


def tool_use(tool_id: str = "toolu_1", name: str = "search") -> dict[str, Any]:
    """A tool_use block."""
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {"q": "kites"}}


def tool_result(tool_id: str = "toolu_1", content: Any = "Kites fly.") -> dict[str, Any]:
    """A tool_result block."""
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content}


HELLO = user(text("Hello there"))
TOOL_TURNS = [user(text("Find kites")), assistant(text("Searching."), tool_use()), user(tool_result())]


def body(messages: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """An InvokeModel Messages body."""
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 40, "messages": messages or [HELLO], **fields}


BAD: list[tuple[dict[str, Any], str]] = [
    # images
    (body([user(image("image/bmp"))]), "messages.0.content.0.image.source.base64.media_type: Input should be"),
    (body([user(image("image/svg+xml"))]), "'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"),
    (body([user(image(data="not base64!"))]), "messages.0.content.0.image.source.base64.data: Input should be valid"),
    (body([user(image(data="iVBORw="))]), "Input should be valid base64 data"),  # bad padding
    (body([user(image(data=""))]), "messages.0.content.0.image.source.base64.data: Field required"),
    (body([user(image(kind="url"))]), "messages.0.content.0.image.source.type: Input should be 'base64'"),
    (body([user(text("look"), {"type": "image"})]), "messages.0.content.1.image.source: Field required"),
    # tool_use / tool_result blocks and their pairing
    (body([user(tool_result())]), "unexpected `tool_use_id` found in `tool_result` blocks: toolu_1"),
    (body([HELLO, assistant(tool_result())]), "messages.1.content.0: 'tool_result' blocks are only allowed in 'user'"),
    (body([user(tool_use())]), "messages.0.content.0: 'tool_use' blocks are only allowed in 'assistant' messages"),
    (
        body([user(text("hi"), tool_result("toolu_9"))]),
        "messages.0.content.1: unexpected `tool_use_id` found in `tool_result` blocks: toolu_9. Each `tool_result` "
        "block must have a corresponding `tool_use` block in the previous message.",
    ),
    (
        body([*TOOL_TURNS[:2], user(tool_result("toolu_other"))]),
        "unexpected `tool_use_id` found in `tool_result` blocks: toolu_other",
    ),
    (
        body([*TOOL_TURNS[:2], user(text("never mind"))]),
        "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1. Each "
        "`tool_use` block must have a corresponding `tool_result` block in the next message.",
    ),
    (
        body([HELLO, assistant(tool_use("a"), tool_use("b")), user(tool_result("a"))]),
        "without `tool_result` blocks immediately after: b.",
    ),
    (body([HELLO, assistant({**tool_use(), "input": "q=kites"})]), "messages.1.content.0.tool_use.input: Input should"),
    (body([HELLO, assistant({"type": "tool_use", "name": "search", "input": {}})]), "tool_use.id: Field required"),
    (body([*TOOL_TURNS[:2], user({**tool_result(), "is_error": "no"})]), "tool_result.is_error: Input should be"),
    (body([*TOOL_TURNS[:2], user(tool_result(content=5))]), "messages.2.content.0.tool_result.content: Input should"),
    (body([*TOOL_TURNS[:2], user(tool_result(content=[image("image/tiff")]))]), "tool_result.content.0.image.source"),
    (body([*TOOL_TURNS[:2], user(tool_result(content=[text("")]))]), "text content blocks must be non-empty"),
    # tools
    (body(tools="search"), "#/tools: expected type: JSONArray, found: String"),
    (body(tools=["search"]), "tools.0: Input should be a valid dictionary"),
    (body(tools=[{"input_schema": SCHEMA}]), "tools.0.name: Field required"),
    (body(tools=[{**TOOL, "name": "web search"}]), "tools.0.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'"),
    (body(tools=[{**TOOL, "name": "x" * 65}]), "tools.0.name: String should match pattern"),
    (body(tools=[{**TOOL, "name": ""}]), "tools.0.name: String should match pattern"),
    (body(tools=[{"name": "search"}]), "tools.0.custom.input_schema: Field required"),
    (body(tools=[{**TOOL, "input_schema": "object"}]), "tools.0.custom.input_schema: Input should be a valid dict"),
    (body(tools=[{**TOOL, "input_schema": {"type": "array"}}]), "tools.0.custom.input_schema.type: Input should be"),
    (body(tools=[{**TOOL, "input_schema": {}}]), "tools.0.custom.input_schema.type: Input should be 'object'"),
    (body(tools=[{**TOOL, "description": 3}]), "tools.0.custom.description: Input should be a valid string"),
    (body(tools=[TOOL, TOOL]), "tools: Tool names must be unique."),
    # tool_choice
    (body(tools=[TOOL], tool_choice={"type": "sometimes"}), "tool_choice.type: Input should be 'auto', 'any', 'tool'"),
    (body(tools=[TOOL], tool_choice={}), "tool_choice.type: Input should be"),
    (body(tools=[TOOL], tool_choice={"type": "tool"}), "tool_choice.tool.name: Field required"),
    (body(tools=[TOOL], tool_choice={"type": "tool", "name": "fetch"}), "Tool 'fetch' not found in tools"),
    (body(tool_choice={"type": "any"}), "tool_choice.type 'any' may only be specified while providing tools"),
    (body(tools=[], tool_choice={"type": "tool", "name": "search"}), "may only be specified while providing tools"),
    (
        body(tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": "yes"}),
        "tool_choice.auto.disable_parallel_tool_use: Input should be a valid boolean",
    ),
    (body(tools=[TOOL], tool_choice="any"), "#/tool_choice: expected type: JSONObject, found: String"),
    # anthropic_beta
    (body(anthropic_beta="computer-use-2024-10-22"), "#/anthropic_beta: expected type: JSONArray, found: String"),
    (body(anthropic_beta=["ok", 7]), "#/anthropic_beta/1: expected type: String, found: Integer"),
]


@pytest.mark.parametrize(("document", "expected"), BAD)
def test_bad_bodies_are_refused_on_invoke(bedrock_emulator: BedrockEmulator, document: Any, expected: str) -> None:
    """Each rule of ``_content`` (and anthropic_beta's type) is a 400 ValidationException on InvokeModel."""
    answer = post_signed(bedrock_emulator, INVOKE, json.dumps(document).encode())
    assert (answer.status, answer.error_code) == (400, "ValidationException"), answer.body
    assert expected in answer.json()["message"]


@pytest.mark.parametrize(("document", "expected"), [row for row in BAD if "anthropic_beta" not in row[1]])
def test_bad_bodies_are_refused_on_the_messages_endpoint(
    bedrock_emulator: BedrockEmulator, document: Any, expected: str
) -> None:
    """/anthropic/v1/messages applies the same content and tool rules, as an invalid_request_error."""
    endpoint_body = {key: value for key, value in document.items() if key != "anthropic_version"}
    endpoint_body["model"] = "anthropic.claude-opus-4-7"
    answer = post_signed(
        bedrock_emulator, ENDPOINT, json.dumps(endpoint_body).encode(), headers={"anthropic-version": "2023-06-01"}
    )
    assert answer.status == 400, answer.body
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert expected in error["message"]


GOOD: list[tuple[dict[str, Any], str]] = [
    (body([user(text("Describe"), image("image/jpeg"))]), "Describe"),
    (body([user(image("image/gif"), text("and"), image("image/webp"))]), "and"),
    (body([user(text("Describe"), image("image/png", "iVBORw=="))]), "Describe"),
    (body([*TOOL_TURNS], tools=[TOOL]), "Find kites Searching. Kites fly."),
    (
        body([*TOOL_TURNS[:2], user(tool_result(content=[text("Kites"), image()]), text("thanks"))]),
        "Find kites Searching. Kites thanks",
    ),
    (body([*TOOL_TURNS[:2], user({**tool_result(), "is_error": True})]), "Find kites Searching. Kites fly."),
    (
        body([HELLO, assistant(tool_use("a"), tool_use("b")), user(tool_result("b"), tool_result("a"))]),
        "Hello there Kites fly. Kites fly.",
    ),
    (body(tools=[TOOL, {"type": "bash_20250124", "name": "bash"}]), "Hello there"),
    (body(tools=[TOOL], tool_choice={"type": "none"}), "Hello there"),
    (body(tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": True}), "Hello there"),
    (body(tool_choice={"type": "auto"}), "Hello there"),
    (body(anthropic_beta=["computer-use-2024-10-22", "token-efficient-tools-2025-02-19"]), "Hello there"),
    (body(anthropic_beta=[]), "Hello there"),
]


@pytest.mark.parametrize(("document", "counted"), GOOD)
def test_good_bodies_are_answered(bedrock_emulator: BedrockEmulator, document: Any, counted: str) -> None:
    """Images, tool turns, typed tools, tool_choice and betas are accepted; only texts count as input tokens."""
    answer = post_signed(bedrock_emulator, INVOKE, json.dumps(document).encode())
    assert answer.status == 200, answer.body
    assert answer.json()["usage"]["input_tokens"] == count_tokens(counted)
