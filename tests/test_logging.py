"""stdlib logging: requests at DEBUG, retries at INFO, silent by default, never a secret, prompt or reply."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_helpers import child_environment, emulator_client

from bedrock_chat import ThrottlingError
from bedrock_chat._log import LOGGER_NAME, configure_from_environment, log_to_stderr
from bedrock_chat.emulator import BedrockEmulator

PROMPT = "CanaryPromptText tell me about logs"
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TIMEOUT = 60


def _records_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records if record.name.startswith(LOGGER_NAME))


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_each_attempt_at_debug_and_each_retry_at_info(
    bedrock_emulator: BedrockEmulator, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    """Two throttles then a 200: three DEBUG attempt lines and two INFO retry lines, each with its request id."""
    bedrock_emulator.enqueue_faults("throttle", "throttle")
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    async with emulator_client(bedrock_emulator) as client:
        messages = [{"role": "user", "content": PROMPT}]
        if stream:
            async with await client.ChatCompletion.create(model=MODEL, messages=messages, stream=True) as chunks:
                reply = "".join([text async for text in chunks.text_stream])
        else:
            reply = (await client.ChatCompletion.create(model=MODEL, messages=messages)).completion
    ours = [record for record in caplog.records if record.name.startswith(LOGGER_NAME)]
    attempts = [record.getMessage() for record in ours if record.levelno == logging.DEBUG and "POST" in record.msg]
    retries = [record.getMessage() for record in ours if record.levelno == logging.INFO]
    statuses = [str(request.status) for request in bedrock_emulator.requests]
    assert [line.split(" -> ")[1].split()[0] for line in attempts] == statuses == ["429", "429", "200"]
    ids = {line.rpartition("[request id ")[2].rstrip("]") for line in attempts}
    assert len(ids) == 3  # each attempt its own id, as the service sent it
    assert all(
        f"[request id {line.rpartition('[request id ')[2]}" in retry
        for line, retry in zip(attempts[:-1], retries, strict=True)
    )
    assert [line.split(" in ")[0] for line in retries] == ["retry 1 of 2", "retry 2 of 2"]
    assert all("ThrottlingError" in line for line in retries)
    text = _records_text(caplog)
    for secret in (bedrock_emulator.secret_key, PROMPT.split()[0], reply.split()[-1], "Signature="):
        assert secret not in text


@pytest.mark.asyncio
async def test_a_retry_that_gives_up_is_logged_before_the_error(
    bedrock_emulator: BedrockEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The retries a failed call made show at INFO; the final error is the caller's to log, not ours."""
    bedrock_emulator.enqueue_faults("throttle", "throttle", "throttle")
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    async with emulator_client(bedrock_emulator) as client:
        with pytest.raises(ThrottlingError):
            await client.ChatCompletion.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    ours = [record for record in caplog.records if record.name.startswith(LOGGER_NAME)]
    assert [record.levelno for record in ours] == [logging.INFO, logging.INFO]


@pytest.mark.asyncio
async def test_silent_by_default(bedrock_emulator: BedrockEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    """With logging not configured, a retried request prints nothing (the package logger has a NullHandler)."""
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger(LOGGER_NAME).handlers)
    bedrock_emulator.enqueue_faults("throttle")
    async with emulator_client(bedrock_emulator) as client:
        await client.ChatCompletion.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    assert capsys.readouterr() == ("", "")


def _run(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=child_environment(tmp_path, **env),
        timeout=TIMEOUT,
        check=False,
    )


_CHAT = f"""
import anyio
from bedrock_chat import AnthropicBedrock
from bedrock_chat.emulator import run_emulator_in_thread

async def main(emu):
    async with AnthropicBedrock(access_key=emu.access_key, secret_key=emu.secret_key, region=emu.region,
                                endpoint_url=emu.endpoint_url) as client:
        await client.ChatCompletion.create(model={MODEL!r}, messages=[{{"role": "user", "content": "hi"}}])

with run_emulator_in_thread() as emu:
    anyio.run(main, emu)
"""


@pytest.mark.parametrize(("value", "shown"), [("debug", True), ("INFO", False), ("", False)])
def test_bedrock_chat_log_turns_on_stderr(tmp_path: Path, value: str, shown: bool) -> None:
    """BEDROCK_CHAT_LOG=debug shows each request on stderr; info shows only retries (none here); unset, nothing."""
    result = _run(tmp_path, _CHAT, BEDROCK_CHAT_LOG=value)
    assert result.returncode == 0, result.stderr
    assert ("DEBUG bedrock_chat._http.transport: POST /model/" in result.stderr) is shown
    if not shown:
        assert result.stderr == ""


def test_an_unknown_bedrock_chat_log_is_refused_aloud(tmp_path: Path) -> None:
    """A misspelt level is a warning naming the variable, not a silent no-op."""
    result = _run(tmp_path, "import bedrock_chat", BEDROCK_CHAT_LOG="verbose")
    assert result.returncode == 0
    assert "BEDROCK_CHAT_LOG='verbose' is not one of debug, info: ignored" in result.stderr


def test_log_to_stderr_is_idempotent_and_keeps_the_lowest_level() -> None:
    """The CLI and the environment may both ask: one handler, at the most verbose level asked."""
    package = logging.getLogger(LOGGER_NAME)
    before_handlers, before_level = list(package.handlers), package.level
    try:
        log_to_stderr(logging.INFO)
        log_to_stderr(logging.DEBUG)
        log_to_stderr(logging.INFO)
        configure_from_environment({"BEDROCK_CHAT_LOG": "info"})
        added = [h for h in package.handlers if h not in before_handlers]
        assert len(added) == 1
        assert added[0].level == logging.DEBUG
        assert package.level == logging.DEBUG
    finally:
        package.handlers[:] = before_handlers
        package.setLevel(before_level)


@pytest.mark.asyncio
async def test_a_breakpoint_below_the_floor_is_a_warning_record(
    bedrock_emulator: BedrockEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller should act on a cache breakpoint that caches nothing: one WARNING record, without the prompt."""
    from bedrock_chat import CacheBreakpointWarning

    caplog.set_level(logging.WARNING, logger=LOGGER_NAME)
    system = [{"type": "text", "text": PROMPT, "cache_control": {"type": "ephemeral"}}]
    async with emulator_client(bedrock_emulator) as client:
        with pytest.warns(CacheBreakpointWarning):
            await client.ChatCompletion.create(model=MODEL, system=system, messages=[{"role": "user", "content": "hi"}])
    [record] = [r for r in caplog.records if r.name.startswith(LOGGER_NAME)]
    assert record.levelno == logging.WARNING
    assert "minimum cacheable prefix" in record.getMessage()
    assert PROMPT.split()[0] not in record.getMessage()
