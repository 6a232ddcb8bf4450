"""``ChatCompletion.batch``: the pure limiter and controller, the engine, and real runs against the emulator."""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import httpx
import pytest
from e2e_helpers import checked_out_connections, emulator_client
from goodput_sim import LegacyAimd, simulate
from hypothesis import given, settings
from hypothesis import strategies as st

from bedrock_chat import (
    AnthropicBedrock,
    BatchResult,
    ConfigurationError,
    InvalidRequestError,
    ThrottlingError,
    ValidationError,
)
from bedrock_chat._batch.chat import chat_batch
from bedrock_chat._batch.scheduler import (
    GoodputController,
    Operation,
    Outcome,
    RetryHook,
    Scheduler,
    SlidingWindowLimiter,
    estimate_tokens,
)
from bedrock_chat.emulator import BedrockEmulator, Faults

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def chat_request(i: int, **extra: Any) -> dict[str, Any]:
    """The create() arguments of request ``i``: the emulator echoes ``record i`` back first."""
    return {"model": MODEL, "messages": [{"role": "user", "content": f"record {i}"}], "max_tokens": 16, **extra}


def echoed_index(result: BatchResult) -> int:
    """The request number the reply echoes (the fake model starts its reply with the prompt's words)."""
    completion = result.unwrap().completion
    word, number = completion.split()[:2]
    assert word == "record"
    return int(number)


# ---------------------------------------------------------------------------------------------- helpers


