"""SigV4 signer: AWS test-suite vectors, the Bedrock worked example, and a differential test vs botocore."""

from __future__ import annotations

import calendar
import datetime
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import botocore.auth
import botocore.utils
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_chat._core import sigv4 as _sigv4
from bedrock_chat._core.sigv4 import (
    UNSIGNED_HEADERS,
    SignedHeaders,
    SigV4Signer,
    canonical_host,
    canonical_query,
    canonical_request,
    canonical_uri,
    derive_signing_key,
    percent_encode_path_segment,
    string_to_sign,
)
from bedrock_chat._types import AwsCredentials

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
EXAMPLE_CREDENTIALS = AwsCredentials(ACCESS_KEY, SECRET_KEY)
TOKEN = "FQoGZXIvYXdzEXAMPLE//////////wEaDEXAMPLETOKEN+/="

# ---------------------------------------------------------------------------------------------------
# (b) The AWS SigV4 test suite, as shipped in botocore's sdist (tests/unit/auth/aws4_testsuite).

SUITE_DIR = Path(__file__).parent / "data" / "aws4_testsuite"
SUITE_DATE = calendar.timegm((2015, 8, 30, 12, 36, 0))
# Every case in the suite. botocore's harness skips the last four (its request parser chokes on the
# space; its params dict cannot hold repeated keys); our signer takes a raw path and query, so it runs them.
SUITE_CASE_COUNT = 34
BOTOCORE_SKIPS = {
    "normalize-path/get-space",
    "get-vanilla-query-order-key-case",
    "get-vanilla-query-order-key",
    "get-vanilla-query-order-value",
}
SUITE_CASES = sorted(p.parent.relative_to(SUITE_DIR).as_posix() for p in SUITE_DIR.rglob("*.req"))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8").replace("\r", "")


def _parse_raw_request(raw: str) -> tuple[str, str, str, list[tuple[str, str]], bytes]:
    """Split a raw HTTP/1.1 request into method, path, query, header pairs and body."""
    head, _, body = raw.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    method, rest = request_line.split(" ", 1)
    target = rest.rsplit(" ", 1)[0]  # the path may contain a space (normalize-path/get-space)
    path, _, query = target.partition("?")
    headers: list[tuple[str, str]] = []
    for line in filter(None, header_lines):  # some files end in a newline that is not a blank line
        if line[:1] in (" ", "\t") and headers:  # obsolete line folding continues the last value
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line}")
        else:
            name, _, value = line.partition(":")
            headers.append((name, value))
    return method, path, query, headers, body.encode()


def test_vector_suite_is_present() -> None:
    """All 34 AWS suite cases are on disk, so the parametrised vector test cannot pass vacuously."""
    assert len(SUITE_CASES) == SUITE_CASE_COUNT
    assert set(SUITE_CASES) >= BOTOCORE_SKIPS


@pytest.mark.parametrize("case", SUITE_CASES)
def test_aws_suite_vector(case: str) -> None:
    """Our canonical request, string to sign and Authorization match the AWS suite byte for byte."""
    stem = SUITE_DIR / case / Path(case).name
    method, path, query, headers, body = _parse_raw_request(_read(stem.with_suffix(".req")))
    expected_creq = _read(stem.with_suffix(".creq"))
    # As botocore's harness does: the case uses a session token iff its canonical request signs one.
    token = re.search(r"^x-amz-security-token:(.*)$", expected_creq, re.MULTILINE)
    credentials = AwsCredentials(ACCESS_KEY, SECRET_KEY, token.group(1) if token else None)

    details = SigV4Signer(region="us-east-1", service="service").sign_with_details(
        method=method,
        host="",
        path=path,
        query=query,
        headers=headers,
        body=body,
        credentials=credentials,
        timestamp=SUITE_DATE,
    )

    assert details.canonical_request == expected_creq
    assert details.string_to_sign == _read(stem.with_suffix(".sts"))
    assert details.headers.authorization == _read(stem.with_suffix(".authz"))


