"""The exception tree, the code -> class table, and a differential check against botocore's error parsing."""

from __future__ import annotations

import copy
import inspect
import json
import pickle
from typing import Any

import pytest
from botocore.parsers import RestJSONParser
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import error_codes, error_type_headers

from bedrock_chat import _errors
from bedrock_chat._core.responses import parse_error_response
from bedrock_chat._errors import (
    ERROR_CLASSES,
    AccessDeniedError,
    APIConnectionError,
    APIError,
    AuthenticationError,
    BedrockError,
    ConfigurationError,
    ConflictError,
    CredentialsError,
    EventStreamError,
    ExpiredTokenError,
    IncompleteStreamError,
    InternalServerError,
    InvalidRequestError,
    ModelError,
    ModelNotReadyError,
    ModelStreamError,
    ModelTimeoutError,
    ProxyError,
    RequestTimeoutError,
    ResourceNotFoundError,
    ServiceQuotaExceededError,
    ServiceUnavailableError,
    ThrottlingError,
    TransportError,
    ValidationError,
    error_class_for_code,
    make_api_error,
)

ALL_ERRORS: list[type[BedrockError]] = [
    obj for obj in vars(_errors).values() if inspect.isclass(obj) and issubclass(obj, BedrockError)
]

# ------------------------------------------------------------------------------------------- the tree


def test_every_error_class_is_a_bedrock_error_and_exported() -> None:
    """All error classes share the one root, and every one of them is public."""
    import bedrock_chat

    assert len(ALL_ERRORS) == 27
    for cls in ALL_ERRORS:
        assert issubclass(cls, BedrockError)
        assert getattr(bedrock_chat, cls.__name__) is cls


def test_docstring_draws_every_class() -> None:
    """The tree drawn in the module docstring names every error class, so it cannot silently go stale."""
    doc = _errors.__doc__ or ""
    assert [cls.__name__ for cls in ALL_ERRORS if cls.__name__ not in doc] == []


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (InvalidRequestError, ValueError),
        (ConfigurationError, BedrockError),
        (CredentialsError, BedrockError),
        (APIConnectionError, TransportError),
        (RequestTimeoutError, TransportError),
        (IncompleteStreamError, EventStreamError),
        (ExpiredTokenError, AuthenticationError),
        (ValidationError, APIError),
        (ThrottlingError, APIError),
        (ModelStreamError, APIError),
    ],
)
def test_hierarchy(cls: type[Exception], parent: type[Exception]) -> None:
    """Each class sits where the drawn tree puts it (InvalidRequestError is also a ValueError)."""
    assert issubclass(cls, parent)
    assert issubclass(cls, BedrockError)


def test_invalid_request_error_names_its_field() -> None:
    """InvalidRequestError carries the field and starts its message with it."""
    error = InvalidRequestError("top_k", "must be an integer from 0 to 500, got 501")
    assert error.field == "top_k"
    assert str(error).startswith("top_k: ")
    assert isinstance(error, ValueError)


# ------------------------------------------------------------------------------------------- the table

# (x-amzn-ErrorType code, HTTP status, class): BEDROCK_PROTOCOL.md section 7, plus the auth layer's codes.
SERVICE_ERRORS = [
    ("ValidationException", 400, ValidationError),
    ("ServiceQuotaExceededException", 400, ServiceQuotaExceededError),
    ("ConflictException", 400, ConflictError),
    ("AccessDeniedException", 403, AccessDeniedError),
    ("UnrecognizedClientException", 403, AuthenticationError),
    ("InvalidSignatureException", 403, AuthenticationError),
    ("ExpiredTokenException", 403, ExpiredTokenError),
    ("ResourceNotFoundException", 404, ResourceNotFoundError),
    ("ModelTimeoutException", 408, ModelTimeoutError),
    ("ModelErrorException", 424, ModelError),
    ("ModelStreamErrorException", 424, ModelStreamError),
    ("ThrottlingException", 429, ThrottlingError),
    ("ModelNotReadyException", 429, ModelNotReadyError),
    ("InternalServerException", 500, InternalServerError),
    ("ServiceUnavailableException", 503, ServiceUnavailableError),
]


