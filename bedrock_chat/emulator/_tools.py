"""Deterministic tool use by the fake model: whether it calls a tool, which one, and with what input.

Rules (tests compute expectations from these, so they are part of the API, like ``_fake_model``'s):

- **When.** Only for a Messages body with ``tools``, by ``tool_choice`` (default ``auto``):
  ``tool`` calls the named tool; ``any`` calls the first tool whose name the last user text mentions,
  else the first tool; ``auto`` calls the first tool whose name the last user text mentions, unless
  that user turn carries ``tool_result`` blocks (then the model answers in text, so an agent loop
  ends); ``none`` never calls. "Mentions" is a case-insensitive substring match, tools in
  ``tools`` order.
- **Content.** With ``auto``, a text block :data:`PREAMBLE` (``"Calling <name>."``) first; with
  ``any`` and ``tool`` only the tool call, as Claude does when forced. Then
  ``{"type": "tool_use", "id": "toolu_bdrk_<24 hex digits>", "name": ..., "input": ...}``;
  ``stop_reason`` is ``tool_use`` and ``stop_sequence`` null (stop sequences are not applied).
- **Input** (:func:`tool_input`). For each property listed in the schema's ``required`` (in that
  order; optional ones are left out), a value made from the words ``W`` of the last user text
  (``n = len(W)``): ``enum`` -> its first value; ``const`` -> it; ``string`` -> the first
  :data:`STRING_WORDS` words joined by spaces (the property's name when ``n == 0``); ``integer`` ->
  ``n``; ``number`` -> ``n / 2``; ``boolean`` -> ``n % 2 == 0``; ``null`` -> null; ``array`` -> a
  one-item list of its ``items`` value; ``object`` -> the same rules on its properties. A list of
  types takes the first that is not ``null``; ``anyOf``/``oneOf``/``allOf`` the first schema; no
  ``type``: an object when there are ``properties``, else a string. The input nests at most
  :data:`MAX_DEPTH` levels of objects and arrays (the input itself is the first); deeper values are
  null. A typed tool (no ``input_schema``) gets ``{}``.
- **Tokens.** Output tokens = ``count_tokens(text) + count_tokens(compact JSON of the input)``. When
  that exceeds ``max_tokens`` the model does not call the tool: the ordinary text reply (cut at
  ``max_tokens``) is sent instead.
- **Stream.** The text block streams as usual; the tool block is ``content_block_start`` with
  ``{"type": "tool_use", "id", "name", "input": {}}``, then ``input_json_delta`` deltas whose
  ``partial_json`` pieces are :data:`JSON_PIECE_CHARS` characters of the compact (ASCII-only) JSON
  each -- split anywhere, inside strings and escapes too -- then ``content_block_stop``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._body import ParsedRequest, Tool
from ._fake_model import FakeReply, count_tokens

__all__ = [
    "JSON_PIECE_CHARS",
    "MAX_DEPTH",
    "PREAMBLE",
    "STRING_WORDS",
    "ToolCall",
    "choose_tool",
    "content_blocks",
    "plan_tool_use",
    "tool_events",
    "tool_input",
]

#: The text before an ``auto`` tool call.
PREAMBLE = "Calling {}."
#: Characters of JSON per ``input_json_delta``.
JSON_PIECE_CHARS = 7
#: Words of the last user text in a string value.
STRING_WORDS = 8
#: Levels of objects and arrays in an input (itself included); deeper values are null.
MAX_DEPTH = 8


def _mentioned(tools: Sequence[Tool], text: str) -> Tool | None:
    lowered = text.lower()
    return next((tool for tool in tools if tool.name.lower() in lowered), None)


def choose_tool(request: ParsedRequest) -> Tool | None:
    """The tool the fake model calls for ``request``, or None (rules in the module docstring)."""
    tools, choice = request.tools, request.tool_choice
    if not tools or choice.type == "none":
        return None
    if choice.type == "tool":
        return next(tool for tool in tools if tool.name == choice.name)
    mentioned = _mentioned(tools, request.last_user_text)
    if choice.type == "any":
        return mentioned or tools[0]
    return None if request.answers_tool_result else mentioned


def _first_type(schema: Mapping[str, Any]) -> object:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((item for item in kind if item != "null"), "null")
    if kind is None:
        kind = "object" if isinstance(schema.get("properties"), dict) else "string"
    return kind


def _value(schema: object, name: str, words: Sequence[str], depth: int) -> object:
    if depth >= MAX_DEPTH:
        return None
    if not isinstance(schema, dict):
        schema = {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return _value(options[0], name, words, depth)
    kind = _first_type(schema)
    if kind == "object":
        return _object(schema, words, depth)
    if kind == "array":
        return [_value(schema.get("items", {}), name, words, depth + 1)]
    return _SCALARS.get(str(kind), _SCALARS["string"])(name, words)


#: JSON type -> its value, from the property's name and the words of the last user text.
_SCALARS: Mapping[str, Callable[[str, Sequence[str]], object]] = {
    "string": lambda name, words: " ".join(words[:STRING_WORDS]) or name,
    "integer": lambda _name, words: len(words),
    "number": lambda _name, words: len(words) / 2,
    "boolean": lambda _name, words: len(words) % 2 == 0,
    "null": lambda _name, _words: None,
}


def _object(schema: Mapping[str, Any], words: Sequence[str], depth: int) -> dict[str, object]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    names = [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
    return {name: _value(properties.get(name, {}), name, words, depth + 1) for name in names}


def tool_input(schema: Mapping[str, Any] | None, prompt: str) -> dict[str, object]:
    """The input the fake model passes to a tool with ``schema``, built from the last user text ``prompt``."""
    if schema is None:
        return {}
    return _object(schema, prompt.split(), 0)


@attrs.frozen
class ToolCall:
    """One ``tool_use`` block the fake model emits."""

    id: str
    name: str
    input: dict[str, object]

    def block(self) -> dict[str, object]:
        """The ``tool_use`` content block."""
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": self.input}

    def json_pieces(self) -> list[str]:
        """The compact JSON of the input, cut into ``partial_json`` pieces."""
        text = json.dumps(self.input, separators=(",", ":"))
        return [text[i : i + JSON_PIECE_CHARS] for i in range(0, len(text), JSON_PIECE_CHARS)]


def plan_tool_use(request: ParsedRequest, *, call_id: str) -> tuple[FakeReply, ToolCall] | None:
    """The reply (its text part and token count) and the tool call, or None when the model answers in text."""
    tool = choose_tool(request)
    if tool is None:
        return None
    call = ToolCall(call_id, tool.name, tool_input(tool.input_schema, request.last_user_text))
    text = PREAMBLE.format(tool.name) if request.tool_choice.type == "auto" else ""
    output_tokens = count_tokens(text) + count_tokens(json.dumps(call.input, separators=(",", ":")))
    if output_tokens > request.max_tokens:
        return None
    return FakeReply(text, "tool_use", None, output_tokens, 0), call


def content_blocks(generation: FakeReply, call: ToolCall | None) -> list[dict[str, object]]:
    """The ``content`` of a reply: its text block (left out when a tool call has no text), then the call."""
    text: dict[str, object] = {"type": "text", "text": generation.text}
    if call is None:
        return [text]
    return [text, call.block()] if generation.text else [call.block()]


def tool_events(call: ToolCall, index: int) -> list[dict[str, object]]:
    """The stream events of the tool block at ``index``: start, ``input_json_delta`` pieces, stop."""
    start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *(
            {"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}}
            for p in call.json_pieces()
        ),
        {"type": "content_block_stop", "index": index},
    ]
