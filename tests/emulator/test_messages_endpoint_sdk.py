"""Fidelity of ``/anthropic/v1/messages``, proven by a client none of us wrote: the anthropic SDK's mantle clients.

``AnthropicBedrockMantle`` signs SigV4 with the ``bedrock-mantle`` service name (or sends a Bedrock API key
as a bearer token), puts the model in the body, sends ``anthropic-version: 2026-10-21`` and decodes SSE
itself, so every test here checks the emulator against an independent implementation of that surface.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import anthropic
import attrs
import httpx2
import pytest
from anthropic.types import MessageParam, TextBlock

from bedrock_chat.emulator import BedrockEmulator, count_tokens, fake_reply

OPUS_47 = "anthropic.claude-opus-4-7"
HELLO_TEXT = "Hello from the mantle client"
HELLO: list[MessageParam] = [{"role": "user", "content": HELLO_TEXT}]
API_KEY = "bedrock-api-key-for-tests"


def mantle_options(emu: BedrockEmulator, **overrides: Any) -> dict[str, Any]:
    """Constructor arguments for a mantle client aimed at the emulator, SigV4 with its keys, without retries."""
    options: dict[str, Any] = {
        "base_url": f"{emu.endpoint_url}/anthropic",
        "aws_access_key": emu.access_key,
        "aws_secret_key": emu.secret_key,
        "aws_region": emu.region,
        "max_retries": 0,
        "timeout": 10,
    }
    options.update(overrides)
    if "api_key" in overrides:
        del options["aws_access_key"], options["aws_secret_key"]
    return options


@pytest.fixture
def client(bedrock_emulator: BedrockEmulator) -> Iterator[anthropic.AnthropicBedrockMantle]:
    """A sync mantle client aimed at the session's emulator, closed after the test."""
    with anthropic.AnthropicBedrockMantle(**mantle_options(bedrock_emulator)) as mantle:
        yield mantle


def text_of(message: anthropic.types.Message) -> str:
    """The text of a one-block reply."""
    block = message.content[0]
    assert isinstance(block, TextBlock)
    return block.text


@pytest.mark.parametrize("model", [OPUS_47, "us.anthropic.claude-opus-4-7", "anthropic.claude-haiku-4-5"])
def test_messages_create(
    bedrock_emulator: BedrockEmulator, client: anthropic.AnthropicBedrockMantle, model: str
) -> None:
    """messages.create completes with a bedrock-mantle signature; the SDK reads the request id and usage."""
    raw = client.messages.with_raw_response.create(model=model, max_tokens=40, messages=HELLO)
    message = raw.parse()
    expected = fake_reply(input_text=HELLO_TEXT, last_user_text=HELLO_TEXT, max_tokens=40)
    assert text_of(message) == expected.text
    assert message.id.startswith("msg_bdrk_")
    assert message.model == model.removeprefix("us.")
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, expected.output_tokens)
    assert message.usage.cache_read_input_tokens == 0
    assert message._request_id == raw.headers["x-amzn-requestid"]
    uuid.UUID(message._request_id)
    recorded = bedrock_emulator.requests[-1]
    assert (recorded.operation, recorded.model_id, recorded.status) == ("messages", model, 200)
    assert "/bedrock-mantle/aws4_request" in (recorded.header("authorization") or "")
    assert recorded.header("anthropic-version") == "2026-10-21"
    assert json.loads(recorded.body)["model"] == model


def test_stream_helper(client: anthropic.AnthropicBedrockMantle) -> None:
    """``with client.messages.stream(...)`` yields the text in pieces and a final message that matches it."""
    with client.messages.stream(model=OPUS_47, max_tokens=40, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1
    assert "".join(pieces) == text_of(final)
    assert final.usage.output_tokens == count_tokens("".join(pieces))
    assert final.usage.input_tokens == 5
    assert final.stop_reason == "end_turn"


@pytest.mark.asyncio
async def test_async_stream_true(bedrock_emulator: BedrockEmulator) -> None:
    """AsyncAnthropicBedrockMantle with ``stream=True`` yields the Messages events in order (the ping is skipped)."""
    async with anthropic.AsyncAnthropicBedrockMantle(**mantle_options(bedrock_emulator)) as mantle:
        stream = await mantle.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO, stream=True)
        events = [event async for event in stream]
    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    text = "".join(
        event.delta.text
        for event in events[2:-3]
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    )
    assert text == fake_reply(input_text=HELLO_TEXT, last_user_text=HELLO_TEXT, max_tokens=40).text
    assert json.loads(bedrock_emulator.requests[-1].body)["stream"] is True


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("throttle", anthropic.RateLimitError),
        ("model_not_ready", anthropic.RateLimitError),
        ("internal_error", anthropic.InternalServerError),
        ("service_unavailable", anthropic.OverloadedError),
        ("validation", anthropic.BadRequestError),
        ("access_denied", anthropic.PermissionDeniedError),
    ],
)
def test_http_faults_are_the_sdks_errors(
    bedrock_emulator: BedrockEmulator, client: anthropic.AnthropicBedrockMantle, fault: str, error: type[Exception]
) -> None:
    """Injected HTTP faults reach the SDK as its own error classes, with the Anthropic-style body."""
    bedrock_emulator.enqueue_faults(fault)
    with pytest.raises(error) as caught:
        client.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO)
    assert isinstance(caught.value, anthropic.APIStatusError)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert caught.value.request_id == caught.value.response.headers["x-amzn-requestid"]


