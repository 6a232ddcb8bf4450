"""``POST /anthropic/v1/messages`` over raw HTTP: botocore-signed requests, every rule, error shape and fault.

Responses are read with httpx (or a raw socket where the framing itself is under test) and streams are
decoded with the project's own SSE decoder.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from typing import Any

import anyio
import attrs
import httpx
import pytest
from emulator_testing import sign_with_botocore

from bedrock_chat._core.sse import SSEDecoder, SSEEvent
from bedrock_chat.emulator import (
    BedrockEmulator,
    EmulatorOptions,
    Faults,
    count_tokens,
    fake_reply,
    run_emulator_in_thread,
    split_chunks,
)

PATH = "/anthropic/v1/messages"
OPUS_47 = "anthropic.claude-opus-4-7"
TEXT = "Hello there, emulator"
BODY: dict[str, Any] = {"model": OPUS_47, "max_tokens": 50, "messages": [{"role": "user", "content": TEXT}]}
VERSION = {"anthropic-version": "2023-06-01"}
EXPECTED = fake_reply(input_text=TEXT, last_user_text=TEXT, max_tokens=50)
#: With these options a stream has exactly 10 one-token deltas, so 16 events in all.
TEN_CHUNKS = EmulatorOptions(chunk_tokens=1, reply_tokens=10)
STRUCTURE = ["message_start", "content_block_start", "ping"]
ENDING = ["content_block_stop", "message_delta", "message_stop"]


def body_bytes(body: dict[str, Any] | bytes) -> bytes:
    """A body as sent: dicts are JSON-encoded."""
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def signed_headers(
    emu: BedrockEmulator, body: bytes, *, service: str = "bedrock", headers: dict[str, str] | None = None, **kw: Any
) -> dict[str, str]:
    """Headers for a POST to the Messages endpoint, signed by botocore (``anthropic-version`` included and signed)."""
    return sign_with_botocore(emu, PATH, body, headers={**VERSION, **(headers or {})}, service=service, **kw)


def post(
    emu: BedrockEmulator,
    body: dict[str, Any] | bytes = BODY,
    *,
    headers: dict[str, str] | None = None,
    service: str = "bedrock",
    signed: bool = True,
    **kw: Any,
) -> httpx.Response:
    """POST ``body`` to the Messages endpoint (botocore-signed unless ``signed`` is False) and read it all."""
    data = body_bytes(body)
    if signed:
        sent = signed_headers(emu, data, service=service, headers=headers, **kw)
    else:
        sent = {"Content-Type": "application/json", **VERSION, **(headers or {})}
    return httpx.post(f"{emu.endpoint_url}{PATH}", content=data, headers=sent, timeout=10)


def stream_body(**fields: Any) -> dict[str, Any]:
    """The default body with ``"stream": true`` (and ``fields``)."""
    return {**BODY, "stream": True, **fields}


def sse(data: bytes) -> list[SSEEvent]:
    """Every event of a complete SSE body (the decoder's close() checks that nothing was cut off)."""
    decoder = SSEDecoder()
    decoder.feed(data)
    events = list(decoder)
    decoder.close()
    return events


def assert_anthropic_error(response: httpx.Response, status: int, error_type: str, code: str) -> dict[str, Any]:
    """The response is an Anthropic-style error with ``x-amzn-ErrorType`` and both request ids; its ``error``."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert (response.headers.get("x-amzn-ErrorType") or "").split(":")[0] == code
    assert response.headers["x-amzn-RequestId"] == response.headers["request-id"]
    body = response.json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert isinstance(body["error"]["message"], str)
    error: dict[str, Any] = body["error"]
    return error


def assert_aws_error(response: httpx.Response, status: int, code: str) -> None:
    """The response is an AWS-style error (``{"message"}`` + ``x-amzn-ErrorType``), with both request ids."""
    assert response.status_code == status
    assert (response.headers.get("x-amzn-ErrorType") or "").split(":")[0] == code
    assert response.headers["x-amzn-RequestId"] == response.headers["request-id"]
    assert set(response.json()) == {"message"}


def is_json(text: str) -> bool:
    """Whether ``text`` parses as JSON."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def raw_request(emu: BedrockEmulator, body: dict[str, Any]) -> bytes:
    """A signed HTTP/1.1 request to the Messages endpoint as bytes."""
    data = body_bytes(body)
    headers = signed_headers(emu, data)
    head = f"POST {PATH} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data


def chunks_of(body: bytes) -> tuple[list[bytes], bool]:
    """The HTTP chunks of a chunked body, as far as it goes; whether the terminating zero-size chunk arrived."""
    out: list[bytes] = []
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        if size == 0:
            return out, True
        out.append(rest[:size])
        body = rest[size + 2 :]
    return out, False


# -- success ---------------------------------------------------------------------------------------


def test_json_message(bedrock_emulator: BedrockEmulator) -> None:
    """A non-streaming request gets an Anthropic Message, as the fake model's rules predict, with both request ids."""
    response = post(bedrock_emulator)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    request_id = response.headers["x-amzn-RequestId"]
    uuid.UUID(request_id)
    assert response.headers["request-id"] == request_id
    body = response.json()
    assert body == {
        "id": "msg_bdrk_" + request_id.replace("-", "")[:24],
        "type": "message",
        "role": "assistant",
        "model": OPUS_47,
        "content": [{"type": "text", "text": EXPECTED.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 3,
            "output_tokens": EXPECTED.output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    assert "x-amzn-bedrock-output-token-count" not in response.headers


def test_sse_event_sequence(bedrock_emulator: BedrockEmulator) -> None:
    """``"stream": true`` gives text/event-stream: start, block start, a ping, deltas, stops, each named by type."""
    response = post(bedrock_emulator, stream_body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-amzn-RequestId"] == response.headers["request-id"]
    events = sse(response.content)
    names = [event.event for event in events]
    assert names[:3] == STRUCTURE
    assert names[-3:] == ENDING
    assert set(names[3:-3]) == {"content_block_delta"}
    data = [json.loads(event.data) for event in events]
    assert [item["type"] for item in data] == names
    pieces = split_chunks(EXPECTED.text, None, EXPECTED.rng_seed)
    assert [item["delta"] for item in data[3:-3]] == [{"type": "text_delta", "text": piece} for piece in pieces]
    start = data[0]["message"]
    assert start["id"].startswith("msg_bdrk_")
    assert (start["model"], start["content"], start["stop_reason"]) == (OPUS_47, [], None)
    assert start["usage"] == {
        "input_tokens": 3,
        "output_tokens": 1,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert data[1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert data[2] == {"type": "ping"}
    assert data[-3] == {"type": "content_block_stop", "index": 0}
    assert data[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": EXPECTED.output_tokens},
    }
    assert data[-1] == {"type": "message_stop"}


def test_each_event_is_one_http_chunk(bedrock_emulator: BedrockEmulator) -> None:
    """On the wire, every SSE event is exactly one HTTP chunk, ``event: X\\ndata: {json}\\n\\n``."""
    emu = bedrock_emulator
    emu.options = TEN_CHUNKS
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw_request(emu, stream_body()))
        data = b""
        while not data.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, "the server closed before the last chunk"
            data += chunk
    chunks, complete = chunks_of(data.partition(b"\r\n\r\n")[2])
    assert complete
    assert len(chunks) == 16
    for chunk in chunks:
        head, data_line, blank = chunk.split(b"\n", 2)
        assert blank == b"\n"
        name = head.removeprefix(b"event: ").decode()
        assert json.loads(data_line.removeprefix(b"data: "))["type"] == name


def test_stream_with_stop_sequence_and_max_tokens(bedrock_emulator: BedrockEmulator) -> None:
    """Stop sequences and max_tokens cut the reply and set stop_reason, streamed or not."""
    body = {**BODY, "messages": [{"role": "user", "content": "one two STOP three"}], "stop_sequences": ["STOP"]}
    cut = post(bedrock_emulator, body).json()
    assert (cut["content"][0]["text"], cut["stop_reason"], cut["stop_sequence"]) == (
        "one two ",
        "stop_sequence",
        "STOP",
    )
    events = sse(post(bedrock_emulator, stream_body(max_tokens=2)).content)
    final = json.loads(events[-2].data)
    assert final["delta"]["stop_reason"] == "max_tokens"
    assert final["usage"]["output_tokens"] == 2


@pytest.mark.parametrize(
    ("model", "echoed"),
    [
        (OPUS_47, OPUS_47),
        ("us.anthropic.claude-opus-4-7", OPUS_47),
        ("global.anthropic.claude-opus-4-8", "anthropic.claude-opus-4-8"),
        ("anthropic.claude-haiku-4-5", "anthropic.claude-haiku-4-5"),  # undated alias
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "anthropic.claude-haiku-4-5-20251001-v1:0"),  # on both surfaces
        ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-7", OPUS_47),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-5", "anthropic.claude-sonnet-5"),
        (
            "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/a1b2c3d4e5f6",
            "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/a1b2c3d4e5f6",
        ),
    ],
)
def test_model_forms(bedrock_emulator: BedrockEmulator, model: str, echoed: str) -> None:
    """Base ids, aliases, inference profiles and ARNs are served; the answer echoes the id without profile or ARN."""
    response = post(bedrock_emulator, {**BODY, "model": model})
    assert response.status_code == 200
    assert response.json()["model"] == echoed
    assert bedrock_emulator.requests[-1].model_id == model


def test_optional_fields_and_headers_are_accepted(bedrock_emulator: BedrockEmulator) -> None:
    """Every optional Messages field, a body anthropic_version, the SDK's version and anthropic-beta are accepted."""
    body = {
        **BODY,
        "model": "anthropic.claude-haiku-4-5",
        "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["zzz"],
        "temperature": 0.5,
        "top_k": 5,
        "thinking": {"type": "disabled"},
        "tools": [{"name": "get_time", "description": "Time.", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "metadata": {"user_id": "user-1"},
        "anthropic_version": "whatever the body says",
        "stream": False,
    }
    headers = {"anthropic-version": "2026-10-21", "anthropic-beta": "some-beta-2099-01-01"}
    response = post(bedrock_emulator, body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["input_tokens"] == count_tokens("Be brief.\n" + TEXT)
    assert bedrock_emulator.requests[-1].header("anthropic-beta") == "some-beta-2099-01-01"


# -- authentication --------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["bedrock", "bedrock-mantle"])
def test_both_signing_names_are_accepted_by_default(bedrock_emulator: BedrockEmulator, service: str) -> None:
    """SigV4 scoped to bedrock (bedrock-runtime) or bedrock-mantle (the anthropic SDK) is accepted, streams too."""
    assert post(bedrock_emulator, service=service).status_code == 200
    assert post(bedrock_emulator, stream_body(), service=service).status_code == 200


def test_signing_names_are_configurable(bedrock_emulator: BedrockEmulator) -> None:
    """messages_signing_names narrows the accepted names; other services are refused AWS-style with 403."""
    emu = bedrock_emulator
    refused = post(emu, service="bedrock-runtime")
    assert_aws_error(refused, 403, "InvalidSignatureException")
    assert "'bedrock' or 'bedrock-mantle'" in refused.json()["message"]
    emu.options = attrs.evolve(emu.options, messages_signing_names=frozenset({"bedrock-mantle"}))
    assert post(emu, service="bedrock-mantle").status_code == 200
    assert_aws_error(post(emu, service="bedrock"), 403, "InvalidSignatureException")


def test_invoke_model_still_wants_bedrock(bedrock_emulator: BedrockEmulator) -> None:
    """InvokeModel refuses a bedrock-mantle signature: the option only widens the Messages endpoint."""
    emu = bedrock_emulator
    path = "/model/anthropic.claude-opus-4-7/invoke"
    data = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": BODY["messages"]})
    mantle = sign_with_botocore(emu, path, data.encode(), service="bedrock-mantle")
    response = httpx.post(f"{emu.endpoint_url}{path}", content=data, headers=mantle, timeout=10)
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")
    bedrock = sign_with_botocore(emu, path, data.encode())
    assert httpx.post(f"{emu.endpoint_url}{path}", content=data, headers=bedrock, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"secret_key": "not-the-secret"}, "InvalidSignatureException"),
        ({"access_key": "AKIDUNKNOWN"}, "UnrecognizedClientException"),
        ({"region": "eu-west-1"}, "InvalidSignatureException"),
    ],
)
def test_bad_signatures_are_refused_aws_style(
    bedrock_emulator: BedrockEmulator, overrides: dict[str, Any], code: str
) -> None:
    """Wrong secret, unknown key or wrong region: 403 with the AWS-style body, recorded with the body's model."""
    assert_aws_error(post(bedrock_emulator, **overrides), 403, code)
    recorded = bedrock_emulator.requests[-1]
    assert (recorded.operation, recorded.model_id, recorded.status) == ("messages", OPUS_47, 403)


def test_unsigned_request_is_refused(bedrock_emulator: BedrockEmulator) -> None:
    """No Authorization (and no API key): 403 MissingAuthenticationTokenException."""
    assert_aws_error(post(bedrock_emulator, signed=False), 403, "MissingAuthenticationTokenException")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": "Bearer bedrock-api-key-123"}, 200),
        ({"x-api-key": "bedrock-api-key-123"}, 200),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"x-api-key": "wrong"}, 403),
    ],
)
def test_api_keys(bedrock_emulator: BedrockEmulator, headers: dict[str, str], status: int) -> None:
    """With an api_key configured, Bearer and x-api-key both authenticate; a wrong key is 403 UnrecognizedClient."""
    emu = bedrock_emulator
    emu.options = attrs.evolve(emu.options, api_key="bedrock-api-key-123")
    response = post(emu, stream_body(), headers=headers, signed=False)
    assert response.status_code == status
    if status == 403:
        assert_aws_error(response, 403, "UnrecognizedClientException")
    else:
        assert [event.event for event in sse(response.content)][-1] == "message_stop"


