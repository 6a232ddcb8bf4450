"""The emulator's error wire format: every error code it answers with, its HTTP status and how it is spelled.

Theory of operation
-------------------
An error is a :class:`ServiceError`: a code and a message (and any modeled extra members). Its status,
its ``x-amzn-ErrorType`` namespace and its Anthropic-style ``error.type`` (the Messages endpoint's) are
not chosen where the error is raised: they come from one table, :data:`ERROR_SHAPES`, written from
BEDROCK_PROTOCOL.md §7 (bedrock-runtime's service model; botocore's ``service-2.json``) and §6.3 (the
``ResponseStream`` exception members) and BEDROCK_MESSAGES_ENDPOINT.md §4. It is the emulator's own: the
client's code table (``bedrock_chat._errors``) is what it checks, and ``tests/emulator/test_tables_agree.py``
compares the two, and this table's statuses with botocore's service models.

On the wire (rest-json): the status, ``Content-Type: application/json``, ``{"message": ...}`` plus the
extra members, and ``x-amzn-ErrorType: <Code>:<namespace>`` (botocore keeps the part before ``:``).
Mid-stream, an exception frame's ``:exception-type`` is the lowerCamel member name
(:data:`STREAM_EXCEPTION_CODES`). On ``/anthropic/v1/messages`` Bedrock's own errors take Anthropic's
shape, ``{"type": "error", "error": {"type", "message"}}``, with the ``error.type`` and status of
:attr:`ErrorShape.anthropic_type` / :attr:`ErrorShape.anthropic_status`; the AWS front end's
(authentication, routing) keep the AWS shape (see ``_messages_endpoint``).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = [
    "BEDROCK_NAMESPACE",
    "ERROR_SHAPES",
    "FRONT_END_NAMESPACE",
    "STREAM_EXCEPTION_CODES",
    "ErrorShape",
    "ServiceError",
]

#: Bedrock's own errors. The exact URL AWS uses is UNVERIFIED (clients keep only the part before ``:``).
BEDROCK_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
#: The shared AWS front end (authentication, routing, body parsing), as other AWS JSON services show it.
#: UNVERIFIED for Bedrock specifically.
FRONT_END_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.coral.service/"


@attrs.frozen
class ErrorShape:
    """How one error code goes on the wire.

    ``anthropic_type`` is the ``error.type`` of the Messages endpoint's body; ``anthropic_status`` its
    status there (529 ``overloaded_error`` is Anthropic's, not AWS's).
    """

    status: int
    namespace: str
    anthropic_type: str
    anthropic_status: int


def _bedrock(status: int, anthropic_type: str, anthropic_status: int | None = None) -> ErrorShape:
    return ErrorShape(status, BEDROCK_NAMESPACE, anthropic_type, anthropic_status or status)


def _front_end(status: int, anthropic_type: str) -> ErrorShape:
    return ErrorShape(status, FRONT_END_NAMESPACE, anthropic_type, status)


#: Every code the emulator answers with. Statuses of Bedrock's codes: service-2.json ``error.httpStatusCode``
#: (bedrock-runtime, and the ``bedrock`` control plane for batch jobs); the front end's: AWS's common errors.
ERROR_SHAPES: Mapping[str, ErrorShape] = {
    # bedrock-runtime (BEDROCK_PROTOCOL.md §7); ConflictException is also the control plane's, at 400.
    "ValidationException": _bedrock(400, "invalid_request_error"),
    "ServiceQuotaExceededException": _bedrock(400, "invalid_request_error"),
    "ConflictException": _bedrock(400, "invalid_request_error"),
    "AccessDeniedException": _bedrock(403, "permission_error"),
    "ResourceNotFoundException": _bedrock(404, "not_found_error"),
    "ModelTimeoutException": _bedrock(408, "timeout_error"),
    "ModelErrorException": _bedrock(424, "api_error"),
    "ModelStreamErrorException": _bedrock(424, "api_error"),
    "ThrottlingException": _bedrock(429, "rate_limit_error"),
    "ModelNotReadyException": _bedrock(429, "rate_limit_error"),
    "InternalServerException": _bedrock(500, "api_error"),
    "ServiceUnavailableException": _bedrock(503, "overloaded_error", 529),
    # The front end: signatures and tokens (403), unknown paths (404; UNVERIFIED), unparsable JSON (400).
    "MissingAuthenticationTokenException": _front_end(403, "authentication_error"),
    "IncompleteSignatureException": _front_end(403, "authentication_error"),
    "InvalidSignatureException": _front_end(403, "authentication_error"),
    "UnrecognizedClientException": _front_end(403, "authentication_error"),
    "ExpiredTokenException": _front_end(403, "authentication_error"),
    "UnknownOperationException": _front_end(404, "not_found_error"),
    "SerializationException": _front_end(400, "invalid_request_error"),
}

#: ``ResponseStream`` exception members (service-2.json, BEDROCK_PROTOCOL.md §6.3) -> the code of the same error.
STREAM_EXCEPTION_CODES: Mapping[str, str] = {
    "internalServerException": "InternalServerException",
    "modelStreamErrorException": "ModelStreamErrorException",
    "validationException": "ValidationException",
    "throttlingException": "ThrottlingException",
    "modelTimeoutException": "ModelTimeoutException",
    "serviceUnavailableException": "ServiceUnavailableException",
}


def _known_code(_instance: object, _attribute: attrs.Attribute[str], code: str) -> None:
    if code not in ERROR_SHAPES:
        raise ValueError(f"{code!r} is not in the emulator's error table (_wire_errors.ERROR_SHAPES)")


@attrs.frozen
class ServiceError:
    """One error answer: a code of :data:`ERROR_SHAPES`, the message and any extra body members."""

    code: str = attrs.field(validator=_known_code)
    message: str
    extra: Mapping[str, object] = attrs.field(factory=dict)

    @property
    def shape(self) -> ErrorShape:
        """How this code goes on the wire."""
        return ERROR_SHAPES[self.code]

    @property
    def status(self) -> int:
        """The HTTP status (AWS's)."""
        return ERROR_SHAPES[self.code].status

    @property
    def namespace(self) -> str:
        """Bedrock's or the front end's: which also decides the Messages endpoint's body shape."""
        return ERROR_SHAPES[self.code].namespace

    @property
    def error_type_header(self) -> str:
        """The ``x-amzn-ErrorType`` value: botocore keeps the part before the first ``:``."""
        return f"{self.code}:{self.namespace}"

    def body(self) -> dict[str, object]:
        """The JSON error body: ``message`` and any modeled extra members."""
        return {"message": self.message, **self.extra}
