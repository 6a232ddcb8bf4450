"""Rebuild the README's benchmark tables from the committed results, or check that they match.

Run: ``python benchmarks/report.py [--check]`` (``python benchmarks/all.py`` runs it after every benchmark).

Each ``<!-- bench:<name> -->`` ... ``<!-- /bench:<name> -->`` section of README.md and benchmarks/README.md is
replaced by what the script that owns ``<name>`` (:data:`BENCHMARKS`) renders from
``benchmarks/results/<name>.json``. A figure typed into a section by hand is overwritten here and fails
``--check`` (and so CI, via tests/test_benchmark_report.py). A section whose results file is missing is an
error naming the command that writes it, never an old table kept. A chart (:data:`CHARTS`) records the
digest of the results it was drawn from, so ``--check`` also fails on a chart older than its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
#: The files whose sections are generated.
DOCUMENTS = (ROOT / "README.md", HERE / "README.md")


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One results document: the script that writes it (and renders it), and how long a full run takes."""

    name: str
    script: str
    minutes: float  # a full run's duration on the 2-core development machine, for all.py's plan and timeout
    args: tuple[str, ...] = ()  # the script's arguments for this document

    @property
    def module(self) -> str:
        return self.script.removesuffix(".py")

    @property
    def command(self) -> str:
        return " ".join([f"python benchmarks/{self.script}", *self.args])


#: Every benchmark whose figures the README shows: results/<name>.json is written by ``script``, whose
#: ``render(document)`` returns the section's markdown. Registered here, run by all.py in this order.
BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark("suite", "run.py", 8.0),
        Benchmark("sigv4", "bench_sigv4.py", 0.2),
        Benchmark("eventstream", "bench_eventstream.py", 0.2),
        Benchmark("sse", "bench_sse.py", 0.2),
        Benchmark("assembly", "bench_assembly.py", 0.2),
        Benchmark("trio", "bench_trio.py", 4.5),
        Benchmark("batch_memory", "bench_batch_memory.py", 1.0),
        Benchmark("emulator", "bench_emulator.py", 0.3),
        Benchmark("streams", "bench_streams.py", 4.0),
        Benchmark("streams_lag", "bench_streams.py", 7.0, ("--interval-ms", "200", "--name", "streams_lag")),
        Benchmark("goodput", "bench_goodput.py", 11.0),
        Benchmark("telemetry", "bench_telemetry.py", 4.0),
        Benchmark("otel_compare", "otel_compare.py", 0.1),
    )
}
#: What a section says until its benchmark has been run and its results committed (see :func:`stale`).
PLACEHOLDER = "_Not measured yet: `python benchmarks/all.py` measures it and fills this in._"
#: Charts drawn from a results document (by ``benchmarks/chart.py``): results name -> PNG under results/.
CHARTS = {"suite": "suite.png"}
#: The PNG text key under which a chart records the digest of the data it was drawn from.
DIGEST_KEY = "bedrock_chat:data-sha256"

_OPEN = re.compile(r"<!-- bench:([a-z0-9_]+) -->")
_SECTION = re.compile(r"(<!-- bench:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /bench:(?P=name) -->)", re.DOTALL)


class ReportError(Exception):
    """A section cannot be rendered: unknown name, unclosed marker, missing results or renderer."""


