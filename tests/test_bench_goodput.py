"""The goodput benchmark's "today" contenders: the code before the goodput controller, run from its own tree.

Each check runs what the benchmark runs: the tree extracted from git, the server child, the contender child.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_goodput


@pytest.fixture(scope="module")
def today(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bench_goodput.today_tree(tmp_path_factory.mktemp("goodput"))


def test_today_children_import_the_old_tree(today: Path) -> None:
    """A child with today's environment imports e28bad5's package (AIMD), not this tree's (GoodputController)."""
    probe = (
        "import bedrock_chat, bedrock_chat._batch.scheduler as s; "
        "print(bedrock_chat.__file__); print(hasattr(s, 'AimdController'), hasattr(s, 'GoodputController'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=bench_goodput._env(today),
        cwd=today,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    where, kinds = done.stdout.split("\n")[:2]
    assert Path(where).resolve().is_relative_to(today.resolve())
    assert kinds == "True False"


@pytest.mark.parametrize("name", [f"{bench_goodput.CLI} (e28bad5)", f"{bench_goodput.LIBRARY} (e28bad5)"])
def test_today_contenders_run_a_batch_against_the_server(name: str, today: Path, tmp_path: Path) -> None:
    """Both old contenders send every record; the counts are the server's (a quota whose burst holds them all)."""
    row = bench_goodput.measure(name, quota=True, records=12, concurrency=4, work=tmp_path, today=today)
    assert row["contender"] == name
    assert (row["succeeded"], row["failed"], row["cut_off"]) == (12, 0, False)
    assert (row["attempts"], row["throttled"]) == (12, 0)
    assert row["goodput"] > 0


def _row(name: str, concurrency: int, **values: Any) -> dict[str, Any]:
    return {"contender": name, "concurrency": concurrency, "records": 200, "failed": 0, **values}


def test_render_shows_new_over_today() -> None:
    """The quota table gains a ratio row per pair, the random table a ratio column; missing rows render as '-'."""
    cli, library = bench_goodput.CLI, bench_goodput.LIBRARY
    document = {
        "data": {
            "setup": {"quota_per_second": 40.0, "latency": 0.1, "random_throttle": 0.3, "records": 600},
            "quota": [
                _row(cli, 16, achieved=1.0, throttled_fraction=0.02),
                _row(f"{cli} (e28bad5)", 16, achieved=0.8, throttled_fraction=0.1),
                _row(library, 16, achieved=0.9, throttled_fraction=0.03),
            ],
            "random": [
                _row(cli, 64, goodput=30.0, body_goodput=60.0, throttled_fraction=0.26),
                _row(f"{cli} (e28bad5)", 64, goodput=10.0, body_goodput=math.nan, throttled_fraction=0.26),
                _row(library, 64, goodput=40.0, body_goodput=50.0, throttled_fraction=0.26, cut_off=True),
            ],
        }
    }
    lines = bench_goodput.render(document).splitlines()
    assert f"| {cli}: new / e28bad5 | 1.25x |" in lines
    assert f"| {library}: new / e28bad5 | - |" in lines
    assert f"| {cli} | 30.0 | 60.0 | 26.0% | 0 | 3.00x; - |" in lines
    assert f"| {cli} (e28bad5) | 10.0 | - | 26.0% | 0 | - |" in lines
    assert f"| {library} (cut off at 150 s) | 40.0 | 50.0 | 26.0% | 0 | -; - |" in lines


def test_render_small_batch_shows_medians_and_ratios() -> None:
    """The small batch: seconds to the first 90% (60 of 66 records), the median over seeds, ours over each."""
    library, cutting, today = bench_goodput.LIBRARY, bench_goodput.LIBRARY_CUTTING, f"{bench_goodput.LIBRARY} (e28bad5)"

    def small(name: str, concurrency: int, seconds: float, seed: int = 0) -> dict[str, Any]:
        return {**_row(name, concurrency, body_goodput=60 / seconds, seed=seed), "records": 66}

    document = {
        "data": {
            "setup": {"quota_per_second": 40.0, "latency": 0.1, "random_throttle": 0.3, "records": 600},
            "quota": [],
            "random": [],
            "small": [
                *(small(library, 16, seconds, seed) for seed, seconds in enumerate([2.0, 3.0, 9.0])),
                *(small(cutting, 16, seconds, seed) for seed, seconds in enumerate([6.0, 12.0, 1.0])),
                small(today, 16, 4.0),
                small(library, 64, 2.0),
            ],
        }
    }
    lines = bench_goodput.render(document).splitlines()
    assert lines[0].startswith("A small batch: 66 records")  # no quota table without quota rows
    assert f"| {library} | 3.00 (3) | 2.00 |" in lines
    assert f"| {cutting} | 6.00 (3) | - |" in lines
    assert f"| {library} / {cutting} | 0.50x | - |" in lines
    assert f"| {library} / {today} | 0.75x | - |" in lines
    assert f"| {library} / {bench_goodput.AIOBOTOCORE} | - | - |" in lines


def test_the_cutting_start_is_swapped_in_by_the_child_only() -> None:
    """The bench's "cutting start" child builds schedulers whose controller skips the start's learning; this
    process's controller (the library's) learns."""
    from bedrock_chat._batch.scheduler import GoodputController

    probe = (
        "import bench_goodput; bench_goodput._use_cutting_start(); "
        "from bedrock_chat._batch import scheduler; "
        "op = scheduler.Operation(lambda i: i, None, lambda p: 1, lambda v: None); "
        "print(scheduler.Scheduler([], op).controller._starting)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=bench_goodput._env(),
        cwd=bench_goodput.HERE,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["False"]
    assert GoodputController()._starting


def test_the_cutting_start_contender_runs_a_batch_against_the_server(tmp_path: Path) -> None:
    """The contender child with the swapped start sends every record."""
    row = bench_goodput.measure(
        bench_goodput.LIBRARY_CUTTING, quota=True, records=12, concurrency=4, work=tmp_path, seed=3
    )
    assert (row["succeeded"], row["failed"], row["cut_off"], row["seed"]) == (12, 0, False, 3)
