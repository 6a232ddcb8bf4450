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


def _retained_bytes(feed: Any) -> int:
    """Bytes still allocated after ``feed()`` ran (what it keeps alive), by tracemalloc."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = feed()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert kept is not None
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


@pytest.mark.parametrize("model", [MESSAGES_MODEL, TEXT_MODEL])
def test_an_open_stream_holds_its_text_near_its_size_not_per_token(model: str) -> None:
    """A stream's tokens are a few characters each; held as 2,000 small strings they cost ~60 bytes each
    (object header, list slot, twice: the stream's text and its block's). Joined in runs, the assembler
    holds well under 3 bytes per character of a 4-character-token answer."""

    def feed() -> StreamAssembler:
        tokens = [f"t{i % 10}{i % 7} " for i in range(DELTAS)]  # fresh objects, as decoded tokens are
        assembler = StreamAssembler(_invocation(model))
        if model == TEXT_MODEL:
            for token in tokens:
                assembler.feed({"completion": token, "stop_reason": None})
        else:
            for event in _messages_events("text_delta", tokens)[:-3]:  # open: the block is not closed yet
                assembler.feed(event)
        return assembler

    assert _retained_bytes(feed) < 3 * 4 * DELTAS
