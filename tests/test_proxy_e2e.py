"""Requests through a real HTTP proxy (``tests/forward_proxy.py``) to the emulator, on every transport.

The emulator verifies each SigV4 signature, so a request the proxy path altered (its path, its Host)
fails there. Covered: an explicit ``proxy=`` with credentials (forwarding, for an http endpoint), the
environment's ``HTTPS_PROXY`` through a CONNECT tunnel with TLS checked end to end (the proxy terminates
TLS with a certificate for the endpoint's name, trusted through ``SSL_CERT_FILE``), the loopback
exemption, and the proxy's refusal (407) as a typed, unretried ``ProxyError`` that shows no secret.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from e2e_helpers import checked_out_connections, emulator_client, self_signed_certificate
from forward_proxy import ForwardProxy, running_proxy

from bedrock_chat import AnthropicBedrock, ProxyError, RetryPolicy, TransportError
from bedrock_chat.emulator import BedrockEmulator

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
HI = [{"role": "user", "content": "hi"}]
USER, PASSWORD = "proxy-user", "p@ss:w0rd-canary"
CREDENTIALS = f"{USER}:p%40ss%3Aw0rd-canary"  # percent-encoded in the URL, as RFC 3986 wants
#: (http_backend, event loop): both default transports, httpcore2 under both loops, and httpx's own.
ENGINES = [("aiohttp", "asyncio"), ("httpcore2", "asyncio"), ("httpcore2", "trio"), ("httpx", "asyncio")]
ENDPOINT_NAME = "bedrock.test"


def emulator_address(emu: BedrockEmulator) -> tuple[str, int]:
    """The emulator's host and port, for a proxy that routes every connection there."""
    host, port = emu.endpoint_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def engine_id(engine: tuple[str, str]) -> str:
    return "-".join(engine)


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test states the proxy variables it wants; the machine's own do not leak in."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)


def talk(client: AnthropicBedrock, loop: str) -> list[str]:
    """A create and a stream through ``client`` on ``loop``; their texts. The pool is idle afterwards."""
    texts: list[str] = []

    async def main() -> None:
        async with client:
            with anyio.fail_after(20):
                chat = await client.ChatCompletion.create(model=MODEL, messages=HI)
                texts.append(chat.completion)
                stream = await client.ChatCompletion.create(model=MODEL, messages=HI, stream=True)
                texts.append((await stream.final_completion()).completion)
            assert checked_out_connections(client) == 0

    anyio.run(main, backend=loop)
    return texts


def proxy_error_from(client: AnthropicBedrock, loop: str) -> ProxyError:
    """The ProxyError a create through ``client`` raises on ``loop``; the pool is idle afterwards."""
    raised: list[ProxyError] = []

    async def main() -> None:
        async with client:
            with anyio.fail_after(20), pytest.raises(ProxyError) as info:
                await client.ChatCompletion.create(model=MODEL, messages=HI)
            raised.append(info.value)
            assert checked_out_connections(client) == 0

    anyio.run(main, backend=loop)
    return raised[0]


@pytest.mark.parametrize("engine", ENGINES, ids=engine_id)
def test_an_explicit_proxy_with_credentials_forwards_signed_requests(
    bedrock_emulator: BedrockEmulator, engine: tuple[str, str]
) -> None:
    """``proxy="http://user:pass@host:port"``: both calls go through it, authenticated, and arrive as signed."""
    backend, loop = engine
    with running_proxy(ForwardProxy(credentials=(USER, PASSWORD))) as proxy:
        host_port = proxy.url.removeprefix("http://")
        client = emulator_client(bedrock_emulator, http_backend=backend, proxy=f"http://{CREDENTIALS}@{host_port}")
        assert PASSWORD not in repr(client)
        texts = talk(client, loop)
    assert all(texts)
    expected = botocore_basic_auth()
    assert expected.startswith("Basic ")
    assert [(r.method, r.authorization) for r in proxy.records] == [("POST", expected)] * 2, proxy.records
    quoted_model = MODEL.replace(":", "%3A")
    assert [r.target for r in proxy.records] == [
        f"{bedrock_emulator.endpoint_url}/model/{quoted_model}/invoke",
        f"{bedrock_emulator.endpoint_url}/model/{quoted_model}/invoke-with-response-stream",
    ]
    assert [r.status for r in bedrock_emulator.requests] == [200, 200]


