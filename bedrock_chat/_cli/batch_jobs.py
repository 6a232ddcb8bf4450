"""``bedrock-chat batch --via bedrock-batch``: the same batch file on Bedrock batch inference.

Theory of operation
-------------------
INPUT is read by the local run's rules (``_batch.files``: bounded lines, stdin or a pipe copied once
to a temporary file) and validated exactly as the local run does (``_batch.jobs.prepare_input``), the
records already in OUTPUT are left out (so a local run and a job can share one OUTPUT), and the rest is
submitted as one job (``_batch.jobs.BatchJobs``). OUTPUT is checked, read back and settled by the
local run's own functions (``prepare_output``, ``settle``), so the two paths refuse the same OUTPUTs.
Progress is polled and printed (a bar redrawn in place on a terminal while the job runs, one line per
status change otherwise); when the job ends its output lines are appended to OUTPUT in the local run's
shape (a line that is not a result is written as an error line and counted as failed), and the
records the service never reported are listed with the one command that runs them locally (the local
run resumes: it only does records OUTPUT lacks). Ctrl-C detaches: the job keeps running, and the
printed ``--attach`` command picks it up. Exit 0 only when every record of INPUT has a modelOutput line.
Rerunning the same command finds the same job (its client request token hashes the content), and so
does ``--stop`` without ``--attach`` (by the job name derived from the content).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import anyio
import attrs

from .._batch.files import OutputError, OutputPlan, UsageError, open_input, prepare_output
from .._batch.jobs import BatchInputError, BatchJobs, BatchLimits, JobStatus
from .._batch.records import scan_input
from .._client import AnthropicBedrock
from .._errors import BedrockError
from ..emulator import run_emulator_in_thread
from ..emulator._cli import emulator_options_from_args
from ..emulator._job_options import JobOptions
from .output import ConflictError, check_conflicts, report_failed_before, settle
from .progress import Progress
from .shared import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, client_settings, positive_int

__all__ = ["add_bedrock_batch_arguments", "run_bedrock_batch"]

_MISSING_SHOWN = 20
_WRITE_BATCH = 1000


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0 seconds")
    return value


def add_bedrock_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``--via bedrock-batch``."""

    group = parser.add_argument_group("Bedrock batch inference (--via bedrock-batch)")
    group.add_argument(
        "--via", choices=("local", "bedrock-batch"), default="local", help="where records run (default local)"
    )
    group.add_argument("--s3", metavar="s3://BUCKET/PREFIX", help="where the job's input and output go")
    group.add_argument("--role-arn", metavar="ARN", help="the IAM service role Bedrock runs the job as")
    group.add_argument("--job-name", help="job name (default bedrock-chat-<content hash>)")
    group.add_argument("--attach", metavar="JOB_ARN", help="follow an existing job instead of submitting one")
    group.add_argument(
        "--stop",
        action="store_true",
        help="stop the job (the one --attach names, else the one this input and --model submitted)",
    )
    group.add_argument(
        "--poll-interval", type=_interval, default=30.0, metavar="SECONDS", help="seconds between status polls"
    )
    group.add_argument(
        "--min-records",
        type=positive_int,
        default=BatchLimits().min_records_per_job,
        metavar="N",
        help="fewest records a job may have (quota; default %(default)s, UNVERIFIED)",
    )
    group.add_argument("--s3-endpoint-url", help="an S3-compatible endpoint (default: AWS's)")
    group.add_argument(
        "--bedrock-endpoint-url", help="the control plane's endpoint (default: the region's, as botocore derives it)"
    )


