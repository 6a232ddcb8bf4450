"""End-to-end tests of the ``bedrock-chat`` command, run in subprocesses against its built-in emulator.

Every child gets a private, empty AWS environment, every wait is bounded (``select`` with a deadline,
``timeout=`` on every ``subprocess`` call) and nothing sleeps to synchronise. Expected replies come from
the emulator's deterministic fake model (:func:`bedrock_chat.emulator.fake_reply`), whose rules are API.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import child_environment

from bedrock_chat import MODELS, AnthropicBedrockSync
from bedrock_chat._cli.chat import EMULATOR_NOTE
from bedrock_chat._core.models import SamplingRule
from bedrock_chat.emulator import count_tokens, fake_reply
from bedrock_chat.emulator._cli import add_fault_arguments

#: Upper bound of any single wait on a child process (seconds); a healthy run needs a fraction of it.
TIMEOUT = 60.0
MESSAGES_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TEXT_MODEL = "anthropic.claude-v2"
#: What the CLI sends as max_tokens unless --max-tokens says otherwise.
DEFAULT_MAX_TOKENS = 1024
REQUEST_ID = re.compile(r"\[request id [0-9a-f-]{36}\]")

#: Run by the child on a pseudo-terminal: take the pty (its stdin) as controlling terminal, so that a
#: typed ^C becomes SIGINT, then become ``python -m bedrock_chat ...``. Doing this in the child's own
#: code (not with ``preexec_fn``/``pty.fork``) keeps the test process free of fork-with-threads hazards.
_TAKE_TTY_AND_EXEC = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A child environment with no AWS_* variable, HOME and the AWS files in tmp_path, and no metadata lookups."""
    home = tmp_path / "home"
    home.mkdir()
    return child_environment(home, HOME=str(home), PYTHONUNBUFFERED="1")