def test_api_keys_need_configuring(bedrock_emulator: BedrockEmulator) -> None:
    """Without an api_key option every key is refused; InvokeModel never takes x-api-key."""
    emu = bedrock_emulator
    assert_aws_error(post(emu, headers={"x-api-key": "k"}, signed=False), 403, "UnrecognizedClientException")
    emu.options = attrs.evolve(emu.options, api_key="k")
    response = httpx.post(
        f"{emu.endpoint_url}/model/anthropic.claude-opus-4-7/invoke",
        content=b"{}",
        headers={"x-api-key": "k"},
        timeout=10,
    )
    assert response.status_code == 403
    assert response.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException:")


# -- request errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "anthropic-version: header is required"),
        ({"anthropic-version": "latest"}, "anthropic-version: 'latest' is not a valid version"),
        ({"anthropic-version": "bedrock-2023-05-31"}, "is not a valid version"),
    ],
)
def test_anthropic_version_header(bedrock_emulator: BedrockEmulator, headers: dict[str, str], fragment: str) -> None:
    """The anthropic-version header is required and must be a YYYY-MM-DD date: else 400 invalid_request_error."""
    emu = bedrock_emulator
    data = json.dumps(BODY).encode()
    sent = sign_with_botocore(emu, PATH, data, headers=headers)
    response = httpx.post(f"{emu.endpoint_url}{PATH}", content=data, headers=sent, timeout=10)
    error = assert_anthropic_error(response, 400, "invalid_request_error", "ValidationException")
    assert fragment in error["message"]