@contextlib.contextmanager
def _settings(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Client settings; with --emulator, an emulator whose jobs use ``--s3-endpoint-url``."""

    if not args.emulator:
        with client_settings(args) as settings:
            yield settings
        return

    options = emulator_options_from_args(args)
    options = attrs.evolve(options, jobs=JobOptions(s3_endpoint_url=args.s3_endpoint_url))
    if args.region:
        options = attrs.evolve(options, region=args.region)
    with run_emulator_in_thread(options) as emu:
        yield {
            "access_key": emu.access_key,
            "secret_key": emu.secret_key,
            "region": emu.region,
            "endpoint_url": emu.endpoint_url,
            "control_plane_endpoint_url": emu.endpoint_url,  # the emulator serves both
        }


def _describe(job: JobStatus) -> str:
    counts = ""
    if job.processed is not None:
        total = job.total if job.total is not None else "?"
        counts = f": {job.processed}/{total} records processed, {job.failed or 0} failed"
    message = f" ({job.message})" if job.message else ""
    return f"bedrock-chat batch: job {job.name} {job.status}{counts}{message}\n"


class _JobDisplay:
    """A job's progress: on a terminal one bar redrawn in place while it runs, else a line per change.

    The rate counts only what this process saw (a job attached to midway is not "fast"), and the bar
    is fitted to the terminal's width: a wrapped line cannot be redrawn in place.
    """

    def __init__(self, err: TextIO) -> None:
        self._err = err
        self._tty = err.isatty()
        self._progress: Progress | None = None
        self._last = ""
        self._bar_shown = False

    def show(self, job: JobStatus) -> None:
        if self._tty and job.total and job.status == "InProgress":
            self._draw(job)
            return
        line = _describe(job)
        if line != self._last:
            self.clear()
            self._err.write(line)
            self._err.flush()
            self._last = line

    def _draw(self, job: JobStatus) -> None:
        now = time.monotonic()
        done = job.processed or 0
        progress = self._progress
        if progress is None:  # the first count seen is the baseline of the rate
            progress = self._progress = Progress(total=0, started=now, baseline=done)
        progress.total, progress.failed = job.total or 0, job.failed or 0
        progress.ok = done - progress.failed
        columns = shutil.get_terminal_size((80, 24)).columns
        bare = f"{job.status} " + progress.bar(now, width=0, tokens=False)
        line = f"{job.status} " + progress.bar(now, width=max(columns - 1 - len(bare), 0), tokens=False)
        self._err.write("\r" + line[: columns - 1] + "\x1b[K")
        self._err.flush()
        self._bar_shown = True
        self._last = ""

    def clear(self) -> None:
        if self._bar_shown:
            self._err.write("\r\x1b[K")
            self._err.flush()
            self._bar_shown = False


class _Run:
    """What the async part learned, for the synchronous caller (the job's ARN survives a Ctrl-C)."""

    def __init__(self) -> None:
        self.arn: str | None = None
        self.ok = 0
        self.failed = 0
        self.missing: list[str] = []
        self.not_results: list[str] = []  # records whose job line was no result: written as error lines
        self.status: JobStatus | None = None
        self.submitted = True  # False: every record was already in OUTPUT, no job


def _job_line(line: dict[str, Any]) -> dict[str, Any] | None:
    """``line`` if it is a result (exactly one of ``modelOutput``, an object, and ``error``), else None.

    A job's line is checked as OUTPUT's lines are when read back: a line that is not a result must not
    count as ok, nor be written as it is (the next run would refuse OUTPUT).
    """
    if ("modelOutput" in line) == ("error" in line):
        return None
    if "modelOutput" in line and not isinstance(line["modelOutput"], dict):
        return None
    return line


def _not_a_result(line: dict[str, Any]) -> dict[str, Any]:
    """The error line written for a job line that is not a result (so a rerun with --retry-errors redoes it)."""
    if "modelOutput" not in line:
        has = "neither modelOutput nor error"
    elif "error" in line:
        has = "both modelOutput and error"
    else:
        has = "a modelOutput that is not a JSON object"
    fixed: dict[str, Any] = {"recordId": line["recordId"]}
    if "modelInput" in line:
        fixed["modelInput"] = line["modelInput"]
    fixed["error"] = {"errorCode": 500, "errorMessage": f"the batch job's output line is not a result: it has {has}"}
    return fixed


async def _main(
    settings: dict[str, Any],
    args: argparse.Namespace,
    source: Path,
    output: OutputPlan,
    ids: set[str],
    done: set[str],
    run: _Run,
    err: TextIO,
) -> None:

    async with AnthropicBedrock(**settings) as client:
        # Before OUTPUT or the service is touched: OUTPUT must not hold another input's results.
        expected = ids - done
        check_conflicts(source, client, output.existing.skipped_inputs(retry_errors=args.retry_errors), args.model)
        if not args.stop:  # --stop writes nothing
            settle(args.output, output, ids, done, retry_errors=args.retry_errors, err=err)
        if not expected and not args.attach and not args.stop:
            run.submitted = False
            return
        jobs = BatchJobs(
            client,
            bedrock_endpoint_url=args.bedrock_endpoint_url,
            s3_endpoint_url=args.s3_endpoint_url,
            limits=BatchLimits(min_records_per_job=args.min_records),
        )
        if args.attach:
            run.arn = args.attach
        elif args.stop:
            if not expected:
                raise BedrockError("every record of this input is already in OUTPUT: no job to stop (--attach JOB_ARN)")
            found = await jobs.find(source, model=args.model, job_name=args.job_name, skip=done)
            if found is None:
                raise BedrockError(
                    "no job of this input was found (the same file, --model, --job-name and OUTPUT as when it was"
                    " submitted?); --attach JOB_ARN --stop stops any job"
                )
            if found.finished:
                err.write(f"bedrock-chat batch: job {found.arn} is already {found.status}: nothing to stop\n")
                return
            run.arn = found.arn
        else:
            submitted = await jobs.submit(
                source, s3_uri=args.s3, role_arn=args.role_arn, model=args.model, job_name=args.job_name, skip=done
            )
            run.arn = submitted.arn
            err.write(f"bedrock-chat batch: job {submitted.arn} ({submitted.prepared.records} records) <- {args.s3}\n")
        if args.stop:
            await jobs.stop(run.arn)
            err.write(f"bedrock-chat batch: stop requested for {run.arn}\n")
            return
        display = _JobDisplay(err)
        try:
            run.status = await jobs.wait(run.arn, poll_interval=args.poll_interval, on_status=display.show)
        finally:
            display.clear()  # an error message, or Ctrl-C's, starts on a line of its own
        seen: set[str] = set()
        pending: list[bytes] = []
        async with await anyio.open_file("/dev/stdout" if args.output == "-" else args.output, "ab") as file:
            async for line in jobs.results(run.arn):
                record_id = line.get("recordId")
                if record_id not in expected or record_id in seen:
                    continue  # not asked for here (already in OUTPUT, or from another input)
                seen.add(record_id)
                result = _job_line(line)
                if result is None:
                    run.not_results.append(record_id)
                    result = _not_a_result(line)
                pending.append(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
                if "error" in result:
                    run.failed += 1
                else:
                    run.ok += 1
                if len(pending) >= _WRITE_BATCH:  # one thread hop per batch of lines, not per line
                    await file.write(b"".join(pending))
                    pending.clear()
            await file.write(b"".join(pending))
        run.missing = sorted(expected - seen)


def _command(args: argparse.Namespace, *extra: str) -> str:
    words = ["bedrock-chat", "batch", args.input, "-o", args.output, *extra]
    return " ".join(shlex.quote(word) for word in words)


def run_bedrock_batch(args: argparse.Namespace) -> int:
    """Run ``bedrock-chat batch --via bedrock-batch``; 0 when every record came back with a modelOutput."""

    err = sys.stderr
    if not args.attach and not args.stop and (not args.s3 or not args.role_arn):
        err.write("bedrock-chat batch: --via bedrock-batch needs --s3 s3://BUCKET/PREFIX and --role-arn ARN\n")
        return EXIT_USAGE
    try:  # the local run's checks, by the same function
        output = prepare_output(args.input, args.output, retry_errors=args.retry_errors, writing=not args.stop)
    except (OSError, OutputError) as exc:
        err.write(f"bedrock-chat batch: {exc}\n")
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR
    run = _Run()
    try:
        with open_input(args.input) as source:
            try:
                _, ids = scan_input(source)
            except OSError as exc:
                err.write(f"bedrock-chat batch: {exc}\n")
                return EXIT_ERROR
            done = output.existing.skip(retry_errors=args.retry_errors)
            failed_before = len(output.existing.failed_only(ids, retry_errors=args.retry_errors))
            with _settings(args) as settings:
                anyio.run(_main, settings, args, source, output, ids, done, run, err)
    except KeyboardInterrupt:
        if run.arn is None:
            err.write("\nbedrock-chat batch: interrupted before a job was created\n")
        else:
            err.write(
                f"\nbedrock-chat batch: detached; job {run.arn} keeps running. Reattach with:\n  "
                + _command(args, "--via", "bedrock-batch", "--attach", run.arn)
                + "\n"
            )
        return EXIT_INTERRUPTED
    except ConflictError as exc:
        exc.report(err, "<stdin>" if args.input == "-" else args.input, args.output)
        return EXIT_ERROR
    except BatchInputError as exc:  # named after INPUT as the user gave it, not its temporary copy
        err.write(f"bedrock-chat batch: BatchInputError: {BatchInputError(exc.problems, args.input)}\n")
        return EXIT_ERROR
    except OutputError as exc:  # OUTPUT could not be settled (--retry-errors on a hard-linked file, ...)
        err.write(f"bedrock-chat batch: {exc}\n")
        return EXIT_ERROR
    except (BedrockError, OSError) as exc:
        err.write(f"bedrock-chat batch: {type(exc).__name__}: {exc}\n")
        return EXIT_ERROR
    if args.stop:
        return EXIT_OK
    if not run.submitted:
        err.write(f"bedrock-chat batch: no job submitted: every record of INPUT is already in {args.output}\n")
        return report_failed_before(failed_before, err)
    status = run.status.status if run.status is not None else "?"
    err.write(
        f"bedrock-chat batch: job {status}: {run.ok} ok, {run.failed} failed, {len(run.missing)} not reported"
        f" -> {args.output}\n"
    )
    if run.not_results:
        shown = ", ".join(run.not_results[:_MISSING_SHOWN]) + (" ..." if len(run.not_results) > _MISSING_SHOWN else "")
        err.write(f"bedrock-chat batch: job lines that were not results, written as error lines: {shown}\n")
    if run.missing:
        shown = ", ".join(run.missing[:_MISSING_SHOWN]) + (" ..." if len(run.missing) > _MISSING_SHOWN else "")
        err.write(f"bedrock-chat batch: records the job did not report: {shown}\n")
        err.write(f"bedrock-chat batch: run them locally with:\n  {_command(args)}\n")
    if report_failed_before(failed_before, err) != EXIT_OK:
        return EXIT_ERROR
    return EXIT_OK if run.failed == 0 and not run.missing and status == "Completed" else EXIT_ERROR
