"""The 2025-2026 request features of a Messages body: effort, structured outputs, strict tools, thinking,
citations and prompt-cache breakpoints, checked against the model's row of ``_features``.

Rules (each failure is a :class:`~._body.BodyError`, a 400; wording UNVERIFIED, in Anthropic's style):

- ``output_config``: only ``effort`` and ``format``. ``effort`` is one of ``_features.EFFORT_LEVELS`` and
  must be one the model takes; ``format`` is ``{"type": "json_schema", "schema": {...}}`` on a model with
  structured outputs. The reply is then JSON generated from the schema (``_tools.schema_value``).
- ``tools[].strict``: a boolean; ``true`` needs structured outputs (strict inputs come from the same
  generator, so they conform to the tool's schema).
- ``thinking``: ``type`` must be one the model takes (Opus 4.7 and later: ``adaptive`` only, so
  ``enabled`` is a 400); ``enabled`` needs an integer ``budget_tokens`` of at least 1,024 and below
  ``max_tokens`` (Anthropic's rule). With thinking on (``enabled``, ``adaptive``, ``between_tools``) the
  reply starts with a ``thinking`` block whose ``signature`` is an HMAC of its text
  (:func:`thinking_block`); an assistant turn sent back with a ``thinking`` block must carry that
  signature unchanged, and when the last user turn answers a tool call, the assistant turn before it must
  start with its ``thinking`` (or ``redacted_thinking``) block, as Anthropic requires during tool use.
- ``document`` blocks: ``source`` is ``text`` (``data`` a string), ``base64`` (a PDF) or ``content`` (a
  list of text blocks); ``citations`` is ``{"enabled": bool}``. Documents with citations enabled are
  cited in the reply (:func:`citations`): one citation per document, in request order
  (``document_index`` counts every document), ``char_location`` of the text's first sentence,
  ``page_location`` page 1 of a PDF, ``content_block_location`` of a content document's first block.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._body import BodyError
from ._features import EFFORT_LEVELS, ModelFeatures

__all__ = [
    "MIN_THINKING_BUDGET",
    "RequestFeatures",
    "check_request_features",
    "citations",
    "thinking_block",
    "thinking_signature",
]

MIN_THINKING_BUDGET = 1024
_THINKING_ON = frozenset({"enabled", "adaptive", "between_tools"})
_SIGNING_KEY = b"bedrock-chat emulator thinking signatures"
_CITED_CHARS = 80


@attrs.frozen
class RequestFeatures:
    """What the fake model must do differently for one request."""

    output_schema: Mapping[str, Any] | None = None
    thinking: bool = False
    documents: tuple[Mapping[str, Any], ...] = ()  # the document blocks with citations enabled
    document_indexes: tuple[int, ...] = ()  # their ``document_index`` (counting every document)


NONE = RequestFeatures()


def thinking_signature(text: str) -> str:
    """The signature of a thinking block's text: base64 of an HMAC only the emulator can make."""
    return base64.b64encode(hmac.new(_SIGNING_KEY, text.encode(), hashlib.sha256).digest()).decode()


def thinking_block(last_user_text: str) -> dict[str, str]:
    """The reply's ``thinking`` block, made from the last user text (deterministic)."""
    words = last_user_text.split()[:8]
    text = "Let me think about " + (" ".join(words) if words else "this") + "."
    return {"type": "thinking", "thinking": text, "signature": thinking_signature(text)}


def _check_output_config(value: Mapping[str, Any], features: ModelFeatures) -> Mapping[str, Any] | None:
    for key in value:
        if key not in ("effort", "format"):
            raise BodyError(f"output_config.{key}: Extra inputs are not permitted")
    if "effort" in value:
        effort = value["effort"]
        if effort not in EFFORT_LEVELS:
            levels = ", ".join(f"'{level}'" for level in EFFORT_LEVELS)
            raise BodyError(f"output_config.effort: Input should be one of {levels}")
        if effort not in features.effort:
            raise BodyError(f"output_config.effort: '{effort}' is not supported for this model")
    if "format" not in value:
        return None
    fmt = value["format"]
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise BodyError("output_config.format.type: Input should be 'json_schema'")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise BodyError("output_config.format.schema: Input should be a valid dictionary")
    if not features.structured_outputs:
        raise BodyError("output_config.format: structured outputs are not supported for this model")
    return schema


def _check_thinking(value: Mapping[str, Any], features: ModelFeatures, max_tokens: int) -> bool:
    kind = value.get("type")
    if not isinstance(kind, str):
        raise BodyError("thinking.type: Field required")
    if kind not in features.thinking:
        if not features.thinking:
            raise BodyError("thinking: extended thinking is not supported for this model")
        accepted = " or ".join(f"'{k}'" for k in sorted(features.thinking))
        raise BodyError(f"thinking.type: '{kind}' is not supported for this model; use {accepted}")
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise BodyError("thinking.enabled.budget_tokens: Field required")
        if budget < MIN_THINKING_BUDGET:
            raise BodyError(
                f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}"
            )
        if budget >= max_tokens:
            raise BodyError("`max_tokens` must be greater than `thinking.budget_tokens`")
    return kind in _THINKING_ON


