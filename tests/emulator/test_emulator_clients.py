"""Fidelity, proven by clients none of us wrote: boto3's bedrock-runtime client and AsyncAnthropicBedrock."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import anthropic
import boto3
import botocore.auth
import botocore.exceptions
import pytest
import urllib3.exceptions
from anthropic.types import MessageParam, TextBlock
from botocore.config import Config

from bedrock_chat.emulator import BedrockEmulator, EmulatorOptions, count_tokens, run_emulator_in_thread

ClientFor = Callable[..., Any]
TEXT_MODEL = "anthropic.claude-v2"
HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"  # accepts the anthropic SDK's default anthropic_version
PROFILE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0"
TEXT_BODY = json.dumps({"prompt": "\n\nHuman: Hello from boto3\n\nAssistant:", "max_tokens_to_sample": 40})
MESSAGES_BODY = json.dumps(
    {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 40, "messages": [{"role": "user", "content": "Hello"}]}
)
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello from the anthropic SDK"}]


@pytest.fixture
def boto3_client_for() -> Iterator[ClientFor]:
    """A factory of boto3 ``bedrock-runtime`` clients aimed at an emulator (single attempt); closes them after."""
    clients: list[Any] = []

    def make(emu: BedrockEmulator, **overrides: Any) -> Any:
        options: dict[str, Any] = {
            "endpoint_url": emu.endpoint_url,
            "region_name": emu.region,
            "aws_access_key_id": emu.access_key,
            "aws_secret_access_key": emu.secret_key,
            "aws_session_token": emu.session_token,
            "config": Config(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=10),
        }
        options.update(overrides)
        client = boto3.client("bedrock-runtime", **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def stream_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The decoded model events of a boto3 invoke_model_with_response_stream response (closed after, even on error)."""
    try:
        return [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    finally:
        response["body"].close()  # an abandoned stream keeps its socket out of the pool that client.close() closes


@pytest.mark.parametrize(
    ("model", "body"),
    [(TEXT_MODEL, TEXT_BODY), (HAIKU_35, MESSAGES_BODY), (PROFILE, MESSAGES_BODY), (ARN, MESSAGES_BODY)],
)
def test_boto3_invoke_model(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, model: str, body: str
) -> None:
    """boto3 invoke_model completes for text-completion and Messages models, profiles and ARNs."""
    client = boto3_client_for(bedrock_emulator)
    response = client.invoke_model(modelId=model, body=body, contentType="application/json", accept="application/json")
    result = json.loads(response["body"].read())
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    assert response["contentType"] == "application/json"
    assert response["ResponseMetadata"]["RequestId"] == headers["x-amzn-requestid"]
    if model == TEXT_MODEL:
        assert result["stop_reason"] == "stop_sequence"
        assert int(headers["x-amzn-bedrock-output-token-count"]) == count_tokens(result["completion"])
    else:
        assert result["usage"]["output_tokens"] == int(headers["x-amzn-bedrock-output-token-count"])
    assert bedrock_emulator.requests[-1].model_id == model


@pytest.mark.parametrize("model", [TEXT_MODEL, HAIKU_35, PROFILE, ARN])
def test_boto3_stream(bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, model: str) -> None:
    """boto3 invoke_model_with_response_stream decodes every frame, the last one carrying the metrics."""
    client = boto3_client_for(bedrock_emulator)
    body = TEXT_BODY if model == TEXT_MODEL else MESSAGES_BODY
    response = client.invoke_model_with_response_stream(modelId=model, body=body)
    assert response["contentType"] == "application/json"  # X-Amzn-Bedrock-Content-Type
    events = stream_events(response)
    assert len(events) > 3
    assert "amazon-bedrock-invocationMetrics" in events[-1]
    if model != TEXT_MODEL:
        assert events[-1]["type"] == "message_stop"


@pytest.mark.parametrize("stream", [False, True])
def test_boto3_messages_body_on_claude_2(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, stream: bool
) -> None:
    """Claude 2 takes the Messages body too (AWS-MSG lists it): a Message comes back, not a 400."""
    client = boto3_client_for(bedrock_emulator)
    if stream:
        events = stream_events(client.invoke_model_with_response_stream(modelId=TEXT_MODEL, body=MESSAGES_BODY))
        assert [events[0]["type"], events[-1]["type"]] == ["message_start", "message_stop"]
        assert events[0]["message"]["model"] == "claude-v2"
    else:
        result = json.loads(client.invoke_model(modelId=TEXT_MODEL, body=MESSAGES_BODY)["body"].read())
        assert (result["type"], result["model"], result["content"][0]["type"]) == ("message", "claude-v2", "text")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("throttle", "ThrottlingException"),
        ("model_not_ready", "ModelNotReadyException"),
        ("internal_error", "InternalServerException"),
        ("service_unavailable", "ServiceUnavailableException"),
        ("model_timeout", "ModelTimeoutException"),
        ("model_error", "ModelErrorException"),
        ("validation", "ValidationException"),
        ("access_denied", "AccessDeniedException"),
        ("service_quota_exceeded", "ServiceQuotaExceededException"),
    ],
)
def test_boto3_typed_errors_for_faults(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, fault: str, error: str
) -> None:
    """Every injected HTTP fault surfaces in boto3 as the modeled exception class of that name."""
    client = boto3_client_for(bedrock_emulator)
    bedrock_emulator.enqueue_faults(fault)
    with pytest.raises(getattr(client.exceptions, error)):
        client.invoke_model(modelId=HAIKU_35, body=MESSAGES_BODY)


