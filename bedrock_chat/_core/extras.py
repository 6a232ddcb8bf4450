"""The escape hatches: ``extra_body`` and ``extra_headers``, for request fields this client does not know yet.

New Claude request fields appear monthly; a client that refuses what it does not know blocks its users
until it is updated. Like the anthropic SDK's: ``extra_body`` is merged into the JSON body last, key by
key (shallow: a key replaces the whole field, including one set from a named argument: extra wins), and
``extra_headers`` are sent with the request, signed like the others, replacing a header of ours of the same
name (``anthropic-beta``, ``anthropic-version``, the ``X-Amzn-Bedrock-*`` request options).

Refused, with an :class:`InvalidRequestError` naming the key or header: ``extra_body["stream"]`` (the
``stream=`` argument decides how the answer is read, so the two must agree), and every header the signer,
the HTTP layer or the answer's parsing owns (:data:`RESERVED_HEADERS`, and any ``x-amz-*``). Values of
headers are never shown in a message: a header may carry a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._errors import InvalidRequestError

__all__ = ["RESERVED_HEADERS", "check_extra_body", "check_extra_headers", "merge_headers"]

#: Headers the client sets itself: the signer's (``authorization``, ``host``, ``x-amz-*``), the HTTP layer's
#: (length, framing, hop-by-hop, ``user-agent``) and those the answer is read by (``accept``, ``content-type``).
RESERVED_HEADERS = frozenset(
    {
        "accept",
        "authorization",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "date",
        "expect",
        "host",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-bedrock-accept",
    }
)
# RFC 9110 token characters: a header name.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A value: visible ASCII and spaces/tabs inside (no CR/LF: they would split the header).
_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?|")


def check_extra_body(extra_body: object) -> dict[str, Any]:
    """A dict of string keys to JSON values, merged into the body last (its values are checked when encoded)."""
    if not isinstance(extra_body, Mapping):
        raise InvalidRequestError("extra_body", f"must be a dict of body fields, got {type(extra_body).__name__}")
    for key in extra_body:
        if not isinstance(key, str) or not key:
            raise InvalidRequestError("extra_body", f"keys must be non-empty strings, got {key!r}")
    if "stream" in extra_body:
        raise InvalidRequestError('extra_body["stream"]', "use the stream= argument: it decides how the answer is read")
    return dict(extra_body)


def check_extra_headers(extra_headers: object) -> tuple[tuple[str, str], ...]:
    """Validate ``extra_headers`` into ``(lower-case name, value)`` pairs; the signer's own are refused by name."""
    if not isinstance(extra_headers, Mapping):
        raise InvalidRequestError(
            "extra_headers", f"must be a dict of header names to values, got {type(extra_headers).__name__}"
        )
    pairs: dict[str, str] = {}
    for name, value in extra_headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidRequestError("extra_headers", f"{name!r} is not a header name")
        lower = name.lower()
        where = f"extra_headers[{name!r}]"
        if lower in RESERVED_HEADERS or lower.startswith("x-amz-"):
            raise InvalidRequestError(
                where, f"{name} is set by the client (signing, HTTP framing or reading the answer)"
            )
        if lower in pairs:
            raise InvalidRequestError(where, f"{name} is given twice (header names are case-insensitive)")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            # The value is not shown: a header may carry a secret.
            raise InvalidRequestError(where, "must be a string of printable ASCII without line breaks (not shown)")
        pairs[lower] = value
    return tuple(sorted(pairs.items()))


def merge_headers(
    headers: tuple[tuple[str, str], ...], extra: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, str], ...]:
    """``headers`` with ``extra`` added, an extra header replacing ours of the same name (sorted, as signed)."""
    names = {name for name, _ in extra}
    return tuple(sorted((*(pair for pair in headers if pair[0] not in names), *extra)))
