"""Prompt caching end to end: our client, the emulator's prompt cache, both surfaces, streamed and not."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from e2e_helpers import emulator_client

from bedrock_chat import AnthropicBedrock, CacheBreakpointWarning, ChatCompletion
from bedrock_chat.emulator import BedrockEmulator

#: Served on both surfaces; its cache floor is 2,048 tokens in the emulator's table and at least that in ours.
MODEL = "anthropic.claude-opus-4-7"
SURFACES = ["invoke", "messages-endpoint"]
QUESTION = [{"role": "user", "content": "What does the policy say?"}]


def _system(tokens: int, ttl: str | None = None) -> list[dict[str, Any]]:
    """A system prompt of ``tokens`` words (the emulator counts a word as a token) with a breakpoint on it."""
    control: dict[str, Any] = {"type": "ephemeral"}
    if ttl is not None:
        control["ttl"] = ttl
    return [{"type": "text", "text": " ".join(f"rule{i}" for i in range(tokens)), "cache_control": control}]


async def _ask(client: AnthropicBedrock, system: list[dict[str, Any]], surface: str, stream: bool) -> ChatCompletion:
    kwargs: dict[str, Any] = {"model": MODEL, "messages": QUESTION, "system": system, "surface": surface}
    if not stream:
        chat: ChatCompletion = await client.ChatCompletion.create(**kwargs)
        return chat
    async with await client.ChatCompletion.create(stream=True, **kwargs) as chunks:
        async for _ in chunks:
            pass
    streamed: ChatCompletion = chunks.completion
    return streamed


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("ttl", [None, "1h"])
async def test_a_second_identical_request_reads_what_the_first_wrote(
    bedrock_emulator: BedrockEmulator, surface: str, stream: bool, ttl: str | None
) -> None:
    """The first call writes the 5,000-token prefix, the second reads it; usage says so, with the TTL split."""
    system = _system(5000, ttl)
    async with emulator_client(bedrock_emulator) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheBreakpointWarning)  # above the floor: no warning
            first = await _ask(client, system, surface, stream)
            second = await _ask(client, system, surface, stream)
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (5000, 0)
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (0, 5000)
    assert first.usage.cache_creation is not None
    split = (first.usage.cache_creation.ephemeral_5m_input_tokens, first.usage.cache_creation.ephemeral_1h_input_tokens)
    assert split == ((0, 5000) if ttl == "1h" else (5000, 0))
    assert first.usage.input_tokens == second.usage.input_tokens  # the uncached part, the same both times


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("surface", SURFACES)
async def test_a_breakpoint_below_the_floor_warns_and_reads_nothing(
    bedrock_emulator: BedrockEmulator, surface: str, stream: bool
) -> None:
    """Under the model's minimum prefix the service caches nothing and says nothing: the client says it."""
    system = _system(500)
    async with emulator_client(bedrock_emulator) as client:
        for _ in range(2):
            with pytest.warns(CacheBreakpointWarning, match="minimum cacheable prefix"):
                chat = await _ask(client, system, surface, stream)
            assert (chat.usage.cache_creation_input_tokens, chat.usage.cache_read_input_tokens) == (0, 0)
    assert len(bedrock_emulator.prompt_cache) == 0
