"""Bedrock parity on InvokeModel: request-option headers (checked, echoed, acted on) and API keys as bearer tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import attrs
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from emulator_testing import MESSAGES_BYTES, chunk_events, post_signed

from bedrock_chat.emulator import BedrockEmulator

HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"
INVOKE = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke"
STREAM = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke-with-response-stream"
TEXT_INVOKE = "/model/anthropic.claude-v2/invoke"
TEXT_BYTES = json.dumps({"prompt": "\n\nHuman: Hello there\n\nAssistant:", "max_tokens_to_sample": 20}).encode()
GUARDRAIL_ARN = "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc123def"
API_KEY = "bedrock-api-key-for-parity-tests"
GUARDRAIL = {"X-Amzn-Bedrock-GuardrailIdentifier": "abc123", "X-Amzn-Bedrock-GuardrailVersion": "DRAFT"}


# -- header rules ----------------------------------------------------------------------------------

VALID_HEADERS: list[dict[str, str]] = [
    {},
    GUARDRAIL,
    {"X-Amzn-Bedrock-GuardrailIdentifier": GUARDRAIL_ARN, "X-Amzn-Bedrock-GuardrailVersion": "12345678"},
    {"X-Amzn-Bedrock-GuardrailIdentifier": "", "X-Amzn-Bedrock-GuardrailVersion": ""},
    *({"X-Amzn-Bedrock-Trace": value} for value in ("ENABLED", "DISABLED", "ENABLED_FULL")),
    *({"X-Amzn-Bedrock-PerformanceConfig-Latency": value} for value in ("standard", "optimized")),
    *({"X-Amzn-Bedrock-Service-Tier": value} for value in ("priority", "default", "flex", "reserved")),
    {"X-Amzn-Bedrock-Request-Metadata": json.dumps({"team": "search", "ticket": "T-1"})},
    {"X-Amzn-Bedrock-Request-Metadata": "{}"},
    {"X-Amzn-Bedrock-Request-Metadata": json.dumps({"k": "v" * 8480})},  # 8,492 characters: under the limit
]

BAD_HEADERS: list[tuple[dict[str, str], str, str]] = [
    ({"X-Amzn-Bedrock-Trace": "on"}, "X-Amzn-Bedrock-Trace", "enum value set: [ENABLED, DISABLED, ENABLED_FULL]"),
    ({"X-Amzn-Bedrock-Trace": "enabled"}, "X-Amzn-Bedrock-Trace", "Value 'enabled' at 'trace'"),
    ({"X-Amzn-Bedrock-PerformanceConfig-Latency": "fast"}, "X-Amzn-Bedrock-PerformanceConfig-Latency", "[standard"),
    ({"X-Amzn-Bedrock-Service-Tier": "gold"}, "X-Amzn-Bedrock-Service-Tier", "[priority, default, flex, reserved]"),
    ({**GUARDRAIL, "X-Amzn-Bedrock-GuardrailIdentifier": "Abc"}, "X-Amzn-Bedrock-GuardrailIdentifier", "pattern"),
    ({**GUARDRAIL, "X-Amzn-Bedrock-GuardrailIdentifier": "my-guardrail"}, "X-Amzn-Bedrock-GuardrailIdentifier", "at"),
    (
        {**GUARDRAIL, "X-Amzn-Bedrock-GuardrailIdentifier": "arn:aws:bedrock:us-east-1:1234:guardrail/abc"},
        "X-Amzn-Bedrock-GuardrailIdentifier",
        "regular expression pattern",
    ),
    (
        {**GUARDRAIL, "X-Amzn-Bedrock-GuardrailIdentifier": "a" * 2049},
        "X-Amzn-Bedrock-GuardrailIdentifier",
        "length less than or equal to 2048",
    ),
    ({**GUARDRAIL, "X-Amzn-Bedrock-GuardrailVersion": "0"}, "X-Amzn-Bedrock-GuardrailVersion", "Value '0'"),
    ({**GUARDRAIL, "X-Amzn-Bedrock-GuardrailVersion": "123456789"}, "X-Amzn-Bedrock-GuardrailVersion", "pattern"),
    ({**GUARDRAIL, "X-Amzn-Bedrock-GuardrailVersion": "draft"}, "X-Amzn-Bedrock-GuardrailVersion", "(|([1-9]"),
    ({"X-Amzn-Bedrock-GuardrailIdentifier": "abc123"}, "X-Amzn-Bedrock-GuardrailVersion", "specified together"),
    ({"X-Amzn-Bedrock-GuardrailVersion": "1"}, "X-Amzn-Bedrock-GuardrailIdentifier", "specified together"),
    (
        {"X-Amzn-Bedrock-GuardrailIdentifier": "abc123", "X-Amzn-Bedrock-GuardrailVersion": ""},
        "X-Amzn-Bedrock-GuardrailVersion",
        "without X-Amzn-Bedrock-GuardrailVersion",
    ),
    ({"X-Amzn-Bedrock-Request-Metadata": "not json"}, "X-Amzn-Bedrock-Request-Metadata", "JSON object"),
    ({"X-Amzn-Bedrock-Request-Metadata": "[1, 2]"}, "X-Amzn-Bedrock-Request-Metadata", "JSON object"),
    ({"X-Amzn-Bedrock-Request-Metadata": '{"n": 1}'}, "X-Amzn-Bedrock-Request-Metadata", "of string values"),
    (
        {"X-Amzn-Bedrock-Request-Metadata": json.dumps({"k": "v" * 8500})},
        "X-Amzn-Bedrock-Request-Metadata",
        "length less than or equal to 8500",
    ),
]


@pytest.mark.parametrize("path", [INVOKE, STREAM])
@pytest.mark.parametrize("headers", VALID_HEADERS)
def test_valid_option_headers_are_accepted(
    bedrock_emulator: BedrockEmulator, path: str, headers: dict[str, str]
) -> None:
    """Every value the service model allows is accepted on both operations and recorded as sent."""
    answer = post_signed(bedrock_emulator, path, MESSAGES_BYTES, headers=headers)
    assert answer.status == 200, answer.body
    recorded = bedrock_emulator.requests[-1]
    for name, value in headers.items():
        assert recorded.header(name) == value


@pytest.mark.parametrize("path", [INVOKE, STREAM])
@pytest.mark.parametrize(("headers", "named", "expected"), BAD_HEADERS)
def test_bad_option_headers_are_refused(
    bedrock_emulator: BedrockEmulator, path: str, headers: dict[str, str], named: str, expected: str
) -> None:
    """A value outside the header's enum, pattern, length or shape is a 400 ValidationException naming the header."""
    answer = post_signed(bedrock_emulator, path, MESSAGES_BYTES, headers=headers)
    assert answer.status == 400
    assert answer.error_code == "ValidationException"
    message = answer.json()["message"]
    assert named in message
    assert expected in message
    assert bedrock_emulator.requests[-1].status == 400


