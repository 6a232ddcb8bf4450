"""The emulator's command line: flags to options, and ``python -m bedrock_chat.emulator`` as a real process."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from bedrock_chat.emulator import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
    Faults,
    ServerLimits,
    fake_reply,
)
from bedrock_chat.emulator._cli import (
    add_emulator_arguments,
    add_fault_arguments,
    emulator_limits_from_args,
    emulator_options_from_args,
    scripted_faults_from_args,
)

STARTUP_TIMEOUT = 30.0
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Served on InvokeModel (the CLI's default surface for it), so the reply is the fake model's plain text.
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
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


def test_limit_flags_reach_the_limits() -> None:
    """No flags give the default ServerLimits; each limit flag sets its field."""
    assert emulator_limits_from_args(parse()) == ServerLimits()
    assert emulator_limits_from_args(argparse.Namespace()) == ServerLimits()
    args = parse(
        "--header-timeout", "2", "--idle-timeout", "3.5", "--max-connections", "4", "--max-recorded-body-bytes", "0",
        "--min-data-rate", "250", "--body-timeout", "30",
    )  # fmt: skip
    assert emulator_limits_from_args(args) == ServerLimits(
        header_timeout=2,
        idle_timeout=3.5,
        max_connections=4,
        max_recorded_body_bytes=0,
        min_data_rate=250,
        body_timeout=30,
    )
    # --min-data-rate 0 turns the minimum off (idle_timeout alone).
    assert emulator_limits_from_args(parse("--min-data-rate", "0")).min_data_rate is None


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
        ["--port", "65536"],
        ["--header-timeout", "0"],
        ["--idle-timeout", "-1"],
        ["--max-connections", "0"],
        ["--max-recorded-body-bytes", "-1"],
        ["--min-data-rate", "-5"],
        ["--min-data-rate", "nan"],
        ["--body-timeout", "0"],
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
    """Run ``python -m bedrock_chat.emulator --port 0 ...``; yields it and what it prints at start-up.

    That is every line up to the last ``export`` line (the endpoint, the credentials, the paste-ready block).
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "bedrock_chat.emulator", "--port", "0", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
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
        lines = [lines_read.get(timeout=STARTUP_TIMEOUT).rstrip("\n")]
        while not lines[-1].startswith("export AWS_DEFAULT_REGION="):
            lines.append(lines_read.get(timeout=STARTUP_TIMEOUT).rstrip("\n"))
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


def test_module_prints_paste_ready_exports() -> None:
    """After the two settings lines: an ``unset`` of what would interfere, then one ``export`` per variable."""
    with emulator_process("--region", "eu-west-1", "--secret-key", "s3cret with spaces") as (process, lines):
        endpoint = lines[0].removeprefix("endpoint_url=")
        assert lines[2].startswith("# ")
        assert lines[3:] == [
            "unset AWS_PROFILE AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_BEARER_TOKEN_BEDROCK",
            f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={endpoint}",
            f"export AWS_ACCESS_KEY_ID={DEFAULT_ACCESS_KEY}",
            "export AWS_SECRET_ACCESS_KEY='s3cret with spaces'",
            "export AWS_REGION=eu-west-1",
            "export AWS_DEFAULT_REGION=eu-west-1",
        ]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize("session_token", [None, "TOK"])
def test_bedrock_chat_runs_on_exactly_the_pasted_lines(session_token: str | None) -> None:
    """A shell that runs the printed lines, then ``bedrock-chat chat``, talks to the printed server.

    The shell starts with a profile, a stale token and a Bedrock API key set, which the lines must clear;
    the CLI gets no connection flag at all.
    """
    token_flags = ["--session-token", session_token] if session_token else []
    with emulator_process(*token_flags) as (process, lines):
        block = "\n".join(line for line in lines if line.startswith(("unset ", "export ")))
        environment = {
            **os.environ,
            "AWS_PROFILE": "does-not-exist",
            "AWS_SESSION_TOKEN": "stale",
            "AWS_BEARER_TOKEN_BEDROCK": "stale-api-key",
        }
        prompt = "Hello from the pasted lines"
        chat = [sys.executable, "-m", "bedrock_chat", "chat", "--no-stream", "--model", MODEL, prompt]
        result = subprocess.run(
            ["sh", "-c", f'{block}\nexec "$@"', "sh", *chat],
            env=environment,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
            cwd=REPO,
        )
        assert (result.returncode, result.stderr) == (0, "")
        reply = fake_reply(input_text=prompt, last_user_text=prompt, max_tokens=1024).text
        assert result.stdout.strip() == reply.strip()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("argv", "status", "needle"),
    [
        (["--port", "99999"], 2, "argument --port: '99999' must be between 0 and 65535"),
        (["--port", "-1"], 2, "argument --port: '-1' must be between 0 and 65535"),
        (["--host", "no-such-host.invalid"], 1, "cannot listen on no-such-host.invalid:0"),
        (["--port", "IN_USE"], 1, "Address already in use"),
    ],
)
@pytest.mark.parametrize("command", [["-m", "bedrock_chat.emulator"], ["-m", "bedrock_chat", "emulator"]])
def test_bind_failures_are_one_line(command: list[str], argv: list[str], status: int, needle: str) -> None:
    """A port out of range is a usage error (2); a host or port it cannot bind, one line and exit 1; no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        argv = [str(taken.getsockname()[1]) if arg == "IN_USE" else arg for arg in argv]
        result = subprocess.run(
            [sys.executable, *command, *argv], capture_output=True, text=True, timeout=STARTUP_TIMEOUT, cwd=REPO
        )
    assert result.returncode == status, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    assert needle in error_lines[0]
    if status == 1:
        assert result.stderr.count("\n") == 1
