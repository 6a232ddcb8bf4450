"""Faults the emulator can inject: the error catalogue, the rate-driven :class:`Faults`, the scripted queue.

Two ways to make a request fail, checked in this order for every request that passed routing and
authentication:

1. The **scripted queue** (:meth:`FaultInjector.enqueue`): each name is consumed by the next request, in
   arrival order. This is what retry tests want: "throttle twice, then succeed" is exact, not likely.
2. The **rates** of :class:`Faults`: one seeded ``random.Random`` draw per request picks at most one
   pre-response fault (throttle, model not ready, 500, 503, stall) and, for a stream, a second draw at most
   one mid-stream fault (exception frame, dropped connection, bad CRC). The same seed and the same request
   order give the same faults.

Fault names (:data:`FAULT_NAMES`, accepted by ``enqueue_faults`` and ``--faults``):

==========================  =====================================================================
``none``                     no fault: lets one request through in a scripted sequence
``throttle``                 429 ThrottlingException
``model_not_ready``          429 ModelNotReadyException
``internal_error``           500 InternalServerException
``service_unavailable``      503 ServiceUnavailableException
``model_timeout``            408 ModelTimeoutException
``model_error``              424 ModelErrorException (with ``originalStatusCode``, ``resourceName``)
``validation``               400 ValidationException
``service_quota_exceeded``   400 ServiceQuotaExceededException
``access_denied``            403 AccessDeniedException
``expired_token``            403 ExpiredTokenException
``stream_exception[:TYPE]``  a mid-stream exception frame (TYPE: a ResponseStream member, default
                             ``modelStreamErrorException``); on InvokeModel, the matching HTTP error
``drop_mid_stream``          close the socket half-way through the body, without the chunked terminator
``bad_crc``                  one frame half-way through the stream has a wrong message CRC (no-op on InvokeModel)
``stall``                    headers sent, then nothing until the client leaves or the emulator stops
``stall_mid_stream``         half the body sent, then the same stall
==========================  =====================================================================

Mid-stream faults strike at frame ``max(1, n // 2)`` of an ``n``-frame stream, so ``message_start`` (or
the first text chunk) always arrives first. Messages marked UNVERIFIED below are plausible wording, not
text captured from the service.
"""

from __future__ import annotations

import collections
import enum
import random
import threading
from collections.abc import Mapping

import attrs

from ._wire_errors import ServiceError

__all__ = [
    "DEFAULT_STREAM_EXCEPTION",
    "FAULT_NAMES",
    "HTTP_ERRORS",
    "STREAM_EXCEPTIONS",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "Faults",
    "parse_fault",
]

_THROTTLE_MESSAGE = "Too many requests, please wait before trying again."
_INTERNAL_MESSAGE = "The system encountered an unexpected error during processing. Try your request again."

#: Scripted/rated HTTP error faults by name. Messages other than the throttle's are UNVERIFIED.
HTTP_ERRORS: Mapping[str, ServiceError] = {
    "throttle": ServiceError("ThrottlingException", _THROTTLE_MESSAGE),
    "model_not_ready": ServiceError(
        "ModelNotReadyException",
        "Model is not ready to serve inference requests. The model is being loaded; please retry.",
    ),
    "internal_error": ServiceError("InternalServerException", _INTERNAL_MESSAGE),
    "service_unavailable": ServiceError("ServiceUnavailableException", "Bedrock is unable to process your request."),
    "model_timeout": ServiceError(
        "ModelTimeoutException", "Model has timed out in processing the request. Try your request again."
    ),
    "model_error": ServiceError(
        "ModelErrorException",
        "Received error from the model: the model returned an unexpected error.",
        {"originalStatusCode": 500, "resourceName": "emulator-model"},
    ),
    "validation": ServiceError("ValidationException", "Injected validation failure (emulator fault)."),
    "service_quota_exceeded": ServiceError(
        "ServiceQuotaExceededException", "Your request exceeds the service quota for your account."
    ),
    "access_denied": ServiceError(
        "AccessDeniedException", "You don't have access to the model with the specified model ID."
    ),
    "expired_token": ServiceError("ExpiredTokenException", "The security token included in the request is expired"),
}

