"""The blocking facade: the same create as the async client, driven through a portal thread."""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from bedrock_chat import (
    AnthropicBedrock,
    AnthropicBedrockSync,
    ChatCompletion,
    ConfigurationError,
    InvalidRequestError,
    RetryPolicy,
    SyncBatchRun,
    SyncChatCompletionStream,
    ThrottlingError,
)
from bedrock_chat._core.eventstream import encode_chunk_event
from bedrock_chat.emulator import BedrockEmulator

KEYS: dict[str, Any] = {"access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
HI = [{"role": "user", "content": "Hi"}]
FAST = RetryPolicy(base=0, throttle_base=0)


def _reply(request: httpx.Request) -> httpx.Response:
    """Echo the last user message, upper-cased, as a Messages reply."""
    text = json.loads(request.content)["messages"][-1]["content"]
    body: dict[str, Any] = {
        "id": "msg_1",
        "content": [{"type": "text", "text": text.upper()}],
        "stop_reason": "end_turn",
    }
    body["usage"] = {"input_tokens": 1, "output_tokens": 1}
    return httpx.Response(200, headers={"x-amzn-RequestId": "req-1"}, json=body)


def _client(handler: Any = _reply, **kwargs: Any) -> AnthropicBedrockSync:
    return AnthropicBedrockSync(
        **KEYS, region="us-east-1", transport=httpx.MockTransport(handler), retry_policy=FAST, **kwargs
    )


def test_create_returns_a_chat_completion() -> None:
    """The blocking create sends one request and returns the same ChatCompletion the async client builds."""
    with _client() as client:
        chat = client.ChatCompletion.create(model=MODEL, messages=HI, system="s", temperature=0.5, top_k=3)
    assert isinstance(chat, ChatCompletion)
    assert (chat.completion, chat.request_id, chat["messages"][-1]) == (
        "HI",
        "req-1",
        {"role": "assistant", "content": "HI"},
    )


def test_same_result_as_the_async_client() -> None:
    """For the same call and service, sync and async results agree in every field but the latency."""
    arguments: dict[str, Any] = {"model": MODEL, "messages": HI, "max_tokens_to_sample": 9, "stop_sequences": ["X"]}

    async def run_async() -> ChatCompletion:
        async with AnthropicBedrock(**KEYS, region="us-east-1", transport=httpx.MockTransport(_reply)) as client:
            chat = await client.ChatCompletion.create(**arguments)
        assert isinstance(chat, ChatCompletion)
        return chat

    with _client() as client:
        blocking = client.ChatCompletion.create(**arguments)
    asynchronous = anyio.run(run_async)
    expected = {key: value for key, value in asynchronous.to_dict().items() if key != "latency"}
    assert {key: value for key, value in blocking.to_dict().items() if key != "latency"} == expected


def test_create_accepts_every_async_argument() -> None:
    """Every keyword of the async create works on the sync one (it forwards them, nothing re-implemented)."""
    names = set(inspect.signature(AnthropicBedrock(**KEYS, region="us-east-1").ChatCompletion.create).parameters)
    assert names == {
        "messages",
        "model",
        "max_tokens_to_sample",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "system",
        "max_tokens",
        "thinking",
        "tools",
        "tool_choice",
        "anthropic_beta",
        "output_config",
        "extra_body",
        "extra_headers",
        "guardrail_identifier",
        "guardrail_version",
        "trace",
        "performance_config_latency",
        "service_tier",
        "request_metadata",
        "surface",
        "deadline",
        "stream",
    }
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return _reply(request)

    with _client(handler) as client:
        client.ChatCompletion.create(
            messages=HI,
            model=MODEL,
            max_tokens_to_sample=5,
            stop_sequences=["END"],
            temperature=0.1,
            top_p=0.2,
            top_k=3,
            system="sys",
            stream=False,
        )
    assert sent == [
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 5,
            "system": "sys",
            "messages": HI,
            "stop_sequences": ["END"],
            "temperature": 0.1,
            "top_p": 0.2,
            "top_k": 3,
        }
    ]


def test_the_sync_client_wraps_the_async_one() -> None:
    """The facade owns an AnthropicBedrock and its event loop runs in another thread."""
    loop_threads: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        loop_threads.append(threading.get_ident())
        return _reply(request)

    with _client(handler) as client:
        assert isinstance(client._client, AnthropicBedrock)
        client.ChatCompletion.create(model=MODEL, messages=HI)
    assert loop_threads[0] != threading.get_ident()