# ---------------------------------------------------------------------------------------------------
# (c) The Bedrock worked example of BEDROCK_PROTOCOL.md section 1.2 (double-encoded model id).

BEDROCK_EXAMPLE_CREQ = """POST
/model/anthropic.claude-v2%253A1/invoke

accept:application/json
content-type:application/json
host:bedrock-runtime.us-east-1.amazonaws.com
x-amz-date:20240101T000000Z

accept;content-type;host;x-amz-date
0fba18db828e4ada5e760c11cdc83a6d1f138cc80f291faef27f3796d8118b9f"""
BEDROCK_EXAMPLE_STS = """AWS4-HMAC-SHA256
20240101T000000Z
20240101/us-east-1/bedrock/aws4_request
d308714864452d1bfba03d7c2fa77e2bf0143a34d2ff7b57b693464d48bc7e2d"""
BEDROCK_EXAMPLE_AUTHZ = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
    "SignedHeaders=accept;content-type;host;x-amz-date, "
    "Signature=537da3861d6bdb2782a180dba42521f8551082dc74e5492b40bc26ae4ca43dcc"
)
BEDROCK_EXAMPLE_BODY = b'{"prompt": "\\n\\nHuman: Hi\\n\\nAssistant:", "max_tokens_to_sample": 10}'


def test_bedrock_worked_example() -> None:
    """The InvokeModel example of the protocol notes signs to the exact strings botocore produced."""
    assert len(BEDROCK_EXAMPLE_BODY) == 69
    path = f"/model/{percent_encode_path_segment('anthropic.claude-v2:1')}/invoke"
    assert path == "/model/anthropic.claude-v2%3A1/invoke"

    details = SigV4Signer(region="us-east-1").sign_with_details(
        method="POST",
        host="bedrock-runtime.us-east-1.amazonaws.com",
        path=path,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        body=BEDROCK_EXAMPLE_BODY,
        credentials=EXAMPLE_CREDENTIALS,
        timestamp=calendar.timegm((2024, 1, 1, 0, 0, 0)),
    )

    assert details.canonical_request == BEDROCK_EXAMPLE_CREQ
    assert details.string_to_sign == BEDROCK_EXAMPLE_STS
    assert details.headers == SignedHeaders(
        authorization=BEDROCK_EXAMPLE_AUTHZ, amz_date="20240101T000000Z", security_token=None
    )


def test_public_helpers_rebuild_the_worked_example() -> None:
    """canonical_request, string_to_sign and derive_signing_key, as a verifier would use them, agree."""
    creq, signed = canonical_request(
        method="POST",
        path="/model/anthropic.claude-v2%3A1/invoke",
        query="",
        headers={
            "accept": "application/json",
            "content-type": "application/json",
            "host": "bedrock-runtime.us-east-1.amazonaws.com",
            "x-amz-date": "20240101T000000Z",
        },
        payload_hash=hashlib.sha256(BEDROCK_EXAMPLE_BODY).hexdigest(),
    )
    assert (creq, signed) == (BEDROCK_EXAMPLE_CREQ, "accept;content-type;host;x-amz-date")
    sts = string_to_sign(
        amz_date="20240101T000000Z", scope="20240101/us-east-1/bedrock/aws4_request", canonical_request=creq
    )
    assert sts == BEDROCK_EXAMPLE_STS
    key = derive_signing_key(SECRET_KEY, "20240101", "us-east-1", "bedrock")
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    assert BEDROCK_EXAMPLE_AUTHZ.endswith(f"Signature={signature}")


# ---------------------------------------------------------------------------------------------------
# (a) Differential test against botocore's SigV4Auth.

