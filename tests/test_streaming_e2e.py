"""Streaming against the emulator: chunks, the final result, mid-stream errors, retries and cleanup."""

from __future__ import annotations

import anyio
import attrs
import pytest
from e2e_helpers import checked_out_connections, emulator_client

from bedrock_chat import (
    APIConnectionError,
    ChatCompletionStream,
    EventStreamError,
    IncompleteStreamError,
    ModelStreamError,
    RequestTimeoutError,
    ThrottlingError,
    TransportError,
    ValidationError,
)
from bedrock_chat.emulator import BedrockEmulator, count_tokens

HELLO = [{"role": "user", "content": "Stream me something, emulator!"}]


async def drain(stream: ChatCompletionStream, into: list[str] | None = None) -> None:
    """Read a stream to its end inside ``async with`` (collecting the text pieces if asked)."""
    async with stream:
        async for chunk in stream:
            if into is not None:
                into.append(chunk.text)


TEXT_MODEL = "anthropic.claude-v2"
MESSAGES_MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"


@pytest.mark.asyncio
@pytest.mark.parametrize("model", [TEXT_MODEL, MESSAGES_MODEL, "us.anthropic.claude-sonnet-4-20250514-v1:0"])
async def test_stream_matches_create(bedrock_emulator: BedrockEmulator, model: str) -> None:
    """The streamed chunks add up to the same ChatCompletion that create() returns, usage included."""
    async with emulator_client(bedrock_emulator) as client:
        whole = await client.ChatCompletion.create(model=model, messages=HELLO, max_tokens_to_sample=500)
        stream = await client.ChatCompletion.create(model=model, messages=HELLO, max_tokens_to_sample=500, stream=True)
        async with stream:
            pieces = [chunk.text async for chunk in stream]
        chat = stream.completion
        assert checked_out_connections(client) == 0
    assert sum(1 for piece in pieces if piece) > 1, "the emulator streams the reply in several chunks"
    assert "".join(pieces) == chat.completion == whole.completion
    assert chat["messages"] == whole["messages"]
    assert chat.stop_reason == whole.stop_reason == "end_turn"
    assert chat.usage.output_tokens == whole.usage.output_tokens == count_tokens(chat.completion)
    assert chat.usage.input_tokens == whole.usage.input_tokens
    assert chat.usage.invocation_latency_ms is not None
    assert chat.usage.first_byte_latency_ms is not None
    assert chat.request_id


@pytest.mark.asyncio
async def test_text_stream_and_final_completion(bedrock_emulator: BedrockEmulator) -> None:
    """text_stream yields only non-empty text; final_completion() drains what is left."""
    async with emulator_client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HELLO, stream=True)
        async with stream:
            texts = [text async for text in stream.text_stream]
        assert all(texts)
        assert "".join(texts) == stream.completion.completion
        other = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HELLO, stream=True)
        async with other:
            chat = await other.final_completion()
        assert chat.completion == stream.completion.completion


@pytest.mark.asyncio
async def test_http_errors_raise_from_create(bedrock_emulator: BedrockEmulator) -> None:
    """An error answered before the stream starts raises from the awaited create()."""
    bedrock_emulator.enqueue_faults("validation")
    async with emulator_client(bedrock_emulator) as client:
        with pytest.raises(ValidationError):
            await client.ChatCompletion.create(model=TEXT_MODEL, messages=HELLO, stream=True)
        assert checked_out_connections(client) == 0


@pytest.mark.asyncio
async def test_mid_stream_exception_frame_is_typed_and_keeps_partial_text(bedrock_emulator: BedrockEmulator) -> None:
    """An exception frame after text was handed out raises its typed error with the partial text."""
    bedrock_emulator.enqueue_faults("stream_exception:throttlingException")
    received: list[str] = []
    async with emulator_client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(model=TEXT_MODEL, messages=HELLO, stream=True)
        with pytest.raises(ThrottlingError) as raised:
            await drain(stream, received)
        assert checked_out_connections(client) == 0
    assert "".join(received), "text arrived before the fault"
    assert raised.value.partial_text == "".join(received)
    assert raised.value.code == "ThrottlingException"
    assert len(bedrock_emulator.requests) == 1, "no retry once text was handed out"


@pytest.mark.asyncio
async def test_model_stream_error(bedrock_emulator: BedrockEmulator) -> None:
    """modelStreamErrorException becomes ModelStreamError with the original status and message."""
    bedrock_emulator.enqueue_faults("stream_exception:modelStreamErrorException")
    async with emulator_client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HELLO, stream=True)
        with pytest.raises(ModelStreamError) as raised:
            await drain(stream)
    assert raised.value.original_status_code is not None
    assert raised.value.partial_text is not None


@pytest.mark.asyncio
async def test_exception_before_any_text_is_retried(bedrock_emulator: BedrockEmulator) -> None:
    """A stream that fails before its first text reached the caller is sent again, invisibly."""
    # An empty reply: the mid-stream fault (frame n//2) strikes after message_start, before any text.
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, reply_tokens=0)
    bedrock_emulator.enqueue_faults("stream_exception:throttlingException")
    async with emulator_client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HELLO, stream=True)
        async with stream:
            chat = await stream.final_completion()
    assert chat.stop_reason is not None
    assert [r.status for r in bedrock_emulator.requests] == [200, 200]


