"""AWS Signature Version 4, byte-identical to botocore's ``SigV4Auth``; pure (no I/O, no clock).

Theory of operation
-------------------
A SigV4 signature is an HMAC chain over four strings:

1. the *canonical request*: method, canonical URI, canonical query, the signed headers as sorted
   ``name:value`` lines, their ``;``-joined names, and the hex SHA-256 of the body;
2. the *string to sign*: algorithm, ``X-Amz-Date``, credential scope
   (``YYYYMMDD/region/service/aws4_request``) and the hex SHA-256 of (1);
3. the *signing key*: ``HMAC("AWS4" + secret, date) -> region -> service -> "aws4_request"``;
4. the signature: hex ``HMAC(key, (2))``, sent in ``Authorization``.

Every rule below mirrors botocore (``botocore/auth.py``, ``botocore/utils.py``), because AWS only
accepts what it recomputes itself and botocore is the reference we are tested against:

* The canonical URI encodes the already-encoded wire path once more (``%3A`` becomes ``%253A``)
  after dropping ``.``, ``..`` and empty segments (S3 differs; Bedrock does not).
* Every header present at signing time is signed except botocore's blacklist (hop-by-hop and
  tracing headers that proxies rewrite). ``host`` is added when absent. ``Authorization`` and
  ``X-Amz-Date`` are replaced, as is ``X-Amz-Security-Token`` when the credentials carry a token.
* Values are trimmed with whitespace runs collapsed; repeated headers are joined with ``,``.
* The payload hash is the body's, unless an ``X-Amz-Content-SHA256`` header declares one.
* A ``Date`` header is refused: botocore would sign it instead of ``X-Amz-Date``, a mode Bedrock
  clients never use.

The hot path is one body hash, one request hash and one HMAC: the signing key is cached per
(secret, date) for the signer's (region, service), and URI/host canonicalisation is memoised.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import attrs

from bedrock_chat._types import AwsCredentials

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "ALGORITHM",
    "SigV4Signer",
    "SignedHeaders",
    "SigningDetails",
    "UNSIGNED_HEADERS",
    "canonical_host",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "derive_signing_key",
    "percent_encode_path_segment",
    "string_to_sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"

#: ``botocore.auth.SIGNED_HEADERS_BLACKLIST``: headers a proxy or the HTTP stack may add or rewrite
#: after signing, so signing them would make valid requests fail. A test keeps this in sync.
UNSIGNED_HEADERS = frozenset(
    {
        "baggage",
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)

# Headers the signer itself owns: the caller's copies are dropped, as botocore deletes them before
# signing. ``date`` is here only so the common path pays no extra comparison; it is rejected below.
_SKIP = UNSIGNED_HEADERS | {"authorization", "x-amz-date", "date"}
_SKIP_WITH_TOKEN = _SKIP | {"x-amz-security-token"}

# A path whose segments are unreserved characters or %-escapes, with no dot or empty segments, is
# unchanged by botocore's normalisation and only needs its '%' re-encoded.
_SIMPLE_PATH = re.compile(r"/|(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._~%-]+)+/?")
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*")
_KEY_CACHE_SIZE = 4
#: Canonical-request templates kept per signer: one per distinct (path, headers, host, token) it signs.
_TEMPLATE_CACHE_SIZE = 64
#: Where the date goes in a template: no canonical header value can hold a line break (whitespace
#: runs are collapsed), and a path or query is percent-encoded, so only a header name could.
_DATE_SLOT = "\n<x-amz-date>\n"
#: (text before the date, text between the date and the payload hash, signed header names, declared hash).
_Template = tuple[str, str, str, str | None]
_sha256 = hashlib.sha256
_IPAD = bytes(byte ^ 0x36 for byte in range(256))
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


def percent_encode_path_segment(value: str) -> str:
    """Encode a URI label as botocore does: all but A-Za-z0-9-._~ is %-encoded (UTF-8), incl ':' and '/'.

    This is ``botocore.utils.percent_encode``, which ``_render_uri_template`` applies to ``{modelId}``.
    """
    if _UNRESERVED.fullmatch(value):
        return value
    return _percent_encode_slow(value)


@lru_cache(maxsize=512)
def _percent_encode_slow(value: str) -> str:
    # Memoised: a client sends the same few model ids over and over.
    return quote(value.encode("utf-8"), safe="-._~")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal plus dropping empty segments, as ``botocore.utils`` does."""
    if not path:
        return "/"  # botocore's normalize_url_path maps an empty path to '/'
    output: list[str] = []
    for segment in path.split("/"):
        if segment and segment != ".":
            if segment == "..":
                if output:
                    output.pop()
            else:
                output.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and output else ""
    return first + "/".join(output) + last


