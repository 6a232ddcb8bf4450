"""The async client end to end against ``httpx.MockTransport`` (and respx): requests, results, retries, errors."""

from __future__ import annotations

import datetime
import json
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import botocore.auth
import httpx
import pytest
import respx
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bedrock_chat import (
    AccessDeniedError,
    AnthropicBedrock,
    APIConnectionError,
    APIError,
    AuthenticationError,
    AwsCredentials,
    BedrockError,
    ChatCompletion,
    ConfigurationError,
    ExpiredTokenError,
    InternalServerError,
    InvalidRequestError,
    ModelError,
    ModelNotReadyError,
    ModelTimeoutError,
    RequestTimeoutError,
    ResourceNotFoundError,
    RetryPolicy,
    ServiceQuotaExceededError,
    ServiceUnavailableError,
    ThrottlingError,
    ValidationError,
)
from bedrock_chat._http import credentials as _credentials
from bedrock_chat._http.transport import BedrockTransport

ACCESS_KEY = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN+/="
KEYS: dict[str, Any] = {"access_key": ACCESS_KEY, "secret_key": SECRET}
FAST = RetryPolicy(base=0, throttle_base=0)

TEXT_MODEL = "anthropic.claude-v2:1"
MESSAGES_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
HI = [{"role": "user", "content": "Hi"}]

AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]+)/(?P<date>\d{8})/(?P<region>[a-z0-9-]+)/bedrock/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9-]+(?:;[a-z0-9-]+)*), Signature=(?P<signature>[0-9a-f]{64})"
)

# --------------------------------------------------------------------------------------------- helpers


class TrackedStream(httpx.AsyncByteStream):
    """A response body that records whether it was closed, and can stall forever after its chunks."""

    def __init__(self, chunks: list[bytes], *, stalled: anyio.Event | None = None) -> None:
        self.chunks = chunks
        self.stalled = stalled
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.stalled is not None:
            self.stalled.set()
            await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


Reply = tuple[int, dict[str, str], bytes] | Exception


def ok(text: str = "Hello!", **headers: str) -> Reply:
    """A Messages API success."""
    body = {
        "id": "msg_bdrk_01",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3},
    }
    return 200, {"content-type": "application/json", "x-amzn-RequestId": "req-ok", **headers}, json.dumps(body).encode()


