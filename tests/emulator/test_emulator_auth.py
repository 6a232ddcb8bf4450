"""SigV4 verification (no I/O): the protocol doc's byte-exact vector, and every refusal with its error type."""

from __future__ import annotations

import calendar
import datetime
import hashlib
from typing import Any
from unittest import mock

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bedrock_chat.emulator._auth import verify_request
from bedrock_chat.emulator._wire_errors import ServiceError

# BEDROCK_PROTOCOL.md section 1.2: botocore 1.44.8, frozen at 2024-01-01T00:00:00Z.
VECTOR_KEY = "AKIDEXAMPLE"
VECTOR_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
VECTOR_NOW = float(calendar.timegm((2024, 1, 1, 0, 0, 0)))
VECTOR_TARGET = "/model/anthropic.claude-v2%3A1/invoke"
VECTOR_BODY = b'{"prompt": "\\n\\nHuman: Hi\\n\\nAssistant:", "max_tokens_to_sample": 10}'
VECTOR_HEADERS = [
    (b"host", b"bedrock-runtime.us-east-1.amazonaws.com"),
    (b"accept", b"application/json"),
    (b"content-type", b"application/json"),
    (b"x-amz-date", b"20240101T000000Z"),
    (
        b"authorization",
        b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
        b"SignedHeaders=accept;content-type;host;x-amz-date, "
        b"Signature=537da3861d6bdb2782a180dba42521f8551082dc74e5492b40bc26ae4ca43dcc",
    ),
    (b"user-agent", b"Boto3/1.0"),  # sent but not signed, as botocore does
]
INVALID_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)


def verify(headers: list[tuple[bytes, bytes]], **overrides: Any) -> ServiceError | None:
    """verify_request with the vector's request and credentials, changed by ``overrides``."""
    arguments: dict[str, Any] = {
        "method": "POST",
        "target": VECTOR_TARGET,
        "headers": headers,
        "body": VECTOR_BODY,
        "region": "us-east-1",
        "access_key": VECTOR_KEY,
        "secret_key": VECTOR_SECRET,
        "session_token": None,
        "api_key": None,
        "now": VECTOR_NOW,
    }
    arguments.update(overrides)
    return verify_request(**arguments)


def botocore_headers(
    *,
    target: str = VECTOR_TARGET,
    body: bytes = VECTOR_BODY,
    key: str = VECTOR_KEY,
    secret: str = VECTOR_SECRET,
    token: str | None = None,
    region: str = "us-east-1",
    service: str = "bedrock",
    at: float = VECTOR_NOW,
    extra: dict[str, str] | None = None,
) -> list[tuple[bytes, bytes]]:
    """Headers of a request botocore signed (at time ``at``), as h11 would deliver them."""
    request = AWSRequest(
        method="POST",
        url=f"https://bedrock-runtime.us-east-1.amazonaws.com{target}",
        data=body,
        headers={"Content-Type": "application/json", **(extra or {})},
    )
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=moment):
        botocore.auth.SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    headers = [(b"host", b"bedrock-runtime.us-east-1.amazonaws.com")]
    return headers + [(name.lower().encode(), value.encode()) for name, value in request.headers.items()]


def replace(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes | None) -> list[tuple[bytes, bytes]]:
    """``headers`` with header ``name`` set to ``value`` (None removes it)."""
    kept = [(n, v) for n, v in headers if n != name]
    return kept if value is None else [*kept, (name, value)]


def code_of(error: ServiceError | None) -> str | None:
    """The error code, asserting the status is 403 (None when accepted)."""
    if error is None:
        return None
    assert error.status == 403
    return error.code


def test_the_protocol_docs_vector_is_accepted() -> None:
    """The byte-exact botocore vector of BEDROCK_PROTOCOL.md (wire %3A, canonical %253A) verifies."""
    assert verify(VECTOR_HEADERS) is None


@pytest.mark.parametrize(
    "change",
    [
        {"target": "/model/anthropic.claude-v2:1/invoke"},  # the same id, encoded differently: another signature
        {"body": VECTOR_BODY.replace(b"10", b"11")},
        {"method": "PUT"},
        {"secret_key": VECTOR_SECRET + "x"},
        {"region": "us-west-2"},
    ],
)
def test_any_change_breaks_the_vector(change: dict[str, Any]) -> None:
    """Changing the path encoding, body, method, secret or region makes the signature invalid."""
    error = verify(VECTOR_HEADERS, **change)
    assert code_of(error) == "InvalidSignatureException"


def test_a_signed_header_value_change_breaks_it() -> None:
    """A signed header's value is covered; an unsigned one (user-agent) is not."""
    assert code_of(verify(replace(VECTOR_HEADERS, b"accept", b"*/*"))) == "InvalidSignatureException"
    assert verify(replace(VECTOR_HEADERS, b"user-agent", b"other")) is None


def test_wrong_secret_message() -> None:
    """A bad signature gets AWS's exact message."""
    error = verify(botocore_headers(secret="wrong"))
    assert error is not None
    assert (error.code, error.message) == ("InvalidSignatureException", INVALID_SIGNATURE)


def test_raw_colon_path_verifies() -> None:
    """The anthropic SDK's raw ':' path is signed and checked as sent."""
    target = "/model/anthropic.claude-v2:1/invoke"
    assert verify(botocore_headers(target=target), target=target) is None


