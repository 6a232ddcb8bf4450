"""pytest fixtures for the Bedrock emulator (registered as the ``bedrock_chat_emulator`` pytest11 plugin).

- ``bedrock_emulator``: function-scoped. The session's server, reset before and after the test
  (recorded requests, scripted faults, recorded errors, and options back to the session's), and the
  test fails at teardown if the emulator's own code raised while serving it. The server runs in its
  own thread, so sync tests, asyncio tests and trio tests all use it the same way.
- ``bedrock_emulator_server``: session-scoped, the running server itself.
- ``bedrock_emulator_options``: session-scoped :class:`EmulatorOptions` for that server; override it in
  a ``conftest.py`` to change credentials, region or default faults for a whole session.

Imports of the emulator are deferred into the fixtures: the plugin is loaded by every pytest run in an
environment where bedrock_chat is installed, and most of those runs never use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._options import EmulatorOptions
    from ._server import BedrockEmulator

__all__ = ["bedrock_emulator", "bedrock_emulator_options", "bedrock_emulator_server"]


@pytest.fixture(scope="session")
def bedrock_emulator_options() -> EmulatorOptions:
    """Options of the session's emulator (override in a conftest.py to change them)."""
    # the plugin loads in every pytest run, the emulator only for a test that asks (start-up time)
    from ._options import EmulatorOptions

    return EmulatorOptions()


@pytest.fixture(scope="session")
def bedrock_emulator_server(bedrock_emulator_options: EmulatorOptions) -> Iterator[BedrockEmulator]:
    """One emulator for the whole session, served from a daemon thread."""
    # the plugin loads in every pytest run, the emulator only for a test that asks (start-up time)
    from ._thread import run_emulator_in_thread

    with run_emulator_in_thread(bedrock_emulator_options) as emulator:
        yield emulator


@pytest.fixture
def bedrock_emulator(
    bedrock_emulator_server: BedrockEmulator, bedrock_emulator_options: EmulatorOptions
) -> Iterator[BedrockEmulator]:
    """The session's emulator, clean for this test and checked for internal errors after it."""
    emulator = bedrock_emulator_server
    defaults = bedrock_emulator_options
    emulator.options = defaults
    emulator.reset()
    try:
        yield emulator
        if emulator.errors:
            raise AssertionError(f"the Bedrock emulator failed internally: {emulator.errors!r}")
    finally:
        emulator.options = defaults
        emulator.reset()
