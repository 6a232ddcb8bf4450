"""Peak memory of ``ChatCompletion.batch`` as the input grows: it should stay flat.

Run: ``python benchmarks/bench_batch_memory.py [--quick] [--sizes 1000,100000] [--concurrency 16] [--no-peer]
[--no-save]``; the figures go to ``benchmarks/results/batch_memory.json``.

Each measurement runs in a fresh child process (so peak RSS, ``ru_maxrss``, is that run's alone) and
sends every request through the real client -- argument validation, SigV4 signing, the transport, response
parsing -- to an in-process ``httpx.MockTransport`` that answers at once, so the batch machinery rather
than a server decides the footprint. The input is a generator and results are dropped as they arrive,
as a streaming consumer would.

The peer is what the batch replaces: ``asyncio.gather`` over one ``create`` coroutine per request, bounded
by a semaphore -- every coroutine, and every result, exists at once. The table prints each run's peak RSS
above the child's RSS before the run (imports), and the growth from the smallest to the largest size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _results
import httpx

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
_BODY = json.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-haiku-20240307",
        "content": [{"type": "text", "text": "a short fixed reply from the mock transport"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 4, "output_tokens": 8},
    }
).encode()
ROOT = Path(__file__).resolve().parent.parent


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=_BODY, headers={"content-type": "application/json"})


def _requests(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"model": MODEL, "messages": [{"role": "user", "content": f"record {i} of the batch"}], "max_tokens": 32}


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


async def _run_batch(n: int, concurrency: int) -> int:
    from bedrock_chat import AnthropicBedrock

    ok = 0
    transport = httpx.MockTransport(_answer)
    async with (
        AnthropicBedrock(
            access_key="AKIDBENCH", secret_key="secret", region="us-east-1", transport=transport
        ) as client,
        client.ChatCompletion.batch(_requests(n), concurrency=concurrency) as results,
    ):
        async for result in results:
            ok += result.ok
    return ok


async def _run_gather(n: int, concurrency: int) -> int:
    from bedrock_chat import AnthropicBedrock, ChatCompletion

    semaphore = asyncio.Semaphore(concurrency)
    transport = httpx.MockTransport(_answer)
    async with AnthropicBedrock(
        access_key="AKIDBENCH", secret_key="secret", region="us-east-1", transport=transport
    ) as client:

        async def one(request: dict[str, Any]) -> ChatCompletion:
            async with semaphore:
                chat: ChatCompletion = await client.ChatCompletion.create(**request)
                return chat

        results = await asyncio.gather(*(one(request) for request in _requests(n)))
    return len(results)


def child(mode: str, n: int, concurrency: int) -> None:
    """Measure one run in this process; print one JSON line."""
    import bedrock_chat  # noqa: F401  # imports are part of the baseline, not of the run

    before = _peak_kib()
    started = time.perf_counter()
    run = _run_batch if mode == "batch" else _run_gather
    done = asyncio.run(run(n, concurrency))
    elapsed = time.perf_counter() - started
    assert done == n, (done, n)
    print(json.dumps({"mode": mode, "n": n, "before_kib": before, "peak_kib": _peak_kib(), "seconds": elapsed}))


def measure(mode: str, n: int, concurrency: int) -> dict[str, Any]:
    """Run one child to completion (bounded) and return its report."""
    command = [sys.executable, str(Path(__file__).resolve()), "child", mode, str(n), str(concurrency)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} n={n} failed:\n{result.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def main(argv: list[str] | None = None) -> None:
    """Measure each mode at each size, print the table and save it (unless ``--no-save``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated batch sizes (default 1000,100000; quick 1000,10000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-peer", action="store_true", help="skip the asyncio.gather peer")
    parser.add_argument("--quick", action="store_true", help="sizes 1000,10000")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/batch_memory.json alone")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in (args.sizes or ("1000,10000" if args.quick else "1000,100000")).split(",")]
    modes = ["batch"] if args.no_peer else ["batch", "gather"]
    print(f"peak RSS over the pre-run baseline, concurrency {args.concurrency}, MockTransport answers")
    print(f"{'mode':<8}{'records':>10}{'baseline MiB':>14}{'peak MiB':>10}{'growth MiB':>12}{'req/s':>9}")
    growth: dict[str, list[float]] = {}
    runs: list[dict[str, Any]] = []
    for mode in modes:
        for n in sizes:
            report = measure(mode, n, args.concurrency)
            runs.append(report)
            extra = (report["peak_kib"] - report["before_kib"]) / 1024
            growth.setdefault(mode, []).append(extra)
            print(
                f"{mode:<8}{n:>10,}{report['before_kib'] / 1024:>14.1f}{report['peak_kib'] / 1024:>10.1f}"
                f"{extra:>12.1f}{n / report['seconds']:>9.0f}"
            )
    if len(sizes) > 1:
        for mode, values in growth.items():
            print(f"{mode}: {sizes[-1]:,} records use {values[-1] - values[0]:+.1f} MiB more than {sizes[0]:,}")
        if "gather" in growth:
            ratio = growth["gather"][-1] / max(growth["batch"][-1], 0.1)
            print(f"at {sizes[-1]:,} records, gather's growth is {ratio:.0f}x the batch's")
    if not args.no_save:
        data = {"concurrency": args.concurrency, "runs": runs}
        _results.save("batch_memory", data, _results.metadata(quick=args.quick))


_MODES = {"batch": "`ChatCompletion.batch`", "gather": "`asyncio.gather` + semaphore"}


def render(document: dict[str, Any]) -> str:
    """The README's batch-memory table, from ``results/batch_memory.json``: growth over the baseline."""
    data = document["data"]
    lines = [
        f"| peak RSS of a batch, concurrency {data['concurrency']} | records | baseline MiB | peak MiB | "
        "growth MiB | req/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in data["runs"]:
        growth = (run["peak_kib"] - run["before_kib"]) / 1024
        lines.append(
            f"| {_MODES.get(run['mode'], run['mode'])} | {run['n']:,} | {run['before_kib'] / 1024:.1f} | "
            f"{run['peak_kib'] / 1024:.1f} | {growth:.1f} | {run['n'] / run['seconds']:,.0f} |"
        )
    lines += ["", _results.caption(document, "python benchmarks/bench_batch_memory.py")]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
