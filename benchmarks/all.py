"""Regenerate every figure: run each benchmark in turn, draw the chart, rebuild the README's tables.

Run: ``python benchmarks/all.py [--quick] [--only NAME,NAME]``. The benchmarks are report.BENCHMARKS, in its
order; each runs as ``python benchmarks/<script> [--quick]`` (each pins its own processes) and writes
``benchmarks/results/<name>.json``; then ``chart.py`` and ``report.py``. A full run takes about the sum of
the listed minutes (about 20 on the 2-core development machine when idle); ``--quick`` about 5 (the
quick suite alone took 7 minutes when the machine was shared with other work). A registered script
that is missing, or a benchmark that fails or outlives three times its stated minutes, stops the run
before the README is touched: no table is ever rebuilt from a mix of fresh and stale results by accident.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import report


def _run(command: list[str], env: dict[str, str], timeout: float) -> int:
    """Run one benchmark; past ``timeout``, SIGTERM it (its own handlers kill its children), then SIGKILL."""
    process = subprocess.Popen(command, env=env, cwd=report.ROOT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"all.py: {command[1]} still running after {timeout:.0f} s: stopping it", file=sys.stderr)
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        return -1
    finally:
        if process.poll() is None:  # KeyboardInterrupt, say: never leave a benchmark running
            process.kill()
            process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, then chart.py and report.py; exit 1 at the first failure."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's --quick (a smoke run)")
    parser.add_argument("--only", help=f"comma-separated names (default all: {', '.join(report.BENCHMARKS)})")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",")] if args.only else list(report.BENCHMARKS)
    unknown = [name for name in names if name not in report.BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; known: {list(report.BENCHMARKS)}")
    chosen = [report.BENCHMARKS[name] for name in names]
    missing = [b.script for b in chosen if not (report.HERE / b.script).exists()]
    if missing:
        print(f"all.py: registered in report.BENCHMARKS but missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    planned = sum(b.minutes for b in chosen)
    print(f"all.py: {len(chosen)} benchmarks, about {planned:.0f} min for a full run", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(report.ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    for benchmark in chosen:
        command = [sys.executable, str(report.HERE / benchmark.script), *benchmark.args]
        command += ["--quick"] if args.quick else []
        print(f"all.py: {benchmark.command}{' --quick' if args.quick else ''}", file=sys.stderr, flush=True)
        # 3x the stated full-run time, at least 5 minutes: a hung benchmark ends the run, a slow machine does not.
        returncode = _run(command, env, timeout=max(300.0, benchmark.minutes * 180))
        if returncode != 0:
            print(f"all.py: {benchmark.script} failed ({returncode}); README left as it was", file=sys.stderr)
            return 1
    for script in ("chart.py", "report.py"):
        if subprocess.run([sys.executable, str(report.HERE / script)], env=env, cwd=report.ROOT).returncode != 0:
            return 1
    print(f"all.py: done in {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