def test_boto3_retries_throttles_until_success(bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor) -> None:
    """With its default budget, boto3 retries scripted throttles and 500s, then succeeds: the retry-test recipe."""
    client = boto3_client_for(bedrock_emulator, config=Config(retries={"total_max_attempts": 3, "mode": "standard"}))
    bedrock_emulator.enqueue_faults("throttle", "internal_error")
    with mock.patch("time.sleep"):  # botocore's backoff; the count of attempts is what matters here
        client.invoke_model(modelId=HAIKU_35, body=MESSAGES_BODY)
    assert [r.status for r in bedrock_emulator.requests] == [429, 500, 200]


@pytest.mark.parametrize(
    "exception_type",
    ["throttlingException", "modelStreamErrorException", "internalServerException", "validationException"],
)
def test_boto3_mid_stream_exception(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, exception_type: str
) -> None:
    """An exception frame raises botocore's EventStreamError with the frame's lower-camel code."""
    client = boto3_client_for(bedrock_emulator)
    bedrock_emulator.enqueue_faults(f"stream_exception:{exception_type}")
    response = client.invoke_model_with_response_stream(modelId=HAIKU_35, body=MESSAGES_BODY)
    with pytest.raises(botocore.exceptions.EventStreamError) as caught:
        stream_events(response)
    assert caught.value.response["Error"]["Code"] == exception_type


def test_boto3_sees_a_dropped_stream_and_a_bad_crc(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor
) -> None:
    """A dropped connection and a corrupted frame both fail botocore's stream reader."""
    client = boto3_client_for(bedrock_emulator)
    bedrock_emulator.enqueue_faults("drop_mid_stream", "bad_crc")
    response = client.invoke_model_with_response_stream(modelId=HAIKU_35, body=MESSAGES_BODY)
    with pytest.raises((urllib3.exceptions.ProtocolError, botocore.exceptions.ResponseStreamingError)):
        stream_events(response)
    response = client.invoke_model_with_response_stream(modelId=HAIKU_35, body=MESSAGES_BODY)
    with pytest.raises(botocore.eventstream.ChecksumMismatch):
        stream_events(response)


@pytest.mark.parametrize(
    ("model", "body", "code", "status"),
    [
        ("anthropic.claude-9-unknown-v1:0", MESSAGES_BODY, "ResourceNotFoundException", 404),
        (TEXT_MODEL, json.dumps({"prompt": "Hi", "max_tokens_to_sample": 10}), "ValidationException", 400),
        (HAIKU_35, TEXT_BODY, "ValidationException", 400),
    ],
)
def test_boto3_request_errors(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, model: str, body: str, code: str, status: int
) -> None:
    """Unknown models and bad bodies arrive in boto3 as the modeled exceptions, with the status."""
    client = boto3_client_for(bedrock_emulator)
    with pytest.raises(getattr(client.exceptions, code)) as caught:
        client.invoke_model(modelId=model, body=body)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