EPOCH = datetime.datetime(1970, 1, 1)
KNOWN_MODEL_IDS = [
    "anthropic.claude-v2:1",
    "anthropic.claude-instant-v1",
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "eu.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
    "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-v2",
    "arn:aws:bedrock:eu-central-1:123456789012:provisioned-model/abc123def456",
    ".",
    "..",
    "a b~c",
]
REGIONS = ["us-east-1", "us-west-2", "eu-central-1", "ap-northeast-1", "us-gov-west-1", "cn-north-1"]
HEADER_NAMES = [
    "Content-Type",
    "content-type",
    "Accept",
    "X-Amzn-Bedrock-Accept",
    "X-Amzn-Bedrock-Trace",
    "X-Amzn-Bedrock-GuardrailIdentifier",
    "x-amzn-bedrock-guardrailversion",
    "User-Agent",  # blacklisted: must not be signed
    "traceparent",  # blacklisted
    "Content-Length",
    "Accept-Encoding",
    "X-Stainless-Lang",
    "Host",
    "Authorization",  # stale, from a previous attempt: replaced
    "X-Amz-Date",  # stale: replaced
    "X-Amz-Security-Token",  # replaced only when the credentials carry a token
    "X-Amz-Content-SHA256",  # its first raw value becomes the payload hash
]
# Printable ASCII plus runs of spaces and tabs, so trimming and collapsing are exercised.
header_values = st.text(alphabet=st.sampled_from([chr(c) for c in range(0x20, 0x7F)] + [" ", " ", "\t"]), max_size=30)
unicode_chars = st.characters(exclude_categories=["Cs"])  # lone surrogates cannot be UTF-8 encoded
unicode_text = st.text(alphabet=unicode_chars, max_size=30)

