"""``bedrock-chat batch INPUT.jsonl -o OUTPUT.jsonl``: a JSONL file of requests, run concurrently and resumably.

Theory of operation
-------------------
0. **Files** (``_batch.files``): INPUT is read in bounded lines (a line over ``MAX_LINE_BYTES`` is
   malformed, never held whole), and read twice, so stdin (``-``), a pipe or a device is first copied
   once to a temporary file. INPUT and OUTPUT are compared by identity (hard links, symlinks), not path.
1. **Scan** the input (streaming, nothing kept but record ids): malformed lines are reported with
   their line numbers and skipped; duplicate record ids stop the run before any request, naming every
   line involved, because merging them would silently lose one of the two.
2. **Resume**: a regular OUTPUT's complete lines name the records already done, and they are skipped.
   Every such line must be a result (``modelOutput`` or ``error``), and an input record whose id is
   there must have the same ``modelInput``: otherwise OUTPUT belongs to another input and the run stops
   before any request. A last line without its newline is kept (and ended) when it parses; otherwise it
   is a write that a kill interrupted: it is cut off, and the message says whether its record is redone
   (it may belong to another INPUT). ``--retry-errors`` also redoes records whose line is an error (the
   file is rewritten without them, atomically, keeping its symlink, mode and owner); without it, such
   records keep the run from exit 0. stdout (``-``), a pipe or a device as OUTPUT is written only: no
   resume. OUTPUT is per model: the check compares ``modelInput`` only (result lines carry no model).
3. **Run** the remaining records through :class:`bedrock_chat._batch.scheduler.Scheduler` (bounded, rate-limited,
   adaptive). Each finished record is appended as one line with one ``write`` on an unbuffered file, so
   a kill loses at most the line being written. Appends to a local file take microseconds; they are
   made on the event loop rather than paying a thread hop per line. A write OUTPUT refuses stops the
   run (exit 1), and so does any shortfall: exit 0 means every record of INPUT has a modelOutput line.

Input lines take two forms: Bedrock batch inference's ``{"recordId", "modelInput", "modelId"?}`` (the
model from ``--model`` when the line has none), sent as it is, and ours,
``{"id", "model"?, "messages", ...create() arguments}``, validated and built exactly as ``create`` does
(an invalid line is that record's error, code 400, without any request). Output lines have Bedrock's
``.jsonl.out`` shape, ``{"recordId", "modelInput", "modelOutput"}`` or ``{"recordId", "modelInput",
"error": {"errorCode", "errorMessage"}}``, so files move between the two; ``modelOutput`` is the model's
response body as sent. A line without an id gets its 1-based line number, zero-padded to 11 digits (the
length of Bedrock's generated ids): stable for as long as the input is not edited.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import anyio
import attrs

from .._batch.files import (
    OutputError,
    OutputPlan,
    UsageError,
    WriteError,
    append,
    open_input,
    open_output,
    prepare_output,
)
from .._batch.records import (
    Malformed,
    Record,
    error_code,
    input_lines,
    line_fields,
    result_line,
    scan_input,
)
from .._batch.scheduler import (
    DEFAULT_BATCH_RETRIES,
    Operation,
    Outcome,
    RetryHook,
    Scheduler,
    estimate_tokens,
    used_tokens,
)
from .._client import AnthropicBedrock
from .._core.argtypes import bounded
from .._core.config import RetryPolicy
from .._core.responses import InvokeModelResponse
from .._telemetry import BatchTelemetry, Instruments
from ..emulator._cli import add_fault_arguments
from .batch_jobs import add_bedrock_batch_arguments, run_bedrock_batch
from .output import (
    ConflictError,
    build_record,
    check_conflicts,
    report_failed_before,
    settle,
)
from .progress import Progress
from .shared import (
    DEFAULT_MODEL,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_connection_flags,
    client_settings,
    positive_int,
)

__all__ = ["add_batch_parser", "run_batch_command"]

_PROGRESS_INTERVAL = 0.1


_non_negative_int = bounded(int, 0)
_seconds = bounded(float, 0.0)


def add_batch_parser(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to ``bedrock-chat``'s subparsers."""

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "batch",
        help="run a JSONL file of requests concurrently, resumably",
        description="Run every record of INPUT.jsonl and append one result line per record to OUTPUT.jsonl. "
        "Rerunning with the same OUTPUT skips the records already there.",
    )
    parser.add_argument("input", metavar="INPUT.jsonl", help="Bedrock batch-inference lines or create() lines")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT.jsonl", help="result lines (appended)")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model of lines without one (default {DEFAULT_MODEL}); use one OUTPUT per model",
    )
    parser.add_argument("--concurrency", type=positive_int, default=16, help="most requests in flight (default 16)")
    parser.add_argument("--rpm", type=positive_int, help="most requests in any 60 seconds")
    parser.add_argument("--tpm", type=positive_int, help="most tokens in any 60 seconds (estimated, then reconciled)")
    parser.add_argument(
        "--max-retries",
        type=_non_negative_int,
        default=DEFAULT_BATCH_RETRIES,
        help=f"retries per request (throttling, 5xx; default {DEFAULT_BATCH_RETRIES})",
    )
    parser.add_argument(
        "--backoff",
        type=_seconds,
        metavar="SECONDS",
        help="base delay of the retries' exponential backoff (default 1 s for throttling, 0.1 s otherwise)",
    )
    parser.add_argument("--retry-errors", action="store_true", help="also redo records whose OUTPUT line is an error")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per finished record on stderr")
    add_connection_flags(parser)
    add_fault_arguments(parser)  # they shape the emulator's answers when --emulator is given

    add_bedrock_batch_arguments(parser)