def test_sdk_retries_throttles_until_success(bedrock_emulator: BedrockEmulator) -> None:
    """With retries on, the SDK retries a 429 and a 529 and then succeeds: the retry-test recipe."""
    bedrock_emulator.enqueue_faults("throttle", "service_unavailable")
    with (
        anthropic.AnthropicBedrockMantle(**mantle_options(bedrock_emulator, max_retries=2)) as mantle,
        mock.patch("time.sleep"),  # the SDK's backoff; the count of attempts is what matters here
    ):
        raw = mantle.messages.with_raw_response.create(model=OPUS_47, max_tokens=5, messages=HELLO)
    assert raw.retries_taken == 2
    assert [request.status for request in bedrock_emulator.requests] == [429, 529, 200]


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("anthropic.claude-9-nonexistent", anthropic.NotFoundError),
        ("anthropic.claude-opus-4-6-v1", anthropic.BadRequestError),  # InvokeModel only
        ("anthropic.claude-3-5-haiku-20241022-v1:0", anthropic.BadRequestError),
    ],
)
def test_model_errors(client: anthropic.AnthropicBedrockMantle, model: str, error: type[Exception]) -> None:
    """Unknown models are NotFoundError and InvokeModel-only models BadRequestError in the SDK."""
    with pytest.raises(error):
        client.messages.create(model=model, max_tokens=40, messages=HELLO)


def test_mid_stream_error_event(bedrock_emulator: BedrockEmulator, client: anthropic.AnthropicBedrockMantle) -> None:
    """A mid-stream error event raises the SDK's APIStatusError carrying the Anthropic error body."""
    bedrock_emulator.enqueue_faults("stream_exception:throttlingException")
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model=OPUS_47, max_tokens=40, messages=HELLO) as stream,
    ):
        received.extend(event.type for event in stream)
    assert received[:1] == ["message_start"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Too many requests, please wait before trying again."},
    }


def test_dropped_and_garbled_streams_fail_in_the_sdk(
    bedrock_emulator: BedrockEmulator, client: anthropic.AnthropicBedrockMantle
) -> None:
    """A dropped connection is the transport's protocol error; a garbled event fails the SDK's JSON decoding."""
    bedrock_emulator.enqueue_faults("drop_mid_stream", "bad_crc")
    with pytest.raises(httpx2.RemoteProtocolError):
        for _ in client.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO, stream=True):
            pass
    with pytest.raises(json.JSONDecodeError):
        for _ in client.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO, stream=True):
            pass


def test_api_key(bedrock_emulator: BedrockEmulator) -> None:
    """With an api_key configured, the SDK's ``api_key=`` (a bearer token) works; a wrong key is refused with 403."""
    emu = bedrock_emulator
    emu.options = attrs.evolve(emu.options, api_key=API_KEY)
    with anthropic.AnthropicBedrockMantle(**mantle_options(emu, api_key=API_KEY)) as mantle:
        message = mantle.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO)
        with mantle.messages.stream(model=OPUS_47, max_tokens=40, messages=HELLO) as stream:
            streamed = stream.get_final_message()
    assert text_of(message) == text_of(streamed)
    assert emu.requests[-1].header("authorization") == f"Bearer {API_KEY}"
    with (
        anthropic.AnthropicBedrockMantle(**mantle_options(emu, api_key="wrong")) as mantle,
        pytest.raises(anthropic.PermissionDeniedError),
    ):
        mantle.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO)
    assert emu.requests[-1].status == 403


@pytest.mark.parametrize("overrides", [{"aws_secret_key": "not-the-secret"}, {"aws_region": "eu-west-1"}])
def test_wrong_credentials_are_refused(bedrock_emulator: BedrockEmulator, overrides: dict[str, str]) -> None:
    """A wrong secret or region is a 403 the SDK raises as PermissionDeniedError."""
    with (
        anthropic.AnthropicBedrockMantle(**mantle_options(bedrock_emulator, **overrides)) as mantle,
        pytest.raises(anthropic.PermissionDeniedError) as caught,
    ):
        mantle.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO)
    assert caught.value.response.headers["x-amzn-errortype"].startswith("InvalidSignatureException:")
    assert bedrock_emulator.requests[-1].status == 403


def test_mantle_signatures_can_be_refused(bedrock_emulator: BedrockEmulator) -> None:
    """With messages_signing_names={"bedrock"} the SDK's bedrock-mantle signature is refused."""
    emu = bedrock_emulator
    emu.options = attrs.evolve(emu.options, messages_signing_names=frozenset({"bedrock"}))
    with (
        anthropic.AnthropicBedrockMantle(**mantle_options(emu)) as mantle,
        pytest.raises(anthropic.PermissionDeniedError),
    ):
        mantle.messages.create(model=OPUS_47, max_tokens=40, messages=HELLO)
