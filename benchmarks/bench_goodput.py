"""Batch goodput against a quota: how close each client gets to it, and how many of its attempts are throttled.

Run: ``python benchmarks/bench_goodput.py [--quick] [--records N] [--concurrency 16,64,256]``.

Set-up (issue #19): an emulator with a quota of 40 requests/s (``--quota-rpm 2400 --quota-burst 1``: a
bucket of 40 that refills continuously), 100 ms per answer (``--latency 0.1``), 600 records of
``max_tokens`` 16, at concurrency 16, 64 and 256. Then the same without a quota but with 30% random,
load-independent throttling (``--throttle-rate 0.3``), at concurrency 64 and with a third of the records
(botocore's adaptive mode falls to about 2 requests/s there). Contenders, each in its own process, none
told the quota:

- ``bedrock-chat batch``: the command line, in a subprocess (its defaults: 6 retries);
- ``ChatCompletion.batch``: the library (its defaults: 6 retries since da269fc; e28bad5's used the client's 2);
- both again as they were before the goodput controller ("today" in issue #19: commit e28bad5, AIMD on
  concurrency, labelled ``(e28bad5)``): that commit's ``bedrock_chat`` is extracted once per run
  (``git archive``) into the run's temporary directory, removed on any exit, and each of them runs in a
  child with only that tree on its path and as its working directory. The server is always this tree's;
- ``aiobotocore``: ``invoke_model`` under ``asyncio.Semaphore(concurrency)``, botocore's ``adaptive``
  retry mode (its client-side CUBIC rate limiter), 7 attempts in all, as our batches' 6 retries.

Counts come from the server, the same for every contender: each run gets a fresh emulator (a full
bucket) whose dispatcher records the time and status of every InvokeModel attempt. **Achieved** is
successes per second over the server's window (first attempt to last success, plus one answer's latency)
divided by the quota; **throttled** is 429s out of all attempts. Under random throttling the last success
comes after the slowest record's retries (with 6 retries, up to 1 + 2 + 4 + 8 + 16 s of backoff), so the
rate over the first 90% of the records is given too; the render shows new / e28bad5 for both. The
server's random draws are seeded, so every contender meets the same sequence of throttles.

**A small batch** under the same 30% random throttling: 66 records at concurrency 16 and 64, most of which
a batch sends while its controller is still starting. Contenders: ``ChatCompletion.batch`` now; the same
with the start-up it had before (``(cutting start)``: the first throttle signal cuts the rate, before the
start learnt load-independent throttles; the child swaps that start in, selectable here only); e28bad5's;
each over ``SMALL_SEEDS`` server seeds (median shown); and aiobotocore's adaptive mode on the first seed
only (it is far behind, and slow: ~35 s). The figure is the time to the first 90% of the records (the
rest is a few records' retry backoff).

A full run takes about 11 minutes on 2 cores (15 quota runs of ~16 s; 5 random-throttle runs of 200
records: ~5-11 s each for the new code, ~20-25 s for e28bad5's, ~100 s for aiobotocore's; the small batch,
about 3 minutes: 2 x (3 x 3 runs of ~1-12 s, aiobotocore's ~6-19 s); process start-ups); ``--quick`` (200
records at concurrency 64 against the quota, and the small batch at concurrency 64 on one seed: indicative
only, as one seed may spare even the cutting start its cut) about 65 s;
``--only small`` the small batch alone. Each run is cut off after 150 s (marked in the table).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
QUOTA_PER_SECOND = 40.0
LATENCY = 0.1
RANDOM_THROTTLE = 0.3
#: "Today": the code before GoodputController (e28bad5, AIMD on concurrency), run from a copy of its tree.
TODAY = "e28bad5"
CLI, LIBRARY, AIOBOTOCORE = "bedrock-chat batch", "ChatCompletion.batch", "aiobotocore (adaptive)"
CONTENDERS = (CLI, LIBRARY, f"{CLI} ({TODAY})", f"{LIBRARY} ({TODAY})", AIOBOTOCORE)
#: ``ChatCompletion.batch`` with the start-up before it learnt load-independent throttles (a bench-only swap).
LIBRARY_CUTTING = f"{LIBRARY} (cutting start)"
SMALL_CONTENDERS = (LIBRARY, LIBRARY_CUTTING, f"{LIBRARY} ({TODAY})", AIOBOTOCORE)
#: The small batch: records, concurrencies, and the server seeds each contender but aiobotocore meets.
SMALL_RECORDS = 66
SMALL_CONCURRENCIES = (16, 64)
SMALL_SEEDS = (0, 1, 2)
SCENARIOS = ("quota", "random", "small")
#: Each new contender and its "today" counterpart: the render shows new / today.
PAIRS = ((CLI, f"{CLI} ({TODAY})"), (LIBRARY, f"{LIBRARY} ({TODAY})"))
RUN_TIMEOUT = 150.0
#: aiobotocore's attempts: as many as our batches make (6 retries).
AIOBOTOCORE_ATTEMPTS = 7
#: The share of the records behind the "first 90%" rate (less tail-bound than the rate over all).
BODY = 0.9


def _env(tree: Path = ROOT) -> dict[str, str]:
    """The children's environment: ``tree``'s bedrock_chat first on the path, the benchmark's keys."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # only it: the caller's PYTHONPATH may name this tree
    env["PYTHONUNBUFFERED"] = "1"
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION=REGION)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_BEARER_TOKEN_BEDROCK"):
        env.pop(name, None)
    return env


