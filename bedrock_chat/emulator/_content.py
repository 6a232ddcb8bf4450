"""Messages-body rules for content blocks, ``tools`` and ``tool_choice``, as tables of checks.

Theory of operation
-------------------
``_validation`` runs the schema pass and the turn rules; for each message's content it calls
:func:`check_content`, then :func:`check_tool_turns` once over all messages, and :func:`parse_tools` /
:func:`parse_tool_choice` for the tool fields. Every failure raises :class:`~._body.BodyError` (a 400
ValidationException on InvokeModel, ``invalid_request_error`` on ``/anthropic/v1/messages``).

Block rules (:data:`BLOCK_CHECKS`, keyed by ``type``; other types such as ``document`` or ``thinking``
pass unchecked, as they did before):

- ``text``: a non-empty string ``text``.
- ``image``: ``source`` = ``{"type": "base64", "media_type": <one of MEDIA_TYPES>, "data": <base64>}``.
  Only base64 sources are accepted (Bedrock's documented form; URL and file sources are Anthropic-API
  features, UNVERIFIED on Bedrock). ``data`` must decode as strict base64 (RFC 4648, padding included);
  whether the bytes really are an image of that type is *not* checked (the real API does; a fake model
  that cannot look at images has no use for the check, and tests can send tiny stand-in bytes).
- ``tool_use``: only in assistant turns; string ``id`` and ``name``, object ``input``.
- ``tool_result``: only in user turns; string ``tool_use_id``; ``content`` a string or a list of
  blocks (checked by the same table); ``is_error`` a boolean.

Tool turns (:func:`check_tool_turns`), as the Messages API requires: every ``tool_result`` must name a
``tool_use`` id of the assistant turn just before it, and every ``tool_use`` of an assistant turn that
has a following turn must be answered by a ``tool_result`` there.

Tools: each ``name`` matches ``^[a-zA-Z0-9_-]{1,64}$`` and names are unique; a custom tool (no
``type``, or ``"custom"``) needs ``input_schema``, an object with ``"type": "object"``; a typed tool
(``bash_20250124``, ``computer_...``: the beta tools) needs only its name. ``tool_choice.type`` is one
of ``auto``, ``any``, ``tool`` (with a ``name`` found in ``tools``), ``none``; ``any`` and ``tool``
need ``tools``; ``disable_parallel_tool_use`` is a boolean.

Wording: the tool-turn messages are the Anthropic API's (as quoted in public issues); the others follow
its ``path: problem`` style. All of them are UNVERIFIED on Bedrock.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._body import BodyError, Tool, ToolChoice

__all__ = [
    "BLOCK_CHECKS",
    "MEDIA_TYPES",
    "TOOL_CHOICE_TYPES",
    "TOOL_NAME",
    "check_content",
    "check_tool_turns",
    "parse_tool_choice",
    "parse_tools",
]

#: The image media types Claude accepts.
MEDIA_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/gif", "image/webp")
#: A tool's name.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: ``tool_choice.type`` values.
TOOL_CHOICE_TYPES: tuple[str, ...] = ("auto", "any", "tool", "none")
#: ``tool_choice`` types that force a tool, and so need ``tools``.
_FORCING = frozenset({"any", "tool"})
#: Block type -> the one role whose turns may carry it.
_BLOCK_ROLES: Mapping[str, str] = {"tool_use": "assistant", "tool_result": "user"}


def _one_of(values: Sequence[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _check_text(path: str, block: Mapping[str, Any]) -> None:
    if not isinstance(block.get("text"), str):
        raise BodyError(f"{path}.text: Field required")
    if not block["text"]:
        raise BodyError("messages: text content blocks must be non-empty")


def _check_image(path: str, block: Mapping[str, Any]) -> None:
    source = block.get("source")
    if not isinstance(source, dict):
        raise BodyError(f"{path}.image.source: Field required")
    if source.get("type") != "base64":
        raise BodyError(f"{path}.image.source.type: Input should be 'base64'")
    if source.get("media_type") not in MEDIA_TYPES:
        raise BodyError(f"{path}.image.source.base64.media_type: Input should be {_one_of(MEDIA_TYPES)}")
    data = source.get("data")
    if not isinstance(data, str) or not data:
        raise BodyError(f"{path}.image.source.base64.data: Field required")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BodyError(f"{path}.image.source.base64.data: Input should be valid base64 data") from None


def _check_tool_use(path: str, block: Mapping[str, Any]) -> None:
    for key in ("id", "name"):
        if not isinstance(block.get(key), str) or not block[key]:
            raise BodyError(f"{path}.tool_use.{key}: Field required")
    if not isinstance(block.get("input"), dict):
        raise BodyError(f"{path}.tool_use.input: Input should be a valid dictionary")


def _check_tool_result(path: str, block: Mapping[str, Any]) -> None:
    if not isinstance(block.get("tool_use_id"), str) or not block["tool_use_id"]:
        raise BodyError(f"{path}.tool_result.tool_use_id: Field required")
    if "is_error" in block and not isinstance(block["is_error"], bool):
        raise BodyError(f"{path}.tool_result.is_error: Input should be a valid boolean")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise BodyError(f"{path}.tool_result.content: Input should be a valid string or list of content blocks")
    _check_blocks(f"{path}.tool_result.content", content, role="user")


#: Block ``type`` -> its check, given the block's path (``messages.1.content.0``) and the block.
BLOCK_CHECKS: Mapping[str, Callable[[str, Mapping[str, Any]], None]] = {
    "text": _check_text,
    "image": _check_image,
    "tool_use": _check_tool_use,
    "tool_result": _check_tool_result,
}


def _check_blocks(path: str, blocks: Sequence[Any], *, role: str) -> None:
    for j, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise BodyError(f"{path}.{j}: Input should be an object with a string 'type'")
        kind = block["type"]
        allowed_role = _BLOCK_ROLES.get(kind, role)
        if allowed_role != role:
            raise BodyError(f"{path}.{j}: '{kind}' blocks are only allowed in '{allowed_role}' messages")
        check = BLOCK_CHECKS.get(kind)
        if check is not None:
            check(f"{path}.{j}", block)


def check_content(index: int, role: str, content: object, *, is_final_assistant: bool) -> None:
    """Check one message's ``content`` (a string or a list of blocks) by the rules of the module docstring."""
    if isinstance(content, list):
        _check_blocks(f"messages.{index}.content", content, role=role)
    elif not isinstance(content, str):
        raise BodyError(f"messages.{index}.content: Input should be a valid string or list of content blocks")
    if not content and not is_final_assistant:
        raise BodyError(
            f"messages.{index}: all messages must have non-empty content except for the optional final assistant "
            "message"
        )


