"""CountTokens (``POST /model/{modelId}/count-tokens``): the same count InvokeModel reports, by boto3 and raw HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import botocore.session
import pytest
from emulator_testing import boto3_runtime_client, post_signed

from bedrock_chat.emulator import BedrockEmulator, count_tokens

HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"
TEXT_MODEL = "anthropic.claude-v2"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nstand-in").decode()
TOOLS = [{"name": "lookup", "description": "Look a word up.", "input_schema": {"type": "object"}}]
TEXT_BODY: dict[str, Any] = {
    "prompt": "You are terse.\n\nHuman: Count these five words\n\nAssistant:",
    "max_tokens_to_sample": 20,
}
MESSAGES_BODY: dict[str, Any] = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 30,
    "system": "Answer in one line.",
    "messages": [{"role": "user", "content": "How many tokens is this prompt?"}],
}
RICH_BODY: dict[str, Any] = {
    "anthropic_version": "bedrock-2023-05-31",
    "anthropic_beta": ["token-efficient-tools-2025-02-19"],
    "max_tokens": 30,
    "system": [{"type": "text", "text": "Use tools."}],
    "tools": TOOLS,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is on this picture?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ],
        },
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a red kite"}]},
    ],
}
#: model, body, and the words the fake model counts.
CASES = [
    (TEXT_MODEL, TEXT_BODY, TEXT_BODY["prompt"]),
    (HAIKU_35, MESSAGES_BODY, "Answer in one line. How many tokens is this prompt?"),
    (HAIKU_35, RICH_BODY, "Use tools. What is on this picture? a red kite"),
]


@pytest.fixture
def client(bedrock_emulator: BedrockEmulator) -> Iterator[Any]:
    """A single-attempt boto3 bedrock-runtime client aimed at the emulator, closed after the test."""
    with boto3_runtime_client(bedrock_emulator) as made:
        yield made


def test_service_model_shapes() -> None:
    """The installed botocore models CountTokens as this emulator serves it (path, union input, inputTokens)."""
    operation = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("CountTokens")
    assert (operation.http["method"], operation.http["requestUri"]) == ("POST", "/model/{modelId}/count-tokens")
    members = operation.input_shape.members["input"].members
    assert set(members) == {"invokeModel", "converse"}
    assert members["invokeModel"].members["body"].type_name == "blob"
    assert operation.output_shape.required_members == ["inputTokens"]


@pytest.mark.parametrize(("model", "body", "words"), CASES)
def test_boto3_count_equals_invoke_usage(
    bedrock_emulator: BedrockEmulator, client: Any, model: str, body: dict[str, Any], words: str
) -> None:
    """boto3's count_tokens gives exactly the input tokens invoke_model reports (usage and header) for the body."""
    data = json.dumps(body).encode()
    counted = client.count_tokens(modelId=model, input={"invokeModel": {"body": data}})["inputTokens"]
    invoked = client.invoke_model(modelId=model, body=data)
    header = int(invoked["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-input-token-count"])
    assert counted == header == count_tokens(words)
    if model != TEXT_MODEL:
        assert json.loads(invoked["body"].read())["usage"]["input_tokens"] == counted
    recorded = bedrock_emulator.requests[0]
    assert (recorded.operation, recorded.model_id, recorded.status) == ("CountTokens", model, 200)
    sent = json.loads(recorded.body)
    assert base64.b64decode(sent["input"]["invokeModel"]["body"]) == data  # the blob travels as base64 text


def test_converse_input_counts_like_its_messages_equivalent(client: Any) -> None:
    """A Converse request counts its system, message and tool-result texts: the same as the Messages body."""
    converse = {
        "system": [{"text": "Use tools."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is on this picture?"},
                    {"image": {"format": "png", "source": {"bytes": b"x"}}},
                ],
            },
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "toolu_1", "name": "lookup", "input": {}}}]},
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "toolu_1", "content": [{"text": "a red kite"}]}}],
            },
        ],
        "toolConfig": {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {"type": "object"}}}}]},
    }
    by_converse = client.count_tokens(modelId=HAIKU_35, input={"converse": converse})["inputTokens"]
    rich = json.dumps(RICH_BODY).encode()
    by_messages = client.count_tokens(modelId=HAIKU_35, input={"invokeModel": {"body": rich}})["inputTokens"]
    assert by_converse == by_messages == 10
    text_model = client.count_tokens(modelId=TEXT_MODEL, input={"converse": converse})["inputTokens"]
    assert text_model == 10