class VirtualClock:
    """Time that moves only when the batch sleeps, after every other task has gone as far as it can."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Let spawned workers reach their request (and record its start) before time jumps.
        await anyio.wait_all_tasks_blocked()
        self.now += seconds
        await anyio.lowlevel.checkpoint()


class _TrackedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, done: Callable[[], None]) -> None:
        self._stream = stream
        self._done: Callable[[], None] | None = done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting requests in flight (from sending to closing the response) and their starts."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.in_flight = 0
        self.max_in_flight = 0
        #: (start time, tokens the response reports) of every request, in start order.
        self.starts: list[float] = []
        self.tokens: list[tuple[float, int]] = []
        self.on_start: Callable[[int], None] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = self.clock()
        self.starts.append(started)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.on_start is not None:
            self.on_start(self.in_flight)
        try:
            response = await super().handle_async_request(request)
        except BaseException:
            self.in_flight -= 1
            raise
        counts = [response.headers.get(f"x-amzn-bedrock-{kind}-token-count") for kind in ("input", "output")]
        if all(counts):
            self.tokens.append((started, sum(int(count) for count in counts if count)))
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _TrackedStream(response.stream, self._finished)
        return response

    def _finished(self) -> None:
        self.in_flight -= 1


def max_in_window(events: list[tuple[float, int]], window: float = 60.0) -> int:
    """The largest total of ``(time, amount)`` events inside any half-open window ``[t, t + window)``."""
    events = sorted(events)
    best = 0
    for start, _ in events:
        best = max(best, sum(amount for at, amount in events if start <= at < start + window))
    return best


def set_faults(emu: BedrockEmulator, **faults: Any) -> None:
    """Give the emulator these rate faults or delays for the rest of the test (the fixture resets them)."""
    emu.options = attrs.evolve(emu.options, faults=Faults(**faults))


# ---------------------------------------------------------------------------------------------- the sliding window


def test_window_admits_up_to_the_limit_then_waits_for_the_oldest() -> None:
    """Three units a minute: the fourth waits until the first charge is a full minute old."""
    window = SlidingWindowLimiter(3, 60.0)
    for at in (0.0, 10.0, 20.0):
        assert window.ready_at(1, at) == at
        window.charge(1, at)
    assert window.ready_at(1, 30.0) == 60.0
    assert window.ready_at(2, 30.0) == 70.0
    assert window.total(59.9) == 3
    assert window.total(60.0) == 2
    assert window.ready_at(1, 60.0) == 60.0


def test_window_adjust_changes_live_charges_only() -> None:
    """Reconciling a charge moves the total while it is in the window and does nothing after."""
    window = SlidingWindowLimiter(100, 60.0)
    first = window.charge(40, 0.0)
    window.adjust(first, 10)
    assert window.total(1.0) == 10
    second = window.charge(5, 1.0)
    assert window.total(61.0) == 0
    window.adjust(second, 50)
    assert window.total(61.0) == 0


def test_window_refuses_an_amount_that_can_never_fit() -> None:
    """Asking for more than the whole limit is a caller error (the scheduler clamps instead)."""
    with pytest.raises(ValueError, match="exceeds the limit"):
        SlidingWindowLimiter(10, 60.0).ready_at(11, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 50),
    arrivals=st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.integers(1, 50)), min_size=1, max_size=60),
)
def test_window_holds_over_every_minute(limit: int, arrivals: list[tuple[float, int]]) -> None:
    """Admitting each request at ``ready_at`` keeps every 60-second window under the limit, whatever the arrivals."""
    window = SlidingWindowLimiter(limit, 60.0)
    now = 0.0
    admitted: list[tuple[float, int]] = []
    for gap, amount in arrivals:
        amount = min(amount, limit)
        now = window.ready_at(amount, now + gap)
        window.charge(amount, now)
        admitted.append((now, amount))
    assert max_in_window(admitted) <= limit


# ---------------------------------------------------------------------------------------------- the send rate


def _feed(controller: GoodputController, now: float, results: list[bool]) -> None:
    """Admit one attempt per result at ``now`` and report them (True: throttled)."""
    for throttled in results:
        epoch = controller.admitted(now)
        controller.on_result(epoch, now, throttled=throttled)


def test_controller_paces_at_its_rate() -> None:
    """Attempts are spaced 1/rate apart; a late caller is not owed a burst."""
    controller = GoodputController(initial_rate=10.0)
    assert controller.ready_at(0.0) == 0.0
    controller.admitted(0.0)
    assert controller.ready_at(0.0) == pytest.approx(0.1)
    controller.admitted(0.1)
    assert controller.ready_at(5.0) == 5.0
    controller.admitted(5.0)
    assert controller.ready_at(5.0) == pytest.approx(5.1)


def test_controller_doubles_until_the_first_throttle() -> None:
    """Without throttles the start doubles the rate every four results."""
    controller = GoodputController(initial_rate=8.0)
    for step in range(4):
        _feed(controller, float(step), [False] * 4)
    assert controller.rate == 8.0 * 2**4


def test_first_throttle_cuts_to_the_runs_goodput() -> None:
    """The first throttle after a fast start cuts to the successes per second so far (or half, if less)."""
    controller = GoodputController(initial_rate=8.0)
    _feed(controller, 0.0, [False] * 4)  # 16/s
    _feed(controller, 0.5, [False] * 4)  # 32/s
    _feed(controller, 1.0, [False] * 4)  # 64/s
    _feed(controller, 2.0, [True, True])  # two in a row: not the 1% of bad luck a single one could be
    assert controller.rate == pytest.approx(12 / 2.0)


def test_results_from_an_older_rate_are_not_evidence() -> None:
    """Throttles of attempts sent before the last change do not change the rate again."""
    controller = GoodputController(initial_rate=8.0)
    old = [controller.admitted(0.0) for _ in range(8)]
    _feed(controller, 0.0, [False] * 4)
    rate = controller.rate
    assert not any(controller.on_result(epoch, 1.0, throttled=True) for epoch in old)
    assert controller.rate == rate


def test_throttles_in_the_first_epoch_do_not_cut() -> None:
    """With nothing slower to compare them with, the first results' throttles may not respond to load: the
    start goes on doubling (the rate before cut to half, 10 s for a small batch under 30% random throttles)."""
    controller = GoodputController(initial_rate=8.0)
    _feed(controller, 0.0, [True, False, True, False])
    assert controller.rate == 16.0


def test_start_throttles_beyond_the_slower_epochs_share_cut() -> None:
    """After clean epochs, a run of throttles is load: the start ends with a cut (to the goodput so far)."""
    controller = GoodputController(initial_rate=8.0)
    _feed(controller, 0.0, [False] * 4)  # 16/s
    _feed(controller, 0.5, [False] * 4)  # 32/s
    _feed(controller, 1.0, [True, True])
    assert controller.rate == 32.0  # two after eight clean results could still be chance
    _feed(controller, 1.0, [True])
    assert controller.rate == pytest.approx(8 / 1.0)


def test_start_throttles_at_the_same_share_do_not_cut() -> None:
    """Throttled at the share the slower epochs were: the rate keeps doubling, and the share is learnt."""
    controller = GoodputController(initial_rate=8.0)
    for step in range(8):
        _feed(controller, step * 0.1, [True, False, False, False])
    assert controller.rate == 8.0 * 2**8
    assert controller.background == pytest.approx(0.25)


def test_a_start_mostly_throttled_cuts_whatever_the_trend() -> None:
    """More than 60% of the start's first 12 results throttled: a cut, even with no rise to test (a quota
    already spent when the batch starts, below the starting pace)."""
    controller = GoodputController(initial_rate=8.0)
    _feed(controller, 0.0, [True, True, False, False])
    _feed(controller, 0.1, [True, True, True, False])
    _feed(controller, 0.2, [True, True, True])
    assert controller.rate == 32.0
    _feed(controller, 0.2, [True])
    assert controller.rate == 16.0  # half: three successes are too few for a goodput


def test_throttles_that_stay_below_the_goodput_become_background() -> None:
    """Throttled as often after the cut to the measured goodput: the share is learnt and the rate restored."""
    controller = GoodputController(initial_rate=8.0)
    _feed(controller, 0.0, [False] * 4)  # 16/s
    _feed(controller, 1.0, [True, True, True])  # four successes in a second: the cut goes to 4/s
    assert controller.rate == 4.0
    _feed(controller, 1.0, [True, False, False] * 5 + [True])  # measuring: a third throttled
    assert controller.rate < 4.0
    _feed(controller, 2.0, [True, False, False] * 5 + [True])  # verifying: still a third
    assert controller.background == pytest.approx(12 / 32)
    assert controller.rate == 16.0


def test_a_cut_that_stops_the_throttles_is_kept() -> None:
    """When the throttles stop at the lower rate, it stays, and probing starts from there."""
    controller = GoodputController(initial_rate=8.0)
    _feed(controller, 0.0, [False] * 4)
    _feed(controller, 1.0, [True, True, True])
    _feed(controller, 1.0, [False] * 16)
    assert controller.background == 0.0
    assert controller.rate == 4.0
    _feed(controller, 2.0, [False] * 16)
    assert controller.rate == pytest.approx(4.0 * GoodputController.CATCH_UP)


@given(st.lists(st.booleans(), max_size=400), st.floats(0.5, 100.0))
def test_controller_rate_stays_positive_and_finite(events: list[bool], initial: float) -> None:
    """Whatever happens, the rate stays at or above its minimum and finite."""
    controller = GoodputController(initial_rate=initial)
    now = 0.0
    for throttled in events:
        now += 0.01
        epoch = controller.admitted(now)
        controller.on_result(epoch, now, throttled=throttled)
        assert controller.minimum_rate <= controller.rate < math.inf


def test_bad_controller_settings_are_refused() -> None:
    """A rate of zero, or a minimum above the start, is a ValueError."""
    with pytest.raises(ValueError, match="minimum_rate"):
        GoodputController(initial_rate=1.0, minimum_rate=2.0)
    with pytest.raises(ValueError, match="minimum_rate"):
        GoodputController(initial_rate=1.0, minimum_rate=0.0)


# The set-up: 600 records of 100 ms against 40 requests/s (1 s of burst), ten seeds per case.
SEEDS = range(1, 11)


@pytest.mark.parametrize("concurrency", [16, 64, 256])
def test_simulated_quota_is_reached_with_few_throttles(concurrency: int) -> None:
    """Without being told the quota: >= 0.95 of it in every run, and <= 5% of attempts throttled on average."""
    runs = [simulate(GoodputController(), concurrency=concurrency, seed=seed) for seed in SEEDS]
    assert all(run.failed == 0 or run.failed <= 5 for run in runs)
    assert min(run.goodput for run in runs) >= 0.95 * 40.0
    assert sum(run.throttled_fraction for run in runs) / len(runs) <= 0.05
    assert max(run.throttled_fraction for run in runs) <= 0.07


@pytest.mark.parametrize("concurrency", [16, 64, 256])
def test_a_faster_start_still_measures_the_quota(concurrency: int) -> None:
    """Started at 16/s, the first cut overshoots further and the measuring epoch opens with answers of the
    faster start's attempts still coming in. Counted from its opening, they inflated the measured goodput,
    the verification took the quota's throttles for load-independent ones and the run ended 27% throttled
    at concurrency 16; counted from one latency after the epoch opened, it stays under 5%."""
    runs = [simulate(GoodputController(initial_rate=16.0), concurrency=concurrency, seed=seed) for seed in SEEDS]
    assert min(run.goodput for run in runs) >= 0.95 * 40.0
    assert sum(run.throttled_fraction for run in runs) / len(runs) <= 0.05
    assert max(run.throttled_fraction for run in runs) <= 0.07


@pytest.mark.parametrize("concurrency", [16, 64, 256])
def test_a_quota_with_a_large_burst_is_still_measured(concurrency: int) -> None:
    """40 requests/s with 5 s of burst: the start overshoots the rate far before the bucket runs dry, and
    the measuring epoch opens with that overshoot's answers still coming in. Counted, they made the quota
    look several times its rate and the runs end 22-70% throttled; not counted, under 8%."""
    runs = [simulate(GoodputController(), concurrency=concurrency, burst_seconds=5.0, seed=seed) for seed in SEEDS]
    assert sum(run.throttled_fraction for run in runs) / len(runs) <= 0.08


@pytest.mark.parametrize("concurrency", [16, 64, 256])
def test_simulated_quota_beats_the_old_controller_on_throttles(concurrency: int) -> None:
    """The old AIMD on concurrency reached the quota by throttling more (its burst overshoots)."""
    new = [simulate(GoodputController(), concurrency=concurrency, seed=seed) for seed in SEEDS]
    old = [simulate(LegacyAimd(concurrency), concurrency=concurrency, seed=seed) for seed in SEEDS]
    assert sum(run.throttled for run in new) < sum(run.throttled for run in old)


@pytest.mark.parametrize("concurrency", [16, 64, 256])
def test_random_throttles_do_not_collapse_the_rate(concurrency: int) -> None:
    """30% load-independent throttles, no quota: faster than the old AIMD on average, and never far behind it."""
    new = [
        simulate(GoodputController(), concurrency=concurrency, seed=seed, quota_per_second=None, random_throttle=0.3)
        for seed in SEEDS
    ]
    old = [
        simulate(
            LegacyAimd(concurrency), concurrency=concurrency, seed=seed, quota_per_second=None, random_throttle=0.3
        )
        for seed in SEEDS
    ]
    assert sum(run.goodput for run in new) >= 1.5 * sum(run.goodput for run in old)
    assert all(n.goodput >= 0.95 * o.goodput for n, o in zip(new, old, strict=True))


@pytest.mark.parametrize("concurrency", [16, 64])
def test_a_small_batch_under_random_throttles_keeps_near_its_unthrottled_time(concurrency: int) -> None:
    """66 records, 30% load-independent throttles, the batches' 6 retries: the first 90% of the records take
    at most 2.5x as long as without throttles (the retries' backoff alone costs about 1.5-2x), over 20 seeds.
    A start that cut on its first throttles took ~6.7x: most of such a batch ran at the cut rate."""
    unthrottled = simulate(
        GoodputController(), concurrency=concurrency, records=66, quota_per_second=None, retries=6
    ).seconds_to(0.9)
    throttled = [
        simulate(
            GoodputController(),
            concurrency=concurrency,
            records=66,
            quota_per_second=None,
            random_throttle=0.3,
            retries=6,
            seed=seed,
        ).seconds_to(0.9)
        for seed in range(1, 21)
    ]
    assert sum(throttled) / len(throttled) <= 2.5 * unthrottled


def test_a_quota_already_spent_when_the_batch_starts_is_still_found() -> None:
    """A quota of 2 requests/s with no burst left (another batch just spent it), far below the starting
    pace: the start cuts (mostly throttled), and the verification does not take the throttles for
    load-independent ones (its successes per second did not fall with its rate), so the rate does not run
    away: under half the attempts throttled, and almost no record lost, on every seed."""
    runs = [
        simulate(
            GoodputController(),
            concurrency=64,
            records=200,
            quota_per_second=2.0,
            burst_seconds=0.03,
            retries=6,
            seed=seed,
        )
        for seed in SEEDS
    ]
    assert max(run.throttled_fraction for run in runs) < 0.5
    assert max(run.failed for run in runs) <= 10


# ---------------------------------------------------------------------------------------------- token estimates


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"messages": [{"role": "user", "content": "abcdefgh"}], "max_tokens": 10}, math.ceil(12 / 4) + 10),
        ({"prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 5}, math.ceil(23 / 4) + 5),
        ({"messages": [{"role": "user", "content": "x"}]}, math.ceil(5 / 4) + 256),
        ({"system": "abcd", "messages": [], "max_tokens": 1}, 1 + 1),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "data": "A" * 10_000}},
                            {"type": "text", "text": "abcd"},
                        ],
                    }
                ],
                "max_tokens": 3,
            },
            math.ceil(len("user" + "image" + "text" + "abcd") / 4) + 3,
        ),
    ],
)
def test_estimate_tokens_vectors(fields: Mapping[str, Any], expected: int) -> None:
    """Characters of the prompt's strings / 4 rounded up, plus max tokens (default 256); image data is not text."""
    assert estimate_tokens(fields) == expected


# ---------------------------------------------------------------------------------------------- the engine, no I/O


def fake_operation(
    fail: Callable[[int], bool] = lambda i: False,
    delay: Callable[[int], Awaitable[None]] | None = None,
) -> Operation[int, int, int]:
    """Items are ints; ``execute`` returns the square, or a ValidationError where ``fail(i)``."""

    async def execute(item: int, _on_retry: RetryHook) -> int:
        if delay is not None:
            await delay(item)
        else:
            await anyio.lowlevel.checkpoint()
        if fail(item):
            raise ValidationError("no", status=400, code="ValidationException")
        return item * item

    return Operation(prepare=lambda item: item, execute=execute, estimate_tokens=lambda _: 1, used_tokens=lambda _: 1)


async def drain(run: Scheduler[int, int, int], fail: BaseException | None = None) -> None:
    """Read every outcome of ``run`` (raising ``fail`` at the first one, if given)."""
    async with run:
        async for _ in run:
            if fail is not None:
                raise fail


async def agen(n: int) -> AsyncIterator[int]:
    """An async iterable input."""
    for i in range(n):
        await anyio.lowlevel.checkpoint()
        yield i


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["list", "generator", "async"])
async def test_every_item_yields_exactly_one_outcome(kind: str) -> None:
    """Sync and async inputs: one outcome per item, errors included, none lost or repeated."""
    n = 500
    items: Any = {"list": list(range(n)), "generator": iter(range(n)), "async": agen(n)}[kind]
    outcomes: list[Outcome[int, int]] = []
    async with Scheduler(items, fake_operation(fail=lambda i: i % 7 == 0), concurrency=5) as run:
        async for outcome in run:
            outcomes.append(outcome)
    assert sorted(outcome.index for outcome in outcomes) == list(range(n))
    for outcome in outcomes:
        assert outcome.item == outcome.index
        if outcome.index % 7 == 0:
            assert isinstance(outcome.error, ValidationError)
            assert outcome.value is None
        else:
            assert outcome.error is None
            assert outcome.value == outcome.index**2
    assert run.failed == len(range(0, n, 7))


