"""``bedrock-chat batch``: JSONL in, Bedrock-shaped JSONL out, resumable, against the emulator.

Most runs are in-process against the ``bedrock_emulator`` fixture (credentials from the environment, so
the requests it received can be inspected); the kill-and-resume test runs the command in a child process
with ``--emulator`` and kills it with SIGKILL. Every wait on a child is bounded; nothing sleeps to
synchronise: the test reads the child's ``--verbose`` lines and acts on them.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from e2e_helpers import child_environment

from bedrock_chat import APIConnectionError, InvalidRequestError, ModelError, RequestTimeoutError, ValidationError
from bedrock_chat._batch.records import Record, result_line
from bedrock_chat._cli.main import main
from bedrock_chat._cli.progress import Progress
from bedrock_chat._core.responses import InvokeModelResponse
from bedrock_chat._types import Usage
from bedrock_chat.emulator import BedrockEmulator, Faults

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TEXT_MODEL = "anthropic.claude-v2"
#: Upper bound of any single wait on a child process (seconds).
TIMEOUT = 60.0


def bedrock_line(i: int, *, model: str | None = MODEL, record_id: str | None = None) -> dict[str, Any]:
    """A line in Bedrock batch inference's form, whose reply starts by echoing ``record i``."""
    line: dict[str, Any] = {
        "recordId": record_id or f"r{i}",
        "modelInput": {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"record {i}"}],
        },
    }
    if model is not None:
        line["modelId"] = model
    return line


def our_line(i: int, **extra: Any) -> dict[str, Any]:
    """A line in our form: create()'s arguments and an id."""
    return {"id": f"r{i}", "model": MODEL, "messages": [{"role": "user", "content": f"record {i}"}], **extra}


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """Write ``lines`` (dicts as JSON, strings as they are) one per line."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def read_output(path: Path) -> list[dict[str, Any]]:
    """Every line of an output file, parsed (a line that is not JSON fails the test)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def echoed(line: dict[str, Any]) -> str:
    """The first two words of a Messages reply body: the fake model echoes the prompt."""
    return " ".join(line["modelOutput"]["content"][0]["text"].split()[:2])


# ---------------------------------------------------------------------------------------------- the two forms