@pytest.mark.parametrize(
    ("model", "body", "code"),
    [
        ("anthropic.claude-9-unknown-v1:0", MESSAGES_BODY, "ResourceNotFoundException"),
        ("anthropic.claude-opus-5", MESSAGES_BODY, "ValidationException"),  # served on /anthropic/v1/messages only
        (HAIKU_35, TEXT_BODY, "ValidationException"),
        ("anthropic.claude-v1", MESSAGES_BODY, "ValidationException"),  # text completions only (2.x takes both)
        (HAIKU_35, {**MESSAGES_BODY, "max_tokens": 0}, "ValidationException"),
    ],
)
def test_boto3_count_errors(client: Any, model: str, body: dict[str, Any], code: str) -> None:
    """The counted body is validated as InvokeModel validates it; an unknown model is a 404."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.count_tokens(modelId=model, input={"invokeModel": {"body": json.dumps(body).encode()}})
    assert caught.value.response["Error"]["Code"] == code


def test_boto3_count_faults(bedrock_emulator: BedrockEmulator, client: Any) -> None:
    """Scripted faults reach CountTokens like any routed request."""
    bedrock_emulator.enqueue_faults("throttle")
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.count_tokens(modelId=HAIKU_35, input={"invokeModel": {"body": json.dumps(MESSAGES_BODY).encode()}})
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert bedrock_emulator.requests[-1].fault == "throttle"


PATH = "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/count-tokens"
GOOD_BLOB = base64.b64encode(json.dumps(MESSAGES_BODY).encode()).decode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "Malformed input request"),
        (b"{}", "at 'input' failed to satisfy constraint: Member must not be null"),
        (b'{"input": {}}', "exactly one of invokeModel, converse must be set, found 0"),
        (
            json.dumps({"input": {"invokeModel": {"body": GOOD_BLOB}, "converse": {"messages": []}}}).encode(),
            "found 2",
        ),
        (b'{"input": {"invokeModel": {}}}', "input.invokeModel.body: Field required"),
        (b'{"input": {"invokeModel": {"body": "***"}}}', "input.invokeModel.body: Input should be valid base64"),
        (b'{"input": {"converse": {"messages": []}}}', "input.converse.messages: at least one message"),
        (b'{"input": {"converse": {"messages": [{"role": "x", "content": []}]}}}', "messages.0.role"),
        (b'{"input": {"converse": {"messages": [{"role": "user", "content": "hi"}]}}}', "messages.0.content"),
        (
            b'{"input": {"converse": {"system": "hi", "messages": [{"role": "user", "content": []}]}}}',
            "input.converse.system",
        ),
    ],
)
def test_bad_count_requests(bedrock_emulator: BedrockEmulator, body: bytes, expected: str) -> None:
    """A malformed CountTokens body is a 400 ValidationException saying what is wrong."""
    answer = post_signed(bedrock_emulator, PATH, body)
    assert (answer.status, answer.error_code) == (400, "ValidationException")
    assert expected in answer.json()["message"]


def test_raw_count_shape_and_auth(bedrock_emulator: BedrockEmulator) -> None:
    """The answer is exactly ``{"inputTokens": N}`` with a request id; unsigned requests are refused."""
    body = json.dumps({"input": {"invokeModel": {"body": GOOD_BLOB}}}).encode()
    answer = post_signed(bedrock_emulator, PATH, body)
    assert (answer.status, answer.headers["content-type"]) == (200, "application/json")
    assert answer.json() == {"inputTokens": count_tokens("Answer in one line. How many tokens is this prompt?")}
    assert answer.headers["x-amzn-requestid"]
    unsigned = post_signed(bedrock_emulator, PATH, body, signed=False)
    assert (unsigned.status, unsigned.error_code) == (403, "MissingAuthenticationTokenException")