@pytest.mark.asyncio
async def test_input_is_consumed_lazily() -> None:
    """A slow consumer holds back the input: items pulled stay within a few times the concurrency of those read."""
    pulled = 0

    def counting(n: int) -> Iterator[int]:
        nonlocal pulled
        for i in range(n):
            pulled += 1
            yield i

    delivered = 0
    most_ahead = 0
    async with Scheduler(counting(100_000), fake_operation(), concurrency=8) as run:
        async for _ in run:
            delivered += 1
            most_ahead = max(most_ahead, pulled - delivered)
            assert run.in_flight <= 8
            if delivered == 2_000:
                break
    # concurrency slots + a result buffer of the same size + the item the feeder is holding
    assert most_ahead <= 8 + 8 + 1
    assert pulled < 2_100


@pytest.mark.asyncio
async def test_an_unexpected_exception_ends_the_batch_as_itself() -> None:
    """A bug in an operation (not a BedrockError) cancels the batch and comes out unwrapped."""

    def fail(i: int) -> bool:
        if i == 30:
            raise RuntimeError("boom")
        return False

    run = Scheduler(range(1000), fake_operation(fail=fail), concurrency=4)
    with pytest.raises(RuntimeError, match="boom"):
        await drain(run)
    assert run.delivered < 1000


