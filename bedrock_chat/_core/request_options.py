"""Per-call Bedrock request options, validated before any I/O and sent as Bedrock's headers.

InvokeModel carries guardrails, tracing, latency optimisation, the service tier and request metadata
as ``X-Amzn-Bedrock-*`` headers (bedrock-runtime's service model, protocol notes section 2). Each is
checked here against the service model's pattern or enum, so a typo fails as an
:class:`InvalidRequestError` naming the argument instead of as a 400 after a round trip. The headers
are signed like the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import attrs

from .._errors import InvalidRequestError

__all__ = ["RequestOptions", "request_option_headers"]

_GUARDRAIL_ID = re.compile(
    r"(?:[a-z0-9]+|arn:aws(?:-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+)",
)
_GUARDRAIL_VERSION = re.compile(r"(?:[1-9][0-9]{0,7}|DRAFT)")
_TRACE = ("ENABLED", "DISABLED", "ENABLED_FULL")
_LATENCY = ("standard", "optimized")
_SERVICE_TIERS = ("priority", "default", "flex", "reserved")
_MAX_METADATA_CHARS = 8500


@attrs.frozen(kw_only=True)
class RequestOptions:
    """The optional request headers of one call (None: not sent)."""

    guardrail_identifier: str | None = None
    guardrail_version: str | None = None
    trace: str | None = None
    performance_config_latency: str | None = None
    service_tier: str | None = None
    request_metadata: Mapping[str, str] | None = None


def _enum(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequestError(name, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


def request_option_headers(options: RequestOptions) -> tuple[tuple[str, str], ...]:
    """Validate the options and return their ``(header, value)`` pairs (lower-case names, sorted)."""
    headers: list[tuple[str, str]] = []
    identifier, version = options.guardrail_identifier, options.guardrail_version
    if (identifier is None) != (version is None):
        missing = "guardrail_version" if version is None else "guardrail_identifier"
        raise InvalidRequestError(missing, "guardrail_identifier and guardrail_version go together: pass both")
    if identifier is not None and version is not None:
        if not isinstance(identifier, str) or len(identifier) > 2048 or not _GUARDRAIL_ID.fullmatch(identifier):
            raise InvalidRequestError(
                "guardrail_identifier", f"must be a guardrail id ([a-z0-9]+) or guardrail ARN, got {identifier!r}"
            )
        if not isinstance(version, str) or not _GUARDRAIL_VERSION.fullmatch(version):
            raise InvalidRequestError("guardrail_version", f"must be a version number or 'DRAFT', got {version!r}")
        headers += [
            ("x-amzn-bedrock-guardrailidentifier", identifier),
            ("x-amzn-bedrock-guardrailversion", version),
        ]
    if options.trace is not None:
        headers.append(("x-amzn-bedrock-trace", _enum("trace", options.trace, _TRACE)))
    if options.performance_config_latency is not None:
        latency = _enum("performance_config_latency", options.performance_config_latency, _LATENCY)
        headers.append(("x-amzn-bedrock-performanceconfig-latency", latency))
    if options.service_tier is not None:
        headers.append(("x-amzn-bedrock-service-tier", _enum("service_tier", options.service_tier, _SERVICE_TIERS)))
    if options.request_metadata is not None:
        headers.append(("x-amzn-bedrock-request-metadata", _metadata_header(options.request_metadata)))
    return tuple(sorted(headers))


def _metadata_header(metadata: object) -> str:
    """Request metadata is a JSON object of strings; header values must be printable ASCII (no CR/LF)."""
    if not isinstance(metadata, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise InvalidRequestError("request_metadata", "must be a dict of strings to strings")
    text = json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=True)
    if len(text) > _MAX_METADATA_CHARS:
        raise InvalidRequestError("request_metadata", f"is {len(text)} characters as JSON; the limit is 8,500")
    return text
