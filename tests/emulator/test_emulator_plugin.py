"""The pytest fixture: clean for every test whatever the previous one did, and usable from sync and async tests.

Each test first checks the fixture is clean and then dirties it, so whichever runs second proves the reset.
"""

from __future__ import annotations

import attrs
import httpx
import pytest
import trio

from bedrock_chat.emulator import BedrockEmulator, EmulatorOptions

INVOKE = "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke"
BODY = b'{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'
UNSIGNED = {"Content-Type": "application/json"}


def assert_clean(emu: BedrockEmulator, options: EmulatorOptions) -> None:
    """No recorded requests, no scripted faults, no errors, the session's options."""
    assert list(emu.requests) == []
    assert emu.pending_faults == ()
    assert emu.errors == []
    assert emu.options == options


def dirty(emu: BedrockEmulator) -> None:
    """Leave requests, faults and changed options behind."""
    emu.options = attrs.evolve(emu.options, verify_signatures=False, reply_tokens=1)
    emu.enqueue_faults("throttle", "throttle", "stall")


def test_sync_use(bedrock_emulator: BedrockEmulator, bedrock_emulator_options: EmulatorOptions) -> None:
    """A sync test gets a clean, running emulator."""
    assert_clean(bedrock_emulator, bedrock_emulator_options)
    dirty(bedrock_emulator)
    response = httpx.post(f"{bedrock_emulator.endpoint_url}{INVOKE}", content=BODY, headers=UNSIGNED)
    assert response.status_code == 429


@pytest.mark.asyncio
async def test_asyncio_use(bedrock_emulator: BedrockEmulator, bedrock_emulator_options: EmulatorOptions) -> None:
    """An asyncio test uses the same emulator through an async client."""
    assert_clean(bedrock_emulator, bedrock_emulator_options)
    dirty(bedrock_emulator)
    async with httpx.AsyncClient(base_url=bedrock_emulator.endpoint_url) as client:
        response = await client.post(INVOKE, content=BODY, headers=UNSIGNED)
    assert response.status_code == 429


def test_trio_use(bedrock_emulator: BedrockEmulator, bedrock_emulator_options: EmulatorOptions) -> None:
    """A trio program uses it too (the server runs in its own thread)."""
    assert_clean(bedrock_emulator, bedrock_emulator_options)
    dirty(bedrock_emulator)
    bedrock_emulator.clear_faults()

    async def main() -> int:
        async with httpx.AsyncClient(base_url=bedrock_emulator.endpoint_url) as client:
            response = await client.post(INVOKE, content=BODY, headers=UNSIGNED)
            return response.status_code

    assert trio.run(main) == 200
    assert bedrock_emulator.requests[-1].status == 200


def test_server_is_shared_across_tests(
    bedrock_emulator: BedrockEmulator, bedrock_emulator_server: BedrockEmulator
) -> None:
    """The function-scoped handle is the session's server."""
    assert bedrock_emulator is bedrock_emulator_server