@pytest.mark.asyncio
async def test_a_failing_input_iterable_ends_the_batch_as_itself() -> None:
    """An error raised by the caller's iterable propagates from the ``async with`` as it was raised."""

    def items() -> Iterator[int]:
        yield 1
        raise OSError("input went away")

    with pytest.raises(OSError, match="input went away"):
        await drain(Scheduler(items(), fake_operation(), concurrency=2))


@pytest.mark.asyncio
async def test_the_consumers_own_exception_is_not_wrapped() -> None:
    """An exception raised in the ``async with`` body comes out as itself, and the batch stops."""
    run = Scheduler(range(100), fake_operation(), concurrency=2)
    with pytest.raises(KeyError):
        await drain(run, fail=KeyError("mine"))
    assert run.delivered == 1


@pytest.mark.asyncio
async def test_request_rate_holds_under_a_virtual_clock() -> None:
    """The engine admits at most ``requests_per_minute`` items in any minute of (virtual) time."""
    clock = VirtualClock()
    starts: list[tuple[float, int]] = []

    async def record(_: int) -> None:
        starts.append((clock(), 1))
        await anyio.lowlevel.checkpoint()

    operation = fake_operation(delay=record)
    async with Scheduler(
        range(95), operation, concurrency=4, requests_per_minute=30, clock=clock, sleep=clock.sleep
    ) as run:
        async for _ in run:
            pass
    assert len(starts) == 95
    assert max_in_window(starts) == 30
    assert clock() >= 180.0  # 95 requests at 30 a minute need three full windows of waiting


