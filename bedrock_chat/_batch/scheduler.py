"""Concurrent batches: bounded, rate-limited, adaptive, and nothing lost.

Theory of operation
-------------------
A batch is one anyio task group, owned by an async context manager (``_batch.chat.BatchRun`` for the library,
:class:`Scheduler` underneath it and the ``batch`` command), so no task outlives the ``async with`` block
and no cancel scope spans a ``yield``::

    feeder task  --(slot, rate)-->  worker task per item  --(bounded stream)-->  consumer (async for)

1. The **feeder** pulls one input at a time (sync or async iterable, consumed lazily), validates it with
   the pure ``prepare`` step (a bad item becomes its own error result at once, without I/O), then waits
   for a **slot** (an ``anyio.CapacityLimiter``) and for the **rate limiters**, and only then starts a
   worker. At most ``concurrency`` workers exist, so a 100,000-item batch holds at most ``concurrency``
   tasks, requests and undelivered results, whatever the input size.
2. A **worker** sends its request (the client's per-request retries included), then hands one outcome to
   a memory object stream whose buffer is ``concurrency`` results, and only then gives its slot back: a
   slow consumer therefore slows the feeder instead of piling up results.
3. The **consumer** iterates the stream; it ends when the feeder and every worker have closed their
   ends. Every input yields exactly one outcome: a value, or the typed :class:`BedrockError`.

Leaving the block early (``break``, an exception, a cancelled consumer) cancels the task group: no new
work starts, in-flight requests are cancelled, and the transport closes their responses, so no connection
stays checked out. An exception that is not a per-request error -- a bug, the caller's iterable failing,
or a :class:`ConfigurationError`/:class:`CredentialsError` that would fail every item alike -- cancels the
batch and comes out of the ``async with`` as itself (not wrapped in an ExceptionGroup).

**Rates.** :class:`SlidingWindowLimiter` keeps a log of charges over the last ``window`` seconds (60):
a request is admitted at ``now`` only if the charges in ``(now - window, now]`` plus its own fit under
the limit, which makes the limit hold over *every* window of that length, not just aligned minutes.
Requests charge 1; the client's retries are charged too, when they happen (they are spaced by the
client's backoff, not delayed by the window). Tokens are charged an estimate before sending -- prompt
characters / 4, rounded up, plus the request's max tokens (:func:`estimate_tokens`) -- and the charge is
reconciled with the usage the service reports once the reply is in. Output can never exceed max tokens,
so the estimate is an upper bound unless the prompt tokenises at more than one token per 4 characters;
a larger actual use is charged in full and delays later admissions.

**Adaptive send rate** (:class:`GoodputController`). Bedrock throttles an account when its requests or
tokens per minute run out -- a bucket that passes a fixed rate once its burst is spent, whatever is sent
-- and, independently of load, when capacity is short. The first kind calls for sending at the quota's
rate: faster only buys throttles, slower leaves quota unused. The second calls for not slowing down at all.
Concurrency is the wrong knob for either (the old AIMD on concurrency was blind to the rate it achieved:
0.87 of a 40/s quota with 11% throttled, and under 30% random throttles it fell to one or two requests in
flight), so the controller paces attempts at a *rate* and keeps ``concurrency`` as a cap only:

- **Epochs.** Every rate change starts an epoch; each attempt (first or retry: a retry is paced too, by
  taking the next slot when the client schedules it) carries the epoch it was sent in, and only results of
  the current epoch count as evidence about the current rate.
- **Signal.** Throttles are load-responsive evidence only beyond the share of *background* (load-
  independent) throttles learnt so far: an epoch's throttle count is tested against a binomial at that
  share, at 1%. With none learnt, the first throttle is a signal.
- **Start.** The rate starts at 8/s and doubles every 4 results, until the first signal. Throttles at the
  start say nothing yet about load: a quota's bucket has its burst then, so throttles from the very first
  results are more likely load-independent -- and cutting on them made a small batch (66 records under 30%
  random throttles) run most of its records at the cut rate, ~6.7x its unthrottled time (now ~2.1x, the
  retries' backoff included). So the start learns the throttles' share as it goes: an epoch's throttles
  are a signal only beyond the share of the slower epochs before it (a 1% test against an upper estimate
  of that share, Laplace's ``(k + 1) / (n + 2)``: 1/2 with nothing seen, so the first epoch never cuts),
  and, whatever the trend, once more than 60% of at least 12 start results were throttled (a quota
  already spent when the batch starts, below the starting pace). A quota found by doubling shows up as a
  rise: its burst passes everything, so after a clean start two or three throttles in an epoch cut. Once
  32 results are in, their share is the background. By the first signal a quota's burst has hidden its
  rate and the pace has overshot it, so the cut goes to the run's goodput so far (successes per second
  since the start: never below the quota's rate while over it), or half.
- **Measure, then verify.** After a cut comes a measuring epoch (16 results). If it is not throttled beyond
  the background, the cut was enough: the rate before it becomes the ceiling. If it still is, every attempt
  in it met an empty bucket, so its successes per second are the quota's rate: the rate is set to 0.95 of
  that, and a verifying epoch checks. Throttled as often there -- at least 10%, and beyond the background --
  the throttles may not respond to load; they do not if the successes per second (of any attempt, retries
  included, while the epoch ran: a bucket passes its rate to all alike) fell with the rate, nearer the
  rate's ratio than staying put. Successes per second are the lower of two counts: from the epoch's
  opening, and from one latency after it (the shortest time an epoch's first attempt took to be answered):
  answers in between are of attempts sent before the epoch, at a higher rate after a cut, and counting
  them made a verification after a fast start take the quota's throttles for load-independent ones (from
  16/s: 27% of attempts throttled at concurrency 16, now 4%), and a quota with a large burst (5 s of
  40/s, which the start overshoots far) end 22-70% throttled at concurrency 16-256 (now 4-6%).
  Throttles that do not respond to load have their share become the background, and the rate goes back
  to what it was before the cut; if the successes did not fall, a quota is still below this rate (one far
  below the rate it was found at, where the cut was bounded at half), and the verifying epoch is measured
  from again.
  (botocore's adaptive mode cuts on every throttle, to 0.7 of its measured send rate, so load-independent
  throttles drive it down as they do the old AIMD.)
- **Probe.** Without a signal, an epoch ends after 16 results and the rate grows: by 10% while under 0.9
  of the ceiling, by 2% above it, so a quota is crossed slowly and its throttles stay few; a signal cuts by
  20% and measures again. The rate never grows past twice what was actually sent, so a batch held back
  by its concurrency does not run the rate away.

Checked against a simulated quota (a virtual clock, the emulator's own token bucket; ``tests/batch``):
at concurrency 16, 64 and 256, 600 requests of 100 ms against 40 requests/s reach >= 0.95 of the quota
with <= 5% of attempts throttled; under 30% random throttles and no quota it stays ahead of the old AIMD,
and a 66-record batch's first 90% take <= 2.5x its unthrottled time. Still weak: a quota already spent at
the start, as the retries of the start's throttles (sent on the client's backoff, outside the pace) keep
hitting it while the cut is measured: at 2, 4 and 10 requests/s with no burst (200 records, c=64, ten
seeds), 0, 2 and 1 runs take those throttles for load-independent ones and end over half throttled (the
start that cut at once: 9, 2 and 0). And the start is slow for a small batch at high concurrency: from
8/s a 66-record batch takes ~1.5 s to its first 90% with no throttles, where the old AIMD sent all 64 at
once; starting faster (16/s: 2.0 s median under 30% random throttles at concurrency 64, against 2.6 s, and
the old AIMD's 1.2 s) keeps the quota runs under 5% throttled now, but takes a quota already spent at the
start for load-independent throttles on some seeds (the weakness above, worse), so the start stays at 8/s.
Tried and left out: sending an initial window (8-16) at once and pacing at the window per latency, and
after the first signal a refill (cut to a quarter, double back until throttled again, and take the
successes per second in between -- a bucket empty at both ends passed exactly its rate) instead of the
cut to the goodput so far. In simulation it met both targets (a 66-record batch at c=64 within 1.1x of
the old AIMD's time to 90%, the 40/s quota runs 3.6-3.9% throttled), but across other quotas (10-100/s,
bursts of 0.2-1 s, 50-500 ms latency) it ended 11-53 of 500 runs over 30% throttled (0 now), as the
window overshoots a small burst and the start learns those throttles as background.

The limiter and the controller are pure classes with time passed in; the scheduler takes ``clock`` and
``sleep`` so tests can drive the window with a virtual clock.
"""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._core.protocol import (
    DEFAULT_MAX_TOKENS,
)
from .._core.text import text_chars
from .._errors import BedrockError, ConfigurationError, CredentialsError, InvalidRequestError
from .._types import Usage

