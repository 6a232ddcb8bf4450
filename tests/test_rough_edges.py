"""Issue #18 items 6-11: event loops, arguments, loopback, regions and endpoints, stream errors, closed streams."""

from __future__ import annotations

import asyncio
import gc
import math
import socket
from typing import Any

import botocore.session
import httpx
import pytest
import trio
from botocore.config import Config
from e2e_helpers import emulator_client

from bedrock_chat import AnthropicBedrock, ConfigurationError, InvalidRequestError, ModelStreamError
from bedrock_chat._core.config import check_resolves_to_loopback, default_endpoint_url
from bedrock_chat._http.transport import BedrockTransport
from bedrock_chat.emulator import BedrockEmulator

HI = [{"role": "user", "content": "Hi"}]
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
BOTH_SURFACES_MODEL = "anthropic.claude-opus-4-7"
MESSAGES_ONLY_MODEL = "anthropic.claude-opus-4-8"
KEYS: dict[str, Any] = {"access_key": "AKID", "secret_key": "SECRET", "region": "us-east-1"}


class Recorder:
    """An httpx transport that records requests and answers 500 (no test here should reach it)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(500)


# ---------------------------------------------------------------------------------------------- item 6


async def _one_call(client: AnthropicBedrock) -> BedrockTransport:
    chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
    assert chat.completion
    transport = client._transport
    assert transport is not None
    return transport


@pytest.mark.parametrize("backend", ["auto", "httptools", "aiohttp", "httpcore2", "httpx"])
def test_one_client_serves_successive_event_loops(bedrock_emulator: BedrockEmulator, backend: Any) -> None:
    """A client made outside any loop works in two asyncio.run() calls and then trio.run(); each loop's pool
    is closed when that loop ends (nothing left open for the garbage collector to warn about)."""
    client = emulator_client(bedrock_emulator, http_backend=backend)
    first = asyncio.run(_one_call(client))
    assert first._closed
    assert client._transports == {}
    second = asyncio.run(_one_call(client))
    assert second is not first
    assert second._closed
    if backend in ("httptools", "aiohttp"):
        with pytest.raises(ConfigurationError, match="only under asyncio"):
            trio.run(_one_call, client)
    else:
        third = trio.run(_one_call, client)
        assert third._closed
    assert client._transports == {}
    gc.collect()  # an unclosed aiohttp session or socket would warn here, and warnings are errors
    assert len(bedrock_emulator.requests) == (2 if backend in ("httptools", "aiohttp") else 3)


def test_closing_in_one_loop_closes_that_loops_pool(bedrock_emulator: BedrockEmulator) -> None:
    """aclose() in a loop closes its pool at once; the client then refuses new calls in any loop."""
    client = emulator_client(bedrock_emulator)

    async def use_and_close() -> BedrockTransport:
        transport = await _one_call(client)
        await client.aclose()
        assert transport._closed
        assert client._transports == {}
        return transport

    asyncio.run(use_and_close())
    with pytest.raises(ConfigurationError, match="closed"):
        trio.run(_one_call, client)


# ---------------------------------------------------------------------------------------------- item 7


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": "10"}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": math.inf}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": httpx.Timeout(10.0, connect=math.nan)}, "timeout.connect"),
        ({"timeout": httpx.Timeout(10.0, read=-1.0)}, "timeout.read"),
        ({"stream_idle_timeout": math.nan}, "stream_idle_timeout"),
        ({"stream_idle_timeout": 0}, "stream_idle_timeout"),
        ({"transport": object()}, "transport"),
        ({"control_plane_endpoint_url": "ftp://x"}, "control_plane_endpoint_url"),
        ({"control_plane_endpoint_url": "http://bedrock.example.com"}, "control_plane_endpoint_url"),
    ],
)
def test_bad_constructor_arguments_are_typed_errors(kwargs: dict[str, Any], field: str) -> None:
    """Each bad value is a ConfigurationError at construction that names the argument."""
    with pytest.raises(ConfigurationError) as raised:
        AnthropicBedrock(**KEYS, **kwargs)
    assert str(raised.value).startswith(f"{field}:")


def test_good_timeouts_are_kept() -> None:
    """Numbers become an httpx.Timeout; an httpx.Timeout with None bounds (unbounded) is accepted as given."""
    assert AnthropicBedrock(**KEYS, timeout=10)._timeout == httpx.Timeout(10.0)
    given = httpx.Timeout(None, connect=5.0)
    assert AnthropicBedrock(**KEYS, timeout=given)._timeout is given


def _nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.asyncio
async def test_a_schema_nested_100000_deep_is_an_invalid_request_before_io() -> None:
    """A tool schema or an invoke_model body too deep for the JSON encoder names its field; nothing is sent."""
    recorder = Recorder()
    deep = _nested(100_000)
    async with AnthropicBedrock(**KEYS, transport=recorder.transport) as client:
        tools = [{"name": "t", "input_schema": deep}]
        with pytest.raises(InvalidRequestError, match="too deep") as raised:
            await client.ChatCompletion.create(model=MODEL, messages=HI, tools=tools)
        assert raised.value.field == "tools"
        with pytest.raises(InvalidRequestError, match="too deep") as raised:
            await client.invoke_model(model=MODEL, body={"schema": deep})
        assert raised.value.field == "body"
    assert recorder.requests == []


# ---------------------------------------------------------------------------------------------- item 8


@pytest.mark.parametrize(
    ("addresses", "ok"),
    [
        (["127.0.0.1", "::1"], True),
        (["127.0.0.53"], True),
        (["::1%lo"], True),
        (["127.0.0.1", "10.0.0.7"], False),
        (["93.184.216.34"], False),
        ([], False),
    ],
)
def test_localhost_counts_as_loopback_only_if_every_address_is(addresses: list[str], ok: bool) -> None:
    """One non-loopback answer (or none) is enough to refuse plain http."""
    if ok:
        check_resolves_to_loopback("endpoint_url", "localhost", addresses)
    else:
        with pytest.raises(ConfigurationError, match="endpoint_url: plain http"):
            check_resolves_to_loopback("endpoint_url", "localhost", addresses)


@pytest.mark.asyncio
async def test_plain_http_to_localhost_that_resolves_elsewhere_sends_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the system resolver sends ``localhost`` off the machine, the first call fails before any request."""
    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("localhost", b"localhost"):  # anyio passes it IDNA-encoded
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.9", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    recorder = Recorder()
    async with AnthropicBedrock(**KEYS, endpoint_url="http://localhost:8080", transport=recorder.transport) as client:
        with pytest.raises(ConfigurationError, match=r"203\.0\.113\.9"):
            await client.ChatCompletion.create(model=MODEL, messages=HI)
    assert recorder.requests == []