@lru_cache(maxsize=256)
def canonical_uri(path: str) -> str:
    """The SigV4 canonical URI of a raw wire path: normalised, then percent-encoded once more.

    Mirrors ``SigV4Auth._normalize_url_path`` (``quote(normalize_url_path(path), safe='/~')``).
    """
    if _SIMPLE_PATH.fullmatch(path):
        return path.replace("%", "%25")
    return quote(_remove_dot_segments(path), safe="/~")


def canonical_query(query: str) -> str:
    """The canonical query string: ``key=value`` pairs sorted by (key, value).

    An already-encoded query (what botocore serialises) is used as-is, exactly like botocore's
    URL path; raw characters outside the unreserved set are percent-encoded (UTF-8), which is how
    the AWS test suite's raw requests canonicalise.
    """
    if not query:
        return ""
    pairs = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((quote(key, safe="-_.~%"), quote(value, safe="-_.~%")))
    pairs.sort()
    return "&".join(f"{key}={value}" for key, value in pairs)


@lru_cache(maxsize=64)
def canonical_host(authority: str, scheme: str = "https") -> str:
    """The ``host`` header botocore derives from a URL: lowercase, no userinfo, no default port."""
    parts = urlsplit(f"{scheme}://{authority}")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal: urlsplit removed the brackets
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{port}"
    return host