model_ids = st.one_of(
    st.sampled_from(KNOWN_MODEL_IDS),
    st.builds(
        "{}.{}-{}:{}".format,
        st.sampled_from(["anthropic", "us.anthropic", "eu.anthropic", "apac.anthropic"]),
        st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True),
        st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
        st.integers(0, 9),
    ),
    st.builds(
        "arn:aws:bedrock:{}:{}:{}/{}".format,
        st.sampled_from(REGIONS),
        st.from_regex(r"[0-9]{12}", fullmatch=True),
        st.sampled_from(["inference-profile", "application-inference-profile", "custom-model"]),
        st.from_regex(r"[a-z0-9.:/-]{1,30}", fullmatch=True),
    ),
    st.text(alphabet=unicode_chars, min_size=1, max_size=30),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | unicode_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(unicode_text, inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.just(b""),
    st.builds(
        lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only).encode(),
        json_values,
        st.booleans(),
    ),
)
queries = st.lists(st.tuples(unicode_text, unicode_text), max_size=3).map(
    lambda pairs: "&".join(f"{botocore.utils.percent_encode(k)}={botocore.utils.percent_encode(v)}" for k, v in pairs)
)
# (scheme, authority) pairs beyond the regional hosts: default ports, case, custom endpoints, IPv6.
ODD_ENDPOINTS = [
    ("https", "bedrock-runtime.us-east-1.amazonaws.com:443"),
    ("https", "Bedrock-Runtime.US-East-1.amazonaws.com"),
    ("http", "127.0.0.1:80"),
    ("http", "localhost:8080"),
    ("https", "localhost:80"),
    ("http", "[::1]:5000"),
    ("https", "[2001:DB8::1]:443"),
]
endpoints = st.one_of(
    st.sampled_from(REGIONS).map(lambda region: ("https", f"bedrock-runtime.{region}.amazonaws.com")),
    st.sampled_from(ODD_ENDPOINTS),
)
session_tokens = st.one_of(st.none(), st.just(""), st.from_regex(r"[A-Za-z0-9/+=]{1,60}", fullmatch=True))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A random Bedrock-shaped request and the credentials and time to sign it with."""
    model_id = draw(model_ids)
    # botocore's encoding (%3A), or the anthropic SDK's quote(model, safe=":;") which leaves ':' raw.
    encoded = draw(st.sampled_from([percent_encode_path_segment(model_id), quote(model_id.encode(), safe=":;")]))
    operation = draw(st.sampled_from(["invoke", "invoke-with-response-stream"]))
    scheme, authority = draw(endpoints)
    return {
        "method": draw(st.sampled_from(["POST", "POST", "GET", "post"])),
        "scheme": scheme,
        "authority": authority,
        "path": f"/model/{encoded}/{operation}",
        "query": draw(st.one_of(st.just(""), queries)),
        "headers": draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=8)),
        "body": draw(bodies),
        "region": draw(st.sampled_from(REGIONS) | st.from_regex(r"[a-z]{2}-[a-z]{4,9}-[1-9]", fullmatch=True)),
        "service": draw(st.sampled_from(["bedrock", "bedrock", "service"])),
        "access_key": draw(st.from_regex(r"(AKIA|ASIA)[A-Z0-9]{16}", fullmatch=True)),
        "secret_key": draw(st.from_regex(r"[A-Za-z0-9/+]{40}", fullmatch=True) | unicode_text),
        "token": draw(session_tokens),
        # Whole microseconds, so the float we get and the datetime botocore gets are the same instant.
        "micros": draw(st.integers(946_684_800_000_000, 4_102_444_799_999_999)),
    }


def _botocore_sign(req: dict[str, Any]) -> list[tuple[str, str]]:
    """Sign with botocore's SigV4Auth at the frozen instant; return the request's final headers."""
    url = f"{req['scheme']}://{req['authority']}{req['path']}"
    if req["query"]:
        url = f"{url}?{req['query']}"
    request = AWSRequest(method=req["method"], url=url, data=req["body"])
    for name, value in req["headers"]:
        request.headers[name] = value  # HTTPHeaders appends, keeping repeated headers
    credentials = Credentials(req["access_key"], req["secret_key"], req["token"])
    now = EPOCH + datetime.timedelta(microseconds=req["micros"])
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=now):
        botocore.auth.SigV4Auth(credentials, req["service"], req["region"]).add_auth(request)
    return [(name.lower(), value) for name, value in request.headers.items()]


def _our_sign(req: dict[str, Any]) -> tuple[SignedHeaders, list[tuple[str, str]]]:
    """Sign with our signer; return what it adds and the request's headers after applying it."""
    signed = SigV4Signer(region=req["region"], service=req["service"]).sign(
        method=req["method"],
        host=req["authority"],
        path=req["path"],
        query=req["query"],
        headers=req["headers"],
        body=req["body"],
        credentials=AwsCredentials(req["access_key"], req["secret_key"], req["token"]),
        timestamp=req["micros"] / 1_000_000,
        scheme=req["scheme"],
    )
    replaced = {name for name, _ in signed.items()}
    kept = [(name.lower(), value) for name, value in req["headers"] if name.lower() not in replaced]
    return signed, kept + signed.items()


@settings(max_examples=1500, deadline=None)
@given(requests())
def test_matches_botocore(req: dict[str, Any]) -> None:
    """Authorization, X-Amz-Date and X-Amz-Security-Token equal botocore's SigV4Auth on random requests."""
    botocore_headers = _botocore_sign(req)
    ours, our_headers = _our_sign(req)
    theirs = dict(botocore_headers)

    assert ours.authorization == theirs["authorization"]
    assert ours.amz_date == theirs["x-amz-date"]
    if req["token"]:
        assert ours.security_token == theirs["x-amz-security-token"] == req["token"]
    else:
        assert ours.security_token is None
    # Applying items() to the request leaves exactly the headers botocore leaves.
    assert sorted(our_headers) == sorted(botocore_headers)


def _sign_with(signer: SigV4Signer, req: dict[str, Any]) -> SignedHeaders:
    return signer.sign(
        method=req["method"],
        host=req["authority"],
        path=req["path"],
        query=req["query"],
        headers=tuple(req["headers"]),  # a tuple: the signer keeps its canonical-request template
        body=req["body"],
        credentials=AwsCredentials(req["access_key"], req["secret_key"], req["token"]),
        timestamp=req["micros"] / 1_000_000,
        scheme=req["scheme"],
    )


