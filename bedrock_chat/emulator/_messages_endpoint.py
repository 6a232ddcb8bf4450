"""The wire format of Bedrock's Messages-API surface, ``POST /anthropic/v1/messages``: bodies, SSE, errors, faults.

Theory of operation
-------------------
The route shares the pipeline of ``_handlers`` (route, authenticate, content type, fault, model and
body, answer); this module only knows what that surface looks like on the wire, as pure functions
from data to a :class:`~._responses.Reply`:

- :func:`peek_body` parses the JSON body once, before the fault is drawn, because here the body (not
  the path) says whether the answer streams (``"stream": true``) and which model is asked for.
- :func:`json_reply` / :func:`sse_reply` answer 200 with an Anthropic ``Message`` or with server-sent
  events, one HTTP chunk per event: ``message_start``, ``content_block_start``, one ``ping``,
  ``content_block_delta`` (``text_delta``) per piece of the fake model's text (the InvokeModel stream's
  chunking rules), ``content_block_stop``, ``message_delta``, ``message_stop``. When the fake model
  calls a tool (``_tools``), the tool block (``input_json_delta`` deltas) follows the text block, or
  replaces it when there is no text.
- :func:`error_reply` renders a :class:`~._wire_errors.ServiceError` in this surface's style.
- :func:`apply_fault` puts a mid-body fault into a 200 reply.

Every reply carries the request id twice, as ``x-amzn-RequestId`` (AWS) and ``request-id`` (what the
anthropic SDK reads), because which one Bedrock sends here is UNVERIFIED.

Choices where BEDROCK_MESSAGES_ENDPOINT.md says UNVERIFIED (the most likely reading, and why)
------------------------------------------------------------------------------------------------
- **Signing name.** SigV4 scopes for ``bedrock`` (bedrock-runtime's name) and ``bedrock-mantle`` (the
  anthropic SDK's mantle client) are both accepted: ``EmulatorOptions.messages_signing_names``.
- **API keys.** ``Authorization: Bearer <key>`` and, without an ``Authorization`` header,
  ``x-api-key: <key>`` (a third-party probe reports both work).
- **Versions.** The ``anthropic-version`` header is required (missing: 400, Anthropic's wording) and any
  ``YYYY-MM-DD`` is accepted (the SDK sends ``2026-10-21``); ``anthropic-beta`` passes through
  unchecked; a body ``anthropic_version`` is ignored.
- **Models.** Every form is accepted (base id, undated alias, inference profile, ARN; application
  profile and provisioned-model ARNs are served as unknown Messages models). A model the table (``_models``)
  serves only on InvokeModel is a 400 ``invalid_request_error``; an unknown one a 404
  ``not_found_error``.
- **Echoed model.** ``model`` in the response is the requested id without its ARN wrapper and
  cross-region profile prefix (``us.anthropic.claude-opus-4-7`` -> ``anthropic.claude-opus-4-7``), as a
  third-party report says; application-profile and provisioned-model ARNs are echoed whole.
- **Error bodies.** Errors from the AWS front end (authentication: the coral namespace, also
  ``expired_token``) keep the AWS shape, ``{"message": ...}`` with ``x-amzn-ErrorType``, as on
  InvokeModel. Bedrock's own errors (validation, model, throttling, faults) get Anthropic's shape,
  ``{"type": "error", "error": {"type", "message"}}``, *and* ``x-amzn-ErrorType`` with the equivalent
  AWS code, so a client that reads either one classifies the error correctly.
- **Overloaded.** ``service_unavailable`` is ``overloaded_error`` with Anthropic's status 529 (the
  anthropic SDK raises ``OverloadedError``; both it and this project's client retry any 5xx), not
  AWS's 503: the body is Anthropic's, so the status follows it. Other statuses stay AWS's (the
  throttle and ``model_not_ready`` 429, ``model_timeout`` 408 as ``timeout_error``, ``model_error``
  424 as ``api_error``, ``service_quota_exceeded`` 400 as ``invalid_request_error``).
- **Mid-stream errors.** ``stream_exception[:TYPE]`` sends ``event: error`` with Anthropic's error
  body in place of the event at ``max(1, n // 2)``, then ends the body cleanly. Types map by
  ``_wire_errors``' table; ``modelTimeoutException`` -> ``timeout_error`` is itself UNVERIFIED.
- **bad_crc.** SSE has no checksum, so the nearest corruption is used: the event at
  ``max(1, n // 2)`` keeps its ``event:`` line but its ``data:`` JSON is cut in half (not valid JSON).
  On a JSON answer it does nothing, as on InvokeModel.
- **Left out.** No ``X-Amzn-Bedrock-*-Token-Count`` headers and no ``amazon-bedrock-invocationMetrics``
  (InvokeModel's; clients use ``usage``); no ``count_tokens`` route (reported mantle-only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._core.sse import encode_event
from ._fake_model import FakeReply
from ._faults import STREAM_EXCEPTIONS, Fault, FaultKind
from ._models import ModelRef
from ._responses import NO_ADDITIONS, Additions, Reply, block_events, messages_body
from ._responses import apply_fault as apply_body_fault
from ._responses import error_reply as aws_error_reply
from ._tools import ToolCall
from ._wire_errors import ERROR_SHAPES, FRONT_END_NAMESPACE, STREAM_EXCEPTION_CODES, ServiceError

__all__ = [
    "OPERATION",
    "PATH",
    "Peeked",
    "apply_fault",
    "error_reply",
    "error_type",
    "json_reply",
    "message_body",
    "peek_body",
    "response_model_name",
    "sse_events",
    "sse_reply",
]

PATH = "/anthropic/v1/messages"
#: The ``operation`` recorded in ``emu.requests`` for this route.
OPERATION = "messages"

_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream")


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _ids(request_id: str) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    value = request_id.encode()
    return (b"x-amzn-requestid", value), (b"request-id", value)


@attrs.frozen
class Peeked:
    """What the pipeline needs from the body before the fault is drawn.

    ``document`` is the parsed JSON object, or the 400 to answer when the body is not one.
    """

    streaming: bool
    model_id: str | None
    document: dict[str, Any] | ServiceError


def peek_body(body: bytes) -> Peeked:
    """Parse the body once: whether it asks for a stream, its ``model`` (if a string), the document."""
    try:
        document: Any = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        error = ServiceError("ValidationException", f"Malformed input request: {exc}, please reformat your input.")
        return Peeked(False, None, error)
    if not isinstance(document, dict):
        error = ServiceError(
            "ValidationException",
            f"Malformed input request: expected a JSON object, found {type(document).__name__}.",
        )
        return Peeked(False, None, error)
    model = document.get("model")
    return Peeked(document.get("stream") is True, model if isinstance(model, str) else None, document)


def error_type(error: ServiceError) -> str:
    """The Anthropic ``error.type`` for an AWS error code (``api_error`` for codes without an equivalent)."""
    return error.shape.anthropic_type


def error_reply(error: ServiceError, request_id: str) -> Reply:
    """``error`` in this surface's style: AWS's for front-end errors, else Anthropic's plus ``x-amzn-ErrorType``."""
    if error.namespace == FRONT_END_NAMESPACE:
        reply = aws_error_reply(error, request_id)
        return attrs.evolve(reply, headers=(*reply.headers, _ids(request_id)[1]))
    body = _dumps({"type": "error", "error": {"type": error_type(error), "message": error.message}}).encode()
    return Reply(
        status=error.shape.anthropic_status,
        headers=(
            _JSON,
            (b"content-length", str(len(body)).encode()),
            *_ids(request_id),
            (b"x-amzn-errortype", error.error_type_header.encode()),
        ),
        parts=(body,),
    )