def fail(status: int, code: str | None, message: str = "boom", **headers: str) -> Reply:
    """A Bedrock error response (``x-amzn-ErrorType`` when ``code`` is given)."""
    all_headers = {"content-type": "application/json", "x-amzn-RequestId": "req-err", **headers}
    if code is not None:
        all_headers["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    return status, all_headers, json.dumps({"message": message}).encode()


class Service:
    """A scripted Bedrock behind ``httpx.MockTransport``: replies in order (the last repeats), records everything."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies) or [ok()]
        self.requests: list[httpx.Request] = []
        self.streams: list[TrackedStream] = []
        self.stall_body: anyio.Event | None = None
        self.transport = httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        status, headers, body = reply
        stream = TrackedStream([body[:5], body[5:]], stalled=self.stall_body)
        self.streams.append(stream)
        return httpx.Response(status, headers=headers, stream=stream)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


def client_for(service: Service, **kwargs: Any) -> AnthropicBedrock:
    """A client with explicit keys, us-east-1 and zero backoff unless overridden."""
    options: dict[str, Any] = {**KEYS, "region": "us-east-1", "retry_policy": FAST, "transport": service.transport}
    options.update(kwargs)
    return AnthropicBedrock(**options)


def assert_signed(request: httpx.Request, credentials: AwsCredentials, region: str = "us-east-1") -> re.Match[str]:
    """The Authorization header is well formed and botocore's SigV4Auth computes the same signature."""
    authorization = request.headers["authorization"]
    match = AUTHORIZATION.fullmatch(authorization)
    assert match is not None, authorization
    assert (match["key"], match["region"]) == (credentials.access_key, region)
    amz_date = request.headers["x-amz-date"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", amz_date)
    assert match["date"] == amz_date[:8]
    signed = match["signed"].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    assert ("x-amz-security-token" in signed) is (credentials.session_token is not None)
    reference = AWSRequest(
        method=request.method,
        url=str(request.url),
        data=request.content,
        headers={name: request.headers[name] for name in signed},
    )
    now = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=now):
        botocore.auth.SigV4Auth(
            Credentials(credentials.access_key, credentials.secret_key, credentials.session_token), "bedrock", region
        ).add_auth(reference)
    assert reference.headers["Authorization"] == authorization
    return match


async def create(client: AnthropicBedrock, **kwargs: Any) -> ChatCompletion:
    """``client.ChatCompletion.create(**kwargs)``, bounded in time."""
    with anyio.fail_after(10):
        chat = await client.ChatCompletion.create(**kwargs)
    assert isinstance(chat, ChatCompletion)
    return chat


async def transport_of(client: AnthropicBedrock) -> BedrockTransport:
    """The client's BedrockTransport (created on first use), to inject a clock, sleep or jitter."""
    return await client._ready()


# ---------------------------------------------------------------------------------------- the request


@pytest.mark.asyncio
async def test_messages_create_end_to_end() -> None:
    """A Messages model call: one signed POST to the right URL, the right body, and the parsed result."""
    service = Service(ok("Hello!", **{"x-amzn-bedrock-invocation-latency": "120"}))
    async with client_for(service) as client:
        chat = await create(client, model=MESSAGES_MODEL, messages=HI, system="Be brief.", top_k=5)
    (request,) = service.requests
    assert request.method == "POST"
    assert str(request.url) == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    )
    assert request.url.raw_path == b"/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    assert request.headers["host"] == "bedrock-runtime.us-east-1.amazonaws.com"
    assert request.headers["content-type"] == request.headers["accept"] == "application/json"
    assert json.loads(request.content) == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": HI,
        "top_k": 5,
    }
    assert_signed(request, AwsCredentials(ACCESS_KEY, SECRET))
    assert isinstance(chat, ChatCompletion)
    assert (chat.completion, chat.stop_reason, chat.model, chat.request_id) == (
        "Hello!",
        "end_turn",
        MESSAGES_MODEL,
        "req-ok",
    )
    assert (chat.usage.input_tokens, chat.usage.output_tokens, chat.usage.invocation_latency_ms) == (10, 3, 120)
    assert chat["messages"] == [*HI, {"role": "assistant", "content": "Hello!"}]
    assert chat.latency >= 0
    assert all(stream.closed for stream in service.streams)


@pytest.mark.asyncio
async def test_text_completion_create_end_to_end() -> None:
    """A text-completion model call: Human/Assistant prompt, system first, prefill continued, usage from headers."""
    body = json.dumps({"completion": " 42.", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}).encode()
    headers = {
        "x-amzn-RequestId": "r",
        "X-Amzn-Bedrock-Input-Token-Count": "9",
        "X-Amzn-Bedrock-Output-Token-Count": "2",
    }
    service = Service((200, headers, body))
    messages = [{"role": "system", "content": "Be exact."}, *HI, {"role": "assistant", "content": "The answer is"}]
    async with client_for(service) as client:
        chat = await create(client, model=TEXT_MODEL, messages=messages, stop_sequences=["END"])
    assert service.requests[0].url.raw_path == b"/model/anthropic.claude-v2%3A1/invoke"
    assert service.bodies() == [
        {
            "prompt": "Be exact.\n\nHuman: Hi\n\nAssistant: The answer is",
            "max_tokens_to_sample": 256,
            "stop_sequences": ["END"],
        }
    ]
    assert (chat.completion, chat.stop_reason, chat.stop) == (" 42.", "end_turn", None)
    assert chat["messages"][-1] == {"role": "assistant", "content": "The answer is 42."}
    assert (chat.usage.input_tokens, chat.usage.output_tokens, chat.request_id) == (9, 2, "r")


@pytest.mark.asyncio
async def test_max_tokens_alias() -> None:
    """``max_tokens`` is accepted as an alias of ``max_tokens_to_sample``."""
    service = Service()
    async with client_for(service) as client:
        await create(client, model=MESSAGES_MODEL, messages=HI, max_tokens=77)
    assert service.bodies()[0]["max_tokens"] == 77


@pytest.mark.asyncio
async def test_unknown_model_is_sent_as_messages_without_a_limit() -> None:
    """A model id the registry does not know is called with the Messages body and an unchecked max_tokens."""
    service = Service()
    async with client_for(service) as client:
        await create(client, model="anthropic.claude-opus-9-v1:0", messages=HI, max_tokens_to_sample=500_000)
    assert service.bodies()[0]["max_tokens"] == 500_000
    assert service.bodies()[0]["anthropic_version"] == "bedrock-2023-05-31"
    assert service.requests[0].url.raw_path == b"/model/anthropic.claude-opus-9-v1%3A0/invoke"