@pytest.mark.parametrize(("code", "status", "cls"), SERVICE_ERRORS)
def test_service_codes_map_to_classes(code: str, status: int, cls: type[APIError]) -> None:
    """Every modeled Bedrock error code maps to its class, with or without a namespace suffix."""
    assert error_class_for_code(code, status) is cls
    assert error_class_for_code(f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/", status) is cls
    assert error_class_for_code(f"com.amazon.coral#{code}", status) is cls


@pytest.mark.parametrize(("code", "status", "cls"), SERVICE_ERRORS)
def test_stream_frame_spelling_maps_to_the_same_class(code: str, status: int, cls: type[APIError]) -> None:
    """A mid-stream exception frame's lowerCamel name (``throttlingException``) maps like the header code."""
    lower_camel = code[0].lower() + code[1:]
    error = make_api_error(status=200, code=lower_camel, message="m", request_id=None)
    assert type(error) is cls
    assert error.code == code


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("rate_limit_error", ThrottlingError),
        ("overloaded_error", ServiceUnavailableError),
        ("invalid_request_error", ValidationError),
        ("authentication_error", AuthenticationError),
        ("permission_error", AccessDeniedError),
        ("not_found_error", ResourceNotFoundError),
        ("api_error", InternalServerError),
    ],
)
def test_anthropic_style_codes(code: str, cls: type[APIError]) -> None:
    """The Anthropic-style error types resolve through the same table."""
    assert error_class_for_code(code, 400) is cls


@given(code=error_codes, status=st.integers(100, 599))
def test_unknown_codes_are_plain_api_errors(code: str, status: int) -> None:
    """A code the table does not know is an APIError (not a guess from the status), keeping the code."""
    assume(code not in ERROR_CLASSES)
    error = make_api_error(status=status, code=code, message="m", request_id="r")
    assert type(error) is APIError
    assert error.code == code
    assert error.status == status


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (403, AccessDeniedError),
        (404, ResourceNotFoundError),
        (408, ModelTimeoutError),
        (429, ThrottlingError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, ServiceUnavailableError),
        (504, InternalServerError),
        (418, APIError),
    ],
)
def test_status_decides_without_a_code(status: int, cls: type[APIError]) -> None:
    """With no code at all, the HTTP status picks the class, and the code shown is the status."""
    error = make_api_error(status=status, code=None, message=None, request_id=None)
    assert type(error) is cls
    assert error.code == str(status)


RETRYABLE = {
    ThrottlingError,
    ModelNotReadyError,
    InternalServerError,
    ServiceUnavailableError,
    ModelTimeoutError,
    ExpiredTokenError,
    TransportError,
    APIConnectionError,
    ProxyError,  # by default; a 407 instance is not (test below)
    RequestTimeoutError,
    IncompleteStreamError,
}


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_retryable_flags(cls: type[BedrockError]) -> None:
    """Exactly throttling, not-ready, 5xx, model timeouts, expired tokens and transport failures are retryable."""
    assert getattr(cls, "retryable", False) is (cls in RETRYABLE)
    assert getattr(cls, "is_throttle", False) is (cls is ThrottlingError)


@pytest.mark.parametrize(("status", "retryable"), [(407, False), (502, True), (503, True), (None, True)])
def test_a_proxy_refusal_is_retried_unless_it_is_about_credentials(status: int | None, retryable: bool) -> None:
    """A 407 stays wrong however often it is sent; a proxy that cannot reach Bedrock may succeed next time."""
    error = ProxyError("the proxy refused the request", status=status)
    assert error.retryable is retryable
    assert error.status == status