def _body(i: int) -> dict[str, Any]:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": f"record {i} of the goodput run"}],
    }


# ---------------------------------------------------------------------------------------------- children


def serve(args: argparse.Namespace) -> None:
    """The server child: an emulator that logs (time, status) per InvokeModel attempt; stats on stdin EOF."""
    from bedrock_chat.emulator import EmulatorOptions, Faults, Quota, ServerLimits, run_emulator_in_thread

    options = EmulatorOptions(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region=REGION,
        verify_signatures=False,
        faults=Faults(latency=args.latency, throttle_rate=args.throttle_rate, seed=args.seed),
        quota=Quota(requests_per_minute=args.quota_rpm, burst_seconds=args.burst) if args.quota_rpm else Quota(),
    )
    log: list[tuple[float, int]] = []
    limits = ServerLimits(max_connections=2000, max_recorded_body_bytes=0)
    with run_emulator_in_thread(options, max_recorded_requests=1, limits=limits) as emulator:
        dispatcher = emulator._dispatcher
        dispatch = dispatcher.dispatch

        def recording(*call: Any) -> Any:
            dispatched = dispatch(*call)
            if dispatched.operation is not None and dispatched.operation.startswith("InvokeModel"):
                log.append((time.monotonic(), dispatched.reply.status))
            return dispatched

        dispatcher.dispatch = recording  # type: ignore[method-assign,assignment]
        print(f"endpoint_url={emulator.endpoint_url}", flush=True)
        sys.stdin.read()
    print(json.dumps(log))


def _use_cutting_start() -> None:
    """Swap in the start-up before it learnt load-independent throttles: the first signal cuts (bench only)."""
    from bedrock_chat._batch import scheduler

    class CuttingStart(scheduler.GoodputController):
        def __init__(self, **settings: Any) -> None:
            super().__init__(**settings)
            self._starting = False  # no start-up learning: every throttle is tested as after a cut

    scheduler.GoodputController = CuttingStart  # type: ignore[misc]


async def _library(endpoint: str, records: int, concurrency: int) -> dict[str, int]:
    from bedrock_chat import AnthropicBedrock

    requests = ({"model": MODEL, "messages": _body(i)["messages"], "max_tokens": 16} for i in range(records))
    ok = failed = 0
    async with (
        AnthropicBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, endpoint_url=endpoint) as client,
        client.ChatCompletion.batch(requests, concurrency=concurrency) as results,
    ):
        async for result in results:
            ok += result.ok
            failed += not result.ok
    return {"ok": ok, "failed": failed}


