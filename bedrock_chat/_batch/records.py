"""The Bedrock batch-record format, shared by the local batch run and batch-inference jobs.

Input lines are Bedrock's ``{"recordId", "modelInput", "modelId"?}`` or ours, ``{"id", "model"?,
"messages", ...create() arguments}``; output lines have Bedrock's ``.jsonl.out`` shape, ``{"recordId",
"modelInput", "modelOutput"}`` or ``{"recordId", "modelInput", "error": {"errorCode", "errorMessage"}}``.
A line without an id gets its 1-based line number, zero-padded to 11 digits.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .._client import AnthropicBedrock
from .._core.models import ResolvedModel, resolve_model
from .._core.protocol import invoke_path
from .._core.responses import InvokeModelResponse
from .._errors import APIError, BedrockError, InvalidRequestError, RequestTimeoutError
from .chat import prepare_chat
from .files import MAX_LINE_BYTES, bounded_lines, too_long

__all__ = [
    "Malformed",
    "Record",
    "Scan",
    "bedrock_record",
    "error_code",
    "input_lines",
    "line_fields",
    "our_record",
    "result_line",
    "scan_input",
]


#: The signed headers of InvokeModel, as botocore sends them.
_INVOKE_HEADERS = (("accept", "application/json"), ("content-type", "application/json"))
#: Errors without an HTTP status of their own -> the ``errorCode`` written for them (first match wins).
_ERROR_CODES: tuple[tuple[type[BedrockError], int], ...] = ((InvalidRequestError, 400), (RequestTimeoutError, 408))
_DEFAULT_ERROR_CODE = 500


class Malformed(Exception):
    """A line that cannot be a record: reported by line number, skipped."""


def line_fields(raw: bytes, line: int) -> tuple[str, dict[str, Any]]:
    """The record id and the JSON object of one input line."""
    if too_long(raw, MAX_LINE_BYTES):
        raise Malformed(f"longer than {MAX_LINE_BYTES:,} bytes (Bedrock takes bodies of at most 25,000,000)")
    try:
        data = json.loads(raw)  # invalid UTF-8 is a ValueError too
    except ValueError as exc:
        raise Malformed(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Malformed(f"a record must be a JSON object, not {type(data).__name__}")
    ids = [data[key] for key in ("recordId", "id") if key in data]
    if len(ids) == 2 and ids[0] != ids[1]:
        raise Malformed("recordId and id differ")
    record_id = ids[0] if ids else f"{line:011d}"
    if not isinstance(record_id, str) or not record_id:
        raise Malformed(f"the record id must be a non-empty string, got {record_id!r}")
    return record_id, data


def input_lines(path: Path) -> Generator[tuple[int, bytes], None, None]:
    """Non-blank lines with their 1-based numbers (an over-long one cut short: ``line_fields`` refuses it)."""
    with path.open("rb") as lines:
        for number, raw in enumerate(bounded_lines(lines, MAX_LINE_BYTES), 1):
            if not raw.isspace():
                yield number, raw


@attrs.define
class Scan:
    """What the first pass over the input found."""

    records: int = 0
    malformed: list[tuple[int, str]] = attrs.field(factory=list)
    duplicates: list[tuple[str, list[int]]] = attrs.field(factory=list)


def scan_input(path: Path) -> tuple[Scan, set[str]]:
    """Count records, find malformed lines and duplicate ids; returns the scan and the set of ids."""
    scan = Scan()
    first_line: dict[str, int] = {}
    repeats: dict[str, list[int]] = {}
    for number, raw in input_lines(path):
        try:
            record_id, _ = line_fields(raw, number)
        except Malformed as exc:
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
class Record:
    """One input record, ready to send (or carrying the reason it cannot be)."""

    record_id: str
    model_input: Mapping[str, Any] | None
    path: str = ""
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = _INVOKE_HEADERS
    error: BedrockError | None = None
    #: The model it is sent to (None for a record that cannot be sent): its telemetry span names it.
    model: ResolvedModel | None = None


def bedrock_record(client: AnthropicBedrock, record_id: str, data: Mapping[str, Any], model: object) -> Record:
    """A record from a Bedrock-form line (``modelInput`` sent as it is, for ``model``)."""
    body = data["modelInput"]
    if not isinstance(body, dict):
        error = InvalidRequestError("modelInput", f"must be a JSON object, got {type(body).__name__}")
        return Record(record_id, None, error=error)
    if not isinstance(model, str):  # resolve_model is cached: an unhashable id must not reach it
        return Record(record_id, body, error=InvalidRequestError("modelId", f"must be a string, got {model!r}"))
    try:
        resolved = resolve_model(model)
        client._check_model_region(resolved)
    except BedrockError as error:
        return Record(record_id, body, error=error)
    try:  # as invoke_model serialises: no NaN, nothing that is not UTF-8
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:
        return Record(record_id, body, error=InvalidRequestError("modelInput", f"cannot be sent: {exc}"))
    return Record(record_id, body, invoke_path(resolved.model_id, stream=False), payload, model=resolved)


def our_record(client: AnthropicBedrock, record_id: str, data: Mapping[str, Any], model: str) -> Record:
    """A record from a ``create()``-form line, built exactly as ``create`` would send it."""
    arguments = {key: value for key, value in data.items() if key not in ("id", "recordId")}
    arguments.setdefault("model", model)
    try:
        invocation = prepare_chat(client, arguments)
    except BedrockError as error:
        return Record(record_id, None, error=error)
    body = json.loads(invocation.body)
    return Record(record_id, body, invocation.path, invocation.body, invocation.headers, model=invocation.model)


def error_code(error: BedrockError) -> int:
    """The ``errorCode`` of a result line: the HTTP status, else one by error class (500 by default)."""
    if isinstance(error, APIError) and error.status >= 400:
        return error.status
    return next((code for cls, code in _ERROR_CODES if isinstance(error, cls)), _DEFAULT_ERROR_CODE)


def result_line(record: Record, response: InvokeModelResponse | None, error: BedrockError | None) -> bytes:
    """One output line (with its newline), in the shape of Bedrock batch inference's ``.jsonl.out``."""
    line: dict[str, Any] = {"recordId": record.record_id}
    if record.model_input is not None:
        line["modelInput"] = record.model_input
    if error is not None:
        line["error"] = {"errorCode": error_code(error), "errorMessage": str(error)}
    else:
        assert response is not None
        line["modelOutput"] = response.body
    try:
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (a "\\ud800" escape in the input): keep it escaped
        return json.dumps(line, separators=(",", ":")).encode() + b"\n"