def botocore_basic_auth() -> str:
    """The Proxy-Authorization botocore sends for the same proxy URL's credentials (a peer, not our code)."""
    from botocore.httpsession import ProxyConfiguration

    value: str = ProxyConfiguration().proxy_headers_for(f"http://{CREDENTIALS}@proxy.invalid:3128")[
        "Proxy-Authorization"
    ]
    return value


@pytest.fixture(scope="module")
def endpoint_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for the endpoint's name, which only the proxy's tunnel serves."""
    return self_signed_certificate(tmp_path_factory.mktemp("proxy-tls"), ENDPOINT_NAME)


@pytest.fixture
def inspecting_proxy(
    bedrock_emulator: BedrockEmulator, endpoint_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ForwardProxy]:
    """A proxy routing every tunnel to the emulator, terminating TLS as ``bedrock.test`` (trusted via SSL_CERT_FILE)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*endpoint_certificate)
    host, port = emulator_address(bedrock_emulator)
    monkeypatch.setenv("SSL_CERT_FILE", str(endpoint_certificate[0]))
    with running_proxy(ForwardProxy(upstream=(host, port), tls=context)) as proxy:
        yield proxy


@pytest.mark.parametrize("engine", ENGINES, ids=engine_id)
def test_the_environment_https_proxy_tunnels_tls_to_the_endpoint(
    bedrock_emulator: BedrockEmulator,
    inspecting_proxy: ForwardProxy,
    engine: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HTTPS_PROXY`` set: an https endpoint is reached through a CONNECT tunnel, its certificate checked."""
    backend, loop = engine
    monkeypatch.setenv("HTTPS_PROXY", inspecting_proxy.url)
    client = emulator_client(
        bedrock_emulator,
        endpoint_url=f"https://{ENDPOINT_NAME}",
        http_backend=backend,
    )
    texts = talk(client, loop)
    assert all(texts)
    assert {(r.method, r.target) for r in inspecting_proxy.records} == {("CONNECT", f"{ENDPOINT_NAME}:443")}
    assert [r.status for r in bedrock_emulator.requests] == [200, 200]
    assert {dict(r.headers)["host"] for r in bedrock_emulator.requests} == {ENDPOINT_NAME}


@pytest.mark.parametrize("engine", ENGINES, ids=engine_id)
def test_trust_env_false_ignores_the_environment_proxy(
    inspecting_proxy: ForwardProxy, engine: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``trust_env=False`` ``HTTPS_PROXY`` is not used: the endpoint is dialled directly (and is not there)."""
    backend, loop = engine
    monkeypatch.setenv("HTTPS_PROXY", inspecting_proxy.url)
    client = AnthropicBedrock(
        access_key="AKIDEXAMPLE",
        secret_key="not-a-real-secret",
        region="us-east-1",
        endpoint_url="https://192.0.2.1",  # TEST-NET-1: not loopback, and nothing answers
        timeout=httpx.Timeout(5.0, connect=0.5),
        http_backend=backend,  # type: ignore[arg-type]
        trust_env=False,
        max_retries=0,
    )
    with pytest.raises(TransportError):
        talk(client, loop)
    assert inspecting_proxy.records == []


@pytest.mark.parametrize("engine", ENGINES, ids=engine_id)
def test_loopback_endpoints_never_use_the_environment_proxy(
    bedrock_emulator: BedrockEmulator, engine: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTP_PROXY`` set: the emulator on 127.0.0.1 is still reached directly (as Go's clients do)."""
    backend, loop = engine
    with running_proxy(ForwardProxy()) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        assert all(talk(emulator_client(bedrock_emulator, http_backend=backend), loop))
    assert proxy.records == []


@pytest.mark.parametrize("endpoint", ["emulator", "tunnel"])
@pytest.mark.parametrize("engine", ENGINES, ids=engine_id)
def test_a_proxy_refusal_is_a_proxy_error_not_retried_and_secret_free(
    bedrock_emulator: BedrockEmulator,
    endpoint_certificate: tuple[Path, Path],
    engine: tuple[str, str],
    endpoint: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wrong proxy credentials (407, forwarded or on CONNECT): one ProxyError, one attempt, no password shown."""
    backend, loop = engine
    monkeypatch.setenv("SSL_CERT_FILE", str(endpoint_certificate[0]))
    caplog.set_level(logging.DEBUG)
    with running_proxy(ForwardProxy(credentials=(USER, "the-right-one"))) as proxy:
        host_port = proxy.url.removeprefix("http://")
        url = bedrock_emulator.endpoint_url if endpoint == "emulator" else f"https://{ENDPOINT_NAME}"
        client = emulator_client(
            bedrock_emulator,
            endpoint_url=url,
            http_backend=backend,
            proxy=f"http://{CREDENTIALS}@{host_port}",
        )
        error = proxy_error_from(client, loop)
    assert len(proxy.records) == 1, "a refusal is not retried"
    assert len(bedrock_emulator.requests) == 0
    assert "407" in str(error)
    shown = "\n".join([str(error), repr(error), repr(client), caplog.text])
    for secret in (PASSWORD, "p%40ss%3Aw0rd-canary", "w0rd-canary"):
        assert secret not in shown


@pytest.mark.parametrize("engine", ENGINES, ids=engine_id)
def test_a_failed_connect_is_a_retried_proxy_error_with_its_status(
    endpoint_certificate: tuple[Path, Path], engine: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 502 to CONNECT (the proxy cannot reach Bedrock) is a ProxyError with status 502, retried like a drop."""
    backend, loop = engine
    monkeypatch.setenv("SSL_CERT_FILE", str(endpoint_certificate[0]))
    with running_proxy(ForwardProxy(connect_status=502)) as proxy:
        client = AnthropicBedrock(
            access_key="AKIDEXAMPLE",
            secret_key="not-a-real-secret",
            region="us-east-1",
            endpoint_url=f"https://{ENDPOINT_NAME}",
            http_backend=backend,  # type: ignore[arg-type]
            proxy=proxy.url,
            retry_policy=RetryPolicy(max_retries=2, base=0.0, throttle_base=0.0),
        )
        error = proxy_error_from(client, loop)
    assert [r.method for r in proxy.records] == ["CONNECT"] * 3, "two retries after the first refusal"
    assert error.status == 502
    assert error.retryable


def test_the_client_and_its_transport_hold_the_proxy_password_nowhere_visible(
    bedrock_emulator: BedrockEmulator,
) -> None:
    """repr() of the client, its attributes, its transports and their attributes never show the proxy's password."""
    shown: list[str] = []

    async def main() -> None:
        for backend in ("aiohttp", "httpcore2", "httpx"):
            client = emulator_client(bedrock_emulator, http_backend=backend, proxy=f"http://{CREDENTIALS}@127.0.0.1:9")
            async with client:
                bedrock = await client._ready()
                shown.extend([repr(client), repr(vars(client)), repr(bedrock), repr(vars(bedrock))])
                shown.extend([repr(bedrock.transport), repr(getattr(bedrock.transport, "__dict__", {}))])

    anyio.run(main)
    text = "\n".join(shown)
    for secret in (PASSWORD, "p%40ss%3Aw0rd-canary", "w0rd-canary", botocore_basic_auth().split()[1]):
        assert secret not in text


@pytest.mark.parametrize("engine", ENGINES[:3], ids=engine_id)
def test_an_ipv6_endpoint_is_forwarded_with_its_brackets(
    bedrock_emulator: BedrockEmulator, engine: tuple[str, str]
) -> None:
    """``http://[::1]:port`` through a proxy: the absolute-form target keeps the brackets (the proxy routes it on)."""
    backend, loop = engine
    host, port = emulator_address(bedrock_emulator)
    with running_proxy(ForwardProxy(upstream=(host, port))) as proxy:
        client = emulator_client(
            bedrock_emulator,
            endpoint_url=f"http://[::1]:{port}",
            http_backend=backend,
            proxy=proxy.url,
        )
        assert all(talk(client, loop))
    assert {r.target.split("/model/")[0] for r in proxy.records} == {f"http://[::1]:{port}"}
    assert {dict(r.headers)["host"] for r in bedrock_emulator.requests} == {f"[::1]:{port}"}
