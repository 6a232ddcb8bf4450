"""Processes, pinning and measurement for the benchmark suite; also the client subprocess's entry point.

Why subprocesses: a client's CPU time, peak RSS and import cost are only its own when nothing else runs
in its process, so the emulator runs in one process pinned to one core and every contender runs in a
fresh process pinned to another (``taskset`` where it exists, ``sched_setaffinity`` otherwise). The
client process times only its measured section (``time.process_time`` covers all its threads, which
matters for anthropic's signing thread) and reports its ``ru_maxrss`` as one JSON line on stdout.

Every wait is bounded (startup lines, child runs, the emulator's exit) and every process started here is
tracked and killed -- its whole process group -- on exit, normal or not.

Child mode: ``python benchmarks/_harness.py child --client NAME --kind invoke|stream ...`` against a running
emulator (``--endpoint``); add ``--profile out.pstats`` to profile one contender with cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import importlib.metadata
import json
import os
import resource
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ACCESS_KEY = "AKIDBENCHMARK"
SECRET_KEY = "benchmark-secret"
REGION = "us-east-1"
_LIVE: set[subprocess.Popen[str]] = set()
R = TypeVar("R")


class BenchmarkError(RuntimeError):
    """A child failed or timed out; carries the tail of its stderr."""


def _child_env(*, cache_bytecode: bool = False) -> dict[str, str]:
    """The project root on PYTHONPATH (the suite runs from a checkout), and no stray buffering.

    ``cache_bytecode``: without ``PYTHONDONTWRITEBYTECODE``, so imports read cached bytecode as an installed
    package's do (pip compiles at install); with it set, a checkout's modules compile on every import.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    if cache_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def choose_cpus() -> tuple[int | None, int | None]:
    """(server CPU, client CPU): the first two CPUs this process may use, or no pinning on one CPU."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def _spawn(
    command: list[str], cpu: int | None, *, stderr: Any = subprocess.PIPE, cache_bytecode: bool = False
) -> subprocess.Popen[str]:
    """Start ``command`` in its own process group, pinned to ``cpu``, and track it for cleanup."""
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
        cpu = None
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_child_env(cache_bytecode=cache_bytecode),
        cwd=ROOT,
        start_new_session=True,
    )
    _LIVE.add(process)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(process.pid, {cpu})
    return process


def _kill(process: subprocess.Popen[str], grace: float = 5.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds; reap it."""
    if process.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()
    _LIVE.discard(process)


@atexit.register
def kill_all() -> None:
    """Kill every child still running (called at exit, and by run.py's signal handlers)."""
    for process in list(_LIVE):
        _kill(process, grace=2.0)