def test_both_input_forms_give_bedrock_shaped_lines(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bedrock-form and create()-form lines each give one ``{recordId, modelInput, modelOutput}`` line."""
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(0), our_line(1, max_tokens=16, temperature=0.5)])
    assert run_batch(str(source), "-o", "out.jsonl") == 0
    lines = {line["recordId"]: line for line in read_output(tmp_path / "out.jsonl")}
    assert set(lines) == {"r0", "r1"}
    assert lines["r0"]["modelInput"] == bedrock_line(0)["modelInput"]
    assert lines["r1"]["modelInput"] == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "record 1"}],
        "temperature": 0.5,
    }
    for record_id, line in lines.items():
        assert set(line) == {"recordId", "modelInput", "modelOutput"}
        assert line["modelOutput"]["type"] == "message"  # the model's raw body, as Bedrock writes it
        assert echoed(line) == f"record {record_id[1:]}"
    sent = {json.dumps(json.loads(request.body), sort_keys=True) for request in bedrock_emulator.requests}
    assert sent == {json.dumps(line["modelInput"], sort_keys=True) for line in lines.values()}
    summary = capsys.readouterr().err.splitlines()[-1]
    assert summary.startswith("bedrock-chat batch: done: 2 ok, 0 failed")


def test_model_flag_applies_to_lines_without_one(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path
) -> None:
    """A Bedrock-form line without modelId, and a create()-form line without model, use ``--model``."""
    text_line = {"id": "t", "messages": [{"role": "user", "content": "record 5"}]}
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(0, model=None), text_line])
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options)
    assert run_batch(str(source), "-o", "out.jsonl", "--model", MODEL) == 0
    assert {request.model_id for request in bedrock_emulator.requests} == {MODEL}
    assert run_batch(str(write_jsonl(tmp_path / "t.jsonl", [text_line])), "-o", "t.out", "--model", TEXT_MODEL) == 0
    (line,) = read_output(tmp_path / "t.out")
    assert line["modelInput"] == {"prompt": "\n\nHuman: record 5\n\nAssistant:", "max_tokens_to_sample": 256}
    assert line["modelOutput"]["completion"].split()[:2] == ["record", "5"]


def test_invalid_lines_are_400_records_without_a_request(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path
) -> None:
    """A line create() would refuse, or a bad modelInput/modelId, is its record's 400 error; nothing is sent for it."""
    lines = [
        our_line(0, messages=[]),
        our_line(1, temprature=0.5),
        our_line(2, stream=True),
        {**bedrock_line(3), "modelInput": "not an object"},
        {**bedrock_line(4), "modelId": ["a", "list"]},
        {"recordId": "r5", "prompt": "neither form"},
        our_line(6),
        '{"recordId": "r7", "modelInput": {"max_tokens": NaN}}',
        '{"recordId": "r8", "modelInput": {"messages": [{"role": "user", "content": "\\ud800"}]}}',
        '{"id": "r9", "messages": [{"role": "user", "content": "lone \\ud800"}]}',
    ]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    assert run_batch(str(source), "-o", "out.jsonl") == 1
    output = {line["recordId"]: line for line in read_output(tmp_path / "out.jsonl")}
    assert set(output) == {f"r{i}" for i in range(10)}
    for i in (0, 1, 2, 3, 4, 5, 7, 8, 9):
        assert output[f"r{i}"]["error"]["errorCode"] == 400, output[f"r{i}"]
    assert "messages" in output["r0"]["error"]["errorMessage"]
    assert "temprature" in output["r1"]["error"]["errorMessage"]
    assert output["r4"]["modelInput"] == bedrock_line(4)["modelInput"]
    assert "modelOutput" in output["r6"]
    assert len(bedrock_emulator.requests) == 1


def test_service_errors_become_error_lines(run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path) -> None:
    """A request the service refuses is written with its status as errorCode and the message; exit status 1."""
    bedrock_emulator.enqueue_faults("model_error")
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(0)])
    assert run_batch(str(source), "-o", "out.jsonl", "--max-retries", "0") == 1
    (line,) = read_output(tmp_path / "out.jsonl")
    assert line["error"]["errorCode"] == 424
    assert "ModelErrorException" in line["error"]["errorMessage"]
    assert line["modelInput"] == bedrock_line(0)["modelInput"]


# ---------------------------------------------------------------------------------------------- input problems


