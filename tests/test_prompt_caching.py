"""Prompt caching on the client side: system blocks, breakpoint rules before I/O, cache usage, the floor warning.

The emulator checks what reaches the wire (both surfaces, streamed and not); a small scripted HTTP server on
port 0 answers with the cache usage Bedrock reports (body, ``X-Amzn-Bedrock-Cache-*`` headers, stream events),
which the emulator does not model yet.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from e2e_helpers import emulator_client

from bedrock_chat import (
    AnthropicBedrock,
    CacheBreakpointWarning,
    CacheCreation,
    InvalidRequestError,
    Usage,
)
from bedrock_chat._batch.scheduler import used_tokens
from bedrock_chat._core.eventstream import encode_chunk_event
from bedrock_chat._core.sse import encode_event
from bedrock_chat.emulator import BedrockEmulator

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}
SYSTEM = [
    {"type": "text", "text": "You are a careful assistant. ünïcode", "cache_control": HOUR},
    {"type": "text", "text": "Answer briefly.", "cache_control": EPHEMERAL},
]
HI = [{"role": "user", "content": "Hi"}]
BOTH = "anthropic.claude-opus-4-7"  # on both surfaces, takes the 1-hour TTL
#: The emulator's prompts are under every floor: where it reports cache counters, the client rightly warns.
UNDER_THE_FLOOR = pytest.mark.filterwarnings("ignore::bedrock_chat.CacheBreakpointWarning")


def _body_of_last(emu: BedrockEmulator) -> bytes:
    return emu.requests[-1].body


@UNDER_THE_FLOOR
@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
@pytest.mark.parametrize("stream", [False, True])
async def test_system_blocks_reach_the_body_byte_exact(emu: BedrockEmulator, surface: str, stream: bool) -> None:
    """``system=`` blocks with cache_control are sent as given, byte for byte, on both surfaces, streamed or not."""
    async with emulator_client(emu) as client:
        if stream:
            handle = await client.ChatCompletion.create(
                model=BOTH, messages=HI, system=SYSTEM, surface=surface, stream=True
            )
            async with handle:
                chat = await handle.final_completion()
        else:
            chat = await client.ChatCompletion.create(model=BOTH, messages=HI, system=SYSTEM, surface=surface)
    assert chat.completion
    exact = json.dumps(SYSTEM, ensure_ascii=False, separators=(",", ":")).encode()
    assert b'"system":' + exact in _body_of_last(emu)
    assert json.loads(_body_of_last(emu))["system"] == SYSTEM


@UNDER_THE_FLOOR
@pytest.mark.asyncio
async def test_system_message_blocks_are_sent_as_system(emu: BedrockEmulator) -> None:
    """A leading ``{"role": "system", "content": [blocks]}`` becomes the body's system blocks, markers kept."""
    async with emulator_client(emu) as client:
        chat = await client.ChatCompletion.create(
            model="anthropic.claude-sonnet-4-5-20250929-v1:0",
            messages=[{"role": "system", "content": SYSTEM}, *HI],
        )
    body = json.loads(_body_of_last(emu))
    assert body["system"] == SYSTEM
    assert body["messages"] == HI
    assert chat["messages"][0] == {"role": "system", "content": SYSTEM}


def _five_breakpoints() -> dict[str, Any]:
    marked = {"type": "text", "text": "doc", "cache_control": EPHEMERAL}
    return {
        "tools": [
            {"name": "a", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL},
            {"name": "b", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL},
        ],
        "system": [{"type": "text", "text": "s", "cache_control": EPHEMERAL}],
        "messages": [{"role": "user", "content": [marked, {**marked, "text": "more"}]}],
    }


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    # (model, create arguments, the field the error names)
    (BOTH, _five_breakpoints(), "messages[0].content[1].cache_control"),
    (
        BOTH,
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "x"}}]}]},
        "messages[0].content[0].cache_control",
    ),
    (
        BOTH,
        {"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "10m"}}]},
        "system[0].cache_control.ttl",
    ),
    # Opus 4.1 has no 1-hour cache (the registry's cache_ttl_1h).
    (
        "anthropic.claude-opus-4-1-20250805-v1:0",
        {"system": [{"type": "text", "text": "s", "cache_control": HOUR}]},
        "system[0].cache_control.ttl",
    ),
    (
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        {"tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": HOUR}]},
        "tools[0].cache_control.ttl",
    ),
    # A 1-hour breakpoint after a 5-minute one (tools come first in the prompt).
    (
        BOTH,
        {
            "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": EPHEMERAL}],
            "system": [{"type": "text", "text": "s", "cache_control": HOUR}],
        },
        "system[0].cache_control.ttl",
    ),
    ("anthropic.claude-v2", {"system": [{"type": "text", "text": "s"}]}, "system"),
    (
        "anthropic.claude-v2:1",
        {"messages": [{"role": "system", "content": [{"type": "text", "text": "s", "cache_control": EPHEMERAL}]}, *HI]},
        "messages[0].content",
    ),
    (BOTH, {"system": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}, "system[0].type"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("model", "arguments", "field"), REFUSED)