@pytest.mark.asyncio
async def test_explicit_keys_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit keys are used even when the environment holds other credentials."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    service = Service()
    async with client_for(service) as client:
        await create(client, model=MESSAGES_MODEL, messages=HI)
    assert_signed(service.requests[0], AwsCredentials(ACCESS_KEY, SECRET))


@pytest.mark.asyncio
async def test_arn_model_path_and_region() -> None:
    """An inference-profile ARN in the client's region is sent with ``:`` as %3A and ``/`` as %2F."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0"
    service = Service()
    async with client_for(service) as client:
        await create(client, model=arn, messages=HI)
    assert service.requests[0].url.raw_path == (
        b"/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
        b"us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke"
    )
    assert_signed(service.requests[0], AwsCredentials(ACCESS_KEY, SECRET))


@pytest.mark.asyncio
async def test_arn_region_is_not_silently_overridden() -> None:
    """An ARN naming another region than the client's is refused before any I/O."""
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-5-sonnet-20241022-v2:0"
    service = Service()
    async with client_for(service) as client:
        with pytest.raises(InvalidRequestError, match="eu-west-1") as info:
            await create(client, model=arn, messages=HI)
    assert info.value.field == "model"
    assert service.requests == []


@pytest.mark.asyncio
async def test_session_token_is_sent_and_signed() -> None:
    """With a session token, X-Amz-Security-Token is sent and covered by the signature."""
    service = Service()
    async with client_for(service, session_token=TOKEN) as client:
        await create(client, model=MESSAGES_MODEL, messages=HI)
    request = service.requests[0]
    assert request.headers["x-amz-security-token"] == TOKEN
    assert_signed(request, AwsCredentials(ACCESS_KEY, SECRET, TOKEN))


@pytest.mark.asyncio
async def test_timeout_travels_with_the_request() -> None:
    """The configured timeout reaches the transport in the request's extensions."""
    service = Service()
    async with client_for(service, timeout=httpx.Timeout(30.0, connect=2.0)) as client:
        await create(client, model=MESSAGES_MODEL, messages=HI)
    assert service.requests[0].extensions["timeout"] == {"connect": 2.0, "read": 30.0, "write": 30.0, "pool": 30.0}


@pytest.mark.asyncio
async def test_respx_with_the_httpx_backend() -> None:
    """With http_backend="httpx" the client uses httpx's own transport, so respx sees the encoded path on the wire."""
    with respx.mock(assert_all_called=True) as router:
        route = router.post(host="bedrock-runtime.eu-central-1.amazonaws.com")
        route.return_value = httpx.Response(200, json={"content": [{"type": "text", "text": "hey"}]})
        async with AnthropicBedrock(**KEYS, region="eu-central-1", http_backend="httpx") as client:
            chat = await create(client, model=MESSAGES_MODEL, messages=HI)
    assert chat.completion == "hey"
    request = route.calls.last.request
    assert request.url.raw_path == b"/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    assert_signed(request, AwsCredentials(ACCESS_KEY, SECRET), "eu-central-1")


def test_works_on_trio() -> None:
    """The client is anyio-based: the same call works on trio."""
    service = Service()

    async def main() -> str:
        async with client_for(service) as client:
            chat = await create(client, model=MESSAGES_MODEL, messages=HI)
        return chat.completion

    assert anyio.run(main, backend="trio") == "Hello!"


# ---------------------------------------------------------------------------------- before any I/O

BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"messages": []}, "messages"),
    ({"messages": "Hi"}, "messages"),
    ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages[0]"),
    (
        {"model": TEXT_MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        "messages (turn 1)",
    ),
    ({"max_tokens_to_sample": 0}, "max_tokens_to_sample"),
    ({"max_tokens_to_sample": 4097}, "max_tokens_to_sample"),
    ({"max_tokens_to_sample": "10"}, "max_tokens_to_sample"),
    ({"max_tokens_to_sample": 10, "max_tokens": 10}, "max_tokens"),
    ({"temperature": 1.5}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"top_k": 501}, "top_k"),
    ({"top_k": 1.5}, "top_k"),
    ({"stop_sequences": "END"}, "stop_sequences"),
    ({"stop_sequences": [""]}, "stop_sequences[0]"),
    ({"system": ""}, "system"),
    ({"model": ""}, "model"),
    ({"model": "anthropic.claude v2"}, "model"),
    ({"model": None}, "model"),
    ({"stream": "yes"}, "stream"),
]


