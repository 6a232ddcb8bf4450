"""Bedrock batch inference jobs (``--via bedrock-batch``, ``client.batch_jobs``) on the emulator and a real S3 server.

The S3 server is moto's, in server mode on a free loopback port; the control plane is the emulator's.
Waits poll the job's status with a short interval, bounded by ``fail_after``.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import boto3
import pytest

from bedrock_chat import AnthropicBedrock, ConfigurationError
from bedrock_chat._batch.jobs import BatchInputError, BatchJobs, BatchLimits, JobStatus, prepare_input
from bedrock_chat._cli.main import main
from bedrock_chat.emulator import BedrockEmulator

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
ROLE = "arn:aws:iam::123456789012:role/BatchRole"
#: Records of the end-to-end comparison (about 1.5 s for both runs; BEDROCK_CHAT_BATCH_JOB_RECORDS overrides).
RECORDS = int(os.environ.get("BEDROCK_CHAT_BATCH_JOB_RECORDS", "1000"))
DEADLINE = 60.0


@pytest.fixture
def bucket(emu: BedrockEmulator, s3_endpoint: str) -> str:
    """A fresh bucket on the S3 server."""
    name = f"batch-{uuid.uuid4().hex[:12]}"
    s3 = boto3.session.Session(
        aws_access_key_id=emu.access_key, aws_secret_access_key=emu.secret_key, region_name=emu.region
    ).client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def cli(emu: BedrockEmulator, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """``cli(*args)``: ``bedrock-chat batch ARGS`` in-process against the emulator and S3; the exit code."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", emu.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", emu.secret_key)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> int:
        connection = ["--endpoint-url", emu.endpoint_url, "--bedrock-endpoint-url", emu.endpoint_url]
        connection += ["--region", emu.region, "--backoff", "0"]
        return main(["batch", *args, *connection, "--s3-endpoint-url", s3_endpoint, "--poll-interval", "0.05"])

    return run


def _line(i: int) -> dict[str, Any]:
    if i % 2:  # both input forms
        return {
            "id": f"r{i:05d}",
            "model": MODEL,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"n {i}"}],
        }
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"n {i}"}],
    }
    return {"recordId": f"r{i:05d}", "modelInput": body}


def _write(path: Path, count: int, start: int = 0) -> Path:
    path.write_text("".join(json.dumps(_line(i)) + "\n" for i in range(start, start + count)))
    return path


def _comparable(path: Path) -> dict[str, Any]:
    """Output lines by record id, without the per-invocation message id (``msg_bdrk_<request id>``)."""
    lines: dict[str, Any] = {}
    for raw in path.read_text().splitlines():
        line = json.loads(raw)
        line.get("modelOutput", {}).pop("id", None)
        assert line["recordId"] not in lines
        lines[line["recordId"]] = line
    return lines


def _batch_args(bucket: str, output: str) -> list[str]:
    return ["in.jsonl", "-o", output, "--via", "bedrock-batch", "--s3", f"s3://{bucket}/jobs", "--role-arn", ROLE]