async def _aiobotocore(endpoint: str, records: int, concurrency: int) -> dict[str, int]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    from botocore.exceptions import ClientError

    config = AioConfig(
        max_pool_connections=concurrency, retries={"mode": "adaptive", "total_max_attempts": AIOBOTOCORE_ATTEMPTS}
    )
    counts = {"ok": 0, "failed": 0}
    semaphore = asyncio.Semaphore(concurrency)
    async with get_session().create_client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=config,
    ) as client:

        async def one(i: int) -> None:
            async with semaphore:
                try:
                    response = await client.invoke_model(modelId=MODEL, body=json.dumps(_body(i)))
                    json.loads(await response["body"].read())
                    counts["ok"] += 1
                except ClientError:
                    counts["failed"] += 1

        await asyncio.gather(*(one(i) for i in range(records)))
    return counts


def client(args: argparse.Namespace) -> None:
    """A contender child: run the batch, print ``{"ok", "failed"}``."""
    if args.contender == "library-cutting":
        _use_cutting_start()
    run = _aiobotocore if args.contender == "aiobotocore" else _library
    print(json.dumps(asyncio.run(run(args.endpoint, args.records, args.concurrency))))


# ---------------------------------------------------------------------------------------------- the parent


class _Server:
    """A server child for one run."""

    def __init__(self, *, quota: bool, records: int, seed: int = 0) -> None:
        command = [sys.executable, str(Path(__file__)), "serve", "--latency", str(LATENCY), "--seed", str(seed)]
        if quota:
            command += ["--quota-rpm", str(QUOTA_PER_SECOND * 60), "--burst", "1"]
        else:
            command += ["--throttle-rate", str(RANDOM_THROTTLE)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(), cwd=ROOT
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("endpoint_url="):
            self.process.kill()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.endpoint = line.removeprefix("endpoint_url=")

    def log(self) -> list[tuple[float, int]]:
        """Stop the server; its (time, status) log."""
        out, _ = self.process.communicate(input="", timeout=30)
        return [(float(t), int(status)) for t, status in json.loads(out.strip().splitlines()[-1])]


def today_tree(directory: Path) -> Path:
    """``bedrock_chat`` as it was at TODAY, extracted under ``directory`` (a temporary one: the caller removes it)."""
    tree = directory / TODAY
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", TODAY, "bedrock_chat"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _run_contender(
    name: str, endpoint: str, records: int, concurrency: int, work: Path, today: Path | None
) -> dict[str, Any]:
    """Run one contender to the end (or RUN_TIMEOUT); its own count of ok and failed records.

    A "today" contender runs with only ``today`` (the old tree) on its path and as its working directory, so
    neither ``-m bedrock_chat`` nor an import can pick up this tree's package.
    """
    tree = ROOT
    if name.endswith(f"({TODAY})"):
        assert today is not None, "today's tree was not extracted"
        name, tree = name.removesuffix(f" ({TODAY})"), today
    if name == CLI:
        source, output = work / "in.jsonl", work / "out.jsonl"
        output.unlink(missing_ok=True)
        source.write_text(
            "".join(json.dumps({"recordId": f"r{i}", "modelInput": _body(i)}) + "\n" for i in range(records))
        )
        command = [sys.executable, "-m", "bedrock_chat", "batch", str(source), "-o", str(output)]
        command += ["--model", MODEL, "--concurrency", str(concurrency), "--endpoint-url", endpoint]
        command += ["--region", REGION]
        cut_off = False
        try:
            subprocess.run(command, env=_env(tree), cwd=tree, timeout=RUN_TIMEOUT, capture_output=True, check=False)
        except subprocess.TimeoutExpired:  # the child is killed; what it wrote stands
            cut_off = True
        results = [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else []
        ok = sum("modelOutput" in result for result in results)
        return {"ok": ok, "failed": len(results) - ok, "cut_off": cut_off}
    contender = {LIBRARY: "library", LIBRARY_CUTTING: "library-cutting"}.get(name, "aiobotocore")
    command = [sys.executable, str(Path(__file__)), "client", "--contender", contender, "--endpoint", endpoint]
    command += ["--records", str(records), "--concurrency", str(concurrency)]
    try:
        done = subprocess.run(
            command, env=_env(tree), cwd=tree, timeout=RUN_TIMEOUT, capture_output=True, text=True, check=False
        )
    except subprocess.TimeoutExpired:  # the child is killed: the server's log says what succeeded
        return {"ok": -1, "failed": -1, "cut_off": True}
    if done.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-2000:]}")
    counts: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    counts["cut_off"] = False
    return counts