@settings(max_examples=400, deadline=None)
@given(requests(), bodies, st.integers(1, 10**9))
def test_template_signs_as_botocore(req: dict[str, Any], other_body: bytes, later: int) -> None:
    """Headers given as a tuple: the first signing keeps a template, the next (another body, another
    second) fills it in; both equal botocore's signature."""
    signer = SigV4Signer(region=req["region"], service=req["service"])
    first = _sign_with(signer, req)
    assert first.authorization == dict(_botocore_sign(req))["authorization"]
    assert len(signer._templates) == 1
    again = {**req, "body": other_body, "micros": req["micros"] + later}
    assert _sign_with(signer, again).authorization == dict(_botocore_sign(again))["authorization"]
    assert len(signer._templates) == 1  # the same template, filled in


def test_template_cache_is_bounded_and_keyed_by_everything_signed() -> None:
    """A different path, header value or token is a different template; the cache stays bounded."""
    signer = SigV4Signer(region="us-east-1")
    base = _sign_simple(signer, headers=(("accept", "application/json"),))
    other = _sign_simple(signer, headers=(("accept", "text/plain"),))
    assert base.authorization != other.authorization
    with_token = _sign_simple(signer, AwsCredentials("AK", "secret", "token-1"), headers=(("accept", "a"),))
    other_token = _sign_simple(signer, AwsCredentials("AK", "secret", "token-2"), headers=(("accept", "a"),))
    assert (with_token.security_token, other_token.security_token) == ("token-1", "token-2")
    assert with_token.authorization != other_token.authorization
    for i in range(3 * _sigv4._TEMPLATE_CACHE_SIZE):
        _sign_simple(signer, headers=(("x-amzn-bedrock-trace", str(i)),))
    assert 0 < len(signer._templates) <= _sigv4._TEMPLATE_CACHE_SIZE


def test_headers_that_defeat_the_template_sign_the_long_way() -> None:
    """Pairs that cannot be a cache key (lists), and a header name holding the template's date slot,
    sign exactly as the same headers given as a list."""
    signer = SigV4Signer(region="us-east-1")
    for headers in ((["accept", "application/json"],), ((f"x-odd{_sigv4._DATE_SLOT}", "v"),)):
        expected = _sign_simple(SigV4Signer(region="us-east-1"), headers=list(headers))
        assert _sign_simple(signer, headers=headers) == expected
        assert _sign_simple(signer, headers=headers, timestamp=1_700_000_001.0).amz_date == "20231114T221321Z"
    assert signer._templates == {}


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("/.%~:aZ9-_ \u00e9\u1234"), max_size=20))
def test_canonical_uri_matches_botocore(path: str) -> None:
    """Path normalisation and re-encoding equal botocore's on paths dense in dots, slashes and escapes."""
    signer = botocore.auth.SigV4Auth(None, "bedrock", "us-east-1")
    assert canonical_uri(path) == signer._normalize_url_path(path)


@settings(max_examples=300, deadline=None)
@given(unicode_text)
def test_percent_encode_matches_botocore(value: str) -> None:
    """Model-id encoding equals botocore.utils.percent_encode on arbitrary text."""
    assert percent_encode_path_segment(value) == botocore.utils.percent_encode(value)


@settings(max_examples=300, deadline=None)
@given(queries)
def test_canonical_query_matches_botocore(query: str) -> None:
    """An encoded query canonicalises exactly as botocore's URL-query path does."""
    signer = botocore.auth.SigV4Auth(None, "bedrock", "us-east-1")
    expected = signer._canonical_query_string_url(botocore.auth.urlsplit(f"https://h/?{query}"))
    assert canonical_query(query) == expected


