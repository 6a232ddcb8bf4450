"""What both batch commands (the local run and ``--via bedrock-batch``) do with OUTPUT before a run:
records of either input form, the conflict check against results already there, settling a torn
last line, and the exit rule for records whose only line is an error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, TextIO

from .._batch.files import Existing, OutputPlan, input_digest, settle_output
from .._batch.records import Malformed, Record, bedrock_record, input_lines, line_fields, our_record
from .._client import AnthropicBedrock
from .._errors import InvalidRequestError
from .shared import EXIT_ERROR, EXIT_OK

__all__ = [
    "ConflictError",
    "build_record",
    "check_conflicts",
    "report_failed_before",
    "settle",
]


_CONFLICTS_SHOWN = 20


def build_record(client: AnthropicBedrock, record_id: str, data: Mapping[str, Any], model: str) -> Record:
    """The record of one parsed input line, in either form (``model`` for lines without one)."""
    if "modelInput" in data:
        return bedrock_record(client, record_id, data, data.get("modelId", model))
    if "messages" in data:
        return our_record(client, record_id, data, model)
    error = InvalidRequestError("record", "needs modelInput (Bedrock's form) or messages (create()'s)")
    return Record(record_id, None, error=error)


def check_conflicts(path: Path, client: AnthropicBedrock, inputs: Mapping[str, bytes], model: str) -> None:
    """Raise :class:`ConflictError` naming the input lines whose id OUTPUT already has with another modelInput.

    Such a result answers another question (OUTPUT belongs to another input); skipping the record
    would leave its answer missing while the run says done.
    """
    found: list[tuple[int, str]] = []
    if not inputs:
        return
    for number, raw in input_lines(path):
        try:
            record_id, data = line_fields(raw, number)
        except Malformed:
            continue
        expected = inputs.get(record_id)
        if expected is None:
            continue
        record = build_record(client, record_id, data, model)
        if record.model_input is not None and input_digest(record.model_input) != expected:
            found.append((number, record_id))
    if found:
        raise ConflictError(found)


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