def test_bedrock_batch_output_equals_the_local_run(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same input through --via local and --via bedrock-batch gives the same lines, record for record."""
    _write(tmp_path / "in.jsonl", RECORDS)
    started = time.monotonic()
    assert cli("in.jsonl", "-o", "local.jsonl", "--model", MODEL) == 0
    local_seconds = time.monotonic() - started
    started = time.monotonic()
    assert cli(*_batch_args(bucket, "job.jsonl"), "--model", MODEL) == 0
    job_seconds = time.monotonic() - started
    local, job = _comparable(tmp_path / "local.jsonl"), _comparable(tmp_path / "job.jsonl")
    assert len(local) == RECORDS
    assert job == local
    err = capsys.readouterr().err
    assert f"job Completed: {RECORDS} ok, 0 failed, 0 not reported" in err
    print(f"{RECORDS} records: local {local_seconds:.2f} s, bedrock-batch {job_seconds:.2f} s")  # shown with -s


def test_rerun_attaches_to_the_same_job(cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path) -> None:
    """Rerunning the same input creates no second job (the request token hashes the content)."""
    _write(tmp_path / "in.jsonl", 100)
    assert cli(*_batch_args(bucket, "a.jsonl"), "--model", MODEL) == 0
    assert cli(*_batch_args(bucket, "b.jsonl"), "--model", MODEL) == 0
    assert len(emu.control_plane.jobs) == 1
    assert _comparable(tmp_path / "a.jsonl") == _comparable(tmp_path / "b.jsonl")


def test_failed_and_dropped_records_are_reported(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Injected failures come back as error lines; dropped records are listed with the local command to rerun them."""
    emu.options = attrs.evolve(
        emu.options, jobs=attrs.evolve(emu.options.jobs, fail_every=10, drop_pattern="r0000[37]")
    )
    _write(tmp_path / "in.jsonl", 100)
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL) == 1
    lines = _comparable(tmp_path / "out.jsonl")
    assert len(lines) == 98
    failed = sorted(record_id for record_id, line in lines.items() if "error" in line)
    assert failed == [f"r{i:05d}" for i in range(9, 100, 10)]
    err = capsys.readouterr().err
    assert "88 ok, 10 failed, 2 not reported" in err
    assert "records the job did not report: r00003, r00007" in err
    assert "bedrock-chat batch in.jsonl -o out.jsonl\n" in err
    # The one command: the local run resumes and does only the two missing records; the ten error
    # lines are still no answers (exit 1, pointing at --retry-errors), which then redoes them.
    assert cli("in.jsonl", "-o", "out.jsonl", "--model", MODEL) == 1
    assert len(_comparable(tmp_path / "out.jsonl")) == 100
    assert "10 record(s) of INPUT have only an error line in OUTPUT; rerun with --retry-errors" in (
        capsys.readouterr().err
    )
    assert cli("in.jsonl", "-o", "out.jsonl", "--model", MODEL, "--retry-errors") == 0
    assert all("modelOutput" in line for line in _comparable(tmp_path / "out.jsonl").values())


