"""Helpers for end-to-end tests: a client wired to the emulator, a check that its pool is idle, a child environment."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpcore2
import httpx

from bedrock_chat import AnthropicBedrock, RetryPolicy
from bedrock_chat._http.aiohttp_transport import AiohttpTransport
from bedrock_chat._http.httpcore_transport import HttpcoreTransport
from bedrock_chat._http.httptools_transport import HttptoolsTransport
from bedrock_chat.emulator import BedrockEmulator

#: No waiting between retries in tests: the retry *count* is what they check.
NO_BACKOFF = RetryPolicy(max_retries=2, base=0.0, throttle_base=0.0)


def emulator_client(emu: BedrockEmulator, *, max_retries: int = 2, **kwargs: Any) -> AnthropicBedrock:
    """An AnthropicBedrock pointed at ``emu`` (or at ``endpoint_url``, a name a proxy routes to it) with its
    credentials and no backoff delays."""
    kwargs.setdefault("access_key", emu.access_key)
    kwargs.setdefault("secret_key", emu.secret_key)
    kwargs.setdefault("endpoint_url", emu.endpoint_url)
    return AnthropicBedrock(
        region=emu.region,
        retry_policy=RetryPolicy(max_retries=max_retries, base=0.0, throttle_base=0.0),
        **kwargs,
    )


def child_environment(directory: Path, **extra: str) -> dict[str, str]:
    """This process's environment for a child, without AWS_* or BEDROCK_CHAT_* variables and with no metadata lookups.

    The AWS config and credentials files are empty ones written in ``directory``; ``extra`` is added last.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BEDROCK_CHAT_"))}
    for name in ("config", "credentials"):
        (directory / name).write_text("")
    env.update(
        AWS_CONFIG_FILE=str(directory / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(directory / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


def checked_out_connections(client: AnthropicBedrock) -> int:
    """Connections of the client's pool that are in use (by a request or an unread response).

    A leaked response keeps its connection checked out; a clean client has none once every call
    returned. Works for our httptools pool, aiohttp's connector, httpcore2's pool and httpx's own transport.
    """
    transport = client._transport
    assert transport is not None, "the client has not sent anything yet"
    http_transport = getattr(transport.transport, "inner", transport.transport)  # unwrap a tracing transport
    if isinstance(http_transport, HttptoolsTransport):
        return http_transport.checked_out
    if isinstance(http_transport, AiohttpTransport):
        connector = http_transport.connector
        return 0 if connector is None else len(connector._acquired)
    pool: httpcore2.AsyncConnectionPool | httpcore.AsyncConnectionPool
    if isinstance(http_transport, HttpcoreTransport):
        pool = http_transport.pool
    else:
        assert isinstance(http_transport, httpx.AsyncHTTPTransport), http_transport
        pool = http_transport._pool
    busy = [conn for conn in pool.connections if not (conn.is_idle() or conn.is_closed())]
    return len(busy) + len(pool._requests)


@contextlib.contextmanager
def moto_s3_server() -> Iterator[str]:
    """A real S3-compatible server (moto's server mode) on a free loopback port; yields its endpoint URL."""
    from moto import server as moto_server

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def self_signed_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """(certificate, key) PEM files for ``host``, made with the openssl command (the test is skipped without it)."""
    import shutil
    import subprocess

    import pytest

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a certificate with")
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={host}"]
    subprocess.run(
        [openssl, *request, "-addext", f"subjectAltName=DNS:{host}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key
