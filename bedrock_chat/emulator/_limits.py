"""What one emulator process may spend on its clients: time, connections and request-log memory.

A test suite may run one emulator for hours, next to clients that misbehave on purpose (or by bug):
connections that send half a request and stall, pools that keep sockets open forever, uploads of
25 MB bodies that fail authentication. These bounds keep such clients from holding the server's
connections, descriptors or memory; the defaults are far above what a well-behaved client needs.

A timeout between reads alone (nginx's ``client_body_timeout``/``send_timeout``, and our ``idle_timeout``)
is dodged by a client that moves one byte per interval, so transfers also have a minimum rate, charged as
Apache's ``mod_reqtimeout`` (``MinRate``) and Kestrel (``MinRequestBodyDataRate``/``MinResponseDataRate``)
do: each byte moved buys ``1 / min_data_rate`` seconds of waiting; plus a total bound on a request body.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from .._errors import ConfigurationError

__all__ = ["ServerLimits"]


def _positive_seconds(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{attribute.name}: must be a positive, finite number of seconds, got {value!r}")


def _positive_count(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name}: must be an integer >= 1, got {value!r}")


def _positive_rate_or_none(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value))
    ):
        raise ConfigurationError(
            f"{attribute.name}: must be a positive, finite number of bytes/s or None, got {value!r}"
        )


def _byte_count_or_none(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigurationError(f"{attribute.name}: must be an integer >= 0 or None, got {value!r}")


@attrs.frozen(kw_only=True)
class ServerLimits:
    """Bounds on what clients can hold; pass as ``BedrockEmulator(limits=...)``.

    Args:
        header_timeout: seconds from a request's first byte (a new connection's opening, for its
            first request) to the end of its headers. A client that trickles its headers
            (slowloris) is disconnected when it runs out, however steadily it trickles.
        idle_timeout: seconds a connection may make no progress while the server waits on it: a
            keep-alive connection waiting for its next request, a pause inside a request body, a
            client that does not read its reply. The connection is then closed without an answer.
            (A ``stall`` fault is exempt: it waits for the client on purpose.)
        min_data_rate: bytes per second a request body and a reply must move at, on average, while
            the server waits on the client (None: no minimum, only ``idle_timeout``). Each byte
            moved buys ``1 / min_data_rate`` seconds of waiting on top of an allowance of
            ``idle_timeout``; time saved by moving faster is never banked beyond that allowance.
            So a client that trickles (a byte every half second, each wait well inside
            ``idle_timeout``) is disconnected about ``idle_timeout`` after it starts, while one at or
            above the rate is never cut, however large its body or reply. Sleeps of the emulator's own
            (latency and chunk-delay faults) are not charged to the client.
        body_timeout: seconds from the end of a request's headers to the end of its body, however
            fast it moves: the most a request body can hold a connection. The default lets a
            25 MB body through at 42 KB/s.
        max_connections: connections served at once. Further ones wait, unaccepted, in the
            listen backlog until one ends (as with any busy server, a client may time out there).
        max_recorded_body_bytes: how much of each request body :attr:`BedrockEmulator.requests`
            keeps (None: all of it). Longer bodies are kept truncated, with their full size in
            :attr:`RecordedRequest.body_size`; bodies of requests refused before authentication
            (bad or missing credentials, unknown paths, over 25 MB) are never kept.
    """

    header_timeout: float = attrs.field(default=10.0, validator=_positive_seconds)
    idle_timeout: float = attrs.field(default=60.0, validator=_positive_seconds)
    min_data_rate: float | None = attrs.field(default=1000, validator=_positive_rate_or_none)
    body_timeout: float = attrs.field(default=600.0, validator=_positive_seconds)
    max_connections: int = attrs.field(default=1000, validator=_positive_count)
    max_recorded_body_bytes: int | None = attrs.field(default=65536, validator=_byte_count_or_none)