@pytest.mark.parametrize(
    ("model", "status", "error_type", "code", "fragment"),
    [
        (
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            400,
            "invalid_request_error",
            "ValidationException",
            "InvokeModel",
        ),
        ("anthropic.claude-opus-4-6-v1", 400, "invalid_request_error", "ValidationException", "InvokeModel"),
        ("us.anthropic.claude-sonnet-4-6", 400, "invalid_request_error", "ValidationException", "InvokeModel"),
        ("anthropic.claude-v2", 400, "invalid_request_error", "ValidationException", "InvokeModel"),
        ("anthropic.claude-9-nonexistent", 404, "not_found_error", "ResourceNotFoundException", "Could not resolve"),
        (
            "arn:aws:bedrock:us-east-1:111122223333:custom-model/x",
            404,
            "not_found_error",
            "ResourceNotFoundException",
            "resolve",
        ),
        ("has space", 400, "invalid_request_error", "ValidationException", "at 'model'"),
        ("arn:aws:s3:::bucket", 400, "invalid_request_error", "ValidationException", "at 'model'"),
        (5, 400, "invalid_request_error", "ValidationException", "model: Input should be a valid string"),
        (..., 400, "invalid_request_error", "ValidationException", "model: Field required"),
    ],
)
def test_model_errors(
    bedrock_emulator: BedrockEmulator, model: object, status: int, error_type: str, code: str, fragment: str
) -> None:
    """InvokeModel-only models and bad ids are 400, unknown models 404, all Anthropic-style."""
    body = {key: value for key, value in {**BODY, "model": model}.items() if value is not ...}
    error = assert_anthropic_error(post(bedrock_emulator, body), status, error_type, code)
    assert fragment in error["message"]


