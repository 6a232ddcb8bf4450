"""Hypothesis strategies shared by the test modules, kept in one place."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from bedrock_chat import MODELS

#: Cross-region inference-profile prefixes Bedrock uses for Claude models.
PROFILE_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "jp", "au")

#: Every id and alias the registry knows, with the base model id it stands for.
KNOWN_IDS: tuple[tuple[str, str], ...] = tuple((name, info.id) for info in MODELS for name in (info.id, *info.aliases))

# Text without newlines or surrogates: turn markers ("\n\nHuman:") cannot appear inside it by accident.
_CHARACTERS = st.characters(codec="utf-8", exclude_characters="\n\r")
texts = st.text(_CHARACTERS, min_size=1, max_size=40)

#: A region name as AWS spells them (``us-east-1``, ``us-gov-west-1``, ``eusc-de-east-1``).
region_names = st.from_regex(r"[a-z]{2,4}(-[a-z]{1,8}){1,3}-[0-9]{1,2}", fullmatch=True)

account_ids = st.from_regex(r"[0-9]{12}", fullmatch=True)


@st.composite
def model_id_forms(draw: st.DrawFn) -> tuple[str, str, str | None, str | None]:
    """``(model id as given, base id it resolves to, expected profile prefix, expected ARN region)``."""
    name, base = draw(st.sampled_from(KNOWN_IDS))
    prefix = draw(st.none() | st.sampled_from(PROFILE_PREFIXES))
    model_id = f"{prefix}.{name}" if prefix else name
    form = draw(st.sampled_from(["plain", "foundation-model", "inference-profile"]))
    if form == "plain":
        return model_id, base, prefix, None
    region = draw(region_names)
    partition = draw(st.sampled_from(["aws", "aws-us-gov", "aws-cn"]))
    account = "" if form == "foundation-model" else draw(account_ids)
    return f"arn:{partition}:bedrock:{region}:{account}:{form}/{model_id}", base, prefix, region


#: A non-empty list of text content blocks.
text_blocks = st.lists(texts.map(lambda text: {"type": "text", "text": text}), min_size=1, max_size=3)


@st.composite
def conversations(draw: st.DrawFn, *, blocks: bool = False) -> list[dict[str, Any]]:
    """A valid conversation: optional system messages, then user-first turns (runs of one role allowed).

    With ``blocks``, some contents are lists of text blocks instead of strings.
    """
    content: st.SearchStrategy[Any] = texts
    if blocks:
        content = st.one_of(texts, text_blocks)
    messages: list[dict[str, Any]] = [{"role": "system", "content": text} for text in draw(st.lists(texts, max_size=2))]
    roles = ["user", *draw(st.lists(st.sampled_from(["user", "assistant"]), max_size=6))]
    messages.extend({"role": role, "content": draw(content)} for role in roles)
    return messages


#: Error codes as AWS spells them in ``x-amzn-ErrorType`` (an upper-case first letter).
error_codes = st.from_regex(r"[A-Z][A-Za-z0-9]{0,30}", fullmatch=True)


@st.composite
def error_type_headers(draw: st.DrawFn) -> tuple[str, str]:
    """``(x-amzn-ErrorType value, the code in it)``: an optional ``namespace#`` and ``:suffix`` around a code."""
    code = draw(st.sampled_from(["ThrottlingException", "ValidationException", "ModelNotReadyException"]) | error_codes)
    namespace = draw(st.none() | st.from_regex(r"[a-z][a-z0-9.]{0,20}", fullmatch=True))
    suffix = draw(st.none() | st.sampled_from(["http://internal.amazon.com/coral/com.amazon.bedrock/", "", "x:y"]))
    value = f"{namespace}#{code}" if namespace else code
    if suffix is not None:
        value = f"{value}:{suffix}"
    return value, code


#: Any JSON document.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

#: A JSON object whose keys are mostly the ones a Claude response or stream event uses.
_RESPONSE_KEYS = st.sampled_from(
    [
        "type",
        "index",
        "delta",
        "text",
        "message",
        "content",
        "content_block",
        "completion",
        "stop_reason",
        "stop",
        "stop_sequence",
        "usage",
        "id",
        "partial_json",
        "thinking",
        "amazon-bedrock-invocationMetrics",
    ]
)
_EVENT_TYPES = st.sampled_from(
    [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "text_delta",
        "input_json_delta",
        "thinking_delta",
        "text",
        "tool_use",
    ]
)
_response_values = st.recursive(
    st.none() | st.integers(-2, 3) | st.text(max_size=5) | _EVENT_TYPES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_RESPONSE_KEYS, children, max_size=5),
    max_leaves=25,
)
response_like_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(_RESPONSE_KEYS, _response_values, max_size=6)


@st.composite
def valid_sampling(draw: st.DrawFn, *, max_tokens: int = 4096) -> dict[str, Any]:
    """Keyword arguments of create's sampling parameters, each valid (or left out)."""
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        kwargs["max_tokens_to_sample"] = draw(st.integers(1, max_tokens))
    if draw(st.booleans()):
        kwargs["stop_sequences"] = draw(st.lists(texts, max_size=3))
    for name in ("temperature", "top_p"):
        if draw(st.booleans()):
            kwargs[name] = draw(st.floats(0, 1) | st.sampled_from([0, 1]))
    if draw(st.booleans()):
        kwargs["top_k"] = draw(st.integers(0, 500))
    return kwargs
