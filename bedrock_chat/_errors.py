"""The exception tree, and the one table that maps Bedrock's error codes onto it.

Every error this library raises is a :class:`BedrockError`::

    BedrockError
    ├── InvalidRequestError (also ValueError)   bad arguments, caught before any I/O
    ├── ConfigurationError                      no region, a bad endpoint, conflicting options
    ├── CredentialsError                        no credentials found, or resolving them failed
    ├── TransportError                          the request never got a complete answer
    │   ├── APIConnectionError                  connect/read/write failed, connection dropped
    │   │   └── ProxyError                      the HTTP proxy refused the request (407, failed CONNECT)
    │   └── RequestTimeoutError                 a configured timeout expired (connect, read, idle, total)
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

Codes arrive in three spellings: ``ThrottlingException`` (the ``x-amzn-ErrorType`` header of an HTTP
error), ``throttlingException`` (the ``:exception-type`` of a mid-stream exception frame) and
``rate_limit_error`` (the Anthropic-style body of the ``/anthropic/v1/messages`` surface). All three
resolve through :data:`ERROR_CLASSES`, so a throttle raises :class:`ThrottlingError` however it came.

Messages never contain secrets: they carry the service's message, the code, the status and the
request id, nothing from the request's headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
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
    "RequestTimeoutError",
    "ResourceNotFoundError",
    "ServiceQuotaExceededError",
    "ServiceUnavailableError",
    "ThrottlingError",
    "TransportError",
    "ValidationError",
    "error_class_for_code",
    "make_api_error",
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