def test_ctrl_c_detaches_and_attach_completes(
    cli: Any,
    emu: BedrockEmulator,
    bucket: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while waiting leaves the job running and prints the --attach command, which then completes it."""
    emu.options = attrs.evolve(emu.options, jobs=attrs.evolve(emu.options.jobs, record_delay=0.002))
    _write(tmp_path / "in.jsonl", 100)
    real_wait = BatchJobs.wait

    async def interrupted(self: BatchJobs, job_arn: str, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(BatchJobs, "wait", interrupted)
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL) == 130
    err = capsys.readouterr().err
    [job] = emu.control_plane.jobs.values()
    assert f"--via bedrock-batch --attach {job.arn}" in err
    assert job.status not in ("Stopped", "Stopping")
    monkeypatch.setattr(BatchJobs, "wait", real_wait)
    assert cli("in.jsonl", "-o", "out.jsonl", "--via", "bedrock-batch", "--attach", job.arn) == 0
    assert len(_comparable(tmp_path / "out.jsonl")) == 100
    assert len(emu.control_plane.jobs) == 1


@pytest.mark.parametrize("by", ["input", "arn"])
def test_stop_flag_stops_the_job(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, by: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--stop stops a running job: the one --attach names, or the one this input and model submitted."""
    emu.options = attrs.evolve(emu.options, jobs=attrs.evolve(emu.options.jobs, record_delay=0.05))

    async def submit(name: str, start: int) -> str:
        async with AnthropicBedrock(
            access_key=emu.access_key,
            secret_key=emu.secret_key,
            region=emu.region,
            endpoint_url=emu.endpoint_url,
            control_plane_endpoint_url=emu.endpoint_url,
        ) as client:
            jobs = BatchJobs(client, s3_endpoint_url=emu.options.jobs.s3_endpoint_url)
            submitted = await jobs.submit(
                _write(tmp_path / name, 100, start=start), s3_uri=f"s3://{bucket}/x", role_arn=ROLE, model=MODEL
            )
            return submitted.arn

    arn = anyio.run(submit, "in.jsonl", 0)
    bystander = anyio.run(submit, "running.jsonl", 500)  # another input's job, running alongside
    _write(tmp_path / "other.jsonl", 101, start=1000)  # an input with no job of its own
    assert cli("other.jsonl", "-o", "out.jsonl", "--via", "bedrock-batch", "--stop", "--model", MODEL) == 1
    assert "no job of this input was found" in capsys.readouterr().err
    target = ["--attach", arn] if by == "arn" else []
    assert cli("in.jsonl", "-o", "out.jsonl", "--via", "bedrock-batch", *target, "--stop", "--model", MODEL) == 0
    assert f"stop requested for {arn}" in capsys.readouterr().err
    statuses = {job.arn: job.status for job in emu.control_plane.jobs.values()}
    assert statuses[arn] in ("Stopping", "Stopped")
    assert statuses[bystander] not in ("Stopping", "Stopped"), "only this input's job is stopped"


@pytest.mark.asyncio
async def test_library_submit_wait_results_manifest(emu: BedrockEmulator, bucket: str, tmp_path: Path) -> None:
    """client.batch_jobs submits, waits (reporting progress), and yields every record's line plus the manifest."""
    source = _write(tmp_path / "in.jsonl", 120)
    async with AnthropicBedrock(
        access_key=emu.access_key,
        secret_key=emu.secret_key,
        region=emu.region,
        endpoint_url=emu.endpoint_url,
        control_plane_endpoint_url=emu.endpoint_url,
    ) as client:
        jobs = BatchJobs(
            client, s3_endpoint_url=emu.options.jobs.s3_endpoint_url, limits=BatchLimits(max_records_per_file=50)
        )
        submitted = await jobs.submit(source, s3_uri=f"s3://{bucket}/lib/", role_arn=ROLE, model=MODEL)
        assert submitted.prepared.records == 120
        seen: list[str] = []
        with anyio.fail_after(DEADLINE):
            final = await jobs.wait(submitted.arn, poll_interval=0.02, on_status=lambda job: seen.append(job.status))
        assert final.status == "Completed"
        assert seen[-1] == "Completed"
        lines = [line async for line in jobs.results(submitted.arn)]
        manifest = await jobs.manifest(submitted.arn)
    assert sorted(line["recordId"] for line in lines) == [f"r{i:05d}" for i in range(120)]
    assert all(list(line) == ["recordId", "modelInput", "modelOutput"] for line in lines)
    assert manifest is not None
    assert manifest["totalRecordCount"] == manifest["successRecordCount"] == 120
    [job] = emu.control_plane.jobs.values()
    assert job.total == 120  # three part files of at most 50 records


def test_validation_names_lines_before_upload(tmp_path: Path) -> None:
    """Malformed lines, duplicates, invalid inputs, another model and too few records are refused with line numbers."""
    good = [json.dumps(_line(i)) for i in range(3)]
    bad_input = json.dumps({"recordId": "bad", "modelInput": [1]})
    other_model = json.dumps(
        {"id": "o", "model": "anthropic.claude-v2", "messages": [{"role": "user", "content": "x"}]}
    )
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([*good, "{not json", good[0], bad_input, other_model]) + "\n")
    client = AnthropicBedrock(access_key="a", secret_key="b", region="us-east-1")
    with pytest.raises(BatchInputError) as caught:
        prepare_input(client, source, model=MODEL, directory=tmp_path)
    assert [line for line, _ in caught.value.problems] == [4, 5, 6, 7]
    assert "repeats line 1" in str(caught.value)
    good_only = tmp_path / "good.jsonl"
    good_only.write_text("\n".join(good) + "\n")
    with pytest.raises(BatchInputError, match="at least 100"):
        prepare_input(client, good_only, model=MODEL, directory=tmp_path)
    prepared = prepare_input(
        client,
        good_only,
        model=MODEL,
        directory=tmp_path,
        limits=BatchLimits(min_records_per_job=1, max_records_per_file=2),
    )
    assert [path.name for path in prepared.files] == ["part-00001.jsonl", "part-00002.jsonl"]
    assert prepared.records == 3