def test_header_problems_are_reported_together(bedrock_emulator: BedrockEmulator) -> None:
    """Several bad headers give one message counting them, AWS-style."""
    headers = {"X-Amzn-Bedrock-Trace": "x", "X-Amzn-Bedrock-Service-Tier": "y"}
    message = post_signed(bedrock_emulator, INVOKE, MESSAGES_BYTES, headers=headers).json()["message"]
    assert message.startswith("2 validation errors detected: Value 'x' at 'trace' (header X-Amzn-Bedrock-Trace)")
    assert "; Value 'y' at 'serviceTier' (header X-Amzn-Bedrock-Service-Tier)" in message


def test_request_metadata_value_is_not_echoed_in_errors(bedrock_emulator: BedrockEmulator) -> None:
    """Request metadata is a sensitive member: its error names the header but does not repeat the value."""
    headers = {"X-Amzn-Bedrock-Request-Metadata": "secret-not-json"}
    message = post_signed(bedrock_emulator, INVOKE, MESSAGES_BYTES, headers=headers).json()["message"]
    assert "X-Amzn-Bedrock-Request-Metadata" in message
    assert "secret-not-json" not in message


def test_headers_are_not_checked_on_the_messages_endpoint(bedrock_emulator: BedrockEmulator) -> None:
    """The option headers belong to InvokeModel: /anthropic/v1/messages ignores them."""
    body = json.dumps(
        {"model": "anthropic.claude-opus-4-7", "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
    ).encode()
    headers = {"anthropic-version": "2023-06-01", "X-Amzn-Bedrock-Trace": "bogus"}
    answer = post_signed(bedrock_emulator, "/anthropic/v1/messages", body, headers=headers)
    assert answer.status == 200, answer.body


# -- effects ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [INVOKE, STREAM])
def test_latency_and_service_tier_are_echoed(bedrock_emulator: BedrockEmulator, path: str) -> None:
    """The modeled response headers echo the request's latency setting and service tier, and only when sent."""
    headers = {"X-Amzn-Bedrock-PerformanceConfig-Latency": "optimized", "X-Amzn-Bedrock-Service-Tier": "flex"}
    answer = post_signed(bedrock_emulator, path, MESSAGES_BYTES, headers=headers)
    assert answer.headers["x-amzn-bedrock-performanceconfig-latency"] == "optimized"
    assert answer.headers["x-amzn-bedrock-service-tier"] == "flex"
    plain = post_signed(bedrock_emulator, path, MESSAGES_BYTES)
    assert "x-amzn-bedrock-performanceconfig-latency" not in plain.headers
    assert "x-amzn-bedrock-service-tier" not in plain.headers


TRACE_STUB: dict[str, Any] = {"guardrail": {"input": {}, "outputs": []}}


@pytest.mark.parametrize(
    ("headers", "fields"),
    [
        ({}, {}),
        ({"X-Amzn-Bedrock-Trace": "ENABLED"}, {}),  # a trace without a guardrail adds nothing
        (GUARDRAIL, {"amazon-bedrock-guardrailAction": "NONE"}),
        ({**GUARDRAIL, "X-Amzn-Bedrock-Trace": "DISABLED"}, {"amazon-bedrock-guardrailAction": "NONE"}),
        (
            {**GUARDRAIL, "X-Amzn-Bedrock-Trace": "ENABLED"},
            {"amazon-bedrock-guardrailAction": "NONE", "amazon-bedrock-trace": TRACE_STUB},
        ),
        (
            {**GUARDRAIL, "X-Amzn-Bedrock-Trace": "ENABLED_FULL"},
            {"amazon-bedrock-guardrailAction": "NONE", "amazon-bedrock-trace": TRACE_STUB},
        ),
    ],
)
@pytest.mark.parametrize(("path", "body"), [(INVOKE, MESSAGES_BYTES), (TEXT_INVOKE, TEXT_BYTES)])
def test_guardrail_fields_in_the_body(
    bedrock_emulator: BedrockEmulator, headers: dict[str, str], fields: dict[str, Any], path: str, body: bytes
) -> None:
    """A guardrail adds its action (and, traced, the trace stub) to the body of both APIs; nothing else changes."""
    with_options = post_signed(bedrock_emulator, path, body, headers=headers).json()
    without = post_signed(bedrock_emulator, path, body).json()
    extra = {key: value for key, value in with_options.items() if key not in without}
    assert extra == fields
    assert {key: with_options[key] for key in without if key != "id"} == {k: v for k, v in without.items() if k != "id"}


def test_guardrail_fields_in_the_last_stream_chunk(bedrock_emulator: BedrockEmulator) -> None:
    """On a stream, message_stop carries the guardrail action and trace next to the invocation metrics."""
    headers = {**GUARDRAIL, "X-Amzn-Bedrock-Trace": "ENABLED_FULL"}
    events = chunk_events(post_signed(bedrock_emulator, STREAM, MESSAGES_BYTES, headers=headers).body)
    assert all("amazon-bedrock-guardrailAction" not in event for event in events[:-1])
    assert events[-1]["type"] == "message_stop"
    assert events[-1]["amazon-bedrock-guardrailAction"] == "NONE"
    assert events[-1]["amazon-bedrock-trace"] == TRACE_STUB
    assert "amazon-bedrock-invocationMetrics" in events[-1]


# -- boto3 -----------------------------------------------------------------------------------------


@pytest.fixture
def boto3_clients() -> Iterator[list[Any]]:
    """A list to put boto3 clients in; each is closed after the test."""
    clients: list[Any] = []
    yield clients
    for client in clients:
        client.close()


def boto3_client(emu: BedrockEmulator, clients: list[Any], **config: Any) -> Any:
    """A single-attempt boto3 bedrock-runtime client aimed at ``emu`` with its keys (``config``: more Config)."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=emu.endpoint_url,
        region_name=emu.region,
        aws_access_key_id=emu.access_key,
        aws_secret_access_key=emu.secret_key,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=10, **config),
    )
    clients.append(client)
    return client


OPTIONS = {
    "guardrailIdentifier": "abc123",
    "guardrailVersion": "1",
    "trace": "ENABLED",
    "performanceConfigLatency": "optimized",
    "serviceTier": "priority",
    "requestMetadata": json.dumps({"team": "search"}),
}


def test_boto3_invoke_model_with_every_option(bedrock_emulator: BedrockEmulator, boto3_clients: list[Any]) -> None:
    """boto3's invoke_model parameters become the headers; the echoed ones come back as modeled response members."""
    client = boto3_client(bedrock_emulator, boto3_clients)
    response = client.invoke_model(modelId=HAIKU_35, body=MESSAGES_BYTES, **OPTIONS)
    assert (response["performanceConfigLatency"], response["serviceTier"]) == ("optimized", "priority")
    body = json.loads(response["body"].read())
    assert body["amazon-bedrock-guardrailAction"] == "NONE"
    assert body["amazon-bedrock-trace"] == TRACE_STUB
    recorded = bedrock_emulator.requests[-1]
    assert recorded.header("x-amzn-bedrock-guardrailidentifier") == "abc123"
    assert recorded.header("x-amzn-bedrock-guardrailversion") == "1"
    assert recorded.header("x-amzn-bedrock-trace") == "ENABLED"
    assert recorded.header("x-amzn-bedrock-request-metadata") == '{"team": "search"}'


def test_boto3_stream_with_every_option(bedrock_emulator: BedrockEmulator, boto3_clients: list[Any]) -> None:
    """The stream operation takes the same options and echoes the same response members."""
    client = boto3_client(bedrock_emulator, boto3_clients)
    response = client.invoke_model_with_response_stream(modelId=HAIKU_35, body=MESSAGES_BYTES, **OPTIONS)
    assert (response["performanceConfigLatency"], response["serviceTier"]) == ("optimized", "priority")
    try:
        events = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    finally:
        response["body"].close()
    assert events[-1]["amazon-bedrock-guardrailAction"] == "NONE"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"trace": "sometimes"}, "X-Amzn-Bedrock-Trace"),
        ({"performanceConfigLatency": "fast"}, "X-Amzn-Bedrock-PerformanceConfig-Latency"),
        ({"serviceTier": "gold"}, "X-Amzn-Bedrock-Service-Tier"),
        ({"guardrailIdentifier": "abc123"}, "X-Amzn-Bedrock-GuardrailVersion"),
        ({"guardrailIdentifier": "abc123", "guardrailVersion": "v1"}, "X-Amzn-Bedrock-GuardrailVersion"),
        ({"requestMetadata": "[]"}, "X-Amzn-Bedrock-Request-Metadata"),
    ],
)
def test_boto3_bad_options_are_refused_by_the_emulator(
    bedrock_emulator: BedrockEmulator, boto3_clients: list[Any], options: dict[str, str], named: str
) -> None:
    """With boto3's own checks off, the emulator refuses bad option values with a ValidationException."""
    client = boto3_client(bedrock_emulator, boto3_clients, parameter_validation=False)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.invoke_model(modelId=HAIKU_35, body=MESSAGES_BYTES, **options)
    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ValidationException", 400)
    assert named in error["Error"]["Message"]


