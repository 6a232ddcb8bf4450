"""Draw the suite's chart: requests/s and client CPU per request against concurrency, one line per client.

Run: ``python benchmarks/chart.py`` (``all.py`` runs it after the suite). Reads ``results/suite.json`` (what
``run.py`` saved) and writes ``results/suite.png``, two panels, with the digest of the data it was drawn
from in the PNG's text, so ``report.py --check`` knows a chart older than its figures. Needs matplotlib
(the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import report

#: Lines drawn heavier: ours, and the floor every CPU ratio is taken against.
EMPHASIS = {"bedrock_chat": 2.6, "aiohttp (floor)": 1.8}


def series(document: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """client -> {"concurrency", "rps", "cpu_ms"}: the suite's medians to draw (failed runs left out)."""
    drawn: dict[str, dict[str, list[float]]] = {}
    for client, by_concurrency in document["data"]["summary"]["invoke"].items():
        points = sorted(
            (int(c), row["rps"], row["cpu_ms_per_request"])
            for c, row in by_concurrency.items()
            if row.get("rps") is not None and row.get("cpu_ms_per_request") is not None
        )
        if points:
            drawn[client] = {
                "concurrency": [float(c) for c, _, _ in points],
                "rps": [rps for _, rps, _ in points],
                "cpu_ms": [cpu for _, _, cpu in points],
            }
    return drawn


def draw(document: dict[str, Any], path: Path) -> None:
    """Two panels side by side (log concurrency axis), written to ``path`` with the data's digest."""
    import matplotlib

    matplotlib.use("Agg")  # no display here or in CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    figure, (left, right) = plt.subplots(1, 2, figsize=(12.5, 4.2), constrained_layout=True)
    drawn = series(document)
    concurrencies = sorted({c for points in drawn.values() for c in points["concurrency"]})
    for client, points in drawn.items():
        width = EMPHASIS.get(client, 1.2)
        for axes, key in ((left, "rps"), (right, "cpu_ms")):
            axes.plot(points["concurrency"], points[key], marker="o", linewidth=width, label=client)
    meta = document["meta"]
    left.set(title="Requests/s (higher is better)", xlabel="concurrency", ylabel="requests/s")
    right.set(title="Client CPU per request (lower is better)", xlabel="concurrency", ylabel="CPU ms/request")
    right.set_yscale("log")
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.set_xticks(concurrencies, [f"{c:g}" for c in concurrencies])
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.grid(True, which="both", alpha=0.3)
    left.set_ylim(bottom=0)
    right.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    right.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    figure.legend(*left.get_legend_handles_labels(), loc="outside right center", fontsize=8)
    quick = ", QUICK RUN" if meta.get("quick") else ""
    figure.suptitle(
        f"Non-streaming InvokeModel; {meta['machine']}, Python {meta['python']}, "
        f"bedrock_chat {meta['commit']}, {meta['started'][:10]}{quick}",
        fontsize=9,
    )
    figure.savefig(path, dpi=100, metadata={report.DIGEST_KEY: report.data_digest(document), "Software": None})
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Draw every chart in report.CHARTS from its committed results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", type=Path, default=report.RESULTS)
    args = parser.parse_args(argv)
    try:
        for name, png in report.CHARTS.items():
            draw(report.load(name, args.results), args.results / png)
            print(f"drew {args.results / png}", file=sys.stderr)
    except report.ReportError as exc:
        print(f"chart.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