@pytest.mark.asyncio
async def test_async_for_without_async_with_fails_clearly() -> None:
    """Iterating a batch outside ``async with`` raises a TypeError that says how to use it."""
    async with AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="secret", region="us-east-1") as client:
        with pytest.raises(TypeError, match=re.escape("async with client.ChatCompletion.batch(requests) as results:")):
            async for _ in client.ChatCompletion.batch([chat_request(0)]):
                pass  # pragma: no cover


@pytest.mark.asyncio
async def test_a_batch_runs_once() -> None:
    """Entering the same batch twice is refused (a second run would repeat every request)."""
    async with AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="secret", region="us-east-1") as client:
        run = client.ChatCompletion.batch([])
        async with run:
            assert [result async for result in run] == []
        with pytest.raises(RuntimeError, match="runs once"):
            async with run:
                pass  # pragma: no cover


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"tokens_per_minute": -5}, "tokens_per_minute"),
        ({"tokens_per_minute": "100"}, "tokens_per_minute"),
    ],
)
def test_bad_limits_are_refused_before_anything_runs(arguments: dict[str, Any], field: str) -> None:
    """Limits are checked when batch() is called, naming the argument."""
    client = AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="secret", region="us-east-1")
    with pytest.raises(InvalidRequestError, match=field):
        client.ChatCompletion.batch([], **arguments)


