"""Secrets and hostile input: canary keys never surface; malformed input is refused before any I/O; TLS is verified.

The secret key, the session token and every request signature are canaries: after a run with successes,
retries, streams and every error the emulator can produce, none may appear in any log record (DEBUG, all
loggers, httpx and httpcore included), in anything printed, or in the str/repr/traceback of any error,
credential, client or recorded request.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import traceback
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import certifi
import httpx
import pytest
from anyio.streams.tls import TLSStream
from e2e_helpers import self_signed_certificate

from bedrock_chat import (
    AnthropicBedrock,
    APIConnectionError,
    BedrockError,
    ConfigurationError,
    InvalidRequestError,
    RetryPolicy,
)
from bedrock_chat._http.aiohttp_transport import AiohttpTransport
from bedrock_chat._http.httpcore_transport import HttpcoreTransport
from bedrock_chat._http.httptools_transport import HttptoolsTransport
from bedrock_chat.emulator import BedrockEmulator
from bedrock_chat.emulator._faults import HTTP_ERRORS, STREAM_EXCEPTIONS
from reliability.reliability_helpers import SilentServer, TracingTransport, client_for, record_figure

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
HI = [{"role": "user", "content": "tell me a secret"}]
CANARY_SECRET = "CanarySecretKey/0123456789+abcdefghijKLMN"
CANARY_TOKEN = "CanarySessionToken/IQoJb3JpZ2luX2VjEXAMPLE+ZZZ="
WRONG_SECRET = "WrongCanarySecret/9876543210+zyxwvutsrqPONM"
SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")
LOGGERS = ("", "bedrock_chat", "httpx", "httpcore", "httpcore2", "hpack", "h11", "asyncio", "anyio", "botocore", "app")


@pytest.fixture
def canary_emulator(bedrock_emulator: BedrockEmulator) -> BedrockEmulator:
    """The emulator accepting the canary secret and session token."""
    bedrock_emulator.options = attrs.evolve(
        bedrock_emulator.options, secret_key=CANARY_SECRET, session_token=CANARY_TOKEN
    )
    return bedrock_emulator


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, captured (caplog restores the levels afterwards)."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


def describe(error: BaseException) -> list[str]:
    """Every way a user might print or log an error: str, repr, args, attributes, the chained traceback."""
    logging.getLogger("app").exception("request failed", exc_info=error)
    logging.getLogger("app").debug("request failed: %r", error)
    return [str(error), repr(error), repr(error.args), repr(vars(error)), "".join(traceback.format_exception(error))]


async def expect_error(coro: Any) -> BedrockError:
    """Await ``coro`` (a create, or a stream to drain) and return the BedrockError it must raise."""
    with anyio.fail_after(20):
        try:
            result = await coro
            if hasattr(result, "__aiter__"):
                async with result:
                    async for _ in result:
                        pass
        except BedrockError as exc:
            return exc
    raise AssertionError("no error was raised")


async def _free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.asyncio
async def test_no_secret_in_logs_output_errors_or_reprs(
    canary_emulator: BedrockEmulator, debug_logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Across successes, retries, streams and every error, no canary appears in any log, output, error or repr."""
    emu = canary_emulator
    texts: list[str] = []
    errors: list[BedrockError] = []
    transport = TracingTransport()
    transport.keep_requests = True
    retry = RetryPolicy(max_retries=1, base=0.0, throttle_base=0.0)
    client = client_for(
        emu, retry=retry, transport=transport, stream_idle_timeout=0.3, timeout=httpx.Timeout(5.0, read=1.0)
    )
    async with client:
        chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
        stream = await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True)
        async with stream:
            streamed = await stream.final_completion()
        emu.enqueue_faults("throttle")
        retried = await client.ChatCompletion.create(model=MODEL, messages=HI)
        texts += [repr(chat), repr(streamed), repr(retried), repr(stream), str(chat.to_dict())]
        for name in HTTP_ERRORS:
            emu.enqueue_faults(name, name)
            errors.append(await expect_error(client.ChatCompletion.create(model=MODEL, messages=HI)))
        for fault in [
            *(f"stream_exception:{t}" for t in STREAM_EXCEPTIONS),
            "drop_mid_stream",
            "bad_crc",
            "stall",
            "stall_mid_stream",
        ]:
            emu.enqueue_faults(fault, fault)
            errors.append(await expect_error(client.ChatCompletion.create(model=MODEL, messages=HI, stream=True)))
        errors.append(await expect_error(client.ChatCompletion.create(model="anthropic.no-such-model-v9", messages=HI)))
        try:
            await client.ChatCompletion.create(model="bad model", messages=HI)
        except InvalidRequestError as exc:
            errors.append(exc)
        credentials = await client._credentials.get()
        texts += [repr(client), str(client), repr(vars(client)), repr(client._credentials), repr(credentials)]
        texts += [str(credentials), repr(vars(client._credentials)), repr(client._transport)]
    errors.append(await expect_error(client.ChatCompletion.create(model=MODEL, messages=HI)))  # closed client
    # A wrong secret, a server that never answers, and a port nobody listens on.
    async with client_for(emu, secret_key=WRONG_SECRET, retry=retry, transport=transport) as wrong:
        errors.append(await expect_error(wrong.ChatCompletion.create(model=MODEL, messages=HI)))
    async with SilentServer() as silent:
        for url in (silent.url, f"http://127.0.0.1:{await _free_port()}"):
            async with AnthropicBedrock(
                access_key=emu.access_key,
                secret_key=CANARY_SECRET,
                session_token=CANARY_TOKEN,
                region="us-east-1",
                endpoint_url=url,
                timeout=httpx.Timeout(5.0, read=0.3),
                retry_policy=RetryPolicy(max_retries=0),
                transport=transport,
            ) as other:
                errors.append(await expect_error(other.ChatCompletion.create(model=MODEL, messages=HI)))
    await transport.aclose()
    for error in errors:
        texts += describe(error)
    texts += [repr(request) for request in transport.requests]

    kinds = sorted({type(error).__name__ for error in errors})
    record_figure("secrets: error types exercised", kinds)
    assert len(kinds) >= 14, kinds
    signatures = {m for r in transport.requests for m in SIGNATURE.findall(r.headers.get("authorization", ""))}
    assert len(signatures) >= 3  # identical requests within one second sign alike
    out, err = capsys.readouterr()
    records = [f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in debug_logs.records]
    haystack = "\n".join([*texts, debug_logs.text, *records, out, err])
    assert "send_request_headers" in haystack, "httpcore's DEBUG logging was captured"
    record_figure(
        "secrets: requests / log records / texts scanned", (len(transport.requests), len(records), len(texts))
    )
    for canary in (CANARY_SECRET, CANARY_TOKEN, WRONG_SECRET, *signatures):
        assert canary not in haystack