# -- input -------------------------------------------------------------------------------------------------


def _records(path: Path, client: AnthropicBedrock, skip: set[str], default_model: str) -> Generator[Record, None, None]:
    """The records still to do, built lazily (malformed lines were reported by the scan)."""
    for number, raw in input_lines(path):
        try:
            record_id, data = line_fields(raw, number)
        except Malformed:
            continue
        if record_id in skip:
            continue
        skip.add(record_id)  # a duplicate id never gets here (the scan refused it), but never twice anyway
        yield build_record(client, record_id, data, default_model)


# -- output ------------------------------------------------------------------------------------------------


# -- progress ----------------------------------------------------------------------------------------------


class _Display:
    """The progress bar on a terminal (redrawn at most every 0.1 s); nothing otherwise."""

    def __init__(self, progress: Progress, err: TextIO) -> None:
        self._progress = progress
        self._err = err
        self._tty = err.isatty()
        self._last = 0.0

    def update(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._tty and (force or now - self._last >= _PROGRESS_INTERVAL):
            self._last = now
            self._err.write("\r" + self._progress.bar(now) + "\x1b[K")
            self._err.flush()

    def clear(self) -> None:
        if self._tty:
            self._err.write("\r\x1b[K")
            self._err.flush()


# -- the command -------------------------------------------------------------------------------------------


def _prepare_record(record: Record) -> Record:
    if record.error is not None:
        raise record.error
    return record


def _estimate(record: Record) -> int:
    return estimate_tokens(record.model_input or {})


@attrs.frozen
class _Plan:
    """What the run starts from: INPUT (readable twice), OUTPUT checked and read back, the ids of INPUT."""

    source: Path
    output: OutputPlan
    ids: frozenset[str]
    skip: frozenset[str]


async def _run(
    settings: dict[str, Any], args: argparse.Namespace, plan: _Plan, progress: Progress, err: TextIO
) -> None:
    display = _Display(progress, err)
    async with AnthropicBedrock(**settings) as client:
        existing = plan.output.existing
        check_conflicts(plan.source, client, existing.skipped_inputs(retry_errors=args.retry_errors), args.model)
        settle(args.output, plan.output, plan.ids, plan.skip, retry_errors=args.retry_errors, err=err)

        instruments = client._telemetry.instruments()  # None unless an OpenTelemetry SDK is set up
        telemetry = None if instruments is None else BatchTelemetry(instruments)

        async def execute(record: Record, on_retry: RetryHook) -> InvokeModelResponse:
            if telemetry is not None and instruments is not None:
                return await telemetry.run(lambda hook: _observed(client, instruments, record, hook), on_retry)
            return await client._send_raw(record.path, record.body, record.headers, on_retry=on_retry)

        operation: Operation[Record, Record, InvokeModelResponse] = Operation(
            prepare=_prepare_record,
            execute=execute,
            estimate_tokens=_estimate,
            used_tokens=lambda response: used_tokens(response.usage),
        )
        with open_output(args.output, stream=plan.output.stream) as output:
            records = _records(plan.source, client, set(plan.skip), args.model)
            scheduler = Scheduler(
                records,
                operation,
                concurrency=args.concurrency,
                requests_per_minute=args.rpm,
                tokens_per_minute=args.tpm,
            )
            if telemetry is not None:
                telemetry.begin()
            try:
                async with scheduler:
                    async for outcome in scheduler:
                        _record_outcome(outcome, output, progress, args.verbose, err, display)
                        if telemetry is not None:
                            telemetry.outcome(outcome.error is None)
            except BaseException as error:
                if telemetry is not None:
                    telemetry.end(error)
                raise
            else:
                if telemetry is not None:
                    telemetry.end()
            finally:
                records.close()  # closes the input file now, not whenever the generator is collected
                display.clear()


async def _observed(
    client: AnthropicBedrock, instruments: Instruments, record: Record, on_retry: RetryHook
) -> InvokeModelResponse:
    """One record sent with its own CLIENT span (a child of the batch's), as ``create`` records its calls."""
    # A record that cannot be sent (no model) failed in _prepare_record, before getting here.
    assert record.model is not None
    assert record.model_input is not None
    observer = instruments.start_raw(record.model, record.model_input, record.headers, *await client._server())
    response = await instruments.run(
        observer, lambda hook: client._send_raw(record.path, record.body, record.headers, on_retry=hook), on_retry
    )
    observer.succeed_raw(response)
    return response


def _record_outcome(
    outcome: Outcome[Record, InvokeModelResponse],
    output: BinaryIO,
    progress: Progress,
    verbose: bool,
    err: TextIO,
    display: _Display,
) -> None:
    record, response, error = outcome.item, outcome.value, outcome.error
    append(output, result_line(record, response, error))
    if error is None:
        assert response is not None
        progress.ok += 1
        progress.tokens += used_tokens(response.usage) or 0
        progress.cache_read += response.usage.cache_read_input_tokens or 0
        progress.cache_write += response.usage.cache_creation_input_tokens or 0
    else:
        progress.failed += 1
    if verbose:
        display.clear()
        state = "ok" if error is None else f"error {error_code(error)}: {error}"
        err.write(f"{record.record_id}: {state}\n")
        err.flush()
    display.update()


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``bedrock-chat batch``; returns the exit status (0: every record has a modelOutput line)."""
    if getattr(args, "via", "local") == "bedrock-batch":
        return run_bedrock_batch(args)
    err = sys.stderr
    try:
        output = prepare_output(args.input, args.output, retry_errors=args.retry_errors)
    except (OSError, OutputError) as exc:
        err.write(f"bedrock-chat batch: {exc}\n")
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR
    try:
        with open_input(args.input) as source:
            return _run_local(args, source, output, err)
    except OSError as exc:  # INPUT cannot be read (or copied)
        err.write(f"bedrock-chat batch: {exc}\n")
        return EXIT_ERROR


def _run_local(args: argparse.Namespace, source: Path, output: OutputPlan, err: TextIO) -> int:
    """The local run of INPUT (a path readable twice); see the module's theory of operation."""

    name = "<stdin>" if args.input == "-" else args.input
    try:
        scan, ids = scan_input(source)
        for number, reason in scan.malformed:
            err.write(f"{name}:{number}: malformed line skipped: {reason}\n")
        if scan.duplicates:
            for record_id, lines in scan.duplicates:
                err.write(f"{name}: record id {record_id!r} appears on lines {', '.join(map(str, lines))}\n")
            err.write("bedrock-chat batch: duplicate record ids; make them unique (nothing was sent)\n")
            return EXIT_ERROR
    except OSError as exc:
        err.write(f"bedrock-chat batch: {exc}\n")
        return EXIT_ERROR
    skip = output.existing.skip(retry_errors=args.retry_errors)
    skipped = len(skip & ids)
    failed_before = len(output.existing.failed_only(ids, retry_errors=args.retry_errors))
    progress = Progress(
        total=scan.records - skipped, started=time.monotonic(), skipped=skipped, failed_before=failed_before
    )
    progress.malformed = len(scan.malformed)
    retry = RetryPolicy(max_retries=args.max_retries)
    if args.backoff is not None:
        retry = RetryPolicy(max_retries=args.max_retries, base=args.backoff, throttle_base=args.backoff)
    plan = _Plan(source, output, frozenset(ids), frozenset(skip))
    try:
        with client_settings(args) as settings:
            settings["retry_policy"] = retry
            anyio.run(_run, settings, args, plan, progress, err)
    except KeyboardInterrupt:
        progress.interrupted = True
        err.write("\n" + progress.summary(time.monotonic(), args.output) + "\n")
        return EXIT_INTERRUPTED
    except ConflictError as exc:
        exc.report(err, name, args.output)
        return EXIT_ERROR
    except WriteError as exc:
        err.write(
            f"bedrock-chat batch: cannot write to OUTPUT {args.output}: {exc}; stopped with {progress.done} of"
            f" {progress.total} results written\n"
        )
        return EXIT_ERROR
    except (OSError, OutputError) as exc:
        err.write(f"bedrock-chat batch: {exc}\n")
        return EXIT_ERROR
    err.write(progress.summary(time.monotonic(), args.output) + "\n")
    if progress.done != progress.total:
        err.write(f"bedrock-chat batch: {progress.total - progress.done} records were not run (did INPUT change?)\n")
        return EXIT_ERROR
    if report_failed_before(progress.failed_before, err) != EXIT_OK:
        return EXIT_ERROR
    return EXIT_OK if progress.failed == 0 and progress.malformed == 0 else EXIT_ERROR
