"""The fake model's documented rules: token count, determinism, lengths, stop sequences, chunking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bedrock_chat.emulator import count_tokens, fake_reply, split_chunks
from bedrock_chat.emulator._fake_model import ECHO_WORDS, HUMAN_STOP, VOCABULARY


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("one", 1), ("  two   words ", 2), ("\n\nHuman: hi\n\nAssistant:", 3), ("a\tb\nc", 3)],
)
def test_count_tokens_counts_whitespace_separated_words(text: str, tokens: int) -> None:
    """One token per whitespace-separated word, whatever the whitespace."""
    assert count_tokens(text) == tokens


def test_reply_echoes_the_last_user_message_then_filler() -> None:
    """The reply starts with the last user message's words and continues with vocabulary words."""
    reply = fake_reply(input_text="x", last_user_text="hello   there\nfriend", max_tokens=100)
    words = reply.text.split()
    assert words[:3] == ["hello", "there", "friend"]
    assert 8 <= len(words) - 3 <= 24
    assert set(words[3:]) <= set(VOCABULARY)
    assert reply.stop_reason == "end_turn"
    assert reply.stop_sequence is None
    assert reply.output_tokens == len(words)


def test_reply_is_deterministic_and_seeded() -> None:
    """Same input and seed give the same reply; another seed or input gives another."""
    first = fake_reply(input_text="prompt", last_user_text="hi", max_tokens=50, seed=1)
    assert fake_reply(input_text="prompt", last_user_text="hi", max_tokens=50, seed=1) == first
    others = {
        fake_reply(input_text="prompt", last_user_text="hi", max_tokens=50, seed=2).text,
        fake_reply(input_text="other prompt", last_user_text="hi", max_tokens=50, seed=1).text,
    }
    assert first.text not in others


def test_echo_is_capped() -> None:
    """At most ECHO_WORDS words of the user message are echoed."""
    long_message = " ".join(f"w{i}" for i in range(200))
    reply = fake_reply(input_text=long_message, last_user_text=long_message, max_tokens=1000, reply_tokens=100)
    assert reply.text.split()[:ECHO_WORDS] == long_message.split()[:ECHO_WORDS]
    assert reply.text.split()[ECHO_WORDS] in VOCABULARY


def test_max_tokens_cuts_the_reply() -> None:
    """A reply longer than max_tokens is cut to exactly max_tokens tokens with stop_reason max_tokens."""
    reply = fake_reply(input_text="p", last_user_text="one two three four five", max_tokens=3)
    assert reply.text == "one two three"
    assert (reply.stop_reason, reply.stop_sequence, reply.output_tokens) == ("max_tokens", None, 3)


@pytest.mark.parametrize(
    ("reply_tokens", "max_tokens", "reason"), [(1000, 1000, "end_turn"), (5000, 1000, "max_tokens")]
)
def test_reply_tokens_sets_the_natural_length(reply_tokens: int, max_tokens: int, reason: str) -> None:
    """reply_tokens=N gives N tokens, cut at max_tokens; a reply exactly at max_tokens ends naturally."""
    reply = fake_reply(input_text="p", last_user_text="hi", max_tokens=max_tokens, reply_tokens=reply_tokens)
    assert reply.output_tokens == min(reply_tokens, max_tokens)
    assert reply.stop_reason == reason


def test_zero_tokens() -> None:
    """max_tokens=0 (allowed for text completions) gives an empty completion stopped by max_tokens."""
    reply = fake_reply(input_text="p", last_user_text="hi", max_tokens=0, text_completion=True)
    assert (reply.text, reply.stop_reason, reply.output_tokens) == ("", "max_tokens", 0)


def test_stop_sequence_cuts_before_the_earliest_hit() -> None:
    """The text ends just before the earliest stop sequence, which is reported."""
    reply = fake_reply(
        input_text="p", last_user_text="alpha beta STOP gamma END delta", max_tokens=100, stop_sequences=["END", "STOP"]
    )
    assert reply.text == "alpha beta "
    assert (reply.stop_reason, reply.stop_sequence, reply.output_tokens) == ("stop_sequence", "STOP", 2)


def test_text_completion_natural_end_is_the_human_stop() -> None:
    """A text completion that ends naturally reports stop_sequence with "\\n\\nHuman:", and starts with a space."""
    reply = fake_reply(input_text="p", last_user_text="hi", max_tokens=100, text_completion=True)
    assert reply.text.startswith(" hi ")
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", HUMAN_STOP)


def test_large_inputs_are_answered_without_the_cache() -> None:
    """Inputs too big to cache still get the same deterministic reply."""
    big = "word " * 10_000
    first = fake_reply(input_text=big, last_user_text=big, max_tokens=10)
    assert first == fake_reply(input_text=big, last_user_text=big, max_tokens=10)
    assert first.text == " ".join(["word"] * 10)


@pytest.mark.parametrize("chunk_tokens", [1, 2, 5])
def test_fixed_chunk_sizes(chunk_tokens: int) -> None:
    """chunk_tokens=N gives pieces of N words (the last may be shorter)."""
    text = " ".join(f"w{i}" for i in range(11))
    chunks = split_chunks(text, chunk_tokens)
    assert [count_tokens(chunk) for chunk in chunks[:-1]] == [chunk_tokens] * (len(chunks) - 1)
    assert 1 <= count_tokens(chunks[-1]) <= chunk_tokens


def test_default_chunks_have_one_to_three_words_and_are_seeded() -> None:
    """Without chunk_tokens, piece sizes vary between 1 and 3 words, the same for the same seed."""
    text = " ".join(f"w{i}" for i in range(300))
    chunks = split_chunks(text, None, 42)
    assert {count_tokens(chunk) for chunk in chunks[:-1]} == {1, 2, 3}
    assert chunks == split_chunks(text, None, 42)


@given(text=st.text(alphabet=st.sampled_from("ab \n\t"), max_size=60), chunk_tokens=st.none() | st.integers(1, 4))
def test_chunks_join_back_to_the_text(text: str, chunk_tokens: int | None) -> None:
    """Joining the pieces restores the text exactly, and no piece is empty."""
    chunks = split_chunks(text, chunk_tokens, 7)
    assert "".join(chunks) == text
    assert all(chunks)
