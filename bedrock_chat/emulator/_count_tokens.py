"""CountTokens, ``POST /model/{modelId}/count-tokens``: the request's two forms, their token count, the answer.

Shapes (botocore's ``bedrock-runtime`` service model, operation ``CountTokens``; rest-json, so the
``body`` blob travels as base64 text)::

    request   {"input": {"invokeModel": {"body": "<base64 of an InvokeModel body>"}}}
          or  {"input": {"converse": {"messages": [...], "system": [...], "toolConfig": {...},
                                      "additionalModelRequestFields": {...}}}}
    response  200 application/json  {"inputTokens": N}

Counting, with the fake model's :func:`~._fake_model.count_tokens`:

- ``invokeModel``: the body is validated exactly as InvokeModel validates it for that model (same
  400s; text-completion bodies for text-completion models), and ``N`` is the ``input_tokens`` /
  ``X-Amzn-Bedrock-Input-Token-Count`` InvokeModel reports for the same body.
- ``converse``: ``N`` counts the texts a Messages body would carry: the ``system`` ``text`` blocks, each
  message's ``text`` blocks and the ``text`` blocks inside ``toolResult.content``; images, documents,
  ``toolUse``, reasoning, cache points and ``toolConfig`` count nothing (as tools and images count
  nothing in a Messages body). So a Converse request and its Messages equivalent count the same.

Checks (400 ValidationException; wording UNVERIFIED): the body is a JSON object with ``input``;
``input`` sets exactly one of ``invokeModel`` and ``converse``; ``invokeModel.body`` is base64 text;
``converse.messages`` is a non-empty list of ``{"role": "user"|"assistant", "content": [objects]}`` and
``converse.system`` (optional) a list of objects. Model resolution, authentication and faults are the
InvokeModel routes' (``_handlers``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

import attrs

from ._responses import Reply, ok_json_reply
from ._wire_errors import ServiceError

__all__ = ["OPERATION", "ConverseInput", "InvokeModelInput", "count_reply", "parse_count_tokens_request"]

OPERATION = "CountTokens"
_MEMBERS = ("invokeModel", "converse")


@attrs.frozen
class InvokeModelInput:
    """The decoded InvokeModel body to count."""

    body: bytes


@attrs.frozen
class ConverseInput:
    """The counted texts of a Converse request, joined by newlines."""

    text: str


def _validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


def _texts(blocks: Sequence[Any]) -> list[str]:
    texts = []
    for block in blocks:
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        result = block.get("toolResult")
        if isinstance(result, dict) and isinstance(result.get("content"), list):
            texts.extend(_texts([item for item in result["content"] if isinstance(item, dict)]))
    return texts


def _converse_text(converse: object) -> str | ServiceError:
    if not isinstance(converse, dict):
        return _validation("input.converse: expected an object")
    messages = converse.get("messages")
    if not isinstance(messages, list) or not messages:
        return _validation("input.converse.messages: at least one message is required")
    system = converse.get("system", [])
    if not isinstance(system, list) or not all(isinstance(block, dict) for block in system):
        return _validation("input.converse.system: expected a list of system content blocks")
    texts = [" ".join(_texts(system))] if system else []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return _validation(f"input.converse.messages.{i}.role: expected 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, list) or not all(isinstance(block, dict) for block in content):
            return _validation(f"input.converse.messages.{i}.content: expected a list of content blocks")
        texts.append(" ".join(_texts(content)))
    return "\n".join(texts)


def parse_count_tokens_request(body: bytes) -> InvokeModelInput | ConverseInput | ServiceError:
    """The input a CountTokens body asks to count, or the 400 to answer."""
    try:
        document: Any = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return _validation(f"Malformed input request: {exc}, please reformat your input and try again.")
    if not isinstance(document, dict) or not isinstance(document.get("input"), dict):
        return _validation(
            "1 validation error detected: Value null at 'input' failed to satisfy constraint: Member must not be null"
        )
    given = [member for member in _MEMBERS if document["input"].get(member) is not None]
    if len(given) != 1:
        return _validation(f"input: exactly one of {', '.join(_MEMBERS)} must be set, found {len(given)}")
    if given == ["converse"]:
        text = _converse_text(document["input"]["converse"])
        return text if isinstance(text, ServiceError) else ConverseInput(text)
    invoke = document["input"]["invokeModel"]
    encoded = invoke.get("body") if isinstance(invoke, dict) else None
    if not isinstance(encoded, str):
        return _validation("input.invokeModel.body: Field required (the base64 of an InvokeModel body)")
    try:
        return InvokeModelInput(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        return _validation("input.invokeModel.body: Input should be valid base64 data")


def count_reply(input_tokens: int, *, request_id: str) -> Reply:
    """The 200 CountTokens answer."""
    return ok_json_reply({"inputTokens": input_tokens}, request_id=request_id)
