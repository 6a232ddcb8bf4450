"""The emulator's command line: flags to options, and ``python -m bedrock_chat.emulator`` as a real process."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from bedrock_chat.emulator import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, EmulatorOptions, Faults
from bedrock_chat.emulator._cli import (
    add_emulator_arguments,
    add_fault_arguments,
    emulator_options_from_args,
    scripted_faults_from_args,
)

STARTUP_TIMEOUT = 30.0
BODY = b'{"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'


def parse(*argv: str, server: bool = True) -> argparse.Namespace:
    """Parse ``argv`` with the emulator's flags (or only the fault flags, as the chat command does)."""
    parser = argparse.ArgumentParser()
    (add_emulator_arguments if server else add_fault_arguments)(parser)
    return parser.parse_args(argv)


def test_defaults_are_the_default_options() -> None:
    """No flags give the default EmulatorOptions, with or without the server flags."""
    assert emulator_options_from_args(parse()) == EmulatorOptions()
    assert emulator_options_from_args(parse(server=False)) == EmulatorOptions()
    assert emulator_options_from_args(argparse.Namespace()) == EmulatorOptions()
    assert scripted_faults_from_args(parse()) == []


def test_every_flag_reaches_the_options() -> None:
    """Each flag sets its option."""
    args = parse(
        "--region", "eu-west-1", "--access-key", "AK", "--secret-key", "SK", "--session-token", "TOK",
        "--no-verify-signatures", "--messages-signing-names", "bedrock-mantle, bedrock",
        "--seed", "7", "--reply-tokens", "0", "--chunk-tokens", "2",
        "--throttle-rate", "0.1", "--model-not-ready-rate", "0.05", "--internal-error-rate", "0.1",
        "--service-unavailable-rate", "0.1", "--stall-rate", "0.01", "--stream-exception-rate", "0.2",
        "--stream-exception-type", "throttlingException", "--drop-mid-stream-rate", "0.1", "--bad-crc-rate", "0.1",
        "--latency", "0.5", "--time-to-first-byte", "0.25", "--chunk-delay", "0.01",
        "--faults", "throttle,stream_exception:validationException",
    )  # fmt: skip
    assert emulator_options_from_args(args) == EmulatorOptions(
        region="eu-west-1",
        access_key="AK",
        secret_key="SK",
        session_token="TOK",
        messages_signing_names=frozenset({"bedrock", "bedrock-mantle"}),
        verify_signatures=False,
        seed=7,
        reply_tokens=0,
        chunk_tokens=2,
        faults=Faults(
            seed=7,
            throttle_rate=0.1,
            model_not_ready_rate=0.05,
            internal_error_rate=0.1,
            service_unavailable_rate=0.1,
            stall_rate=0.01,
            stream_exception_rate=0.2,
            stream_exception_type="throttlingException",
            drop_mid_stream_rate=0.1,
            bad_crc_rate=0.1,
            latency=0.5,
            time_to_first_byte=0.25,
            chunk_delay=0.01,
        ),
    )
    assert scripted_faults_from_args(args) == ["throttle", "stream_exception:validationException"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--throttle-rate", "1.5"],
        ["--latency", "-1"],
        ["--chunk-tokens", "0"],
        ["--reply-tokens", "-1"],
        ["--faults", "throttle,nope"],
        ["--stream-exception-type", "boom"],
        ["--messages-signing-names", " , "],
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Out-of-range values, unknown fault names and empty name lists stop argparse with a usage error."""
    with pytest.raises(SystemExit) as caught:
        parse(*argv)
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


@contextmanager
def emulator_process(*argv: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Run ``python -m bedrock_chat.emulator --port 0 ...``; yields it and its first two stdout lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bedrock_chat.emulator", "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert process.stdout is not None
    stdout = process.stdout
    # A reader thread and a queue give readline() a timeout (select() cannot see Python's own buffer).
    lines_read: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in stdout:
            lines_read.put(line)

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    try:
        lines = [lines_read.get(timeout=STARTUP_TIMEOUT).rstrip("\n") for _ in range(2)]
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        reader.join(timeout=10)
        stdout.close()
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_module_prints_the_endpoint_serves_and_exits_zero(signum: int) -> None:
    """``python -m bedrock_chat.emulator --port 0`` prints endpoint_url=... and its credentials, serves, exits 0."""
    with emulator_process("--no-verify-signatures", "--faults", "throttle") as (process, lines):
        assert lines[0].startswith("endpoint_url=http://127.0.0.1:")
        assert lines[1] == f"region=us-east-1 access_key={DEFAULT_ACCESS_KEY} secret_key={DEFAULT_SECRET_KEY}"
        url = lines[0].removeprefix("endpoint_url=") + "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke"
        statuses = [
            httpx.post(url, content=BODY, headers={"Content-Type": "application/json"}, timeout=10).status_code
            for _ in range(2)
        ]
        assert statuses == [429, 200]
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0


def test_module_prints_the_session_token() -> None:
    """With --session-token the credentials line includes it."""
    with emulator_process("--session-token", "TOK") as (process, lines):
        assert lines[1].endswith(" session_token=TOK")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
