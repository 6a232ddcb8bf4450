"""Prompt-caching breakpoints: validated before I/O, and checked against the reply's usage afterwards.

Theory of operation: a ``cache_control`` marker (``{"type": "ephemeral"}``, optionally ``"ttl": "5m"
| "1h"``) on a tool definition, a system block or a message content block is a *breakpoint*: the
service caches the prompt prefix up to and including that block. :func:`check_cache_control` checks
one marker's form where it is found (``_core.prompt`` for the conversation, ``_core.protocol`` for
tools); :func:`plan_cache` then checks the request as a whole against the rules and the registry, and
returns a :class:`CachePlan` -- or None when there is no breakpoint, so requests without caching pay
for nothing beyond the marker lookups.

Rules, each a 400 from the service if broken (so refused here, before any I/O):

- at most 4 breakpoints per request (``CLAUDE_REQUEST_FEATURES_2026.md``);
- ``ttl`` is ``"5m"`` or ``"1h"``, and ``"1h"`` only on models whose registry entry says
  ``cache_ttl_1h`` (unknown models are left to the service);
- in the prompt's order (tools, then system, then messages), a 1-hour breakpoint may not follow a
  5-minute one (platform.claude.com ``build-with-claude/prompt-caching``, "Mixing different TTLs":
  longer-TTL entries must come first).

Below the model's minimum cacheable prefix the service caches nothing and says nothing: both cache
counters are zero. :func:`cache_floor_warning` turns that silence into a message once the reply is in:
when breakpoints were set, nothing was written or read, and the prefix up to the last breakpoint is
under the registry's floor. The prefix is exact when the whole prompt is under the floor (the reply's
``input_tokens`` is then an upper bound of it); otherwise it is estimated as the input tokens times the
share of the prompt's characters before the breakpoint's end.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from .._errors import CacheBreakpointWarning, InvalidRequestError
from .._types import Usage
from .models import ResolvedModel
from .text import text_chars

#: A breakpoint below the model's floor is logged at WARNING (the caller should act), besides the warning.
_log = logging.getLogger(__name__)

__all__ = [
    "CACHE_TTLS",
    "MAX_BREAKPOINTS",
    "CachePlan",
    "cache_floor_warning",
    "check_cache_control",
    "plan_cache",
    "warn_if_uncached",
]

#: The ``cache_control.ttl`` values, shortest first; an absent ttl is the 5-minute default.
CACHE_TTLS = ("5m", "1h")
DEFAULT_TTL = "5m"
#: Breakpoints per request (more is a 400 ValidationException).
MAX_BREAKPOINTS = 4
_CACHE_CONTROL_KEYS = frozenset({"type", "ttl"})


def check_cache_control(value: object, where: str) -> str:
    """One ``cache_control`` marker's form; returns its ttl (``"5m"`` when absent)."""
    if not isinstance(value, Mapping) or value.get("type") != "ephemeral":
        raise InvalidRequestError(where, f'must be {{"type": "ephemeral"}} (optionally with "ttl"), got {value!r}')
    unknown = set(value) - _CACHE_CONTROL_KEYS
    if unknown:
        raise InvalidRequestError(where, f"unknown key(s) {sorted(map(str, unknown))}; allowed: type, ttl")
    ttl = value.get("ttl", DEFAULT_TTL)
    if ttl not in CACHE_TTLS:
        raise InvalidRequestError(f"{where}.ttl", f"must be one of {', '.join(map(repr, CACHE_TTLS))}, got {ttl!r}")
    return str(ttl)


@attrs.frozen
class CachePlan:
    """The breakpoints of one request and what is needed to judge the reply's cache usage.

    ``breakpoints`` are ``(where, ttl)`` in prompt order; ``prefix_chars`` counts the prompt's
    characters up to the end of the last breakpoint's block, ``total_chars`` the whole prompt's;
    ``floor`` is the model's minimum cacheable prefix (None: not published).
    """

    breakpoints: tuple[tuple[str, str], ...]
    floor: int | None
    prefix_chars: int
    total_chars: int


#: Media sources (base64) and cache markers are not prompt text.
_NOT_TEXT = frozenset({"source", "cache_control"})


def _chars(value: object) -> int:
    """Characters of the strings in a JSON-like value (media sources and cache markers skipped)."""
    return text_chars(value, skip=_NOT_TEXT)


SystemPrompt = str | Sequence[Mapping[str, Any]] | None


def _blocks_in_order(
    tools: Sequence[Mapping[str, Any]], system: SystemPrompt, turns: Sequence[Any]
) -> Iterator[Mapping[str, Any] | str]:
    """Every cacheable piece in the order the service renders the prompt: tools, system, messages."""
    yield from tools
    yield from [system] if isinstance(system, str) else (system or ())
    for turn in turns:  # prompt.Turn (not imported: prompt imports this module)
        content: str | Sequence[Mapping[str, Any]] = turn.content
        yield from [content] if isinstance(content, str) else content