__all__ = [
    "DEFAULT_BATCH_RETRIES",
    "DEFAULT_CONCURRENCY",
    "GoodputController",
    "Operation",
    "Outcome",
    "Scheduler",
    "SlidingWindowLimiter",
    "estimate_tokens",
    "used_tokens",
]

DEFAULT_CONCURRENCY = 16
#: Retries per request of a batch unless told otherwise (``ChatCompletion.batch`` takes the client's if it
#: allows more): a batch can wait, and a request out of retries is a lost record. At 30% throttling, 2
#: retries lose 0.3**3 = 2.7% of the records; 6 lose 0.02%.
DEFAULT_BATCH_RETRIES = 6
#: The rate limits' window: "per minute".
WINDOW = 60.0

T = TypeVar("T")
P = TypeVar("P")
V = TypeVar("V")

#: ``on_retry(error, retry_number)``: called by the transport before each retry's backoff.
RetryHook = Callable[[BedrockError, int], None]

#: Errors about the client, not the request: every item would fail the same way, so the batch stops.
_FATAL = (ConfigurationError, CredentialsError)


# ---------------------------------------------------------------------------------------------- pure parts


class _Charge:
    __slots__ = ("amount", "live", "time")

    def __init__(self, time: float, amount: int) -> None:
        self.time = time
        self.amount = amount
        self.live = True