def _ids(content: object, kind: str, key: str) -> list[tuple[int, str]]:
    if not isinstance(content, list):
        return []
    return [(j, block[key]) for j, block in enumerate(content) if block.get("type") == kind]


def check_tool_turns(messages: Sequence[Mapping[str, Any]]) -> None:
    """Every ``tool_result`` answers a ``tool_use`` of the turn before, and every such ``tool_use`` is answered."""
    asked: list[str] = []
    for i, message in enumerate(messages):
        content = message["content"]
        if message["role"] == "assistant":
            asked = [tool_id for _, tool_id in _ids(content, "tool_use", "id")]
            continue
        answered = _ids(content, "tool_result", "tool_use_id")
        for j, tool_id in answered:
            if tool_id not in asked:
                raise BodyError(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_id}. "
                    "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                )
        unanswered = [tool_id for tool_id in asked if tool_id not in {tool_id for _, tool_id in answered}]
        if unanswered:
            raise BodyError(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(unanswered)}. Each `tool_use` block must have a corresponding `tool_result` block in "
                "the next message."
            )
        asked = []


def _parse_tool(i: int, tool: object) -> Tool:
    if not isinstance(tool, dict):
        raise BodyError(f"tools.{i}: Input should be a valid dictionary")
    name = tool.get("name")
    if not isinstance(name, str):
        raise BodyError(f"tools.{i}.name: Field required")
    if not TOOL_NAME.match(name):
        raise BodyError(f"tools.{i}.name: String should match pattern '{TOOL_NAME.pattern}'")
    kind = tool.get("type", "custom")
    if not isinstance(kind, str):
        raise BodyError(f"tools.{i}.type: Input should be a valid string")
    if kind != "custom":
        return Tool(name)  # a typed (built-in or beta) tool: its schema is Anthropic's, not the request's
    if "description" in tool and not isinstance(tool["description"], str):
        raise BodyError(f"tools.{i}.custom.description: Input should be a valid string")
    schema = tool.get("input_schema")
    if schema is None:
        raise BodyError(f"tools.{i}.custom.input_schema: Field required")
    if not isinstance(schema, dict):
        raise BodyError(f"tools.{i}.custom.input_schema: Input should be a valid dictionary")
    if schema.get("type") != "object":
        raise BodyError(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
    return Tool(name, schema)


def parse_tools(value: Sequence[object]) -> tuple[Tool, ...]:
    """The validated ``tools`` list."""
    tools = tuple(_parse_tool(i, tool) for i, tool in enumerate(value))
    if len({tool.name for tool in tools}) != len(tools):
        raise BodyError("tools: Tool names must be unique.")
    return tools


def parse_tool_choice(value: Mapping[str, Any], tools: Sequence[Tool]) -> ToolChoice:
    """The validated ``tool_choice``, given the request's (already validated) ``tools``."""
    kind = value.get("type")
    if kind not in TOOL_CHOICE_TYPES:
        raise BodyError(f"tool_choice.type: Input should be {_one_of(TOOL_CHOICE_TYPES)}")
    if "disable_parallel_tool_use" in value and not isinstance(value["disable_parallel_tool_use"], bool):
        raise BodyError(f"tool_choice.{kind}.disable_parallel_tool_use: Input should be a valid boolean")
    if kind in _FORCING and not tools:
        raise BodyError(f"tool_choice: tool_choice.type '{kind}' may only be specified while providing tools")
    if kind != "tool":
        return ToolChoice(kind)
    name = value.get("name")
    if not isinstance(name, str):
        raise BodyError("tool_choice.tool.name: Field required")
    if name not in {tool.name for tool in tools}:
        raise BodyError(f"tool_choice.tool.name: Tool '{name}' not found in tools")
    return ToolChoice(kind, name)