@pytest.mark.parametrize(("overrides", "field"), BAD_CALLS)
@pytest.mark.asyncio
async def test_bad_arguments_fail_before_any_io(overrides: dict[str, Any], field: str) -> None:
    """Every bad argument raises InvalidRequestError (a ValueError) naming its field; nothing is sent."""
    service = Service()
    arguments: dict[str, Any] = {"model": TEXT_MODEL, "messages": HI, **overrides}
    async with client_for(service) as client:
        with pytest.raises(InvalidRequestError) as info:
            await create(client, **arguments)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert service.requests == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"access_key": ACCESS_KEY}, "together"),
        ({"secret_key": SECRET}, "together"),
        ({"session_token": TOKEN}, "session_token"),
        ({**KEYS, "profile": "dev"}, "profile"),
        ({"access_key": " ", "secret_key": SECRET}, "access_key"),
        ({**KEYS, "region": "us-east-1.evil.com/x"}, "not an AWS region"),
        ({**KEYS, "endpoint_url": "http://example.com"}, "plain http"),
        ({**KEYS, "endpoint_url": "https://example.com/?x=1"}, "query"),
        ({**KEYS, "max_connections": 0}, "max_connections"),
        ({**KEYS, "max_retries": -1}, "max_retries"),
        ({**KEYS, "signer": "mine"}, "signer"),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], match: str) -> None:
    """Inconsistent keys, bad regions and endpoints are ConfigurationErrors raised by the constructor."""
    with pytest.raises(ConfigurationError, match=match) as info:
        AnthropicBedrock(**kwargs)
    assert SECRET not in str(info.value)
    assert TOKEN not in str(info.value)


# ------------------------------------------------------------------------------------------- regions


