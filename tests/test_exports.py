"""The public surface: a sorted ``__all__`` of names that exist, and nothing private leaking out."""

from __future__ import annotations
import __future__

import subprocess
import sys
import types

import bedrock_chat


def test_all_is_sorted() -> None:
    """``__all__`` is in plain ``sorted()`` order, so additions land in one predictable place."""
    assert bedrock_chat.__all__ == sorted(bedrock_chat.__all__)


def test_all_has_no_duplicates() -> None:
    """Each public name is listed once."""
    assert len(set(bedrock_chat.__all__)) == len(bedrock_chat.__all__)


def test_every_exported_name_exists() -> None:
    """Every name in ``__all__`` is an attribute of the package (``from bedrock_chat import *`` works)."""
    missing = [name for name in bedrock_chat.__all__ if not hasattr(bedrock_chat, name)]
    assert missing == []
    namespace: dict[str, object] = {}
    exec("from bedrock_chat import *", namespace)
    assert set(bedrock_chat.__all__) <= set(namespace)


def test_no_private_or_module_names_exported() -> None:
    """No exported name is private or a module (such as ``_client``)."""
    assert [name for name in bedrock_chat.__all__ if name.startswith("_")] == []
    assert [name for name in bedrock_chat.__all__ if isinstance(getattr(bedrock_chat, name), types.ModuleType)] == []


def test_every_public_attribute_is_exported() -> None:
    """Anything public the package namespace holds is in ``__all__`` (explicit imports only)."""
    public = {
        name
        for name, value in vars(bedrock_chat).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and not isinstance(value, __future__._Feature)  # ``from __future__ import annotations``
    }
    assert public - set(bedrock_chat.__all__) == set()


def test_exported_objects_are_defined_in_the_package() -> None:
    """Exported classes and functions come from bedrock_chat's own modules, not a re-exported dependency."""
    callables = [getattr(bedrock_chat, name) for name in bedrock_chat.__all__ if callable(getattr(bedrock_chat, name))]
    assert len(callables) > 30  # the check below must not pass vacuously
    for value in callables:
        assert value.__module__.startswith("bedrock_chat."), value


def test_import_does_not_load_botocore() -> None:
    """``import bedrock_chat`` stays cheap: botocore is imported only when the credential chain is needed."""
    code = "import sys, bedrock_chat; print('botocore' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_version_is_a_string() -> None:
    """The package carries its version."""
    assert isinstance(bedrock_chat.__version__, str)
    assert bedrock_chat.__version__
