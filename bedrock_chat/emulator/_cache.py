"""The emulator's prompt cache: breakpoints, prefixes, floors, TTLs and the usage Bedrock reports.

Rules (from the spec's "Prompt caching" section and Anthropic's prompt-caching docs; tests compute
expectations from them):

- **Blocks and prefix.** A request is a sequence of blocks in Anthropic's cache order: each ``tools``
  entry, then the ``system`` prompt (a string is one block, a list one block per entry), then each
  message's content (a string is one block, a list one block per entry). The prefix up to a block is
  keyed by a hash chain over the model id and every block up to it (its role or section and its JSON,
  ``cache_control`` left out: moving a breakpoint does not change the prefix it closes).
- **Breakpoints.** A block with ``cache_control`` (``{"type": "ephemeral"}``, optionally ``"ttl": "5m"
  | "1h"``) is a breakpoint; at most :data:`MAX_BREAKPOINTS` per request (a 5th is a 400). ``1h`` needs a
  model that takes it (``_features``).
- **Tokens.** A block counts the emulator's tokens of its text (``_fake_model.count_tokens``: text
  blocks, string contents, ``tool_result`` texts, the system prompt; tools and images count nothing),
  so the three usage counts add up to the ``input_tokens`` a request without breakpoints reports.
- **Read.** For each breakpoint, the prefixes ending at it and at up to :data:`LOOKBACK` blocks before it
  are looked up; the longest live one is read (``cache_read_input_tokens``) and its TTL restarts.
- **Write.** Every breakpoint after the read point whose prefix has at least the model's floor of
  tokens is written with its TTL (below the floor: nothing cached, no error).
  ``cache_creation_input_tokens`` is the tokens from the read point to the last prefix written, each
  stretch counted under the TTL of the breakpoint that closes it (``cache_creation``'s
  ``ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``); ``input_tokens`` is the rest.
- **Clock.** TTLs run on ``EmulatorOptions.cache_clock`` (monotonic seconds by default; a test passes its
  own to advance time). An entry is live while ``now < expires``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from ._body import BodyError
from ._fake_model import count_tokens

__all__ = [
    "LOOKBACK",
    "MAX_BREAKPOINTS",
    "TTL_SECONDS",
    "CachePlan",
    "CacheUsage",
    "PromptCache",
    "plan_cache",
    "split_input",
]

MAX_BREAKPOINTS = 4
#: Blocks before a breakpoint at which an earlier write is still found (Anthropic: "about 20").
LOOKBACK = 20
TTL_SECONDS: Mapping[str, float] = {"5m": 300.0, "1h": 3600.0}


@attrs.frozen
class CachePlan:
    """A request's blocks as the cache sees them: the prefix key and token count after each block.

    ``breakpoints`` are ``(block index, ttl)`` pairs, the index counting blocks from 1 (the prefix
    ``keys[index - 1]`` ends with that block).
    """

    keys: tuple[bytes, ...]
    tokens: tuple[int, ...]
    breakpoints: tuple[tuple[int, str], ...]


@attrs.frozen
class CacheUsage:
    """What one request read from and wrote to the cache, in tokens."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def write(self) -> int:
        """``cache_creation_input_tokens``."""
        return self.write_5m + self.write_1h

    def fields(self) -> dict[str, object]:
        """The usage fields Bedrock reports for a request with breakpoints."""
        return {
            "cache_creation_input_tokens": self.write,
            "cache_read_input_tokens": self.read,
            "cache_creation": {"ephemeral_5m_input_tokens": self.write_5m, "ephemeral_1h_input_tokens": self.write_1h},
        }


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(block) for block in content if isinstance(block, dict))
    return 0


def _block_tokens(block: Mapping[str, Any]) -> int:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return count_tokens(text) if isinstance(text, str) else 0
    if kind == "tool_result":
        return _content_tokens(block.get("content"))
    return 0


def _blocks(body: Mapping[str, Any]) -> Iterator[tuple[str, object, int]]:
    """``(section, block, tokens)`` in cache order (the body is already validated)."""
    for tool in body.get("tools") or ():
        yield "tools", tool, 0
    system = body.get("system")
    if isinstance(system, str):
        yield "system", system, count_tokens(system)
    elif isinstance(system, list):
        for block in system:
            yield "system", block, _block_tokens(block)
    for message in body["messages"]:
        content = message["content"]
        role = message["role"]
        if isinstance(content, str):
            yield role, content, count_tokens(content)
        else:
            for block in content:
                yield role, block, _block_tokens(block)


