"""The files of ``bedrock-chat batch``: INPUT read in bounded lines, twice; OUTPUT read back, settled, appended to.

Theory of operation
-------------------
**Lines are bounded.** Every line is read with a limit (:data:`MAX_LINE_BYTES` for INPUT, twice that for
OUTPUT): a longer one is kept as its first ``limit + 1`` bytes, which marks it as too long, and the rest
is dropped a chunk at a time, so no file (``/dev/zero`` included) can make memory grow without limit.

**INPUT is read twice** (a scan, then the run), so it must give the same bytes twice. A regular file
does; stdin (``-``), a pipe or a device does not, and is first copied once to a temporary file (each
line bounded as above), which both passes then read. The copy takes as much disk as the input.

**OUTPUT is the run's state.** A regular OUTPUT is read back before anything is sent: each complete
line must be a result (a ``recordId`` and exactly one of ``modelOutput`` and ``error``), or the run
stops naming the line. A last line without its newline is kept (the newline added) when it parses, and
cut off when it does not (a kill mid-write: not a result, so its record counts as not done).
``--retry-errors`` rewrites OUTPUT without its error lines as the file the user named: a fsynced copy
renamed over the symlink's target, with the file's mode and owner (a file with other hard links is
refused: they would keep the old lines). stdout (``-``), a pipe or a device is written only, never
read: no resume, no rewrite. A write OUTPUT refuses (a full disk, ``/dev/full``, a closed pipe) stops
the run with that error. The checks are one function (:func:`prepare_output`) for both the local run
and ``--via bedrock-batch``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import attrs

__all__ = [
    "MAX_LINE_BYTES",
    "Existing",
    "OutputError",
    "OutputPlan",
    "UsageError",
    "WriteError",
    "append",
    "bounded_lines",
    "input_digest",
    "is_stream",
    "open_input",
    "open_output",
    "prepare_output",
    "read_output",
    "same_file",
    "settle_output",
    "too_long",
]

#: The longest input line read: Bedrock's 25,000,000-byte body limit and a MiB for the line's other fields.
#: A longer line cannot be sent; reading it whole could exhaust memory (``/dev/zero`` has no newline).
MAX_LINE_BYTES = 25_000_000 + 1_048_576
#: The longest OUTPUT line read back: a modelInput within the limit above and its reply.
MAX_RESULT_LINE = 2 * MAX_LINE_BYTES
_CHUNK = 1 << 20  # the rest of an over-long line is dropped a MiB at a time


def bounded_lines(stream: BinaryIO, limit: int) -> Iterator[bytes]:
    """Every line of ``stream``, none held longer than ``limit`` bytes (plus its newline).

    A longer line is yielded as its first ``limit + 1`` bytes without a newline (so :func:`too_long` knows
    it), and the rest of it is read and dropped a chunk at a time: memory stays bounded even on a source
    that never sends a newline (``/dev/zero``).
    """
    while raw := stream.readline(limit + 1):
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (rest := stream.readline(_CHUNK)) and not rest.endswith(b"\n"):
                pass
        yield raw


def too_long(raw: bytes, limit: int) -> bool:
    """Whether :func:`bounded_lines` cut ``raw`` short."""
    return len(raw) > limit and not raw.endswith(b"\n")


@contextlib.contextmanager
def open_input(name: str) -> Iterator[Path]:
    """INPUT as a path that reads the same bytes twice (the scan, then the run).

    A regular file is used as it is. Standard input (``-``), a pipe (``<(...)``, ``/dev/stdin``, a named
    pipe) or a device can be read only once: it is copied to a temporary file first, each line cut to
    ``MAX_LINE_BYTES + 1`` bytes (still too long, so still reported as such), so the copy is bounded
    by the input's size and never holds more than one bounded line in memory.
    """
    if name != "-":
        path = Path(name)
        if stat.S_ISREG(path.stat().st_mode):
            yield path
            return
    with tempfile.TemporaryDirectory(prefix="bedrock-chat-input-") as directory:
        spool = Path(directory) / "input.jsonl"
        with contextlib.ExitStack() as files:
            stream = sys.stdin.buffer if name == "-" else files.enter_context(Path(name).open("rb"))
            _copy_lines(stream, files.enter_context(spool.open("wb")))
        yield spool


def _copy_lines(source: BinaryIO, copy: BinaryIO) -> None:
    """Copy ``source`` line by line, bounded (a function of its own: its last line is freed on return)."""
    for raw in bounded_lines(source, MAX_LINE_BYTES):
        copy.write(raw)
        if not raw.endswith(b"\n"):
            copy.write(b"\n")


def input_digest(model_input: object) -> bytes:
    """A fingerprint of a modelInput, the same for the input line and the result line that echoes it."""
    canonical = json.dumps(model_input, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=16).digest()


class OutputError(Exception):
    """The output file cannot be resumed (or written) safely."""


def is_stream(name: str) -> bool:
    """Whether OUTPUT is ``-`` (stdout), a pipe or a device: written, never read back, so never resumed.

    Reading such a file to resume would block (a pipe's other end) or mean nothing (``/dev/null``).
    """
    if name == "-":
        return True
    try:
        mode = os.stat(name).st_mode
    except OSError:
        return False  # created as a regular file (or failing as one, with the error named)
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def same_file(input_name: str, output_name: str) -> bool:
    """Whether appending to OUTPUT would write into INPUT: the same file by identity (hard links, symlinks).

    OUTPUT ``-`` is stdout, which ``>> INPUT`` makes INPUT itself.
    """
    try:
        output = os.fstat(sys.stdout.fileno()) if output_name == "-" else os.stat(output_name)
        source = os.fstat(sys.stdin.fileno()) if input_name == "-" else os.stat(input_name)
    except (OSError, ValueError):  # no such file; stdin or stdout closed (or not a file: a test capture)
        return False
    return stat.S_ISREG(output.st_mode) and (source.st_dev, source.st_ino) == (output.st_dev, output.st_ino)


@attrs.define
class Existing:
    """What OUTPUT holds: done and failed record ids, the fingerprints of their inputs, its last line's state."""

    done: set[str] = attrs.field(factory=set)
    errors: set[str] = attrs.field(factory=set)
    inputs: dict[str, bytes] = attrs.field(factory=dict)
    torn_at: int | None = None  # the offset to cut back to
    torn_id: str | None = None  # the record id the torn line began with, if it can be read
    unterminated: bool = False  # the last line is a whole result without its newline: add it before appending

    def skip(self, *, retry_errors: bool) -> set[str]:
        """The record ids not to run again."""
        return set(self.done) if retry_errors else self.done | self.errors

    def skipped_inputs(self, *, retry_errors: bool) -> dict[str, bytes]:
        """The modelInput fingerprints of the records not run again (a record redone may have a new input)."""
        skip = self.skip(retry_errors=retry_errors)
        return {record_id: digest for record_id, digest in self.inputs.items() if record_id in skip}

    def failed_only(self, ids: set[str], *, retry_errors: bool) -> set[str]:
        """The records of ``ids`` left with only an error line (not redone): they keep a run from exit 0."""
        return set() if retry_errors else (self.errors - self.done) & ids


#: The start of a result line as ``result_line`` writes it: enough to name the record of a torn one.
_RECORD_ID_PREFIX = re.compile(rb'\s*\{\s*"recordId"\s*:\s*("(?:[^"\\]|\\.)*")')


def _torn_record_id(raw: bytes) -> str | None:
    """The record id a torn line began with, or None when the tear came before its end."""
    found = _RECORD_ID_PREFIX.match(raw)
    try:
        value = json.loads(found.group(1)) if found else None
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def read_output(path: Path) -> Existing:
    """Read a regular OUTPUT without changing it; a line that is not a result stops the run, named.

    A last line without its newline is kept when it parses (a whole result; the newline is added before
    appending) and marked to be cut when it does not (a write a kill interrupted: not a result, so no
    record counts it as done and a rerun of its input redoes that record).
    """
    existing = Existing()
    if not path.exists():
        return existing
    offset = 0
    with path.open("rb") as output:
        for number, raw in enumerate(bounded_lines(output, MAX_RESULT_LINE), 1):
            if too_long(raw, MAX_RESULT_LINE):
                raise OutputError(f"{path}:{number}: longer than {MAX_RESULT_LINE:,} bytes: not a result line")
            terminated = raw.endswith(b"\n")
            if terminated and raw.isspace():
                offset += len(raw)
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            if not terminated:
                if data is None:
                    existing.torn_at, existing.torn_id = offset, _torn_record_id(raw)
                    break
                existing.unterminated = True
            offset += len(raw)
            if not isinstance(data, dict) or not isinstance(data.get("recordId"), str):
                raise OutputError(f"{path}:{number}: not a result line; fix or remove it to resume")
            if ("modelOutput" in data) == ("error" in data):
                which = "both modelOutput and error" if "error" in data else "neither modelOutput nor error"
                raise OutputError(
                    f"{path}:{number}: not a result line (it has {which}; is OUTPUT an input file?);"
                    " fix or remove it to resume"
                )
            (existing.errors if "error" in data else existing.done).add(data["recordId"])
            if "modelInput" in data:
                existing.inputs[data["recordId"]] = input_digest(data["modelInput"])
    return existing


def settle_output(path: Path, existing: Existing, *, retry_errors: bool) -> None:
    """Make OUTPUT ready to append to: cut a torn last line or end a whole one; with ``retry_errors`` drop errors."""
    if existing.torn_at is not None:
        with path.open("r+b") as output:
            output.truncate(existing.torn_at)
    elif existing.unterminated:
        with path.open("ab") as output:
            output.write(b"\n")  # else the next line appended would join it, and both would be lost
    if retry_errors and existing.errors - existing.done:
        _drop_error_lines(path)


class UsageError(OutputError):
    """OUTPUT cannot be used as asked (``--retry-errors`` on a stream): a usage error, exit 2."""


@attrs.frozen
class OutputPlan:
    """OUTPUT checked before anything is sent: whether it is a stream, and what it already holds."""

    stream: bool
    existing: Existing


def prepare_output(input_name: str, output_name: str, *, retry_errors: bool, writing: bool = True) -> OutputPlan:
    """Check OUTPUT and read it back; raise :class:`OutputError` (or :class:`UsageError`) naming the problem.

    One function for the local run and ``--via bedrock-batch``, so the two cannot accept different
    OUTPUTs. ``writing=False`` (``--stop``: nothing is written) skips the check that OUTPUT is writable.
    """
    stream = is_stream(output_name)
    if stream and retry_errors:
        raise UsageError("--retry-errors rewrites OUTPUT: it must be a file, not stdout, a pipe or a device")
    if same_file(input_name, output_name):
        raise OutputError("INPUT and OUTPUT are the same file")
    if writing and not stream and os.path.exists(output_name) and not os.access(output_name, os.W_OK):
        raise OutputError(f"{output_name} is read-only: results could not be appended (nothing was sent)")
    return OutputPlan(stream, Existing() if stream else read_output(Path(output_name)))


def _drop_error_lines(path: Path) -> None:
    """Rewrite OUTPUT without its error lines, as the same file the user named.

    A copy in the same folder, fsynced, then renamed over the file (a kill leaves either the old file
    or the new one, never half of each). The rename goes to the symlink's target, not over the link,
    and the copy gets the file's mode and owner. A file with other hard links is refused: they would
    keep the old lines.
    """
    target = path.resolve()
    info = target.stat()
    if info.st_nlink > 1:
        raise OutputError(
            f"{path} has {info.st_nlink} hard links: --retry-errors rewrites it and the other names would keep"
            " the error lines; copy it to a file of its own first"
        )
    if not os.access(target, os.W_OK):
        raise OutputError(f"{path} is read-only: --retry-errors cannot rewrite it")
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with path.open("rb") as source, open(handle, "wb") as copy:
            for raw in bounded_lines(source, MAX_RESULT_LINE):
                if b'"error"' in raw and "error" in json.loads(raw):
                    continue
                copy.write(raw)
            copy.flush()
            os.fchmod(copy.fileno(), stat.S_IMODE(info.st_mode))
            made = os.fstat(copy.fileno())
            if (info.st_uid, info.st_gid) != (made.st_uid, made.st_gid):
                try:
                    os.fchown(copy.fileno(), info.st_uid, info.st_gid)
                except PermissionError:
                    raise OutputError(f"{path} belongs to another user: --retry-errors cannot rewrite it") from None
            os.fsync(copy.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


class WriteError(Exception):
    """OUTPUT refused a result line (a full disk, ``/dev/full``, a closed pipe): the run stops."""


def append(output: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file (a raw write may be partial)."""
    view = memoryview(data)
    try:
        while view:
            written = output.write(view)
            view = view[written or 0 :]
    except OSError as exc:
        raise WriteError(exc.strerror or str(exc)) from exc


@contextlib.contextmanager
def open_output(name: str, *, stream: bool) -> Iterator[BinaryIO]:
    """OUTPUT opened to append, unbuffered (``-`` is stdout); a regular file is fsynced however the run ends."""
    output: BinaryIO = open(os.dup(sys.stdout.fileno()) if name == "-" else name, "ab", buffering=0)  # noqa: SIM115
    with output:
        try:
            yield output
        finally:
            if not stream:
                os.fsync(output.fileno())