async def test_bad_breakpoints_are_refused_before_io(
    emu: BedrockEmulator, model: str, arguments: dict[str, Any], field: str
) -> None:
    """A fifth breakpoint, a bad marker or ttl, 1h where the model has none, 1h after 5m, blocks on a text model:
    InvalidRequestError naming the field, and nothing sent."""
    arguments = {"messages": HI, **arguments}
    async with emulator_client(emu) as client:
        for stream in (False, True):
            with pytest.raises(InvalidRequestError) as info:
                await client.ChatCompletion.create(model=model, stream=stream, **arguments)
            assert info.value.field == field
    assert not emu.requests


@UNDER_THE_FLOOR
@pytest.mark.asyncio
async def test_four_breakpoints_and_1h_before_5m_are_accepted(emu: BedrockEmulator) -> None:
    """Four breakpoints, 1-hour ones first, pass the checks and reach the emulator unchanged."""
    arguments = _five_breakpoints()
    arguments["tools"][0]["cache_control"] = HOUR
    arguments["messages"][0]["content"][1].pop("cache_control")
    async with emulator_client(emu) as client:
        await client.ChatCompletion.create(model=BOTH, **arguments)
    body = json.loads(_body_of_last(emu))
    assert body["tools"][0]["cache_control"] == HOUR
    assert body["messages"] == arguments["messages"]


# ---------------------------------------------------------------------------------------------- scripted server


class Script:
    """What the scripted server answers next: status, headers, body (one answer per request, in order)."""

    def __init__(self) -> None:
        self.answers: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    """A small HTTP server on port 0 that answers each request with the next scripted answer."""
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            with script.lock:
                script.paths.append(self.path)
                headers, body = script.answers.pop(0)
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _client(url: str) -> AnthropicBedrock:
    return AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="secret", region="us-east-1", endpoint_url=url)


def _message(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def _events(usage_start: dict[str, Any], usage_delta: dict[str, Any]) -> list[dict[str, Any]]:
    start = {**_message(usage_start), "content": []}
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage_delta},
        {"type": "message_stop"},
    ]


