"""Helpers for end-to-end tests: a client wired to the emulator, and a check that its pool is idle."""

from __future__ import annotations

from typing import Any

import httpx

from bedrock_chat import AnthropicBedrock, RetryPolicy
from bedrock_chat.emulator import BedrockEmulator

#: No waiting between retries in tests: the retry *count* is what they check.
NO_BACKOFF = RetryPolicy(max_retries=2, base=0.0, throttle_base=0.0)


def emulator_client(emu: BedrockEmulator, *, max_retries: int = 2, **kwargs: Any) -> AnthropicBedrock:
    """An AnthropicBedrock pointed at ``emu`` with its credentials and no backoff delays."""
    kwargs.setdefault("access_key", emu.access_key)
    kwargs.setdefault("secret_key", emu.secret_key)
    return AnthropicBedrock(
        region=emu.region,
        endpoint_url=emu.endpoint_url,
        retry_policy=RetryPolicy(max_retries=max_retries, base=0.0, throttle_base=0.0),
        **kwargs,
    )


def checked_out_connections(client: AnthropicBedrock) -> int:
    """Connections of the client's httpcore pool that are not idle (in use by a request or response).

    A leaked response keeps its connection active; a clean client has none once every call returned.
    """
    transport = client._transport
    assert transport is not None, "the client has not sent anything yet"
    http_transport = transport.transport
    assert isinstance(http_transport, httpx.AsyncHTTPTransport)
    pool = http_transport._pool
    busy = [conn for conn in pool.connections if not (conn.is_idle() or conn.is_closed())]
    return len(busy) + len(pool._requests)