def without(key: str) -> dict[str, Any]:
    """The default body without ``key``."""
    return {name: value for name, value in BODY.items() if name != key}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (without("max_tokens"), "#: required key [max_tokens] not found"),
        (without("messages"), "#: required key [messages] not found"),
        ({**BODY, "max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({**BODY, "max_tokens": 128_001}, "max_tokens: 128001 > 128000"),
        ({**BODY, "max_tokens": "50"}, "#/max_tokens: expected type: Integer, found: String"),
        ({**BODY, "messages": []}, "messages: at least one message is required"),
        ({**BODY, "messages": [{"role": "assistant", "content": "Hi"}]}, 'first message must use the "user" role'),
        ({**BODY, "messages": [*BODY["messages"], *BODY["messages"]]}, "roles must alternate"),
        ({**BODY, "messages": [{"role": "user", "content": ""}]}, "all messages must have non-empty content"),
        ({**BODY, "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        ({**BODY, "temperature": 1.5}, "#/temperature: 1.5 is not less or equal to 1.0"),
        ({**BODY, "stop_sequences": [1]}, "#/stop_sequences/0: expected type: String, found: Integer"),
        ({**BODY, "system": [{"type": "image"}]}, "system: Input should be a valid string or a list of text blocks"),
        ({**BODY, "stream": "yes"}, "#/stream: expected type: Boolean, found: String"),
        ({**BODY, "anthropic_beta": ["x"]}, "#: extraneous key [anthropic_beta] is not permitted"),
        ({**BODY, "prompt": "\n\nHuman: Hi"}, "#: extraneous key [prompt] is not permitted"),
        (b"{not json", "Malformed input request"),
        (b"[1, 2]", "expected a JSON object"),
        (b"\xff\xfe", "Malformed input request"),
    ],
)
def test_body_validation(bedrock_emulator: BedrockEmulator, body: dict[str, Any] | bytes, fragment: str) -> None:
    """Each InvokeModel Messages rule applies here too, answered as a 400 invalid_request_error."""
    error = assert_anthropic_error(post(bedrock_emulator, body), 400, "invalid_request_error", "ValidationException")
    assert fragment in error["message"]
    assert bedrock_emulator.requests[-1].status == 400


def test_wrong_content_type_is_anthropic_style(bedrock_emulator: BedrockEmulator) -> None:
    """A non-JSON content type is a validation error, so it is answered Anthropic-style."""
    response = post(bedrock_emulator, headers={"Content-Type": "text/plain"})
    error = assert_anthropic_error(response, 400, "invalid_request_error", "ValidationException")
    assert "text/plain" in error["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", PATH), ("PUT", PATH), ("POST", f"{PATH}/count_tokens"), ("POST", "/anthropic/v1/models")],
)
def test_other_routes_are_unknown_operations(bedrock_emulator: BedrockEmulator, method: str, path: str) -> None:
    """Other methods and paths under /anthropic are 404 UnknownOperationException, AWS-style, before auth."""
    response = httpx.request(method, f"{bedrock_emulator.endpoint_url}{path}", content=b"{}", timeout=10)
    assert response.status_code == 404
    assert response.headers["x-amzn-ErrorType"].startswith("UnknownOperationException:")
    assert set(response.json()) == {"message"}