@pytest.mark.parametrize(("scheme", "authority"), ODD_ENDPOINTS)
def test_canonical_host_matches_botocore(scheme: str, authority: str) -> None:
    """The derived host header equals botocore's _host_from_url (lowercase, default port dropped)."""
    assert canonical_host(authority, scheme) == botocore.auth._host_from_url(f"{scheme}://{authority}/x")


def test_unsigned_headers_match_botocore_blacklist() -> None:
    """Our never-signed headers are botocore's SIGNED_HEADERS_BLACKLIST, so a botocore change shows up here."""
    assert frozenset(botocore.auth.SIGNED_HEADERS_BLACKLIST) == UNSIGNED_HEADERS


# ---------------------------------------------------------------------------------------------------
# (d) Unit tests.


@pytest.mark.parametrize(
    ("model_id", "encoded"),
    [
        ("anthropic.claude-v2:1", "anthropic.claude-v2%3A1"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "us.anthropic.claude-3-5-sonnet-20241022-v2%3A0"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
            "us.anthropic.claude-3-5-sonnet-20241022-v2%3A0",
        ),
        ("a-Z_0.9~", "a-Z_0.9~"),
        ("caf\u00e9 +", "caf%C3%A9%20%2B"),
    ],
)
def test_percent_encode_path_segment_examples(model_id: str, encoded: str) -> None:
    """The protocol notes' section 1.1 examples encode ':' and '/' and keep only A-Za-z0-9-._~."""
    assert percent_encode_path_segment(model_id) == encoded


def _sign_simple(
    signer: SigV4Signer,
    credentials: AwsCredentials = EXAMPLE_CREDENTIALS,
    timestamp: float = 1_700_000_000.0,
    headers: Any = (),
) -> SignedHeaders:
    return signer.sign(
        method="POST",
        host="bedrock-runtime.us-east-1.amazonaws.com",
        path="/model/anthropic.claude-v2%3A1/invoke",
        headers=headers,
        body=b"{}",
        credentials=credentials,
        timestamp=timestamp,
    )


def test_reprs_do_not_leak_secrets() -> None:
    """No repr of credentials, signer, signed headers or signing details shows the secret, token or signature."""
    credentials = AwsCredentials(ACCESS_KEY, SECRET_KEY, TOKEN)
    signer = SigV4Signer(region="us-east-1")
    details = signer.sign_with_details(
        method="POST",
        host="bedrock-runtime.us-east-1.amazonaws.com",
        path="/model/x/invoke",
        headers={},
        body=b"{}",
        credentials=credentials,
        timestamp=1_700_000_000,
    )
    signature = details.headers.authorization.rpartition("Signature=")[2]
    for text in (repr(credentials), str(credentials), repr(signer), repr(details.headers), repr(details)):
        assert SECRET_KEY not in text
        assert TOKEN not in text
        assert signature not in text
    assert ACCESS_KEY in repr(details.headers)  # the redacted form stays useful for debugging


def test_signed_headers_items() -> None:
    """items() lists authorization and x-amz-date, plus x-amz-security-token only with a token."""
    plain = _sign_simple(SigV4Signer(region="us-east-1"))
    assert [name for name, _ in plain.items()] == ["authorization", "x-amz-date"]
    with_token = _sign_simple(SigV4Signer(region="us-east-1"), AwsCredentials("AK", "SK", TOKEN))
    assert with_token.items()[2] == ("x-amz-security-token", TOKEN)
    assert "x-amz-security-token" in with_token.authorization