@pytest.mark.asyncio
async def test_missing_boto3_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without boto3, batch jobs raise a ConfigurationError naming ``pip install boto3``."""
    real_import = builtins.__import__

    def no_boto3(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "boto3":
            raise ImportError("No module named 'boto3'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_boto3)
    async with AnthropicBedrock(access_key="a", secret_key="b", region="us-east-1") as client:
        with pytest.raises(ConfigurationError, match="pip install boto3"):
            await client.batch_jobs.status("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/x")


@pytest.mark.asyncio
async def test_find_returns_the_newest_job_of_the_input_and_none_for_another(
    emu: BedrockEmulator, bucket: str, tmp_path: Path
) -> None:
    """find() names the job submit() created for the same file and model (newest first); another input has none."""
    source = _write(tmp_path / "in.jsonl", 100)
    async with AnthropicBedrock(
        access_key=emu.access_key,
        secret_key=emu.secret_key,
        region=emu.region,
        endpoint_url=emu.endpoint_url,
        control_plane_endpoint_url=emu.endpoint_url,
    ) as client:
        jobs = BatchJobs(client, s3_endpoint_url=emu.options.jobs.s3_endpoint_url)
        first = await jobs.submit(source, s3_uri=f"s3://{bucket}/f", role_arn=ROLE, model=MODEL)
        renamed = await jobs.submit(source, s3_uri=f"s3://{bucket}/f", role_arn=ROLE, model=MODEL, job_name="mine")
        found = await jobs.find(source, model=MODEL)
        assert found is not None
        assert found.arn == first.arn
        named = await jobs.find(source, model=MODEL, job_name="mine")
        assert named is not None
        assert named.arn == renamed.arn
        assert await jobs.find(_write(tmp_path / "other.jsonl", 100, start=500), model=MODEL) is None


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_a_progress_bar_redrawn_in_place(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal the running job is one bar redrawn with \\r (counts from the service), then the summary."""
    emu.options = attrs.evolve(emu.options, jobs=attrs.evolve(emu.options.jobs, record_delay=0.005))
    _write(tmp_path / "in.jsonl", 120)
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL) == 0
    shown = terminal.getvalue()
    bars = [part.removesuffix("\x1b[K") for part in shown.split("\r") if part.startswith("InProgress [")]
    assert bars, shown
    assert all("/120 done" in bar and "req/s | ETA" in bar and "tok/s" not in bar for bar in bars)
    assert all(len(bar) <= 79 for bar in bars), "a wrapped line cannot be redrawn in place"
    assert "\r\x1b[K" in shown  # the bar is cleared before the next line
    assert " Completed: 120/120 records processed, 0 failed\n" in shown
    assert len(_comparable(tmp_path / "out.jsonl")) == 120


def _job(status: str, processed: int, total: int = 100_000, failed: int = 0) -> JobStatus:
    return JobStatus(
        arn="arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc",
        name="bedrock-chat-0123456789abcdef",
        status=status,
        message=None,
        total=total,
        processed=processed,
        succeeded=processed - failed,
        failed=failed,
        output_uri="s3://b/x/",
    )


def test_the_job_bar_rates_only_what_it_saw_and_clears_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attached at 50,000 of 100,000, 100 more a second later is 100 req/s (not 50,000); clear() ends the bar."""
    from bedrock_chat._cli.batch_jobs import _JobDisplay

    clock = [1000.0]
    monkeypatch.setattr("bedrock_chat._cli.batch_jobs.time.monotonic", lambda: clock[0])
    terminal = _Terminal()
    display = _JobDisplay(terminal)
    display.show(_job("InProgress", 50_000))
    assert "| 0.0 req/s | ETA ?" in terminal.getvalue()
    clock[0] += 1.0
    display.show(_job("InProgress", 50_100, failed=3))
    last = terminal.getvalue().split("\r")[-1]
    assert "50100/100000 done, 3 failed | 100.0 req/s | ETA 8:19" in last
    display.clear()
    assert terminal.getvalue().endswith("\r\x1b[K")
    display.show(_job("Completed", 100_000))
    assert terminal.getvalue().endswith("Completed: 100000/100000 records processed, 0 failed\n")


def test_stop_of_a_finished_job_says_so(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--stop on the input of a job that already ended reports its status and asks the service nothing more."""

    async def submit_and_wait() -> str:
        async with AnthropicBedrock(
            access_key=emu.access_key,
            secret_key=emu.secret_key,
            region=emu.region,
            endpoint_url=emu.endpoint_url,
            control_plane_endpoint_url=emu.endpoint_url,
        ) as client:
            jobs = BatchJobs(client, s3_endpoint_url=emu.options.jobs.s3_endpoint_url)
            submitted = await jobs.submit(
                _write(tmp_path / "in.jsonl", 100), s3_uri=f"s3://{bucket}/done", role_arn=ROLE, model=MODEL
            )
            with anyio.fail_after(DEADLINE):
                await jobs.wait(submitted.arn, poll_interval=0.02)
            return submitted.arn

    arn = anyio.run(submit_and_wait)
    assert cli("in.jsonl", "-o", "out.jsonl", "--via", "bedrock-batch", "--stop", "--model", MODEL) == 0
    assert f"job {arn} is already Completed: nothing to stop" in capsys.readouterr().err
    [job] = emu.control_plane.jobs.values()
    assert job.status == "Completed"