@pytest.mark.parametrize("operation", ["converse", "converse_stream"])
def test_boto3_converse_gets_bedrocks_refusal(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, operation: str
) -> None:
    """Converse and ConverseStream, which the emulator does not serve, raise boto3's modeled ValidationException.

    The error is Bedrock's own for a model the operation does not support (400, its wording), after the
    request was routed and authenticated; before, an unknown-path 404 arrived as an unmodeled ClientError.
    """
    client = boto3_client_for(bedrock_emulator)
    with pytest.raises(client.exceptions.ValidationException) as caught:
        getattr(client, operation)(modelId=HAIKU_35, messages=[{"role": "user", "content": [{"text": "Hello"}]}])
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Bedrock's wording, as reported by its users for models Converse does not serve.
    assert caught.value.response["Error"]["Message"].startswith("This action doesn't support the model that you")
    (recorded,) = bedrock_emulator.requests
    assert recorded.operation == {"converse": "Converse", "converse_stream": "ConverseStream"}[operation]
    # Authenticated like every routed request: a wrong secret is refused first.
    stranger = boto3_client_for(bedrock_emulator, aws_secret_access_key="not-the-secret")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        getattr(stranger, operation)(modelId=HAIKU_35, messages=[{"role": "user", "content": [{"text": "Hello"}]}])
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"aws_secret_access_key": "not-the-secret"}, "InvalidSignatureException"),
        ({"aws_access_key_id": "AKIDUNKNOWN"}, "UnrecognizedClientException"),
        ({"region_name": "eu-west-1"}, "InvalidSignatureException"),
    ],
)
def test_boto3_auth_failures(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, overrides: dict[str, str], code: str
) -> None:
    """Wrong secret, unknown key or wrong region: 403 ClientError with AWS's code."""
    client = boto3_client_for(bedrock_emulator, **overrides)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.invoke_model(modelId=HAIKU_35, body=MESSAGES_BODY)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize("minutes", [-10, 10])
def test_boto3_request_signed_ten_minutes_off_is_refused(
    bedrock_emulator: BedrockEmulator, boto3_client_for: ClientFor, minutes: int
) -> None:
    """A boto3 request whose clock is 10 minutes off is refused with InvalidSignatureException."""
    client = boto3_client_for(bedrock_emulator)
    moment = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(minutes=minutes)
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=moment),
        pytest.raises(botocore.exceptions.ClientError) as caught,
    ):
        client.invoke_model(modelId=HAIKU_35, body=MESSAGES_BODY)
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["Error"]["Message"].startswith(
        "Signature expired: " if minutes < 0 else "Signature not yet current: "
    )


def test_boto3_with_session_token(boto3_client_for: ClientFor) -> None:
    """A session-token emulator accepts boto3 with the token and refuses it without."""
    with run_emulator_in_thread(EmulatorOptions(session_token="FwoGZXIvYXdzEXAMPLE")) as emu:
        assert boto3_client_for(emu).invoke_model(modelId=HAIKU_35, body=MESSAGES_BODY)["body"].read()
        without = boto3_client_for(emu, aws_session_token=None)
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            without.invoke_model(modelId=HAIKU_35, body=MESSAGES_BODY)
        assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
        assert emu.requests[0].header("x-amz-security-token") == "FwoGZXIvYXdzEXAMPLE"


async def drain(manager: Any) -> None:
    """Enter an SDK stream manager and read every event."""
    async with manager as stream:
        async for _ in stream:
            pass