def test_api_error_message_and_attributes() -> None:
    """An APIError's text has the code, status, service message and request id; extra members stay in body."""
    error = make_api_error(
        status=424,
        code="ModelErrorException",
        message="the model failed",
        request_id="req-1",
        body={"message": "the model failed", "originalStatusCode": 500, "resourceName": "x"},
    )
    assert isinstance(error, ModelError)
    assert str(error) == "ModelErrorException (HTTP 424): the model failed [request id req-1]"
    assert (error.status, error.code, error.request_id, error.service_message) == (
        424,
        "ModelErrorException",
        "req-1",
        "the model failed",
    )
    assert error.original_status_code == 500


def test_model_stream_error_extra_members() -> None:
    """A modelStreamErrorException frame's extra members are readable as attributes."""
    error = make_api_error(
        status=200,
        code="modelStreamErrorException",
        message="m",
        request_id=None,
        body={"originalStatusCode": 503, "originalMessage": "busy"},
    )
    assert isinstance(error, ModelStreamError)
    assert (error.original_status_code, error.original_message) == (503, "busy")


def test_missing_message_is_stated() -> None:
    """An error without a message still reads sensibly."""
    assert "(no message)" in str(make_api_error(status=500, code=None, message=None, request_id=None))


def _instances() -> list[BedrockError]:
    errors: list[BedrockError] = []
    for cls in ALL_ERRORS:
        if issubclass(cls, APIError):
            errors.append(cls("m", status=429, code="C", request_id="r", body={"a": 1}))
        elif cls is InvalidRequestError:
            errors.append(InvalidRequestError("field", "bad"))
        else:
            errors.append(cls("m"))
    for error in errors:
        error.partial_text = "partial"
    return errors


@pytest.mark.parametrize("error", _instances(), ids=lambda error: type(error).__name__)
def test_errors_survive_pickle_and_copy(error: BedrockError) -> None:
    """Every error pickles (process pools) and copies with its type, text and attributes intact."""
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error)
        assert vars(clone) == vars(error)


# ------------------------------------------------------------------------------- differential: botocore


def _botocore_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = RestJSONParser().parse({"status_code": status, "headers": headers, "body": body}, None)
    error: dict[str, Any] = parsed["Error"]
    return error


@given(header=error_type_headers(), status=st.sampled_from([400, 403, 404, 408, 424, 429, 500, 503]))
def test_error_code_extraction_agrees_with_botocore(header: tuple[str, str], status: int) -> None:
    """Our code from ``x-amzn-ErrorType`` equals botocore RestJSONParser's, namespace and suffix removed."""
    value, code = header
    body = json.dumps({"message": "boom"}).encode()
    expected = _botocore_error(status, {"x-amzn-errortype": value}, body)
    error = parse_error_response(status, {"x-amzn-errortype": value}, body)
    assert expected["Code"] == code
    assert error.code == expected["Code"]
    assert error.service_message == expected["Message"]
    assert type(error) is error_class_for_code(expected["Code"], status)


@given(code=error_codes, key=st.sampled_from(["code", "Code", "__type"]), status=st.sampled_from([400, 500]))
def test_body_code_fallback_agrees_with_botocore(code: str, key: str, status: int) -> None:
    """Without the header, the code comes from the body (``code``/``Code``/``__type``) as in botocore."""
    raw = f"com.amazon#{code}" if key == "__type" else code
    body = json.dumps({key: raw, "message": "m"}).encode()
    expected = _botocore_error(status, {}, body)
    assert parse_error_response(status, {}, body).code == expected["Code"]


@pytest.mark.parametrize("status", [400, 429, 500, 502, 503, 504])
def test_no_code_anywhere_agrees_with_botocore(status: int) -> None:
    """With neither header nor body code, both fall back on the status as the code."""
    body = b"<html>Bad Gateway</html>"
    expected = _botocore_error(status, {}, body)
    error = parse_error_response(status, {}, body)
    assert error.code == expected["Code"] == str(status)
