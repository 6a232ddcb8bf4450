"""Objects that belong to one event loop, for a client that outlives its loops.

A client made at import time may be used by several ``asyncio.run()`` calls in turn, or under trio
after asyncio. Connection pools and locks are bound to the loop they were made in, so the client keeps
one of each per running loop (:class:`PerLoop`), and closes a loop's pool when that loop ends
(:func:`on_loop_end`): ``asyncio.run``, ``asyncio.Runner``, ``anyio.run`` and ``trio.run`` all finalise
the async generators still alive before they finish, and that is the hook used. A loop closed without
that step (a bare ``loop.close()``) is forgotten on the next use from another loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import sniffio

__all__ = ["PerLoop", "current_loop", "loop_is_closed", "on_loop_end"]

T = TypeVar("T")
_sniffio_thread = sniffio.thread_local

#: Closing a pool should take milliseconds; a hung close must not hold a loop's shutdown for ever.
_CLOSE_TIMEOUT = 5.0


def current_loop() -> object:
    """The running asyncio loop, or the current trio run's token: what loop-bound objects belong to.

    Called on every request: sniffio's own two markers are read directly (trio sets the thread's), which
    saves its asyncio probing on the common path.
    """
    if _sniffio_thread.name is None and sniffio.current_async_library_cvar.get() is None:
        return asyncio.get_running_loop()
    if sniffio.current_async_library() == "trio":
        import trio  # imported on use: asyncio programs never need it

        return trio.lowlevel.current_trio_token()
    return asyncio.get_running_loop()


def loop_is_closed(loop: object) -> bool:
    """True for an asyncio loop that was closed (trio runs always finalise, so theirs never linger)."""
    return isinstance(loop, asyncio.AbstractEventLoop) and loop.is_closed()


class PerLoop(Generic[T]):
    """One value per running event loop, made by ``factory`` inside that loop on first use."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[object, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        """This loop's value."""
        loop = current_loop()
        value = self._values.get(loop)
        if value is None:
            value = self._values[loop] = self._factory()
        return value


async def _run_at_end(callback: Callable[[], Awaitable[object]]) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        # trio finalises in a cancelled scope, asyncio after cancelling every task: shield the close.
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + _CLOSE_TIMEOUT
            await callback()


async def on_loop_end(callback: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    """Arrange for ``callback`` to run in this loop when it ends; the returned function runs it now instead.

    Keep the returned function: it holds the async generator whose finalisation runs the callback.
    """
    watcher = _run_at_end(callback)
    await watcher.asend(None)  # the loop registers the generator on its first step
    return watcher.aclose