def run_cli(
    env: dict[str, str], *args: str, stdin_text: str | None = None, command: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bedrock_chat ARGS`` (or the ``command`` executable) to completion, bounded by TIMEOUT."""
    argv = [command] if command is not None else [sys.executable, "-m", "bedrock_chat"]
    extra: dict[str, Any] = {"input": stdin_text} if stdin_text is not None else {"stdin": subprocess.DEVNULL}
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False, **extra
    )


def chat_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    """The parsed ``chat --emulator --json ARGS`` result (the run must succeed quietly)."""
    result = run_cli(env, "chat", "--emulator", "--json", *args)
    assert (result.returncode, result.stderr) == (0, "")
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def expected_reply(
    input_text: str, last_user_text: str | None = None, *, max_tokens: int = DEFAULT_MAX_TOKENS, **kwargs: Any
) -> str:
    """The fake model's reply text to a Messages request whose texts join to ``input_text``."""
    last = input_text if last_user_text is None else last_user_text
    return fake_reply(input_text=input_text, last_user_text=last, max_tokens=max_tokens, **kwargs).text


def assert_one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1, exactly one line on stderr containing every needle, and no traceback; returns the line."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def assert_usage_line(result: subprocess.CompletedProcess[str], command: str, flag: str) -> str:
    """Exit 2, nothing on stdout, and exactly one stderr line naming ``flag`` as argparse does; returns the line."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"bedrock-chat {command}: error: argument {flag}: "), lines[0]
    return lines[0]


class FdReader:
    """Blocking reads of a pipe or pty master, each bounded by a deadline (select), never by sleeping."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def read_some(self, deadline: float) -> bytes:
        """Wait until ``deadline`` for data and return what is there; b"" at end of file."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError(f"no output before the deadline; so far {self.buffer!r}")
        try:
            return os.read(self.fd, 65536)
        except OSError as exc:  # a pty master reads EIO once the child's side is closed
            if exc.errno != errno.EIO:
                raise
            return b""

    def read_until(self, token: bytes, timeout: float = TIMEOUT) -> bytes:
        """Everything up to and including the next ``token`` (the rest stays buffered)."""
        deadline = time.monotonic() + timeout
        while token not in self.buffer:
            data = self.read_some(deadline)
            if not data:
                raise EOFError(f"end of output before {token!r}; got {self.buffer!r}")
            self.buffer += data
        end = self.buffer.index(token) + len(token)
        head, self.buffer = self.buffer[:end], self.buffer[end:]
        return head

    def read_to_eof(self, timeout: float = TIMEOUT) -> bytes:
        """Everything until end of file."""
        deadline = time.monotonic() + timeout
        while data := self.read_some(deadline):
            self.buffer += data
        rest, self.buffer = self.buffer, b""
        return rest


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(TIMEOUT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def spawn(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m bedrock_chat ARGS`` with piped stdout/stderr; killed and reaped on the way out."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bedrock_chat", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        yield proc
    finally:
        _reap(proc)


@contextlib.contextmanager
def spawn_on_pty(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[bytes], FdReader]]:
    """``python -m bedrock_chat ARGS`` on a new pseudo-terminal (its controlling terminal); yields it and the master."""
    master, slave = os.openpty()
    try:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _TAKE_TTY_AND_EXEC, "-m", "bedrock_chat", *args],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        try:
            yield proc, FdReader(master)
        finally:
            _reap(proc)
    finally:
        os.close(master)


# -- one-shot chat ----------------------------------------------------------------------------------


def test_one_shot_streams_the_reply_to_stdout(cli_env: dict[str, str]) -> None:
    """A one-shot chat prints exactly the reply (the --json run's completion) and nothing on stderr."""
    result = run_cli(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL, "Hello!")
    completion = chat_json(cli_env, "--model", MESSAGES_MODEL, "Hello!")["completion"]
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == completion + "\n"
    assert completion == expected_reply("Hello!")


def test_console_script_runs_the_same_command(cli_env: dict[str, str]) -> None:
    """The installed ``bedrock-chat`` script behaves like ``python -m bedrock_chat``."""
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    script = shutil.which("bedrock-chat", path=search_path)
    if script is None:
        pytest.skip("the bedrock-chat console script is not installed")
    result = run_cli(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL, "Hello!", command=script)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == expected_reply("Hello!") + "\n"


@pytest.mark.parametrize("prompt_args", [["-"], []], ids=["dash", "no-prompt-non-tty"])
def test_prompt_read_from_stdin(cli_env: dict[str, str], prompt_args: list[str]) -> None:
    """``chat -`` and ``chat`` with a non-terminal stdin send all of stdin as the prompt."""
    prompt = "first line\nsecond line\n"
    from_argv = run_cli(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL, prompt)
    result = run_cli(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL, *prompt_args, stdin_text=prompt)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.split()[:4] == ["first", "line", "second", "line"]  # the echo: both lines arrived
    assert result.stdout == from_argv.stdout


def test_empty_stdin_prompt_is_a_usage_error(cli_env: dict[str, str]) -> None:
    """An empty prompt on stdin exits 2 with a message, sending nothing."""
    result = run_cli(cli_env, "chat", "--emulator", "-", stdin_text="  \n")
    assert result.returncode == 2
    assert "prompt is empty" in result.stderr
    assert result.stdout == ""


def test_json_prints_the_whole_completion(cli_env: dict[str, str]) -> None:
    """--json prints messages, completion, stop reason, usage and request id as one JSON document."""
    prompt = "Hello there"
    chat = chat_json(cli_env, "--model", MESSAGES_MODEL, prompt)
    completion = expected_reply(prompt)
    assert chat["completion"] == completion
    assert chat["messages"] == [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": completion},
    ]
    assert chat["stop_reason"] == "end_turn"
    assert chat["stop"] is None
    assert chat["model"] == MESSAGES_MODEL
    assert chat["usage"]["input_tokens"] == count_tokens(prompt)
    assert chat["usage"]["output_tokens"] == count_tokens(completion)
    assert isinstance(chat["request_id"], str)
    assert chat["request_id"]


def test_no_stream_prints_the_whole_reply(cli_env: dict[str, str]) -> None:
    """--no-stream prints the same text as streaming does."""
    result = run_cli(cli_env, "chat", "--emulator", "--no-stream", "--model", MESSAGES_MODEL, "Hello there")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == expected_reply("Hello there") + "\n"


def test_system_prompt_is_sent(cli_env: dict[str, str]) -> None:
    """--system reaches the model: it counts as input and changes the (seeded) reply."""
    chat = chat_json(cli_env, "--model", MESSAGES_MODEL, "--system", "Be brief", "Hello there")
    assert chat["usage"]["input_tokens"] == count_tokens("Be brief Hello there")
    assert chat["completion"] == expected_reply("Be brief\nHello there", "Hello there")
    assert chat["completion"] != expected_reply("Hello there")


def test_stop_sequences_cut_the_reply(cli_env: dict[str, str]) -> None:
    """Repeated --stop flags are all sent; the first one hit ends the reply with stop_reason stop_sequence."""
    full = expected_reply("Hello!")
    word = full.split()[2]  # a filler word: the reply is the echo ("Hello!") plus filler
    cut = full[: full.find(word)]
    chat = chat_json(cli_env, "--model", MESSAGES_MODEL, "--stop", "zzz-never", "--stop", word, "Hello!")
    assert (chat["completion"], chat["stop_reason"], chat["stop"]) == (cut, "stop_sequence", word)
    streamed = run_cli(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL, "--stop", word, "Hello!")
    assert (streamed.returncode, streamed.stdout) == (0, cut + "\n")


def test_max_tokens_limits_the_reply(cli_env: dict[str, str]) -> None:
    """--max-tokens 3 yields exactly 3 output tokens and stop_reason max_tokens."""
    chat = chat_json(cli_env, "--model", MESSAGES_MODEL, "--max-tokens", "3", "Hello there")
    assert chat["stop_reason"] == "max_tokens"
    assert chat["usage"]["output_tokens"] == 3
    assert chat["completion"] == expected_reply("Hello there", max_tokens=3)


def test_sampling_and_region_flags_are_accepted(cli_env: dict[str, str]) -> None:
    """--temperature, --top-p, --top-k and --region are sent and accepted by the (validating) emulator."""
    args = ["--temperature", "0.5", "--top-p", "0.9", "--top-k", "10", "--region", "eu-west-1"]
    chat = chat_json(cli_env, "--model", MESSAGES_MODEL, *args, "Hello there")
    assert chat["completion"] == expected_reply("Hello there")


def test_text_completions_model(cli_env: dict[str, str]) -> None:
    """A text-completions model (Claude 2) answers through the CLI; its built-in Human stop reads as end_turn."""
    chat = chat_json(cli_env, "--model", TEXT_MODEL, "Hello there")
    assert chat["model"] == TEXT_MODEL
    assert chat["completion"].split()[:2] == ["Hello", "there"]  # the fake model echoes the last user turn
    assert not chat["completion"].startswith(" ")  # the text API's leading space is stripped
    assert (chat["stop_reason"], chat["stop"]) == ("end_turn", None)
    assert chat["usage"]["output_tokens"] == count_tokens(chat["completion"])
    streamed = run_cli(cli_env, "chat", "--emulator", "--model", TEXT_MODEL, "Hello there")
    assert (streamed.returncode, streamed.stdout) == (0, chat["completion"] + "\n")


def test_streaming_output_arrives_before_the_reply_ends(cli_env: dict[str, str]) -> None:
    """With a slow stream, the first text is read while the process still runs, well before the rest."""
    args = ["--model", MESSAGES_MODEL, "--chunk-delay", "0.2", "--chunk-tokens", "1", "--reply-tokens", "5"]
    full = (expected_reply("Hello there", reply_tokens=5) + "\n").encode()
    with spawn(cli_env, "chat", "--emulator", *args, "Hello there") as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        reader = FdReader(proc.stdout.fileno())
        first = reader.read_some(time.monotonic() + TIMEOUT)
        still_running = proc.poll() is None
        rest = reader.read_to_eof()
        assert proc.wait(TIMEOUT) == 0
        assert proc.stderr.read() == b""
    assert still_running
    assert first
    assert len(first) < len(full)  # at least four more frames, 0.2 s apart, were still to come
    assert first + rest == full


def test_interrupt_during_one_shot_exits_130(cli_env: dict[str, str]) -> None:
    """SIGINT while a reply streams ends the command with exit code 130 and no traceback."""
    args = ["--model", MESSAGES_MODEL, "--chunk-delay", "0.5", "--reply-tokens", "50"]
    with spawn(cli_env, "chat", "--emulator", *args, "Hello there") as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert FdReader(proc.stdout.fileno()).read_some(time.monotonic() + TIMEOUT)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT) == 130
        assert b"Traceback" not in proc.stderr.read()


# -- errors -----------------------------------------------------------------------------------------


def test_missing_credentials_is_one_line_with_a_hint(cli_env: dict[str, str]) -> None:
    """Without credentials: exit 1, one line in the command line's terms (variables, --profile), and --emulator."""
    result = run_cli({**cli_env, "AWS_REGION": "us-east-1"}, "chat", "Hello!")
    needles = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "--profile", "AWS_PROFILE", "--emulator"]
    line = assert_one_error_line(result, "CredentialsError", *needles)
    assert "access_key" not in line  # the Python argument names of the library's message
    assert result.stdout == ""


