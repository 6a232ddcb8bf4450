"""Where every benchmark writes its figures, so the README's tables are built from committed files.

Each benchmark script saves one JSON document, ``benchmarks/results/<name>.json``, holding the machine, the
versions, the commit and the date beside its data; ``benchmarks/report.py`` renders the README's tables from
those files. A figure in the README that no file here backs is a figure nobody can regenerate.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from _harness import ROOT, package_version

RESULTS = Path(__file__).resolve().parent / "results"
VERSIONED = (
    "bedrock-chat",
    "aiohttp",
    "httpx",
    "httpcore",
    "httpx-aiohttp",
    "aiobotocore",
    "botocore",
    "anthropic",
    "uvloop",
    "opentelemetry-api",
    "opentelemetry-sdk",
)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


def machine() -> str:
    """``"<cores> x <cpu model>"``: figures from different machines are not comparable, so each says where."""
    model = platform.processor() or platform.machine()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} x {model}"


def metadata(**extra: Any) -> dict[str, Any]:
    """The machine, Python, package versions, commit and date a run was measured on (plus ``extra``)."""
    return {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": bool(_git("status", "--porcelain", "--", "bedrock_chat")),
        "versions": {name: package_version(name) for name in VERSIONED},
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        **extra,
    }


def json_safe(value: Any) -> Any:
    """NaN (a failed measurement) -> null: strict JSON, readable by any tool."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def save(name: str, data: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """Write ``results/<name>.json``: ``{"benchmark", "meta", "data"}`` (meta defaults to :func:`metadata`)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = json_safe({"benchmark": name, "meta": meta if meta is not None else metadata(), "data": data})
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
    return path


def load(name: str) -> dict[str, Any]:
    """Read back what :func:`save` wrote (``FileNotFoundError`` names the benchmark to run)."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the benchmark that writes {name!r}")
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def caption(document: dict[str, Any], command: str) -> str:
    """The line under a rendered table: where and when it was measured, and the command that measures it again.

    A quick run (``meta["quick"]``) says so, so a smoke run's figures never pass for a full run's.
    """
    meta = document["meta"]
    dirty = " + uncommitted changes" if meta.get("dirty") else ""
    quick = "; **quick run** (smoke-test sizes, not for comparison)" if meta.get("quick") else ""
    return (
        f"_{meta['machine']}; Python {meta['python']}; bedrock_chat at {meta['commit']}{dirty}; "
        f"{meta['started']}{quick}. Measured by `{command}`._"
    )
