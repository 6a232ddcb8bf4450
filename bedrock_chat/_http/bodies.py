"""A response body read under a size cap: the whole of it, or ResponseTooLargeError past the cap.

For bodies without a Content-Length (chunked), which httpcore2's and httpx's own transports hand over
as async generators of chunks: at most the cap and one chunk are taken, and the generator is closed
here, not by the garbage collector, whatever happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

from .._errors import ResponseTooLargeError

__all__ = ["collect_capped"]


async def collect_capped(chunks: AsyncGenerator[bytes, None], limit: int, status: int) -> bytes:
    """The chunks joined, or ResponseTooLargeError (naming ``status`` and ``limit``) once they pass ``limit``."""
    parts: list[bytes] = []
    total = 0
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            total += len(chunk)
            if total > limit:
                raise ResponseTooLargeError.past(status=status, limit=limit)
            parts.append(chunk)
    return b"".join(parts)
