"""A dict that fills itself: parsed URLs and the like, computed once per key on the request path.

A client talks to a handful of paths, so parsing each once pays (parsing a URL costs more than
signing). Past ``limit`` keys it starts over instead of growing: no key space can exhaust memory.
A hit is a plain dict lookup; only a miss calls ``make``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["BoundedCache"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """``cache[key]`` is ``make(key)``, computed on the first lookup; cleared when ``limit`` keys are held."""

    __slots__ = ("_limit", "_make")

    def __init__(self, make: Callable[[K], V], limit: int = 1024) -> None:
        super().__init__()
        self._make = make
        self._limit = limit

    def __missing__(self, key: K) -> V:
        if len(self) >= self._limit:
            self.clear()
        value = self[key] = self._make(key)
        return value