@pytest.mark.asyncio
async def test_an_error_about_the_client_stops_the_batch() -> None:
    """No region configured: every item would fail alike, so the batch raises the ConfigurationError itself."""
    async with AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="secret") as client:
        with pytest.raises(ConfigurationError, match="no AWS region"):
            await client.ChatCompletion.batch_in_order([chat_request(i) for i in range(50)], concurrency=4)


def test_requests_must_be_iterable() -> None:
    """A non-iterable input is refused at once."""
    client = AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="secret", region="us-east-1")
    with pytest.raises(InvalidRequestError, match="requests"):
        client.ChatCompletion.batch(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- against the emulator


@pytest.mark.asyncio
async def test_two_thousand_records_with_thirty_percent_throttling_all_complete(
    bedrock_emulator: BedrockEmulator,
) -> None:
    """2,000 requests under 30% throttling: every one succeeds, once, and each reply answers its own request."""
    set_faults(bedrock_emulator, throttle_rate=0.3, seed=7)
    results: list[BatchResult] = []
    async with emulator_client(bedrock_emulator, max_retries=60) as client:
        async with client.ChatCompletion.batch((chat_request(i) for i in range(2000)), concurrency=16) as run:
            async for result in run:
                results.append(result)
            background = run._scheduler.controller.background
        assert checked_out_connections(client) == 0
    assert sorted(result.index for result in results) == list(range(2000))
    assert all(result.ok for result in results)
    assert all(echoed_index(result) == result.index for result in results)
    assert any(request.status == 429 for request in bedrock_emulator.requests)
    assert 0.15 < background < 0.45  # the throttles were seen, and recognised as independent of load


@pytest.mark.asyncio
async def test_concurrency_is_never_exceeded(bedrock_emulator: BedrockEmulator) -> None:
    """With slow answers, requests overlap up to the limit and never beyond it."""
    set_faults(bedrock_emulator, latency=0.02)
    transport = CountingTransport()
    async with transport, emulator_client(bedrock_emulator, transport=transport) as client:
        # Enough requests for the send rate's start (8/s, doubling) to outgrow 8 in flight.
        results = await client.ChatCompletion.batch_in_order([chat_request(i) for i in range(200)], concurrency=8)
    assert [result.index for result in results] == list(range(200))
    assert all(result.ok for result in results)
    assert transport.max_in_flight == 8
    assert transport.in_flight == 0


@pytest.mark.asyncio
async def test_request_rate_is_never_exceeded_over_any_minute(bedrock_emulator: BedrockEmulator) -> None:
    """Counted at the transport on a virtual clock: no 60-second window holds more than the RPM limit."""
    clock = VirtualClock()
    transport = CountingTransport(clock)
    async with transport, emulator_client(bedrock_emulator, transport=transport) as client:
        run = chat_batch(
            client,
            [chat_request(i) for i in range(70)],
            concurrency=4,
            requests_per_minute=20,
            clock=clock,
            sleep=clock.sleep,
        )
        async with run:
            assert all([result.ok async for result in run])
    assert len(transport.starts) == 70
    assert max_in_window([(at, 1) for at in transport.starts]) == 20
    assert clock() >= 180.0


@pytest.mark.asyncio
async def test_token_rate_is_never_exceeded_over_any_minute(bedrock_emulator: BedrockEmulator) -> None:
    """The tokens the service reports, by request start, stay under the TPM limit in every 60-second window."""
    clock = VirtualClock()
    transport = CountingTransport(clock)
    requests = [chat_request(i, max_tokens=12) for i in range(60)]
    async with transport, emulator_client(bedrock_emulator, transport=transport) as client:
        run = chat_batch(client, requests, concurrency=6, tokens_per_minute=150, clock=clock, sleep=clock.sleep)
        async with run:
            assert all([result.ok async for result in run])
    assert len(transport.tokens) == 60
    assert max_in_window(transport.tokens) <= 150
    assert clock() >= 60.0  # the limit did hold requests back


@pytest.mark.asyncio
async def test_throttling_lowers_the_send_rate(bedrock_emulator: BedrockEmulator) -> None:
    """A burst of throttles (retried by the client) after a clean start cuts the send rate, and every record
    still succeeds. How fast the rate climbs back depends on the clock, so the recovery is checked on a
    virtual clock (test_a_cut_that_stops_the_throttles_is_kept and the simulated runs), not here."""
    bedrock_emulator.enqueue_faults(*["none"] * 8, *["throttle"] * 4)
    rates: list[float] = []
    async with emulator_client(bedrock_emulator, max_retries=20) as client:
        run = client.ChatCompletion.batch([chat_request(i) for i in range(24)], concurrency=1)
        async with run:
            async for result in run:
                assert result.ok
                rates.append(run.send_rate)
    assert len(rates) == 24
    assert any(later < earlier for earlier, later in itertools.pairwise(rates))  # cut


@pytest.mark.asyncio
async def test_throttles_that_exhaust_retries_are_results_and_lower_the_rate(
    bedrock_emulator: BedrockEmulator,
) -> None:
    """Without retries a throttle is that request's ThrottlingError, and the controller still backs off
    (three throttles after four clean answers: not chance)."""
    bedrock_emulator.enqueue_faults(*["none"] * 4, *["throttle"] * 3)
    async with emulator_client(bedrock_emulator) as client:
        run = client.ChatCompletion.batch([chat_request(i) for i in range(7)], concurrency=1, max_retries=0)
        async with run:
            results = [result async for result in run]
            assert run.send_rate < 2 * GoodputController().rate  # the start had doubled it once
    errors = [result.error for result in results if not result.ok]
    assert len(errors) == 3
    assert all(isinstance(error, ThrottlingError) for error in errors)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("client_retries", "batch_retries", "throttles", "attempts", "ok"),
    [
        (2, None, 6, 7, True),  # the client's default 2 would have lost the record: a batch retries 6 times
        (2, None, 7, 7, False),
        (8, None, 8, 9, True),  # a client that allows more keeps its own
        (2, 1, 2, 2, False),  # and batch(max_retries=) is exactly that
        (2, 0, 1, 1, False),
    ],
)
async def test_a_batch_retries_six_times_unless_told(
    bedrock_emulator: BedrockEmulator,
    client_retries: int,
    batch_retries: int | None,
    throttles: int,
    attempts: int,
    ok: bool,
) -> None:
    """A request out of retries is a lost record: a batch's default is 6 retries (``bedrock-chat batch``'s), or
    the client's if more; ``max_retries=`` sets it. Counted at the emulator."""
    bedrock_emulator.enqueue_faults(*["throttle"] * throttles)
    async with emulator_client(bedrock_emulator, max_retries=client_retries) as client:
        (result,) = await client.ChatCompletion.batch_in_order([chat_request(0)], max_retries=batch_retries)
    assert result.ok is ok
    if not ok:
        assert isinstance(result.error, ThrottlingError)
    assert len(bedrock_emulator.requests) == attempts