def _ttl(path: str, value: object, ttl_1h: bool) -> str:
    if not isinstance(value, dict) or value.get("type") != "ephemeral":
        raise BodyError(f"{path}.cache_control.type: Input should be 'ephemeral'")
    extra = set(value) - {"type", "ttl"}
    if extra:
        raise BodyError(f"{path}.cache_control.{sorted(extra)[0]}: Extra inputs are not permitted")
    ttl = value.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise BodyError(f"{path}.cache_control.ttl: Input should be '5m' or '1h'")
    if ttl == "1h" and not ttl_1h:
        raise BodyError(f"{path}.cache_control.ttl: a 1h cache TTL is not supported for this model")  # UNVERIFIED
    return str(ttl)


def _paths(body: Mapping[str, Any]) -> Iterator[str]:
    """The JSON path of each block, in the order of :func:`_blocks` (for error messages only)."""
    for i, _ in enumerate(body.get("tools") or ()):
        yield f"tools.{i}"
    system = body.get("system")
    if isinstance(system, str):
        yield "system"
    elif isinstance(system, list):
        yield from (f"system.{j}" for j in range(len(system)))
    for i, message in enumerate(body["messages"]):
        content = message["content"]
        if isinstance(content, str):
            yield f"messages.{i}.content"
        else:
            yield from (f"messages.{i}.content.{j}" for j in range(len(content)))


def _has_breakpoint(body: Mapping[str, Any]) -> bool:
    """A cheap scan, so that a request without ``cache_control`` costs no hashing."""
    return any(isinstance(block, dict) and "cache_control" in block for _, block, _ in _blocks(body))


def plan_cache(body: Mapping[str, Any], model_id: str, *, ttl_1h: bool) -> CachePlan | None:
    """The cache plan of a validated Messages body, or None without breakpoints.

    Raises:
        BodyError: more than :data:`MAX_BREAKPOINTS` breakpoints, or a bad ``cache_control``.
    """
    if not _has_breakpoint(body):
        return None
    digest = hashlib.sha256(model_id.encode()).digest()
    keys: list[bytes] = []
    tokens: list[int] = []
    breakpoints: list[tuple[int, str]] = []
    total = 0
    for (section, block, block_tokens), path in zip(_blocks(body), _paths(body), strict=True):
        shown = block
        if isinstance(block, dict) and "cache_control" in block:
            breakpoints.append((len(keys) + 1, _ttl(path, block["cache_control"], ttl_1h)))
            shown = {key: value for key, value in block.items() if key != "cache_control"}
        encoded = json.dumps([section, shown], sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.sha256(digest + encoded).digest()
        total += block_tokens
        keys.append(digest)
        tokens.append(total)
    if len(breakpoints) > MAX_BREAKPOINTS:
        # Anthropic's wording for the same rule.
        raise BodyError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(breakpoints)}."
        )
    return CachePlan(tuple(keys), tuple(tokens), tuple(breakpoints))


class PromptCache:
    """Live prefixes: key -> (expiry, ttl seconds). One per emulator; :meth:`clear` on reset."""

    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[float, float]] = {}

    def clear(self) -> None:
        """Forget every prefix."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, plan: CachePlan, *, floor: int, clock: Callable[[], float]) -> CacheUsage:
        """Read the longest live prefix, write the breakpoints after it (rules in the module docstring)."""
        now = clock()
        entries = self._entries
        for key in [key for key, (expires, _) in entries.items() if expires <= now]:
            del entries[key]
        read_at = 0
        for index, _ in plan.breakpoints:
            for at in range(index, max(0, index - LOOKBACK - 1), -1):
                if at > read_at and plan.keys[at - 1] in entries:
                    read_at = at
                    break
        if read_at:
            key = plan.keys[read_at - 1]
            entries[key] = (now + entries[key][1], entries[key][1])
        written = {"5m": 0, "1h": 0}
        done = read_at
        base = plan.tokens[read_at - 1] if read_at else 0
        for index, ttl in plan.breakpoints:
            if index <= done or plan.tokens[index - 1] < floor:
                continue
            seconds = TTL_SECONDS[ttl]
            entries[plan.keys[index - 1]] = (now + seconds, seconds)
            written[ttl] += plan.tokens[index - 1] - base
            base, done = plan.tokens[index - 1], index
        return CacheUsage(
            read=plan.tokens[read_at - 1] if read_at else 0, write_5m=written["5m"], write_1h=written["1h"]
        )


def split_input(total: int, usage: CacheUsage) -> int:
    """``input_tokens`` once the cache's share is taken out: the tokens after the last cached prefix."""
    return total - usage.read - usage.write