def _read_lines(process: subprocess.Popen[str], count: int, deadline: float) -> list[str]:
    """The first ``count`` stdout lines, or BenchmarkError once ``deadline`` (perf_counter) passes or the
    child exits. Reads the raw descriptor, so no buffered text hides from ``select``."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    data = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while data.count(b"\n") < count:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise BenchmarkError(f"{process.args!r}: no start-up output in time (got {data!r})")
            if selector.select(timeout=min(left, 0.5)):
                piece = os.read(fd, 4096)
                if not piece:
                    raise BenchmarkError(f"{process.args!r} closed its output early (got {data!r})")
                data += piece
            elif process.poll() is not None:
                raise BenchmarkError(f"{process.args!r} exited ({process.returncode}) during start-up")
    return data.decode().splitlines()[:count]


@dataclass(frozen=True)
class EmulatorInfo:
    """A running server: its URL, the credentials it accepts, and its process id (for its CPU time)."""

    endpoint: str
    region: str
    access_key: str
    secret_key: str
    pid: int | None = None


#: The servers a run may measure against: the full emulator, or the replay server (``_replay_server.py``).
SERVERS = ("replay", "emulator")


@contextmanager
def _server(command: list[str], cpu: int | None, startup_timeout: float, lines: int = 2) -> Iterator[EmulatorInfo]:
    """Run a server that prints ``endpoint_url=...`` (and ``lines - 1`` more lines) on start-up, pinned to ``cpu``."""
    # stderr to a file: a long-running server must never block on a full pipe nobody reads.
    with tempfile.TemporaryFile("w+") as errors:
        process = _spawn(command, cpu, stderr=errors)
        try:
            try:
                line = _read_lines(process, lines, time.perf_counter() + startup_timeout)[0].strip()
            except BenchmarkError as exc:
                errors.seek(0)
                raise BenchmarkError(f"{exc}\n{errors.read()[-2000:]}") from None
            if not line.startswith("endpoint_url="):
                raise BenchmarkError(f"{command[1]} did not start: {line!r}")
            # taskset execs the server, so the pid is the server's own.
            yield EmulatorInfo(line.removeprefix("endpoint_url="), REGION, ACCESS_KEY, SECRET_KEY, process.pid)
        finally:
            _kill(process)


@contextmanager
def emulator(cpu: int | None, *flags: str, startup_timeout: float = 30.0) -> Iterator[EmulatorInfo]:
    """Run ``python -m bedrock_chat.emulator`` with signatures unchecked, pinned to ``cpu``."""
    command = [sys.executable, "-m", "bedrock_chat.emulator", "--port", "0", "--no-verify-signatures"]
    command += ["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, "--region", REGION, *flags]
    # The second start-up line repeats the credentials we passed on the command line.
    with _server(command, cpu, startup_timeout) as info:
        yield info


@contextmanager
def replay_server(cpu: int | None, startup_timeout: float = 60.0) -> Iterator[EmulatorInfo]:
    """Run ``_replay_server.py`` (the emulator's replies, captured at its start-up, replayed), pinned to ``cpu``."""
    with _server([sys.executable, str(HERE / "_replay_server.py"), "--port", "0"], cpu, startup_timeout) as info:
        yield info


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads) from ``/proc``; None where unreadable.

    Clock-tick resolution (10 ms on Linux), so a measured window should last a few tenths of a second.
    """
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of proc(5) (utime, stime); after the ")" the 3rd field is index 0.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def run_python(args: list[str], cpu: int | None, timeout: float, *, cache_bytecode: bool = False) -> str:
    """Run ``python ARGS`` pinned to ``cpu``; its stdout, or BenchmarkError (with stderr) on failure/timeout."""
    process = _spawn([sys.executable, *args], cpu, cache_bytecode=cache_bytecode)
    try:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"python {' '.join(args)}: timed out after {timeout:.0f} s") from None
        if process.returncode != 0:
            tail = "\n".join(err.strip().splitlines()[-15:])
            raise BenchmarkError(f"python {' '.join(args)}: exit {process.returncode}\n{tail}")
        return out
    finally:
        _kill(process)


def run_client(
    client: str,
    kind: str,
    target: EmulatorInfo,
    cpu: int | None,
    *,
    requests: int = 0,
    concurrency: int = 1,
    streams: int = 0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """One contender in a fresh pinned process: its summary dict (plus ``maxrss_mb``)."""
    args = [str(HERE / "_harness.py"), "child", "--client", client, "--kind", kind, "--endpoint", target.endpoint]
    args += ["--region", target.region, "--access-key", target.access_key, "--secret-key", target.secret_key]
    args += ["--requests", str(requests), "--concurrency", str(concurrency), "--streams", str(streams)]
    args += ["--timeout", str(timeout)]
    if target.pid is not None:
        args += ["--server-pid", str(target.pid)]
    out = run_python(args, cpu, timeout + 30)
    lines = out.strip().splitlines()
    if not lines:
        raise BenchmarkError(f"{client} {kind}: no result line")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


_IMPORT_SNIPPET = (
    "import sys, time; t = time.perf_counter(); {imports}; print(time.perf_counter() - t, sys.dont_write_bytecode)"
)


def import_seconds(modules: tuple[str, ...], cpu: int | None, timeout: float = 60.0) -> float:
    """Seconds ``import`` of ``modules``, in order, takes in a fresh interpreter that caches bytecode.

    Timed inside the child around the import statements alone: the same as timing ``python -c 'import
    a; import b'`` minus ``python -c 'pass'``, without the noise of two interpreter start-ups. The child
    may write bytecode whatever ``PYTHONDONTWRITEBYTECODE`` says here, so after one untimed run the figure
    is what users of an installed package see (BenchmarkError if it still could not).
    """
    imports = "; ".join(f"import {module}" for module in modules)
    out = run_python(["-c", _IMPORT_SNIPPET.format(imports=imports)], cpu, timeout, cache_bytecode=True).split()
    if out[1:] != ["False"]:
        raise BenchmarkError(f"import {', '.join(modules)}: the child could not cache bytecode ({out!r})")
    return float(out[0])


def log(message: str) -> None:
    """Progress goes to stderr, so stdout carries only the report."""
    print(message, file=sys.stderr, flush=True)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C does: through the finally blocks that kill the children."""
    raise SystemExit(128 + signum)


