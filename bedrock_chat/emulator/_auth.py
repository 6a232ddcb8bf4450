"""SigV4 verification of received requests, with botocore's signer as the reference.

The emulator exists partly to check the project's own signer (``bedrock_chat._core.sigv4``), so it must not
use it: the expected signature is computed by botocore's ``SigV4Auth`` on an ``AWSRequest`` rebuilt
from what arrived -- the raw request target (botocore URI-encodes it once more, so a wire ``%3A``
becomes ``%253A`` as on the real service), exactly the headers the request lists in ``SignedHeaders``
(not a fixed list, and not botocore's own choice: the one override), the received ``X-Amz-Date`` and
the SHA-256 of the received body.

Checks, in the order the service appears to make them (failures are 403 unless noted):

1. ``Authorization`` missing: MissingAuthenticationTokenException. ``Bearer`` keys are accepted only when
   the emulator has an ``api_key``; where the caller allows it (the ``/anthropic/v1/messages`` route), an
   ``x-api-key`` header is an API key too when there is no ``Authorization``. A wrong key:
   UnrecognizedClientException. Not ``AWS4-HMAC-SHA256`` or missing parts: IncompleteSignatureException.
2. Unknown access key, or a session token missing, wrong or unexpected: UnrecognizedClientException.
3. ``X-Amz-Date`` missing or malformed: IncompleteSignatureException; more than 5 minutes from the
   emulator's clock: InvalidSignatureException "Signature expired: ..." / "Signature not yet current: ...".
4. Credential scope not ``<date>/<region>/<service>/aws4_request`` with ``<service>`` one of the accepted
   signing names (``bedrock`` unless the caller says otherwise), or ``host`` not signed:
   InvalidSignatureException / IncompleteSignatureException. The signature is then computed for the
   service the scope names.
5. Signature mismatch: InvalidSignatureException.

The status of IncompleteSignatureException (403 here; AWS documents 400 for some services) and the
wording of the scope messages are UNVERIFIED; the other messages are the ones AWS services send.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from ._wire_errors import ServiceError

__all__ = ["INVOKE_SIGNING_NAMES", "MAX_CLOCK_SKEW", "verify_request"]

#: Allowed difference between X-Amz-Date and the emulator's clock, in seconds.
MAX_CLOCK_SKEW = 300

_ALGORITHM = "AWS4-HMAC-SHA256"
#: bedrock-runtime's SigV4 signing name (botocore's ``signingName``).
INVOKE_SIGNING_NAMES = frozenset({"bedrock"})

_INVALID_TOKEN = "The security token included in the request is invalid."
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


def _error(code: str, message: str) -> ServiceError:
    return ServiceError(code, message)  # the front end's 403s (``_wire_errors``)


class _ReceivedRequestSigner(SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's SigV4, signing exactly the headers the client said it signed."""

    def headers_to_sign(self, request: Any) -> Any:
        # The rebuilt request holds only the listed headers; botocore's default would also drop
        # names on its own blacklist (user-agent, ...) that another signer may legitimately sign.
        return request.headers


def _parse_amz_date(value: str) -> float | None:
    """``YYYYMMDDTHHMMSSZ`` -> POSIX seconds, or None when malformed."""
    if len(value) != 16 or value[8] != "T" or value[15] != "Z":
        return None
    digits = value[:8] + value[9:15]
    if not digits.isdigit():
        return None
    try:
        fields = (int(digits[0:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]))
        parsed = time.struct_time((*fields, int(digits[10:12]), int(digits[12:14]), 0, 0, 0))
        if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24):
            return None
        return float(calendar.timegm(parsed))
    except (ValueError, OverflowError):
        return None


