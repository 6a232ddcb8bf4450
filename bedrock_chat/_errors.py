"""The exception tree, and the one table that maps Bedrock's error codes onto it.

Every error this library raises is a :class:`BedrockError`::

    BedrockError
    ├── InvalidRequestError (also ValueError)   bad arguments, caught before any I/O
    ├── ConfigurationError                      no region, a bad endpoint, conflicting options
    ├── CredentialsError                        no credentials found, or resolving them failed
    ├── TransportError                          the request never got a complete answer
    │   ├── APIConnectionError                  connect/read/write failed, connection dropped
    │   │   └── ProxyError                      the HTTP proxy refused the request (407, failed CONNECT)
    │   └── RequestTimeoutError                 a configured timeout expired (connect, read, idle, deadline)
    ├── ResponseTooLargeError                   a non-streaming body past max_response_bytes (never retried)
    ├── StructuredOutputError                   ``chat.parsed``: the reply is not JSON valid for its schema
    ├── EventStreamError                        a response stream that cannot be decoded
    │   └── IncompleteStreamError               the stream ended inside a frame or before its final event
    └── APIError                                the service answered with an error (status, code, request_id)
        ├── ValidationError                     400 ValidationException
        ├── ServiceQuotaExceededError           400 ServiceQuotaExceededException
        ├── ConflictError                       400 ConflictException
        ├── AuthenticationError                 403 UnrecognizedClient / InvalidSignature / ...
        │   └── ExpiredTokenError               403 ExpiredTokenException (credentials are re-resolved)
        ├── AccessDeniedError                   403 AccessDeniedException
        ├── ResourceNotFoundError               404 ResourceNotFoundException
        ├── ModelTimeoutError                   408 ModelTimeoutException
        ├── ModelError                          424 ModelErrorException
        ├── ModelStreamError                    424 modelStreamErrorException (mid-stream)
        ├── ThrottlingError                     429 ThrottlingException
        ├── ModelNotReadyError                  429 ModelNotReadyException
        ├── InternalServerError                 500 InternalServerException
        └── ServiceUnavailableError             503 ServiceUnavailableException

One warning category (not an error): :class:`CacheBreakpointWarning`, when prompt-cache breakpoints
cached nothing because their prefix is under the model's minimum.

Codes arrive in three spellings: ``ThrottlingException`` (the ``x-amzn-ErrorType`` header of an HTTP
error), ``throttlingException`` (the ``:exception-type`` of a mid-stream exception frame) and
``rate_limit_error`` (the Anthropic-style body of the ``/anthropic/v1/messages`` surface). All three
resolve through :data:`ERROR_CLASSES`, so a throttle raises :class:`ThrottlingError` however it came.

Messages never contain secrets: they carry the service's message, the code, the status and the
request id, nothing from the request's headers. A server may still echo a credential back (AWS
signature errors quote the Authorization header), so everything it sent that reaches an error passes
through a :class:`Scrubber` first: see its docstring for what counts as a secret and which spellings
of one are found.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote

__all__ = [
    "APIConnectionError",
    "CacheBreakpointWarning",
    "APIError",
    "AccessDeniedError",
    "AuthenticationError",
    "BedrockError",
    "ConfigurationError",
    "ConflictError",
    "CredentialsError",
    "ERROR_CLASSES",
    "EventStreamError",
    "ExpiredTokenError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "ModelError",
    "ModelNotReadyError",
    "ModelStreamError",
    "ModelTimeoutError",
    "REDACTED",
    "RequestTimeoutError",
    "ResourceNotFoundError",
    "ResponseTooLargeError",
    "Scrubber",
    "ServiceQuotaExceededError",
    "ServiceUnavailableError",
    "StructuredOutputError",
    "ThrottlingError",
    "TransportError",
    "ValidationError",
    "drop_tracebacks",
    "error_class_for_code",
    "from_the_server",
    "make_api_error",
    "scrub_error",
]


class BedrockError(Exception):
    """Root of every error raised by bedrock_chat.

    ``partial_text`` is set when the error interrupted a response stream: the text received
    before the failure, so that nothing the model produced is lost.
    """

    partial_text: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclass constructors take other arguments than ``self.args`` (``field``, ``status=``...), so
        # the default reduce cannot rebuild them: pickling (process pools) and copy.copy would fail.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[BedrockError], args: tuple[Any, ...], state: dict[str, Any]) -> BedrockError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class CacheBreakpointWarning(UserWarning):
    """Cache breakpoints were set but nothing was cached: their prefix is under the model's minimum.

    A warning, never an error: the call succeeded, Bedrock just cached nothing (and says nothing).
    Silence it with ``warnings.filterwarnings("ignore", category=CacheBreakpointWarning)``.
    """


class InvalidRequestError(BedrockError, ValueError):
    """An argument is invalid; raised before any I/O. ``field`` names the offending argument."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConfigurationError(BedrockError):
    """The client cannot be configured as asked (no region, bad endpoint, conflicting options)."""


