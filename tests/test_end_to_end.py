"""The client against the local Bedrock emulator: real HTTP, real signatures, real faults."""

from __future__ import annotations

import json

import anyio
import pytest
from e2e_helpers import checked_out_connections, emulator_client

from bedrock_chat import (
    AccessDeniedError,
    AnthropicBedrock,
    AnthropicBedrockSync,
    AuthenticationError,
    ModelError,
    ResourceNotFoundError,
    ThrottlingError,
    ValidationError,
)
from bedrock_chat.emulator import BedrockEmulator, count_tokens

HELLO = [{"role": "user", "content": "Hello there, emulator!"}]

MODELS = [
    "anthropic.claude-v2",
    "anthropic.claude-v2:1",
    "anthropic.claude-instant-v1",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "us.anthropic.claude-sonnet-4-20250514-v1:0",
    "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-opus-4-6-v1",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("model", MODELS)
async def test_create_every_model_form(bedrock_emulator: BedrockEmulator, model: str) -> None:
    """create() reaches every model form through the right API, and the reply is appended to the conversation."""
    async with emulator_client(bedrock_emulator) as client:
        chat = await client.ChatCompletion.create(model=model, max_tokens_to_sample=300, messages=HELLO)
    assert chat.completion
    assert chat["messages"][:-1] == HELLO
    assert chat["messages"][-1] == {"role": "assistant", "content": chat.completion}
    assert chat.stop_reason == "end_turn"
    assert chat.model == model
    (request,) = bedrock_emulator.requests
    assert request.model_id == model
    assert request.status == 200
    assert chat.request_id
    assert chat.usage.output_tokens == count_tokens(chat.completion)
    assert chat.usage.input_tokens is not None
    assert chat.usage.input_tokens > 0


@pytest.mark.asyncio
async def test_text_completion_prompt_on_the_wire(bedrock_emulator: BedrockEmulator) -> None:
    """A text-completion model receives the Human/Assistant prompt with the system text first."""
    messages = [{"role": "system", "content": "Be brief."}, *HELLO]
    async with emulator_client(bedrock_emulator) as client:
        chat = await client.ChatCompletion.create(model="anthropic.claude-v2", messages=messages)
    body = json.loads(bedrock_emulator.requests[0].body)
    assert body == {
        "prompt": "Be brief.\n\nHuman: Hello there, emulator!\n\nAssistant:",
        "max_tokens_to_sample": 256,
    }
    assert chat["messages"][:2] == messages


@pytest.mark.asyncio
async def test_messages_body_on_the_wire(bedrock_emulator: BedrockEmulator) -> None:
    """A Messages model receives anthropic_version, max_tokens, system and only the parameters given."""
    messages = [{"role": "system", "content": "Be brief."}, *HELLO]
    async with emulator_client(bedrock_emulator) as client:
        await client.ChatCompletion.create(
            model="anthropic.claude-3-5-haiku-20241022-v1:0", messages=messages, temperature=0.5, top_k=10
        )
    body = json.loads(bedrock_emulator.requests[0].body)
    assert body == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": HELLO,
        "temperature": 0.5,
        "top_k": 10,
    }


@pytest.mark.asyncio
async def test_stop_sequence_and_max_tokens(bedrock_emulator: BedrockEmulator) -> None:
    """The service's stop reasons arrive normalised: a user stop sequence, and the max-tokens cut."""
    async with emulator_client(bedrock_emulator) as client:
        full = await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
        words = full.completion.split()
        stop_word = words[len(words) // 2]
        stopped = await client.ChatCompletion.create(
            model="anthropic.claude-v2", messages=HELLO, stop_sequences=[stop_word]
        )
        cut = await client.ChatCompletion.create(
            model="anthropic.claude-3-5-haiku-20241022-v1:0", messages=HELLO, max_tokens_to_sample=2
        )
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop == stop_word
    assert stop_word not in stopped.completion
    assert cut.stop_reason == "max_tokens"
    assert cut.usage.output_tokens == 2


@pytest.mark.asyncio
async def test_prefill_is_continued_and_shown_whole(bedrock_emulator: BedrockEmulator) -> None:
    """A trailing assistant message is a prefill: the reply continues it and messages show it once, whole."""
    messages = [*HELLO, {"role": "assistant", "content": "Sure:"}]
    async with emulator_client(bedrock_emulator) as client:
        for model in ("anthropic.claude-v2", "anthropic.claude-3-5-haiku-20241022-v1:0"):
            chat = await client.ChatCompletion.create(model=model, messages=messages)
            assert chat["messages"][:-1] == HELLO
            assert chat["messages"][-1] == {"role": "assistant", "content": "Sure:" + chat.completion}


@pytest.mark.asyncio
async def test_retries_then_succeeds(bedrock_emulator: BedrockEmulator) -> None:
    """Throttling, 500 and ModelNotReady are retried, each attempt re-signed, until one succeeds."""
    bedrock_emulator.enqueue_faults("throttle", "internal_error")
    async with emulator_client(bedrock_emulator) as client:
        chat = await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
    assert chat.completion
    statuses = [r.status for r in bedrock_emulator.requests]
    assert statuses == [429, 500, 200]
    assert all(r.header("authorization") for r in bedrock_emulator.requests)


@pytest.mark.asyncio
async def test_retries_exhausted_raise_the_typed_error(bedrock_emulator: BedrockEmulator) -> None:
    """After max_retries the last error is raised, typed, with the service's request id."""
    bedrock_emulator.enqueue_faults("throttle", "throttle", "throttle", "throttle")
    async with emulator_client(bedrock_emulator, max_retries=2) as client:
        with pytest.raises(ThrottlingError) as raised:
            await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
    assert len(bedrock_emulator.requests) == 3
    assert raised.value.status == 429
    assert raised.value.code == "ThrottlingException"
    assert raised.value.request_id


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("validation", ValidationError),
        ("access_denied", AccessDeniedError),
        ("model_error", ModelError),
    ],
)
async def test_non_retryable_errors_fail_at_once(
    bedrock_emulator: BedrockEmulator, fault: str, error: type[Exception]
) -> None:
    """Validation, access and model errors are raised after one attempt."""
    bedrock_emulator.enqueue_faults(fault)
    async with emulator_client(bedrock_emulator) as client:
        with pytest.raises(error):
            await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
    assert len(bedrock_emulator.requests) == 1


