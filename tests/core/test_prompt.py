"""Conversations -> the Claude text prompt and the Messages list: vectors, properties and validation."""

from __future__ import annotations

import base64
import copy
import functools
import itertools
import re
from typing import Any

import pytest
from hypothesis import given
from strategies import conversations

from bedrock_chat import InvalidRequestError
from bedrock_chat._core.prompt import AI_PROMPT, HUMAN_PROMPT, messages_payload, normalize_conversation, text_prompt


def _user(text: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "user", "content": text}


def _assistant(text: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def _prompt(messages: list[dict[str, Any]], system: str | None = None) -> str:
    return text_prompt(normalize_conversation(messages, system=system), model="anthropic.claude-v2:1")


# ----------------------------------------------------------------------------------- text prompt vectors

TEXT_PROMPTS: list[tuple[list[dict[str, Any]], str | None, str]] = [
    ([_user("Hi")], None, "\n\nHuman: Hi\n\nAssistant:"),
    (
        [{"role": "system", "content": "You are a pirate."}, _user("Hi")],
        None,
        "You are a pirate.\n\nHuman: Hi\n\nAssistant:",
    ),
    ([_user("Hi")], "You are a pirate.", "You are a pirate.\n\nHuman: Hi\n\nAssistant:"),
    (
        [{"role": "system", "content": "B"}, _user("Hi")],
        "A",
        "A\n\nB\n\nHuman: Hi\n\nAssistant:",
    ),
    (
        [_user("Hi"), _assistant("Hello!"), _user("How are you?")],
        None,
        "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant:",
    ),
    ([_user("a"), _user("b")], None, "\n\nHuman: a\n\nb\n\nAssistant:"),
    ([_user("Hi"), _assistant("Well,")], None, "\n\nHuman: Hi\n\nAssistant: Well,"),
    ([_user("Hi"), _assistant("Well,"), _assistant("um")], None, "\n\nHuman: Hi\n\nAssistant: Well,\n\num"),
]


@pytest.mark.parametrize(("messages", "system", "expected"), TEXT_PROMPTS)
def test_text_prompt_vectors(messages: list[dict[str, Any]], system: str | None, expected: str) -> None:
    """System text leads, turns alternate, runs of one role merge, and a trailing assistant turn is a prefill."""
    assert _prompt(messages, system) == expected


def test_prefill_is_reported() -> None:
    """A trailing assistant message is the prefill; a trailing user message means none."""
    assert normalize_conversation([_user("Hi"), _assistant("Well")]).prefill == "Well"
    assert normalize_conversation([_user("Hi")]).prefill is None


def _parse_prompt(prompt: str) -> tuple[str | None, list[tuple[str, str]], bool]:
    """Split a text prompt back into (system, [(role, text)], ends with an open Assistant turn)."""
    pieces = re.split(r"(\n\nHuman: |\n\nAssistant: )", prompt)
    system = pieces[0] or None
    open_end = False
    turns: list[tuple[str, str]] = []
    for marker, text in zip(pieces[1::2], pieces[2::2], strict=True):
        role = "user" if marker == HUMAN_PROMPT + " " else "assistant"
        if text.endswith(AI_PROMPT):
            text, open_end = text[: -len(AI_PROMPT)], True
        turns.append((role, text))
    return system, turns, open_end


def _blocks(content: Any) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _merge(a: Any, b: Any) -> Any:
    """Anthropic's rule, applied left to right: two strings join with a blank line, otherwise blocks concatenate."""
    return f"{a}\n\n{b}" if isinstance(a, str) and isinstance(b, str) else _blocks(a) + _blocks(b)


def _expected_turns(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    turns = [m for m in messages if m["role"] != "system"]
    return [
        (role, functools.reduce(_merge, [m["content"] for m in group]))
        for role, group in itertools.groupby(turns, key=lambda m: m["role"])
    ]


@given(messages=conversations())
def test_text_prompt_round_trips(messages: list[dict[str, Any]]) -> None:
    """Parsing the prompt back gives the system text and the merged turns; only a user ending leaves it open."""
    prompt = _prompt(messages)
    system, turns, open_end = _parse_prompt(prompt)
    systems = [m["content"] for m in messages if m["role"] == "system"]
    assert system == ("\n\n".join(systems) or None)
    assert turns == _expected_turns(messages)
    assert open_end is (messages[-1]["role"] == "user")
    assert prompt.endswith(AI_PROMPT) or messages[-1]["role"] == "assistant"
    assert prompt[len(system or "") :].startswith(HUMAN_PROMPT + " ")


# ----------------------------------------------------------------------------------------- Messages list


@given(messages=conversations(blocks=True))
def test_messages_payload_alternates_and_merges(messages: list[dict[str, Any]]) -> None:
    """The Messages list starts with the user, alternates roles, and merges runs (blocks kept in order)."""
    conversation = normalize_conversation(messages)
    payload = messages_payload(conversation)
    assert [(m["role"], m["content"]) for m in payload] == _expected_turns(messages)
    assert payload[0]["role"] == "user"
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(payload))
    systems = [m["content"] for m in messages if m["role"] == "system"]
    assert conversation.system == ("\n\n".join(systems) or None)


@given(messages=conversations(blocks=True))
def test_normalizing_does_not_touch_the_input(messages: list[dict[str, Any]]) -> None:
    """The caller's list is neither mutated nor aliased into the result."""
    before = copy.deepcopy(messages)
    conversation = normalize_conversation(messages)
    assert messages == before
    assert list(conversation.original) == before
    for original, given_message in zip(conversation.original, messages, strict=True):
        if isinstance(given_message["content"], list):
            assert original["content"] is not given_message["content"]


def test_content_blocks_allowed_for_messages_models() -> None:
    """Text, image, tool-use and tool-result blocks pass through to the Messages list."""
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
    ]
    messages = [
        {"role": "user", "content": blocks},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]},
    ]
    assert messages_payload(normalize_conversation(messages)) == messages