def anthropic_client(emu: BedrockEmulator, **overrides: Any) -> anthropic.AsyncAnthropicBedrock:
    """An AsyncAnthropicBedrock aimed at the emulator, without retries."""
    options: dict[str, Any] = {
        "base_url": emu.endpoint_url,
        "aws_access_key": emu.access_key,
        "aws_secret_key": emu.secret_key,
        "aws_region": emu.region,
        "max_retries": 0,
        "timeout": 10,
    }
    options.update(overrides)
    return anthropic.AsyncAnthropicBedrock(**options)


@pytest.mark.asyncio
@pytest.mark.parametrize("model", [HAIKU_45, f"us.{HAIKU_45}"])
async def test_anthropic_messages_create(bedrock_emulator: BedrockEmulator, model: str) -> None:
    """AsyncAnthropicBedrock.messages.create completes; it signs with a raw ':' in the path and many headers."""
    async with anthropic_client(bedrock_emulator) as client:
        message = await client.messages.create(model=model, max_tokens=30, messages=HELLO)
    assert message.id.startswith("msg_bdrk_")
    assert message.model == "claude-haiku-4-5-20251001"
    assert message.stop_reason == "end_turn"
    block = message.content[0]
    assert isinstance(block, TextBlock)
    text = block.text
    assert text.startswith("Hello from the anthropic SDK ")
    assert message.usage.output_tokens == count_tokens(text)
    recorded = bedrock_emulator.requests[-1]
    assert ":" in recorded.path
    assert "x-stainless-lang" in (recorded.header("authorization") or "")
    assert json.loads(recorded.body)["anthropic_version"] == "2026-10-21"


@pytest.mark.asyncio
async def test_anthropic_stream_helper(bedrock_emulator: BedrockEmulator) -> None:
    """``async with client.messages.stream(...)`` yields the text in pieces and a final message."""
    async with (
        anthropic_client(bedrock_emulator) as client,
        client.messages.stream(
            model=HAIKU_45,
            max_tokens=30,
            messages=HELLO,
        ) as stream,
    ):
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert len(pieces) > 1
    block = final.content[0]
    assert isinstance(block, TextBlock)
    assert "".join(pieces) == block.text
    assert final.usage.output_tokens == count_tokens("".join(pieces))


@pytest.mark.asyncio
async def test_anthropic_stream_true(bedrock_emulator: BedrockEmulator) -> None:
    """``stream=True`` yields the raw Messages events in order."""
    async with anthropic_client(bedrock_emulator) as client:
        stream = await client.messages.create(
            model=HAIKU_45,
            max_tokens=30,
            messages=HELLO,
            stream=True,
        )
        types = [event.type async for event in stream]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]


@pytest.mark.asyncio
async def test_anthropic_version_rule(bedrock_emulator: BedrockEmulator) -> None:
    """A dated model refuses the SDK's default anthropic_version (400) and accepts bedrock-2023-05-31."""
    async with anthropic_client(bedrock_emulator) as client:
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(model=HAIKU_35, max_tokens=30, messages=HELLO)
        message = await client.messages.create(
            model=HAIKU_35,
            max_tokens=30,
            messages=HELLO,
            extra_body={"anthropic_version": "bedrock-2023-05-31"},
        )
    assert message.model == "claude-3-5-haiku-20241022"


@pytest.mark.asyncio
async def test_anthropic_errors(bedrock_emulator: BedrockEmulator) -> None:
    """Throttles, wrong secrets and mid-stream exceptions reach the SDK as its own error types."""
    bedrock_emulator.enqueue_faults("throttle", "stream_exception:throttlingException")
    async with anthropic_client(bedrock_emulator) as client:
        with pytest.raises(anthropic.RateLimitError):
            await client.messages.create(model=HAIKU_45, max_tokens=30, messages=HELLO)
        stream = client.messages.stream(model=HAIKU_45, max_tokens=30, messages=HELLO)
        with pytest.raises(anthropic.APIStatusError, match="throttlingException"):
            await drain(stream)
    async with anthropic_client(bedrock_emulator, aws_secret_key="wrong") as client:
        with pytest.raises(anthropic.PermissionDeniedError):
            await client.messages.create(model=HAIKU_45, max_tokens=30, messages=HELLO)
    assert bedrock_emulator.requests[-1].status == 403