def measure(
    name: str, *, quota: bool, records: int, concurrency: int, work: Path, today: Path | None = None, seed: int = 0
) -> dict[str, Any]:
    """One contender at one concurrency against a fresh server: the server's counts and the client's outcomes."""
    server = _Server(quota=quota, records=records, seed=seed)
    try:
        outcome = _run_contender(name, server.endpoint, records, concurrency, work, today)
    finally:
        log = server.log()
    start = log[0][0] if log else 0.0
    successes = sorted(t for t, status in log if status == 200)
    throttled = sum(status == 429 for _, status in log)
    window = (successes[-1] - start + LATENCY) if successes else float("nan")
    goodput = len(successes) / window if successes else 0.0
    # The rate over the first 90% of the records: what the tail of retries (a few records backing off for
    # seconds while everything else is done) does not decide.
    body = math.ceil(BODY * records)
    body_rate = body / (successes[body - 1] - start + LATENCY) if len(successes) >= body else float("nan")
    if outcome["cut_off"] and outcome["ok"] < 0:
        outcome = {"ok": len(successes), "failed": 0, "cut_off": True}
    row: dict[str, Any] = {
        "contender": name,
        "concurrency": concurrency,
        "records": records,
        "seed": seed,
        "succeeded": outcome["ok"],
        "failed": outcome["failed"],
        "cut_off": outcome["cut_off"],
        "attempts": len(log),
        "throttled": throttled,
        "throttled_fraction": throttled / len(log) if log else float("nan"),
        "seconds": window,
        "goodput": goodput,
        "body_goodput": body_rate,
    }
    if quota:
        row["achieved"] = goodput / QUOTA_PER_SECOND
    return row


def _line(row: dict[str, Any]) -> str:
    achieved = f"achieved {row['achieved']:.2f} of the quota, " if "achieved" in row else ""
    cut = " (cut off)" if row.get("cut_off") else ""
    return (
        f"{row['contender']:32s} c={row['concurrency']:<4d} {achieved}{row['goodput']:.1f} ok/s "
        f"({row['body_goodput']:.1f} over the first {BODY:.0%}), {row['throttled_fraction']:.1%} of "
        f"{row['attempts']} attempts throttled, {row['failed']} failed{cut}"
    )


def _find(rows: list[dict[str, Any]], name: str, concurrency: int | None = None) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["contender"] == name and concurrency in (None, r["concurrency"])),
        None,
    )


def _ratio(new: dict[str, Any] | None, old: dict[str, Any] | None, key: str) -> str:
    if new is None or old is None:
        return "-"
    top, bottom = new.get(key, math.nan), old.get(key, math.nan)
    return f"{top / bottom:.2f}x" if math.isfinite(top) and math.isfinite(bottom) and bottom > 0 else "-"


def _rate(row: dict[str, Any], key: str) -> str:
    value = row.get(key, math.nan)
    return f"{value:.1f}" if math.isfinite(value) else "-"


