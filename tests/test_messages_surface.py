"""The client on the /anthropic/v1/messages surface: routing, requests, SSE streams and model rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from e2e_helpers import checked_out_connections, emulator_client

from bedrock_chat import (
    AnthropicBedrock,
    IncompleteStreamError,
    InvalidRequestError,
    ServiceUnavailableError,
    Surface,
    ThrottlingError,
    ValidationError,
    resolve_model,
)
from bedrock_chat._core.protocol import MESSAGES_API_VERSION, MESSAGES_ENDPOINT_PATH, choose_surface
from bedrock_chat._core.sse import encode_event
from bedrock_chat.emulator import BedrockEmulator, count_tokens

HI = [{"role": "user", "content": "Hi"}]
MESSAGE = {
    "id": "msg_bdrk_1",
    "type": "message",
    "role": "assistant",
    "model": "anthropic.claude-opus-4-7",
    "content": [{"type": "text", "text": "Hello!"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 7},
}


def sse_stream(texts: list[str], *, error: dict[str, Any] | None = None, finish: bool = True) -> bytes:
    """A Messages SSE stream with one text block, optionally an error event, optionally unfinished."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {"type": "message_start", "message": {**MESSAGE, "content": [], "usage": {"input_tokens": 3}}},
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
    ]
    for text in texts:
        delta = {"type": "text_delta", "text": text}
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
    if error is not None:
        events.append(("error", {"type": "error", "error": error}))
    elif finish:
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(texts)}},
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    return b"".join(encode_event(name, json.dumps(data)) for name, data in events)