def data_digest(document: dict[str, Any]) -> str:
    """SHA-256 of a results document's data (canonical JSON): what a chart drawn from it records."""
    canonical = json.dumps(document["data"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def png_text(path: Path) -> dict[str, str]:
    """A PNG's tEXt chunks (no imaging library needed, so CI can check a chart without matplotlib)."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ReportError(f"{path} is not a PNG")
    found: dict[str, str] = {}
    at = 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        chunk = data[at + 8 : at + 8 + length]
        if kind == b"tEXt" and b"\0" in chunk:
            key, value = chunk.split(b"\0", 1)
            found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt" and b"\0" in chunk:
            key, rest = chunk.split(b"\0", 1)
            found[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        at += 12 + length
    return found


def load(name: str, results: Path = RESULTS) -> dict[str, Any]:
    """``results/<name>.json``, or ReportError naming the command that writes it."""
    benchmark = _benchmark(name)
    path = results / f"{name}.json"
    if not path.exists():
        raise ReportError(
            f"{path} is missing: run `{benchmark.command}` (or `python benchmarks/all.py`) to measure {name!r}"
        )
    document: dict[str, Any] = json.loads(path.read_text())
    if document.get("benchmark") != name:
        raise ReportError(f"{path} holds {document.get('benchmark')!r}, not {name!r}")
    return document


def _benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ReportError(f"no benchmark owns the section {name!r} (known: {', '.join(BENCHMARKS)})")
    return BENCHMARKS[name]


def render(name: str, results: Path = RESULTS) -> str:
    """The markdown for section ``name``: its owner's ``render`` applied to its results document."""
    benchmark = _benchmark(name)
    document = load(name, results)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # the scripts import their helpers by plain name
    module = importlib.import_module(benchmark.module)
    renderer = getattr(module, "render", None)
    if not callable(renderer):
        raise ReportError(f"benchmarks/{benchmark.script} defines no render(document) for {name!r}")
    text = renderer(document)
    if not isinstance(text, str):
        raise ReportError(f"benchmarks/{benchmark.script}: render() returned {type(text).__name__}, not str")
    return text.strip("\n")


def sections(text: str) -> list[str]:
    """The names of the generated sections in ``text``; ReportError for an opening marker left unclosed."""
    opened = _OPEN.findall(text)
    closed = [match.group("name") for match in _SECTION.finditer(text)]
    if opened != closed:
        unclosed = sorted(set(opened) - set(closed)) or opened
        raise ReportError(f"unclosed or nested <!-- bench:... --> markers: {', '.join(unclosed)}")
    return closed


def update(text: str, results: Path = RESULTS, *, missing_ok: bool = False) -> str:
    """``text`` with every generated section rendered afresh from ``results``.

    ``missing_ok``: a section whose results file is missing gets :data:`PLACEHOLDER` (never its old table)
    instead of an error; what ``--check`` in CI accepts until the first full run is committed.
    """
    sections(text)

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if missing_ok and not (results / f"{name}.json").exists():
            _benchmark(name)
            print(f"report.py: {name}: no results, placeholder written", file=sys.stderr)
            body = PLACEHOLDER
        else:
            body = render(name, results)
        return f"{match.group(1)}{body}\n{match.group(4)}"

    return _SECTION.sub(replace, text)


def check_charts(text: str, results: Path = RESULTS) -> list[str]:
    """Problems with the charts of the sections in ``text``: missing, or drawn from other data."""
    problems = []
    for name in sections(text):
        if name not in CHARTS:
            continue
        path = results / CHARTS[name]
        if not path.exists():
            problems.append(f"{path} is missing: run `python benchmarks/chart.py`")
        elif png_text(path).get(DIGEST_KEY) != data_digest(load(name, results)):
            problems.append(f"{path} was drawn from other data than {name}.json: run `python benchmarks/chart.py`")
    return problems


def stale(text: str, results: Path = RESULTS, *, missing_ok: bool = False) -> list[str]:
    """The sections of ``text`` that differ from what their results render (``--check``), and stale charts.

    ``missing_ok``: a section whose results are not committed yet passes only while it holds exactly
    :data:`PLACEHOLDER`, so no figure can sit in it unbacked (for CI before the first full run).
    """
    problems = []
    for name in sections(text):
        body = _body(text, name).strip("\n")
        if missing_ok and not (results / f"{name}.json").exists():
            if body != PLACEHOLDER:
                problems.append(f"section {name} has no results file, so it must read {PLACEHOLDER!r}")
        elif body != render(name, results):
            problems.append(f"section {name} differs from {results / (name + '.json')}")
        elif name in CHARTS:
            problems += check_charts(f"<!-- bench:{name} -->\n<!-- /bench:{name} -->", results)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Rewrite the documents (default), or with ``--check`` report what differs and exit 1."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a document is stale")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results directory (default: committed)")
    parser.add_argument(
        "--missing-ok", action="store_true", help="sections without a results file read 'Not measured yet'"
    )
    parser.add_argument("documents", nargs="*", type=Path, help="markdown files (default: both READMEs)")
    args = parser.parse_args(argv)
    problems: list[str] = []
    try:
        for path in args.documents or DOCUMENTS:
            text = path.read_text()
            if args.check:
                problems += [f"{path}: {problem}" for problem in stale(text, args.results, missing_ok=args.missing_ok)]
                continue
            fresh = update(text, args.results, missing_ok=args.missing_ok)
            if fresh != text:
                path.write_text(fresh)
                print(f"updated {path}", file=sys.stderr)
    except ReportError as exc:
        print(f"report.py: {exc}", file=sys.stderr)
        return 1
    for problem in problems:
        print(f"report.py --check: {problem}", file=sys.stderr)
    if problems:
        print("report.py --check: `python benchmarks/report.py` (and chart.py) bring them up to date", file=sys.stderr)
    return 1 if problems else 0


def _body(text: str, name: str) -> str:
    return next(m.group("body") for m in _SECTION.finditer(text) if m.group("name") == name)


if __name__ == "__main__":
    sys.exit(main())