def _amz(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


def _parse_authorization(value: str) -> dict[str, str] | ServiceError:
    algorithm, _, rest = value.partition(" ")
    if algorithm != _ALGORITHM:
        return _error("IncompleteSignatureException", f"Unsupported authorization type: {algorithm or value!r}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key] = val
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not parts.get(name)]
    if missing:
        return _error(
            "IncompleteSignatureException",
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Authorization={value}",
        )
    return parts


def _check_api_key(given: str, api_key: str | None) -> ServiceError | None:
    if api_key is not None and hmac.compare_digest(given.encode(), api_key.encode()):
        return None
    return _error("UnrecognizedClientException", _INVALID_TOKEN)


def verify_request(
    *,
    method: str,
    target: str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    region: str,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    api_key: str | None,
    now: float,
    signing_names: frozenset[str] = INVOKE_SIGNING_NAMES,
    accept_x_api_key: bool = False,
) -> ServiceError | None:
    """Check a received request's authentication; None when it is valid, else the error to answer.

    ``signing_names`` are the SigV4 service names accepted in the credential scope;
    ``accept_x_api_key`` lets an ``x-api-key`` header carry the API key when ``Authorization`` is absent.
    """
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        values.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
    authorization = values.get("authorization", [""])[0]
    if not authorization and accept_x_api_key and "x-api-key" in values:
        return _check_api_key(values["x-api-key"][0].strip(), api_key)
    if not authorization:
        return _error("MissingAuthenticationTokenException", "Missing Authentication Token")
    if authorization.startswith("Bearer "):
        return _check_api_key(authorization[7:].strip(), api_key)
    parts = _parse_authorization(authorization)
    if isinstance(parts, ServiceError):
        return parts

    scope = parts["Credential"].split("/")
    if len(scope) != 5:
        return _error(
            "IncompleteSignatureException",
            f"Credential should be scoped to a valid region, not a malformed scope. Credential={parts['Credential']}",
        )
    key_id, scope_date, scope_region, scope_service, terminator = scope
    if not hmac.compare_digest(key_id.encode(), access_key.encode()):
        return _error("UnrecognizedClientException", _INVALID_TOKEN)
    token = values.get("x-amz-security-token", [None])[0]
    if session_token is None:
        if token is not None:
            return _error("UnrecognizedClientException", _INVALID_TOKEN)
    elif token is None or not hmac.compare_digest(token.encode(), session_token.encode()):
        return _error("UnrecognizedClientException", _INVALID_TOKEN)

    amz_date = values.get("x-amz-date", [""])[0]
    sent_at = _parse_amz_date(amz_date)
    if sent_at is None:
        return _error(
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
            f"Authorization={authorization}",
        )
    if sent_at < now - MAX_CLOCK_SKEW:
        return _error(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {_amz(now - MAX_CLOCK_SKEW)} ({_amz(now)} - 5 min.)",
        )
    if sent_at > now + MAX_CLOCK_SKEW:
        return _error(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {_amz(now + MAX_CLOCK_SKEW)} "
            f"({_amz(now)} + 5 min.)",
        )
    if scope_date != amz_date[:8]:
        return _error(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    if scope_region != region:
        return _error(
            "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{scope_region}'. "
        )
    if scope_service not in signing_names:
        expected = "' or '".join(sorted(signing_names))
        return _error("InvalidSignatureException", f"Credential should be scoped to correct service: '{expected}'. ")
    if terminator != "aws4_request":
        return _error(
            "InvalidSignatureException",
            f"Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. ",
        )

    signed_names = parts["SignedHeaders"].split(";")
    if "host" not in signed_names:
        return _error(
            "IncompleteSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    signed = HTTPHeaders()
    for name in signed_names:
        if name not in values:
            return _error("InvalidSignatureException", _BAD_SIGNATURE)
        for value in values[name]:
            signed[name] = value  # HTTPHeaders appends: repeated headers are joined with "," as SigV4 says
    payload_hash = values.get("x-amz-content-sha256", [None])[0]
    if payload_hash is not None and payload_hash != hashlib.sha256(body).hexdigest():
        return _error(
            "InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match what was computed."
        )

    request = AWSRequest(method=method, url=f"http://{values['host'][0]}{target}", data=body)
    request.headers = signed
    request.context["timestamp"] = amz_date
    signer = _ReceivedRequestSigner(Credentials(access_key, secret_key, session_token), scope_service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected.encode(), parts["Signature"].encode()):
        return _error("InvalidSignatureException", _BAD_SIGNATURE)
    return None