class CredentialsError(BedrockError):
    """No AWS credentials were found, or resolving/refreshing them failed."""


class TransportError(BedrockError):
    """The request did not get a complete answer from the service."""

    retryable = True


class APIConnectionError(TransportError):
    """Connecting, sending or receiving failed (refused, reset, dropped mid-response)."""


class ProxyError(APIConnectionError):
    """The HTTP proxy refused the request: 407 (its credentials are missing or wrong) or a failed CONNECT.

    ``status`` is the proxy's answer when known. A 407 is not retried (wrong credentials stay wrong);
    other refusals, such as a 502 or 503 while the proxy cannot reach Bedrock, are, like connection errors.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status != 407


class RequestTimeoutError(TransportError):
    """A configured timeout expired (connect, read, write, pool, stream idle or total)."""


class ResponseTooLargeError(BedrockError):
    """A non-streaming response body (an answer or an error) was longer than ``max_response_bytes``.

    Raised having read at most ``limit`` bytes of it; the connection is dropped. ``status`` is the
    response's HTTP status. Not retried: the same request would bring the same body.
    """

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, limit: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.limit = limit

    @classmethod
    def past(cls, *, status: int, limit: int) -> ResponseTooLargeError:
        """The error of a body of this status found to be longer than ``limit`` (one wording for every transport)."""
        message = f"the HTTP {status} response body is longer than max_response_bytes={limit:,}; not read further"
        return cls(message, status=status, limit=limit)


class StructuredOutputError(BedrockError):
    """The reply to ``output_config={"format": ...}`` is not valid JSON, or not valid for its schema.

    Raised by ``chat.parsed``. ``text`` is the reply's text as received and ``stop_reason`` why it ended
    (``max_tokens`` cuts JSON short, ``refusal`` is not JSON); the message never quotes the text.
    """

    retryable = False

    def __init__(self, message: str, *, text: str = "", stop_reason: str | None = None) -> None:
        super().__init__(message)
        self.text = text
        self.stop_reason = stop_reason


class EventStreamError(BedrockError):
    """A response stream's bytes are not a valid AWS event stream (or SSE stream)."""

    retryable = False


class IncompleteStreamError(EventStreamError):
    """The stream ended inside a frame, or before its final event: never a normal end."""

    retryable = True


class APIError(BedrockError):
    """The service answered with an error.

    Attributes: ``status`` (HTTP status, 200 for a mid-stream error), ``code`` (the service's error
    code as received), ``request_id`` and ``body`` (the decoded error body, for extra members such
    as ``originalStatusCode``).
    """

    retryable = False
    is_throttle = False

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        request_id: str | None = None,
        body: Mapping[str, object] | None = None,
    ) -> None:
        self.service_message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.body: Mapping[str, object] = body or {}
        detail = f"{code} (HTTP {status}): {message}"
        if request_id:
            detail += f" [request id {request_id}]"
        super().__init__(detail)


class ValidationError(APIError):
    """The service rejected the request as invalid (400 ValidationException)."""


class ServiceQuotaExceededError(APIError):
    """An account quota was exceeded (400 ServiceQuotaExceededException); retrying does not help."""


class ConflictError(APIError):
    """The request conflicts with the resource's state (400 ConflictException)."""


class AuthenticationError(APIError):
    """The request's credentials or signature were refused (403)."""


class ExpiredTokenError(AuthenticationError):
    """The session token has expired; the client re-resolves credentials once and retries."""

    retryable = True


class AccessDeniedError(APIError):
    """The credentials are valid but lack permission (403 AccessDeniedException)."""


class ResourceNotFoundError(APIError):
    """The model (or other resource) does not exist or is not available here (404)."""


class ModelTimeoutError(APIError):
    """The model took too long to answer (408 ModelTimeoutException)."""

    retryable = True


class ModelError(APIError):
    """The model failed while processing the request (424 ModelErrorException)."""

    @property
    def original_status_code(self) -> object:
        """The status the model itself returned, when the service reports it."""
        return self.body.get("originalStatusCode")


