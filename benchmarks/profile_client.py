"""Profile one contender's client process against the replay server, next to the aiohttp floor's.

Run: ``python benchmarks/profile_client.py [--client bedrock_chat] [--requests 3000] [--out FILE]``.

Each profile is a fresh pinned child (``_harness.py child --profile``) at concurrency 32 and 256, timed
with process CPU time (a wall-clock profile on a shared machine charges other processes' time slices to
whatever ran here). The text gives, per concurrency and contender: CPU seconds and function calls per
request (calls are the least noisy figure: they do not move with load), the top entries by own time, and
the contender's own modules (``bedrock_chat/``) by cumulative time -- what it adds on top of aiohttp.
Warm-up and start-up are in the profile too; they are the same for every run of a contender.
"""

from __future__ import annotations

import argparse
import io
import pstats
import sys
import tempfile
from pathlib import Path

from _clients import FLOOR
from _harness import HERE, choose_cpus, log, replay_server, run_python


def _profile(client: str, concurrency: int, requests: int, endpoint: str, cpu: int | None, path: Path) -> None:
    args = [str(HERE / "_harness.py"), "child", "--client", client, "--kind", "invoke", "--endpoint", endpoint]
    args += ["--requests", str(requests), "--concurrency", str(concurrency), "--profile", str(path)]
    run_python(args, cpu, timeout=600)


def _report(stats_path: Path, requests: int, top: int, own: str | None) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    calls = stats.total_calls  # type: ignore[attr-defined]
    out.write(f"CPU {total:.3f} s in the profile; {total / requests * 1e3:.3f} ms and {calls / requests:.0f} ")
    out.write("function calls per measured request (warm-up and start-up included)\n")
    stats.sort_stats("tottime").print_stats(top)
    if own:
        stats.sort_stats("cumulative").print_stats(own, top)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines() if line.strip()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--client", default="bedrock_chat")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, help="write the text here (default: stdout)")
    args = parser.parse_args(argv)
    server_cpu, client_cpu = choose_cpus()
    sections = []
    with replay_server(server_cpu) as target, tempfile.TemporaryDirectory() as tmp:
        for concurrency in (32, 256):
            for client in (FLOOR, args.client):
                log(f"profiling {client} at c={concurrency}")
                path = Path(tmp) / "profile.pstats"
                _profile(client, concurrency, args.requests, target.endpoint, client_cpu, path)
                own = "bedrock_chat/" if client != FLOOR else None
                body = _report(path, args.requests, args.top, own)
                sections.append(f"=== {client}, c={concurrency}, {args.requests} requests ===\n{body}")
    text = "\n".join(sections)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f"written: {args.out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
