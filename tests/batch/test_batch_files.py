"""``bedrock-chat batch``'s files: INPUT from pipes and bounded lines, OUTPUT that must be results, rewritten safely.

Pipes, file descriptors, special files and memory are exercised on a child process (``--emulator``);
the resume rules (what OUTPUT may hold, how ``--retry-errors`` rewrites it) in-process against the
``bedrock_emulator`` fixture, so the requests it received can be counted. Every wait on a child is
bounded by ``TIMEOUT``; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import child_environment

from bedrock_chat._batch.files import MAX_LINE_BYTES
from bedrock_chat.emulator import BedrockEmulator

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TIMEOUT = 60.0
RECORDS = 5


def line(i: int, prompt: str = "record") -> dict[str, Any]:
    """A Bedrock-form input line whose reply echoes ``<prompt> i``."""
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"{prompt} {i}"}],
    }
    return {"recordId": f"r{i}", "modelInput": body, "modelId": MODEL}


def jsonl(count: int = RECORDS, prompt: str = "record") -> bytes:
    """``count`` input lines."""
    return b"".join(json.dumps(line(i, prompt)).encode() + b"\n" for i in range(count))


def results(path: Path) -> dict[str, dict[str, Any]]:
    """OUTPUT's lines by record id (a record twice fails the test)."""
    found: dict[str, dict[str, Any]] = {}
    for raw in path.read_bytes().splitlines():
        parsed = json.loads(raw)
        assert parsed["recordId"] not in found
        found[parsed["recordId"]] = parsed
    return found


def all_answered(found: dict[str, dict[str, Any]], count: int = RECORDS) -> bool:
    """Every record has its own reply."""
    return sorted(found) == sorted(f"r{i}" for i in range(count)) and all(
        value["modelOutput"]["content"][0]["text"].split()[:2] == ["record", key[1:]] for key, value in found.items()
    )


# ---------------------------------------------------------------------------------------------- child processes


@pytest.fixture
def child_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A child environment without AWS_* variables or the developer's AWS files; children start in tmp_path."""
    monkeypatch.chdir(tmp_path)
    return child_environment(tmp_path)


def batch(source: str, output: str, *extra: str) -> list[str]:
    """The ``bedrock-chat batch --emulator`` command line."""
    return [sys.executable, "-m", "bedrock_chat", "batch", source, "-o", output, "--emulator", *extra]