def response_model_name(model: ModelRef) -> str:
    """The ``model`` a response echoes: the id as given, minus ARN wrapper and profile prefix (UNVERIFIED)."""
    return model.unprefixed_id


def _usage(input_tokens: int, output_tokens: int, add: Additions = NO_ADDITIONS) -> dict[str, object]:
    usage: dict[str, object] = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    if add.cache is not None:
        usage.update(add.cache.fields())
    return usage


def message_body(
    generation: FakeReply,
    *,
    message_id: str,
    model: str,
    input_tokens: int,
    call: ToolCall | None = None,
    add: Additions = NO_ADDITIONS,
) -> dict[str, object]:
    """The Anthropic ``Message`` of a non-streaming answer: InvokeModel's, with the endpoint's cache counts."""
    usage = _usage(input_tokens, generation.output_tokens, add)
    return messages_body(
        generation,
        message_id=message_id,
        model=model,
        input_tokens=input_tokens,
        call=call,
        extra={"usage": usage},
        add=add,
    )


def json_reply(body: Mapping[str, object], *, request_id: str) -> Reply:
    """A 200 ``application/json`` answer."""
    data = _dumps(body).encode()
    return Reply(
        status=200,
        headers=(_JSON, (b"content-length", str(len(data)).encode()), *_ids(request_id)),
        parts=(data,),
    )