@pytest.mark.asyncio
@pytest.mark.parametrize("bad", [-1, True, 1.5, "6"])
async def test_a_bad_max_retries_is_refused_before_any_request(bedrock_emulator: BedrockEmulator, bad: Any) -> None:
    async with emulator_client(bedrock_emulator) as client:
        with pytest.raises(InvalidRequestError) as caught:
            client.ChatCompletion.batch([chat_request(0)], max_retries=bad)
    assert caught.value.field == "max_retries"
    assert not bedrock_emulator.requests


@pytest.mark.asyncio
async def test_service_errors_are_typed_results(bedrock_emulator: BedrockEmulator) -> None:
    """A request the service rejects is that result's ValidationError; the others succeed."""
    bedrock_emulator.enqueue_faults("validation")
    async with emulator_client(bedrock_emulator) as client:
        results = await client.ChatCompletion.batch_in_order([chat_request(i) for i in range(5)], concurrency=1)
    assert isinstance(results[0].error, ValidationError)
    assert results[0].completion is None
    with pytest.raises(ValidationError):
        results[0].unwrap()
    assert [result.ok for result in results[1:]] == [True] * 4


@pytest.mark.asyncio
async def test_invalid_requests_fail_without_any_request(bedrock_emulator: BedrockEmulator) -> None:
    """Bad create() arguments are their item's InvalidRequestError, found before I/O; good items still run."""
    bad: list[Any] = [
        {"model": MODEL, "messages": []},
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "temprature": 0.5},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"model": [MODEL], "messages": [{"role": "user", "content": "hi"}]},
        "not a dict",
        {"model": MODEL, "messages": [{"role": "user", "content": "lone \ud800"}]},
    ]
    async with emulator_client(bedrock_emulator) as client:
        results = await client.ChatCompletion.batch_in_order([*bad, chat_request(99)])
    fields = [result.error.field for result in results[:-1] if isinstance(result.error, InvalidRequestError)]
    assert fields == ["messages", "stream", "temprature", "model", "model", "request", "messages"]
    assert results[-1].ok
    assert len(bedrock_emulator.requests) == 1


