"""Parity with the other Bedrock clients: API keys, endpoints, request options, tools, token counting."""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import attrs
import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.loaders import Loader
from e2e_helpers import emulator_client

from bedrock_chat import AnthropicBedrock, AnthropicBedrockSync, ConfigurationError, InvalidRequestError
from bedrock_chat._core.config import default_endpoint_url
from bedrock_chat.emulator import BedrockEmulator

HI = [{"role": "user", "content": "Hi"}]
MESSAGES_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
KEY = "bedrock-api-key-EXAMPLE0123456789"
REPLY = {
    "id": "msg_bdrk_1",
    "type": "message",
    "role": "assistant",
    "content": [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 5},
}
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class Recorder:
    """Records requests and answers with a canned JSON body."""

    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.body = body or REPLY

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.body)


def boto3_request(headers_out: dict[str, str], **invoke: Any) -> str:
    """Capture what boto3's bedrock-runtime client sends for ``invoke_model(**invoke)``; returns the URL."""
    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    )
    url: list[str] = []

    class Captured(Exception):
        pass

    def hook(request: Any, **_: Any) -> None:
        for name, value in request.headers.items():
            headers_out[name.lower()] = value.decode() if isinstance(value, bytes) else value
        url.append(request.url)
        raise Captured

    client.meta.events.register("before-send", hook)
    with pytest.raises(Captured):
        client.invoke_model(**invoke)
    return url[0]


# ---------------------------------------------------------------------------------------------- API keys


@pytest.mark.asyncio
async def test_api_key_is_sent_as_bearer_like_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an API key the request carries exactly boto3's Bearer header and no SigV4 headers."""
    recorder = Recorder()
    async with AnthropicBedrock(api_key=KEY, region="us-east-1", transport=httpx.MockTransport(recorder)) as client:
        await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI)
    (ours,) = recorder.requests
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    theirs: dict[str, str] = {}
    url = boto3_request(
        theirs,
        modelId=MESSAGES_MODEL,
        body=ours.content,
        contentType="application/json",
        accept="application/json",
    )
    assert str(ours.url) == url
    assert ours.headers["authorization"] == theirs["authorization"] == f"Bearer {KEY}"
    for name in ("accept", "content-type"):
        assert ours.headers[name] == theirs[name]
    assert "x-amz-date" not in ours.headers
    assert "x-amz-date" not in theirs


@pytest.mark.asyncio
async def test_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_BEARER_TOKEN_BEDROCK is used when no credentials are given, and never shown."""
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", KEY)
    recorder = Recorder()
    client = AnthropicBedrock(region="us-east-1", transport=httpx.MockTransport(recorder))
    async with client:
        await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI)
    assert recorder.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(client)


def test_api_key_with_explicit_credentials_is_a_configuration_error() -> None:
    """An API key together with SigV4 keys or a profile is refused, naming neither secret."""
    with pytest.raises(ConfigurationError) as raised:
        AnthropicBedrock(api_key=KEY, access_key="AKID", secret_key="s3cret", region="us-east-1")
    assert KEY not in str(raised.value)
    assert "s3cret" not in str(raised.value)
    with pytest.raises(ConfigurationError):
        AnthropicBedrock(api_key=KEY, profile="dev", region="us-east-1")
    with pytest.raises(ConfigurationError, match="api_key"):
        AnthropicBedrock(api_key="two\nlines", region="us-east-1")


@pytest.mark.asyncio
async def test_api_key_echoed_in_an_error_is_redacted() -> None:
    """A service error quoting the Authorization header does not carry the key into the exception."""

    def echo(request: httpx.Request) -> httpx.Response:
        message = f"Bad token {request.headers['authorization']}"
        return httpx.Response(403, json={"message": message}, headers={"x-amzn-ErrorType": "AccessDeniedException"})

    async with AnthropicBedrock(api_key=KEY, region="us-east-1", transport=httpx.MockTransport(echo)) as client:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the class is checked below
            await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI)
    assert type(raised.value).__name__ == "AccessDeniedError"
    assert KEY not in str(raised.value)


# ---------------------------------------------------------------------------------------------- endpoints


def _regions() -> Iterator[str]:
    for partition in Loader().load_data("endpoints")["partitions"]:
        yield from partition["regions"]


@pytest.mark.parametrize("region", sorted(_regions()))
@pytest.mark.parametrize(("fips", "dualstack"), [(False, False), (True, False), (False, True), (True, True)])
def test_fips_and_dualstack_endpoints_agree_with_botocore(region: str, fips: bool, dualstack: bool) -> None:
    """FIPS and dual-stack endpoints are the ones botocore's resolver picks (dual-stack in ISO partitions refused)."""
    config = Config(use_fips_endpoint=fips, use_dualstack_endpoint=dualstack)
    if dualstack and region.startswith(("us-iso", "eu-isoe")):
        with pytest.raises(ConfigurationError, match="dual-stack"):
            default_endpoint_url(region, fips=fips, dualstack=dualstack)
        return
    client = boto3.client(
        "bedrock-runtime", region_name=region, config=config, aws_access_key_id="a", aws_secret_access_key="b"
    )
    assert default_endpoint_url(region, fips=fips, dualstack=dualstack) == client.meta.endpoint_url