# -- faults ----------------------------------------------------------------------------------------


HTTP_FAULTS = [
    ("throttle", 429, "rate_limit_error", "ThrottlingException"),
    ("model_not_ready", 429, "rate_limit_error", "ModelNotReadyException"),
    ("internal_error", 500, "api_error", "InternalServerException"),
    ("service_unavailable", 529, "overloaded_error", "ServiceUnavailableException"),
    ("model_timeout", 408, "timeout_error", "ModelTimeoutException"),
    ("model_error", 424, "api_error", "ModelErrorException"),
    ("validation", 400, "invalid_request_error", "ValidationException"),
    ("service_quota_exceeded", 400, "invalid_request_error", "ServiceQuotaExceededException"),
    ("access_denied", 403, "permission_error", "AccessDeniedException"),
]


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "code", "streaming"),
    [
        *[(*case, False) for case in HTTP_FAULTS],
        *[(*case, True) for case in HTTP_FAULTS],
        # On a JSON answer a mid-stream exception becomes its HTTP error, as on InvokeModel.
        ("stream_exception:throttlingException", 429, "rate_limit_error", "ThrottlingException", False),
        ("stream_exception", 424, "api_error", "ModelErrorException", False),
    ],
)
def test_http_error_faults(
    bedrock_emulator: BedrockEmulator, fault: str, status: int, error_type: str, code: str, streaming: bool
) -> None:
    """Scripted HTTP faults answer Anthropic-style, with the AWS code in x-amzn-ErrorType, streamed or not."""
    emu = bedrock_emulator
    emu.enqueue_faults(fault)
    assert_anthropic_error(post(emu, stream_body() if streaming else BODY), status, error_type, code)
    recorded = emu.requests[-1]
    assert (recorded.operation, recorded.status, recorded.fault) == ("messages", status, fault)
    assert post(emu).status_code == 200, "the fault was consumed"