def test_malformed_lines_are_reported_and_the_rest_runs(
    run_batch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines that cannot be records are named by line number on stderr; every other record still runs."""
    source = write_jsonl(
        tmp_path / "in.jsonl",
        [bedrock_line(0), "{not json", "[1, 2]", "", {"recordId": 7, "modelInput": {}}, bedrock_line(1)],
    )
    with source.open("ab") as extra:
        extra.write(b'{"recordId": "\xff\xfe"}\n')
    assert run_batch(str(source), "-o", "out.jsonl") == 1
    err = capsys.readouterr().err
    assert f"{source}:7: malformed line skipped: not valid JSON" in err  # not UTF-8
    assert f"{source}:2: malformed line skipped: not valid JSON" in err
    assert f"{source}:3: malformed line skipped: a record must be a JSON object" in err
    assert f"{source}:5: malformed line skipped: the record id must be a non-empty string" in err
    assert ":4:" not in err  # a blank line is not a record
    assert "4 malformed input lines skipped" in err.splitlines()[-1]
    assert sorted(line["recordId"] for line in read_output(tmp_path / "out.jsonl")) == ["r0", "r1"]


def test_duplicate_record_ids_stop_the_run_before_any_request(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Repeated ids are an error naming every line involved; nothing is sent and no output is written."""
    source = write_jsonl(
        tmp_path / "in.jsonl", [bedrock_line(0), bedrock_line(1), bedrock_line(2, record_id="r0"), our_line(1)]
    )
    assert run_batch(str(source), "-o", "out.jsonl") == 1
    err = capsys.readouterr().err
    assert "record id 'r0' appears on lines 1, 3" in err
    assert "record id 'r1' appears on lines 2, 4" in err
    assert "nothing was sent" in err
    assert len(bedrock_emulator.requests) == 0
    assert not (tmp_path / "out.jsonl").exists()


def test_lines_without_an_id_get_their_line_number(run_batch: Any, tmp_path: Path) -> None:
    """A record without an id is named by its line number (11 digits), which stays stable on resume."""
    line = bedrock_line(0)
    del line["recordId"]
    source = write_jsonl(tmp_path / "in.jsonl", ["", line])
    assert run_batch(str(source), "-o", "out.jsonl") == 0
    assert [line["recordId"] for line in read_output(tmp_path / "out.jsonl")] == ["00000000002"]
    assert run_batch(str(source), "-o", "out.jsonl") == 0
    assert len(read_output(tmp_path / "out.jsonl")) == 1


def test_input_and_output_must_differ(run_batch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Appending results to the input file would corrupt it: refused."""
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(0)])
    assert run_batch(str(source), "-o", str(source)) == 1
    assert "same file" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- throttling at scale


def test_throttled_run_completes_one_to_one(run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path) -> None:
    """300 records under 30% throttling: exactly one line per record, each answering its own input."""
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, faults=Faults(throttle_rate=0.3, seed=3))
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(i) for i in range(300)])
    assert run_batch(str(source), "-o", "out.jsonl", "--max-retries", "50", "--concurrency", "8") == 0
    output = read_output(tmp_path / "out.jsonl")
    assert sorted(line["recordId"] for line in output) == sorted(f"r{i}" for i in range(300))
    assert all(echoed(line) == f"record {line['recordId'][1:]}" for line in output)
    assert any(request.status == 429 for request in bedrock_emulator.requests)


# ---------------------------------------------------------------------------------------------- resume


def test_a_torn_last_line_is_cut_and_its_record_redone(
    run_batch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output whose last line lost its end (a killed write) resumes: the fragment goes, the record is redone."""
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(i) for i in range(5)])
    assert run_batch(str(source), "-o", "out.jsonl") == 0
    output = tmp_path / "out.jsonl"
    data = output.read_bytes()
    torn_id = json.loads(data.splitlines()[-1])["recordId"]
    output.write_bytes(data[:-7])
    capsys.readouterr()
    assert run_batch(str(source), "-o", "out.jsonl") == 0
    err = capsys.readouterr().err
    assert "incomplete last line" in err
    assert "1 ok, 0 failed, 4 already in the output" in err
    lines = read_output(output)
    assert sorted(line["recordId"] for line in lines) == [f"r{i}" for i in range(5)]
    assert lines[-1]["recordId"] == torn_id