def run(command: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` to its end (bounded), capturing its output."""
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(command, capture_output=True, env=env, timeout=TIMEOUT, check=False, **kwargs)


@contextlib.contextmanager
def fifo_fed(path: Path, data: bytes) -> Iterator[None]:
    """A named pipe at ``path`` that a thread fills with ``data`` once a reader opens it."""
    os.mkfifo(path)

    def write() -> None:
        with path.open("wb") as fifo:  # blocks until the child opens the pipe to read
            fifo.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield
    finally:
        if writer.is_alive():  # the child never opened the pipe: open it here so the writer returns
            reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            writer.join(TIMEOUT)
            os.close(reader)
        writer.join(TIMEOUT)


@pytest.mark.parametrize("kind", ["-", "/dev/stdin", "/dev/fd/N", "named pipe"])
def test_input_from_a_pipe_runs_every_record(tmp_path: Path, child_env: dict[str, str], kind: str) -> None:
    """Stdin, ``<(...)`` and a named pipe are read once (copied), so every record runs; never "done" with 0 sent."""
    output = tmp_path / "out.jsonl"
    data = jsonl()
    if kind in ("-", "/dev/stdin"):
        done = run(batch(kind, str(output)), child_env, input=data)
    elif kind == "/dev/fd/N":
        read_end, write_end = os.pipe()
        os.write(write_end, data)  # fits in the pipe's buffer: written before the child starts
        os.close(write_end)
        try:
            done = run(batch(f"/dev/fd/{read_end}", str(output)), child_env, pass_fds=(read_end,))
        finally:
            os.close(read_end)
    else:
        with fifo_fed(tmp_path / "fifo", data):
            done = run(batch(str(tmp_path / "fifo"), str(output)), child_env)
    assert done.returncode == 0, done.stderr
    assert f"done: {RECORDS} ok, 0 failed".encode() in done.stderr
    assert all_answered(results(output))


def test_a_piped_rerun_resumes(tmp_path: Path, child_env: dict[str, str]) -> None:
    """The same lines piped again find their results in OUTPUT: nothing is redone, the run says so."""
    output = tmp_path / "out.jsonl"
    assert run(batch("-", str(output)), child_env, input=jsonl(3)).returncode == 0
    again = run(batch("-", str(output)), child_env, input=jsonl())
    assert again.returncode == 0, again.stderr
    assert f"done: {RECORDS - 3} ok, 0 failed, 3 already in the output".encode() in again.stderr
    assert all_answered(results(output))


#: Reports the largest resident set of its child (the command it runs), in KiB, as its last stderr line.
_MAX_RSS = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]);"
    " sys.stderr.write(f'\\nmaxrss {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n'); sys.exit(code)"
)
#: A line without a newline, much longer than the bound (a sparse file: no disk is used).
_HUGE = 16 * MAX_LINE_BYTES


@pytest.mark.parametrize("kind", ["file", "stdin"])
def test_a_line_without_end_is_malformed_in_bounded_memory(
    tmp_path: Path, child_env: dict[str, str], kind: str
) -> None:
    """A 400 MB line (``/dev/zero``-like) is reported as too long, and memory stays far below its size."""
    zeros = tmp_path / "zeros"
    with zeros.open("wb") as sparse:
        sparse.truncate(_HUGE)
    command = [sys.executable, "-c", _MAX_RSS, *batch("-" if kind == "stdin" else str(zeros), str(tmp_path / "o"))]
    with zeros.open("rb") as stdin:
        done = run(command, child_env, stdin=stdin)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert f":1: malformed line skipped: longer than {MAX_LINE_BYTES:,} bytes" in err
    assert "done: 0 ok, 0 failed, 1 malformed input lines skipped" in err
    max_rss = int(err.rsplit("maxrss ", 1)[1]) * 1024
    print(f"{kind}: {max_rss:,} bytes resident at most")  # shown with -s
    assert max_rss < _HUGE / 2, f"{max_rss:,} bytes resident for a {_HUGE:,}-byte line"


@pytest.mark.parametrize("output", ["/dev/null", "/dev/stdout", "-"])
def test_special_outputs_are_written_not_read(tmp_path: Path, child_env: dict[str, str], output: str) -> None:
    """``/dev/null``, ``/dev/stdout`` into a pipe and ``-`` take the result lines; nothing blocks reading them back."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl())
    done = run(batch(str(source), output), child_env)
    assert done.returncode == 0, done.stderr
    assert f"done: {RECORDS} ok, 0 failed".encode() in done.stderr
    if output != "/dev/null":
        (tmp_path / "stdout").write_bytes(done.stdout)
        assert all_answered(results(tmp_path / "stdout"))


def test_a_full_output_is_a_clear_error(tmp_path: Path, child_env: dict[str, str]) -> None:
    """``-o /dev/full``: exit 1 with one line naming OUTPUT and the reason, no traceback, no claim of "done"."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl())
    done = run(batch(str(source), "/dev/full"), child_env)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert "bedrock-chat batch: cannot write to OUTPUT /dev/full: No space left on device" in err
    assert "Traceback" not in err
    assert "stopped with 0 of 5 results written" in err
    assert "done:" not in err


def test_retry_errors_needs_a_file_output(tmp_path: Path, child_env: dict[str, str]) -> None:
    """``--retry-errors`` rewrites OUTPUT, which a device or pipe cannot be: a usage error, exit 2."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl())
    done = run(batch(str(source), "/dev/null", "--retry-errors"), child_env)
    assert done.returncode == 2
    assert b"--retry-errors rewrites OUTPUT" in done.stderr


# ---------------------------------------------------------------------------------------------- in-process runs


def test_an_over_long_line_is_malformed_and_the_rest_runs(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line over the bound is reported by number, never parsed or sent; the lines around it run."""
    big = b'{"recordId": "big", "modelInput": {"x": "' + b"a" * MAX_LINE_BYTES + b'"}}\n'
    lines = jsonl(3).splitlines(keepends=True)
    (tmp_path / "in.jsonl").write_bytes(lines[0] + big + lines[1] + lines[2])
    assert run_batch("in.jsonl", "-o", "out.jsonl") == 1
    err = capsys.readouterr().err
    assert f"in.jsonl:2: malformed line skipped: longer than {MAX_LINE_BYTES:,} bytes" in err
    assert all_answered(results(tmp_path / "out.jsonl"), 3)
    assert len(bedrock_emulator.requests) == 3


def test_an_input_file_as_output_is_refused(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OUTPUT lines with a recordId but neither modelOutput nor error are not results: refused, named, untouched."""
    (tmp_path / "in.jsonl").write_bytes(jsonl())
    other = tmp_path / "other.jsonl"
    other.write_bytes(jsonl(prompt="other"))
    assert run_batch("in.jsonl", "-o", "other.jsonl") == 1
    err = capsys.readouterr().err
    assert "other.jsonl:1: not a result line (it has neither modelOutput nor error; is OUTPUT an input file?)" in err
    assert other.read_bytes() == jsonl(prompt="other")
    assert len(bedrock_emulator.requests) == 0


def test_another_inputs_output_is_refused(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Results for the same ids but other model inputs answer another input: refused, each line named."""
    (tmp_path / "old.jsonl").write_bytes(jsonl(prompt="old"))
    assert run_batch("old.jsonl", "-o", "out.jsonl") == 0
    before = (tmp_path / "out.jsonl").read_bytes()
    capsys.readouterr()
    (tmp_path / "new.jsonl").write_bytes(jsonl(2, prompt="old") + jsonl(prompt="new")[len(jsonl(2, prompt="new")) :])
    assert run_batch("new.jsonl", "-o", "out.jsonl") == 1
    err = capsys.readouterr().err
    for number in range(3, RECORDS + 1):
        assert f"new.jsonl:{number}: out.jsonl has a result for 'r{number - 1}', but for another modelInput" in err
    assert "new.jsonl:1:" not in err
    assert "use another OUTPUT (nothing was sent)" in err
    assert (tmp_path / "out.jsonl").read_bytes() == before
    assert len(bedrock_emulator.requests) == RECORDS


def test_a_failed_record_with_a_fixed_input_is_redone(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path
) -> None:
    """An error line's input may change under ``--retry-errors`` (the record is redone): that is no conflict."""
    (tmp_path / "in.jsonl").write_bytes(jsonl())
    _with_an_error_line(run_batch, bedrock_emulator, "out.jsonl")
    failed = next(key for key, value in results(tmp_path / "out.jsonl").items() if "error" in value)
    fixed = [line(i) for i in range(RECORDS)]
    fixed[int(failed[1:])]["modelInput"]["max_tokens"] = 17
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(value) + "\n" for value in fixed))
    assert run_batch("in.jsonl", "-o", "out.jsonl", "--retry-errors") == 0
    output = results(tmp_path / "out.jsonl")
    assert all_answered(output)
    assert output[failed]["modelInput"]["max_tokens"] == 17


def test_a_hard_link_to_the_input_is_the_same_file(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """INPUT and OUTPUT are compared by identity: a hard link (or a symlink) to INPUT is refused as OUTPUT."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl())
    os.link(source, tmp_path / "hard.jsonl")
    (tmp_path / "soft.jsonl").symlink_to(tmp_path / "hard.jsonl")
    for output in ("hard.jsonl", "soft.jsonl"):
        assert run_batch("in.jsonl", "-o", output) == 1
        assert "INPUT and OUTPUT are the same file" in capsys.readouterr().err
    assert source.read_bytes() == jsonl()
    assert len(bedrock_emulator.requests) == 0


def _with_an_error_line(run_batch: Any, emulator: BedrockEmulator, output: str) -> None:
    """Run in.jsonl into ``output`` with the first record failing (an error line to retry)."""
    emulator.enqueue_faults("validation")
    assert run_batch("in.jsonl", "-o", output, "--concurrency", "1", "--max-retries", "0") == 1


def test_retry_errors_rewrites_through_a_symlink_keeping_the_mode(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path
) -> None:
    """``--retry-errors`` on a symlinked, read-only OUTPUT: the link stays a link, its target is rewritten, mode 444."""
    (tmp_path / "in.jsonl").write_bytes(jsonl())
    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "results.jsonl"
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    _with_an_error_line(run_batch, bedrock_emulator, "out.jsonl")
    target.chmod(0o444)
    assert run_batch("in.jsonl", "-o", "out.jsonl", "--retry-errors") == 0
    assert link.is_symlink()
    assert link.resolve() == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o444
    assert all_answered(results(target))
    assert sorted(path.name for path in (tmp_path / "kept").iterdir()) == ["results.jsonl"]  # no copy left over


def test_retry_errors_refuses_a_hard_linked_output(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rewrite would leave the other hard link with the old lines: refused before anything is sent."""
    (tmp_path / "in.jsonl").write_bytes(jsonl())
    _with_an_error_line(run_batch, bedrock_emulator, "out.jsonl")
    os.link(tmp_path / "out.jsonl", tmp_path / "copy.jsonl")
    before = (tmp_path / "out.jsonl").read_bytes()
    sent = len(bedrock_emulator.requests)
    capsys.readouterr()
    assert run_batch("in.jsonl", "-o", "out.jsonl", "--retry-errors") == 1
    assert "out.jsonl has 2 hard links" in capsys.readouterr().err
    assert (tmp_path / "out.jsonl").read_bytes() == before == (tmp_path / "copy.jsonl").read_bytes()
    assert len(bedrock_emulator.requests) == sent


def test_error_lines_alone_never_exit_0(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun without ``--retry-errors`` skips error lines but is not "every record answered": exit 1, counted."""
    (tmp_path / "in.jsonl").write_bytes(jsonl())
    _with_an_error_line(run_batch, bedrock_emulator, "out.jsonl")
    sent = len(bedrock_emulator.requests)
    capsys.readouterr()
    assert run_batch("in.jsonl", "-o", "out.jsonl") == 1
    err = capsys.readouterr().err
    assert f"done: 0 ok, 0 failed, {RECORDS} already in the output (1 of them errors)" in err
    assert "1 record(s) of INPUT have only an error line in OUTPUT; rerun with --retry-errors to redo them" in err
    assert len(bedrock_emulator.requests) == sent
    assert run_batch("in.jsonl", "-o", "out.jsonl", "--retry-errors") == 0
    assert all_answered(results(tmp_path / "out.jsonl"))


def _lines(*numbers: int) -> bytes:
    return b"".join(json.dumps(line(i)).encode() + b"\n" for i in numbers)


def test_a_whole_last_line_without_newline_is_kept(
    run_batch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OUTPUT's last line lacks only its newline: it is a result (of a record not in this INPUT) and stays."""
    (tmp_path / "in34.jsonl").write_bytes(_lines(3, 4))
    (tmp_path / "in012.jsonl").write_bytes(_lines(0, 1, 2))
    assert run_batch("in34.jsonl", "-o", "out.jsonl") == 0
    output = tmp_path / "out.jsonl"
    output.write_bytes(output.read_bytes().removesuffix(b"\n"))
    capsys.readouterr()
    assert run_batch("in012.jsonl", "-o", "out.jsonl") == 0
    assert "incomplete" not in capsys.readouterr().err
    assert all_answered(results(output))  # r3 and r4 kept, each on a line of its own


@pytest.mark.parametrize("redone", [True, False])
def test_a_torn_last_line_is_cut_and_its_fate_said(
    run_batch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], redone: bool
) -> None:
    """A last line cut mid-write is removed; the message says whether this run redoes its record."""
    (tmp_path / "in.jsonl").write_bytes(jsonl())
    assert run_batch("in.jsonl", "-o", "out.jsonl") == 0
    output = tmp_path / "out.jsonl"
    kept, last = output.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)
    torn = json.loads(last)["recordId"]
    (tmp_path / "others.jsonl").write_bytes(_lines(*(i for i in range(RECORDS) if f"r{i}" != torn)))
    output.write_bytes(kept + b"\n" + last[: len(last) // 2])
    capsys.readouterr()
    assert run_batch("in.jsonl" if redone else "others.jsonl", "-o", "out.jsonl") == 0
    err = capsys.readouterr().err
    assert "out.jsonl: an incomplete last line (an interrupted write) was removed" in err
    if redone:
        assert f"its record {torn!r} is redone" in err
        assert all_answered(results(output))
    else:
        assert f"its record {torn!r} is not in this INPUT; a rerun of the INPUT that has it redoes it" in err
        assert torn not in results(output)
        assert run_batch("in.jsonl", "-o", "out.jsonl") == 0  # the INPUT that has it
        assert all_answered(results(output))


def test_stdout_appended_to_input_is_the_same_file(tmp_path: Path, child_env: dict[str, str]) -> None:
    """``-o - >> INPUT``: stdout is INPUT itself, compared by identity like a path; refused, INPUT untouched."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl())
    with source.open("ab") as appended:
        done = subprocess.run(
            batch(str(source), "-"),
            stdin=subprocess.DEVNULL,
            stdout=appended,
            stderr=subprocess.PIPE,
            env=child_env,
            timeout=TIMEOUT,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert b"INPUT and OUTPUT are the same file" in done.stderr
    assert source.read_bytes() == jsonl()