def test_expired_token_fault_is_aws_style(bedrock_emulator: BedrockEmulator) -> None:
    """expired_token comes from the AWS front end, so it keeps the AWS shape."""
    bedrock_emulator.enqueue_faults("expired_token")
    assert_aws_error(post(bedrock_emulator), 403, "ExpiredTokenException")


@pytest.mark.parametrize(
    ("exception_type", "error_type"),
    [
        ("throttlingException", "rate_limit_error"),
        ("modelStreamErrorException", "api_error"),
        ("internalServerException", "api_error"),
        ("serviceUnavailableException", "overloaded_error"),
        ("validationException", "invalid_request_error"),
        ("modelTimeoutException", "timeout_error"),
    ],
)
def test_stream_exception_event(bedrock_emulator: BedrockEmulator, exception_type: str, error_type: str) -> None:
    """stream_exception:TYPE replaces event max(1, n // 2) with an SSE error event; the body still ends cleanly."""
    emu = bedrock_emulator
    emu.options = TEN_CHUNKS
    emu.enqueue_faults(f"stream_exception:{exception_type}")
    response = post(emu, stream_body())
    assert response.status_code == 200
    events = sse(response.content)  # close() passes: nothing was cut off
    assert len(events) == 16 // 2 + 1
    assert [event.event for event in events[:3]] == STRUCTURE
    assert events[-1].event == "error"
    error = json.loads(events[-1].data)
    assert set(error) == {"type", "error"}
    assert error["type"] == "error"
    assert error["error"]["type"] == error_type
    assert isinstance(error["error"]["message"], str)
    assert emu.requests[-1].fault == f"stream_exception:{exception_type}"


