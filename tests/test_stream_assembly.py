"""Stream assembly is linear in the answer's length: counted in characters copied, not in seconds.

The deltas fed to the assembler are a ``str`` subclass that counts every character copied by a
concatenation it takes part in (``+``, ``+=``, either side). Rebuilding a block's text on each delta
copies the whole text so far every time -- about n^2/2 characters for n of them -- where joining the
pieces once copies none by concatenation. The bound below, twice the answer, holds for any linear
scheme and fails for the quadratic one by a factor of hundreds at this size.
"""

from __future__ import annotations

from typing import Any

import pytest

from bedrock_chat._core.models import resolve_model
from bedrock_chat._core.prompt import normalize_conversation
from bedrock_chat._core.protocol import Invocation, prepare_invocation, validate_sampling
from bedrock_chat._core.responses import StreamAssembler

MESSAGES_MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
TEXT_MODEL = "anthropic.claude-v2:1"
DELTAS = 2000
SIZE = 100


class CountingStr(str):
    """A str that adds to ``copied`` the length of every concatenation it is an operand of."""

    copied = 0

    def __add__(self, other: str) -> str:
        CountingStr.copied += len(self) + len(other)
        return str.__add__(self, other)

    def __radd__(self, other: str) -> str:
        CountingStr.copied += len(self) + len(other)
        return str.__add__(other, self)


def _invocation(model: str) -> Invocation:
    resolved = resolve_model(model)
    conversation = normalize_conversation([{"role": "user", "content": "Hi"}])
    return prepare_invocation(resolved, conversation, validate_sampling(resolved), stream=True)


def _delta(kind: str, piece: str) -> dict[str, Any]:
    key = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}[kind]
    return {"type": "content_block_delta", "index": 0, "delta": {"type": kind, key: piece}}


def _messages_events(kind: str, pieces: list[str]) -> list[dict[str, Any]]:
    block = {"type": "text", "text": ""} if kind == "text_delta" else {"type": "thinking", "thinking": ""}
    return [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": block},
        *(_delta(kind, piece) for piece in pieces),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    ]


def _text_completion_events(pieces: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"completion": piece, "stop_reason": None} for piece in pieces]
    return [*events, {"completion": "", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}]


@pytest.mark.parametrize(
    "case", ["text_delta", "thinking_delta", "signature_delta", "text-completion"], ids=lambda case: case
)
def test_assembling_a_long_answer_copies_each_character_a_bounded_number_of_times(case: str) -> None:
    """2,000 deltas of 100 characters: concatenations copy at most twice the answer (quadratic: ~1,000 times it)."""
    pieces: list[str] = [CountingStr(f"{i:04d}" + "x" * (SIZE - 4)) for i in range(DELTAS)]
    if case == "text-completion":
        assembler = StreamAssembler(_invocation(TEXT_MODEL))
        events = _text_completion_events(pieces)
    else:
        assembler = StreamAssembler(_invocation(MESSAGES_MODEL))
        events = _messages_events(case, pieces)
    CountingStr.copied = 0
    for event in events:
        assembler.feed(event)
    completion = assembler.completion(request_id=None, latency=0.0)
    copied = CountingStr.copied
    total = DELTAS * SIZE
    assert copied <= 2 * total, f"{copied:,} characters copied for an answer of {total:,}"
    # Nothing lost or reordered on the way.
    whole = "".join(pieces)
    if case == "text-completion":
        assert completion.completion == whole
    else:
        key = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}[case]
        assert completion.content[0][key] == whole
        assert completion.completion == (whole if case == "text_delta" else "")


def test_a_block_started_again_at_the_same_index_keeps_each_blocks_own_text() -> None:
    """Pieces belong to the block they arrived for: a second block at index 0 starts from its own text."""
    assembler = StreamAssembler(_invocation(MESSAGES_MODEL))
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "m"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "a"}},
        _delta("text_delta", "b"),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "c"}},
        _delta("text_delta", "d"),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ]
    for event in events:
        assembler.feed(event)
    completion = assembler.completion(request_id=None, latency=0.0)
    assert completion.content == [{"type": "text", "text": "cd"}]
    assert completion.completion == "bd"
