"""How much text a JSON-like request part holds: the measure behind token estimates before sending.

The batch scheduler charges rate limits with it, and the cache-floor check estimates a breakpoint's
share of the prompt with it. Media ``source`` blocks are skipped: their base64 is not text the model
reads as tokens of the same size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["text_chars"]


def text_chars(value: object, *, skip: frozenset[str] = frozenset({"source"})) -> int:
    """Characters of every string in ``value`` (nested dicts and lists), leaving out the values of ``skip`` keys."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, Mapping):
            stack.extend(v for k, v in item.items() if k not in skip)
        elif isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray)):
            stack.extend(item)
    return total