def test_invalid_arguments_raise_before_any_io() -> None:
    """Bad arguments raise the same InvalidRequestError, naming the field, with nothing sent."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return _reply(request)

    with _client(handler) as client, pytest.raises(InvalidRequestError) as info:
        client.ChatCompletion.create(model=MODEL, messages=HI, top_k=501)
    assert info.value.field == "top_k"
    assert calls == []


def test_service_errors_propagate_typed() -> None:
    """A throttle that outlasts the retries raises ThrottlingError in the calling thread."""
    calls: list[httpx.Request] = []

    def throttle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, headers={"x-amzn-ErrorType": "ThrottlingException"}, json={"message": "slow"})

    with _client(throttle) as client, pytest.raises(ThrottlingError, match="slow"):
        client.ChatCompletion.create(model=MODEL, messages=HI)
    assert len(calls) == 3


def test_stream_through_the_facade() -> None:
    """``stream=True`` gives a plain iterator of chunks, and the completion once it is exhausted."""
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 2, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
    ]
    frames = b"".join(encode_chunk_event(json.dumps(event).encode()) for event in events)
    paths: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        headers = {"content-type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": "req-s"}
        return httpx.Response(200, headers=headers, content=frames)

    with _client(handler) as client:
        with client.ChatCompletion.create(model=MODEL, messages=HI, stream=True) as stream:
            assert isinstance(stream, SyncChatCompletionStream)
            pieces = list(stream.text_stream)
        completion = stream.completion
    assert pieces == ["Hel", "lo"]
    assert (completion.completion, completion.stop_reason, completion.request_id) == ("Hello", "end_turn", "req-s")
    assert paths == [b"/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream"]


def test_close_is_idempotent_and_final() -> None:
    """close() stops the loop thread, can be called twice, and later calls fail clearly."""
    before = threading.active_count()
    client = _client()
    assert threading.active_count() == before + 1
    client.close()
    client.close()
    assert threading.active_count() == before
    with pytest.raises(ConfigurationError, match="closed"):
        client.ChatCompletion.create(model=MODEL, messages=HI)


def test_constructor_errors_propagate_and_leave_no_thread() -> None:
    """A bad configuration raises ConfigurationError from the constructor and stops the loop thread."""
    before = threading.active_count()
    with pytest.raises(ConfigurationError, match="not an AWS region"):
        AnthropicBedrockSync(**KEYS, region="us-east-1.evil.com/x")
    assert threading.active_count() == before


# ---------------------------------------------------------------------------------------------- batches


def _emulator_client(emulator: BedrockEmulator) -> AnthropicBedrockSync:
    return AnthropicBedrockSync(
        access_key=emulator.access_key,
        secret_key=emulator.secret_key,
        region=emulator.region,
        endpoint_url=emulator.endpoint_url,
        retry_policy=FAST,
    )


def _requests(count: int, bad: int | None = None) -> Iterator[dict[str, Any]]:
    """create() arguments whose reply echoes ``record i``; request ``bad`` has no messages (a 400 of its own)."""
    for i in range(count):
        messages = [] if i == bad else [{"role": "user", "content": f"record {i}"}]
        yield {"model": MODEL, "max_tokens": 16, "messages": messages}


def test_sync_batch_gives_one_result_per_request(bedrock_emulator: BedrockEmulator) -> None:
    """``batch`` from blocking code: every request one result, the invalid one its typed error, none sent for it."""
    with (
        _emulator_client(bedrock_emulator) as client,
        client.ChatCompletion.batch(_requests(20, bad=7), concurrency=4) as results,
    ):
        assert isinstance(results, SyncBatchRun)
        collected = {result.index: result for result in results}
        assert (results.completed, results.failed) == (20, 1)
    assert sorted(collected) == list(range(20))
    assert isinstance(collected[7].error, InvalidRequestError)
    for index, result in collected.items():
        if index != 7:
            assert result.unwrap().completion.split()[:2] == ["record", str(index)]
    assert len(bedrock_emulator.requests) == 19


def test_sync_batch_in_order_returns_results_in_input_order(bedrock_emulator: BedrockEmulator) -> None:
    """``batch_in_order`` blocks until every result is in and lists them by input position."""
    with _emulator_client(bedrock_emulator) as client:
        results = client.ChatCompletion.batch_in_order(_requests(12), concurrency=5)
    assert [result.index for result in results] == list(range(12))
    assert [result.unwrap().completion.split()[1] for result in results] == [str(i) for i in range(12)]


def test_sync_batches_take_max_retries(bedrock_emulator: BedrockEmulator) -> None:
    """``max_retries`` reaches the engine from both blocking calls (the default would retry these throttles)."""
    bedrock_emulator.enqueue_faults("throttle", "throttle")
    with _emulator_client(bedrock_emulator) as client:
        (first,) = client.ChatCompletion.batch_in_order(_requests(1), max_retries=0)
        with client.ChatCompletion.batch(_requests(1), max_retries=0) as results:
            (second,) = list(results)
    assert isinstance(first.error, ThrottlingError)
    assert isinstance(second.error, ThrottlingError)
    assert len(bedrock_emulator.requests) == 2


def test_leaving_a_sync_batch_early_stops_it_and_the_client_goes_on(bedrock_emulator: BedrockEmulator) -> None:
    """A ``break`` ends the batch (the rest of a long input is never read); the client still works after it."""
    read: list[int] = []

    def requests() -> Iterator[dict[str, Any]]:
        for i, request in enumerate(_requests(10_000)):
            read.append(i)
            yield request

    with _emulator_client(bedrock_emulator) as client:
        with client.ChatCompletion.batch(requests(), concurrency=2) as results:
            first = next(iter(results))
        assert first.ok
        assert len(read) < 100
        assert client.ChatCompletion.create(model=MODEL, messages=HI).completion.split()[0] == "Hi"


def test_a_sync_batch_is_iterated_inside_its_block_and_failures_come_out(bedrock_emulator: BedrockEmulator) -> None:
    """Iterating outside ``with`` is a TypeError; the requests iterable failing comes out of the block as itself."""

    def broken() -> Iterator[dict[str, Any]]:
        yield from _requests(2)
        raise ValueError("the input broke")

    with _emulator_client(bedrock_emulator) as client:
        with pytest.raises(TypeError, match="must end with a block"):
            iter(client.ChatCompletion.batch(_requests(1))).__next__()
        with pytest.raises(ValueError, match="the input broke"), client.ChatCompletion.batch(broken()) as results:
            list(results)