def run_rounds(
    count: int,
    measure: Callable[[int, EmulatorInfo, int | None], R],
    metadata: Callable[[int | None, int | None], dict[str, Any]],
    *flags: str,
    before: Callable[[int | None], None] | None = None,
    server: str = "emulator",
) -> tuple[list[R], dict[str, Any]]:
    """``count`` rounds against one server; (the rounds, the run's metadata).

    ``server`` is ``"emulator"`` (started with ``flags``) or ``"replay"`` (:func:`replay_server`).

    The emulator gets the first CPU and each measurement the second (``measure(index, emulator,
    client_cpu)``); ``before(client_cpu)`` runs first (warming caches, say). One server serves every
    round (and both kinds: replies are cut at each request's max_tokens); every child process is killed
    on the way out, whatever happens, SIGTERM and SIGHUP included.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    server_cpu, client_cpu = choose_cpus()
    meta = metadata(server_cpu, client_cpu)
    started = time.perf_counter()
    rounds: list[R] = []
    try:
        if before is not None:
            before(client_cpu)
        with replay_server(server_cpu) if server == "replay" else emulator(server_cpu, *flags) as target:
            for index in range(count):
                log(f"round {index + 1}/{count} ({time.perf_counter() - started:.0f} s elapsed)")
                rounds.append(measure(index, target, client_cpu))
    finally:
        kill_all()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return rounds, meta


def child_parser(prog: str) -> argparse.ArgumentParser:
    """The arguments every benchmark child takes: who, what, where, how much."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--kind", choices=("invoke", "stream"), required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--access-key", default=ACCESS_KEY)
    parser.add_argument("--secret-key", default=SECRET_KEY)
    parser.add_argument("--requests", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--streams", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--server-pid", type=int, default=None, help="the server's pid: its CPU time is recorded")
    return parser


def package_version(name: str) -> str:
    """An installed distribution's version, for the report ("absent" if not installed)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def median(values: list[float]) -> float:
    """The median, or NaN for no values (a contender that failed every round)."""
    return statistics.median(values) if values else float("nan")


# -- child mode ----------------------------------------------------------------------------------------


def _pin_self(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


async def _child_run(args: argparse.Namespace) -> dict[str, float]:
    from _clients import CONTENDERS, Target

    contender = CONTENDERS[args.client]
    target = Target(
        args.endpoint, args.region, args.access_key, args.secret_key, max(args.concurrency, 1), args.server_pid
    )
    if args.kind == "invoke":
        invoke = await asyncio.wait_for(contender.invoke(target, args.requests, args.concurrency), args.timeout)
        return invoke.summary()
    if contender.stream is None:
        raise SystemExit(f"{args.client} has no streaming variant")
    return (await asyncio.wait_for(contender.stream(target, args.streams), args.timeout)).summary()


def child_main(argv: list[str]) -> None:
    """Run one contender and print its summary (with peak RSS in MiB) as one JSON line."""
    parser = child_parser("_harness.py child")
    parser.add_argument("--client", required=True)
    parser.add_argument("--region", default=REGION)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process (when not started by taskset)")
    parser.add_argument("--profile", metavar="PATH", help="write a cProfile of the whole run (pstats format)")
    args = parser.parse_args(argv)
    _pin_self(args.cpu)
    if args.profile:
        import cProfile

        # Process CPU time, not wall time: on a shared machine a wall-clock profile charges other
        # processes' time slices to whatever function was running when this one was descheduled.
        with cProfile.Profile(time.process_time) as profile:
            summary = asyncio.run(_child_run(args))
        profile.dump_stats(args.profile)
    else:
        summary = asyncio.run(_child_run(args))
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1.0 / 1024 if sys.platform != "darwin" else 1.0 / (1024 * 1024)
    summary["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    print(json.dumps(summary))


if __name__ == "__main__":
    if sys.argv[1:2] != ["child"]:
        raise SystemExit("usage: _harness.py child --client NAME --kind invoke|stream ... (run.py drives this)")
    child_main(sys.argv[2:])