@pytest.mark.asyncio
async def test_botocore_signer_logs_no_secret(
    canary_emulator: BedrockEmulator, debug_logs: pytest.LogCaptureFixture
) -> None:
    """With the botocore signer and every logger at DEBUG, neither the session token nor the signature is logged."""
    transport = TracingTransport()
    transport.keep_requests = True
    async with client_for(canary_emulator, signer="botocore", transport=transport) as client:
        await client.ChatCompletion.create(model=MODEL, messages=HI)
    await transport.aclose()
    signature = SIGNATURE.findall(transport.requests[0].headers["authorization"])[0]
    logged = "\n".join(r.getMessage() for r in debug_logs.records)
    assert CANARY_TOKEN not in logged
    assert signature not in logged


# ---------------------------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"session_token": "token\r\nX-Injected: 1"}, id="crlf-in-token"),
        pytest.param({"session_token": "tök€n"}, id="non-ascii-token"),
        pytest.param({"access_key": "AKID\nX-Injected: 1"}, id="lf-in-access-key"),
        pytest.param({"access_key": "ÄKIDEXAMPLE"}, id="non-ascii-access-key"),
    ],
)
@pytest.mark.asyncio
async def test_header_breaking_credentials_are_refused_before_any_io(credentials: dict[str, str]) -> None:
    """CR/LF or non-ASCII in a value that goes into a header is a ConfigurationError, with no connection made."""
    keys: dict[str, Any] = {"access_key": "AKIDEXAMPLE", "secret_key": "not-a-real-secret", **credentials}
    async with SilentServer() as server:
        with anyio.fail_after(10), pytest.raises(ConfigurationError) as raised:
            async with AnthropicBedrock(
                **keys,
                region="us-east-1",
                endpoint_url=server.url,
                timeout=httpx.Timeout(5.0, read=0.3),
                retry_policy=RetryPolicy(max_retries=0),
            ) as client:
                await client.ChatCompletion.create(model=MODEL, messages=HI)
    assert server.accepted == 0
    for value in credentials.values():
        assert value not in str(raised.value), "the error names the field, not its (secret) value"