class SlidingWindowLimiter:
    """At most ``limit`` units in any ``window`` seconds: a log of charges, oldest first (pure, time passed in).

    ``ready_at`` says when an amount fits; ``charge`` records it; ``adjust`` corrects a charge later
    (token estimates reconciled with actual usage). Charges older than the window are dropped, so the
    log holds at most one window's worth of charges.
    """

    def __init__(self, limit: float, window: float = WINDOW) -> None:
        if not limit > 0 or not window > 0:
            raise ValueError(f"limit and window must be > 0, got {limit!r} and {window!r}")
        self.limit = limit
        self.window = window
        self._charges: collections.deque[_Charge] = collections.deque()
        self._total = 0

    def total(self, now: float) -> int:
        """Units charged in ``(now - window, now]``."""
        self._expire(now)
        return self._total

    def _expire(self, now: float) -> None:
        charges = self._charges
        while charges and charges[0].time + self.window <= now:
            charge = charges.popleft()
            charge.live = False
            self._total -= charge.amount

    def ready_at(self, amount: int, now: float) -> float:
        """The earliest time (``>= now``) at which ``amount`` fits; ``amount`` must not exceed the limit."""
        if amount > self.limit:
            raise ValueError(f"amount {amount} exceeds the limit {self.limit}: it would never fit")
        self._expire(now)
        excess = self._total + amount - self.limit
        if excess <= 0:
            return now
        for charge in self._charges:  # oldest first: wait until enough of them have left the window
            excess -= charge.amount
            if excess <= 0:
                return max(now, charge.time + self.window)
        raise AssertionError("unreachable: amount <= limit and every charge expires")  # pragma: no cover

    def charge(self, amount: int, now: float) -> _Charge:
        """Record ``amount`` at ``now`` (without checking it fits: retries are charged as they happen)."""
        self._expire(now)
        if self._charges and now < self._charges[-1].time:
            now = self._charges[-1].time  # keep the log sorted even if a caller's clock stepped back
        charge = _Charge(now, amount)
        self._charges.append(charge)
        self._total += amount
        return charge

    def adjust(self, charge: _Charge, amount: int) -> None:
        """Change a charge's amount (no effect once it has left the window)."""
        if charge.live:
            self._total += amount - charge.amount
            charge.amount = amount