@pytest.mark.asyncio
async def test_cancelling_the_consumer_cancels_in_flight_requests(bedrock_emulator: BedrockEmulator) -> None:
    """Cancelled while every slot waits on a stalled answer: nothing new starts, no connection stays checked out."""
    bedrock_emulator.enqueue_faults(*["stall"] * 4)
    transport = CountingTransport()
    got: list[BatchResult] = []
    async with transport, emulator_client(bedrock_emulator, transport=transport) as client:
        all_started = anyio.Event()
        transport.on_start = lambda in_flight: all_started.set() if in_flight == 4 else None

        async def consume() -> None:
            async with client.ChatCompletion.batch([chat_request(i) for i in range(50)], concurrency=4) as run:
                async for result in run:
                    got.append(result)  # pragma: no cover - every answer stalls

        with anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(consume)
                await all_started.wait()
                task_group.cancel_scope.cancel()
        assert got == []
        assert len(transport.starts) == 4
        assert transport.in_flight == 0
        assert checked_out_connections(client) == 0


@pytest.mark.asyncio
async def test_leaving_the_block_early_stops_the_rest(bedrock_emulator: BedrockEmulator) -> None:
    """Breaking out after a few results cancels the remaining work and releases every connection."""
    set_faults(bedrock_emulator, latency=0.01)
    transport = CountingTransport()
    async with transport, emulator_client(bedrock_emulator, transport=transport) as client:
        async with client.ChatCompletion.batch([chat_request(i) for i in range(500)], concurrency=4) as run:
            async for _ in run:
                if run.completed == 5:
                    break
        assert transport.in_flight == 0
        assert checked_out_connections(client) == 0
    assert len(transport.starts) < 20


@pytest.mark.asyncio
async def test_batch_in_order_returns_input_order(bedrock_emulator: BedrockEmulator) -> None:
    """The helper collects every result and orders them by input position."""

    async def requests() -> AsyncIterator[dict[str, Any]]:
        for i in range(40):
            await anyio.lowlevel.checkpoint()
            yield chat_request(i)

    async with emulator_client(bedrock_emulator) as client:
        results = await client.ChatCompletion.batch_in_order(requests(), concurrency=7)
    assert [result.index for result in results] == list(range(40))
    assert [echoed_index(result) for result in results] == list(range(40))
    assert results[3].request == chat_request(3)


def test_batch_runs_under_trio(bedrock_emulator: BedrockEmulator) -> None:
    """The same batch works on the trio backend (anyio primitives only)."""

    async def main() -> list[BatchResult]:
        async with emulator_client(bedrock_emulator) as client:
            return await client.ChatCompletion.batch_in_order([chat_request(i) for i in range(30)], concurrency=5)

    results = anyio.run(main, backend="trio")
    assert [echoed_index(result) for result in results] == list(range(30))
