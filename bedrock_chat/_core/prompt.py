"""Conversations: validate the caller's ``messages`` and shape them for either Claude API.

Theory of operation: :func:`normalize_conversation` turns the caller's list of ``{"role", "content"}``
dicts into a :class:`Conversation` -- system text, alternating user/assistant turns, and an optional
trailing assistant *prefill* -- following Anthropic's rules: system messages lead, consecutive messages
of one role are merged, the first turn is the user's, a trailing assistant message is a prefill that the
model continues. Both wire formats are then plain functions of that one value:
:func:`text_prompt` for the text-completion models (``"\\n\\nHuman: ...\\n\\nAssistant:"``) and
:func:`messages_payload` for the Messages API. Every problem raises :class:`InvalidRequestError` naming
the offending element (``messages[2].content``) before any I/O.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .._errors import InvalidRequestError
from .caching import check_cache_control

__all__ = ["Conversation", "Turn", "messages_payload", "normalize_conversation", "text_prompt"]

HUMAN_PROMPT = "\n\nHuman:"
AI_PROMPT = "\n\nAssistant:"

_ROLES = frozenset({"system", "user", "assistant"})
_MESSAGE_KEYS = frozenset({"role", "content"})
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# Block types a caller may send; each is checked for its required keys below.
_BLOCK_REQUIRED_KEYS: Mapping[str, tuple[str, ...]] = {
    "text": ("text",),
    "image": ("source",),
    "document": ("source",),
    "tool_use": ("id", "name", "input"),
    "tool_result": ("tool_use_id",),
    "thinking": ("thinking",),
    "redacted_thinking": ("data",),
}

Content = str | list[dict[str, Any]]


@attrs.frozen
class Turn:
    """One user or assistant turn; ``content`` is a string or a list of content blocks."""

    role: str
    content: Content


@attrs.frozen
class Conversation:
    """A validated conversation: system text, turns that alternate starting with the user's.

    ``prefill`` is the trailing assistant turn, if any, which the model continues; it is also the
    last element of ``turns`` (the Messages API sends it as a turn, the text prompt appends it).
    """

    system: str | list[dict[str, Any]] | None
    turns: tuple[Turn, ...]
    original: tuple[dict[str, Any], ...]
    #: The ``cache_control`` markers found, ``(where, ttl)`` in prompt order (system, then messages).
    breakpoints: tuple[tuple[str, str], ...] = ()
    #: Where a system prompt given as blocks came from (text-completion models refuse it, naming this).
    system_blocks_from: str | None = None

    @property
    def prefill(self) -> Content | None:
        """The trailing assistant turn's content, or None when the conversation ends with the user."""
        last = self.turns[-1]
        return last.content if last.role == "assistant" else None


def _check_block(block: object, where: str, breakpoints: list[tuple[str, str]]) -> dict[str, Any]:
    if not isinstance(block, Mapping):
        raise InvalidRequestError(where, f"a content block must be a dict, got {type(block).__name__}")
    block_type = block.get("type")
    if not isinstance(block_type, str):
        raise InvalidRequestError(f"{where}.type", "a content block needs a string 'type'")
    if block_type == "tool_result" and isinstance(block.get("content"), list):
        for j, inner in enumerate(block["content"]):
            if isinstance(inner, Mapping) and "cache_control" in inner:
                at = f"{where}.content[{j}].cache_control"
                breakpoints.append((at, check_cache_control(inner["cache_control"], at)))
    if "cache_control" in block:
        breakpoints.append(
            (f"{where}.cache_control", check_cache_control(block["cache_control"], f"{where}.cache_control"))
        )
    required = _BLOCK_REQUIRED_KEYS.get(block_type)
    if required is None:
        # Newer block types are passed through unchanged: the service is the judge of those.
        return dict(block)
    for key in required:
        if key not in block:
            raise InvalidRequestError(f"{where}.{key}", f"a {block_type!r} block needs {key!r}")
    if block_type == "text":
        text = block["text"]
        if not isinstance(text, str) or not text:
            raise InvalidRequestError(f"{where}.text", "must be a non-empty string")
    elif block_type == "image":
        return {**block, "source": _check_image_source(block["source"], f"{where}.source")}
    return dict(block)


def _check_image_source(source: object, where: str) -> dict[str, Any]:
    """Images may be given as raw bytes (``data``: bytes) for convenience; the wire wants base64."""
    if not isinstance(source, Mapping):
        raise InvalidRequestError(where, "must be a dict like {'type': 'base64', 'media_type': ..., 'data': ...}")
    if source.get("type") != "base64":
        # URL/file sources exist on newer surfaces; pass them through for the service to judge.
        return dict(source)
    media_type = source.get("media_type")
    if media_type not in _IMAGE_MEDIA_TYPES:
        raise InvalidRequestError(f"{where}.media_type", f"must be one of {sorted(_IMAGE_MEDIA_TYPES)}")
    data = source.get("data")
    if isinstance(data, (bytes, bytearray, memoryview)):
        if not data:
            raise InvalidRequestError(f"{where}.data", "image data is empty")
        return {**source, "data": base64.b64encode(bytes(data)).decode("ascii")}
    if not isinstance(data, str) or not data:
        raise InvalidRequestError(f"{where}.data", "must be base64 text or bytes")
    return dict(source)


