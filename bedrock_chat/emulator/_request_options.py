"""Bedrock's request-option headers on InvokeModel and InvokeModelWithResponseStream: checks, echoes, effects.

Theory of operation
-------------------
:data:`HEADER_RULES` is the table of the modeled request headers (botocore's service model; BEDROCK_PROTOCOL.md
§2): header, the member it carries, and its constraint (an enum, a pattern matched in full, a maximum
length, or a JSON object). :func:`parse_request_options` checks every header present against its rule
and reports all failures together, AWS-style: one 400 ValidationException
``"N validation error(s) detected: Value 'x' at 'trace' (header X-Amzn-Bedrock-Trace) failed to satisfy
constraint: Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_FULL]; ..."``. Then the
guardrail pair: a non-empty identifier needs a non-empty version and vice versa (400).

Effects of valid options:

- :func:`response_headers`: ``X-Amzn-Bedrock-PerformanceConfig-Latency`` and ``X-Amzn-Bedrock-Service-Tier``
  are echoed when sent (they are modeled response headers of both operations).
- :func:`body_fields`: with a guardrail, the response body (both APIs; on a stream, the last chunk:
  ``message_stop`` or the final text-completion chunk) gains ``"amazon-bedrock-guardrailAction": "NONE"``
  (the fake model never trips a guardrail); with ``X-Amzn-Bedrock-Trace`` ``ENABLED`` or
  ``ENABLED_FULL`` too, ``"amazon-bedrock-trace": {"guardrail": {"input": {}, "outputs": []}}``, a stub
  with no assessments.

UNVERIFIED: the header name in the messages (AWS names only the member), the guardrail-pair and
request-metadata messages, that patterns are matched in full, that request metadata must be an
object of string values, where a stream carries the guardrail fields, and the trace stub's shape.
Every request header is recorded in ``emu.requests`` as received.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import attrs

from ._wire_errors import ServiceError

__all__ = ["HEADER_RULES", "HeaderRule", "RequestOptions", "body_fields", "parse_request_options", "response_headers"]


@attrs.frozen(kw_only=True)
class HeaderRule:
    """One modeled request header and its constraint."""

    header: str
    member: str
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    max_length: int | None = None
    json_object: bool = False

    def problem(self, value: str) -> str | None:
        """Why ``value`` breaks the rule (AWS's constraint wording), or None."""
        where = f"at '{self.member}' (header {self.header})"
        shown = f"Value {where}" if self.json_object else f"Value '{value}' {where}"  # metadata is sensitive
        if self.enum and value not in self.enum:
            return f"{shown} failed to satisfy constraint: Member must satisfy enum value set: [{', '.join(self.enum)}]"
        if self.max_length is not None and len(value) > self.max_length:
            return (
                f"{shown} failed to satisfy constraint: Member must have length less than or equal to {self.max_length}"
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            return (
                f"{shown} failed to satisfy constraint: Member must satisfy regular expression pattern: {self.pattern}"
            )
        if self.json_object and not _string_object(value):
            return f"{shown} failed to satisfy constraint: Member must be a JSON object of string values"
        return None


def _string_object(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


_GUARDRAIL_ID = "(|([a-z0-9]+)|(arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:guardrail/[a-z0-9]+))"
_GUARDRAIL_VERSION = "(|([1-9][0-9]{0,7})|(DRAFT))"
_IDENTIFIER = "X-Amzn-Bedrock-GuardrailIdentifier"
_VERSION = "X-Amzn-Bedrock-GuardrailVersion"
_TRACE = "X-Amzn-Bedrock-Trace"
_LATENCY = "X-Amzn-Bedrock-PerformanceConfig-Latency"
_TIER = "X-Amzn-Bedrock-Service-Tier"

#: The request-option headers of InvokeModel and InvokeModelWithResponseStream (botocore's service model).
HEADER_RULES: tuple[HeaderRule, ...] = (
    HeaderRule(header=_IDENTIFIER, member="guardrailIdentifier", pattern=_GUARDRAIL_ID, max_length=2048),
    HeaderRule(header=_VERSION, member="guardrailVersion", pattern=_GUARDRAIL_VERSION),
    HeaderRule(header=_TRACE, member="trace", enum=("ENABLED", "DISABLED", "ENABLED_FULL")),
    HeaderRule(header=_LATENCY, member="performanceConfigLatency", enum=("standard", "optimized")),
    HeaderRule(header=_TIER, member="serviceTier", enum=("priority", "default", "flex", "reserved")),
    HeaderRule(header="X-Amzn-Bedrock-Request-Metadata", member="requestMetadata", max_length=8500, json_object=True),
)
_BY_NAME: Mapping[bytes, HeaderRule] = {rule.header.lower().encode(): rule for rule in HEADER_RULES}
#: Headers echoed in the response when sent.
_ECHOED = (_LATENCY, _TIER)
_TRACED = frozenset({"ENABLED", "ENABLED_FULL"})


@attrs.frozen
class RequestOptions:
    """The valid request-option headers of one request, by their canonical header name."""

    values: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def guardrail(self) -> tuple[str, str] | None:
        """``(identifier, version)`` when a guardrail applies."""
        identifier, version = self.values.get(_IDENTIFIER, ""), self.values.get(_VERSION, "")
        return (identifier, version) if identifier and version else None


def _validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


def parse_request_options(headers: Sequence[tuple[bytes, bytes]]) -> RequestOptions | ServiceError:
    """The request's options (h11's lower-case header names; the last of repeated headers), or the 400 to answer."""
    values: dict[str, str] = {}
    for name, raw in headers:
        rule = _BY_NAME.get(name)
        if rule is not None:
            values[rule.header] = raw.decode("latin-1")
    problems = [
        problem for rule in HEADER_RULES if rule.header in values and (problem := rule.problem(values[rule.header]))
    ]
    if problems:
        count = len(problems)
        return _validation(f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(problems))
    identifier, version = values.get(_IDENTIFIER, ""), values.get(_VERSION, "")
    if bool(identifier) != bool(version):
        given, missing = (_IDENTIFIER, _VERSION) if identifier else (_VERSION, _IDENTIFIER)
        return _validation(
            f"Guardrail identifier and guardrail version must be specified together: {given} was provided "
            f"without {missing}."
        )
    return RequestOptions(values)


def response_headers(options: RequestOptions) -> tuple[tuple[bytes, bytes], ...]:
    """The modeled response headers that echo the request's options."""
    return tuple(
        (header.lower().encode(), options.values[header].encode()) for header in _ECHOED if header in options.values
    )


def body_fields(options: RequestOptions) -> dict[str, object]:
    """What a guardrail (and its trace) adds to the response body: nothing without a guardrail."""
    if options.guardrail is None:
        return {}
    fields: dict[str, object] = {"amazon-bedrock-guardrailAction": "NONE"}
    if options.values.get(_TRACE) in _TRACED:
        fields["amazon-bedrock-trace"] = {"guardrail": {"input": {}, "outputs": []}}
    return fields