def render(document: dict[str, Any]) -> str:
    """The README's tables: achieved/quota and throttled share per contender and concurrency, new / today;
    then random throttles; then the small batch."""
    data = document["data"]
    quota_rows = data["quota"]
    concurrencies = sorted({row["concurrency"] for row in quota_rows})
    lines = [
        f"Quota {data['setup']['quota_per_second']:g} requests/s (1 s burst), {data['setup']['latency'] * 1000:g} ms "
        f"per answer, {data['setup']['records']} records. Achieved share of the quota / attempts throttled "
        f'("{TODAY}": the code before the goodput controller, AIMD on concurrency; new / {TODAY}: ratio of the '
        "achieved shares):",
        "",
        "| contender | " + " | ".join(f"concurrency {c}" for c in concurrencies) + " |",
        "|---|" + "---:|" * len(concurrencies),
    ]
    for name in CONTENDERS:
        cells = []
        for concurrency in concurrencies:
            row = _find(quota_rows, name, concurrency)
            cells.append("-" if row is None else f"{row['achieved']:.2f} / {row['throttled_fraction']:.1%}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for new, old in PAIRS:
        cells = [
            _ratio(_find(quota_rows, new, concurrency), _find(quota_rows, old, concurrency), "achieved")
            for concurrency in concurrencies
        ]
        lines.append(f"| {new}: new / {TODAY} | " + " | ".join(cells) + " |")
    if not quota_rows:  # a run of one other scenario (--only)
        lines = []
    random_rows = data["random"]
    if random_rows:
        lines += [
            "",
            f"No quota, {data['setup']['random_throttle']:.0%} random throttling (load-independent), concurrency "
            f"{random_rows[0]['concurrency']}, {random_rows[0]['records']} records. Successes/s over the whole run "
            f"(to the last success, so a few records' retry backoff decides it) and over the first "
            f"{BODY:.0%} of the records; new / {TODAY} for both:",
            "",
            f"| contender | successes/s | first {BODY:.0%}/s | attempts throttled | failed | new / {TODAY} |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        olds = dict(PAIRS)
        for name in CONTENDERS:
            row = _find(random_rows, name)
            if row is None:
                continue
            compared = "-"
            if name in olds:
                before = _find(random_rows, olds[name])
                compared = f"{_ratio(row, before, 'goodput')}; {_ratio(row, before, 'body_goodput')}"
            cut = f" (cut off at {RUN_TIMEOUT:g} s)" if row.get("cut_off") else ""
            lines.append(
                f"| {name}{cut} | {_rate(row, 'goodput')} | {_rate(row, 'body_goodput')} | "
                f"{row['throttled_fraction']:.1%} | {row['failed']} | {compared} |"
            )
    small_rows = data.get("small", [])  # absent from runs before the small batch was added
    if small_rows:
        lines += [*([""] if lines else []), *_render_small(data["setup"], small_rows)]
    return "\n".join(lines) + "\n"


def _median(values: list[float]) -> float:
    ordered = sorted(value for value in values if math.isfinite(value))
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _render_small(setup: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The small batch: seconds to the first 90% of the records per contender and concurrency (median over
    the seeds it ran), and ours against the cutting start and e28bad5's."""
    concurrencies = sorted({row["concurrency"] for row in rows})
    records = rows[0]["records"]
    body = math.ceil(BODY * records)

    def seconds(name: str, concurrency: int) -> tuple[float, int]:
        runs = [r for r in rows if r["contender"] == name and r["concurrency"] == concurrency]
        return _median([body / r["body_goodput"] if r["body_goodput"] > 0 else math.nan for r in runs]), len(runs)

    lines = [
        f"A small batch: {records} records, no quota, {setup['random_throttle']:.0%} random throttling, "
        f"{setup['latency'] * 1000:g} ms per answer. Seconds to the first {BODY:.0%} of the records (median "
        f'over the seeds run, in brackets when more than one); "cutting start": ours with the start-up that '
        "cut on the first throttles; ratios below 1 mean ours is faster:",
        "",
        "| contender | " + " | ".join(f"concurrency {c}" for c in concurrencies) + " |",
        "|---|" + "---:|" * len(concurrencies),
    ]
    for name in SMALL_CONTENDERS:
        cells = []
        for concurrency in concurrencies:
            value, runs = seconds(name, concurrency)
            cells.append(
                "-"
                if not runs
                else (f"{value:.2f}" if math.isfinite(value) else "-") + (f" ({runs})" if runs > 1 else "")
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for other in (LIBRARY_CUTTING, f"{LIBRARY} ({TODAY})", AIOBOTOCORE):
        cells = []
        for concurrency in concurrencies:
            ours, theirs = seconds(LIBRARY, concurrency)[0], seconds(other, concurrency)[0]
            finite = math.isfinite(ours) and math.isfinite(theirs) and theirs > 0
            cells.append(f"{ours / theirs:.2f}x" if finite else "-")
        lines.append(f"| {LIBRARY} / {other} | " + " | ".join(cells) + " |")
    return lines


def _concurrencies(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str]) -> None:
    if argv and argv[0] == "serve":
        parser = argparse.ArgumentParser(prog="bench_goodput.py serve")
        parser.add_argument("--latency", type=float, default=LATENCY)
        parser.add_argument("--quota-rpm", type=float, default=None)
        parser.add_argument("--burst", type=float, default=1.0)
        parser.add_argument("--throttle-rate", type=float, default=0.0)
        parser.add_argument("--seed", type=int, default=0)
        serve(parser.parse_args(argv[1:]))
        return
    if argv and argv[0] == "client":
        parser = argparse.ArgumentParser(prog="bench_goodput.py client")
        parser.add_argument("--contender", choices=("library", "library-cutting", "aiobotocore"), required=True)
        parser.add_argument("--endpoint", required=True)
        parser.add_argument("--records", type=int, required=True)
        parser.add_argument("--concurrency", type=int, required=True)
        client(parser.parse_args(argv[1:]))
        return
    parser = argparse.ArgumentParser(prog="bench_goodput.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 records, concurrency 64 only (~65 s)")
    parser.add_argument("--records", type=int, default=None, help="records per run (default 600; quick 200)")
    parser.add_argument("--concurrency", type=_concurrencies, default=None, help="default 16,64,256 (quick 64)")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/goodput.json alone")
    parser.add_argument(
        "--only",
        choices=SCENARIOS,
        default=None,
        help="run one scenario (prints; saves nothing: results/goodput.json holds a whole run)",
    )
    args = parser.parse_args(argv)
    records = args.records or (200 if args.quick else 600)
    concurrencies = args.concurrency or ([64] if args.quick else [16, 64, 256])
    # Quick: the small batch stands for random throttling (the quick run's random scenario was 66 records too).
    scenarios = (args.only,) if args.only else (("quota", "small") if args.quick else SCENARIOS)
    small_concurrencies = [64] if args.quick else list(SMALL_CONCURRENCIES)
    small_seeds = SMALL_SEEDS[:1] if args.quick else SMALL_SEEDS
    rows: dict[str, list[dict[str, Any]]] = {scenario: [] for scenario in SCENARIOS}
    started = time.perf_counter()
    # The temporary directory holds today's tree too: it goes on any exit, Ctrl-C included (subprocess.run
    # kills its child before the exception leaves it).
    with tempfile.TemporaryDirectory(prefix="bench_goodput-") as directory:
        work = Path(directory)
        today = today_tree(work)
        for concurrency in concurrencies if "quota" in scenarios else ():
            for name in CONTENDERS:
                row = measure(name, quota=True, records=records, concurrency=concurrency, work=work, today=today)
                rows["quota"].append(row)
                print(_line(row), file=sys.stderr, flush=True)
        random_concurrency = 64 if 64 in concurrencies else concurrencies[0]
        for name in CONTENDERS if "random" in scenarios else ():
            # A third of the records: aiobotocore's adaptive mode falls to ~2 requests/s here, and the run
            # must stay bounded.
            row = measure(
                name, quota=False, records=records // 3, concurrency=random_concurrency, work=work, today=today
            )
            rows["random"].append(row)
            print("random: " + _line(row), file=sys.stderr, flush=True)
        for concurrency in small_concurrencies if "small" in scenarios else ():
            for seed in small_seeds:
                for name in SMALL_CONTENDERS:
                    if name == AIOBOTOCORE and seed != small_seeds[0]:
                        continue
                    row = measure(
                        name,
                        quota=False,
                        records=SMALL_RECORDS,
                        concurrency=concurrency,
                        work=work,
                        today=today,
                        seed=seed,
                    )
                    rows["small"].append(row)
                    print(f"small, seed {seed}: " + _line(row), file=sys.stderr, flush=True)
    data = {
        "setup": {
            "quota_per_second": QUOTA_PER_SECOND,
            "burst_seconds": 1.0,
            "latency": LATENCY,
            "random_throttle": RANDOM_THROTTLE,
            "records": records,
            "small_records": SMALL_RECORDS,
            "today": TODAY,
            "quick": args.quick,
            "seconds": time.perf_counter() - started,
        },
        **rows,
    }
    import _results

    document = {"benchmark": "goodput", "meta": _results.metadata(), "data": _results.json_safe(data)}
    if not args.no_save and not args.only:
        _results.save("goodput", data)
    print(render(document))


if __name__ == "__main__":
    main(sys.argv[1:])
