"""Account quotas: requests and tokens per minute, enforced as token buckets that throttle only when empty.

Bedrock's on-demand quotas are stated per minute ("InvokeModel requests per minute", "tokens per minute"
for a model: the quotas page), so :class:`Quota` takes them in those units. Each is a bucket that holds
``burst_seconds`` worth of its rate and refills continuously at ``per_minute / 60`` per second; a request
is throttled (429 ``ThrottlingException``, the same wire form as the ``throttle`` fault) only when a
bucket cannot pay for it. How Bedrock refills its buckets -- continuously or per minute, and how much
burst it allows -- is UNVERIFIED; a continuous refill is what "per minute" allows least bursty.

Token charging, by the rules AWS documents in "How tokens are counted in Amazon Bedrock"
(``quotas-token-burndown``):

- at the start, a request reserves its input tokens plus its ``max_tokens``;
- when its answer has been sent, the reservation is settled to what it used: input plus actual output
  (the unused part of ``max_tokens`` goes back in the bucket);
- cache reads do not count (AWS guidance, ``CLAUDE_REQUEST_FEATURES_2026.md``); cache writes do.

Not modelled: the 5x output burndown rate of some Claude 4 models (AWS lists which), and any daily
quota. Only answered requests are charged: a request refused for another reason (a bad body, an
injected fault) costs nothing -- UNVERIFIED for the service, and the choice that keeps the random
throttles (load-independent capacity throttles) apart from the quota's.

:class:`TokenBucket` and :class:`QuotaState` are pure (time passed in); the dispatcher calls
:meth:`QuotaState.admit` with the quota's clock, under a lock, since tests drive the server from
another thread.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import attrs

__all__ = ["DEFAULT_BURST_SECONDS", "Quota", "QuotaState", "Reservation", "TokenBucket"]

#: A full minute's quota may be spent at once unless told otherwise.
DEFAULT_BURST_SECONDS = 60.0


def _per_minute_or_none(_instance: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value))
    ):
        raise ValueError(f"{attribute.name} must be a positive, finite number per minute or None, got {value!r}")


def _burst(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive, finite number of seconds, got {value!r}")


@attrs.frozen(kw_only=True)
class Quota:
    """An account's quota for the emulated model(s): None means not enforced.

    Args:
        requests_per_minute: requests answered per minute (each request costs 1).
        tokens_per_minute: tokens per minute, charged as the module docstring says.
        burst_seconds: how many seconds of its rate each bucket holds (both start full).
        clock: monotonic seconds the buckets refill by (tests pass a virtual clock).
    """

    requests_per_minute: float | None = attrs.field(default=None, validator=_per_minute_or_none)
    tokens_per_minute: float | None = attrs.field(default=None, validator=_per_minute_or_none)
    burst_seconds: float = attrs.field(default=DEFAULT_BURST_SECONDS, validator=_burst)
    clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)

    @property
    def enabled(self) -> bool:
        """Whether any bucket is enforced (if not, requests take no lock and no clock read)."""
        return self.requests_per_minute is not None or self.tokens_per_minute is not None


class TokenBucket:
    """``capacity`` units refilled at ``rate`` per second (pure: time passed in).

    ``take`` pays for an amount only if the bucket holds it -- or, for an amount larger than the whole
    capacity, when the bucket is full (such a request runs alone, leaving the bucket in debt), so no
    request is refused forever.
    """

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if not rate > 0 or not capacity > 0:
            raise ValueError(f"rate and capacity must be > 0, got {rate!r} and {capacity!r}")
        self.rate = rate
        self.capacity = capacity
        self._level = capacity
        self._time = now

    def level(self, now: float) -> float:
        """Units in the bucket at ``now`` (negative while in debt)."""
        if now > self._time:
            self._level = min(self.capacity, self._level + (now - self._time) * self.rate)
            self._time = now
        return self._level

    def can_take(self, amount: float, now: float) -> bool:
        """Whether ``amount`` would be paid at ``now``."""
        return self.level(now) >= min(amount, self.capacity)

    def take(self, amount: float, now: float) -> bool:
        """Pay ``amount`` if it can be paid; whether it was."""
        if not self.can_take(amount, now):
            return False
        self._level -= amount
        return True

    def give_back(self, amount: float, now: float) -> None:
        """Return ``amount`` (a settled reservation), never above capacity."""
        self._level = min(self.capacity, self.level(now) + amount)


@attrs.frozen
class Reservation:
    """Tokens a request reserved, and what it will be settled to once its answer is sent."""

    reserved: int
    used: int


class QuotaState:
    """The buckets of one emulator; rebuilt (full) whenever the options' :class:`Quota` changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: Quota | None = None
        self._requests: TokenBucket | None = None
        self._tokens: TokenBucket | None = None

    def _buckets(self, quota: Quota, now: float) -> tuple[TokenBucket | None, TokenBucket | None]:
        if self._owner is not quota:
            burst = quota.burst_seconds
            rpm, tpm = quota.requests_per_minute, quota.tokens_per_minute
            self._requests = TokenBucket(rpm / 60.0, rpm / 60.0 * burst, now) if rpm is not None else None
            self._tokens = TokenBucket(tpm / 60.0, tpm / 60.0 * burst, now) if tpm is not None else None
            self._owner = quota
        return self._requests, self._tokens

    def admit(self, quota: Quota, reservation: Reservation | None) -> bool:
        """Charge one request and its token reservation at once, or nothing: whether it may be answered.

        ``reservation`` is None for a request that reports no tokens (CountTokens): it costs a request only.
        """
        with self._lock:
            now = quota.clock()
            requests, tokens = self._buckets(quota, now)
            amount = reservation.reserved if reservation is not None and tokens is not None else 0
            if requests is not None and not requests.can_take(1, now):
                return False
            if amount and tokens is not None and not tokens.take(amount, now):
                return False
            if requests is not None:
                requests.take(1, now)
            return True

    def settle(self, quota: Quota, reservation: Reservation) -> None:
        """The answer is sent: give back what the reservation held beyond what the request used."""
        with self._lock:
            if self._owner is not quota or self._tokens is None:
                return  # the quota changed meanwhile: its buckets are new
            refund = reservation.reserved - reservation.used
            if refund > 0:
                self._tokens.give_back(refund, quota.clock())

    def reset(self) -> None:
        """Forget the buckets: the next request starts them full."""
        with self._lock:
            self._owner = None