class ModelStreamError(APIError):
    """The model failed mid-stream (modelStreamErrorException)."""

    @property
    def original_status_code(self) -> object:
        """The status the model itself returned, when the service reports it."""
        return self.body.get("originalStatusCode")

    @property
    def original_message(self) -> object:
        """The model's own error message, when the service reports it."""
        return self.body.get("originalMessage")


class ThrottlingError(APIError):
    """The request was throttled (429 ThrottlingException); retried with backoff."""

    retryable = True
    is_throttle = True


class ModelNotReadyError(APIError):
    """The model is not ready to serve yet (429 ModelNotReadyException); retried with backoff."""

    retryable = True


class InternalServerError(APIError):
    """The service failed (500 InternalServerException); retried with backoff."""

    retryable = True


class ServiceUnavailableError(APIError):
    """The service is unavailable (503 ServiceUnavailableException); retried with backoff."""

    retryable = True


#: Error code (as normalised by :func:`_normalise_code`) -> class. The one table for all surfaces.
ERROR_CLASSES: Mapping[str, type[APIError]] = {
    # AWS codes, from bedrock-runtime's service model and the auth layer.
    "ValidationException": ValidationError,
    "ServiceQuotaExceededException": ServiceQuotaExceededError,
    "ConflictException": ConflictError,
    "AccessDeniedException": AccessDeniedError,
    "UnrecognizedClientException": AuthenticationError,
    "InvalidSignatureException": AuthenticationError,
    "IncompleteSignatureException": AuthenticationError,
    "MissingAuthenticationTokenException": AuthenticationError,
    "InvalidClientTokenId": AuthenticationError,
    "SignatureDoesNotMatch": AuthenticationError,
    "ExpiredTokenException": ExpiredTokenError,
    "ExpiredToken": ExpiredTokenError,
    "RequestExpired": ExpiredTokenError,
    "ResourceNotFoundException": ResourceNotFoundError,
    "ModelTimeoutException": ModelTimeoutError,
    "ModelErrorException": ModelError,
    "ModelStreamErrorException": ModelStreamError,
    "ThrottlingException": ThrottlingError,
    "TooManyRequestsException": ThrottlingError,
    "ModelNotReadyException": ModelNotReadyError,
    "InternalServerException": InternalServerError,
    "InternalFailure": InternalServerError,
    "ServiceUnavailableException": ServiceUnavailableError,
    "ServiceUnavailable": ServiceUnavailableError,
    "SerializationException": ValidationError,  # the front end could not parse the body: the caller's 400
    # Anthropic-style error types (the /anthropic/v1/messages surface and its SSE `error` event).
    "invalid_request_error": ValidationError,
    "request_too_large": ValidationError,
    "authentication_error": AuthenticationError,
    "permission_error": AccessDeniedError,
    "not_found_error": ResourceNotFoundError,
    "rate_limit_error": ThrottlingError,
    "timeout_error": ModelTimeoutError,
    "api_error": InternalServerError,
    "overloaded_error": ServiceUnavailableError,
}

#: Used when a response has no recognisable code: the HTTP status decides.
_STATUS_CLASSES: Mapping[int, type[APIError]] = {
    400: ValidationError,
    403: AccessDeniedError,
    404: ResourceNotFoundError,
    408: ModelTimeoutError,
    424: ModelError,
    429: ThrottlingError,
    500: InternalServerError,
    502: InternalServerError,
    503: ServiceUnavailableError,
    504: InternalServerError,
}


def _normalise_code(code: str) -> str:
    """``x-amzn-ErrorType`` may carry a namespace (``Code:http://...`` or ``ns#Code``); frames use lowerCamel."""
    code = code.split(":", 1)[0].rsplit("#", 1)[-1].strip()
    if code.endswith("Exception") and code[:1].islower():
        code = code[:1].upper() + code[1:]
    return code


def error_class_for_code(code: str | None, status: int) -> type[APIError]:
    """The class for a service error code; unknown codes fall back on the status, then :class:`APIError`."""
    if code:
        cls = ERROR_CLASSES.get(_normalise_code(code))
        if cls is not None:
            return cls
        return APIError
    return _STATUS_CLASSES.get(status, APIError)


def make_api_error(
    *,
    status: int,
    code: str | None,
    message: str | None,
    request_id: str | None,
    body: Mapping[str, object] | None = None,
) -> APIError:
    """Build the typed error for a service error response or exception frame."""
    cls = error_class_for_code(code, status)
    shown_code = _normalise_code(code) if code else str(status)
    return cls(message or "(no message)", status=status, code=shown_code, request_id=request_id, body=body)


# ---------------------------------------------------------------------------------------------- secrets