def test_missing_region_is_one_line_with_a_hint(cli_env: dict[str, str]) -> None:
    """Without a region: exit 1, one line naming --region and the variables (not region=...), and --emulator."""
    result = run_cli(cli_env, "chat", "Hello!")
    line = assert_one_error_line(result, "ConfigurationError", "--region", "AWS_REGION", "--emulator")
    assert "region=" not in line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--profile", "no-such-profile"], "no-such-profile"),
        (["--endpoint-url", "http://bedrock.example"], "--endpoint-url: "),
    ],
    ids=["unknown-profile", "plain-http-endpoint"],
)
def test_configuration_errors_the_emulator_cannot_fix_have_no_hint(
    cli_env: dict[str, str], args: list[str], needle: str
) -> None:
    """A named profile that does not exist, or a plain-http endpoint: exit 1, one line, no --emulator hint."""
    result = run_cli(cli_env, "chat", "--region", "us-east-1", *args, "Hello!")
    line = assert_one_error_line(result, needle)
    assert "--emulator" not in line


def test_service_error_is_one_line_with_request_id(cli_env: dict[str, str]) -> None:
    """A non-retryable service error exits 1 with the error class, message and request id on one line."""
    result = run_cli(cli_env, "chat", "--emulator", "--faults", "validation", "Hello!")
    line = assert_one_error_line(result, "ValidationError")
    assert REQUEST_ID.search(line)
    assert result.stdout == ""