def _markers(piece: Mapping[str, Any] | str) -> Iterator[tuple[Mapping[str, Any], int]]:
    """The piece's own marker, then those inside a ``tool_result``'s content, each with the chars up to its block."""
    if isinstance(piece, str):
        return
    nested = piece.get("content") if piece.get("type") == "tool_result" else None
    if isinstance(nested, list):
        seen = _chars({k: v for k, v in piece.items() if k != "content"})
        for inner in nested:
            seen += _chars(inner)
            if isinstance(inner, Mapping) and "cache_control" in inner:
                yield inner, seen
    if "cache_control" in piece:
        yield piece, _chars(piece)


def plan_cache(
    model: ResolvedModel,
    breakpoints: Sequence[tuple[str, str]],
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    system: SystemPrompt = None,
    turns: Sequence[Any] = (),
) -> CachePlan | None:
    """Check the request's breakpoints as a whole; None when it has none.

    ``breakpoints`` are the conversation's (system, then messages), found and checked for form while it
    was normalised; tool definitions are checked here. Raises InvalidRequestError naming the field.
    """
    tool_marks = [
        (f"tools[{i}].cache_control", check_cache_control(tool["cache_control"], f"tools[{i}].cache_control"))
        for i, tool in enumerate(tools)
        if "cache_control" in tool
    ]
    every = [*tool_marks, *breakpoints]
    if not every:
        return None
    if len(every) > MAX_BREAKPOINTS:
        where = every[MAX_BREAKPOINTS][0]
        raise InvalidRequestError(
            where, f"is cache breakpoint {MAX_BREAKPOINTS + 1}: a request takes at most {MAX_BREAKPOINTS}"
        )
    info = model.info
    seen_short: str | None = None
    for where, ttl in every:
        if ttl == "1h":
            if info is not None and not info.cache_ttl_1h:
                raise InvalidRequestError(f"{where}.ttl", f"{info.name} has no 1-hour cache: use '5m' (the default)")
            if seen_short is not None:
                raise InvalidRequestError(
                    f"{where}.ttl", f"a '1h' breakpoint must come before every '5m' one (first: {seen_short})"
                )
        elif seen_short is None:
            seen_short = where
    # Characters up to the end of the last breakpoint's block, for the floor estimate after the reply.
    total = prefix = 0
    for piece in _blocks_in_order(tools, system, turns):
        for _marker, upto in _markers(piece):
            prefix = total + upto
        total += len(piece) if isinstance(piece, str) else _chars(piece)
    floor = info.cache_min_tokens if info is not None else None
    return CachePlan(tuple(every), floor, prefix, total)


def cache_floor_warning(plan: CachePlan | None, usage: Usage, model_name: str) -> str | None:
    """The warning to give when breakpoints cached nothing because their prefix is under the model's floor.

    None when there were no breakpoints, no floor is known, the service did not report cache counters,
    something was written or read, or the prefix reaches the floor (then the cause is something else).
    """
    if plan is None or plan.floor is None:
        return None
    read, written = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    if (read is None and written is None) or (read or 0) > 0 or (written or 0) > 0:
        return None
    if usage.input_tokens is None:
        return None
    whole = usage.input_tokens
    if whole < plan.floor:
        return (
            f"{len(plan.breakpoints)} cache breakpoint(s) set but nothing was cached: the whole prompt is "
            f"{whole} input tokens, under {model_name}'s {plan.floor}-token minimum cacheable prefix "
            f"(Bedrock caches nothing below it and reports no error)"
        )
    estimate = whole * plan.prefix_chars // plan.total_chars if plan.total_chars else whole
    if estimate < plan.floor:
        return (
            f"{len(plan.breakpoints)} cache breakpoint(s) set but nothing was cached: the prefix up to the last "
            f"breakpoint is about {estimate} of the prompt's {whole} input tokens, under {model_name}'s "
            f"{plan.floor}-token minimum cacheable prefix (Bedrock caches nothing below it and reports no error)"
        )
    return None


def warn_if_uncached(plan: CachePlan | None, usage: Usage, model_name: str, *, stacklevel: int) -> None:
    """Emit :class:`CacheBreakpointWarning` when :func:`cache_floor_warning` has something to say."""
    if plan is None:
        return
    message = cache_floor_warning(plan, usage, model_name)
    if message is not None:
        warnings.warn(message, CacheBreakpointWarning, stacklevel=stacklevel + 1)
        _log.warning("%s", message)  # the caller should act: logged too, for services that watch logs