class _Epoch:
    """What the controller measured at one send rate: attempts admitted, and of their results, throttles."""

    __slots__ = ("admits", "answered", "k", "last", "n", "opened", "rate", "settled", "settled_answers", "start")

    def __init__(self, rate: float, start: float) -> None:
        self.rate = rate
        self.opened = start
        self.start = start
        #: Successes of any attempt (this epoch's or an older one's) while this epoch was the current one.
        self.answered = 0
        #: When the epoch's own first answer came back (it bounds the service's latency).
        self.settled: float | None = None
        #: Successes counted as ``answered`` is, from one latency after the epoch opened.
        self.settled_answers = 0
        self.last = start
        self.admits = 0
        self.n = 0
        self.k = 0

    @property
    def throttled(self) -> float:
        return self.k / self.n if self.n else 0.0


def _binomial_threshold(n: int, p: float, tail: float = 0.01) -> int:
    """The smallest ``k`` with ``P(Binomial(n, p) >= k) < tail``: that many throttles are not bad luck."""
    p = min(0.95, p)
    term = (1.0 - p) ** n  # P(X == 0)
    above = 1.0  # P(X >= k)
    for k in range(n + 1):
        if above < tail:
            return max(k, 1)
        above -= term
        term = term * (n - k) / (k + 1) * p / (1.0 - p)
    return n + 1