def _check_document(path: str, block: Mapping[str, Any]) -> bool:
    """A document block's shape; True when it asks for citations."""
    source = block.get("source")
    if not isinstance(source, dict):
        raise BodyError(f"{path}.document.source: Field required")
    kind = source.get("type")
    if kind == "text":
        if not isinstance(source.get("data"), str):
            raise BodyError(f"{path}.document.source.text.data: Input should be a valid string")
    elif kind == "base64":
        if not isinstance(source.get("data"), str):
            raise BodyError(f"{path}.document.source.base64.data: Input should be a valid string")
    elif kind == "content":
        content = source.get("content")
        if not isinstance(content, (str, list)):
            raise BodyError(f"{path}.document.source.content.content: Input should be a valid list")
    else:
        raise BodyError(f"{path}.document.source.type: Input should be 'text', 'base64' or 'content'")
    cited = block.get("citations")
    if cited is None:
        return False
    if not isinstance(cited, dict) or not isinstance(cited.get("enabled"), bool):
        raise BodyError(f"{path}.document.citations.enabled: Input should be a valid boolean")
    return bool(cited["enabled"])


def _check_thinking_turns(messages: Sequence[Mapping[str, Any]], thinking: bool) -> None:
    for i, message in enumerate(messages):
        content = message["content"]
        if message["role"] != "assistant" or not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if block.get("type") == "thinking":
                signature, text = block.get("signature"), block.get("thinking")
                valid = isinstance(signature, str) and isinstance(text, str)
                if not valid or not hmac.compare_digest(str(signature), thinking_signature(str(text))):
                    raise BodyError(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    last = messages[-1]
    answers_tool = isinstance(last["content"], list) and any(b.get("type") == "tool_result" for b in last["content"])
    if not (thinking and answers_tool and len(messages) >= 2):
        return
    previous = messages[-2]["content"]
    first = previous[0].get("type") if isinstance(previous, list) and previous else "text"
    if first not in ("thinking", "redacted_thinking"):
        raise BodyError(
            f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block "
            "(preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
        )


def check_request_features(body: Mapping[str, Any], features: ModelFeatures) -> RequestFeatures:
    """Check the body's feature fields for ``features``' model (the body has passed ``_validation``)."""
    schema = None
    output_config = body.get("output_config")
    if output_config is not None:
        schema = _check_output_config(output_config, features)
    for i, tool in enumerate(body.get("tools") or ()):
        strict = tool.get("strict")
        if strict is None:
            continue
        if not isinstance(strict, bool):
            raise BodyError(f"tools.{i}.custom.strict: Input should be a valid boolean")
        if strict and not features.structured_outputs:
            raise BodyError(f"tools.{i}.custom.strict: strict tool use is not supported for this model")
    thinking = False
    if "thinking" in body:
        thinking = _check_thinking(body["thinking"], features, body["max_tokens"])
    documents: list[Mapping[str, Any]] = []
    indexes: list[int] = []
    count = 0
    messages = body["messages"]
    for i, message in enumerate(messages):
        content = message["content"]
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            if block.get("type") == "document":
                if _check_document(f"messages.{i}.content.{j}", block):
                    documents.append(block)
                    indexes.append(count)
                count += 1
    _check_thinking_turns(messages, thinking)
    if schema is None and not thinking and not documents:
        return NONE
    return RequestFeatures(schema, thinking, tuple(documents), tuple(indexes))


def _first_sentence(text: str) -> str:
    end = text.find(".")
    return text[: end + 1] if 0 <= end < _CITED_CHARS else text[:_CITED_CHARS]


def citations(request: RequestFeatures) -> list[dict[str, object]]:
    """One citation per document with citations enabled (rules in the module docstring)."""
    found: list[dict[str, object]] = []
    for index, document in zip(request.document_indexes, request.documents, strict=True):
        source = document["source"]
        title = document.get("title")
        base: dict[str, object] = {"document_index": index, "document_title": title if isinstance(title, str) else None}
        if source["type"] == "text":
            cited = _first_sentence(source["data"])
            found.append(
                {
                    "type": "char_location",
                    "cited_text": cited,
                    **base,
                    "start_char_index": 0,
                    "end_char_index": len(cited),
                }
            )
        elif source["type"] == "base64":
            found.append(
                {"type": "page_location", "cited_text": "", **base, "start_page_number": 1, "end_page_number": 2}
            )
        else:
            content = source["content"]
            first = (
                content
                if isinstance(content, str)
                else next((b.get("text", "") for b in content if isinstance(b, dict)), "")
            )
            found.append(
                {
                    "type": "content_block_location",
                    "cited_text": first if isinstance(first, str) else "",
                    **base,
                    "start_block_index": 0,
                    "end_block_index": 1,
                }
            )
    return found