def test_image_bytes_become_base64() -> None:
    """Raw image bytes are accepted for convenience and sent as base64 text."""
    source = {"type": "base64", "media_type": "image/jpeg", "data": b"\xff\xd8\xff"}
    conversation = normalize_conversation([{"role": "user", "content": [{"type": "image", "source": source}]}])
    content = messages_payload(conversation)[0]["content"]
    assert content[0]["source"]["data"] == base64.b64encode(b"\xff\xd8\xff").decode()
    assert conversation.original[0]["content"][0]["source"]["data"] == base64.b64encode(b"\xff\xd8\xff").decode()


def test_unknown_block_types_pass_through() -> None:
    """A block type newer than this library is left for the service to judge."""
    block = {"type": "search_result", "source": "s", "title": "t", "content": []}
    assert messages_payload(normalize_conversation([{"role": "user", "content": [block]}]))[0]["content"] == [block]


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": "Hi"}],
        [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}}],
    ],
)
def test_content_blocks_rejected_for_text_completion_models(content: list[dict[str, Any]]) -> None:
    """A text-completion model cannot take content blocks: a clear InvalidRequestError says so."""
    conversation = normalize_conversation([{"role": "user", "content": content}])
    with pytest.raises(InvalidRequestError, match="text-completion model") as info:
        text_prompt(conversation, model="anthropic.claude-v2:1")
    assert info.value.field.startswith("messages")


# -------------------------------------------------------------------------------------------- validation

