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
import json
import sys
import time
from collections.abc import Collection, Generator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import anyio
import attrs

from .._batch.files import (
    MAX_LINE_BYTES,
    Existing,
    OutputError,
    OutputPlan,
    UsageError,
    WriteError,
    append,
    bounded_lines,
    input_digest,
    open_input,
    open_output,
    prepare_output,
    settle_output,
    too_long,
)
from .._batch.scheduler import Operation, Outcome, RetryHook, Scheduler, estimate_tokens, prepare_chat, used_tokens
from .._client import AnthropicBedrock
from .._core.argtypes import bounded
from .._core.config import RetryPolicy
from .._core.models import resolve_model
from .._core.protocol import InvokeModelResponse, invoke_path
from .._errors import APIError, BedrockError, InvalidRequestError, RequestTimeoutError

__all__ = [
    "ConflictError",
    "add_batch_parser",
    "build_record",
    "check_conflicts",
    "report_failed_before",
    "run_batch_command",
    "settle",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_CONFLICTS_SHOWN = 20
#: The signed headers of InvokeModel, as botocore sends them.
_INVOKE_HEADERS = (("accept", "application/json"), ("content-type", "application/json"))
#: Errors without an HTTP status of their own -> the ``errorCode`` written for them (first match wins).
_ERROR_CODES: tuple[tuple[type[BedrockError], int], ...] = ((InvalidRequestError, 400), (RequestTimeoutError, 408))
_DEFAULT_ERROR_CODE = 500
_PROGRESS_INTERVAL = 0.1


_non_negative_int = bounded(int, 0)
_seconds = bounded(float, 0.0)


def add_batch_parser(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to ``bedrock-chat``'s subparsers."""
    from ..emulator._cli import add_fault_arguments
    from .main import DEFAULT_MODEL, _add_connection_flags, _positive_int

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
    parser.add_argument("--concurrency", type=_positive_int, default=16, help="most requests in flight (default 16)")
    parser.add_argument("--rpm", type=_positive_int, help="most requests in any 60 seconds")
    parser.add_argument("--tpm", type=_positive_int, help="most tokens in any 60 seconds (estimated, then reconciled)")
    parser.add_argument(
        "--max-retries", type=_non_negative_int, default=6, help="retries per request (throttling, 5xx; default 6)"
    )
    parser.add_argument(
        "--backoff",
        type=_seconds,
        metavar="SECONDS",
        help="base delay of the retries' exponential backoff (default 1 s for throttling, 0.1 s otherwise)",
    )
    parser.add_argument("--retry-errors", action="store_true", help="also redo records whose OUTPUT line is an error")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per finished record on stderr")
    _add_connection_flags(parser)
    add_fault_arguments(parser)  # they shape the emulator's answers when --emulator is given
    from .batch_jobs import add_bedrock_batch_arguments

    add_bedrock_batch_arguments(parser)


# -- input -------------------------------------------------------------------------------------------------


class _Malformed(Exception):
    """A line that cannot be a record: reported by line number, skipped."""


def _line_fields(raw: bytes, line: int) -> tuple[str, dict[str, Any]]:
    """The record id and the JSON object of one input line."""
    if too_long(raw, MAX_LINE_BYTES):
        raise _Malformed(f"longer than {MAX_LINE_BYTES:,} bytes (Bedrock takes bodies of at most 25,000,000)")
    try:
        data = json.loads(raw)  # invalid UTF-8 is a ValueError too
    except ValueError as exc:
        raise _Malformed(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _Malformed(f"a record must be a JSON object, not {type(data).__name__}")
    ids = [data[key] for key in ("recordId", "id") if key in data]
    if len(ids) == 2 and ids[0] != ids[1]:
        raise _Malformed("recordId and id differ")
    record_id = ids[0] if ids else f"{line:011d}"
    if not isinstance(record_id, str) or not record_id:
        raise _Malformed(f"the record id must be a non-empty string, got {record_id!r}")
    return record_id, data


def _input_lines(path: Path) -> Generator[tuple[int, bytes], None, None]:
    """Non-blank lines with their 1-based numbers (an over-long one cut short: ``_line_fields`` refuses it)."""
    with path.open("rb") as lines:
        for number, raw in enumerate(bounded_lines(lines, MAX_LINE_BYTES), 1):
            if not raw.isspace():
                yield number, raw


@attrs.define
class _Scan:
    """What the first pass over the input found."""

    records: int = 0
    malformed: list[tuple[int, str]] = attrs.field(factory=list)
    duplicates: list[tuple[str, list[int]]] = attrs.field(factory=list)


def _scan(path: Path) -> tuple[_Scan, set[str]]:
    """Count records, find malformed lines and duplicate ids; returns the scan and the set of ids."""
    scan = _Scan()
    first_line: dict[str, int] = {}
    repeats: dict[str, list[int]] = {}
    for number, raw in _input_lines(path):
        try:
            record_id, _ = _line_fields(raw, number)
        except _Malformed as exc:
            scan.malformed.append((number, str(exc)))
            continue
        if record_id in first_line:
            repeats.setdefault(record_id, [first_line[record_id]]).append(number)
        else:
            first_line[record_id] = number
            scan.records += 1
    scan.duplicates = list(repeats.items())
    return scan, set(first_line)


@attrs.frozen
class _Record:
    """One input record, ready to send (or carrying the reason it cannot be)."""

    record_id: str
    model_input: Mapping[str, Any] | None
    path: str = ""
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = _INVOKE_HEADERS
    error: BedrockError | None = None


def _bedrock_record(client: AnthropicBedrock, record_id: str, data: Mapping[str, Any], model: object) -> _Record:
    body = data["modelInput"]
    if not isinstance(body, dict):
        error = InvalidRequestError("modelInput", f"must be a JSON object, got {type(body).__name__}")
        return _Record(record_id, None, error=error)
    if not isinstance(model, str):  # resolve_model is cached: an unhashable id must not reach it
        return _Record(record_id, body, error=InvalidRequestError("modelId", f"must be a string, got {model!r}"))
    try:
        resolved = resolve_model(model)
        client._check_model_region(resolved)
    except BedrockError as error:
        return _Record(record_id, body, error=error)
    try:  # as invoke_model serialises: no NaN, nothing that is not UTF-8
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        return _Record(record_id, body, error=InvalidRequestError("modelInput", f"cannot be sent: {exc}"))
    return _Record(record_id, body, invoke_path(resolved.model_id, stream=False), payload)


def _our_record(client: AnthropicBedrock, record_id: str, data: Mapping[str, Any], model: str) -> _Record:
    arguments = {key: value for key, value in data.items() if key not in ("id", "recordId")}
    arguments.setdefault("model", model)
    try:
        invocation = prepare_chat(client, arguments)
    except BedrockError as error:
        return _Record(record_id, None, error=error)
    return _Record(record_id, json.loads(invocation.body), invocation.path, invocation.body, invocation.headers)


def build_record(client: AnthropicBedrock, record_id: str, data: Mapping[str, Any], model: str) -> _Record:
    """The record of one parsed input line, in either form (``model`` for lines without one)."""
    if "modelInput" in data:
        return _bedrock_record(client, record_id, data, data.get("modelId", model))
    if "messages" in data:
        return _our_record(client, record_id, data, model)
    error = InvalidRequestError("record", "needs modelInput (Bedrock's form) or messages (create()'s)")
    return _Record(record_id, None, error=error)


def _records(
    path: Path, client: AnthropicBedrock, skip: set[str], default_model: str
) -> Generator[_Record, None, None]:
    """The records still to do, built lazily (malformed lines were reported by the scan)."""
    for number, raw in _input_lines(path):
        try:
            record_id, data = _line_fields(raw, number)
        except _Malformed:
            continue
        if record_id in skip:
            continue
        skip.add(record_id)  # a duplicate id never gets here (the scan refused it), but never twice anyway
        yield build_record(client, record_id, data, default_model)


def check_conflicts(path: Path, client: AnthropicBedrock, inputs: Mapping[str, bytes], model: str) -> None:
    """Raise :class:`ConflictError` naming the input lines whose id OUTPUT already has with another modelInput.

    Such a result answers another question (OUTPUT belongs to another input); skipping the record
    would leave its answer missing while the run says done.
    """
    found: list[tuple[int, str]] = []
    if not inputs:
        return
    for number, raw in _input_lines(path):
        try:
            record_id, data = _line_fields(raw, number)
        except _Malformed:
            continue
        expected = inputs.get(record_id)
        if expected is None:
            continue
        record = build_record(client, record_id, data, model)
        if record.model_input is not None and input_digest(record.model_input) != expected:
            found.append((number, record_id))
    if found:
        raise ConflictError(found)


# -- output ------------------------------------------------------------------------------------------------


def _error_code(error: BedrockError) -> int:
    if isinstance(error, APIError) and error.status >= 400:
        return error.status
    return next((code for cls, code in _ERROR_CODES if isinstance(error, cls)), _DEFAULT_ERROR_CODE)


def result_line(record: _Record, response: InvokeModelResponse | None, error: BedrockError | None) -> bytes:
    """One output line (with its newline), in the shape of Bedrock batch inference's ``.jsonl.out``."""
    line: dict[str, Any] = {"recordId": record.record_id}
    if record.model_input is not None:
        line["modelInput"] = record.model_input
    if error is not None:
        line["error"] = {"errorCode": _error_code(error), "errorMessage": str(error)}
    else:
        assert response is not None
        line["modelOutput"] = response.body
    try:
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (a "\\ud800" escape in the input): keep it escaped
        return json.dumps(line, separators=(",", ":")).encode() + b"\n"


# -- progress ----------------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@attrs.define
class Progress:
    """Counts of a run, and their rendering as a progress bar and a summary (pure: time passed in)."""

    total: int
    started: float
    skipped: int = 0
    #: Of the records skipped, those whose only OUTPUT line is an error (they keep the run from exit 0).
    failed_before: int = 0
    malformed: int = 0
    ok: int = 0
    failed: int = 0
    tokens: int = 0
    interrupted: bool = False
    #: Records already done when watching started (a batch job attached to midway): not in the rate.
    baseline: int = 0

    @property
    def done(self) -> int:
        """Records finished in this run (ok or failed)."""
        return self.ok + self.failed

    def bar(self, now: float, width: int = 24, *, tokens: bool = True) -> str:
        """``[#####-----] 50/100 done, 2 failed | 12.3 req/s | 456 tok/s | ETA 0:04`` (tok/s only if ``tokens``)."""
        elapsed = max(now - self.started, 1e-9)
        rate = max(self.done - self.baseline, 0) / elapsed
        filled = width * min(self.done, self.total) // self.total if self.total else width
        eta = _duration(max(self.total - self.done, 0) / rate) if rate > 0 else "?"
        token_rate = f" | {self.tokens / elapsed:.0f} tok/s" if tokens else ""
        return (
            f"[{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total} done, {self.failed} failed"
            f" | {rate:.1f} req/s{token_rate} | ETA {eta}"
        )

    def summary(self, now: float, output: str) -> str:
        """The one line printed at the end."""
        elapsed = now - self.started
        state = "interrupted (rerun to resume)" if self.interrupted else "done"
        parts = [f"{self.ok} ok", f"{self.failed} failed"]
        if self.skipped:
            errors = f" ({self.failed_before} of them errors)" if self.failed_before else ""
            parts.append(f"{self.skipped} already in the output{errors}")
        if self.malformed:
            parts.append(f"{self.malformed} malformed input lines skipped")
        return f"bedrock-chat batch: {state}: {', '.join(parts)}; {self.tokens:,} tokens in {elapsed:.1f} s -> {output}"


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


def _prepare_record(record: _Record) -> _Record:
    if record.error is not None:
        raise record.error
    return record


def _estimate(record: _Record) -> int:
    return estimate_tokens(record.model_input or {})


class ConflictError(Exception):
    """OUTPUT has results for some of INPUT's record ids, but for other model inputs: (line, id) pairs."""

    def __init__(self, conflicts: list[tuple[int, str]]) -> None:
        self.conflicts = conflicts
        super().__init__(f"{len(conflicts)} conflicting record(s)")

    def report(self, err: TextIO, source: str, output: str) -> None:
        """The lines on stderr: each conflict (the first 20) and what to do."""
        for number, record_id in self.conflicts[:_CONFLICTS_SHOWN]:
            err.write(f"{source}:{number}: {output} has a result for {record_id!r}, but for another modelInput\n")
        if len(self.conflicts) > _CONFLICTS_SHOWN:
            err.write(f"bedrock-chat batch: ... and {len(self.conflicts) - _CONFLICTS_SHOWN} more such lines\n")
        err.write(
            "bedrock-chat batch: OUTPUT holds the results of another input; use another OUTPUT (nothing was sent)\n"
        )


@attrs.frozen
class _Plan:
    """What the run starts from: INPUT (readable twice), OUTPUT checked and read back, the ids of INPUT."""

    source: Path
    output: OutputPlan
    ids: frozenset[str]
    skip: frozenset[str]


def _torn_fate(existing: Existing, ids: Collection[str], skip: Collection[str]) -> str:
    """What becomes of the record of a torn last line, said as it is (it may not be in this INPUT)."""
    record = existing.torn_id
    if record is None:
        return "its record id was cut too; a rerun of the INPUT it came from redoes that record"
    if record in skip:
        return f"record {record!r} already has a line before it"
    if record in ids:
        return f"its record {record!r} is redone"
    return f"its record {record!r} is not in this INPUT; a rerun of the INPUT that has it redoes it"


def settle(
    output: str, plan: OutputPlan, ids: Collection[str], skip: Collection[str], *, retry_errors: bool, err: TextIO
) -> None:
    """Make a file OUTPUT ready to append to (both paths), saying what became of a torn last line."""
    if plan.stream:
        return
    settle_output(Path(output), plan.existing, retry_errors=retry_errors)
    if plan.existing.torn_at is not None:
        fate = _torn_fate(plan.existing, ids, skip)
        err.write(f"{output}: an incomplete last line (an interrupted write) was removed; {fate}\n")


def report_failed_before(count: int, err: TextIO) -> int:
    """Exit 1 while records of INPUT have only an error line (rule: exit 0 only when every one has a modelOutput)."""
    if not count:
        return EXIT_OK
    err.write(
        f"bedrock-chat batch: {count} record(s) of INPUT have only an error line in OUTPUT;"
        " rerun with --retry-errors to redo them\n"
    )
    return EXIT_ERROR


async def _run(
    settings: dict[str, Any], args: argparse.Namespace, plan: _Plan, progress: Progress, err: TextIO
) -> None:
    display = _Display(progress, err)
    async with AnthropicBedrock(**settings) as client:
        existing = plan.output.existing
        check_conflicts(plan.source, client, existing.skipped_inputs(retry_errors=args.retry_errors), args.model)
        settle(args.output, plan.output, plan.ids, plan.skip, retry_errors=args.retry_errors, err=err)

        async def execute(record: _Record, on_retry: RetryHook) -> InvokeModelResponse:
            return await client._send_raw(record.path, record.body, record.headers, on_retry=on_retry)

        operation: Operation[_Record, _Record, InvokeModelResponse] = Operation(
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
            try:
                async with scheduler:
                    async for outcome in scheduler:
                        _record_outcome(outcome, output, progress, args.verbose, err, display)
            finally:
                records.close()  # closes the input file now, not whenever the generator is collected
                display.clear()


def _record_outcome(
    outcome: Outcome[_Record, InvokeModelResponse],
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
    else:
        progress.failed += 1
    if verbose:
        display.clear()
        state = "ok" if error is None else f"error {_error_code(error)}: {error}"
        err.write(f"{record.record_id}: {state}\n")
        err.flush()
    display.update()


def run_batch_command(args: argparse.Namespace) -> int:
    """Run ``bedrock-chat batch``; returns the exit status (0: every record has a modelOutput line)."""
    if getattr(args, "via", "local") == "bedrock-batch":
        from .batch_jobs import run_bedrock_batch

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
    from .main import _client_settings

    name = "<stdin>" if args.input == "-" else args.input
    try:
        scan, ids = _scan(source)
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
        with _client_settings(args) as settings:
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