@pytest.mark.asyncio
async def test_fips_client_sends_to_the_fips_host() -> None:
    """use_fips_endpoint=True sends to bedrock-runtime-fips and signs that host."""
    recorder = Recorder()
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-gov-west-1", use_fips_endpoint=True,
        transport=httpx.MockTransport(recorder),
    ) as client:  # fmt: skip
        await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI)
    assert recorder.requests[0].url.host == "bedrock-runtime-fips.us-gov-west-1.amazonaws.com"
    assert "host" in recorder.requests[0].headers["authorization"]


# ------------------------------------------------------------------------------------------ request options


@pytest.mark.asyncio
async def test_request_options_match_boto3_byte_for_byte() -> None:
    """Guardrail, trace, latency and tier options produce boto3's headers and, at the same instant, its signature."""
    frozen = datetime.datetime(2026, 11, 25, 12, 0, 0, tzinfo=datetime.UTC)
    recorder = Recorder()
    client = AnthropicBedrock(
        access_key="AKIDEXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        transport=httpx.MockTransport(recorder),
    )
    async with client:
        transport = await client._ready()
        transport._clock = frozen.timestamp
        await client.ChatCompletion.create(
            model=MESSAGES_MODEL,
            messages=HI,
            guardrail_identifier="abc123def456",
            guardrail_version="DRAFT",
            trace="ENABLED",
            performance_config_latency="optimized",
            service_tier="priority",
        )
    (ours,) = recorder.requests
    theirs: dict[str, str] = {}
    with mock.patch("botocore.auth.get_current_datetime", return_value=frozen.replace(tzinfo=None)):
        url = boto3_request(
            theirs,
            modelId=MESSAGES_MODEL,
            body=ours.content,
            contentType="application/json",
            accept="application/json",
            guardrailIdentifier="abc123def456",
            guardrailVersion="DRAFT",
            trace="ENABLED",
            performanceConfigLatency="optimized",
            serviceTier="priority",
        )
    assert str(ours.url) == url
    skip = {"user-agent", "amz-sdk-invocation-id", "amz-sdk-request", "content-length", "host"}
    assert {k: v for k, v in ours.headers.items() if k not in skip} == {
        k: v for k, v in theirs.items() if k not in skip
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"guardrail_identifier": "abc"}, "guardrail_version"),
        ({"guardrail_version": "1"}, "guardrail_identifier"),
        ({"guardrail_identifier": "ABC!", "guardrail_version": "1"}, "guardrail_identifier"),
        ({"guardrail_identifier": "abc", "guardrail_version": "0"}, "guardrail_version"),
        ({"trace": "on"}, "trace"),
        ({"performance_config_latency": "fast"}, "performance_config_latency"),
        ({"service_tier": "gold"}, "service_tier"),
        ({"request_metadata": {"k": 1}}, "request_metadata"),
        ({"request_metadata": {"k": "v" * 9000}}, "request_metadata"),
    ],
)
async def test_bad_request_options_fail_before_io(kwargs: dict[str, Any], field: str) -> None:
    """Each option is checked against the service model's pattern before anything is sent."""
    recorder = Recorder()
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        with pytest.raises(InvalidRequestError, match=field):
            await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI, **kwargs)
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_request_metadata_is_a_signed_json_header() -> None:
    """Request metadata travels as compact JSON in its header, which is signed."""
    recorder = Recorder()
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI, request_metadata={"team": "search"})
    request = recorder.requests[0]
    assert request.headers["x-amzn-bedrock-request-metadata"] == '{"team":"search"}'
    assert "x-amzn-bedrock-request-metadata" in request.headers["authorization"]