@pytest.mark.asyncio
async def test_unknown_model_is_not_found(bedrock_emulator: BedrockEmulator) -> None:
    """A model id the service does not know is a ResourceNotFoundError."""
    async with emulator_client(bedrock_emulator) as client:
        with pytest.raises(ResourceNotFoundError):
            await client.ChatCompletion.create(model="anthropic.claude-nonexistent-v9", messages=HELLO)


@pytest.mark.asyncio
async def test_wrong_secret_is_refused_without_leaking_it(bedrock_emulator: BedrockEmulator) -> None:
    """A bad signature is an AuthenticationError, not retried, and no secret appears in the error."""
    secret = "not-the-right-secret-1234567890"
    async with emulator_client(bedrock_emulator, secret_key=secret) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
    assert raised.value.code == "InvalidSignatureException"
    assert len(bedrock_emulator.requests) == 1
    assert secret not in str(raised.value)
    assert secret not in repr(raised.value)


@pytest.mark.asyncio
async def test_botocore_signer_is_accepted_too(bedrock_emulator: BedrockEmulator) -> None:
    """signer="botocore" signs with SigV4Auth itself and the emulator accepts it."""
    async with emulator_client(bedrock_emulator, signer="botocore") as client:
        chat = await client.ChatCompletion.create(model="us.anthropic.claude-sonnet-4-20250514-v1:0", messages=HELLO)
    assert chat.completion


@pytest.mark.asyncio
async def test_concurrent_creates_leave_the_pool_idle(bedrock_emulator: BedrockEmulator) -> None:
    """Fifty concurrent calls all complete and no connection stays checked out."""
    results: list[str] = []
    async with emulator_client(bedrock_emulator) as client:

        async def one(i: int) -> None:
            chat = await client.ChatCompletion.create(
                model="anthropic.claude-3-5-haiku-20241022-v1:0", messages=[{"role": "user", "content": f"n{i}"}]
            )
            results.append(chat.completion)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
        assert checked_out_connections(client) == 0
    assert len(results) == 50


@pytest.mark.asyncio
async def test_cancelled_create_releases_its_connection(bedrock_emulator: BedrockEmulator) -> None:
    """A create cancelled while the server stalls leaves nothing checked out."""
    bedrock_emulator.enqueue_faults("stall")
    async with emulator_client(bedrock_emulator) as client:
        with anyio.move_on_after(0.5) as scope:
            await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
        assert scope.cancelled_caught
        assert checked_out_connections(client) == 0
        chat = await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
        assert chat.completion


def test_sync_facade(bedrock_emulator: BedrockEmulator) -> None:
    """AnthropicBedrockSync gives the same result as the async client, from plain code."""
    with AnthropicBedrockSync(
        access_key=bedrock_emulator.access_key,
        secret_key=bedrock_emulator.secret_key,
        region=bedrock_emulator.region,
        endpoint_url=bedrock_emulator.endpoint_url,
    ) as client:
        chat = client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO)
        with client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO, stream=True) as stream:
            text = "".join(stream.text_stream)
    assert chat.completion == text == stream.completion.completion


def test_trio_backend(bedrock_emulator: BedrockEmulator) -> None:
    """The client runs under trio on httpx's own transport."""
    import trio

    async def main() -> str:
        async with AnthropicBedrock(
            access_key=bedrock_emulator.access_key,
            secret_key=bedrock_emulator.secret_key,
            region=bedrock_emulator.region,
            endpoint_url=bedrock_emulator.endpoint_url,
        ) as client:
            chat = await client.ChatCompletion.create(model="anthropic.claude-3-5-haiku-20241022-v1:0", messages=HELLO)
            stream = await client.ChatCompletion.create(model="anthropic.claude-v2", messages=HELLO, stream=True)
            async with stream:
                streamed = "".join([piece async for piece in stream.text_stream])
            assert streamed == stream.completion.completion
            return chat.completion

    assert trio.run(main)