BAD_CONVERSATIONS: list[tuple[object, str]] = [
    ([], "messages"),
    ("Hi", "messages"),
    (b"Hi", "messages"),
    (None, "messages"),
    ({"role": "user", "content": "Hi"}, "messages"),
    (["Hi"], "messages[0]"),
    ([_user("Hi"), 3], "messages[1]"),
    ([{"role": "bot", "content": "Hi"}], "messages[0].role"),
    ([{"role": None, "content": "Hi"}], "messages[0].role"),
    ([{"role": ["user"], "content": "Hi"}], "messages[0].role"),
    ([{"role": {"user": 1}, "content": "Hi"}], "messages[0].role"),
    ([{"content": "Hi"}], "messages[0].role"),
    ([{"role": "user"}], "messages[0].content"),
    ([_user("")], "messages[0].content"),
    ([{"role": "user", "content": None}], "messages[0].content"),
    ([{"role": "user", "content": 42}], "messages[0].content"),
    ([{"role": "user", "content": b"Hi"}], "messages[0].content"),
    ([{"role": "user", "content": []}], "messages[0].content"),
    ([{"role": "user", "content": ["Hi"]}], "messages[0].content[0]"),
    ([{"role": "user", "content": [{"text": "Hi"}]}], "messages[0].content[0].type"),
    ([{"role": "user", "content": [{"type": "text", "text": ""}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": [{"type": "text", "text": 3}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": [{"type": "text"}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": [{"type": "image"}]}], "messages[0].content[0].source"),
    (
        [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp"}}]}],
        "messages[0].content[0].source.media_type",
    ),
    (
        [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}],
        "messages[0].content[0].source.data",
    ),
    (
        [
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b""}}],
            }
        ],
        "messages[0].content[0].source.data",
    ),
    ([{"role": "user", "content": [{"type": "tool_use", "id": "t"}]}], "messages[0].content[0].name"),
    ([{"role": "user", "content": "Hi", "name": "bob"}], "messages[0]"),
    ([_assistant("Hi")], "messages[0]"),
    ([_user("Hi"), {"role": "system", "content": "late"}], "messages[1]"),
    (
        [{"role": "system", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {}}]}, _user("Hi")],
        "messages[0].content[0].type",
    ),
    ([{"role": "system", "content": []}, _user("Hi")], "messages[0].content"),
    (
        [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "persistent"}}]}],
        "messages[0].content[0].cache_control",
    ),
    (
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "2h"}}],
            }
        ],
        "messages[0].content[0].cache_control.ttl",
    ),
    (
        [{"role": "user", "content": [{"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "x": 1}}]}],
        "messages[0].content[0].cache_control",
    ),
    ([{"role": "system", "content": "only a system prompt"}], "messages"),
]


@pytest.mark.parametrize(("messages", "field"), BAD_CONVERSATIONS)
def test_bad_conversations_name_the_field(messages: object, field: str) -> None:
    """Every malformed conversation raises InvalidRequestError (a ValueError) naming the offending element."""
    with pytest.raises(InvalidRequestError) as info:
        normalize_conversation(messages)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("system", "field"),
    [
        ("", "system"),
        (3, "system"),
        ([], "system"),
        (["a"], "system[0]"),
        ([{"type": "text", "text": ""}], "system[0].text"),
        ([{"type": "image", "source": {"type": "url", "url": "u"}}], "system[0].type"),
        (
            [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": 60}}],
            "system[0].cache_control.ttl",
        ),
    ],
)
def test_bad_system_argument(system: object, field: str) -> None:
    """The ``system`` argument is a non-empty string or a list of text blocks; the error names the element."""
    with pytest.raises(InvalidRequestError) as info:
        normalize_conversation([_user("Hi")], system=system)
    assert info.value.field == field


def test_system_blocks_are_kept_with_their_markers() -> None:
    """System text blocks (with cache_control) reach the conversation as given; string parts join them as blocks."""
    marked = {"type": "text", "text": "policy", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    conversation = normalize_conversation(
        [{"role": "system", "content": [marked]}, {"role": "system", "content": "tail"}, _user("Hi")], system="head"
    )
    assert conversation.system == [{"type": "text", "text": "head"}, marked, {"type": "text", "text": "tail"}]
    assert conversation.breakpoints == (("messages[0].content[0].cache_control", "1h"),)
    assert conversation.system_blocks_from == "messages[0].content"
    only_strings = normalize_conversation([{"role": "system", "content": "b"}, _user("Hi")], system="a")
    assert only_strings.system == "a\n\nb"
    assert only_strings.breakpoints == ()


def test_breakpoints_are_found_in_prompt_order() -> None:
    """Markers on system, message and nested tool_result blocks are listed in order, with the default ttl."""
    cc = {"type": "ephemeral"}
    conversation = normalize_conversation(
        [
            _user([{"type": "text", "text": "doc", "cache_control": cc}, {"type": "text", "text": "q"}]),
            _assistant([{"type": "tool_use", "id": "t1", "name": "n", "input": {}}]),
            _user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": [{"type": "text", "text": "r", "cache_control": cc}],
                    }
                ]
            ),
        ],
        system=[{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    )
    assert conversation.breakpoints == (
        ("system[0].cache_control", "1h"),
        ("messages[0].content[0].cache_control", "5m"),
        ("messages[2].content[0].content[0].cache_control", "5m"),
    )


@pytest.mark.parametrize(
    ("messages", "system", "field"),
    [
        (
            [{"role": "system", "content": [{"type": "text", "text": "s"}]}, {"role": "user", "content": "Hi"}],
            None,
            "messages[0].content",
        ),
        ([{"role": "user", "content": "Hi"}], [{"type": "text", "text": "s"}], "system"),
    ],
)
def test_text_completion_models_refuse_system_blocks(
    messages: list[dict[str, Any]], system: object, field: str
) -> None:
    """A text-completion prompt has no blocks: a block system prompt is refused, naming where it came from."""
    conversation = normalize_conversation(messages, system=system)
    with pytest.raises(InvalidRequestError) as info:
        text_prompt(conversation, model="anthropic.claude-v2:1")
    assert info.value.field == field
    assert "text-completion" in str(info.value)


def test_any_sequence_of_mappings_is_a_conversation_like_a_list_of_dicts() -> None:
    """The list/dict fast path and the Mapping/Sequence path agree (and refuse the same unknown key)."""
    import types

    plain = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "?"},
    ]
    other = tuple(types.MappingProxyType(message) for message in plain)
    assert normalize_conversation(other) == normalize_conversation(plain)
    for messages in (
        [{"role": "user", "content": "hi", "name": "x"}],
        (types.MappingProxyType({"role": "user", "content": "hi", "name": "x"}),),
    ):
        with pytest.raises(InvalidRequestError, match=r"unknown key\(s\) \['name'\]"):
            normalize_conversation(messages)