def test_an_unreadable_output_line_stops_the_resume(
    run_batch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A complete output line that is not a result is not guessed at: the run stops, naming the line."""
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(0)])
    write_jsonl(tmp_path / "out.jsonl", [{"recordId": "x", "modelOutput": {}}, "garbage"])
    assert run_batch(str(source), "-o", "out.jsonl") == 1
    assert "out.jsonl:2: not a result line" in capsys.readouterr().err


def test_retry_errors_redoes_failed_records_only(
    run_batch: Any, bedrock_emulator: BedrockEmulator, tmp_path: Path
) -> None:
    """``--retry-errors`` replaces error lines with new attempts; records that succeeded are not sent again."""
    bedrock_emulator.enqueue_faults("validation")
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(i) for i in range(4)])
    assert run_batch(str(source), "-o", "out.jsonl", "--concurrency", "1", "--max-retries", "0") == 1
    failed = [line["recordId"] for line in read_output(tmp_path / "out.jsonl") if "error" in line]
    assert failed == ["r0"]
    # Without the flag an error line is not redone, and it still is no answer: exit 1.
    assert run_batch(str(source), "-o", "out.jsonl") == 1
    assert len(bedrock_emulator.requests) == 4
    assert run_batch(str(source), "-o", "out.jsonl", "--retry-errors") == 0
    output = read_output(tmp_path / "out.jsonl")
    assert sorted(line["recordId"] for line in output) == [f"r{i}" for i in range(4)]
    assert all("modelOutput" in line for line in output)
    assert len(bedrock_emulator.requests) == 5


@pytest.fixture
def child_env(tmp_path: Path) -> dict[str, str]:
    """A child environment without AWS_* variables or the developer's AWS files."""
    return child_environment(tmp_path, PYTHONUNBUFFERED="1")


def interrupt_after(command: list[str], env: dict[str, str], records: int, sig: signal.Signals) -> tuple[int, str]:
    """Start ``command``, send ``sig`` once its ``--verbose`` stderr reports ``records`` done; (exit status, stderr)."""
    child = subprocess.Popen(command, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    assert child.stderr is not None
    buffered = b""
    deadline = time.monotonic() + TIMEOUT
    try:
        while buffered.count(b": ok\n") < records:
            left = deadline - time.monotonic()
            assert left > 0, f"the child did not finish {records} records in time"
            readable, _, _ = select.select([child.stderr], [], [], left)
            if readable:
                chunk = os.read(child.stderr.fileno(), 65536)
                assert chunk, f"the child ended early: {buffered.decode(errors='replace')}"
                buffered += chunk
        child.send_signal(sig)
        _, rest = child.communicate(timeout=TIMEOUT)
    finally:
        child.kill()
        child.wait(TIMEOUT)
        child.stderr.close()
    return child.returncode, (buffered + rest).decode(errors="replace")


def batch_command(source: Path, output: Path) -> list[str]:
    """A slowed-down ``batch --emulator -v`` run of ``source`` (so there is time to interrupt it)."""
    command = [sys.executable, "-m", "bedrock_chat", "batch", str(source), "-o", str(output), "--emulator"]
    return [*command, "--latency", "0.005", "--concurrency", "4", "-v"]


def test_killed_run_resumes_with_every_record_exactly_once(tmp_path: Path, child_env: dict[str, str]) -> None:
    """SIGKILL a run after 40 records are written, rerun it: every record appears in the output exactly once."""
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(i) for i in range(300)])
    output = tmp_path / "out.jsonl"
    command = batch_command(source, output)
    status, _ = interrupt_after(command, child_env, 40, signal.SIGKILL)
    assert status == -signal.SIGKILL
    written = output.read_bytes()
    assert 40 <= written.count(b"\n") < 300
    rerun = subprocess.run(
        command, capture_output=True, text=True, env=child_env, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    lines = read_output(output)
    assert sorted(line["recordId"] for line in lines) == sorted(f"r{i}" for i in range(300))
    assert all(echoed(line) == f"record {line['recordId'][1:]}" for line in lines)
    summary = rerun.stderr.splitlines()[-1]
    assert "already in the output" in summary


# ---------------------------------------------------------------------------------------------- output and progress


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequestError("messages", "bad"), 400),
        (ValidationError("bad", status=400, code="ValidationException"), 400),
        (ModelError("failed", status=424, code="ModelErrorException"), 424),
        (RequestTimeoutError("slow"), 408),
        (APIConnectionError("reset"), 500),
        (ValidationError("garbled", status=200, code="MalformedResponse"), 500),
    ],
)
def test_error_lines_carry_a_status_as_error_code(error: Exception, code: int) -> None:
    """errorCode is the HTTP status Bedrock would report: the service's, 400 for input, 408 for a timeout, else 500."""
    assert isinstance(
        error, (InvalidRequestError, ValidationError, ModelError, RequestTimeoutError, APIConnectionError)
    )
    line = json.loads(result_line(Record("x", {"a": 1}), None, error))
    assert line == {"recordId": "x", "modelInput": {"a": 1}, "error": {"errorCode": code, "errorMessage": str(error)}}


def test_success_lines_keep_the_model_body_as_sent() -> None:
    """modelOutput is the response body verbatim (non-ASCII kept), one line ending in a newline."""
    body = {"content": [{"type": "text", "text": "héllo\nworld"}], "usage": {"input_tokens": 1}}
    data = result_line(Record("é", {"m": 1}), InvokeModelResponse(body, "rid", Usage(), 0.1), None)
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    assert json.loads(data) == {"recordId": "é", "modelInput": {"m": 1}, "modelOutput": body}