@pytest.mark.asyncio
async def test_plain_http_to_localhost_works_when_it_is_loopback(bedrock_emulator: BedrockEmulator) -> None:
    """Here ``localhost`` resolves to loopback only: the emulator is reached by that name."""
    url = httpx.URL(bedrock_emulator.endpoint_url).copy_with(host="localhost")
    async with emulator_client(bedrock_emulator, endpoint_url=str(url)) as client:
        assert (await client.ChatCompletion.create(model=MODEL, messages=HI)).completion


# ---------------------------------------------------------------------------------------------- item 9


@pytest.mark.asyncio
async def test_an_arn_of_another_region_is_refused_with_an_endpoint_url_too() -> None:
    """Requests are signed for the client's region, so an endpoint_url does not make another region's ARN work."""
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-5-sonnet-20241022-v2:0"
    recorder = Recorder()
    client = AnthropicBedrock(
        **KEYS, endpoint_url="https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com", transport=recorder.transport
    )
    async with client:
        with pytest.raises(InvalidRequestError, match="eu-west-1") as raised:
            await client.ChatCompletion.create(model=arn, messages=HI)
        assert raised.value.field == "model"
        with pytest.raises(InvalidRequestError, match="eu-west-1"):
            await client.invoke_model(model=arn, body={"messages": HI})
    assert recorder.requests == []


