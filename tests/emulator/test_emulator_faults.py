"""Fault names, the Faults options, and the injector's queue and seeded draws (no I/O)."""

from __future__ import annotations

import pytest

from bedrock_chat.emulator import FAULT_NAMES, Faults
from bedrock_chat.emulator._faults import HTTP_ERRORS, STREAM_EXCEPTIONS, FaultInjector, FaultKind, parse_fault


@pytest.mark.parametrize(
    ("name", "code", "status"),
    [
        ("throttle", "ThrottlingException", 429),
        ("model_not_ready", "ModelNotReadyException", 429),
        ("internal_error", "InternalServerException", 500),
        ("service_unavailable", "ServiceUnavailableException", 503),
        ("model_timeout", "ModelTimeoutException", 408),
        ("model_error", "ModelErrorException", 424),
        ("validation", "ValidationException", 400),
        ("service_quota_exceeded", "ServiceQuotaExceededException", 400),
        ("access_denied", "AccessDeniedException", 403),
        ("expired_token", "ExpiredTokenException", 403),
    ],
)
def test_http_error_faults(name: str, code: str, status: int) -> None:
    """Each HTTP fault name maps to Bedrock's error code and status."""
    fault = parse_fault(name)
    assert fault.kind is FaultKind.HTTP_ERROR
    assert fault.error is not None
    assert (fault.error.code, fault.error.status) == (code, status)
    assert fault.error.error_type_header.startswith(f"{code}:http://internal.amazon.com/coral/")


def test_throttle_message_is_bedrocks() -> None:
    """The throttle carries the service's message."""
    assert HTTP_ERRORS["throttle"].message == "Too many requests, please wait before trying again."


def test_stream_exception_names() -> None:
    """stream_exception takes an optional ResponseStream member; the default is modelStreamErrorException."""
    assert parse_fault("stream_exception").exception_type == "modelStreamErrorException"
    fault = parse_fault("stream_exception:throttlingException")
    assert (fault.kind, fault.exception_type) == (FaultKind.STREAM_EXCEPTION, "throttlingException")
    assert set(STREAM_EXCEPTIONS) == {
        "throttlingException",
        "modelStreamErrorException",
        "internalServerException",
        "serviceUnavailableException",
        "modelTimeoutException",
        "validationException",
    }
    body, _ = STREAM_EXCEPTIONS["modelStreamErrorException"]
    assert {"message", "originalStatusCode", "originalMessage"} <= set(body)


@pytest.mark.parametrize(
    ("exception_type", "code"),
    [
        ("throttlingException", "ThrottlingException"),
        ("modelStreamErrorException", "ModelErrorException"),
        ("internalServerException", "InternalServerException"),
    ],
)
def test_stream_exception_on_invoke_becomes_its_http_error(exception_type: str, code: str) -> None:
    """On a non-streaming request an exception-frame fault answers with the matching HTTP error."""
    fault = parse_fault(f"stream_exception:{exception_type}").for_invoke()
    assert fault.kind is FaultKind.HTTP_ERROR
    assert fault.error is not None
    assert fault.error.code == code


@pytest.mark.parametrize("name", ["throtle", "stream_exception:nope", "", "stall:5"])
def test_unknown_fault_names_are_refused(name: str) -> None:
    """A misspelt fault fails when it is named, not silently later."""
    with pytest.raises(ValueError, match="unknown"):
        parse_fault(name)


def test_every_listed_name_parses() -> None:
    """FAULT_NAMES lists names that parse_fault accepts, sorted."""
    assert list(FAULT_NAMES) == sorted(FAULT_NAMES)
    for name in FAULT_NAMES:
        assert parse_fault(name).name == name


def test_enqueue_validates_everything_before_queueing() -> None:
    """One bad name in a batch queues nothing."""
    injector = FaultInjector()
    with pytest.raises(ValueError, match="unknown"):
        injector.enqueue("throttle", "bogus")
    assert injector.pending == ()


def test_queue_is_consumed_in_order_before_rates() -> None:
    """Scripted faults come first, one per request, then the rates apply (here: none)."""
    injector = FaultInjector()
    injector.enqueue("throttle", "none", "stall")
    assert injector.pending == ("throttle", "none", "stall")
    names = [injector.next_fault(Faults(), streaming=True) for _ in range(4)]
    assert [fault.name if fault else None for fault in names] == ["throttle", "none", "stall", None]
    injector.enqueue("throttle")
    injector.clear()
    assert injector.next_fault(Faults(), streaming=False) is None


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (Faults(throttle_rate=1.0), "throttle"),
        (Faults(internal_error_rate=1.0), "internal_error"),
        (Faults(service_unavailable_rate=1.0), "service_unavailable"),
        (Faults(model_not_ready_rate=1.0), "model_not_ready"),
        (Faults(stall_rate=1.0), "stall"),
        (Faults(drop_mid_stream_rate=1.0), "drop_mid_stream"),
        (Faults(bad_crc_rate=1.0), "bad_crc"),
        (
            Faults(stream_exception_rate=1.0, stream_exception_type="throttlingException"),
            "stream_exception:throttlingException",
        ),
    ],
)
def test_certain_rates_always_fire(faults: Faults, expected: str) -> None:
    """A rate of 1 fires on every (streaming) request."""
    injector = FaultInjector()
    for _ in range(5):
        fault = injector.next_fault(faults, streaming=True)
        assert fault is not None
        assert fault.name == expected


def test_stream_rates_do_not_fire_on_invoke() -> None:
    """Mid-stream rates only apply to streams."""
    assert FaultInjector().next_fault(Faults(drop_mid_stream_rate=1.0), streaming=False) is None


def test_rates_are_reproducible_from_the_seed() -> None:
    """The same seed gives the same fault sequence; the observed frequency is near the rate."""

    def run(faults: Faults) -> list[str | None]:
        injector = FaultInjector()
        return [(f.name if (f := injector.next_fault(faults, streaming=False)) else None) for _ in range(2000)]

    faults = Faults(seed=3, throttle_rate=0.3, internal_error_rate=0.2)
    first = run(faults)
    assert first == run(faults)
    assert 0.25 < first.count("throttle") / 2000 < 0.35
    assert 0.15 < first.count("internal_error") / 2000 < 0.25
    assert first != run(Faults(seed=4, throttle_rate=0.3, internal_error_rate=0.2))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"throttle_rate": 1.5},
        {"bad_crc_rate": -0.1},
        {"latency": -1.0},
        {"throttle_rate": 0.6, "internal_error_rate": 0.6},
        {"drop_mid_stream_rate": 0.6, "bad_crc_rate": 0.6},
        {"stream_exception_type": "boom"},
    ],
)
def test_invalid_faults_are_refused(kwargs: dict[str, object]) -> None:
    """Rates outside [0, 1], negative delays, groups summing over 1 and unknown exception types are refused."""
    with pytest.raises(ValueError):  # noqa: PT011  (the messages differ per field)
        Faults(**kwargs)  # type: ignore[arg-type]
