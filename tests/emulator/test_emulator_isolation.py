"""The emulator checks the client, so it must not share code with it; and its public surface is explicit."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import bedrock_chat.emulator as emulator_package

EMULATOR_DIR = pathlib.Path(emulator_package.__file__).parent
PACKAGE_DIR = EMULATOR_DIR.parent
#: The client modules the emulator verifies; importing any would make it check itself.
CLIENT_MODULES = (
    "_client",
    "_http.transport",
    "_core.sigv4",
    "_core.prompt",
    "_core.protocol",
    "_core.models",  # the emulator's table of models is its own (emulator/_models.py)
    "_http.credentials",
    "_streaming",
)
#: Pure codecs the emulator may share (both sides must speak them byte for byte anyway), the argument types
#: of its command line, and the public error its options raise (ConfigurationError).
ALLOWED_PROJECT_MODULES = {"_core.argtypes", "_core.eventstream", "_errors", "_types", "_core.sse"}

# The package's own __init__ may import the client for its users; the emulator must not depend on that,
# so the check stands the package up as a bare namespace before importing every emulator module.
_PROBE = f"""
import json, sys, types
package = types.ModuleType("bedrock_chat")
package.__path__ = [{str(PACKAGE_DIR)!r}]
sys.modules["bedrock_chat"] = package
import bedrock_chat.emulator, bedrock_chat.emulator.__main__, bedrock_chat.emulator.pytest_plugin
import bedrock_chat.emulator._cli, bedrock_chat.emulator._thread
print(json.dumps(sorted(name for name in sys.modules if name.startswith("bedrock_chat."))))
"""


def test_importing_the_emulator_loads_no_client_module() -> None:
    """In a fresh interpreter, importing every emulator module loads none of the client's modules."""
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(result.stdout))
    assert not {f"bedrock_chat.{name}" for name in CLIENT_MODULES} & loaded
    assert "bedrock_chat.emulator._auth" in loaded  # the probe did import the emulator


def test_emulator_sources_import_only_allowed_project_modules() -> None:
    """Statically: every ``from ..x import`` in the emulator names an allowed module."""
    for path in EMULATOR_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                assert node.module in ALLOWED_PROJECT_MODULES, f"{path.name} imports ..{node.module}"
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("bedrock_chat."), f"{path.name}: use relative imports"
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("bedrock_chat") for alias in node.names), path.name


def test_public_surface_is_sorted_and_complete() -> None:
    """``__all__`` is sorted and every name in it exists."""
    names = emulator_package.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(emulator_package, name) is not None
    assert {"BedrockEmulator", "EmulatorOptions", "Faults", "run_emulator_in_thread", "count_tokens"} <= set(names)