def test_bedrock_batch_reads_stdin(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--via bedrock-batch`` takes INPUT ``-`` as the local run does: stdin, read once, every record in the job."""
    data = _write(tmp_path / "lines.jsonl", 4).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    arguments = _batch_args(bucket, "job.jsonl")
    arguments[0] = "-"
    assert cli(*arguments, "--model", MODEL, "--min-records", "1") == 0
    job = _comparable(tmp_path / "job.jsonl")
    assert sorted(job) == [f"r{i:05d}" for i in range(4)]
    assert all("modelOutput" in line for line in job.values())


def test_bedrock_batch_refuses_another_inputs_output(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OUTPUT with results for the same ids but other model inputs: refused before any upload or job."""
    (tmp_path / "old.jsonl").write_text("".join(json.dumps(_line(i)) + "\n" for i in (0, 1)))
    assert cli("old.jsonl", "-o", "out.jsonl", "--model", MODEL) == 0
    lines = [_line(i) for i in range(4)]
    lines[1]["messages"] = [{"role": "user", "content": "another question"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    capsys.readouterr()
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL, "--min-records", "1") == 1
    assert "in.jsonl:2: out.jsonl has a result for 'r00001', but for another modelInput" in capsys.readouterr().err
    assert len(emu.control_plane.jobs) == 0


def _with_an_error_line(cli: Any, emu: BedrockEmulator, tmp_path: Path, count: int = 4) -> None:
    """A local run of ``count`` records into out.jsonl whose first record fails (an error line)."""
    _write(tmp_path / "in.jsonl", count)
    emu.enqueue_faults("validation")
    assert cli("in.jsonl", "-o", "out.jsonl", "--model", MODEL, "--concurrency", "1", "--max-retries", "0") == 1


def test_bedrock_batch_checks_output_as_the_local_run_does(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hard-linked OUTPUT under --retry-errors is one line, exit 1; --retry-errors into stdout is exit 2; no job."""
    _with_an_error_line(cli, emu, tmp_path)
    os.link(tmp_path / "out.jsonl", tmp_path / "link.jsonl")
    before = (tmp_path / "out.jsonl").read_bytes()
    capsys.readouterr()
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL, "--retry-errors", "--min-records", "1") == 1
    err = capsys.readouterr().err
    assert "bedrock-chat batch: out.jsonl has 2 hard links" in err
    assert "Traceback" not in err
    assert (tmp_path / "out.jsonl").read_bytes() == before
    assert cli(*_batch_args(bucket, "-"), "--model", MODEL, "--retry-errors", "--min-records", "1") == 2
    assert "--retry-errors rewrites OUTPUT: it must be a file" in capsys.readouterr().err
    assert len(emu.control_plane.jobs) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only file")
def test_bedrock_batch_refuses_a_read_only_output(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only OUTPUT is refused before a job is submitted (the results could not be written after it)."""
    _write(tmp_path / "in.jsonl", 2)
    (tmp_path / "out.jsonl").write_bytes(b"")
    (tmp_path / "out.jsonl").chmod(0o444)
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL, "--min-records", "1") == 1
    assert "out.jsonl is read-only" in capsys.readouterr().err
    assert len(emu.control_plane.jobs) == 0


def test_bedrock_batch_error_lines_alone_never_exit_0(
    cli: Any, emu: BedrockEmulator, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records whose only OUTPUT line is an error keep a job run from exit 0, as they keep the local run."""
    _with_an_error_line(cli, emu, tmp_path, count=1)
    _write(tmp_path / "in.jsonl", 4)  # r00000 (an error line in OUTPUT) and three records to do
    capsys.readouterr()
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL, "--min-records", "1") == 1
    err = capsys.readouterr().err
    assert "job Completed: 3 ok, 0 failed, 0 not reported" in err
    assert "1 record(s) of INPUT have only an error line in OUTPUT; rerun with --retry-errors" in err
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL, "--min-records", "1") == 1
    assert "no job submitted: every record of INPUT is already in out.jsonl" in capsys.readouterr().err
    assert len(emu.control_plane.jobs) == 1
    assert cli(*_batch_args(bucket, "out.jsonl"), "--model", MODEL, "--min-records", "1", "--retry-errors") == 0
    lines = _comparable(tmp_path / "out.jsonl")
    assert sorted(lines) == [f"r{i:05d}" for i in range(4)]
    assert all("modelOutput" in line for line in lines.values())


def _completed_job_output(
    emu: BedrockEmulator, bucket: str, s3_endpoint: str, tmp_path: Path, prefix: str
) -> tuple[str, list[bytes], Callable[[list[bytes]], None]]:
    """A 100-record job run to completion: its ARN, its output lines, and a function that rewrites them in S3.

    For tests of what the command does with job output that is not what Bedrock should write.
    """

    async def submit_and_wait() -> str:
        async with AnthropicBedrock(
            access_key=emu.access_key,
            secret_key=emu.secret_key,
            region=emu.region,
            endpoint_url=emu.endpoint_url,
            control_plane_endpoint_url=emu.endpoint_url,
        ) as client:
            jobs = BatchJobs(client, s3_endpoint_url=s3_endpoint)
            submitted = await jobs.submit(
                _write(tmp_path / "in.jsonl", 100), s3_uri=f"s3://{bucket}/{prefix}", role_arn=ROLE, model=MODEL
            )
            with anyio.fail_after(DEADLINE):
                await jobs.wait(submitted.arn, poll_interval=0.02)
            return submitted.arn

    arn = anyio.run(submit_and_wait)
    s3 = boto3.session.Session(
        aws_access_key_id=emu.access_key, aws_secret_access_key=emu.secret_key, region_name=emu.region
    ).client("s3", endpoint_url=s3_endpoint)
    [key] = [
        item["Key"]
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
        if item["Key"].endswith(".jsonl.out")
    ]

    def rewrite(lines: list[bytes]) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"".join(line + b"\n" for line in lines))

    return arn, s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines(), rewrite


def test_a_job_line_that_is_no_result_is_a_failed_record(
    cli: Any, emu: BedrockEmulator, bucket: str, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job output line with neither modelOutput nor error counts as failed, written as an error line."""
    arn, raw, rewrite = _completed_job_output(emu, bucket, s3_endpoint, tmp_path, "odd")
    lines = [json.loads(line) for line in raw]
    odd = lines[0]["recordId"]
    del lines[0]["modelOutput"]
    rewrite([json.dumps(line).encode() for line in lines])
    assert cli("in.jsonl", "-o", "out.jsonl", "--via", "bedrock-batch", "--attach", arn) == 1
    err = capsys.readouterr().err
    assert "job Completed: 99 ok, 1 failed, 0 not reported" in err
    assert f"job lines that were not results, written as error lines: {odd}" in err
    output = _comparable(tmp_path / "out.jsonl")
    assert "neither modelOutput nor error" in output[odd]["error"]["errorMessage"]
    assert cli("in.jsonl", "-o", "out.jsonl", "--model", MODEL, "--retry-errors") == 0  # OUTPUT is still results
    assert all("modelOutput" in line for line in _comparable(tmp_path / "out.jsonl").values())


def test_job_lines_that_are_not_json_are_failed_records_not_a_crash(
    cli: Any, emu: BedrockEmulator, bucket: str, s3_endpoint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job output line that is not JSON fails its record (found by its id) and the rest of the output is kept."""
    arn, raw, rewrite = _completed_job_output(emu, bucket, s3_endpoint, tmp_path, "broken")
    cut_id = json.loads(raw[0])["recordId"]
    lost_id = json.loads(raw[1])["recordId"]
    raw[0] = raw[0][: len(raw[0]) // 2]  # cut mid-line: not JSON, but its recordId is still readable
    raw[1] = b"\xff not json at all"  # nothing left of the record
    rewrite(raw)
    assert cli("in.jsonl", "-o", "out.jsonl", "--via", "bedrock-batch", "--attach", arn) == 1
    err = capsys.readouterr().err
    assert "98 ok, 1 failed, 1 not reported" in err
    output = _comparable(tmp_path / "out.jsonl")
    assert "is not a JSON object" in output[cut_id]["error"]["errorMessage"]
    assert lost_id not in output
    assert sum("modelOutput" in line for line in output.values()) == 98