# -- API keys (Authorization: Bearer) --------------------------------------------------------------


@pytest.fixture
def keyed(bedrock_emulator: BedrockEmulator) -> BedrockEmulator:
    """The session's emulator, accepting API_KEY."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, api_key=API_KEY)
    return bedrock_emulator


COUNT = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/count-tokens"
COUNT_BYTES = json.dumps({"input": {"invokeModel": {"body": base64.b64encode(MESSAGES_BYTES).decode()}}}).encode()


@pytest.mark.parametrize(("path", "body"), [(INVOKE, MESSAGES_BYTES), (STREAM, MESSAGES_BYTES), (COUNT, COUNT_BYTES)])
def test_bearer_keys_on_the_model_routes(keyed: BedrockEmulator, path: str, body: bytes) -> None:
    """``Authorization: Bearer <key>`` authenticates InvokeModel, the stream and CountTokens; a wrong key is a 403."""
    good = post_signed(keyed, path, body, headers={"Authorization": f"Bearer {API_KEY}"}, signed=False)
    assert good.status == 200, good.body
    wrong = post_signed(keyed, path, body, headers={"Authorization": "Bearer not-the-key"}, signed=False)
    assert (wrong.status, wrong.error_code) == (403, "UnrecognizedClientException")


def test_bearer_keys_are_refused_without_an_api_key(bedrock_emulator: BedrockEmulator) -> None:
    """An emulator without ``api_key`` refuses every bearer token."""
    answer = post_signed(bedrock_emulator, INVOKE, MESSAGES_BYTES, headers={"Authorization": "Bearer x"}, signed=False)
    assert (answer.status, answer.error_code) == (403, "UnrecognizedClientException")


def test_boto3_bearer_token_from_the_environment(
    keyed: BedrockEmulator, boto3_clients: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore sends AWS_BEARER_TOKEN_BEDROCK as a bearer token (over SigV4 keys); the emulator accepts it."""
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", API_KEY)
    client = boto3_client(keyed, boto3_clients)
    try:
        response = client.invoke_model(modelId=HAIKU_35, body=MESSAGES_BYTES, serviceTier="default")
    except botocore.exceptions.InvalidEndpointConfigurationError:
        # botocore 1.44.8 and later send bearer tokens over HTTPS only; the emulator is plain HTTP on
        # loopback. The raw-HTTP bearer tests above still prove the emulator's side.
        pytest.skip("this botocore refuses bearer tokens over plain HTTP")
    assert response["serviceTier"] == "default"
    assert response["body"].read()  # read to the end: an unread body keeps its socket out of the pool
    assert keyed.requests[-1].header("authorization") == f"Bearer {API_KEY}"
    counted = client.count_tokens(modelId=HAIKU_35, input={"invokeModel": {"body": MESSAGES_BYTES}})
    assert counted["inputTokens"] == 3
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "not-the-key")  # read when a client is made
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        boto3_client(keyed, boto3_clients).invoke_model(modelId=HAIKU_35, body=MESSAGES_BYTES)
    assert caught.value.response["Error"]["Code"] == "UnrecognizedClientException"