def _regions() -> list[str]:
    loader = botocore.session.Session().get_component("data_loader")
    return sorted(
        region for partition in loader.load_data("endpoints")["partitions"] for region in partition["regions"]
    )


@pytest.mark.parametrize("fips", [False, True])
@pytest.mark.parametrize("region", _regions())
def test_control_plane_default_agrees_with_botocore(region: str, fips: bool) -> None:
    """The control plane's default endpoint is the one botocore picks for the ``bedrock`` service."""
    client = AnthropicBedrock(access_key="AKID", secret_key="SECRET", region=region, use_fips_endpoint=fips)
    boto = botocore.session.Session().create_client(
        "bedrock",
        region_name=region,
        aws_access_key_id="A",
        aws_secret_access_key="S",
        config=Config(use_fips_endpoint=fips),
    )
    assert client.control_plane_endpoint_url == boto.meta.endpoint_url
    assert default_endpoint_url(region, fips=fips, service="bedrock") == boto.meta.endpoint_url


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "https://bedrock.us-east-1.amazonaws.com"),
        ({"control_plane_endpoint_url": "https://vpce-2.bedrock.x"}, "https://vpce-2.bedrock.x"),
    ],
)
async def test_batch_jobs_reach_the_control_plane_not_the_runtime_endpoint(
    kwargs: dict[str, Any], expected: str
) -> None:
    """With a bedrock-runtime VPC endpoint set, batch jobs still go to a control-plane endpoint."""
    runtime = "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"
    async with AnthropicBedrock(**KEYS, endpoint_url=runtime, **kwargs) as client:
        bedrock, _ = await client.batch_jobs._clients()
    assert bedrock.meta.endpoint_url == expected


# ---------------------------------------------------------------------------------------------- item 10


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
async def test_a_mid_stream_model_failure_is_the_same_class_on_both_surfaces(
    bedrock_emulator: BedrockEmulator, surface: str
) -> None:
    """The emulator's mid-stream model failure (an exception frame, or an ``api_error`` event) is a ModelStreamError."""
    bedrock_emulator.enqueue_faults("stream_exception:modelStreamErrorException")
    async with emulator_client(bedrock_emulator, max_retries=0) as client:
        stream = await client.ChatCompletion.create(
            model=BOTH_SURFACES_MODEL, messages=HI, stream=True, surface=surface, max_tokens_to_sample=300
        )
        with pytest.raises(ModelStreamError) as raised:  # noqa: PT012 - the error arrives while iterating
            async with stream:
                async for _ in stream:
                    pass
    assert raised.value.status == 200
    assert raised.value.partial_text is not None


# ---------------------------------------------------------------------------------------------- item 11


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages-endpoint"])
@pytest.mark.parametrize("read_first", [0, 1])
async def test_iterating_a_stream_after_its_block_raises(
    bedrock_emulator: BedrockEmulator, surface: str, read_first: int
) -> None:
    """After the async with block, iteration raises, whether chunks were still buffered or not."""
    async with emulator_client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(
            model=BOTH_SURFACES_MODEL, messages=HI, stream=True, surface=surface, max_tokens_to_sample=300
        )
        async with stream:
            for _ in range(read_first):
                await stream.__anext__()
        with pytest.raises(InvalidRequestError, match="stream: is closed"):
            await stream.__anext__()
        with pytest.raises(InvalidRequestError, match="stream: is closed"):
            await stream.final_completion()


@pytest.mark.asyncio
async def test_invoke_model_refuses_a_messages_endpoint_only_model_before_io() -> None:
    """invoke_model cannot reach a model InvokeModel does not serve: said before any request, as count_tokens does."""
    recorder = Recorder()
    async with AnthropicBedrock(**KEYS, transport=recorder.transport) as client:
        with pytest.raises(InvalidRequestError, match="only on the Messages endpoint") as raised:
            await client.invoke_model(model=MESSAGES_ONLY_MODEL, body={"messages": HI, "max_tokens": 10})
    assert raised.value.field == "model"
    assert recorder.requests == []