@pytest.mark.parametrize(
    ("argument", "environ", "expected"),
    [
        ("us-west-2", {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}, "us-west-2"),
        (None, {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}, "eu-west-1"),
        (None, {"AWS_DEFAULT_REGION": "eu-west-2"}, "eu-west-2"),
        (None, {}, "ap-northeast-1"),
    ],
)
@pytest.mark.asyncio
async def test_region_precedence(
    argument: str | None,
    environ: dict[str, str],
    expected: str,
    aws_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Region: the argument, then AWS_REGION, then AWS_DEFAULT_REGION, then the profile's region."""
    (aws_dir / "credentials").write_text(f"[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = {SECRET}\n")
    (aws_dir / "config").write_text("[profile dev]\nregion = ap-northeast-1\n")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    service = Service()
    with anyio.fail_after(30):
        async with AnthropicBedrock(region=argument, profile="dev", transport=service.transport) as client:
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert client.region == expected
    request = service.requests[0]
    assert request.url.host == f"bedrock-runtime.{expected}.amazonaws.com"
    assert_signed(request, AwsCredentials("AKIDDEV", SECRET), expected)


@pytest.mark.asyncio
async def test_no_region_anywhere_is_a_clear_error() -> None:
    """With no region from any source, the call fails with ConfigurationError and sends nothing (no us-east-1)."""
    service = Service()
    async with AnthropicBedrock(**KEYS, transport=service.transport) as client:
        assert client.region is None
        with anyio.fail_after(30), pytest.raises(ConfigurationError, match="no AWS region"):
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert service.requests == []


@pytest.mark.asyncio
async def test_profile_without_a_region_is_a_clear_error(aws_dir: Path) -> None:
    """A profile with keys but no region also fails clearly rather than defaulting."""
    (aws_dir / "credentials").write_text(f"[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = {SECRET}\n")
    service = Service()
    async with AnthropicBedrock(profile="dev", transport=service.transport) as client:
        with anyio.fail_after(30), pytest.raises(ConfigurationError, match="no AWS region"):
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert service.requests == []


@pytest.mark.asyncio
async def test_bad_region_from_a_profile_is_refused(aws_dir: Path) -> None:
    """A profile's region is validated like any other before it reaches the Host header."""
    (aws_dir / "credentials").write_text(f"[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = {SECRET}\n")
    (aws_dir / "config").write_text("[profile dev]\nregion = us-east-1.evil.com/x\n")
    service = Service()
    async with AnthropicBedrock(profile="dev", transport=service.transport) as client:
        with anyio.fail_after(30), pytest.raises(ConfigurationError, match="profile"):
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert service.requests == []


def test_bad_region_from_the_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malformed AWS_REGION is refused, naming the variable."""
    monkeypatch.setenv("AWS_REGION", "us-east-1.evil.com/x")
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        AnthropicBedrock(**KEYS)


@pytest.mark.asyncio
async def test_arn_region_checked_against_a_profile_region(aws_dir: Path) -> None:
    """An ARN's region is checked even when the client's region only becomes known from the profile."""
    (aws_dir / "credentials").write_text(f"[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = {SECRET}\n")
    (aws_dir / "config").write_text("[profile dev]\nregion = eu-west-1\n")
    arn = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
    service = Service()
    async with AnthropicBedrock(profile="dev", transport=service.transport) as client:
        with anyio.fail_after(30), pytest.raises(InvalidRequestError, match="us-east-1"):
            await create(client, model=arn, messages=HI)
    assert service.requests == []


# ------------------------------------------------------------------------------------------ endpoints


@pytest.mark.parametrize(
    ("endpoint_url", "host"),
    [
        ("http://127.0.0.1:8123", "127.0.0.1:8123"),
        ("http://localhost:8123/", "localhost:8123"),
        (
            "https://vpce-0a1b.bedrock-runtime.us-east-1.vpce.amazonaws.com",
            "vpce-0a1b.bedrock-runtime.us-east-1.vpce.amazonaws.com",
        ),
    ],
)
@pytest.mark.asyncio
async def test_endpoint_url_overrides_the_host(endpoint_url: str, host: str) -> None:
    """endpoint_url replaces the host (still signed for the client's region); plain http is fine on loopback."""
    service = Service()
    async with client_for(service, endpoint_url=endpoint_url) as client:
        await create(client, model=MESSAGES_MODEL, messages=HI)
    request = service.requests[0]
    assert request.headers["host"] == host
    assert request.url.raw_path == b"/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    assert_signed(request, AwsCredentials(ACCESS_KEY, SECRET))


@pytest.mark.asyncio
async def test_insecure_http_needs_opting_in() -> None:
    """Plain http to a non-loopback host works only with allow_insecure_http=True."""
    service = Service()
    async with client_for(service, endpoint_url="http://bedrock.internal:80", allow_insecure_http=True) as client:
        await create(client, model=MESSAGES_MODEL, messages=HI)
    assert str(service.requests[0].url).startswith("http://bedrock.internal/model/")


@pytest.mark.asyncio
async def test_endpoint_url_with_a_base_path_is_signed_over_the_full_path() -> None:
    """An endpoint with a base path (a proxy) gets a signature over the path actually sent."""
    service = Service()
    async with client_for(service, endpoint_url="https://proxy.example.com/bedrock") as client:
        await create(client, model=MESSAGES_MODEL, messages=HI)
    request = service.requests[0]
    assert request.url.raw_path.startswith(b"/bedrock/model/")
    assert_signed(request, AwsCredentials(ACCESS_KEY, SECRET))


# ------------------------------------------------------------------------------------------- retries

RETRIED: list[tuple[Reply, type[BedrockError]]] = [
    (fail(429, "ThrottlingException"), ThrottlingError),
    (fail(429, "ModelNotReadyException"), ModelNotReadyError),
    (fail(500, "InternalServerException"), InternalServerError),
    (fail(502, None), InternalServerError),
    (fail(503, "ServiceUnavailableException"), ServiceUnavailableError),
    (fail(504, None), InternalServerError),
    (fail(408, "ModelTimeoutException"), ModelTimeoutError),
    (httpx.ConnectError("connection refused"), APIConnectionError),
    (httpx.RemoteProtocolError("peer closed connection"), APIConnectionError),
    (httpx.ReadTimeout("timed out"), RequestTimeoutError),
]


@pytest.mark.parametrize(("reply", "error"), RETRIED, ids=lambda value: getattr(value, "__name__", ""))
@pytest.mark.asyncio
async def test_transient_failures_are_retried(reply: Reply, error: type[BedrockError]) -> None:
    """Throttling, not-ready, 5xx, model timeouts and connection errors are retried, and can then succeed."""
    service = Service(reply, reply, ok())
    async with client_for(service) as client:
        chat = await create(client, model=MESSAGES_MODEL, messages=HI)
    assert chat.completion == "Hello!"
    assert len(service.requests) == 3
    assert all(stream.closed for stream in service.streams)


@pytest.mark.parametrize(("reply", "error"), RETRIED, ids=lambda value: getattr(value, "__name__", ""))
@pytest.mark.parametrize("max_retries", [0, 1, 3])
@pytest.mark.asyncio
async def test_retries_stop_at_max_retries(reply: Reply, error: type[BedrockError], max_retries: int) -> None:
    """A failure that persists is raised, typed, after exactly max_retries + 1 attempts."""
    service = Service(reply)
    policy = RetryPolicy(max_retries=max_retries, base=0, throttle_base=0)
    async with client_for(service, retry_policy=policy) as client:
        with pytest.raises(error):
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert len(service.requests) == max_retries + 1
    assert all(stream.closed for stream in service.streams)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (fail(400, "ValidationException", "messages: bad"), ValidationError),
        (fail(400, "ServiceQuotaExceededException"), ServiceQuotaExceededError),
        (fail(403, "AccessDeniedException"), AccessDeniedError),
        (fail(403, "UnrecognizedClientException"), AuthenticationError),
        (fail(404, "ResourceNotFoundException"), ResourceNotFoundError),
        (fail(424, "ModelErrorException"), ModelError),
        (fail(418, "SomethingNewException"), APIError),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
@pytest.mark.asyncio
async def test_other_errors_fail_at_once(reply: Reply, error: type[APIError]) -> None:
    """Errors that retrying cannot fix are raised after one attempt, typed, with status, code and request id."""
    service = Service(reply)
    async with client_for(service) as client:
        with pytest.raises(APIError) as info:
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert type(info.value) is error
    assert len(service.requests) == 1
    assert (info.value.status, info.value.request_id) == (reply[0], "req-err")  # type: ignore[index]
    assert info.value.code == reply[1]["x-amzn-ErrorType"].split(":")[0]  # type: ignore[index]
    assert service.streams[0].closed


@pytest.mark.asyncio
async def test_default_is_three_attempts_with_exponential_backoff() -> None:
    """By default a throttle is tried 3 times, sleeping jitter * 1 s then jitter * 2 s; 5xx uses 0.1 s steps."""
    for reply, expected in ((fail(429, "ThrottlingException"), [1.0, 2.0]), (fail(500, None), [0.1, 0.2])):
        service = Service(reply)
        delays: list[float] = []

        async def record(delay: float, delays: list[float] = delays) -> None:
            delays.append(delay)

        async with AnthropicBedrock(**KEYS, region="us-east-1", transport=service.transport) as client:
            transport = await transport_of(client)
            transport._sleep = record
            transport._jitter = lambda: 1.0
            with pytest.raises(APIError):
                await create(client, model=MESSAGES_MODEL, messages=HI)
        assert len(service.requests) == 3
        assert delays == pytest.approx(expected)


@pytest.mark.asyncio
async def test_backoff_is_capped_and_jittered() -> None:
    """Delays never exceed the cap, and the jitter scales them (full jitter)."""
    service = Service(fail(503, "ServiceUnavailableException"))
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    policy = RetryPolicy(max_retries=6, base=1.0, cap=5.0)
    async with client_for(service, retry_policy=policy) as client:
        transport = await transport_of(client)
        transport._sleep = record
        transport._jitter = lambda: 0.5
        with pytest.raises(ServiceUnavailableError):
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert delays == pytest.approx([0.5, 1.0, 2.0, 2.5, 2.5, 2.5])


@pytest.mark.asyncio
async def test_retry_after_hint_is_honoured() -> None:
    """An ``x-amz-retry-after`` (milliseconds) hint lengthens the backoff."""
    service = Service(fail(429, "ThrottlingException", **{"x-amz-retry-after": "1500"}), ok())
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    async with client_for(service) as client:
        transport = await transport_of(client)
        transport._sleep = record
        await create(client, model=MESSAGES_MODEL, messages=HI)
    assert delays == pytest.approx([1.5])


@pytest.mark.asyncio
async def test_each_attempt_is_signed_afresh() -> None:
    """Every retry carries a new X-Amz-Date and Authorization when the clock moves, each a valid signature."""
    service = Service(fail(503, "ServiceUnavailableException"), fail(429, "ThrottlingException"), ok())
    clock = [1_700_000_000.0]

    async def advance(delay: float) -> None:
        clock[0] += 61.0

    async with client_for(service) as client:
        transport = await transport_of(client)
        transport._clock = lambda: clock[0]
        transport._sleep = advance
        await create(client, model=MESSAGES_MODEL, messages=HI)
    assert len(service.requests) == 3
    dates = [request.headers["x-amz-date"] for request in service.requests]
    signatures = [request.headers["authorization"] for request in service.requests]
    assert len(set(dates)) == len(set(signatures)) == 3
    assert dates[0] == "20231114T221320Z"
    for request in service.requests:
        assert_signed(request, AwsCredentials(ACCESS_KEY, SECRET))


# ------------------------------------------------------------------------------ the credential chain


class FakeChain:
    """Replaces botocore's session: each ``get_credentials`` call mints new keys (AKID1, AKID2, ...)."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, profile: str | None) -> FakeChain:
        return self

    def get_credentials(self) -> Any:
        with self._lock:
            self.calls += 1
            number = self.calls
            self.threads.add(threading.get_ident())
        frozen = Credentials(f"AKID{number}", SECRET, TOKEN).get_frozen_credentials()
        return mock.Mock(get_frozen_credentials=lambda: frozen, _expiry_time=None)

    def get_config_variable(self, name: str) -> str | None:
        return None


@pytest.fixture
def fake_chain(monkeypatch: pytest.MonkeyPatch) -> FakeChain:
    """botocore's default chain replaced by a FakeChain for clients built in this test."""
    chain = FakeChain()
    monkeypatch.setattr(_credentials, "_botocore_session", chain)
    return chain


@pytest.mark.asyncio
async def test_default_chain_resolved_once_off_the_loop(fake_chain: FakeChain) -> None:
    """Without keys, 50 concurrent calls resolve the chain once, in a worker thread, and sign with its keys."""
    service = Service()
    async with client_for(service, access_key=None, secret_key=None) as client:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(lambda: client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI))
    assert fake_chain.calls == 1
    assert threading.get_ident() not in fake_chain.threads
    assert len(service.requests) == 50
    for request in service.requests:
        assert_signed(request, AwsCredentials("AKID1", SECRET, TOKEN))


@pytest.mark.asyncio
async def test_expired_token_re_resolves_credentials_once(fake_chain: FakeChain) -> None:
    """An ExpiredTokenException makes the client resolve credentials again and retry, signed with the new keys."""
    service = Service(fail(403, "ExpiredTokenException", "The security token included in the request is expired"), ok())
    async with client_for(service, access_key=None, secret_key=None) as client:
        with anyio.fail_after(10):
            chat = await create(client, model=MESSAGES_MODEL, messages=HI)
    assert chat.completion == "Hello!"
    assert fake_chain.calls == 2
    assert_signed(service.requests[0], AwsCredentials("AKID1", SECRET, TOKEN))
    assert_signed(service.requests[1], AwsCredentials("AKID2", SECRET, TOKEN))


@pytest.mark.asyncio
async def test_expired_token_that_persists_fails_within_max_retries(fake_chain: FakeChain) -> None:
    """If the token is still expired after the one re-resolution, the call fails within max_retries + 1 attempts."""
    service = Service(fail(403, "ExpiredTokenException"))
    async with client_for(service, access_key=None, secret_key=None) as client:
        with anyio.fail_after(10), pytest.raises(ExpiredTokenError):
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert fake_chain.calls == 2
    assert len(service.requests) <= 3


# ---------------------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("where", ["in the handler", "reading a body", "reading an error body", "in backoff"])
@pytest.mark.asyncio
async def test_cancellation_leaves_no_response_open(where: str) -> None:
    """A create cancelled at any point closes every response it was handed; the client stays usable."""
    reached = anyio.Event()
    replies: dict[str, Reply] = {"reading a body": ok(), "reading an error body": fail(503, None)}
    service = Service(replies.get(where, fail(503, "ServiceUnavailableException")))
    if where.startswith("reading"):
        service.stall_body = reached
    if where == "in the handler":
        stalled_handler = service.handle

        async def handle(request: httpx.Request) -> httpx.Response:
            reached.set()
            await anyio.sleep_forever()
            return await stalled_handler(request)

        service.transport = httpx.MockTransport(handle)

    async def wait_forever(delay: float) -> None:
        reached.set()
        await anyio.sleep_forever()

    async with client_for(service) as client:
        transport = await transport_of(client)
        transport._sleep = wait_forever
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    await create(client, model=MESSAGES_MODEL, messages=HI)

                tg.start_soon(call)
                await reached.wait()
                tg.cancel_scope.cancel()
        assert all(stream.closed for stream in service.streams)
        assert len(service.streams) == (0 if where == "in the handler" else 1)
        # The client still works afterwards.
        service.stall_body = None
        service.replies = [ok()]
        transport.transport = service.transport = httpx.MockTransport(service.handle)
        with anyio.fail_after(5):
            assert (await create(client, model=MESSAGES_MODEL, messages=HI)).completion == "Hello!"


# ------------------------------------------------------------------------------------- errors & secrets


@pytest.mark.asyncio
async def test_no_secret_in_errors_or_client() -> None:
    """Neither the secret key, the session token nor a signature appears in any error's or the client's text."""
    service = Service(fail(403, "InvalidSignatureException", "The request signature we calculated does not match"))
    async with client_for(service, session_token=TOKEN) as client:
        with pytest.raises(AuthenticationError) as info:
            await create(client, model=MESSAGES_MODEL, messages=HI)
        texts = [str(info.value), repr(info.value), repr(client), str(client), repr(client._credentials)]
    signature = AUTHORIZATION.fullmatch(service.requests[0].headers["authorization"])
    assert signature is not None
    for text in texts:
        for secret in (SECRET, TOKEN, signature["signature"]):
            assert secret not in text


@pytest.mark.asyncio
async def test_secrets_echoed_by_the_service_are_redacted() -> None:
    """AWS signature errors quote the Authorization header and the canonical request; none of it may leak."""

    async def echo(request: httpx.Request) -> httpx.Response:
        message = (
            f"Authorization={request.headers['authorization']} ... The Canonical String for this request should "
            f"have been 'x-amz-security-token:{request.headers['x-amz-security-token']}'"
        )
        return httpx.Response(
            403, headers={"x-amzn-ErrorType": "IncompleteSignatureException"}, json={"message": message}
        )

    async with AnthropicBedrock(
        **KEYS, session_token=TOKEN, region="us-east-1", transport=httpx.MockTransport(echo)
    ) as client:
        with pytest.raises(AuthenticationError) as info:
            await create(client, model=MESSAGES_MODEL, messages=HI)
    assert TOKEN not in str(info.value)
    assert "Signature=" not in str(info.value)


# ------------------------------------------------------------------------------------------ lifecycle


class ClosingTransport(httpx.MockTransport):
    """A MockTransport that records whether it was closed."""

    closed = False

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.asyncio
async def test_given_transport_is_left_open_and_closed_client_refuses() -> None:
    """``async with`` closes the client, not a transport it was given; a closed client refuses new calls."""
    service = Service()
    transport = ClosingTransport(service.handle)
    client = AnthropicBedrock(**KEYS, region="us-east-1", transport=transport)
    async with client:
        await create(client, model=MESSAGES_MODEL, messages=HI)
    await client.aclose()  # idempotent
    assert not transport.closed
    with pytest.raises(ConfigurationError, match="closed"):
        await create(client, model=MESSAGES_MODEL, messages=HI)
    assert len(service.requests) == 1


@pytest.mark.asyncio
async def test_closing_before_first_use() -> None:
    """A client closed before it sent anything refuses calls too."""
    client = AnthropicBedrock(**KEYS, region="us-east-1", transport=Service().transport)
    await client.aclose()
    with pytest.raises(ConfigurationError, match="closed"):
        await create(client, model=MESSAGES_MODEL, messages=HI)


@pytest.mark.asyncio
async def test_many_concurrent_calls() -> None:
    """Concurrent creates on one client each get their own answer."""

    async def answers(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][0]["content"]
        return httpx.Response(200, json={"content": [{"type": "text", "text": text.upper()}]})

    results: dict[str, str] = {}
    async with client_for(Service(), transport=httpx.MockTransport(answers)) as client:

        async def one(word: str) -> None:
            chat = await create(client, model=MESSAGES_MODEL, messages=[{"role": "user", "content": word}])
            results[word] = chat.completion

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(100):
                    tg.start_soon(one, f"w{i}")
    assert results == {f"w{i}": f"W{i}" for i in range(100)}
