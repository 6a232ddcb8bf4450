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
  types takes the first that is not ``null``; ``anyOf``/``oneOf`` the first schema; ``allOf`` its
  schemas merged; no ``type``: an object when there are ``properties``, else a string. The input nests
  at most :data:`MAX_DEPTH` levels of objects and arrays (the input itself is the first); deeper values
  are null. A typed tool (no ``input_schema``) gets ``{}``.
- **Conforming** (so strict tools and structured outputs, :func:`schema_value`, validate against their
  schema). ``$ref`` to ``#/$defs/X`` or ``#/definitions/X`` is followed; an array has
  ``max(1, minItems, len(prefixItems))`` items, at most ``maxItems``, item ``k`` made with variant
  ``k`` (a string gets `` k`` appended, a number ``+ k``, an enum its ``k``-th value, a boolean flips), so
  ``uniqueItems`` holds; numbers move into ``minimum``/``maximum`` (exclusive bounds by 1, or 0.5 for
  ``number``) and up onto ``multipleOf``; strings are padded with ``x`` to ``minLength`` and cut to
  ``maxLength``; a known ``format`` (date-time, date, time, duration, email, hostname, uri, uuid, ipv4,
  ipv6) gets a fixed valid value. ``pattern`` is not honoured.
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
    "schema_value",
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
_NO_DEFS: Mapping[str, Any] = {}


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


def _resolve_ref(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """``{"$ref": "#/$defs/X"}`` (or ``#/definitions/X``) -> that schema; anything else unchanged."""
    for _ in range(MAX_DEPTH):  # a $ref to a $ref: bounded
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            break
        target = defs.get(ref.rsplit("/", 1)[-1]) if ref.startswith(("#/$defs/", "#/definitions/")) else None
        schema = target if isinstance(target, dict) else {}
    return schema


def _merge_all_of(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """``allOf``'s subschemas folded into one: properties and ``required`` united, other keys the first's."""
    merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
    properties: dict[str, Any] = dict(merged.get("properties") or {})
    required: list[Any] = list(merged.get("required") or [])
    for part in schema["allOf"]:
        part = _resolve_ref(part, defs) if isinstance(part, dict) else {}
        for key, value in part.items():
            merged.setdefault(key, value)
        properties.update(part.get("properties") or {})
        required.extend(name for name in part.get("required") or [] if name not in required)
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _value(
    schema: object, name: str, words: Sequence[str], depth: int, defs: Mapping[str, Any] = _NO_DEFS, variant: int = 0
) -> object:
    if depth >= MAX_DEPTH:
        return None
    schema = _resolve_ref(schema, defs) if isinstance(schema, dict) else {}
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][variant % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        schema = _merge_all_of(schema, defs)
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return _value(options[0], name, words, depth, defs, variant)
    kind = _first_type(schema)
    if kind == "object":
        return _object(schema, words, depth, defs)
    if kind == "array":
        return _array(schema, name, words, depth, defs)
    return _SCALARS.get(str(kind), _SCALARS["string"])(schema, name, words, variant)


def _bounded_number(schema: Mapping[str, Any], value: float, step: float) -> float:
    """``value`` moved into [minimum, maximum] (exclusive bounds by ``step``) and onto ``multipleOf``."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"] + step
    if isinstance(schema.get("exclusiveMaximum"), (int, float)):
        high = schema["exclusiveMaximum"] - step
    if isinstance(low, (int, float)) and value < low:
        value = low
    if isinstance(high, (int, float)) and value > high:
        value = high
    multiple = schema.get("multipleOf")
    if isinstance(multiple, (int, float)) and multiple > 0 and value % multiple:
        value = -(-value // multiple) * multiple  # up to the next multiple
    return value


#: ``format`` -> a valid value (RFC 3339, RFC 5322, RFC 3986, RFC 4122, RFC 5737/3849 examples).
_FORMATS: Mapping[str, str] = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "user@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


def _string(schema: Mapping[str, Any], name: str, words: Sequence[str], variant: int) -> object:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    text = " ".join(words[:STRING_WORDS]) or name
    if variant:
        text = f"{text} {variant}"
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text += "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high] if not variant else (text[: max(0, high - len(str(variant)))] + str(variant))[-high:]
    return text


def _integer(schema: Mapping[str, Any], _name: str, words: Sequence[str], variant: int) -> object:
    return int(_bounded_number(schema, len(words) + variant, 1))


def _number(schema: Mapping[str, Any], _name: str, words: Sequence[str], variant: int) -> object:
    return _bounded_number(schema, len(words) / 2 + variant, 0.5)


#: JSON type -> its value, from the schema, the property's name, the words of the last user text and
#: the item's position (``variant``: items of one array differ, for ``uniqueItems``).
_SCALARS: Mapping[str, Callable[[Mapping[str, Any], str, Sequence[str], int], object]] = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": lambda _schema, _name, words, variant: (len(words) + variant) % 2 == 0,
    "null": lambda _schema, _name, _words, _variant: None,
}


def _array(schema: Mapping[str, Any], name: str, words: Sequence[str], depth: int, defs: Mapping[str, Any]) -> object:
    prefix = schema.get("prefixItems")
    prefix = prefix if isinstance(prefix, list) else []
    low, high = schema.get("minItems"), schema.get("maxItems")
    count = max(1, low if isinstance(low, int) else 0, len(prefix))
    if isinstance(high, int):
        count = min(count, high)
    items = schema.get("items", {})
    return [
        _value(prefix[k] if k < len(prefix) else items, name, words, depth + 1, defs, variant=k) for k in range(count)
    ]


def _object(
    schema: Mapping[str, Any], words: Sequence[str], depth: int, defs: Mapping[str, Any] = _NO_DEFS
) -> dict[str, object]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    required = schema.get("required")
    names = [name for name in required if isinstance(name, str)] if isinstance(required, list) else []
    return {name: _value(properties.get(name, {}), name, words, depth + 1, defs) for name in names}


def _defs(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    found: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            found.update(schema[key])
    return found


def tool_input(schema: Mapping[str, Any] | None, prompt: str) -> dict[str, object]:
    """The input the fake model passes to a tool with ``schema``, built from the last user text ``prompt``."""
    if schema is None:
        return {}
    return _object(_resolve_ref(schema, _defs(schema)), prompt.split(), 0, _defs(schema))


def schema_value(schema: Mapping[str, Any], prompt: str) -> object:
    """A JSON value conforming to ``schema`` (structured outputs), by the same rules as tool inputs."""
    return _value(schema, "value", prompt.split(), 0, _defs(schema))


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
