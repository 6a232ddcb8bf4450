"""Reliability tests: ``soak`` items run only when selected with ``-m soak``; figures on request.

Set ``RELIABILITY_FIGURES=1`` to have the measurements of the run (see ``reliability_helpers.FIGURES``)
printed at the end, with the machine they were taken on.
"""

from __future__ import annotations

import os

import pytest

from reliability.reliability_helpers import FIGURES, machine


def _soak_selected(config: pytest.Config) -> bool:
    """``-m`` names the soak marker (``-m soak``, ``-m "soak and not slow"``...)."""
    return "soak" in (config.getoption("markexpr", default="") or "")


#: A soak test may run for many minutes: pytest-timeout's 120 s per test (pyproject) is for CI-sized tests.
SOAK_TIMEOUT = 3600


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the long-running ``soak`` variants unless the run selected them; give them time when it did."""
    selected = _soak_selected(config)
    skip = pytest.mark.skip(reason="soak variant: run with -m soak")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(pytest.mark.timeout(SOAK_TIMEOUT) if selected else skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures measured in this run when RELIABILITY_FIGURES is set."""
    if not os.environ.get("RELIABILITY_FIGURES") or not FIGURES:
        return
    terminalreporter.section("reliability figures")
    terminalreporter.write_line(f"machine: {machine()}")
    for name in sorted(FIGURES):
        terminalreporter.write_line(f"{name}: {FIGURES[name]}")
