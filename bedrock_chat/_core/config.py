"""Client configuration that can be checked without I/O: region, endpoint rules, durations, retry policy.

The endpoint URL itself is parsed in ``_http.endpoint`` (it is an ``httpx.URL``) by the rules here.
Regions and endpoint URLs end up in the Host header and the signing scope, so they are validated
strictly: ``us-east-1.evil.com/x`` is not a region, and plain ``http://`` is refused for anything but
loopback unless the caller opts in, because SigV4 headers sent in clear text can be replayed.
Loopback means a literal loopback address, or the name ``localhost`` once it has been resolved (by the
caller, off the event loop: :func:`check_resolves_to_loopback`) to loopback addresses only. Other names
such as ``x.localhost`` are not trusted: a system resolver may send them to DNS.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable, Mapping

import attrs

from .._errors import ConfigurationError, InvalidRequestError

__all__ = [
    "RetryPolicy",
    "check_resolves_to_loopback",
    "default_endpoint_url",
    "is_loopback",
    "is_loopback_address",
    "region_from_env",
    "validate_deadline",
    "validate_region",
    "validate_seconds",
]

# Two to four letters first: ``eusc-de-east-1`` (the European Sovereign Cloud) is a region too.
_REGION = re.compile(r"^[a-z]{2,4}(?:-[a-z]+){1,3}-\d{1,2}$")

# Partition by region prefix -> (DNS suffix, dual-stack DNS suffix or None), as botocore's endpoint
# resolver answers for bedrock-runtime (tested against it). In the ISO partitions botocore's answers
# for dual-stack disagree with its own partition data or fail, so dual-stack there is refused.
_PARTITIONS: tuple[tuple[str, str, str | None], ...] = (
    ("cn-", "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
    ("eusc-", "amazonaws.eu", "api.amazonwebservices.eu"),
    ("eu-isoe-", "cloud.adc-e.uk", None),
    ("us-isob-", "sc2s.sgov.gov", None),
    ("us-isof-", "csp.hci.ic.gov", None),
    ("us-iso-", "c2s.ic.gov", None),
)
_AWS_PARTITION: tuple[str, str, str | None] = ("", "amazonaws.com", "api.aws")


def validate_region(region: str, *, source: str = "region") -> str:
    """A region is a short lowercase name like ``us-east-1``; anything else is refused."""
    if not isinstance(region, str) or not _REGION.fullmatch(region):  # "$" would accept a trailing "\n"
        raise ConfigurationError(f"{source}: {region!r} is not an AWS region name (like 'us-east-1')")
    return region


def region_from_env(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(region, variable name)`` from AWS_REGION, then AWS_DEFAULT_REGION."""
    env = os.environ if environ is None else environ
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = env.get(name)
        if value:
            return value, name
    return None


def default_endpoint_url(
    region: str, *, fips: bool = False, dualstack: bool = False, service: str = "bedrock-runtime"
) -> str:
    """``https://{service}[-fips].{region}.{dns suffix}`` (the dual-stack suffix when asked).

    ``service`` is ``bedrock-runtime`` (inference) or ``bedrock`` (the control plane: batch jobs);
    botocore's rules give both the same shape (tested against its resolver for every region).
    """
    _, dns, dualstack_dns = next(
        (partition for partition in _PARTITIONS if region.startswith(partition[0])), _AWS_PARTITION
    )
    service = f"{service}-fips" if fips else service
    if dualstack:
        if dualstack_dns is None:
            raise ConfigurationError(
                f"use_dualstack_endpoint: no dual-stack endpoint is known for {region}; pass endpoint_url"
            )
        dns = dualstack_dns
    return f"https://{service}.{region}.{dns}"


#: The one name taken for loopback, and only after it resolved to loopback addresses only.
LOCALHOST = "localhost"


def is_loopback_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """A name-based guess, for proxy bypass only (guessing wrong there costs a direct connection, not secrets)."""
    return host == LOCALHOST or host.endswith(".localhost") or is_loopback_address(host)


def check_resolves_to_loopback(field: str, host: str, addresses: Iterable[str]) -> None:
    """Plain http to ``host`` was allowed as loopback: every address it resolved to must be loopback."""
    found = sorted(set(addresses))
    strays = [address for address in found if not is_loopback_address(address.partition("%")[0])]
    if not found or strays:
        raise ConfigurationError(
            f"{field}: plain http is allowed only for loopback hosts, and {host!r} resolves to "
            f"{', '.join(strays) or 'nothing'}; use https, 127.0.0.1, or pass allow_insecure_http=True"
        )


def validate_seconds(value: object, field: str) -> float:
    """A duration in seconds: a finite number above zero (NaN would make every later wait fail at once)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{field}: must be a finite number of seconds above 0, got {value!r}")
    return float(value)


def validate_deadline(value: object, *, per_call: bool = False) -> float | None:
    """A total deadline in seconds (> 0; ``math.inf`` is allowed and means none), or None for none.

    The client's is a ConfigurationError when bad, a call's an InvalidRequestError; both name ``deadline``.
    """
    if value is None:
        return None
    # Written as "not > 0" so that NaN is refused too.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        message = f"must be a number of seconds > 0 (or None for no deadline), got {value!r}"
        raise InvalidRequestError("deadline", message) if per_call else ConfigurationError(f"deadline: {message}")
    return float(value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; the same shape as botocore's standard mode.

    The delay before retry ``n`` (0-based) is ``random() * min(cap, base * 2**n)``, with
    ``throttle_base`` for throttling errors (they need longer to clear) and ``base`` for the rest.
    A ``Retry-After``/``x-amz-retry-after`` hint from the service raises the delay, up to ``cap``.
    """

    max_retries: int = 2
    base: float = 0.1
    throttle_base: float = 1.0
    cap: float = 20.0

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ConfigurationError(f"max_retries: must be an integer >= 0, got {self.max_retries!r}")
        # Written as "not >= 0" so that NaN is refused too.
        if not all(value >= 0 for value in (self.base, self.throttle_base, self.cap)):
            raise ConfigurationError("retry delays must not be negative")

    def delay(self, retry: int, *, throttled: bool, jitter: float, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry``; ``jitter`` is a random number in [0, 1)."""
        base = self.throttle_base if throttled else self.base
        # The exponent is bounded so that a huge retry count cannot overflow the float conversion.
        delay = jitter * min(self.cap, base * (2 ** min(retry, 64)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return float(delay)