def _check_content(content: object, where: str, breakpoints: list[tuple[str, str]]) -> Content:
    if isinstance(content, str):
        if not content:
            raise InvalidRequestError(where, "must not be empty")
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        if not content:
            raise InvalidRequestError(where, "must not be an empty list of content blocks")
        return [_check_block(block, f"{where}[{i}]", breakpoints) for i, block in enumerate(content)]
    raise InvalidRequestError(where, f"must be a string or a list of content blocks, got {type(content).__name__}")


def _check_system(content: object, where: str, breakpoints: list[tuple[str, str]]) -> Content:
    """A system prompt: a string, or text blocks (which may carry ``cache_control``)."""
    if isinstance(content, str) and not content:
        raise InvalidRequestError(where, "must be a non-empty string or a list of text blocks")
    checked = _check_content(content, where, breakpoints)
    if isinstance(checked, list):
        for i, block in enumerate(checked):
            if block["type"] != "text":
                raise InvalidRequestError(f"{where}[{i}].type", f"system blocks are text blocks, got {block['type']!r}")
    return checked


def _merge(a: Content, b: Content) -> Content:
    """Consecutive messages of one role become one turn; block lists keep every block."""
    if isinstance(a, str) and isinstance(b, str):
        return f"{a}\n\n{b}"
    as_blocks = [{"type": "text", "text": a}] if isinstance(a, str) else a
    bs_blocks = [{"type": "text", "text": b}] if isinstance(b, str) else b
    return [*as_blocks, *bs_blocks]


def _join_system(parts: list[Content]) -> str | list[dict[str, Any]] | None:
    """System parts as one string, or as one list of text blocks when any part was given as blocks."""
    if not parts:
        return None
    if all(isinstance(part, str) for part in parts):
        return "\n\n".join(part for part in parts if isinstance(part, str))
    blocks: list[dict[str, Any]] = []
    for part in parts:
        blocks.extend([{"type": "text", "text": part}] if isinstance(part, str) else part)
    return blocks


def normalize_conversation(messages: object, *, system: object = None) -> Conversation:
    """Validate ``messages`` (and an optional ``system`` argument) into a :class:`Conversation`."""
    # ``type(...) is list``/``dict`` first: the usual arguments, without the ABCs' slower isinstance checks.
    if type(messages) is not list and (isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence)):
        raise InvalidRequestError("messages", "must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise InvalidRequestError("messages", "the conversation is empty")
    breakpoints: list[tuple[str, str]] = []
    system_parts: list[Content] = []
    system_blocks_from: str | None = None
    if system is not None:
        system_parts.append(_check_system(system, "system", breakpoints))
        if not isinstance(system, str):
            system_blocks_from = "system"
    turns: list[Turn] = []
    original: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if type(message) is not dict and not isinstance(message, Mapping):
            raise InvalidRequestError(where, f"must be a dict with 'role' and 'content', got {type(message).__name__}")
        unknown = message.keys() - _MESSAGE_KEYS
        if unknown:
            raise InvalidRequestError(where, f"unknown key(s) {sorted(map(str, unknown))}; allowed: role, content")
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:  # an unhashable role must not escape as TypeError
            raise InvalidRequestError(f"{where}.role", f"must be 'system', 'user' or 'assistant', got {role!r}")
        if "content" not in message:
            raise InvalidRequestError(f"{where}.content", "is missing")
        if role == "system":
            if turns:
                raise InvalidRequestError(where, "system messages must come before the conversation's first turn")
            content = _check_system(message["content"], f"{where}.content", breakpoints)
            original.append({"role": role, "content": content})
            system_parts.append(content)
            if system_blocks_from is None and not isinstance(content, str):
                system_blocks_from = f"{where}.content"
            continue
        content = _check_content(message["content"], f"{where}.content", breakpoints)
        # The validated copy: image bytes already base64 (so ChatCompletion.to_dict stays JSON-serialisable)
        # and later changes to the caller's lists do not show up in the result.
        original.append({"role": role, "content": content})
        if not turns and role == "assistant":
            raise InvalidRequestError(where, "the conversation must start with a user message")
        if turns and turns[-1].role == role:
            turns[-1] = Turn(role, _merge(turns[-1].content, content))
        else:
            turns.append(Turn(role, content))
    if not turns:
        raise InvalidRequestError("messages", "has no user message (only system messages)")
    return Conversation(
        _join_system(system_parts), tuple(turns), tuple(original), tuple(breakpoints), system_blocks_from
    )


def _text_of(content: Content, where: str, model: str) -> str:
    if isinstance(content, str):
        return content
    raise InvalidRequestError(
        where, f"{model} is a text-completion model: message content must be a string, not content blocks"
    )


def text_prompt(conversation: Conversation, *, model: str) -> str:
    """The Claude text-completion prompt: ``[system]\\n\\nHuman: ...\\n\\nAssistant: [prefill]``."""
    system = conversation.system
    if isinstance(system, list):
        raise InvalidRequestError(
            conversation.system_blocks_from or "system",
            f"{model} is a text-completion model: the system prompt must be a string, not content blocks",
        )
    parts: list[str] = [system] if system else []
    for i, turn in enumerate(conversation.turns):
        text = _text_of(turn.content, f"messages (turn {i + 1})", model)
        parts.append(f"{HUMAN_PROMPT if turn.role == 'user' else AI_PROMPT} {text}")
    if conversation.prefill is None:
        parts.append(AI_PROMPT)
    return "".join(parts)


def messages_payload(conversation: Conversation) -> list[dict[str, Any]]:
    """The Messages API ``messages`` list (system text goes in the body's ``system`` field)."""
    return [{"role": turn.role, "content": turn.content} for turn in conversation.turns]
