"""What the stream-decoder benchmarks share: socket-sized pieces and interleaved median timing."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

__all__ = ["measure", "split"]


def split(data: bytes, seed: int = 1) -> list[bytes]:
    """Cut the stream into the 1-4 KB pieces a socket read would deliver."""
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(data):
        step = rng.randint(1024, 4096)
        pieces.append(data[i : i + step])
        i += step
    return pieces


def measure(
    contenders: dict[str, Callable[[list[bytes]], list[object]]],
    pieces: list[bytes],
    repeats: int,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, float]:
    """Median seconds per stream for each contender, runs interleaved so that load hits all alike."""
    loops = 5
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = clock()
            for _ in range(loops):
                fn(pieces)
            times[name].append((clock() - start) / loops)
    return {name: statistics.median(samples) for name, samples in times.items()}