def _answer(
    surface: str, stream: bool, usage: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[dict[str, str], bytes]:
    """The scripted answer carrying ``usage`` the way each surface and mode reports it."""
    if not stream:
        return {"content-type": "application/json", **(headers or {})}, json.dumps(_message(usage)).encode()
    # A stream reports input-side counts at message_start and output at message_delta.
    start = {key: value for key, value in usage.items() if key != "output_tokens"}
    events = _events(start, {"output_tokens": usage.get("output_tokens", 1)})
    if surface == "invoke":
        body = b"".join(encode_chunk_event(json.dumps(event).encode()) for event in events)
        return {"content-type": "application/vnd.amazon.eventstream"}, body
    body = b"".join(encode_event(event["type"], json.dumps(event)) for event in events)
    return {"content-type": "text/event-stream"}, body


async def _call(client: AnthropicBedrock, *, surface: str, stream: bool, **arguments: Any) -> Any:
    if not stream:
        return await client.ChatCompletion.create(model=BOTH, surface=surface, **arguments)
    handle = await client.ChatCompletion.create(model=BOTH, surface=surface, stream=True, **arguments)
    async with handle:
        return await handle.final_completion()


SPLIT_USAGE = {
    "input_tokens": 12,
    "output_tokens": 3,
    "cache_read_input_tokens": 5000,
    "cache_creation_input_tokens": 700,
    "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 500},
}


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
@pytest.mark.parametrize("stream", [False, True])
async def test_cache_usage_with_the_ttl_split(scripted: tuple[str, Script], surface: str, stream: bool) -> None:
    """Cache reads, writes and the 5m/1h split reach ``chat.usage`` on both surfaces, streams included."""
    url, script = scripted
    script.answers.append(_answer(surface, stream, SPLIT_USAGE))
    async with _client(url) as client:
        chat = await _call(client, surface=surface, stream=stream, messages=HI, system=SYSTEM)
    usage = chat.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (12, 5000, 700)
    assert usage.cache_creation == CacheCreation(ephemeral_5m_input_tokens=200, ephemeral_1h_input_tokens=500)
    assert chat["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 500}
    assert script.paths[0].startswith("/model/" if surface == "invoke" else "/anthropic/v1/messages")


@pytest.mark.asyncio
async def test_invoke_cache_headers_are_read(scripted: tuple[str, Script]) -> None:
    """InvokeModel's X-Amzn-Bedrock-Cache-Read/Write-Input-Token-Count headers fill usage without a body usage."""
    url, script = scripted
    headers = {
        "X-Amzn-Bedrock-Input-Token-Count": "9",
        "X-Amzn-Bedrock-Cache-Read-Input-Token-Count": "4096",
        "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": "0",
    }
    script.answers.append(_answer("invoke", False, {"output_tokens": 1}, headers))
    async with _client(url) as client:
        chat = await _call(client, surface="invoke", stream=False, messages=HI, system=SYSTEM)
    assert (chat.usage.input_tokens, chat.usage.cache_read_input_tokens) == (9, 4096)
    assert chat.usage.cache_creation_input_tokens == 0
    assert chat.usage.cache_creation is None


NOTHING_CACHED = {
    "input_tokens": 40,
    "output_tokens": 2,
    "cache_read_input_tokens": 0,
    "cache_creation_input_tokens": 0,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
@pytest.mark.parametrize("stream", [False, True])
async def test_breakpoint_under_the_floor_warns(scripted: tuple[str, Script], surface: str, stream: bool) -> None:
    """Breakpoints set, nothing written or read, a prompt under the model's floor: a warning, not an error."""
    url, script = scripted
    script.answers.append(_answer(surface, stream, NOTHING_CACHED))
    async with _client(url) as client:
        with pytest.warns(CacheBreakpointWarning, match=r"40 input tokens, under Claude Opus 4.7's 4096-token minimum"):
            chat = await _call(client, surface=surface, stream=stream, messages=HI, system=SYSTEM)
    assert chat.completion == "ok"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("usage", "arguments"),
    [
        # Something was read or written: caching worked.
        ({**NOTHING_CACHED, "cache_read_input_tokens": 4100}, {"system": SYSTEM}),
        ({**NOTHING_CACHED, "cache_creation_input_tokens": 4100}, {"system": SYSTEM}),
        # No breakpoint: nothing to warn about.
        (NOTHING_CACHED, {"system": "plain"}),
        # The service reported no cache counters: no evidence either way.
        ({"input_tokens": 40, "output_tokens": 2}, {"system": SYSTEM}),
        # Nothing cached, but the prefix reaches the floor: the cause is something else.
        ({**NOTHING_CACHED, "input_tokens": 5000}, {"system": SYSTEM}),
    ],
)
async def test_no_warning_when_caching_worked_or_the_floor_is_not_the_cause(
    scripted: tuple[str, Script], usage: dict[str, Any], arguments: dict[str, Any]
) -> None:
    """The warning speaks only when the reply shows the floor is why nothing was cached."""
    url, script = scripted
    script.answers.append(_answer("messages-endpoint", False, usage))
    async with _client(url) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheBreakpointWarning)
            await _call(client, surface="messages-endpoint", stream=False, messages=HI, **arguments)


@pytest.mark.asyncio
async def test_early_breakpoint_in_a_long_prompt_warns_with_an_estimate(scripted: tuple[str, Script]) -> None:
    """A small marked system prompt before a long question: the prompt passes the floor, the prefix does not."""
    url, script = scripted
    script.answers.append(_answer("messages-endpoint", False, {**NOTHING_CACHED, "input_tokens": 6000}))
    question = [{"role": "user", "content": "x" * 9000}]
    system = [{"type": "text", "text": "y" * 1000, "cache_control": EPHEMERAL}]
    async with _client(url) as client:
        # 1,004 of 10,004 prompt characters (the block's "type" counts too) -> 6000 * 1004 // 10004 tokens.
        with pytest.warns(CacheBreakpointWarning, match=r"about 602 of the prompt's 6000 input tokens"):
            await _call(client, surface="messages-endpoint", stream=False, messages=question, system=system)


def test_tpm_accounting_does_not_charge_cache_reads() -> None:
    """Cache reads do not count toward Bedrock's TPM quota, so the batch scheduler does not charge them."""
    usage = Usage(input_tokens=10, output_tokens=5, cache_read_input_tokens=100_000, cache_creation_input_tokens=300)
    assert used_tokens(usage) == 315
    assert used_tokens(Usage(cache_read_input_tokens=7)) is None