class GoodputController:
    """The send rate of a batch, adapted to the goodput the service allows (pure: time passed in).

    See "Adaptive send rate" in the module docstring. ``ready_at(now)`` is when the next attempt may
    go; ``admitted(now)`` records one (first attempts and retries alike) and returns its epoch;
    ``on_result(epoch, now, throttled=...)`` feeds back how an attempt ended. Results of attempts sent
    at an older rate (epoch) are not evidence about the current one and are ignored.
    """

    #: Results per epoch before the rate changes (once the first throttle has set a ceiling).
    SAMPLES = 16
    #: Results per epoch during the start, when the rate doubles each epoch.
    START_SAMPLES = 4
    #: Rate changes: on a throttle signal, then while probing (``PROBE``) and catching up (``CATCH_UP``).
    CUT = 0.8
    START_CUT = 0.5
    PROBE = 1.02
    CATCH_UP = 1.1
    #: How far below the measured goodput a verified rate is set.
    MARGIN = 0.95
    #: An epoch without a throttle for this long ends however few results it has.
    QUIET_SECONDS = 1.0
    #: During the start, a share of throttles above this over at least this many results is a signal
    #: whatever their trend (a quota already spent when the batch starts, far below the start's rate).
    START_GUARD = 0.6
    START_GUARD_SAMPLES = 12
    STREAK_CAP = 16

    def __init__(self, *, initial_rate: float = 8.0, minimum_rate: float = 0.2) -> None:
        if not 0 < minimum_rate <= initial_rate or not math.isfinite(initial_rate):
            raise ValueError(f"need 0 < minimum_rate <= initial_rate, got {minimum_rate!r} and {initial_rate!r}")
        self.minimum_rate = minimum_rate
        self.epoch = 0
        #: The load-independent share of throttles learnt so far (0 until a verification shows some).
        self.background = 0.0
        self._current = _Epoch(float(initial_rate), 0.0)
        self._next = -math.inf
        self._state = _NORMAL
        self._restore = 0.0
        self._measured = (0, 0, 1.0, 0.0)
        self._ceiling: float | None = None
        self._began: float | None = None
        self._successes = 0
        self._streak = 0
        #: The shortest time an epoch's first attempt took to be answered: a bound on the service's latency.
        self._latency = math.inf
        #: Until the first cut: the results (attempts, throttles) of the start's finished epochs.
        self._starting = True
        self._start_n = 0
        self._start_k = 0

    @property
    def rate(self) -> float:
        """Attempts per second allowed now."""
        return self._current.rate

    def ready_at(self, now: float) -> float:
        """The earliest time (``>= now``) the next attempt may be sent."""
        return max(now, self._next)

    def admitted(self, now: float) -> int:
        """An attempt goes now (a first attempt or a retry): its slot in the pace, and its epoch."""
        current = self._current
        self._next = max(now, self._next) + 1.0 / current.rate
        if current.admits == 0:
            current.start = now
        current.admits += 1
        current.last = now
        if self._began is None:
            self._began = now
        return self.epoch

    def _change(self, rate: float, now: float, state: str) -> None:
        self._current = _Epoch(max(self.minimum_rate, rate), now)
        self.epoch += 1
        self._state = state
        self._next = min(self._next, now + 1.0 / self._current.rate)

    def on_result(self, epoch: int, now: float, *, throttled: bool) -> bool:
        """An attempt admitted in ``epoch`` ended (throttled or answered); whether the rate changed."""
        current = self._current
        if not throttled:
            self._successes += 1
            if epoch == self.epoch and current.settled is None:
                current.settled = now
                self._latency = min(self._latency, now - current.start)
            current.answered += 1
            if now > current.opened + self._latency:
                current.settled_answers += 1
        if epoch != self.epoch:
            return False
        current.n += 1
        current.k += throttled
        if self._state == _NORMAL:
            return self._normal(current, now, throttled=throttled)
        if current.n < self.SAMPLES:
            return False
        if self._state == _MEASURE:
            return self._measure(current, now)
        return self._verify(current, now)

    def _signal(self, n: int, k: int) -> bool:
        """More throttles than the background explains (a 1% test)."""
        return k >= _binomial_threshold(n, self.background + 0.01)

    def _start_signal(self, n: int, k: int) -> bool:
        """During the start: more throttles than the slower epochs before explain (a 1% test against an
        upper estimate of their share), or mostly throttles, whatever their trend."""
        prior_n, prior_k = self._start_n, self._start_k
        upper = (prior_k + 1) / (prior_n + 2)  # Laplace's rule: 1/2 with nothing seen, ~1/n after n answers
        if k >= _binomial_threshold(n, max(upper, self.background) + 0.01):
            return True
        total_n, total_k = prior_n + n, prior_k + k
        return total_n >= self.START_GUARD_SAMPLES and total_k > self.START_GUARD * total_n

    def _normal(self, current: _Epoch, now: float, *, throttled: bool) -> bool:
        n, k = current.n, current.k
        if throttled and (self._start_signal(n, k) if self._starting else self._signal(n, k)):
            self._starting = False
            rate = current.rate * self.CUT
            if self._ceiling is None and self._began is not None and self._successes >= self.START_SAMPLES:
                # The first signal, after a start that outran the quota's burst: the quota's rate is at
                # most the run's goodput so far, so start measuring there.
                goodput = self._successes / max(now - self._began, 1e-9)
                rate = min(current.rate * self.START_CUT, goodput)
            elif self._ceiling is None:
                rate = current.rate * self.START_CUT
            self._restore = current.rate
            self._streak = 0
            self._change(rate, now, _MEASURE)
            return True
        quiet = k == 0 and now - current.start >= self.QUIET_SECONDS  # slow answers: do not wait for 16
        if n < (self.SAMPLES if self._ceiling is not None else self.START_SAMPLES) and not quiet:
            return False
        if self._ceiling is None:
            rate = current.rate * 2.0
        elif current.rate < 0.9 * self._ceiling:
            rate = current.rate * self.CATCH_UP
        else:
            # Past the last ceiling: slowly. Once throttles that ignore load are known, the ceiling may
            # have been set by them, so growth quickens the longer nothing pushes back (as CUBIC's does).
            self._streak += 1
            streak = min(self._streak, self.STREAK_CAP) if self.background else 1
            rate = current.rate * self.PROBE**streak
        if self._starting:
            self._start_n += n
            self._start_k += k
            if self._start_n >= 2 * self.SAMPLES:  # enough for a share: the throttles seen, load or not
                self.background = min(0.9, self._start_k / self._start_n)
        # Bound by what was actually sent: a batch held back by its concurrency must not run the rate away.
        sent = current.admits / max(now - current.start, 1e-9)
        self._change(min(rate, max(2.0 * sent, current.rate)), now, _NORMAL)
        return True

    def _measure(self, current: _Epoch, now: float) -> bool:
        n, k = current.n, current.k
        if not self._signal(n, k):  # the cut was enough: probe up from here
            self._ceiling = self._restore
            self._change(current.rate, now, _NORMAL)
            return True
        # Still throttled: every attempt of this epoch met an empty bucket, so its successes came at the
        # quota's rate. Go a little under it, and check that the throttles stop there.
        successes = _success_rate(current, now, self._latency)
        goodput = successes / (1.0 - self.background)
        self._measured = (n, k, current.rate, successes)
        self._change(min(current.rate * 0.9, max(goodput * self.MARGIN, current.rate * 0.5)), now, _VERIFY)
        return True

    def _verify(self, current: _Epoch, now: float) -> bool:
        n, k = current.n, current.k
        if current.throttled >= 0.1 and self._signal(n, k):
            measured_n, measured_k, measured_rate, measured_successes = self._measured
            successes = _success_rate(current, now, self._latency)
            if successes >= measured_successes * math.sqrt(current.rate / measured_rate):
                # The successes per second did not follow the rate down (nearer staying put than falling
                # with it): a quota, still below this rate (one far below the rate when it was found, where
                # the cut to the goodput was bounded at half). Measure again from here.
                return self._measure(current, now)
            # Still throttled below the goodput, and the successes fell with the rate: these throttles do
            # not respond to load. Learn their share and go back to the rate before the cut.
            self.background = min(0.9, (measured_k + k) / (measured_n + n))
            self._change(self._restore, now, _NORMAL)
            return True
        self._ceiling = self._restore
        self._change(current.rate, now, _NORMAL)
        return True