def test_throttling_after_retries_is_one_line_with_request_id(cli_env: dict[str, str]) -> None:
    """Throttled on every attempt (the CLI retries with real backoff), the command exits 1 with ThrottlingError."""
    result = run_cli(cli_env, "chat", "--emulator", "--faults", "throttle,throttle,throttle", "Hello!")
    line = assert_one_error_line(result, "ThrottlingError")
    assert REQUEST_ID.search(line)


def test_mid_stream_error_keeps_partial_text_on_its_own_line(cli_env: dict[str, str]) -> None:
    """An error mid-stream leaves the partial reply on stdout ending with a newline and reports one line."""
    result = run_cli(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL, "--faults", "stream_exception", "Hi")
    assert_one_error_line(result, "ModelStreamError")
    assert result.stdout.endswith("\n")
    assert expected_reply("Hi").startswith(result.stdout[:-1])


@pytest.mark.parametrize(
    "args",
    [
        ["chat", "--temperature", "3", "x"],
        ["chat", "--top-p", "1.5", "x"],
        ["chat", "--top-k", "501", "x"],
        ["chat", "--max-tokens", "0", "x"],
        ["chat", "--max-tokens", "many", "x"],
        ["chat", "--faults", "no-such-fault", "x"],
        ["chat", "--no-such-flag", "x"],
        ["no-such-command"],
        [],
    ],
    ids=lambda args: " ".join(args) or "no-subcommand",
)
def test_usage_errors_exit_2(cli_env: dict[str, str], args: list[str]) -> None:
    """Bad flag values, unknown flags and a missing subcommand are argparse usage errors: exit 2."""
    result = run_cli(cli_env, *args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def _exclusive_sampling_model() -> str:
    """A model that refuses temperature and top_p together."""
    return next(info.id for info in MODELS if info.sampling is SamplingRule.TEMPERATURE_OR_TOP_P)


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--emulator", "--model", MESSAGES_MODEL, "--stop", ""], "--stop"),
        (["--model", MESSAGES_MODEL, "--stop", "ok", "--stop", ""], "--stop"),
        (["--emulator", "--model", MESSAGES_MODEL, "--system", ""], "--system"),
        (["--model", MESSAGES_MODEL, "--system", ""], "--system"),
        (["--emulator", "--model", MESSAGES_MODEL, "--max-tokens", "999999"], "--max-tokens"),
        (["--model", MESSAGES_MODEL, "--max-tokens", "999999"], "--max-tokens"),
        (["--emulator", "--model", ""], "--model"),
        (["--model", "not a model id"], "--model"),
        (["--emulator", "--model", TEXT_MODEL, "--surface", "messages-endpoint"], "--surface"),
        (["--emulator", "--model", _exclusive_sampling_model(), "--temperature", "0.5", "--top-p", "0.5"], "--top-p"),
        (["--emulator", "--profile", "default"], "--profile"),
        (["--emulator", "--endpoint-url", "http://127.0.0.1:9"], "--endpoint-url"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_refused_flag_values_are_usage_errors(cli_env: dict[str, str], args: list[str], flag: str) -> None:
    """A flag value create() refuses exits 2 with one argparse-style line naming the flag, before anything else.

    Without --emulator nothing is configured (no region, no credentials): the usage error still comes first.
    """
    result = run_cli(cli_env, "chat", *args, "Hello!")
    line = assert_usage_line(result, "chat", flag)
    assert not re.search(r"\b(max_tokens_to_sample|stop_sequences|top_p|top_k)\b", line)  # Python names
    assert "add --emulator" not in line


@pytest.mark.parametrize(
    "args",
    [["--region", ""], ["--profile", ""], ["--endpoint-url", ""], ["--max-retries", "-1"]],
    ids=lambda args: " ".join(args),
)
def test_empty_connection_flags_are_usage_errors(cli_env: dict[str, str], args: list[str]) -> None:
    """An empty --region, --profile or --endpoint-url is refused by argparse (it was taken as "not given")."""
    result = run_cli(cli_env, "chat", "--emulator", *args, "Hello!")
    assert result.returncode == 2
    assert f"argument {args[0]}: " in result.stderr
    assert result.stdout == ""


def _fault_flags() -> list[str]:
    """Every flag of the emulator's answers and faults."""
    parser = argparse.ArgumentParser(add_help=False)
    add_fault_arguments(parser)
    return [action.option_strings[0] for action in parser._actions]


@pytest.mark.parametrize(("flag", "value"), [("--faults", "throttle"), ("--chunk-delay", "0.1"), ("--seed", "7")])
def test_emulator_flags_without_emulator_are_usage_errors(cli_env: dict[str, str], flag: str, value: str) -> None:
    """A fault or fake-model flag without --emulator would be ignored: it is a usage error naming the flag."""
    assert flag in _fault_flags()
    assert_usage_line(run_cli(cli_env, "chat", flag, value, "Hello!"), "chat", flag)


def test_batch_shares_the_flag_checks(cli_env: dict[str, str], tmp_path: Path) -> None:
    """``batch`` refuses the same flag mistakes as chat, exit 2, before its OUTPUT is created."""
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    for args, flag in ((["--faults", "throttle"], "--faults"), (["--emulator", "--profile", "default"], "--profile")):
        result = run_cli(cli_env, "batch", str(source), "-o", str(target), *args)
        assert_usage_line(result, "batch", flag)
        assert not target.exists()


def test_empty_model_variable_means_the_default(cli_env: dict[str, str]) -> None:
    """BEDROCK_CHAT_MODEL="" falls back to the built-in default; a set one is used."""
    unset = chat_json(cli_env, "Hello!")["model"]
    assert chat_json({**cli_env, "BEDROCK_CHAT_MODEL": ""}, "Hello!")["model"] == unset
    assert chat_json({**cli_env, "BEDROCK_CHAT_MODEL": MESSAGES_MODEL}, "Hello!")["model"] == MESSAGES_MODEL
    assert unset != MESSAGES_MODEL


@pytest.mark.parametrize(
    ("max_retries", "faults", "code"),
    [("0", "internal_error", 1), ("1", "internal_error", 0), ("1", "internal_error,internal_error", 1)],
)
def test_max_retries_bounds_the_retries(cli_env: dict[str, str], max_retries: str, faults: str, code: int) -> None:
    """--max-retries N: N retries after the first attempt, no more (the scripted 500s come first)."""
    args = ["--model", MESSAGES_MODEL, "--max-retries", max_retries, "--faults", faults]
    result = run_cli(cli_env, "chat", "--emulator", *args, "Hello!")
    if code:
        assert_one_error_line(result, "InternalServerError")
    else:
        assert (result.returncode, result.stderr, result.stdout) == (0, "", expected_reply("Hello!") + "\n")


def test_help_keeps_the_emulator_flags_apart(cli_env: dict[str, str]) -> None:
    """``chat --help``: the usage line names no emulator flag; they all sit in their own section, and only there."""
    result = run_cli(cli_env, "chat", "--help")
    assert result.returncode == 0
    sections = result.stdout.split("\n\n")
    usage = sections[0]
    assert usage.startswith("usage: bedrock-chat chat ")
    assert "--emulator" in usage
    faults = [section for section in sections if section.startswith("emulator answers and faults")]
    assert len(faults) == 1
    others = "\n\n".join(section for section in sections if section is not faults[0])
    for flag in _fault_flags():
        assert re.search(rf"^  {re.escape(flag)}\b", faults[0], re.MULTILINE), flag
        assert not re.search(rf"{re.escape(flag)}\b", others), flag
    assert "--max-retries" in others


# -- models and emulator ----------------------------------------------------------------------------


def test_models_lists_every_model_with_its_api(cli_env: dict[str, str]) -> None:
    """``models`` prints one table row per registry model: its id, then (among others) its API."""
    result = run_cli(cli_env, "models")
    assert (result.returncode, result.stderr) == (0, "")
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    for info in MODELS:
        assert info.id in rows, info.id
        assert info.api.value in rows[info.id], info.id


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_emulator_command_serves_until_signalled(cli_env: dict[str, str], stop_signal: signal.Signals) -> None:
    """``emulator --port 0`` prints its endpoint and credentials, answers a real client, and exits 0 on a signal."""
    with spawn(cli_env, "emulator", "--port", "0") as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        reader = FdReader(proc.stdout.fileno())
        endpoint_line = reader.read_until(b"\n").decode().strip()
        credentials_line = reader.read_until(b"\n").decode().strip()
        assert re.fullmatch(r"endpoint_url=http://127\.0\.0\.1:\d+", endpoint_line)
        settings = dict(item.split("=", 1) for item in [endpoint_line, *credentials_line.split()])
        with AnthropicBedrockSync(
            access_key=settings["access_key"],
            secret_key=settings["secret_key"],
            region=settings["region"],
            endpoint_url=settings["endpoint_url"],
        ) as client:
            chat = client.ChatCompletion.create(
                model=MESSAGES_MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens_to_sample=50
            )
        assert chat.completion == expected_reply("Hello there", max_tokens=50)
        proc.send_signal(stop_signal)
        assert proc.wait(TIMEOUT) == 0
        assert b"Traceback" not in proc.stderr.read()


# -- interactive ------------------------------------------------------------------------------------


def _turn(reader: FdReader, line: str) -> str:
    """Type ``line`` at the ``you>`` prompt and return the reply printed after ``claude>``."""
    os.write(reader.fd, line.encode() + b"\n")
    reader.read_until(b"claude> ")
    reply = reader.read_until(b"\r\n")[:-2].decode()
    reader.read_until(b"you> ")
    return reply


def test_interactive_keeps_history_and_resets(cli_env: dict[str, str]) -> None:
    """On a terminal, each turn sends the whole conversation; /reset forgets it; /exit exits 0."""
    with spawn_on_pty(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL) as (proc, reader):
        reader.read_until(b"you> ")
        first = _turn(reader, "hello there")
        assert first == expected_reply("hello there")
        second = _turn(reader, "and then")
        # The reply is seeded by every text of the request: the full two-turn conversation was sent.
        assert second == expected_reply(f"hello there\n{first}\nand then", "and then")
        assert second != expected_reply("and then")
        os.write(reader.fd, b"/reset\n")
        reader.read_until(b"(conversation cleared)")
        reader.read_until(b"you> ")
        assert _turn(reader, "and then") == expected_reply("and then")
        os.write(reader.fd, b"/exit\n")
        reader.read_to_eof()
        assert proc.wait(TIMEOUT) == 0


def test_interactive_help_and_unknown_commands_are_not_sent(cli_env: dict[str, str]) -> None:
    """/help lists the commands; an unknown /command is refused, not sent; // sends a line starting with /."""
    with spawn_on_pty(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL) as (proc, reader):
        reader.read_until(b"you> ")
        os.write(reader.fd, b"/help\n")
        listing = reader.read_until(b"you> ").decode()
        for command in ("/help", "/reset", "/exit"):
            assert command in listing
        os.write(reader.fd, b"/rest\n")
        refusal = reader.read_until(b"you> ").decode()
        assert "unknown command /rest" in refusal
        assert "claude> " not in listing + refusal
        # Nothing was sent: the next reply is a first turn's (the refused line is not in the history).
        assert _turn(reader, "hello there") == expected_reply("hello there")
        os.write(reader.fd, b"/reset\n")
        reader.read_until(b"you> ")
        assert _turn(reader, "//etc is a directory") == expected_reply("/etc is a directory")
        os.write(reader.fd, b"/exit\n")
        reader.read_to_eof()
        assert proc.wait(TIMEOUT) == 0


def test_emulator_note_on_a_terminal_once(cli_env: dict[str, str]) -> None:
    """On a terminal, --emulator says once (on stderr) that replies come from a fake model; the REPL too."""
    with spawn_on_pty(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL, "Hello!") as (proc, reader):
        output = reader.read_to_eof()
        assert proc.wait(TIMEOUT) == 0
    assert output.count(EMULATOR_NOTE.encode()) == 1
    assert output.index(EMULATOR_NOTE.encode()) < output.index(expected_reply("Hello!").encode())
    with spawn_on_pty(cli_env, "chat", "--emulator", "--model", MESSAGES_MODEL) as (proc, reader):
        seen = reader.read_until(b"you> ")
        for line in (b"hello there\n", b"and then\n"):
            os.write(reader.fd, line)
            seen += reader.read_until(b"you> ")
        os.write(reader.fd, b"/exit\n")
        seen += reader.read_to_eof()
        assert proc.wait(TIMEOUT) == 0
    assert seen.count(EMULATOR_NOTE.encode()) == 1


def test_interactive_ctrl_c_cancels_the_reply_and_ctrl_d_exits(cli_env: dict[str, str]) -> None:
    """Ctrl-C during a reply cancels it and returns to the prompt; the next turn works; Ctrl-D exits 0."""
    # One word per frame, 0.2 s apart: after the first word, a reply still has >= 1.4 s of frames to go.
    args = ["--model", MESSAGES_MODEL, "--chunk-delay", "0.2", "--chunk-tokens", "1", "--max-tokens", "6"]
    with spawn_on_pty(cli_env, "chat", "--emulator", *args) as (proc, reader):
        reader.read_until(b"you> ")
        os.write(reader.fd, b"hello there\n")
        reader.read_until(b"claude> ")
        reader.read_until(b"hello")  # the reply has started streaming
        os.write(reader.fd, b"\x03")
        partial = reader.read_until(b"(reply cancelled)")
        reader.read_until(b"you> ")
        assert expected_reply("hello there", max_tokens=6) not in "hello" + partial.decode()
        # The cancelled turn is not part of the history: the next reply is a first turn's.
        assert _turn(reader, "and then") == expected_reply("and then", max_tokens=6)
        os.write(reader.fd, b"\x04")
        reader.read_to_eof()
        assert proc.wait(TIMEOUT) == 0


@pytest.mark.parametrize(("flag", "requests_shown"), [("-v", False), ("-vv", True)])
def test_verbose_shows_retries_request_id_and_tokens(cli_env: dict[str, str], flag: str, requests_shown: bool) -> None:
    """-v: each retry, then the reply's request id and tokens, on stderr (stdout: the reply); -vv: requests too."""
    result = run_cli(cli_env, "chat", "--emulator", "--faults", "throttle", "--max-retries", "1", flag, "Hello!")
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected_reply("Hello!") + "\n"
    lines = result.stderr.splitlines()
    assert any(
        "INFO bedrock_chat._http.transport: retry 1 of 1" in line and "ThrottlingError" in line for line in lines
    )
    assert any("POST /model/" in line for line in lines) is requests_shown
    summary = lines[-1]
    assert summary.startswith("bedrock-chat: request id ")
    assert f"tokens 1 in, {len(expected_reply('Hello!').split())} out" in summary
    assert "Authorization" not in result.stderr
    assert "Signature" not in result.stderr
