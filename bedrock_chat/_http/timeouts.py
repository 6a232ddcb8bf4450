"""Timeouts as ``httpx.Timeout`` values, each bound checked (a type of the I/O side, so not in the core)."""

from __future__ import annotations

import httpx

from .._core.config import validate_seconds

__all__ = ["validate_timeout"]


def validate_timeout(value: object, field: str = "timeout") -> httpx.Timeout:
    """Seconds or an ``httpx.Timeout``, each of its bounds checked (None in a Timeout means unbounded)."""
    if isinstance(value, httpx.Timeout):
        for name, seconds in value.as_dict().items():
            if seconds is not None:
                validate_seconds(seconds, f"{field}.{name}")
        return value
    if value is None:  # httpx's spelling of "no timeout", accepted as it always was
        return httpx.Timeout(None)
    return httpx.Timeout(validate_seconds(value, field))