#: Mid-stream exception frames (ResponseStream members): body, and the HTTP error used on InvokeModel.
STREAM_EXCEPTIONS: Mapping[str, tuple[dict[str, object], str]] = {
    "throttlingException": ({"message": _THROTTLE_MESSAGE}, "throttle"),
    "modelStreamErrorException": (
        {
            "message": "The model encountered an error while streaming the response.",
            "originalStatusCode": 500,
            "originalMessage": "Internal model error (emulated).",
        },
        "model_error",
    ),
    "internalServerException": ({"message": _INTERNAL_MESSAGE}, "internal_error"),
    "serviceUnavailableException": ({"message": "Bedrock is unable to process your request."}, "service_unavailable"),
    "modelTimeoutException": (
        {"message": "Model has timed out in processing the request. Try your request again."},
        "model_timeout",
    ),
    "validationException": ({"message": "Injected validation failure (emulator fault)."}, "validation"),
}

DEFAULT_STREAM_EXCEPTION = "modelStreamErrorException"


class FaultKind(enum.Enum):
    """What a fault does to the response."""

    NONE = "none"
    HTTP_ERROR = "http_error"
    STALL = "stall"
    STREAM_EXCEPTION = "stream_exception"
    DROP_MID_STREAM = "drop_mid_stream"
    BAD_CRC = "bad_crc"
    STALL_MID_STREAM = "stall_mid_stream"


@attrs.frozen
class Fault:
    """One parsed fault: its name as given, what it does, and its error or exception type."""

    name: str
    kind: FaultKind
    error: ServiceError | None = None
    exception_type: str | None = None

    def for_invoke(self) -> Fault:
        """The fault as it applies to a non-streaming request: an exception frame becomes its HTTP error."""
        if self.kind is FaultKind.STREAM_EXCEPTION and self.exception_type is not None:
            return Fault(self.name, FaultKind.HTTP_ERROR, HTTP_ERRORS[STREAM_EXCEPTIONS[self.exception_type][1]])
        return self


_SIMPLE_KINDS: Mapping[str, FaultKind] = {
    "none": FaultKind.NONE,
    "stall": FaultKind.STALL,
    "drop_mid_stream": FaultKind.DROP_MID_STREAM,
    "bad_crc": FaultKind.BAD_CRC,
    "stall_mid_stream": FaultKind.STALL_MID_STREAM,
}

#: Every accepted fault name (``stream_exception`` also takes ``:TYPE``).
FAULT_NAMES: tuple[str, ...] = tuple(sorted([*HTTP_ERRORS, *_SIMPLE_KINDS, "stream_exception"]))


def parse_fault(name: str) -> Fault:
    """Parse one fault name; raises ValueError naming the accepted ones, so a typo fails at enqueue time."""
    if name in HTTP_ERRORS:
        return Fault(name, FaultKind.HTTP_ERROR, HTTP_ERRORS[name])
    if name in _SIMPLE_KINDS:
        return Fault(name, _SIMPLE_KINDS[name])
    head, sep, exception_type = name.partition(":")
    if head == "stream_exception":
        exception_type = exception_type if sep else DEFAULT_STREAM_EXCEPTION
        if exception_type not in STREAM_EXCEPTIONS:
            raise ValueError(
                f"unknown stream exception type {exception_type!r}; expected one of {sorted(STREAM_EXCEPTIONS)}"
            )
        return Fault(name, FaultKind.STREAM_EXCEPTION, exception_type=exception_type)
    raise ValueError(f"unknown fault {name!r}; expected one of {list(FAULT_NAMES)} (stream_exception[:TYPE])")