# ------------------------------------------------------------------------------------------------ tools


@pytest.mark.asyncio
async def test_tools_round_trip() -> None:
    """Tools and tool_choice go in the body; tool_use blocks come back as tool_calls and feed the next turn."""
    recorder = Recorder()
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        chat = await client.ChatCompletion.create(
            model=MESSAGES_MODEL,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "any"},
            anthropic_beta=["token-efficient-tools-2025-02-19"],
        )
        assert chat.tool_calls == [{"id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
        assert chat.stop_reason == "tool_use"
        assert chat["messages"][-1] == {"role": "assistant", "content": REPLY["content"]}
        result_turn = {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C, sunny"}],
        }
        await client.ChatCompletion.create(
            model=MESSAGES_MODEL, messages=[*chat["messages"], result_turn], tools=[WEATHER_TOOL]
        )
    first, second = (json.loads(request.content) for request in recorder.requests)
    assert first["tools"] == [WEATHER_TOOL]
    assert first["tool_choice"] == {"type": "any"}
    assert first["anthropic_beta"] == ["token-efficient-tools-2025-02-19"]
    assert second["messages"][-1] == result_turn
    assert second["messages"][-2]["content"] == REPLY["content"]


@pytest.mark.asyncio
async def test_anthropic_beta_is_a_header_on_the_messages_endpoint() -> None:
    """On /anthropic/v1/messages the beta flags travel in the anthropic-beta header, as the Messages API takes them."""
    recorder = Recorder()
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        await client.ChatCompletion.create(
            model="anthropic.claude-opus-4-7", messages=HI, anthropic_beta=["a-1", "b-2"]
        )
    request = recorder.requests[0]
    assert request.headers["anthropic-beta"] == "a-1,b-2"
    assert "anthropic_beta" not in json.loads(request.content)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("model", "kwargs", "field"),
    [
        ("anthropic.claude-v2", {"tools": [WEATHER_TOOL]}, "tools"),
        ("anthropic.claude-v2", {"anthropic_beta": ["x"]}, "anthropic_beta"),
        (MESSAGES_MODEL, {"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}, "tools"),
        (MESSAGES_MODEL, {"tools": [{"name": "f"}]}, "input_schema"),
        (MESSAGES_MODEL, {"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "twice"),
        (MESSAGES_MODEL, {"tool_choice": {"type": "any"}}, "tool_choice"),
        (MESSAGES_MODEL, {"tools": [WEATHER_TOOL], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice"),
        (MESSAGES_MODEL, {"tools": [WEATHER_TOOL], "tool_choice": {"type": "sometimes"}}, "tool_choice"),
        (MESSAGES_MODEL, {"anthropic_beta": "flag"}, "anthropic_beta"),
    ],
)
async def test_bad_tool_arguments_fail_before_io(model: str, kwargs: dict[str, Any], field: str) -> None:
    """Tool arguments are checked before I/O; text-completion models refuse them, naming the model."""
    recorder = Recorder()
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        with pytest.raises(InvalidRequestError, match=field) as raised:
            await client.ChatCompletion.create(model=model, messages=HI, **kwargs)
    if model == "anthropic.claude-v2":
        assert "Claude 2.0" in str(raised.value)
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_image_bytes_are_sent_as_base64() -> None:
    """An image given as raw bytes goes on the wire as base64 with its media type."""
    recorder = Recorder()
    image = b"\x89PNG\r\n\x1a\nfake"
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
        {"type": "text", "text": "What is this?"},
    ]
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=[{"role": "user", "content": content}])
    sent = json.loads(recorder.requests[0].content)["messages"][0]["content"][0]["source"]
    assert sent == {"type": "base64", "media_type": "image/png", "data": base64.b64encode(image).decode()}


# --------------------------------------------------------------------------------------------- count tokens


@pytest.mark.asyncio
async def test_count_tokens_request_shape() -> None:
    """count_tokens posts the InvokeModel body create() would send, base64-encoded, to /count-tokens."""
    recorder = Recorder({"inputTokens": 42})
    async with AnthropicBedrock(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        count = await client.count_tokens(
            model="us.anthropic.claude-sonnet-4-20250514-v1:0", messages=HI, system="Be brief."
        )
    assert count == 42
    request = recorder.requests[0]
    assert request.url.raw_path == b"/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/count-tokens"
    payload = json.loads(request.content)
    body = json.loads(base64.b64decode(payload["input"]["invokeModel"]["body"]))
    assert body == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": HI,
    }


def test_sync_facade_has_count_tokens_and_invoke_model() -> None:
    """The sync client offers count_tokens and invoke_model with the same results."""
    recorder = Recorder({"inputTokens": 7})
    with AnthropicBedrockSync(
        access_key="AKID", secret_key="s", region="us-east-1", transport=httpx.MockTransport(recorder)
    ) as client:
        assert client.count_tokens(model=MESSAGES_MODEL, messages=HI) == 7
        answer = client.invoke_model(model=MESSAGES_MODEL, body={"anthropic_version": "bedrock-2023-05-31"})
    assert answer.body == {"inputTokens": 7}


# ------------------------------------------------------------------------------ against the emulator


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
async def test_tool_use_end_to_end(bedrock_emulator: BedrockEmulator, surface: str) -> None:
    """A forced tool call comes back as tool_calls, streamed or not, and the tool_result turn completes the loop."""
    model = "anthropic.claude-opus-4-7"
    ask = [{"role": "user", "content": "What is the weather in Paris today?"}]
    async with emulator_client(bedrock_emulator) as client:
        chat = await client.ChatCompletion.create(
            model=model, messages=ask, tools=[WEATHER_TOOL], tool_choice={"type": "any"}, surface=surface
        )
        stream = await client.ChatCompletion.create(
            model=model, messages=ask, tools=[WEATHER_TOOL], tool_choice={"type": "any"}, surface=surface, stream=True
        )
        async with stream:
            streamed = await stream.final_completion()
        assert chat.stop_reason == streamed.stop_reason == "tool_use"
        assert chat.tool_calls
        assert [call["input"] for call in chat.tool_calls] == [call["input"] for call in streamed.tool_calls]
        (call,) = chat.tool_calls
        result = {"type": "tool_result", "tool_use_id": call["id"], "content": "18 C, sunny"}
        final = await client.ChatCompletion.create(
            model=model,
            messages=[*chat["messages"], {"role": "user", "content": [result]}],
            tools=[WEATHER_TOOL],
            surface=surface,
        )
    assert final.stop_reason == "end_turn"
    assert final.completion


@pytest.mark.asyncio
async def test_count_tokens_matches_the_usage_of_the_call(bedrock_emulator: BedrockEmulator) -> None:
    """count_tokens equals the input tokens the same create() call reports, for both APIs."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count these few words please"}]
    async with emulator_client(bedrock_emulator) as client:
        for model in ("anthropic.claude-v2", MESSAGES_MODEL):
            counted = await client.count_tokens(model=model, messages=messages)
            chat = await client.ChatCompletion.create(model=model, messages=messages)
            assert counted == chat.usage.input_tokens


@pytest.mark.asyncio
async def test_count_tokens_refuses_a_messages_endpoint_only_model_before_any_io(
    bedrock_emulator: BedrockEmulator,
) -> None:
    """Models served only on /anthropic/v1/messages cannot be counted (CountTokens takes InvokeModel bodies)."""
    async with emulator_client(bedrock_emulator) as client:
        with pytest.raises(InvalidRequestError) as raised:
            await client.count_tokens(model="anthropic.claude-opus-4-8", messages=HI)
    assert raised.value.field == "model"
    assert "Messages endpoint" in str(raised.value)
    assert len(bedrock_emulator.requests) == 0


@pytest.mark.asyncio
async def test_api_key_and_request_options_end_to_end(bedrock_emulator: BedrockEmulator) -> None:
    """The emulator accepts the client's Bearer key and request-option headers, echoing what Bedrock echoes."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, api_key=KEY)
    async with AnthropicBedrock(
        api_key=KEY, region=bedrock_emulator.region, endpoint_url=bedrock_emulator.endpoint_url
    ) as client:
        chat = await client.ChatCompletion.create(
            model=MESSAGES_MODEL,
            messages=HI,
            guardrail_identifier="abc123",
            guardrail_version="1",
            service_tier="priority",
            request_metadata={"team": "search"},
        )
    assert chat.completion
    (request,) = bedrock_emulator.requests
    assert request.header("authorization") == f"Bearer {KEY}"
    assert request.header("x-amzn-bedrock-guardrailidentifier") == "abc123"
    assert request.status == 200