@pytest.mark.asyncio
async def test_stall_before_any_text_is_retried(bedrock_emulator: BedrockEmulator) -> None:
    """A stream whose headers came but whose body never did is abandoned at the idle timeout and sent again."""
    bedrock_emulator.enqueue_faults("stall")
    async with emulator_client(bedrock_emulator, stream_idle_timeout=0.3) as client:
        with anyio.fail_after(10):
            stream = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HELLO, stream=True)
            async with stream:
                chat = await stream.final_completion()
        assert checked_out_connections(client) == 0
    assert chat.completion
    assert len(bedrock_emulator.requests) == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["httptools", "aiohttp", "httpcore2", "httpx"])
async def test_dropped_connection_is_never_a_normal_end(bedrock_emulator: BedrockEmulator, backend: str) -> None:
    """A connection dropped mid-stream raises a transport or incomplete-stream error, with the partial text."""
    bedrock_emulator.enqueue_faults("drop_mid_stream")
    async with emulator_client(bedrock_emulator, http_backend=backend) as client:
        stream = await client.ChatCompletion.create(model=TEXT_MODEL, messages=HELLO, stream=True)
        with pytest.raises((APIConnectionError, IncompleteStreamError)) as raised:
            await drain(stream)
        assert checked_out_connections(client) == 0
    assert raised.value.partial_text


@pytest.mark.asyncio
async def test_bad_crc_is_an_event_stream_error(bedrock_emulator: BedrockEmulator) -> None:
    """A corrupted frame raises EventStreamError; it is never decoded into text."""
    bedrock_emulator.enqueue_faults("bad_crc")
    async with emulator_client(bedrock_emulator) as client:
        stream = await client.ChatCompletion.create(model=TEXT_MODEL, messages=HELLO, stream=True)
        with pytest.raises(EventStreamError):
            await drain(stream)


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["httptools", "aiohttp", "httpcore2", "httpx"])
async def test_stalled_stream_hits_the_idle_timeout(bedrock_emulator: BedrockEmulator, backend: str) -> None:
    """A stream that stops sending raises RequestTimeoutError after the idle timeout, not never."""
    bedrock_emulator.enqueue_faults("stall_mid_stream")
    async with emulator_client(bedrock_emulator, stream_idle_timeout=0.3, http_backend=backend) as client:
        stream = await client.ChatCompletion.create(model=TEXT_MODEL, messages=HELLO, stream=True)
        with anyio.fail_after(10), pytest.raises(TransportError) as raised:
            await drain(stream)
        assert isinstance(raised.value, RequestTimeoutError)
        assert checked_out_connections(client) == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["httptools", "aiohttp", "httpcore2", "httpx"])
async def test_break_closes_the_response_at_once(bedrock_emulator: BedrockEmulator, backend: str) -> None:
    """Leaving the loop early closes the response: nothing checked out, and the client keeps working."""
    async with emulator_client(bedrock_emulator, http_backend=backend) as client:
        stream = await client.ChatCompletion.create(
            model=MESSAGES_MODEL, messages=HELLO, stream=True, max_tokens_to_sample=500
        )
        async with stream:
            async for chunk in stream:
                if chunk.text:
                    break
        assert checked_out_connections(client) == 0
        chat = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HELLO)
        assert chat.completion


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["httptools", "aiohttp", "httpcore2", "httpx"])
async def test_cancelled_stream_releases_its_connection(bedrock_emulator: BedrockEmulator, backend: str) -> None:
    """Cancelling the task that reads a stream leaves no connection checked out."""
    bedrock_emulator.enqueue_faults("stall_mid_stream")
    async with emulator_client(bedrock_emulator, http_backend=backend) as client:
        with anyio.move_on_after(0.3) as scope:
            stream = await client.ChatCompletion.create(model=TEXT_MODEL, messages=HELLO, stream=True)
            async with stream:
                async for _ in stream:
                    pass
        assert scope.cancelled_caught
        assert checked_out_connections(client) == 0


@pytest.mark.asyncio
async def test_utf8_split_across_chunks_comes_out_whole(bedrock_emulator: BedrockEmulator) -> None:
    """Multi-byte characters in the prompt echo come back intact through the stream."""
    messages = [{"role": "user", "content": "héllo wörld 日本語 🎉 naïve"}]
    async with emulator_client(bedrock_emulator) as client:
        whole = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=messages)
        stream = await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=messages, stream=True)
        async with stream:
            text = "".join([t async for t in stream.text_stream])
    assert text == whole.completion
    assert "日本語" in text or "🎉" in text or "wörld" in text


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["httptools", "aiohttp", "httpcore2", "httpx"])
@pytest.mark.parametrize("model", [TEXT_MODEL, MESSAGES_MODEL])
async def test_a_stream_read_to_its_end_returns_its_connection_before_it_is_closed(
    bedrock_emulator: BedrockEmulator, backend: str, model: str
) -> None:
    """The connection goes back to the pool when the body ends, not only when the caller closes the stream."""
    async with emulator_client(bedrock_emulator, http_backend=backend) as client:
        stream = await client.ChatCompletion.create(model=model, messages=HELLO, stream=True)
        chat = await stream.final_completion()  # no ``async with``: a caller that forgets to close
        assert checked_out_connections(client) == 0
        assert chat.completion
        await stream.aclose()