_NORMAL, _MEASURE, _VERIFY = "normal", "measure", "verify"


def _success_rate(epoch: _Epoch, now: float, latency: float) -> float:
    """Successes per second while ``epoch`` was the current one, of any attempt (a quota's bucket passes its
    rate to all alike, retries of older epochs included); the lower of: counted from its opening, and
    counted from one ``latency`` after (before that, the answers are of attempts sent before the epoch,
    at another rate, which inflate the first)."""
    whole = epoch.answered / max(now - epoch.opened, 1.0 / epoch.rate)
    begin = epoch.opened + latency
    if not now > begin + 1.0 / epoch.rate:
        return whole
    return min(whole, epoch.settled_answers / (now - begin))


def estimate_tokens(fields: Mapping[str, Any]) -> int:
    """Tokens to charge before sending: prompt characters / 4 (rounded up) plus the most the reply may use.

    ``fields`` is an InvokeModel body or ``create`` keyword arguments: ``prompt``, ``system`` and
    ``messages`` are the prompt; ``max_tokens`` or ``max_tokens_to_sample`` the reply's bound
    (default 256). Four characters a token is the usual rule of thumb for English text.
    """
    chars = sum(text_chars(fields.get(key)) for key in ("prompt", "system", "messages"))
    reply = DEFAULT_MAX_TOKENS
    for key in ("max_tokens", "max_tokens_to_sample"):
        value = fields.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            reply = value
            break
    return -(-chars // 4) + reply


def used_tokens(usage: Usage) -> int | None:
    """Tokens a reply counts against the TPM quota (input, output, cache writes), or None when none were reported.

    Cache reads are not charged: they do not count toward Bedrock's tokens-per-minute quota (AWS
    guidance, ``CLAUDE_REQUEST_FEATURES_2026.md``), so charging them would throttle a cached workload
    below what the service allows.
    """
    counts = [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
    ]
    known = [count for count in counts if count is not None]
    return sum(known) if known else None


# ---------------------------------------------------------------------------------------------- the engine


@attrs.frozen
class Operation(Generic[T, P, V]):
    """What a batch does with each item: a pure ``prepare`` (raising BedrockError for a bad item), the
    I/O ``execute`` (given the retry hook), the token estimate, and the tokens a value used."""

    prepare: Callable[[T], P]
    execute: Callable[[P, RetryHook], Awaitable[V]]
    estimate_tokens: Callable[[P], int]
    used_tokens: Callable[[V], int | None]


@attrs.frozen
class Outcome(Generic[T, V]):
    """One finished item: its input index, the item, and either the value or the error."""

    index: int
    item: T
    value: V | None
    error: BedrockError | None


def _check_limit(name: str, value: object, *, integer: bool) -> None:
    if value is None and not integer:
        return
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool) or not value >= 1:
        what = "an integer >= 1" if integer else "a number >= 1 (or None: unlimited)"
        raise InvalidRequestError(name, f"must be {what}, got {value!r}")