def _count_derivations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record every signing-key derivation as (secret, datestamp)."""
    calls: list[tuple[str, str]] = []
    real: Callable[[str, str, str, str], bytes] = _sigv4.derive_signing_key

    def counting(secret_key: str, datestamp: str, region: str, service: str) -> bytes:
        calls.append((secret_key, datestamp))
        return real(secret_key, datestamp, region, service)

    monkeypatch.setattr(_sigv4, "derive_signing_key", counting)
    return calls


def test_signing_key_is_reused_within_a_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing repeatedly on one UTC day derives the key once; the next day derives a new one."""
    calls = _count_derivations(monkeypatch)
    signer = SigV4Signer(region="us-east-1")
    day = calendar.timegm((2024, 5, 1, 0, 0, 0))
    first = _sign_simple(signer, timestamp=day)
    for offset in (1, 3600, 86_399):
        _sign_simple(signer, timestamp=day + offset)
    assert calls == [(SECRET_KEY, "20240501")]
    _sign_simple(signer, timestamp=day + 86_400)
    assert calls[-1] == (SECRET_KEY, "20240502")
    assert _sign_simple(signer, timestamp=day) == first  # cached key signs identically
    assert len(calls) == 2


def test_signing_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """After many rotated secrets the oldest key has been evicted while the newest is still cached."""
    calls = _count_derivations(monkeypatch)
    signer = SigV4Signer(region="us-east-1")
    secrets = [f"secret-{i}" for i in range(50)]
    for secret in secrets:
        _sign_simple(signer, AwsCredentials("AK", secret))
    assert len(calls) == 50
    _sign_simple(signer, AwsCredentials("AK", secrets[-1]))
    assert len(calls) == 50  # newest: hit
    _sign_simple(signer, AwsCredentials("AK", secrets[0]))
    assert len(calls) == 51  # oldest: evicted, derived again
    assert len(signer._keys) == _sigv4._KEY_CACHE_SIZE


def test_timestamp_is_truncated_to_the_second() -> None:
    """A fractional POSIX time signs as its whole second, as botocore's strftime truncates."""
    signer = SigV4Signer(region="us-east-1")
    whole = _sign_simple(signer, timestamp=1_700_000_000)
    assert _sign_simple(signer, timestamp=1_700_000_000.999) == whole
    assert whole.amz_date == "20231114T221320Z"


def test_repeated_headers_join_in_order() -> None:
    """Repeated header pairs are signed as one comma-joined value, in the order given."""
    signer = SigV4Signer(region="us-east-1")
    pairs = [("X-A", " two  words "), ("x-a", "b"), ("X-A", "a")]
    details = signer.sign_with_details(
        method="POST",
        host="h",
        path="/",
        headers=pairs,
        body=b"",
        credentials=EXAMPLE_CREDENTIALS,
        timestamp=0,
    )
    assert "\nx-a:two words,b,a\n" in details.canonical_request


def test_headers_as_dict_mapping_list_or_tuple_sign_alike() -> None:
    """The pairs fast path (list, tuple) and the Mapping path (dict, any Mapping) give one signature."""
    import types

    signer = SigV4Signer(region="us-east-1")
    pairs = [("Content-Type", "application/json"), ("Accept", "application/json")]
    forms: list[Any] = [pairs, tuple(pairs), dict(pairs), types.MappingProxyType(dict(pairs)), iter(pairs)]
    signatures = {
        signer.sign(
            method="POST", host="h", path="/", headers=form, body=b"{}", credentials=EXAMPLE_CREDENTIALS, timestamp=0
        ).authorization
        for form in forms
    }
    assert len(signatures) == 1


def test_declared_payload_hash_is_used() -> None:
    """An X-Amz-Content-SHA256 header replaces the body hash in the canonical request, as in botocore."""
    signer = SigV4Signer(region="us-east-1")
    details = signer.sign_with_details(
        method="POST",
        host="h",
        path="/",
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
        body=b"ignored",
        credentials=EXAMPLE_CREDENTIALS,
        timestamp=0,
    )
    assert details.canonical_request.endswith("\nhost;x-amz-content-sha256;x-amz-date\nUNSIGNED-PAYLOAD")


def test_date_header_is_rejected() -> None:
    """A Date header is refused, since botocore would sign it instead of X-Amz-Date."""
    with pytest.raises(ValueError, match="Date"):
        _sign_simple(SigV4Signer(region="us-east-1"), headers={"Date": "Tue, 14 Nov 2023 22:13:20 GMT"})
