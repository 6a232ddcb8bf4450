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

**Adaptive concurrency** (:class:`AimdController`, additive increase / multiplicative decrease, as TCP's
congestion avoidance): a throttle halves the effective concurrency (never below 1), a run of successes as
long as the current limit adds one slot (never above ``concurrency``). Throttles are seen on every
attempt, including those the client then retries and those that exhausted the retries. A throttle from
an attempt that started before the last decrease is not counted again: it reports on the old level, and
counting every one of a burst would collapse the limit to 1 at once.

The limiter and the controller are pure classes with time passed in; the scheduler takes ``clock`` and
``sleep`` so tests can drive the window with a virtual clock.
"""

from __future__ import annotations

import collections
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
    "DEFAULT_CONCURRENCY",
    "AimdController",
    "Operation",
    "Outcome",
    "Scheduler",
    "SlidingWindowLimiter",
    "estimate_tokens",
    "used_tokens",
]

DEFAULT_CONCURRENCY = 16
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


class AimdController:
    """Additive-increase / multiplicative-decrease of the number of requests in flight (pure).

    ``slots`` starts at ``maximum``. ``on_throttle(epoch)`` multiplies the limit by ``decrease``
    (never below ``minimum``) and starts a new epoch, unless the throttled attempt started in an older
    epoch (it reports on a level already reduced). ``on_success`` counts a streak; a streak as long as
    the current ``slots`` adds one (never above ``maximum``). Both return whether ``slots`` changed.
    """

    def __init__(self, maximum: int, *, minimum: int = 1, decrease: float = 0.5) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, got {decrease!r}")
        self.maximum = maximum
        self.minimum = minimum
        self.decrease = decrease
        self.limit = float(maximum)
        self.epoch = 0
        self._streak = 0

    @property
    def slots(self) -> int:
        """The concurrency to allow now."""
        return max(self.minimum, int(self.limit))

    def on_success(self) -> bool:
        """One request succeeded."""
        if self.limit >= self.maximum:
            return False
        self._streak += 1
        if self._streak < self.slots:
            return False
        before = self.slots
        self._streak = 0
        self.limit = min(float(self.maximum), self.limit + 1.0)
        return self.slots != before

    def on_throttle(self, epoch: int) -> bool:
        """An attempt that started in ``epoch`` was throttled."""
        if epoch < self.epoch:
            return False
        before = self.slots
        self.limit = max(float(self.minimum), self.limit * self.decrease)
        self.epoch += 1
        self._streak = 0
        return self.slots != before


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
        self.controller = AimdController(concurrency)
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
        self._slots = anyio.CapacityLimiter(self.controller.slots)
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
    def concurrency_limit(self) -> int:
        """The adaptive controller's current concurrency (``concurrency`` unless throttled)."""
        return self.controller.slots

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
            charge = await self._admit(prepared)
            worker_send = send.clone()
            task_group.start_soon(self._work, index, item, prepared, charge, borrower, worker_send)
        except BaseException:
            slots.release_on_behalf_of(borrower)
            raise

    async def _admit(self, prepared: P) -> _Charge | None:
        """Wait until the request and its token estimate fit both windows; charge them; return the token charge."""
        requests, tokens = self._requests, self._tokens
        if requests is None and tokens is None:
            return None
        amount = 0
        if tokens is not None:
            # A request bigger than the whole budget still runs, alone in its window.
            amount = min(self._op.estimate_tokens(prepared), int(tokens.limit))
        while True:
            now = self._clock()
            ready = now
            if requests is not None:
                ready = max(ready, requests.ready_at(1, now))
            if tokens is not None:
                ready = max(ready, tokens.ready_at(amount, now))
            if ready <= now:
                break
            await self._sleep(ready - now)
        if requests is not None:
            requests.charge(1, now)
        return tokens.charge(amount, now) if tokens is not None else None

    # -- the workers -----------------------------------------------------------------------------------

    async def _work(
        self,
        index: int,
        item: T,
        prepared: P,
        charge: _Charge | None,
        borrower: object,
        send: MemoryObjectSendStream[Outcome[T, V]],
    ) -> None:
        slots = self._slots
        assert slots is not None
        controller = self.controller
        epoch = controller.epoch

        def on_retry(error: BedrockError, _retry: int) -> None:
            nonlocal epoch
            if _is_throttle(error):
                self._throttled(epoch)
            epoch = controller.epoch  # the next attempt starts at the current level
            if self._requests is not None:
                self._requests.charge(1, self._clock())

        try:
            async with send:
                try:
                    value = await self._op.execute(prepared, on_retry)
                except _FATAL:
                    raise
                except BedrockError as error:
                    if _is_throttle(error):  # one that exhausted the retries
                        self._throttled(epoch)
                    outcome: Outcome[T, V] = Outcome(index, item, None, error)
                else:
                    if controller.on_success():
                        slots.total_tokens = controller.slots
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

    def _throttled(self, epoch: int) -> None:
        if self.controller.on_throttle(epoch):
            assert self._slots is not None
            self._slots.total_tokens = self.controller.slots

    def _fail(self, exc: Exception) -> None:
        """Not a per-item error: keep it for ``__aexit__`` and stop the batch."""
        self._failures.append(exc)
        if self._task_group is not None:
            self._task_group.cancel_scope.cancel()


# ---------------------------------------------------------------------------------------------- sending


# ---------------------------------------------------------------------------------------------- chat batches
