"""Run an emulator on its own event loop in a daemon thread, for synchronous code and test fixtures.

The thread owns the loop from start to finish (``anyio.run``); the caller only ever touches the
emulator's thread-safe surface (options, faults, the request log). Start-up is bounded: if the loop
has not bound its port in ``startup_timeout`` seconds, or binding fails, the caller gets the error.
Stopping sets an ``anyio.Event`` inside the loop (through its event-loop token), which ends the
``async with`` and so every connection; the thread is then joined, also with a bound.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import anyio
import anyio.from_thread
import anyio.lowlevel

from ._limits import ServerLimits
from ._options import EmulatorOptions
from ._server import BedrockEmulator

__all__ = ["run_emulator_in_thread"]


class _Runner:
    """State shared between the caller's thread and the emulator's."""

    def __init__(self, emulator: BedrockEmulator) -> None:
        self.emulator = emulator
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.token: anyio.lowlevel.EventLoopToken | None = None
        self.stop: anyio.Event | None = None

    async def main(self) -> None:
        async with self.emulator:
            self.stop = anyio.Event()
            self.token = anyio.lowlevel.current_token()
            self.ready.set()
            await self.stop.wait()

    def run(self, backend: str) -> None:
        try:
            anyio.run(self.main, backend=backend)
        except BaseException as exc:  # handed to the caller's thread, which re-raises it
            self.failure = exc
        finally:
            self.ready.set()


@contextlib.contextmanager
def run_emulator_in_thread(
    options: EmulatorOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_recorded_requests: int = 1000,
    limits: ServerLimits | None = None,
    backend: str = "asyncio",
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
) -> Iterator[BedrockEmulator]:
    """``with run_emulator_in_thread() as emu:`` -- a running :class:`BedrockEmulator` served from a daemon thread.

    Args:
        options, host, port, max_recorded_requests, limits: as for :class:`BedrockEmulator`.
        backend: the anyio backend of the thread's loop (``asyncio`` or ``trio``).
        startup_timeout, shutdown_timeout: seconds to wait for the port to be bound / the thread to end.

    Raises:
        TimeoutError: the server did not start (or stop) in time.
        OSError: binding failed (e.g. the port is in use).
    """
    emulator = BedrockEmulator(
        options, host=host, port=port, max_recorded_requests=max_recorded_requests, limits=limits
    )
    runner = _Runner(emulator)
    thread = threading.Thread(target=runner.run, args=(backend,), name="bedrock-emulator", daemon=True)
    thread.start()
    if not runner.ready.wait(startup_timeout):
        raise TimeoutError(f"the emulator did not start within {startup_timeout} s")
    if runner.failure is not None:
        thread.join(shutdown_timeout)
        raise runner.failure
    try:
        yield emulator
    finally:
        stop, token = runner.stop, runner.token
        assert stop is not None
        assert token is not None
        with contextlib.suppress(RuntimeError):  # the loop already ended (its failure is raised below)
            anyio.from_thread.run_sync(stop.set, token=token)
        thread.join(shutdown_timeout)
        if thread.is_alive():
            raise TimeoutError(f"the emulator did not stop within {shutdown_timeout} s")
        if runner.failure is not None:
            raise runner.failure
