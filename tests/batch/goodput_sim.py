"""A batch against a simulated Bedrock, on a virtual clock: the send-rate controller's test bench (no I/O, no sleeps).

An event simulation of what :class:`~bedrock_chat._batch.scheduler.Scheduler` does with a controller --
``concurrency`` slots, the controller's pace, the client's retries (full-jitter backoff, 1 s base for
throttles, 2 retries by default, each retry paced as the scheduler paces it) -- against a service that
answers in ``latency`` seconds, throttles at random with probability ``random_throttle`` (after the
same latency), and enforces a quota with the emulator's own :class:`TokenBucket` (its throttles come back
at once, as the emulator's do). The same seed gives the same run.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from typing import Protocol

import attrs

from bedrock_chat.emulator._quota import TokenBucket

__all__ = ["Controller", "LegacyAimd", "Run", "simulate"]


class Controller(Protocol):
    """What the simulation needs of a controller (the scheduler's :class:`GoodputController` has it)."""

    def ready_at(self, now: float) -> float: ...
    def admitted(self, now: float) -> int: ...
    def on_result(self, epoch: int, now: float, *, throttled: bool) -> bool: ...


@attrs.frozen
class Run:
    """One simulated batch: its duration, results and attempts."""

    seconds: float
    succeeded: int
    failed: int
    attempts: int
    throttled: int
    #: When each success came back, in order.
    success_times: tuple[float, ...] = ()

    @property
    def goodput(self) -> float:
        """Successful requests per second."""
        return self.succeeded / self.seconds

    def seconds_to(self, share: float) -> float:
        """When ``share`` of the records had succeeded (infinite if they never did): the run without its
        tail of retries, which a few unlucky records' backoff decides."""
        needed = math.ceil(share * self.records)
        return self.success_times[needed - 1] if 0 < needed <= len(self.success_times) else math.inf

    @property
    def records(self) -> int:
        """Records in the run: each ends as a success or a failure."""
        return self.succeeded + self.failed

    @property
    def throttled_fraction(self) -> float:
        """Throttled attempts out of all attempts."""
        return self.throttled / self.attempts


class LegacyAimd:
    """The controller before this one, for comparison: AIMD on concurrency, no pacing.

    A throttle halves the concurrency limit (once per epoch); a run of successes as long as the limit adds one.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = float(maximum)
        self.epoch = 0
        self._streak = 0

    @property
    def slots(self) -> int:
        return max(1, int(self.limit))

    def ready_at(self, now: float) -> float:
        return now

    def admitted(self, now: float) -> int:
        return self.epoch

    def on_result(self, epoch: int, now: float, *, throttled: bool) -> bool:
        if throttled:
            if epoch < self.epoch:
                return False
            self.limit = max(1.0, self.limit * 0.5)
            self.epoch += 1
            self._streak = 0
            return True
        if self.limit >= self.maximum:
            return False
        self._streak += 1
        if self._streak >= self.slots:
            self._streak = 0
            self.limit = min(float(self.maximum), self.limit + 1.0)
        return False


def simulate(
    controller: Controller,
    *,
    concurrency: int,
    records: int = 600,
    latency: float = 0.1,
    quota_per_second: float | None = 40.0,
    burst_seconds: float = 1.0,
    random_throttle: float = 0.0,
    retries: int = 2,
    seed: int = 1,
) -> Run:
    """Run ``records`` requests through ``controller`` and the simulated service; see the module docstring."""
    rng = random.Random(seed)
    bucket = (
        TokenBucket(quota_per_second, quota_per_second * burst_seconds, 0.0) if quota_per_second is not None else None
    )
    events: list[tuple[float, int, str, tuple[int, int]]] = []
    order = itertools.count()

    def at(time: float, kind: str, attempt: tuple[int, int] = (0, 0)) -> None:
        heapq.heappush(events, (time, next(order), kind, attempt))

    remaining = records
    in_flight = succeeded = failed = attempts = throttled = 0
    success_times: list[float] = []
    feeder_waiting = False
    finished = 0.0
    at(0.0, "feed")
    while events:
        now, _, kind, (retry, epoch) = heapq.heappop(events)
        if kind == "feed":
            feeder_waiting = False
            limit = min(concurrency, getattr(controller, "slots", concurrency))
            while remaining and in_flight < limit:
                ready = controller.ready_at(now)
                if ready > now:
                    at(ready, "feed")
                    feeder_waiting = True
                    break
                remaining -= 1
                in_flight += 1
                at(now, "send", (0, controller.admitted(now)))
        elif kind == "send":
            attempts += 1
            if random_throttle and rng.random() < random_throttle:
                at(now + latency, "throttled", (retry, epoch))
            elif bucket is not None and not bucket.take(1, now):
                at(now, "throttled", (retry, epoch))
            else:
                at(now + latency, "ok", (retry, epoch))
        else:
            ok = kind == "ok"
            controller.on_result(epoch, now, throttled=not ok)
            if ok:
                succeeded += 1
                success_times.append(now)
            else:
                throttled += 1
                if retry < retries:
                    delay = rng.random() * min(20.0, 2.0**retry)
                    at(now + delay, "send", (retry + 1, controller.admitted(now)))
                    continue
                failed += 1
            in_flight -= 1
            finished = now
            if not feeder_waiting:
                at(now, "feed")
    return Run(finished, succeeded, failed, attempts, throttled, tuple(success_times))