class Recorder:
    """A MockTransport handler that records requests and answers with a fixed response factory."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)


def client_for(recorder: Recorder) -> AnthropicBedrock:
    """A client with static keys sending through ``recorder``."""
    return AnthropicBedrock(
        access_key="AKIDEXAMPLE", secret_key="secret", region="us-east-1", transport=httpx.MockTransport(recorder)
    )


@pytest.mark.parametrize(
    ("model", "surface"),
    [
        ("anthropic.claude-opus-4-7", Surface.MESSAGES_ENDPOINT),
        ("global.anthropic.claude-opus-4-8", Surface.MESSAGES_ENDPOINT),
        ("us.anthropic.claude-sonnet-5", Surface.MESSAGES_ENDPOINT),
        ("anthropic.claude-fable-5-1", Surface.MESSAGES_ENDPOINT),
        ("anthropic.claude-opus-4-6-v1", Surface.INVOKE),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", Surface.INVOKE),
        ("anthropic.claude-v2", Surface.INVOKE),
        ("anthropic.claude-someday-9", Surface.INVOKE),
    ],
)
def test_default_surface_by_registry(model: str, surface: Surface) -> None:
    """The registry picks the surface: the 2026 models the Messages endpoint, Opus 4.6 and earlier InvokeModel."""
    assert choose_surface(resolve_model(model)) is surface


def test_forcing_a_surface_the_model_is_not_on_is_refused() -> None:
    """A forced surface that does not serve the model is an error naming the surfaces that do."""
    assert choose_surface(resolve_model("anthropic.claude-opus-4-7"), "invoke") is Surface.INVOKE
    assert choose_surface(resolve_model("anthropic.claude-haiku-4-5"), "messages-endpoint") is Surface.MESSAGES_ENDPOINT
    with pytest.raises(InvalidRequestError, match="surface"):
        choose_surface(resolve_model("anthropic.claude-opus-4-8"), "invoke")
    with pytest.raises(InvalidRequestError, match="surface"):
        choose_surface(resolve_model("anthropic.claude-v2"), Surface.MESSAGES_ENDPOINT)
    with pytest.raises(InvalidRequestError, match="surface"):
        choose_surface(resolve_model("anthropic.claude-v2"), "converse")


@pytest.mark.asyncio
async def test_request_shape_on_the_messages_endpoint() -> None:
    """The model goes in the body, anthropic-version in a signed header, and no anthropic_version in the body."""
    recorder = Recorder(lambda request: httpx.Response(200, json=MESSAGE, headers={"request-id": "req_1"}))
    async with client_for(recorder) as client:
        chat = await client.ChatCompletion.create(
            model="us.anthropic.claude-opus-4-7", messages=HI, system="Be brief.", max_tokens_to_sample=100
        )
    (request,) = recorder.requests
    assert request.url.path == MESSAGES_ENDPOINT_PATH
    assert request.headers["anthropic-version"] == MESSAGES_API_VERSION
    assert "anthropic-version" in request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
    assert "/bedrock/aws4_request" in request.headers["authorization"]
    assert json.loads(request.content) == {
        "model": "us.anthropic.claude-opus-4-7",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": HI,
    }
    assert chat.completion == "Hello!"
    assert chat.request_id == "req_1"
    assert chat.usage.cache_read_input_tokens == 5
    assert chat.usage.cache_creation_input_tokens == 7


@pytest.mark.asyncio
async def test_sse_stream_assembles_the_same_result() -> None:
    """An SSE stream yields its text in pieces (ping ignored) and the final ChatCompletion with usage."""
    body = sse_stream(["Hel", "lo", "!"])
    recorder = Recorder(
        lambda request: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    async with client_for(recorder) as client:
        stream = await client.ChatCompletion.create(model="anthropic.claude-opus-4-7", messages=HI, stream=True)
        async with stream:
            texts = [text async for text in stream.text_stream]
    assert json.loads(recorder.requests[0].content)["stream"] is True
    assert texts == ["Hel", "lo", "!"]
    assert stream.completion.completion == "Hello!"
    assert stream.completion.stop_reason == "end_turn"
    assert stream.completion.usage.input_tokens == 3
    assert stream.completion.usage.output_tokens == 3


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("error_type", "error_class"),
    [("rate_limit_error", ThrottlingError), ("overloaded_error", ServiceUnavailableError)],
)
async def test_mid_stream_error_event_is_typed_with_partial_text(error_type: str, error_class: type[Exception]) -> None:
    """An `event: error` after text raises the typed error for its type, carrying the partial text."""
    body = sse_stream(["Hel", "lo"], error={"type": error_type, "message": "slow down"})
    recorder = Recorder(lambda request: httpx.Response(200, content=body))
    async with client_for(recorder) as client:
        stream = await client.ChatCompletion.create(model="anthropic.claude-opus-4-7", messages=HI, stream=True)
        with pytest.raises(error_class) as raised:  # noqa: PT012 - the error arrives while iterating
            async with stream:
                async for _ in stream:
                    pass
    assert getattr(raised.value, "partial_text", None) == "Hello"
    assert len(recorder.requests) == 1


@pytest.mark.asyncio
async def test_stream_without_message_stop_is_incomplete() -> None:
    """A stream that ends before message_stop raises IncompleteStreamError, never a normal end."""
    body = sse_stream(["Hel", "lo"], finish=False)
    recorder = Recorder(lambda request: httpx.Response(200, content=body))
    async with client_for(recorder) as client:
        stream = await client.ChatCompletion.create(model="anthropic.claude-opus-4-7", messages=HI, stream=True)
        with pytest.raises(IncompleteStreamError) as raised:  # noqa: PT012 - the error arrives while iterating
            async with stream:
                async for _ in stream:
                    pass
    assert raised.value.partial_text == "Hello"


@pytest.mark.asyncio
async def test_anthropic_style_error_body_is_typed() -> None:
    """An Anthropic-style error body maps into the one error tree."""
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    recorder = Recorder(lambda request: httpx.Response(400, json=error, headers={"request-id": "req_9"}))
    async with client_for(recorder) as client:
        with pytest.raises(ValidationError) as raised:
            await client.ChatCompletion.create(model="anthropic.claude-opus-4-7", messages=HI)
    assert raised.value.request_id == "req_9"
    assert raised.value.service_message == "bad"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "kwargs", "field"),
    [
        ("anthropic.claude-opus-4-7", {"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking.type"),
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", {"temperature": 0.5, "top_p": 0.9}, "top_p"),
        ("anthropic.claude-sonnet-5", {"temperature": 0.5}, "temperature"),
        ("anthropic.claude-sonnet-5", {"top_k": 5}, "top_k"),
        (
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            {"thinking": {"type": "enabled", "budget_tokens": 2048}},
            "thinking",
        ),
        ("anthropic.claude-v2", {"thinking": {"type": "adaptive"}}, "thinking"),
        (
            "anthropic.claude-sonnet-4-20250514-v1:0",
            {"thinking": {"type": "enabled", "budget_tokens": 10}},
            "budget_tokens",
        ),
        ("anthropic.claude-sonnet-4-20250514-v1:0", {"thinking": "yes"}, "thinking"),
    ],
)
async def test_model_rules_fail_before_any_io(model: str, kwargs: dict[str, Any], field: str) -> None:
    """Rules the registry knows (adaptive-only thinking, temperature-or-top_p, defaults-only) fail before I/O."""
    recorder = Recorder(lambda request: httpx.Response(200, json=MESSAGE))
    async with client_for(recorder) as client:
        with pytest.raises(InvalidRequestError, match=field):
            await client.ChatCompletion.create(model=model, messages=HI, max_tokens_to_sample=4096, **kwargs)
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_thinking_is_passed_through() -> None:
    """Accepted thinking settings are sent as given, on either surface."""
    recorder = Recorder(lambda request: httpx.Response(200, json=MESSAGE))
    async with client_for(recorder) as client:
        await client.ChatCompletion.create(
            model="anthropic.claude-opus-4-7", messages=HI, thinking={"type": "adaptive"}
        )
        await client.ChatCompletion.create(
            model="anthropic.claude-sonnet-4-20250514-v1:0",
            messages=HI,
            max_tokens_to_sample=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
        )
    bodies = [json.loads(request.content) for request in recorder.requests]
    assert bodies[0]["thinking"] == {"type": "adaptive"}
    assert bodies[1]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert bodies[1]["anthropic_version"] == "bedrock-2023-05-31"


# ------------------------------------------------------------------------------ against the emulator


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "model", ["anthropic.claude-opus-4-7", "global.anthropic.claude-opus-4-8", "us.anthropic.claude-sonnet-5"]
)
async def test_messages_endpoint_end_to_end(bedrock_emulator: BedrockEmulator, model: str) -> None:
    """create() and a stream reach the 2026 models on /anthropic/v1/messages and agree with each other."""
    async with emulator_client(bedrock_emulator) as client:
        whole = await client.ChatCompletion.create(model=model, messages=HI, max_tokens_to_sample=300)
        stream = await client.ChatCompletion.create(model=model, messages=HI, max_tokens_to_sample=300, stream=True)
        async with stream:
            pieces = [text async for text in stream.text_stream]
        assert checked_out_connections(client) == 0
    assert len(pieces) > 1
    assert "".join(pieces) == stream.completion.completion == whole.completion
    assert stream.completion["messages"] == whole["messages"]
    assert whole.usage.output_tokens == stream.completion.usage.output_tokens == count_tokens(whole.completion)
    assert whole.request_id
    assert [r.operation for r in bedrock_emulator.requests] == ["messages", "messages"]
    assert [r.model_id for r in bedrock_emulator.requests] == [model, model]


@pytest.mark.asyncio
async def test_forced_surfaces_reach_the_same_model(bedrock_emulator: BedrockEmulator) -> None:
    """Opus 4.7 answers on both surfaces when forced, with the same reply from the deterministic model."""
    async with emulator_client(bedrock_emulator) as client:
        via_invoke = await client.ChatCompletion.create(
            model="anthropic.claude-opus-4-7", messages=HI, surface="invoke"
        )
        via_messages = await client.ChatCompletion.create(
            model="anthropic.claude-opus-4-7", messages=HI, surface=Surface.MESSAGES_ENDPOINT
        )
    assert via_invoke.completion == via_messages.completion
    assert [r.operation for r in bedrock_emulator.requests][1] == "messages"
    assert bedrock_emulator.requests[0].path.startswith("/model/anthropic.claude-opus-4-7/invoke")


@pytest.mark.asyncio
async def test_messages_endpoint_faults_are_typed(bedrock_emulator: BedrockEmulator) -> None:
    """Throttling is retried then typed; a mid-stream error event raises its class with the partial text."""
    bedrock_emulator.enqueue_faults("throttle", "service_unavailable")
    async with emulator_client(bedrock_emulator) as client:
        chat = await client.ChatCompletion.create(model="anthropic.claude-opus-4-7", messages=HI)
        assert chat.completion
        assert [r.status for r in bedrock_emulator.requests] == [429, 529, 200]
        bedrock_emulator.enqueue_faults("stream_exception:throttlingException")
        stream = await client.ChatCompletion.create(
            model="anthropic.claude-opus-4-7", messages=HI, stream=True, max_tokens_to_sample=300
        )
        received: list[str] = []
        with pytest.raises(ThrottlingError) as raised:  # noqa: PT012 - the error arrives while iterating
            async with stream:
                async for chunk in stream:
                    received.append(chunk.text)
        assert raised.value.partial_text == "".join(received)
        assert checked_out_connections(client) == 0