def test_drop_mid_stream(bedrock_emulator: BedrockEmulator) -> None:
    """drop_mid_stream sends half the events as whole chunks, then closes without the chunked terminator."""
    emu = bedrock_emulator
    emu.options = TEN_CHUNKS
    emu.enqueue_faults("drop_mid_stream")
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw_request(emu, stream_body()))
        data = read_until_closed(sock)
    chunks, complete = chunks_of(data.partition(b"\r\n\r\n")[2])
    assert not complete
    assert len(chunks) == 8
    assert [event.event for event in sse(b"".join(chunks))][:3] == STRUCTURE


def test_drop_on_json_cuts_the_sized_body(bedrock_emulator: BedrockEmulator) -> None:
    """On a JSON answer drop_mid_stream sends half the announced Content-Length and closes."""
    emu = bedrock_emulator
    emu.enqueue_faults("drop_mid_stream")
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw_request(emu, BODY))
        data = read_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
    assert 0 < len(body) < length


def test_bad_crc_garbles_one_event(bedrock_emulator: BedrockEmulator) -> None:
    """bad_crc (SSE has no CRC) cuts the data of event max(1, n // 2) in half; every other event is intact."""
    emu = bedrock_emulator
    emu.options = TEN_CHUNKS
    emu.enqueue_faults("bad_crc", "bad_crc")
    events = sse(post(emu, stream_body()).content)
    assert len(events) == 16
    bad = events[8]
    with pytest.raises(json.JSONDecodeError):
        json.loads(bad.data)
    assert bad.event == "content_block_delta"
    assert all(json.loads(event.data)["type"] == event.event for i, event in enumerate(events) if i != 8)
    assert post(emu).status_code == 200, "on a JSON answer bad_crc changes nothing"
    assert emu.requests[-1].fault == "bad_crc"


@pytest.mark.parametrize(
    ("faults", "streaming", "expected"),
    [
        (Faults(throttle_rate=1.0), False, 429),
        (Faults(service_unavailable_rate=1.0), True, 529),
        (Faults(stream_exception_rate=1.0, stream_exception_type="throttlingException"), True, "error"),
        (Faults(stream_exception_rate=1.0), False, 200),  # mid-stream rates only apply to streams
        (Faults(bad_crc_rate=1.0), True, "garbled"),
    ],
)
def test_fault_rates_follow_the_stream_flag(
    bedrock_emulator: BedrockEmulator, faults: Faults, streaming: bool, expected: object
) -> None:
    """Rates apply here too, and the body's stream flag decides whether mid-stream rates are drawn."""
    emu = bedrock_emulator
    emu.options = attrs.evolve(emu.options, faults=faults)
    response = post(emu, stream_body() if streaming else BODY)
    if isinstance(expected, int):
        assert response.status_code == expected
        return
    events = sse(response.content)
    if expected == "error":
        assert events[-1].event == "error"
    else:
        assert sum(1 for event in events if not is_json(event.data)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "streaming"), [("stall", True), ("stall_mid_stream", True), ("stall", False)])
