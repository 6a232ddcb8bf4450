"""bedrock_chat's OpenTelemetry spans and metrics against opentelemetry-instrumentation-botocore's, call for call.

Run: ``python benchmarks/otel_compare.py`` (a few seconds: an in-process emulator, ten calls per side).

Both clients make the same calls (``tests/telemetry_compare.py``: the scenarios and the comparison, shared
with ``tests/telemetry/test_telemetry_compare.py``, which asserts the findings and that this file's results are
current). Saves ``benchmarks/results/otel_compare.json``; :func:`render` gives the README's tables.
Not a timing: the findings are exact and the same on any machine.
"""

from __future__ import annotations

import sys
from typing import Any

from _harness import ROOT, package_version

NAME = "otel_compare"
PEER = "opentelemetry-instrumentation-botocore"


def findings() -> dict[str, Any]:
    """Run the comparison against a fresh in-process emulator (what the test checks the saved file against)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from telemetry_compare import compare

    from bedrock_chat.emulator import EmulatorOptions, run_emulator_in_thread

    with run_emulator_in_thread(EmulatorOptions()) as emu:
        document = compare(emu)
    document.pop("raw")
    document["peer"] = f"{PEER} {package_version(PEER)}"
    return document


def _table(first: str, rows: list[dict[str, Any]], scenarios: list[str]) -> list[str]:
    lines = [f"| {first} | convention | " + " | ".join(scenarios) + " |", "|---" * (len(scenarios) + 2) + "|"]
    for row in rows:
        name = row["name"] if row["name"].startswith("(") else f"`{row['name']}`"
        cells = [cell.replace("|", "vs") for cell in row["cells"]]
        lines.append(f"| {name} | {row['convention']} | " + " | ".join(cells) + " |")
    return lines


def render(document: dict[str, Any]) -> str:
    """The README's tables: span attributes, then metrics, one column per call, from ``results/otel_compare.json``."""
    data = document["data"]
    scenarios = data["scenarios"]
    lines = [
        f"Compared with {data['peer']} (boto3 `bedrock-runtime`, InvokeModel/InvokeModelWithResponseStream) on "
        "the same calls against the emulator. `=`: both record it with the same value; `ours`/`peer`: only one "
        "side records it; `A vs B`: both, different values (ours first); empty: neither. The convention column is "
        "the name's status in the `opentelemetry-semantic-conventions` package.",
        "",
        *_table("span", data["spans"], scenarios),
        "",
        *_table("metric", data["metrics"], scenarios),
    ]
    [names] = [row["cells"] for row in data["spans"] if row["name"] == "(span name)"]
    unended = [label for label, cell in zip(scenarios, names, strict=True) if cell == "ours"]
    if unended:
        lines += [
            "",
            f"{', '.join(unended)}: the peer exported no span (the stream was read to its end but not closed, "
            "and its span ends only on Claude's last event, which it looks for only in a Claude model id).",
        ]
    return "\n".join(lines)


def main() -> int:
    import _results

    path = _results.save(NAME, findings())
    print(render(_results.load(NAME)))
    print(f"written: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