#: What a scrubbed secret is replaced with.
REDACTED = "<redacted>"

_JSON_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|[\"\\/bfnrt])")
_JSON_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _json_unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code[0] == "u":
        return chr(int(code[1:], 16))
    return _JSON_SIMPLE.get(code, code)


#: Decodings tried on text that still holds an escape marker: a secret may hide behind any mix of them.
_DECODINGS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("\\", lambda text: _JSON_ESCAPE.sub(_json_unescape, text)),
    ("%", unquote),
    ("&", html.unescape),
)


class Scrubber:
    """The secrets of one request, to be removed from whatever the server sends back before it reaches an error.

    What counts as a secret: the secret access key, the session token, a Bedrock API key, the
    ``Authorization`` header as sent and its signature (short-lived, but it authenticates that request).
    The access key id alone is an identifier, not a secret (AWS prints it in consoles and CloudTrail):
    it stays visible, which helps tell which credentials a 403 was about.

    Which spellings are found: the secret as is, and the secret after undoing JSON string escapes (any
    mix of ``\\/``, ``\\uXXXX`` and the others, on every character or only some), percent-encoding
    or HTML character references, one layer of one of them over any stretch of the text. Not found:
    base64 or other re-encodings, a secret split by other text, or a fragment of one (the server
    would have to transform it on purpose).

    The secrets are gathered by ``source`` on first use: building one costs nothing on the success path.
    ``repr`` never shows them.
    """

    __slots__ = ("_needles", "_source")

    def __init__(self, source: Callable[[], Iterable[str | None]]) -> None:
        self._source = source
        self._needles: tuple[str, ...] | None = None

    def __repr__(self) -> str:
        return "Scrubber(<redacted>)"

    def _load(self) -> tuple[str, ...]:
        needles = self._needles
        if needles is None:
            # Longest first: the Authorization header contains the signature, which must not be replaced first.
            needles = self._needles = tuple(sorted({s for s in self._source() if s}, key=len, reverse=True))
        return needles

    def _replace(self, text: str) -> str:
        for needle in self._load():
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    def __call__(self, text: str) -> str:
        """``text`` with every secret it holds (in any spelling the class docstring lists) replaced."""
        text = self._replace(text)
        for marker, decode in _DECODINGS:
            if marker in text:
                decoded = decode(text)
                cleaned = self._replace(decoded)
                if cleaned != decoded:  # a secret hid behind the escapes: show the decoded, scrubbed text
                    text = cleaned
        return text

    def value(self, value: Any) -> Any:
        """A decoded JSON value with every string in it (keys included) scrubbed."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {self(str(key)): self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value


def scrub_error(error: BedrockError, scrub: Scrubber) -> BedrockError:
    """Scrub, in place, every field of ``error`` that may carry what a server sent; returns ``error``.

    The message, the args, and for a service error its message, code, request id and decoded body.
    """
    error.message = scrub(error.message)
    error.args = tuple(scrub(arg) if isinstance(arg, str) else arg for arg in error.args)
    if isinstance(error, APIError):
        error.service_message = scrub(error.service_message)
        error.code = scrub(error.code)
        error.request_id = scrub(error.request_id) if error.request_id is not None else None
        error.body = scrub.value(error.body)
    return error


def from_the_server(error: BedrockError, scrub: Scrubber | None) -> BedrockError:
    """The one boundary for an error built from what a server sent (any status, any surface); returns ``error``.

    Its fields are scrubbed (:func:`scrub_error`) and it loses its frames and those of the foreign
    exceptions chained to it: the parsers' locals hold the server's raw bytes, which a traceback that
    shows locals would print unscrubbed. ``scrub`` is None only for a transport that holds no secret.
    """
    if scrub is not None:
        scrub_error(error, scrub)
    drop_tracebacks(error)
    return error


def drop_tracebacks(error: BaseException) -> BaseException:
    """Drop the frames of ``error`` and of the foreign exceptions chained to it (causes, contexts, group members).

    For exceptions raised inside the HTTP libraries and the signer: their frames hold the request's
    headers (the session token, the signed Authorization) and the secret key in local variables, which
    tracebacks that show locals (error trackers, ``rich``, ``capture_locals=True``) would print. Their
    types and messages stay. Clearing the frames' locals instead would keep line numbers, but on
    Python 3.11 clearing a suspended coroutine's frame closes the coroutine. The walk stops at our own
    errors (an earlier attempt's, say): their frames hold no credential and are worth keeping.
    """
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen or (current is not error and isinstance(current, BedrockError)):
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            pending += current.exceptions
    return error
