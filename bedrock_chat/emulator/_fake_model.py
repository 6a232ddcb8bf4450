"""The emulator's deterministic fake model: same input and seed, same reply, on every run and machine.

Rules (tests compute expectations from these, so they are part of the API):

- **Tokens.** :func:`count_tokens` counts one token per whitespace-separated word:
  ``len(text.split())``. Input tokens are the words of the text-completion ``prompt``, or of every
  text in a Messages body (the ``system`` text, text blocks, string contents and ``tool_result`` texts;
  images, ``tool_use`` blocks, ``tools`` and other non-text parts count nothing). CountTokens reports
  the same number for the same body (``_count_tokens``).
- **Tool calls.** When a Messages body has ``tools``, ``_tools`` decides whether the reply is a tool
  call instead of the text below (its own rules, including the input and token count).
- **Reply words.** The reply is the words of the last user message (at most :data:`ECHO_WORDS` of them),
  followed by filler words from :data:`VOCABULARY` chosen by a generator seeded with
  ``blake2b(seed, input text)``.
- **Length.** With ``reply_tokens=None`` the natural reply is the echo plus 8 to 24 filler words (the
  count also comes from the hash). ``reply_tokens=N`` makes the natural reply exactly N words. Either
  way the reply is cut at ``max_tokens`` words; so ``reply_tokens >= max_tokens`` yields exactly
  ``max_tokens`` tokens (what benchmarks use for long outputs).
- **Text.** Words joined by single spaces; a text completion starts with one space, as Claude 2's do.
- **Stop sequences.** The text is cut just before the earliest occurrence of any stop sequence. Stop
  reasons: a hit gives ``stop_sequence`` (and the sequence); a cut at ``max_tokens`` gives
  ``max_tokens``; otherwise the natural end: ``end_turn`` for Messages and, for text completions,
  ``stop_sequence`` with ``"\\n\\nHuman:"`` as the real service reports.
- **Output tokens** = ``count_tokens`` of the returned text.
- **Stream chunks.** :func:`split_chunks` cuts the text into pieces of ``chunk_tokens`` words (the last
  may be shorter); with ``chunk_tokens=None`` each piece has 1 to 3 words, the sizes drawn from the same
  seeded generator. Joining the pieces gives the text back exactly.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from collections.abc import Sequence

import attrs

__all__ = [
    "ECHO_WORDS",
    "HUMAN_STOP",
    "VOCABULARY",
    "FakeReply",
    "count_tokens",
    "fake_reply",
    "split_chunks",
]

#: At most this many words of the last user message are echoed.
ECHO_WORDS = 64
#: The built-in stop of the text-completion models.
HUMAN_STOP = "\n\nHuman:"

#: Filler words; a fixed list, so replies never change between versions without a visible diff.
_FILLER = (
    "the model answers with words chosen from a small list so that every reply is easy to check and "
    "tests can compute what to expect without calling any real service at all while benchmarks stay "
    "cheap because nothing here needs more than a hash and a few lookups per token of output text"
)
VOCABULARY: tuple[str, ...] = tuple(_FILLER.split())

_PIECE = re.compile(r"\s*\S+")


def count_tokens(text: str) -> int:
    """The emulator's token count: one token per whitespace-separated word."""
    return len(text.split())


@attrs.frozen
class FakeReply:
    """One reply: its text, why it stopped, the stop sequence hit (if any) and its token count."""

    text: str
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    rng_seed: int


def _seed_for(seed: int, input_text: str) -> int:
    digest = hashlib.blake2b(input_text.encode("utf-8", "surrogatepass"), digest_size=8, key=str(seed).encode())
    return int.from_bytes(digest.digest(), "big")


def fake_reply(
    *,
    input_text: str,
    last_user_text: str,
    max_tokens: int,
    stop_sequences: Sequence[str] = (),
    seed: int = 0,
    reply_tokens: int | None = None,
    text_completion: bool = False,
) -> FakeReply:
    """The reply for one request, by the rules in the module docstring."""
    args = (input_text, last_user_text, max_tokens, tuple(stop_sequences), seed, reply_tokens, text_completion)
    if len(input_text) <= _CACHE_INPUT_LIMIT:
        return _cached_reply(*args)  # benchmarks repeat one prompt: skip the generator entirely
    return _reply(*args)


def _reply(
    input_text: str,
    last_user_text: str,
    max_tokens: int,
    stop_sequences: tuple[str, ...],
    seed: int,
    reply_tokens: int | None,
    text_completion: bool,
) -> FakeReply:
    rng_seed = _seed_for(seed, input_text)
    rng = random.Random(rng_seed)
    echo = last_user_text.split()[:ECHO_WORDS]
    natural = reply_tokens if reply_tokens is not None else len(echo) + 8 + rng.randrange(17)
    count = min(natural, max_tokens)
    words = echo[:count]
    if count > len(words):
        words += rng.choices(VOCABULARY, k=count - len(words))
    text = (" " if text_completion and words else "") + " ".join(words)
    hit_at = -1
    hit: str | None = None
    for sequence in stop_sequences:
        index = text.find(sequence) if sequence else -1
        if index != -1 and (hit_at == -1 or index < hit_at):
            hit_at, hit = index, sequence
    if hit is not None:
        text = text[:hit_at]
        stop_reason, stop = "stop_sequence", hit
    elif count < natural:
        stop_reason, stop = "max_tokens", None
    elif text_completion:
        stop_reason, stop = "stop_sequence", HUMAN_STOP
    else:
        stop_reason, stop = "end_turn", None
    return FakeReply(text, stop_reason, stop, count_tokens(text), rng_seed)


# Replies are immutable values, so sharing cached ones is safe; big inputs are not cached (memory).
_CACHE_INPUT_LIMIT = 16_384
_cached_reply = functools.lru_cache(maxsize=1024)(_reply)


def split_chunks(text: str, chunk_tokens: int | None, rng_seed: int = 0) -> list[str]:
    """Cut ``text`` into stream pieces of ``chunk_tokens`` words (None: 1 to 3, seeded); ``"".join`` restores it."""
    pieces = _PIECE.findall(text)
    tail = text[sum(map(len, pieces)) :]
    if tail:  # trailing whitespace left by a stop-sequence cut
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    if chunk_tokens is not None:
        size = max(1, chunk_tokens)
        return ["".join(pieces[i : i + size]) for i in range(0, len(pieces), size)]
    rng = random.Random(rng_seed ^ 0x5EED)
    chunks: list[str] = []
    i = 0
    while i < len(pieces):
        size = rng.randint(1, 3)
        chunks.append("".join(pieces[i : i + size]))
        i += size
    return chunks
