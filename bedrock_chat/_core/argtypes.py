"""Argument types for the command lines: numbers with bounds, refused by argparse with a clear message.

Shared by ``bedrock-chat chat``/``batch`` and the emulator's flags, so a bad value reads the same
everywhere (exit code 2, "argument --x: '3' must be between 0 and 1"). ``non_empty`` is for text flags
whose empty value would otherwise be taken as "not given" further on, silently.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

__all__ = ["bounded", "non_empty"]

N = TypeVar("N", int, float)


def bounded(kind: Callable[[str], N], minimum: N | None = None, maximum: N | None = None) -> Callable[[str], N]:
    """An argparse ``type=`` that parses ``kind`` and checks ``minimum <= value <= maximum``."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value != value:  # NaN passes every comparison
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}")
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{text!r} must be between {minimum} and {maximum}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text!r} must be <= {maximum}")
        return value

    return parse


def non_empty(text: str) -> str:
    """An argparse ``type=`` for text that must not be empty (``--region ''`` is a mistake, not "unset")."""
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text