def test_arbitrary_signed_headers_are_honoured() -> None:
    """Whatever SignedHeaders lists is checked (here extra x-stainless-* style headers)."""
    headers = botocore_headers(extra={"X-Stainless-Lang": "python", "Accept-Encoding": "gzip"})
    assert b"x-stainless-lang" in dict(headers)[b"authorization"]
    assert verify(headers) is None
    assert code_of(verify(replace(headers, b"x-stainless-lang", b"rust"))) == "InvalidSignatureException"
    assert code_of(verify(replace(headers, b"x-stainless-lang", None))) == "InvalidSignatureException"


def test_unknown_access_key() -> None:
    """An access key the emulator does not know is UnrecognizedClientException."""
    error = verify(botocore_headers(key="AKIDOTHER"))
    assert error is not None
    assert (code_of(error), error.message) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


def test_session_token_rules() -> None:
    """With a session token configured it must be sent and match; without one none may be sent."""
    good = botocore_headers(token="TOKEN")
    assert verify(good, session_token="TOKEN") is None
    assert code_of(verify(good, session_token="OTHER")) == "UnrecognizedClientException"
    assert code_of(verify(botocore_headers(), session_token="TOKEN")) == "UnrecognizedClientException"
    assert code_of(verify(good)) == "UnrecognizedClientException"


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (-600, "Signature expired: 20231231T235000Z is now earlier than 20231231T235500Z (20240101T000000Z - 5 min.)"),
        (
            600,
            "Signature not yet current: 20240101T001000Z is still later than 20240101T000500Z "
            "(20240101T000000Z + 5 min.)",
        ),
    ],
)
def test_clock_skew_over_five_minutes_is_refused(offset: int, message: str) -> None:
    """A request signed 10 minutes off the emulator's clock is refused with AWS's wording."""
    error = verify(botocore_headers(at=VECTOR_NOW + offset))
    assert error is not None
    assert (code_of(error), error.message) == ("InvalidSignatureException", message)


@pytest.mark.parametrize("offset", [-299, 299])
def test_skew_under_five_minutes_is_accepted(offset: int) -> None:
    """Just under 5 minutes of skew either way is fine."""
    assert verify(botocore_headers(at=VECTOR_NOW + offset)) is None


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        (botocore_headers(region="eu-west-1"), "scoped to a valid region, not 'eu-west-1'"),
        (botocore_headers(service="bedrock-runtime"), "scoped to correct service: 'bedrock'"),
    ],
)
def test_credential_scope_must_match(headers: list[tuple[bytes, bytes]], fragment: str) -> None:
    """The scope's region and service must be the emulator's region and 'bedrock'."""
    error = verify(headers)
    assert error is not None
    assert code_of(error) == "InvalidSignatureException"
    assert fragment in error.message


def test_scope_date_must_match_x_amz_date() -> None:
    """The credential scope's date must be X-Amz-Date's."""
    headers = botocore_headers()
    auth = dict(headers)[b"authorization"].replace(b"/20240101/", b"/20240102/")
    error = verify(replace(headers, b"authorization", auth))
    assert error is not None
    assert "Date in Credential scope does not match" in error.message


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "MissingAuthenticationTokenException"),
        (b"Basic dXNlcjpwYXNz", "IncompleteSignatureException"),
        (
            b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request",
            "IncompleteSignatureException",
        ),
        (
            b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x, SignedHeaders=host, Signature=00",
            "IncompleteSignatureException",
        ),
        (
            b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
            b"SignedHeaders=content-type;x-amz-date, Signature=00",
            "IncompleteSignatureException",
        ),
        (b"Bearer some-api-key", "UnrecognizedClientException"),
    ],
)
def test_malformed_authorization(authorization: bytes | None, code: str) -> None:
    """Missing, foreign, incomplete or host-less Authorization headers are refused by type."""
    assert code_of(verify(replace(VECTOR_HEADERS, b"authorization", authorization))) == code


@pytest.mark.parametrize("date", [None, b"2024-01-01T00:00:00Z", b"20241301T000000Z", b"yesterday"])
def test_missing_or_malformed_date(date: bytes | None) -> None:
    """Without a parseable X-Amz-Date the signature is incomplete."""
    assert code_of(verify(replace(VECTOR_HEADERS, b"x-amz-date", date))) == "IncompleteSignatureException"


def test_bearer_api_key() -> None:
    """A Bedrock API key is accepted as a bearer token only when configured, and only the right one."""
    headers = replace(VECTOR_HEADERS, b"authorization", b"Bearer key-123")
    assert verify(headers, api_key="key-123") is None
    assert code_of(verify(headers, api_key="key-456")) == "UnrecognizedClientException"


def test_content_sha256_header_must_match_the_body() -> None:
    """A signed X-Amz-Content-SHA256 must be the body's hash (it is what the signature covers)."""
    good = hashlib.sha256(VECTOR_BODY).hexdigest()
    assert verify(botocore_headers(extra={"X-Amz-Content-SHA256": good})) is None
    wrong = botocore_headers(extra={"X-Amz-Content-SHA256": "0" * 64})
    assert code_of(verify(wrong)) == "InvalidSignatureException"