def _rate(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _seconds(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0.0:
        raise ValueError(f"{attribute.name} must be >= 0 seconds, got {value!r}")


def _stream_type(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    if value not in STREAM_EXCEPTIONS:
        raise ValueError(f"stream_exception_type must be one of {sorted(STREAM_EXCEPTIONS)}, got {value!r}")


@attrs.frozen(kw_only=True)
class Faults:
    """Random faults and delays, reproducible from ``seed``.

    Rates are probabilities per request. The pre-response rates (throttle, model not ready, internal
    error, service unavailable, stall) share one draw and must sum to at most 1; so must the
    mid-stream ones (stream exception, drop, bad CRC), drawn only for streams.

    Delays, in seconds: ``latency`` before the status line of every routed, authenticated request;
    ``time_to_first_byte`` between a stream's headers and its first frame; ``chunk_delay`` between
    later frames.
    """

    seed: int = 0
    throttle_rate: float = attrs.field(default=0.0, validator=_rate)
    model_not_ready_rate: float = attrs.field(default=0.0, validator=_rate)
    internal_error_rate: float = attrs.field(default=0.0, validator=_rate)
    service_unavailable_rate: float = attrs.field(default=0.0, validator=_rate)
    stall_rate: float = attrs.field(default=0.0, validator=_rate)
    stream_exception_rate: float = attrs.field(default=0.0, validator=_rate)
    stream_exception_type: str = attrs.field(default=DEFAULT_STREAM_EXCEPTION, validator=_stream_type)
    drop_mid_stream_rate: float = attrs.field(default=0.0, validator=_rate)
    bad_crc_rate: float = attrs.field(default=0.0, validator=_rate)
    latency: float = attrs.field(default=0.0, validator=_seconds)
    time_to_first_byte: float = attrs.field(default=0.0, validator=_seconds)
    chunk_delay: float = attrs.field(default=0.0, validator=_seconds)

    def __attrs_post_init__(self) -> None:
        if sum(rate for _, rate in self._response_table()) > 1.0 + 1e-9:
            raise ValueError(
                "throttle, model_not_ready, internal_error, service_unavailable and stall rates sum over 1"
            )
        if sum(rate for _, rate in self._stream_table()) > 1.0 + 1e-9:
            raise ValueError("stream_exception, drop_mid_stream and bad_crc rates sum over 1")

    def _response_table(self) -> tuple[tuple[str, float], ...]:
        return (
            ("throttle", self.throttle_rate),
            ("model_not_ready", self.model_not_ready_rate),
            ("internal_error", self.internal_error_rate),
            ("service_unavailable", self.service_unavailable_rate),
            ("stall", self.stall_rate),
        )

    def _stream_table(self) -> tuple[tuple[str, float], ...]:
        return (
            (f"stream_exception:{self.stream_exception_type}", self.stream_exception_rate),
            ("drop_mid_stream", self.drop_mid_stream_rate),
            ("bad_crc", self.bad_crc_rate),
        )

    @property
    def has_rates(self) -> bool:
        """Whether any random fault can fire (if not, no random draw is made at all)."""
        return any(rate for _, rate in self._response_table()) or any(rate for _, rate in self._stream_table())


def _pick(table: tuple[tuple[str, float], ...], draw: float) -> str | None:
    cumulative = 0.0
    for name, rate in table:
        cumulative += rate
        if draw < cumulative:
            return name
    return None


class FaultInjector:
    """The scripted queue and the seeded draws; safe to use from any thread.

    The lock matters for the thread runner: tests enqueue faults from their own thread while the
    server's loop consumes them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque[Fault] = collections.deque()
        self._rng = random.Random(0)
        self._rng_owner: Faults | None = None

    def enqueue(self, *names: str) -> None:
        """Append faults to the queue; every name is validated before any is queued."""
        faults = [parse_fault(name) for name in names]
        with self._lock:
            self._queue.extend(faults)

    def clear(self) -> None:
        """Drop every queued fault and restart the random draws from the seed."""
        with self._lock:
            self._queue.clear()
            self._rng_owner = None

    @property
    def pending(self) -> tuple[str, ...]:
        """Names of the faults still queued, next first."""
        with self._lock:
            return tuple(fault.name for fault in self._queue)

    def next_fault(self, faults: Faults, *, streaming: bool) -> Fault | None:
        """The fault for the request arriving now: the queue's head, else a seeded draw (None: no fault)."""
        if not self._queue and not faults.has_rates:
            return None  # the common case, without taking the lock
        with self._lock:
            if self._queue:
                fault: Fault | None = self._queue.popleft()
            else:
                if self._rng_owner is not faults:
                    # New settings restart the sequence, so the same seed always gives the same faults.
                    self._rng = random.Random(faults.seed)
                    self._rng_owner = faults
                name = _pick(faults._response_table(), self._rng.random())
                if name is None and streaming:
                    name = _pick(faults._stream_table(), self._rng.random())
                fault = parse_fault(name) if name is not None else None
        if fault is not None and not streaming:
            fault = fault.for_invoke()
        return fault