def derive_signing_key(secret_key: str, datestamp: str, region: str, service: str) -> bytes:
    """The SigV4 signing key; costs four HMACs, which is why signers cache it."""
    key = hmac.digest(f"AWS4{secret_key}".encode(), datestamp.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def canonical_request(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload_hash: str,
) -> tuple[str, str]:
    """Build the canonical request from exactly the headers to sign; return it and the signed-header list.

    ``headers`` maps lowercase names to canonical values (trimmed, runs of whitespace collapsed,
    repeats joined with ``,``). A verifier picks them by the request's ``SignedHeaders``.
    """
    return _canonical_request(method, path, query, headers, payload_hash)


def _canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """``canonical_request`` without keyword-argument overhead, for the signer's hot path."""
    items = sorted(headers.items())  # names are unique, so this sorts by name only
    lines = "\n".join(map(":".join, items))
    signed = ";".join([name for name, _ in items])
    if len(signed.split()) != 1:
        # botocore strips names in the signed-header list only, not in the canonical lines.
        signed = ";".join(sorted(name.strip() for name, _ in items))
    cquery = canonical_query(query) if query else ""
    text = f"{method.upper()}\n{canonical_uri(path)}\n{cquery}\n{lines}\n\n{signed}\n{payload_hash}"
    return text, signed


def _hmac_pads(key: bytes) -> tuple[_Hash, _Hash]:
    """SHA-256 states after absorbing HMAC's inner and outer padded keys (RFC 2104).

    Copying these per request costs far less than ``hmac.digest``, which re-derives the pads (and,
    with OpenSSL 3, looks the digest up by name) on every call.
    """
    block = key.ljust(64, b"\0")  # SigV4 keys are 32-byte digests, shorter than SHA-256's block
    return (
        hashlib.sha256(block.translate(_IPAD)),
        hashlib.sha256(block.translate(_OPAD)),
    )


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def string_to_sign(*, amz_date: str, scope: str, canonical_request: str) -> str:
    """The SigV4 string to sign for a canonical request and credential scope."""
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _redact_signature(authorization: str) -> str:
    head, sep, _ = authorization.rpartition("Signature=")
    return f"{head}{sep}<redacted>" if sep else "<redacted>"


@attrs.frozen(repr=False)
class SignedHeaders:
    """The headers the signer adds to a request. The token and signature stay out of ``repr``."""

    authorization: str
    amz_date: str
    security_token: str | None

    def items(self) -> list[tuple[str, str]]:
        """Header (name, value) pairs to add to the request, replacing any existing ones."""
        pairs = [("authorization", self.authorization), ("x-amz-date", self.amz_date)]
        if self.security_token is not None:
            pairs.append(("x-amz-security-token", self.security_token))
        return pairs

    def __repr__(self) -> str:
        token = "<redacted>" if self.security_token is not None else "None"
        return (
            f"SignedHeaders(authorization={_redact_signature(self.authorization)!r}, "
            f"amz_date={self.amz_date!r}, security_token={token})"
        )


@attrs.frozen(repr=False)
class SigningDetails:
    """The intermediate strings of one signing, for tests, vectors and debugging."""

    canonical_request: str
    string_to_sign: str
    headers: SignedHeaders

    def __repr__(self) -> str:
        # The canonical request can hold the session token; never print it.
        return f"SigningDetails(headers={self.headers!r})"


class SigV4Signer:
    """Signs requests for one (region, service).

    Caches the derived signing key per (secret, date, region, service), keeping only the few most
    recent, and the canonical request's constant text per (method, host, path, query, headers given
    as a tuple, session token), a few dozen at most (a client signs one per surface and mode). Safe to
    share between threads and tasks: its caches are replaced atomically, never mutated.
    """

    __slots__ = ("_date", "_keys", "_region", "_scope_tail", "_service", "_templates", "_token")

    def __init__(self, *, region: str, service: str = "bedrock") -> None:
        self._region = region
        self._service = service
        self._scope_tail = f"/{region}/{service}/aws4_request"
        # Most recent first: ((secret, datestamp, key pads), ...), at most _KEY_CACHE_SIZE entries.
        self._keys: tuple[tuple[str, str, tuple[_Hash, _Hash]], ...] = ()
        self._date: tuple[int | None, str] = (None, "")
        self._token: tuple[str | None, str] = (None, "")
        self._templates: dict[tuple[object, ...], _Template] = {}

    @property
    def region(self) -> str:
        """The region in the credential scope (read-only: the cached keys depend on it)."""
        return self._region

    @property
    def service(self) -> str:
        """The signing name in the credential scope (``bedrock`` for bedrock-runtime)."""
        return self._service

    def __repr__(self) -> str:
        return f"SigV4Signer(region={self.region!r}, service={self.service!r})"

    def sign(
        self,
        *,
        method: str,
        host: str,
        path: str,
        query: str = "",
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        credentials: AwsCredentials,
        timestamp: float,
        scheme: str = "https",
    ) -> SignedHeaders:
        """Sign a request; return the headers to add to it.

        Args:
            method: HTTP method.
            host: URL authority (``host[:port]``); used, like botocore, only when ``headers`` has no ``host``.
            path: raw wire path, already percent-encoded.
            query: raw query string without ``?``.
            headers: headers present at signing time, names in any case. Pass pairs (e.g. httpx's
                ``Headers.multi_items()``) to keep repeated headers separate.
            body: the exact request body.
            credentials: the AWS credentials.
            timestamp: POSIX seconds; truncated to the second, as botocore's ``strftime`` does.
            scheme: URL scheme, which decides the default port dropped from ``host``.

        Raises:
            ValueError: a ``Date`` header is present (botocore would then sign ``Date`` rather than
                ``X-Amz-Date``; we always use ``X-Amz-Date``).
        """
        try:
            return self._sign(method, host, path, query, headers, body, credentials, timestamp, scheme)[2]
        except Exception as exc:
            # _sign's frame holds the secret, the token and the canonical request: raise without it.
            raise exc.with_traceback(None)  # noqa: B904 (the same exception, re-raised)

    def sign_with_details(
        self,
        *,
        method: str,
        host: str,
        path: str,
        query: str = "",
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        credentials: AwsCredentials,
        timestamp: float,
        scheme: str = "https",
    ) -> SigningDetails:
        """Like :meth:`sign`, also returning the canonical request and string to sign."""
        try:
            creq, sts, signed_headers = self._sign(
                method, host, path, query, headers, body, credentials, timestamp, scheme
            )
        except Exception as exc:
            raise exc.with_traceback(None)  # noqa: B904 (the same exception, re-raised)
        return SigningDetails(canonical_request=creq, string_to_sign=sts, headers=signed_headers)

    def _sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        credentials: AwsCredentials,
        timestamp: float,
        scheme: str,
    ) -> tuple[str, str, SignedHeaders]:
        """The canonical request, string to sign and signed headers; positional, as this is the hot path."""
        token = credentials.session_token
        second = math.floor(timestamp)
        cached_second, amz_date = self._date  # hit path inlined: this runs per request
        if second != cached_second:
            amz_date = self._amz_date(second)
        # A tuple of headers (the client's: one per surface and mode) may have its template already.
        template = None
        if type(headers) is tuple:
            # try, not contextlib.suppress: a context manager per request costs 4k instructions.
            try:  # noqa: SIM105
                template = self._templates.get((method, host, path, query, headers, token, scheme))
            except TypeError:  # unhashable pairs (lists): signed the long way
                pass
        if template is None:
            creq, signed = self._canonical(method, host, path, query, headers, token, scheme, amz_date, body)
        else:
            head, tail, signed, declared_hash = template
            payload_hash = _sha256(body).hexdigest() if declared_hash is None else declared_hash
            creq = f"{head}{amz_date}{tail}{payload_hash}"
        datestamp = amz_date[:8]
        scope = datestamp + self._scope_tail
        sts = f"{ALGORITHM}\n{amz_date}\n{scope}\n{_sha256(creq.encode()).hexdigest()}"
        secret_key = credentials.secret_key
        keys = self._keys  # the newest entry's check is inlined; _signing_pads searches the rest
        if keys and keys[0][1] == datestamp and keys[0][0] == secret_key:
            inner_pad, outer_pad = keys[0][2]
        else:
            inner_pad, outer_pad = self._signing_pads(secret_key, datestamp)
        inner = inner_pad.copy()
        inner.update(sts.encode())
        outer = outer_pad.copy()
        outer.update(inner.digest())
        signature = outer.hexdigest()  # == hmac.digest(signing_key, sts, "sha256").hex()
        authorization = (
            f"{ALGORITHM} Credential={credentials.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        return creq, sts, SignedHeaders(authorization, amz_date, token or None)

    def _canonical(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        token: str | None,
        scheme: str,
        amz_date: str,
        body: bytes,
    ) -> tuple[str, str]:
        """The canonical request and signed header names, the long way; keeps a template for a tuple of headers.

        Everything in the canonical request but the date and the payload hash depends only on the
        arguments, so the text around those two is kept (keyed by all the arguments) and the next
        request with the same ones only fills them in.
        """
        # The type checks are ordered for speed: a plain dict or list is the common case.
        pairs: Iterable[tuple[str, str]]
        if type(headers) is tuple or type(headers) is list:
            pairs = headers  # the transport's (name, value) pairs: no Mapping ABC check on the usual path
        else:
            pairs = headers.items() if isinstance(headers, Mapping) else headers

        skip = _SKIP_WITH_TOKEN if token else _SKIP
        canon: dict[str, str] = {}
        declared_hash: str | None = None
        for name, value in pairs:
            lname = name.lower()
            if lname in skip:
                if lname == "date":
                    raise ValueError("a Date header cannot be signed here; the signer sets X-Amz-Date")
                continue
            trimmed = " ".join(value.split())
            previous = canon.get(lname)
            if previous is None:
                canon[lname] = trimmed
                if lname == "x-amz-content-sha256":
                    declared_hash = value  # botocore uses the first raw value as the payload hash
            else:
                canon[lname] = f"{previous},{trimmed}"
        if "host" not in canon:
            canon["host"] = canonical_host(host, scheme)
        if token:
            canon["x-amz-security-token"] = self._canonical_token(token)
        payload_hash = _sha256(body).hexdigest() if declared_hash is None else declared_hash
        canon["x-amz-date"] = _DATE_SLOT
        text, signed = _canonical_request(method, path, query, canon, "")
        head, slot, tail = text.partition(_DATE_SLOT)
        if not slot or _DATE_SLOT in tail:  # a header name holding the slot's text: no template
            canon["x-amz-date"] = amz_date
            return _canonical_request(method, path, query, canon, payload_hash)
        if type(headers) is tuple and _hashable(headers):
            templates = self._templates
            if len(templates) >= _TEMPLATE_CACHE_SIZE:
                templates = {}
            # Replaced, never mutated: see the class docstring.
            key = (method, host, path, query, headers, token, scheme)
            self._templates = {**templates, key: (head, tail, signed, declared_hash)}
        return f"{head}{amz_date}{tail}{payload_hash}", signed

    def _canonical_token(self, token: str) -> str:
        """The token's canonical header value, memoised: tokens are long and reused for hours."""
        cached_token, canonical = self._token
        if token is cached_token:
            return canonical
        canonical = " ".join(token.split())
        self._token = (token, canonical)
        return canonical

    def _amz_date(self, second: int) -> str:
        """``X-Amz-Date`` for a POSIX second, memoised as the last one (requests come in bursts)."""
        amz_date = datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self._date = (second, amz_date)
        return amz_date

    def _signing_pads(self, secret_key: str, datestamp: str) -> tuple[_Hash, _Hash]:
        """The signing key's HMAC pads from a small most-recent-first cache.

        A credential rotation or a new UTC day adds an entry and pushes out the oldest.
        """
        for cached_secret, cached_date, pads in self._keys:
            if cached_date == datestamp and cached_secret == secret_key:
                return pads
        pads = _hmac_pads(derive_signing_key(secret_key, datestamp, self._region, self._service))
        self._keys = ((secret_key, datestamp, pads), *self._keys[: _KEY_CACHE_SIZE - 1])
        return pads