def test_progress_bar_and_summary_text() -> None:
    """The bar shows done/total, failures, request and token rates and the ETA; the summary says what happened."""
    progress = Progress(
        total=100, started=0.0, skipped=5, ok=40, failed=10, tokens=5000, cache_read=1200, cache_write=300
    )
    assert progress.bar(10.0, width=10) == ("[#####-----] 50/100 done, 10 failed | 5.0 req/s | 500 tok/s | ETA 0:10")
    assert progress.summary(10.0, "out.jsonl") == (
        "bedrock-chat batch: done: 40 ok, 10 failed, 5 already in the output; "
        "5,000 tokens (cache read 1,200, cache write 300) in 10.0 s -> out.jsonl"
    )
    progress.interrupted = True
    assert "interrupted (rerun to resume)" in progress.summary(10.0, "out.jsonl")
    assert Progress(total=0, started=0.0).bar(1.0, width=4) == "[####] 0/0 done, 0 failed | 0.0 req/s | 0 tok/s | ETA ?"
    # A batch job's counts: no token rate known; a service that reports more than the total stays in the bar.
    job = Progress(total=10, started=0.0, ok=12)
    assert job.bar(4.0, width=10, tokens=False) == "[##########] 12/10 done, 0 failed | 3.0 req/s | ETA 0:00"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_only_on_a_terminal(
    run_batch: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tty: bool
) -> None:
    """On a terminal stderr gets a redrawn bar and then the summary; elsewhere only the summary."""
    err = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(i) for i in range(3)])
    assert run_batch(str(source), "-o", "out.jsonl") == 0
    text = err.getvalue()
    assert ("\r[" in text and "req/s" in text and "ETA" in text) is tty
    last_line = text.rstrip("\n").split("\n")[-1]
    assert last_line.split("\r\x1b[K")[-1].startswith("bedrock-chat batch: done: 3 ok")


def test_batch_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``bedrock-chat --help`` names the batch command, and its own help lists the flags."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "batch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["batch", "--help"])
    out = capsys.readouterr().out
    for flag in ("--concurrency", "--rpm", "--tpm", "--max-retries", "--retry-errors", "--emulator", "-o OUTPUT.jsonl"):
        assert flag in out


def test_ctrl_c_leaves_a_valid_file_and_says_how_to_resume(tmp_path: Path, child_env: dict[str, str]) -> None:
    """SIGINT mid-run: exit 130, every line written is complete, the summary says to rerun, and the rerun finishes."""
    source = write_jsonl(tmp_path / "in.jsonl", [bedrock_line(i) for i in range(300)])
    output = tmp_path / "out.jsonl"
    command = batch_command(source, output)
    status, err = interrupt_after(command, child_env, 20, signal.SIGINT)
    assert status == 130, err
    assert "interrupted (rerun to resume)" in err.splitlines()[-1]
    assert "Traceback" not in err
    done = read_output(output)
    assert 20 <= len(done) < 300
    rerun = subprocess.run(
        command, capture_output=True, text=True, env=child_env, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} already in the output" in rerun.stderr.splitlines()[-1]
    assert sorted(line["recordId"] for line in read_output(output)) == sorted(f"r{i}" for i in range(300))


def test_the_summary_has_the_cache_totals(run_batch: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two records share a cached system prompt: the first writes the cache, the second reads it; both are summed."""
    system = [{"type": "text", "text": "cached words " * 5000, "cache_control": {"type": "ephemeral"}}]
    source = write_jsonl(tmp_path / "in.jsonl", [our_line(i, system=system) for i in range(2)])
    assert run_batch(str(source), "-o", "out.jsonl", "--concurrency", "1") == 0
    usages = [line["modelOutput"]["usage"] for line in read_output(tmp_path / "out.jsonl")]
    read = sum(usage.get("cache_read_input_tokens", 0) for usage in usages)
    written = sum(usage.get("cache_creation_input_tokens", 0) for usage in usages)
    assert read > 0
    assert written > 0
    summary = capsys.readouterr().err.splitlines()[-1]
    assert f"(cache read {read:,}, cache write {written:,})" in summary