@pytest.mark.parametrize(
    "region", ["us-east-1.evil.com/x", "us-east-1\n", "us-east-1/../x", "US-EAST-1", "us-east-1 ", "ünïcode-1"]
)
def test_hostile_regions_are_refused_at_construction(region: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A region that is not a region name is refused, as an argument or from AWS_REGION, before any I/O."""
    with pytest.raises(ConfigurationError, match="not an AWS region"):
        AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="x", region=region)
    monkeypatch.setenv("AWS_REGION", region)
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="x")


@pytest.mark.parametrize(
    "model",
    [
        "..",
        ".",
        "../../x",
        "%2e%2e",
        "a/../../b",
        "x\r\ny",
        "x y",
        "mödel",
        "",
    ],
)
@pytest.mark.asyncio
async def test_hostile_model_ids_are_refused_before_any_io(model: str) -> None:
    """A model id that could escape its path segment is an InvalidRequestError naming ``model``; nothing is sent."""
    async with (
        SilentServer() as server,
        AnthropicBedrock(
            access_key="AKIDEXAMPLE",
            secret_key="not-a-real-secret",
            region="us-east-1",
            endpoint_url=server.url,
            timeout=httpx.Timeout(5.0, read=0.3),
            retry_policy=RetryPolicy(max_retries=0),
        ) as client,
    ):
        with anyio.fail_after(10), pytest.raises(InvalidRequestError) as raised:
            await client.ChatCompletion.create(model=model, messages=HI)
    assert raised.value.field == "model"
    assert server.accepted == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://10.0.0.1:8080",
        "http://127.0.0.1.evil.com",
        "http://localhost.evil.com",
        "http://0.0.0.0:80",
        "http://[::ffff:10.0.0.1]",
    ],
)
def test_plain_http_off_loopback_is_refused_at_construction(url: str) -> None:
    """Plain http to anything but loopback is a ConfigurationError saying so (SigV4 headers would travel in clear)."""
    with pytest.raises(ConfigurationError, match="plain http is allowed only for loopback"):
        AnthropicBedrock(access_key="AKIDEXAMPLE", secret_key="x", region="us-east-1", endpoint_url=url)


# ---------------------------------------------------------------------------------------------- TLS

#: Environment variables that other HTTP stacks read to relax or redirect certificate checks.
TLS_ENVIRONMENTS = [
    {},
    {"PYTHONHTTPSVERIFY": "0"},
    {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "", "HTTPX_SSL_VERIFY": "0", "SSL_VERIFY": "false"},
    {"SSL_CERT_FILE": certifi.where()},
    {"SSL_CERT_DIR": os.path.dirname(certifi.where())},
]
#: (event loop, http_backend): the default transport per event loop (httptools' pool under asyncio,
#: httpcore2's under trio), and aiohttp's, what asyncio uses through a proxy.
BACKENDS = [("asyncio", "auto"), ("asyncio", "aiohttp"), ("trio", "auto")]


def _ssl_context(transport: httpx.AsyncBaseTransport) -> ssl.SSLContext:
    """The SSL context a default transport connects with."""
    if isinstance(transport, HttptoolsTransport):
        return transport.ssl_context
    if isinstance(transport, AiohttpTransport):
        return transport._ssl
    assert isinstance(transport, HttpcoreTransport)
    context = transport.pool._ssl_context
    assert context is not None
    return context


def _env_id(environment: dict[str, str]) -> str:
    return ",".join(environment) or "clean"


@pytest.mark.parametrize(("backend", "http_backend"), BACKENDS)
@pytest.mark.parametrize("environment", TLS_ENVIRONMENTS, ids=_env_id)
def test_default_transport_verifies_certificates_whatever_the_environment(
    environment: dict[str, str], backend: str, http_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default transport requires a valid certificate for the host name, whatever these variables say."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    contexts: list[ssl.SSLContext] = []

    async def main() -> None:
        client = AnthropicBedrock(
            access_key="AKIDEXAMPLE", secret_key="x", region="us-east-1", http_backend=http_backend
        )
        transport = client._default_transport(
            "https://bedrock-runtime.us-east-1.amazonaws.com"
        )  # what the client builds when no transport is given
        contexts.append(_ssl_context(transport))
        await transport.aclose()

    anyio.run(main, backend=backend)
    assert contexts[0].verify_mode is ssl.CERT_REQUIRED
    assert contexts[0].check_hostname is True


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost`` (made with the openssl command)."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), "localhost")


@pytest.mark.parametrize(("backend", "http_backend"), BACKENDS)
@pytest.mark.parametrize("environment", TLS_ENVIRONMENTS[:3], ids=_env_id)
def test_an_untrusted_certificate_is_refused(
    environment: dict[str, str],
    backend: str,
    http_backend: Any,
    self_signed: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TLS server with a self-signed certificate is refused with APIConnectionError; no handshake completes."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(*self_signed)
    handshakes: list[str] = []
    raised: list[BaseException] = []

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                tls = await TLSStream.wrap(
                    stream, server_side=True, ssl_context=server_context, standard_compatible=False
                )
            except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
                handshakes.append(type(exc).__name__)
                return
            handshakes.append("completed")
            await tls.aclose()

    async def main() -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, handle)
                async with AnthropicBedrock(
                    access_key="AKIDEXAMPLE",
                    secret_key="x",
                    region="us-east-1",
                    endpoint_url=f"https://localhost:{port}",
                    retry_policy=RetryPolicy(max_retries=0),
                    http_backend=http_backend,
                ) as client:
                    with anyio.fail_after(10):
                        try:
                            await client.ChatCompletion.create(model=MODEL, messages=HI)
                        except BedrockError as exc:
                            raised.append(exc)
                tg.cancel_scope.cancel()

    anyio.run(main, backend=backend)
    assert len(raised) == 1
    assert isinstance(raised[0], APIConnectionError)
    if backend == "asyncio":  # under trio, httpcore's ConnectError carries no text at all
        assert re.search(r"(?i)certificate.verify.failed", str(raised[0])), str(raised[0])
    assert "completed" not in handshakes


def _chain(error: BaseException) -> list[BaseException]:
    """The error and everything reachable from it as a cause or a context."""
    seen: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or any(current is known for known in seen):
            continue
        seen.append(current)
        pending += [current.__cause__, current.__context__]
    return seen


@pytest.mark.parametrize("backend", ["httptools", "aiohttp", "httpcore2", "httpx"])
def test_a_malformed_response_leaves_no_secret_anywhere_in_the_error_chain(backend: str) -> None:
    """A response the HTTP parser rejects: no exception in the chain (nor its attributes) holds a credential.

    aiohttp's response errors keep the request's headers (Authorization, the session token) in their
    ``request_info``; such an error must not stay reachable from ours.
    """
    raised: list[BaseException] = []

    async def main() -> None:
        async with SilentServer(send=b"HTTP/1.1 200 OK\r\nBad Header Line\r\nContent-Length: 0\r\n\r\n") as server:
            client = AnthropicBedrock(
                access_key="AKIDCANARY",
                secret_key=CANARY_SECRET,
                session_token=CANARY_TOKEN,
                region="us-east-1",
                endpoint_url=server.url,
                http_backend=backend,  # type: ignore[arg-type]
                max_retries=0,
            )
            async with client:
                with anyio.fail_after(10), pytest.raises(BedrockError) as info:
                    await client.ChatCompletion.create(model=MODEL, messages=HI)
                raised.append(info.value)

    anyio.run(main)
    chain = _chain(raised[0])
    text = "\n".join(
        [repr(e) + str(e) + repr(vars(e)) + repr(getattr(e, "request_info", None)) for e in chain]
        + traceback.format_exception(raised[0])
    )
    for secret in (CANARY_SECRET, CANARY_TOKEN):
        assert secret not in text
    assert not SIGNATURE.search(text)


def test_a_bedrock_api_key_from_the_environment_is_checked_without_being_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_BEARER_TOKEN_BEDROCK with a newline (a secret file's last line) is refused by name, never echoed."""
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "canary-bedrock-api-key\n")
    with pytest.raises(ConfigurationError) as info:
        AnthropicBedrock(region="us-east-1")
    assert "AWS_BEARER_TOKEN_BEDROCK" in str(info.value)
    assert "canary-bedrock-api-key" not in str(info.value) + repr(info.value)


def test_an_invalid_header_is_a_typed_error_that_quotes_nothing() -> None:
    """h11's LocalProtocolError quotes the header value it refused; ours says which kind of problem, not what."""
    from bedrock_chat._http.transport import _failure

    error, _ = _failure(httpx.LocalProtocolError("Illegal header value b'Bearer canary-bedrock-api-key\\n'"))
    assert isinstance(error, InvalidRequestError)
    assert error.__cause__ is None
    assert not getattr(error, "retryable", False)
    assert "canary" not in str(error) + repr(error)