def _is_throttle(error: BaseException) -> bool:
    return bool(getattr(error, "is_throttle", False))


class Scheduler(Generic[T, P, V]):
    """The batch engine: ``async with Scheduler(items, operation) as run:`` then ``await run.next_outcome()``.

    See the module docstring. ``clock`` and ``sleep`` drive the rate limiters (tests pass a virtual
    clock); ``window`` is their window in seconds.
    """

    def __init__(
        self,
        items: Iterable[T] | AsyncIterable[T],
        operation: Operation[T, P, V],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        window: float = WINDOW,
    ) -> None:
        _check_limit("concurrency", concurrency, integer=True)
        _check_limit("requests_per_minute", requests_per_minute, integer=False)
        _check_limit("tokens_per_minute", tokens_per_minute, integer=False)
        if not isinstance(items, (Iterable, AsyncIterable)):
            raise InvalidRequestError("requests", f"must be an iterable or async iterable, got {type(items).__name__}")
        self._items = items
        self._op = operation
        self._concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._requests = SlidingWindowLimiter(requests_per_minute, window) if requests_per_minute else None
        self._tokens = SlidingWindowLimiter(tokens_per_minute, window) if tokens_per_minute else None
        self.controller = GoodputController()
        self._slots: anyio.CapacityLimiter | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._receive: MemoryObjectReceiveStream[Outcome[T, V]] | None = None
        self._entered = False
        self._failures: list[Exception] = []
        #: Items handed to a worker or failed in ``prepare``; outcomes delivered; of those, errors.
        self.submitted = 0
        self.delivered = 0
        self.failed = 0

    # -- the consumer's side ----------------------------------------------------------------------------

    async def __aenter__(self) -> Scheduler[T, P, V]:
        if self._entered:
            raise RuntimeError("a batch runs once: call batch() again for another run")
        self._entered = True
        self._slots = anyio.CapacityLimiter(self._concurrency)
        send, receive = anyio.create_memory_object_stream[Outcome[T, V]](self._concurrency)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group, self._receive = task_group, receive
        task_group.start_soon(self._feed, send, task_group)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task_group, receive = self._task_group, self._receive
        assert task_group is not None
        assert receive is not None
        self._task_group = None
        # Whatever brought us here (all results read, break, an error, cancellation), nothing may keep
        # running after the block: stop the feeder and cancel in-flight requests.
        task_group.cancel_scope.cancel()
        try:
            # The caller's exception is not passed in: the task group would wrap it in an ExceptionGroup.
            await task_group.__aexit__(None, None, None)
        finally:
            receive.close()
        if self._failures:
            failure = self._failures[0]
            for other in self._failures[1:]:
                if hasattr(failure, "add_note"):  # Python 3.11+
                    failure.add_note(f"the batch also failed with {type(other).__name__}: {other}")
            raise failure

    async def next_outcome(self) -> Outcome[T, V]:
        """The next finished item; raises StopAsyncIteration once every item has one."""
        receive = self._receive
        if receive is None or self._task_group is None:
            raise RuntimeError("the batch is not running: use it inside 'async with'")
        try:
            outcome = await receive.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None
        self.delivered += 1
        if outcome.error is not None:
            self.failed += 1
        return outcome

    def __aiter__(self) -> Scheduler[T, P, V]:
        return self

    async def __anext__(self) -> Outcome[T, V]:
        return await self.next_outcome()

    @property
    def in_flight(self) -> int:
        """Items holding a slot: being sent, or finished and waiting for room in the result buffer."""
        return self._slots.borrowed_tokens if self._slots is not None else 0

    @property
    def send_rate(self) -> float:
        """The adaptive controller's current send rate, in attempts per second."""
        return self.controller.rate

    # -- the feeder ------------------------------------------------------------------------------------

    async def _feed(self, send: MemoryObjectSendStream[Outcome[T, V]], task_group: anyio.abc.TaskGroup) -> None:
        try:
            async with send:
                index = 0
                items = self._items
                if isinstance(items, AsyncIterable):
                    async for item in items:
                        await self._submit(index, item, send, task_group)
                        index += 1
                else:
                    # A sync iterable is read on the loop: lists, generators over files and the like are
                    # fast enough, and a thread hop per item would cost more than it saves.
                    for item in items:
                        await self._submit(index, item, send, task_group)
                        index += 1
        except Exception as exc:
            self._fail(exc)

    async def _submit(
        self, index: int, item: T, send: MemoryObjectSendStream[Outcome[T, V]], task_group: anyio.abc.TaskGroup
    ) -> None:
        self.submitted += 1
        try:
            prepared = self._op.prepare(item)
        except _FATAL:
            raise
        except BedrockError as error:  # a bad item: its own result, no slot, no request
            await send.send(Outcome(index, item, None, error))
            return
        slots = self._slots
        assert slots is not None
        borrower = object()
        await slots.acquire_on_behalf_of(borrower)
        try:
            charge, epoch = await self._admit(prepared)
            worker_send = send.clone()
            task_group.start_soon(self._work, index, item, prepared, charge, epoch, borrower, worker_send)
        except BaseException:
            slots.release_on_behalf_of(borrower)
            raise

    async def _admit(self, prepared: P) -> tuple[_Charge | None, int]:
        """Wait for the controller's pace and until the request and its token estimate fit both windows;
        charge them; return the token charge and the attempt's epoch."""
        requests, tokens, controller = self._requests, self._tokens, self.controller
        amount = 0
        if tokens is not None:
            # A request bigger than the whole budget still runs, alone in its window.
            amount = min(self._op.estimate_tokens(prepared), int(tokens.limit))
        while True:
            now = self._clock()
            ready = controller.ready_at(now)
            if requests is not None:
                ready = max(ready, requests.ready_at(1, now))
            if tokens is not None:
                ready = max(ready, tokens.ready_at(amount, now))
            if ready <= now:
                break
            await self._sleep(ready - now)
        if requests is not None:
            requests.charge(1, now)
        epoch = controller.admitted(now)
        return (tokens.charge(amount, now) if tokens is not None else None), epoch

    # -- the workers -----------------------------------------------------------------------------------

    async def _work(
        self,
        index: int,
        item: T,
        prepared: P,
        charge: _Charge | None,
        epoch: int,
        borrower: object,
        send: MemoryObjectSendStream[Outcome[T, V]],
    ) -> None:
        slots = self._slots
        assert slots is not None
        controller, clock = self.controller, self._clock

        def on_retry(error: BedrockError, _retry: int) -> None:
            nonlocal epoch
            now = clock()
            if _is_throttle(error):
                controller.on_result(epoch, now, throttled=True)
            # The retry takes its place in the pace (it cannot wait for it: the client sleeps its own
            # backoff), so first attempts make room for it.
            epoch = controller.admitted(now)
            if self._requests is not None:
                self._requests.charge(1, now)

        try:
            async with send:
                try:
                    value = await self._op.execute(prepared, on_retry)
                except _FATAL:
                    raise
                except BedrockError as error:
                    if _is_throttle(error):  # one that exhausted the retries
                        controller.on_result(epoch, clock(), throttled=True)
                    outcome: Outcome[T, V] = Outcome(index, item, None, error)
                else:
                    controller.on_result(epoch, clock(), throttled=False)
                    if charge is not None and self._tokens is not None:
                        used = self._op.used_tokens(value)
                        if used is not None:
                            self._tokens.adjust(charge, used)
                    outcome = Outcome(index, item, value, None)
                await send.send(outcome)
        except Exception as exc:
            self._fail(exc)
        finally:
            slots.release_on_behalf_of(borrower)

    def _fail(self, exc: Exception) -> None:
        """Not a per-item error: keep it for ``__aexit__`` and stop the batch."""
        self._failures.append(exc)
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------- sending


# ---------------------------------------------------------------------------------------------- chat batches