def _event(payload: Mapping[str, object]) -> bytes:
    return encode_event(str(payload["type"]), _dumps(payload))


def sse_events(
    generation: FakeReply,
    pieces: Sequence[str],
    *,
    message_id: str,
    model: str,
    input_tokens: int,
    call: ToolCall | None = None,
    add: Additions = NO_ADDITIONS,
) -> list[bytes]:
    """The encoded events of a streamed answer (see the module docstring for the sequence).

    The content blocks are ``_responses.block_events``' (thinking, cited text, tool call); the ``ping``
    comes right after the first ``content_block_start``; ``message_start``'s usage has the cache counts.
    """
    start = {**message_body(generation, message_id=message_id, model=model, input_tokens=input_tokens)}
    start.update(content=[], stop_reason=None, stop_sequence=None, usage=_usage(input_tokens, 1, add))
    blocks = block_events(generation, pieces, call, add)
    events = [_event({"type": "message_start", "message": start}), _event(blocks[0]), _event({"type": "ping"})]
    events.extend(_event(block) for block in blocks[1:])
    delta = {"stop_reason": generation.stop_reason, "stop_sequence": generation.stop_sequence}
    events.append(
        _event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": generation.output_tokens}})
    )
    events.append(_event({"type": "message_stop"}))
    return events


def sse_reply(events: Sequence[bytes], *, request_id: str) -> Reply:
    """A 200 ``text/event-stream`` answer, one HTTP chunk per event."""
    return Reply(status=200, headers=(_SSE, *_ids(request_id)), parts=tuple(events), chunked=True)


def _garble(event: bytes) -> bytes:
    """The event with its ``data:`` JSON cut in half: SSE's nearest thing to a bad checksum."""
    head, sep, data = event.partition(b"\ndata: ")
    json_text = data.removesuffix(b"\n\n")
    return head + sep + json_text[: len(json_text) // 2] + b"\n\n"


def apply_fault(reply: Reply, fault: Fault) -> Reply:
    """``reply`` changed by a mid-body fault, at event ``max(1, n // 2)`` (drops and stalls as on InvokeModel)."""
    parts = reply.parts
    if not reply.chunked or fault.kind not in (FaultKind.STREAM_EXCEPTION, FaultKind.BAD_CRC):
        return apply_body_fault(reply, fault)
    at = max(1, len(parts) // 2)
    if fault.kind is FaultKind.BAD_CRC:
        at = min(at, len(parts) - 1)
        return attrs.evolve(reply, parts=(*parts[:at], _garble(parts[at]), *parts[at + 1 :]), fault=fault.name)
    exception_type = fault.exception_type or "modelStreamErrorException"
    message = str(STREAM_EXCEPTIONS[exception_type][0]["message"])
    kind = ERROR_SHAPES[STREAM_EXCEPTION_CODES[exception_type]].anthropic_type
    error = {"type": "error", "error": {"type": kind, "message": message}}
    return attrs.evolve(reply, parts=(*parts[:at], encode_event("error", _dumps(error))), fault=fault.name)