async def test_stalls(fault: str, streaming: bool) -> None:
    """A stall sends headers (and, mid-stream, half the events), then nothing until the emulator stops."""
    with anyio.fail_after(10):
        emu = BedrockEmulator(EmulatorOptions(chunk_tokens=1, reply_tokens=10))
        await emu.__aenter__()
        try:
            emu.enqueue_faults(fault)
            stream = await anyio.connect_tcp("127.0.0.1", emu.port)
        except BaseException:
            await emu.__aexit__(None, None, None)
            raise
        async with stream:
            received = b""
            try:
                await stream.send(raw_request(emu, stream_body() if streaming else BODY))
                while b"\r\n\r\n" not in received:
                    received += await stream.receive()
                if fault == "stall_mid_stream":
                    while received.count(b"\n\n") < 8:
                        received += await stream.receive()
                assert received.startswith(b"HTTP/1.1 200 ")
                assert emu.requests[-1].fault == fault
            finally:
                await emu.__aexit__(None, None, None)
            while True:
                try:
                    received += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    chunks, complete = chunks_of(received.partition(b"\r\n\r\n")[2])
    assert not complete
    assert len(chunks) == (8 if fault == "stall_mid_stream" else 0)


def test_delays_apply_to_streams(bedrock_emulator: BedrockEmulator) -> None:
    """latency, time_to_first_byte and chunk_delay slow an SSE answer as they do an event stream."""
    emu = bedrock_emulator
    faults = Faults(latency=0.05, time_to_first_byte=0.05, chunk_delay=0.005)
    emu.options = attrs.evolve(TEN_CHUNKS, faults=faults)
    started = time.monotonic()
    events = sse(post(emu, stream_body()).content)
    assert time.monotonic() - started >= 0.05 + 0.05 + 15 * 0.005
    assert len(events) == 16


# -- recording and connections ---------------------------------------------------------------------


def test_requests_are_recorded(bedrock_emulator: BedrockEmulator) -> None:
    """emu.requests records operation "messages", the body's model, the path, the body and the status."""
    emu = bedrock_emulator
    post(emu, {**BODY, "model": "us.anthropic.claude-opus-4-7"})
    post(emu, stream_body())
    post(emu, b"{not json")
    first, second, third = emu.requests
    assert (first.method, first.path, first.operation, first.model_id, first.status) == (
        "POST",
        PATH,
        "messages",
        "us.anthropic.claude-opus-4-7",
        200,
    )
    assert first.header("anthropic-version") == "2023-06-01"
    assert json.loads(first.body)["model"] == "us.anthropic.claude-opus-4-7"
    assert (second.model_id, second.status) == (OPUS_47, 200)
    assert (third.operation, third.model_id, third.status) == ("messages", None, 400)


def test_keep_alive_across_surfaces(bedrock_emulator: BedrockEmulator) -> None:
    """One connection serves JSON, SSE, errors and InvokeModel in turn without being closed."""
    emu = bedrock_emulator
    emu.enqueue_faults("none", "none", "throttle")
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        statuses = []
        for body in (BODY, stream_body(), BODY, b"{bad", BODY):
            data = body_bytes(body)
            conn.request("POST", PATH, body=data, headers=signed_headers(emu, data))
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            if len(statuses) == 1:
                sock = conn.sock
            assert conn.sock is sock, "http.client reopens only if the server closed the connection"
        invoke = "/model/anthropic.claude-opus-4-7/invoke"
        legacy = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": BODY["messages"]})
        conn.request("POST", invoke, body=legacy, headers=sign_with_botocore(emu, invoke, legacy.encode()))
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert conn.sock is sock
    finally:
        conn.close()
    assert statuses == [200, 200, 429, 400, 200]


def test_trio_backend_streams() -> None:
    """An emulator on trio serves the SSE stream as well (here through the thread runner)."""
    with run_emulator_in_thread(TEN_CHUNKS, backend="trio") as emu:
        events = sse(post(emu, stream_body()).content)
    assert len(events) == 16


@pytest.mark.parametrize("names", [frozenset(), frozenset({""}), {"bedrock"}])
def test_signing_names_option_is_checked(names: Any) -> None:
    """messages_signing_names must be a non-empty frozenset of non-empty names."""
    with pytest.raises(ValueError, match="messages_signing_names"):
        EmulatorOptions(messages_signing_names=names)
