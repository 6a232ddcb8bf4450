"""The async client: ``AnthropicBedrock`` (its ``ChatCompletion.create`` is in ``_completions``).

This module only wires the layers together: configuration is checked in ``_core.config``, arguments in
``_core.prompt``/``_core.protocol`` (before any I/O), bytes move in ``_http.transport`` and streams in ``_streaming``.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx
import sniffio

from ._completions import ChatCompletions
from ._core.config import (
    RetryPolicy,
    check_resolves_to_loopback,
    default_endpoint_url,
    region_from_env,
    validate_deadline,
    validate_region,
    validate_seconds,
)
from ._core.extras import check_extra_body, check_extra_headers
from ._core.models import ResolvedModel, Surface, resolve_model
from ._core.prompt import normalize_conversation
from ._core.protocol import (
    DEFAULT_MAX_TOKENS,
    Invocation,
    choose_surface,
    invoke_path,
    prepare_invocation,
    too_deep_error,
    validate_model_rules,
    validate_sampling,
    validate_tools,
)
from ._core.proxy import parse_proxy, proxy_for
from ._core.request_options import RequestOptions, request_option_headers
from ._core.responses import InvokeModelResponse, parse_invoke_response, parse_raw_invoke_response
from ._core.sigv4 import percent_encode_path_segment
from ._core.structured import check_strict_tools, validate_output_config
from ._errors import BedrockError, ConfigurationError, InvalidRequestError, make_api_error
from ._http.credentials import BotocoreCredentialSource, CredentialSource, StaticCredentialSource
from ._http.endpoint import Endpoint, parse_endpoint
from ._http.loops import PerLoop, current_loop, loop_is_closed, on_loop_end
from ._http.timeouts import validate_timeout
from ._http.transport import DEFAULT_MAX_RESPONSE_BYTES, BedrockTransport, RawResponse
from ._streaming import ChatCompletionStream, check_stream_content_type, deadline_expired
from ._telemetry import CallObserver, Instruments, Telemetry
from ._types import AwsCredentials, ChatCompletion

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._batch.jobs import BatchJobs

__all__ = ["DEFAULT_TIMEOUT", "AnthropicBedrock", "RetryHook"]

#: Called with each error that is about to be retried and the retry's number (1-based).
RetryHook = Callable[[BedrockError, int], None]

#: Generation can take minutes for long outputs; connecting should not.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
DEFAULT_STREAM_IDLE_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 100

_JSON_HEADERS = [("accept", "application/json"), ("content-type", "application/json")]
_HTTP_BACKENDS = ("auto", "httptools", "aiohttp", "httpcore2", "httpx")
#: The backends built on asyncio's own streams (no trio backend).
_ASYNCIO_ONLY_BACKENDS = ("httptools", "aiohttp")
_HTTPTOOLS_NO_PROXY = "http_backend: 'httptools' does not go through proxies; use 'auto' or 'aiohttp' with a proxy"


def _check_api_key(api_key: object, source: str) -> None:
    """A Bedrock API key goes into a header: printable ASCII only (the message never shows the key)."""
    if not isinstance(api_key, str) or not api_key.strip() or not api_key.isascii() or not api_key.isprintable():
        raise ConfigurationError(f"{source}: must be a non-empty printable ASCII string (a trailing newline?)")


def _check_pair(access_key: str | None, secret_key: str | None, session_token: str | None) -> None:
    if (access_key is None) != (secret_key is None):
        raise ConfigurationError("access_key and secret_key must be given together")
    if session_token is not None and access_key is None:
        raise ConfigurationError("session_token needs access_key and secret_key")
    for name, value in (
        ("access_key", access_key),
        ("secret_key", secret_key),
        ("session_token", session_token),
    ):
        # They end up in headers: CR/LF would split a header, and non-ASCII has no header encoding.
        # The message never repeats the value: it is a secret.
        if value is not None and (
            not isinstance(value, str) or not value.strip() or not value.isascii() or not value.isprintable()
        ):
            raise ConfigurationError(f"{name}: must be a non-empty string of printable ASCII characters")


def _check_token_count(answer: InvokeModelResponse) -> None:
    """CountTokens must answer an integer ``inputTokens`` (the body is quoted: the transport scrubs the error)."""
    count = answer.body.get("inputTokens")
    if not isinstance(count, int) or isinstance(count, bool):
        raise make_api_error(
            status=200,
            code="MalformedResponse",
            message=f"CountTokens answered without an integer inputTokens: {answer.body!r}",
            request_id=answer.request_id,
        )


class AnthropicBedrock:
    """Async client for Claude on Amazon Bedrock.

    Args:
        access_key, secret_key, session_token: explicit AWS credentials; without them botocore's
            default chain is used (environment, profiles, SSO, container, instance metadata),
            resolved and refreshed in a worker thread.
        region: AWS region; otherwise ``AWS_REGION``, ``AWS_DEFAULT_REGION``, then the profile's
            region. None found is a ConfigurationError, never a silent default.
        profile: a named profile of the shared AWS config files.
        endpoint_url: override the endpoint (the emulator, VPC endpoints); ``http://`` only for
            loopback hosts unless ``allow_insecure_http=True``: a literal loopback address, or
            ``localhost`` if it resolves to loopback addresses only (checked in a worker thread before
            the first request; ``*.localhost`` names are not taken on trust).
        control_plane_endpoint_url: the ``bedrock`` control plane's endpoint (batch jobs); default
            ``https://bedrock[-fips].{region}.{partition domain}`` as botocore derives it, never
            ``endpoint_url`` (a bedrock-runtime VPC endpoint does not serve the control plane).
        timeout: seconds, or an ``httpx.Timeout`` (connect/read/write/pool); each a finite number
            above 0 (None in an ``httpx.Timeout`` means unbounded).
        max_retries: retries after the first attempt for throttling, 500/502/503/504, ModelNotReady,
            ModelTimeout, connection errors, timeouts and cut-short streams (default 2: three attempts).
        max_connections: connection pool size of the default transport.
        transport: an ``httpx.AsyncBaseTransport`` to send through (tests pass ``httpx.MockTransport``);
            the client does not close a transport it was given, nor makes one per event loop.
        signer: ``"builtin"`` (the fast SigV4 signer) or ``"botocore"`` (botocore's ``SigV4Auth``).
        stream_idle_timeout: seconds without a byte on a response stream before it is abandoned.
        retry_policy: backoff parameters (``max_retries`` is a shortcut for its first field).
        api_key: a Bedrock API key, sent as ``Authorization: Bearer`` instead of SigV4 signing
            (``AWS_BEARER_TOKEN_BEDROCK`` is used when no credentials or profile are given).
        use_fips_endpoint, use_dualstack_endpoint: the FIPS and/or dual-stack endpoint of the region.
        http_backend: the default transport's engine: ``"auto"`` (under asyncio httptools, or aiohttp
            when a proxy applies; httpcore2 under trio), ``"httptools"`` (our own keep-alive pool on
            asyncio protocols with httptools' C parser, the least CPU per request; asyncio only, no
            proxies), ``"aiohttp"`` (asyncio only), ``"httpcore2"`` (asyncio or trio) or ``"httpx"`` (httpx's own
            ``AsyncHTTPTransport``, what respx mocks; a request cancelled while its connection is
            being assigned can strand a pool slot there, encode/httpcore#1093). Ignored when
            ``transport`` is given.
        proxy: an ``http://`` or ``https://`` proxy URL (credentials in it are sent as Basic
            ``Proxy-Authorization``, never shown). Without it, ``HTTPS_PROXY``/``HTTP_PROXY`` and
            ``NO_PROXY`` are honoured as botocore honours them, except for loopback endpoints.
        trust_env: False ignores the proxy environment variables. Neither applies to a given ``transport``,
            nor to botocore's own calls while resolving credentials (STS, SSO, instance metadata), which
            follow botocore's proxy settings.
        deadline: seconds that a whole call may take (every attempt and backoff; a stream until it is
            closed), then RequestTimeoutError; None (the default) sets none, so a slow but steady answer
            is never cut. ``create(deadline=...)`` overrides it per call.
        max_response_bytes: the most bytes a non-streaming answer or error body may have (default 32 MiB,
            ten times what Bedrock's largest output limit can produce); past it ResponseTooLargeError,
            having read no further. Streams are decoded as they come and are not capped.
        telemetry: OpenTelemetry spans and metrics (README, "Observability"): None (the default) records
            them once an OpenTelemetry SDK is configured, True always (``opentelemetry-api`` needed), False never.
        telemetry_content: record prompts, replies, system instructions and tool definitions in spans;
            None follows ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``. Never credentials.
        tracer_provider, meter_provider: this client's OpenTelemetry providers instead of the global ones
            (turns telemetry on).
    """

    def __repr__(self) -> str:
        auth = "api_key" if self._api_key is not None else "sigv4"
        return f"AnthropicBedrock(region={self._region!r}, endpoint_url={self._endpoint_url!r}, auth={auth})"

    def __init__(
        self,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        signer: Literal["builtin", "botocore"] = "builtin",
        stream_idle_timeout: float | None = DEFAULT_STREAM_IDLE_TIMEOUT,
        retry_policy: RetryPolicy | None = None,
        allow_insecure_http: bool = False,
        api_key: str | None = None,
        use_fips_endpoint: bool = False,
        use_dualstack_endpoint: bool = False,
        http_backend: Literal["auto", "httptools", "aiohttp", "httpcore2", "httpx"] = "auto",
        proxy: str | None = None,
        trust_env: bool = True,
        control_plane_endpoint_url: str | None = None,
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        telemetry: bool | None = None,
        telemetry_content: bool | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        _check_pair(access_key, secret_key, session_token)
        if profile is not None and access_key is not None:
            raise ConfigurationError("pass either explicit keys or a profile, not both")
        if api_key is not None:
            _check_api_key(api_key, "api_key")
            if access_key is not None or profile is not None:
                raise ConfigurationError("pass a Bedrock API key or AWS credentials (keys or a profile), not both")
        elif access_key is None and profile is None:
            # Like the AWS SDKs: the environment's Bedrock API key is used when nothing explicit was given.
            api_key = os.environ.get("AWS_BEARER_TOKEN_BEDROCK") or None
            if api_key is not None:
                _check_api_key(api_key, "AWS_BEARER_TOKEN_BEDROCK")
        self._api_key = api_key
        if http_backend not in _HTTP_BACKENDS:
            raise ConfigurationError(
                f"http_backend: must be one of {', '.join(map(repr, _HTTP_BACKENDS))}, got {http_backend!r}"
            )
        self._http_backend = http_backend
        # Kept parsed: its repr masks the credentials (the message of a bad URL never shows them either).
        self._proxy = parse_proxy(proxy) if proxy is not None else None
        if self._proxy is not None and http_backend == "httptools":
            raise ConfigurationError(_HTTPTOOLS_NO_PROXY)
        self._trust_env = bool(trust_env)
        self._fips = bool(use_fips_endpoint)
        self._dualstack = bool(use_dualstack_endpoint)
        if not isinstance(max_connections, int) or isinstance(max_connections, bool) or max_connections < 1:
            raise ConfigurationError(f"max_connections: must be an integer >= 1, got {max_connections!r}")
        if signer not in ("builtin", "botocore"):
            raise ConfigurationError(f"signer: must be 'builtin' or 'botocore', got {signer!r}")
        self._credentials: CredentialSource
        self._botocore_source: BotocoreCredentialSource | None = None
        if access_key is not None and secret_key is not None:
            self._credentials = StaticCredentialSource(AwsCredentials(access_key, secret_key, session_token))
        elif api_key is not None:
            self._credentials = StaticCredentialSource(AwsCredentials("", ""))  # never used: requests carry the key
        else:
            self._botocore_source = BotocoreCredentialSource(profile)
            self._credentials = self._botocore_source
        self._region: str | None = None
        if region is not None:
            self._region = validate_region(region)
        elif (found := region_from_env()) is not None:
            self._region = validate_region(found[0], source=found[1])
        self._endpoint_url = endpoint_url
        self._allow_insecure_http = allow_insecure_http
        if endpoint_url is not None:
            parse_endpoint(endpoint_url, allow_insecure_http=allow_insecure_http)  # fail fast on a bad URL
        if control_plane_endpoint_url is not None:
            parse_endpoint(
                control_plane_endpoint_url, allow_insecure_http=allow_insecure_http, field="control_plane_endpoint_url"
            )
        self._control_plane_endpoint_url = control_plane_endpoint_url
        self._timeout = validate_timeout(timeout)
        if stream_idle_timeout is not None:
            stream_idle_timeout = validate_seconds(stream_idle_timeout, "stream_idle_timeout")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError(f"transport: must be an httpx.AsyncBaseTransport, got {type(transport).__name__}")
        if retry_policy is not None and max_retries != RetryPolicy().max_retries:
            raise ConfigurationError("pass max_retries or retry_policy=RetryPolicy(max_retries=...), not both")
        self._retry = retry_policy or RetryPolicy(max_retries=max_retries)
        self._stream_idle_timeout = stream_idle_timeout
        self._deadline = validate_deadline(deadline)
        if not isinstance(max_response_bytes, int) or isinstance(max_response_bytes, bool) or max_response_bytes < 1:
            raise ConfigurationError(f"max_response_bytes: must be an integer >= 1, got {max_response_bytes!r}")
        self._max_response_bytes = max_response_bytes
        self._signer = signer
        self._telemetry = Telemetry(
            telemetry, content=telemetry_content, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        self._given_transport = transport
        self._max_connections = max_connections
        # One transport per running event loop (a pool is bound to its loop), closed when that loop ends.
        self._transports: dict[object, tuple[BedrockTransport, Callable[[], Awaitable[None]]]] = {}
        self._setup_locks = PerLoop(anyio.Lock)
        self._loopback_checked = False
        self._closed = False
        self.ChatCompletion = ChatCompletions(self)
        self._batch_jobs: BatchJobs | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> AnthropicBedrock:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close this event loop's connection pool (a transport passed in is left to its owner).

        Pools of other loops still running (in other threads) close when their loop ends.
        """
        self._closed = True
        entry = self._transports.get(current_loop())
        if entry is not None:
            await entry[1]()  # closes the transport and forgets it
        self._forget_closed_loops()

    async def invoke_model(self, *, model: str, body: Mapping[str, Any]) -> InvokeModelResponse:
        """Send an InvokeModel body as it is and return the model's JSON answer as it is.

        The low-level twin of ``ChatCompletion.create`` (as boto3's ``invoke_model``): no prompt
        building, but the same signing, retries and typed errors. Batch files in Bedrock's
        batch-inference format (``modelInput``) go through here.
        """
        resolved = resolve_model(model)
        if resolved.info is not None and Surface.INVOKE not in resolved.info.surfaces:
            raise InvalidRequestError(
                "model",
                f"{resolved.display_name} is served only on the Messages endpoint, not by InvokeModel; "
                "use ChatCompletion.create (it picks the endpoint)",
            )
        if not isinstance(body, Mapping):
            raise InvalidRequestError("body", f"must be a JSON object (a dict), got {type(body).__name__}")
        try:
            payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except RecursionError:
            raise too_deep_error("body", body) from None
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError("body", f"is not JSON-serialisable: {exc}") from None
        self._check_model_region(resolved)
        await self._ready()
        self._check_model_region(resolved)
        return await self._send_raw(invoke_path(model, stream=False), payload, _JSON_HEADERS)

    async def count_tokens(
        self,
        *,
        model: str,
        messages: Sequence[dict[str, Any]],
        system: str | Sequence[Mapping[str, Any]] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        thinking: Mapping[str, Any] | None = None,
        max_tokens_to_sample: int | None = None,
    ) -> int:
        """The input tokens Bedrock counts for this request, through its CountTokens operation.

        The body is the InvokeModel body ``create`` would send (validated the same way, before any
        I/O), so the count matches the ``usage.input_tokens`` of the real call. Nothing is generated
        and nothing is billed.
        """
        resolved = resolve_model(model)
        if resolved.info is not None and Surface.INVOKE not in resolved.info.surfaces:
            raise InvalidRequestError(
                "model",
                f"{resolved.display_name} is served only on the Messages endpoint: CountTokens takes InvokeModel "
                "bodies, and no counting operation of that endpoint is known (UNVERIFIED); "
                "a call's usage has the count",
            )
        sampling = validate_sampling(
            resolved, max_tokens_to_sample=DEFAULT_MAX_TOKENS if max_tokens_to_sample is None else max_tokens_to_sample
        )
        conversation = normalize_conversation(messages, system=system)
        thinking_body = validate_model_rules(resolved, sampling, thinking)
        extras = validate_tools(resolved, tools=tools, tool_choice=tool_choice)
        invocation = prepare_invocation(
            resolved,
            conversation,
            sampling,
            stream=False,
            surface=Surface.INVOKE,
            thinking=thinking_body,
            extras=extras,
        )
        payload = {"input": {"invokeModel": {"body": base64.b64encode(invocation.body).decode("ascii")}}}
        await self._ready()
        self._check_model_region(resolved)
        path = f"/model/{percent_encode_path_segment(model)}/count-tokens"
        body = json.dumps(payload).encode()
        instruments = self._telemetry.instruments()
        if instruments is not None:
            observer = await self._observer(instruments, invocation, operation="count_tokens")
            answer = await instruments.run(
                observer,
                lambda hook: self._send_raw(path, body, _JSON_HEADERS, on_retry=hook, check=_check_token_count),
                None,
            )
            observer.counted(answer.body["inputTokens"], answer.request_id)
        else:
            answer = await self._send_raw(path, body, _JSON_HEADERS, check=_check_token_count)
        count: int = answer.body["inputTokens"]
        return count

    @property
    def batch_jobs(self) -> BatchJobs:
        """Bedrock batch inference jobs with this client's credentials and region (boto3 needed; made on first use).

        The control plane is reached at :attr:`control_plane_endpoint_url`. For other endpoints or
        quotas, make one: ``BatchJobs(client, s3_endpoint_url=..., limits=...)``.
        """
        if self._batch_jobs is None:
            # imported on use: most programs never batch (start-up time)
            from ._batch.jobs import BatchJobs

            self._batch_jobs = BatchJobs(self)
        return self._batch_jobs

    @property
    def region(self) -> str | None:
        """The region requests are signed for (None until resolved from a profile on first use)."""
        return self._region

    @property
    def control_plane_endpoint_url(self) -> str | None:
        """Where control-plane (``bedrock``) calls go: the one given, else the region's (None while unknown)."""
        if self._control_plane_endpoint_url is not None:
            return self._control_plane_endpoint_url
        if self._region is None:
            return None
        return default_endpoint_url(self._region, fips=self._fips, dualstack=self._dualstack, service="bedrock")

    @property
    def _transport(self) -> BedrockTransport | None:
        """The running event loop's transport, if it made one (None outside an event loop)."""
        try:
            entry = self._transports.get(current_loop())
        except RuntimeError:  # no running loop
            return None
        return None if entry is None else entry[0]

    # -- internals ------------------------------------------------------------------------------

    def _default_transport(self, endpoint_url: str) -> httpx.AsyncBaseTransport:
        """Under asyncio our httptools pool (the least CPU per request), or aiohttp's where a proxy applies
        (httptools' pool speaks to the endpoint only); httpcore2's under trio."""
        proxy = proxy_for(endpoint_url, explicit=self._proxy, trust_env=self._trust_env, environ=os.environ)
        backend = self._http_backend
        if backend == "auto":
            if sniffio.current_async_library() != "asyncio":
                backend = "httpcore2"
            else:
                backend = "aiohttp" if proxy is not None else "httptools"
        if backend in _ASYNCIO_ONLY_BACKENDS and sniffio.current_async_library() != "asyncio":
            raise ConfigurationError(
                f"http_backend: {backend!r} runs only under asyncio; under trio use 'auto' or 'httpcore2'"
            )
        if backend == "httptools":
            if proxy is not None:
                raise ConfigurationError(_HTTPTOOLS_NO_PROXY)
            # httptools loads only with its backend (start-up time)
            from ._http.httptools_transport import HttptoolsTransport

            return HttptoolsTransport(max_connections=self._max_connections)
        if backend == "aiohttp":
            # aiohttp loads only with its backend (start-up time)
            from ._http.aiohttp_transport import AiohttpTransport

            return AiohttpTransport(max_connections=self._max_connections, proxy=proxy)
        if backend == "httpcore2":
            # httpcore2 loads only with its backend (start-up time)
            from ._http.httpcore_transport import HttpcoreTransport

            return HttpcoreTransport(max_connections=self._max_connections, proxy=proxy)
        limits = httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections)
        authorization = proxy.authorization if proxy is not None else None
        headers = None if authorization is None else {"Proxy-Authorization": authorization}
        return httpx.AsyncHTTPTransport(
            limits=limits, proxy=None if proxy is None else httpx.Proxy(proxy.url, headers=headers)
        )

    async def _ready(self) -> BedrockTransport:
        """Resolve what may need I/O (the profile's region) once, then reuse this event loop's transport."""
        if self._closed:
            raise ConfigurationError("the client is closed")
        loop = current_loop()
        entry = self._transports.get(loop)
        if entry is not None:
            return entry[0]
        async with self._setup_locks.get():
            entry = self._transports.get(loop)
            if entry is None:
                region = self._region
                if region is None and self._botocore_source is not None:
                    found = await self._botocore_source.region()
                    if found is not None:
                        region = validate_region(found, source="the profile's region")
                if region is None:
                    raise ConfigurationError(
                        "no AWS region: pass region=..., set AWS_REGION or AWS_DEFAULT_REGION, "
                        "or configure one for the profile"
                    )
                self._region = region
                url = self._endpoint_url or default_endpoint_url(region, fips=self._fips, dualstack=self._dualstack)
                endpoint: Endpoint = parse_endpoint(url, allow_insecure_http=self._allow_insecure_http)
                if endpoint.verify_loopback and not self._loopback_checked:
                    await self._check_loopback(endpoint)
                owns = self._given_transport is None
                transport = BedrockTransport(
                    endpoint=endpoint,
                    region=region,
                    credentials=None if self._api_key is not None else self._credentials,
                    transport=self._given_transport or self._default_transport(url),
                    owns_transport=owns,
                    timeout=self._timeout,
                    retry=self._retry,
                    stream_idle_timeout=self._stream_idle_timeout,
                    signer=self._signer,
                    api_key=self._api_key,
                    max_response_bytes=self._max_response_bytes,
                )
                close = await on_loop_end(lambda: self._drop(loop, transport))
                entry = self._transports[loop] = (transport, close)
                self._forget_closed_loops()
            return entry[0]

    async def _check_loopback(self, endpoint: Endpoint) -> None:
        """Plain http to ``localhost``: it must resolve to loopback only (looked up in a worker thread)."""
        try:
            found = await anyio.getaddrinfo(endpoint.url.host, endpoint.url.port or 80, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConfigurationError(f"endpoint_url: cannot resolve {endpoint.url.host!r}: {exc}") from exc
        check_resolves_to_loopback("endpoint_url", endpoint.url.host, (str(info[4][0]) for info in found))
        self._loopback_checked = True

    async def _drop(self, loop: object, transport: BedrockTransport) -> None:
        """Forget and close a loop's transport (when the loop ends, or the client is closed in it)."""
        if self._transports.get(loop, (None,))[0] is transport:
            del self._transports[loop]
        await transport.aclose()

    def _forget_closed_loops(self) -> None:
        """Drop transports of asyncio loops closed without finalising (their sockets went with the loop)."""
        for loop in [loop for loop in self._transports if loop_is_closed(loop)]:
            del self._transports[loop]

    def _prepare(
        self,
        *,
        messages: object,
        model: str,
        max_tokens_to_sample: int | None,
        max_tokens: int | None,
        stop_sequences: object,
        temperature: object,
        top_p: object,
        top_k: object,
        system: object,
        thinking: object,
        surface: object,
        stream: bool,
        tools: object = None,
        tool_choice: object = None,
        anthropic_beta: object = None,
        output_config: object = None,
        extra_body: object = None,
        extra_headers: object = None,
        guardrail_identifier: str | None = None,
        guardrail_version: str | None = None,
        trace: str | None = None,
        performance_config_latency: str | None = None,
        service_tier: str | None = None,
        request_metadata: Mapping[str, str] | None = None,
        deadline: object = None,
    ) -> Invocation:
        """All validation, before any I/O.

        ``deadline`` arrives only from a batch's requests (``create`` handles its own): the batch runs each
        request within the client's deadline, so a per-request one is refused rather than ignored.
        """
        if deadline is not None:
            raise InvalidRequestError(
                "deadline", "a batch's requests share the client's deadline (AnthropicBedrock(deadline=...))"
            )
        resolved = resolve_model(model)
        self._check_model_region(resolved)
        if max_tokens is not None and max_tokens_to_sample is not None:
            raise InvalidRequestError("max_tokens", "pass max_tokens_to_sample or its alias max_tokens, not both")
        limit = max_tokens_to_sample if max_tokens_to_sample is not None else max_tokens
        if not isinstance(stream, bool):
            raise InvalidRequestError("stream", f"must be True or False, got {stream!r}")
        sampling = validate_sampling(
            resolved,
            max_tokens_to_sample=DEFAULT_MAX_TOKENS if limit is None else limit,
            stop_sequences=stop_sequences,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
        )
        conversation = normalize_conversation(messages, system=system)
        chosen = choose_surface(resolved, surface)
        thinking_body = validate_model_rules(resolved, sampling, thinking)
        extras = validate_tools(resolved, tools=tools, tool_choice=tool_choice, anthropic_beta=anthropic_beta)
        output_schema = None
        if output_config is not None:
            output = validate_output_config(resolved, output_config)
            extras["output_config"] = output.body
            output_schema = output.schema
        if tools is not None:
            check_strict_tools(resolved, extras["tools"])
        return prepare_invocation(
            resolved,
            conversation,
            sampling,
            stream=stream,
            surface=chosen,
            thinking=thinking_body,
            extras=extras,
            extra_headers=()
            if guardrail_identifier is None
            and guardrail_version is None
            and trace is None
            and performance_config_latency is None
            and service_tier is None
            and request_metadata is None
            else request_option_headers(
                RequestOptions(
                    guardrail_identifier=guardrail_identifier,
                    guardrail_version=guardrail_version,
                    trace=trace,
                    performance_config_latency=performance_config_latency,
                    service_tier=service_tier,
                    request_metadata=request_metadata,
                )
            ),
            output_schema=output_schema,
            extra_body=None if extra_body is None else check_extra_body(extra_body),
            user_headers=() if extra_headers is None else check_extra_headers(extra_headers),
        )

    def _check_model_region(self, model: ResolvedModel) -> None:
        """An ARN names its region; requests are signed for the client's region, whatever ``endpoint_url`` is.

        So the two must agree with an ``endpoint_url`` too (a VPC endpoint serves its own region only).
        """
        if model.arn_region and self._region and model.arn_region != self._region:
            raise InvalidRequestError(
                "model",
                f"the ARN is in region {model.arn_region!r} but this client signs for {self._region!r}; "
                f"use a client with region={model.arn_region!r}",
            )

    async def _observer(
        self, instruments: Instruments, invocation: Invocation, operation: str | None = None
    ) -> CallObserver:
        """Start a call's span (telemetry is on): where the call goes is known once the transport is ready."""
        return instruments.start(invocation, *await self._server(), operation=operation)

    async def _server(self) -> tuple[str, int]:
        """The endpoint's host and port (telemetry's ``server.address`` and ``server.port``)."""
        url = (await self._ready()).endpoint.url
        return url.host, url.port or (443 if url.scheme == "https" else 80)

    async def _invoke(
        self,
        invocation: Invocation,
        *,
        on_retry: RetryHook | None = None,
        deadline: float | None = None,
        max_retries: int | None = None,
    ) -> ChatCompletion:
        """Send a prepared call and parse its answer; ``on_retry`` sees every retried error (batches adapt to it).

        ``deadline`` (seconds; None: the client's) bounds the whole call with one cancel scope;
        ``max_retries`` (None: the client's) is a batch's own retry budget.
        """
        instruments = self._telemetry.instruments()
        if instruments is None:
            if deadline is None and self._deadline is None:
                return await self._invoke_now(invocation, on_retry, max_retries)  # no deadline: a coroutine fewer
            return await self._invoke_within(invocation, on_retry, deadline, max_retries)
        observer = await self._observer(instruments, invocation)
        chat = await instruments.run(
            observer, lambda hook: self._invoke_within(invocation, hook, deadline, max_retries), on_retry
        )
        observer.succeed(chat)
        return chat

    async def _invoke_within(
        self,
        invocation: Invocation,
        on_retry: RetryHook | None,
        deadline: float | None,
        max_retries: int | None = None,
    ) -> ChatCompletion:
        seconds = self._deadline if deadline is None else deadline
        if seconds is None:
            return await self._invoke_now(invocation, on_retry, max_retries)
        with anyio.CancelScope(deadline=anyio.current_time() + seconds):
            return await self._invoke_now(invocation, on_retry, max_retries)
        raise deadline_expired(seconds)  # reached only when the scope cancelled the call

    async def _invoke_now(
        self, invocation: Invocation, on_retry: RetryHook | None, max_retries: int | None = None
    ) -> ChatCompletion:
        transport = await self._ready()
        self._check_model_region(invocation.model)
        started = time.monotonic()

        def read(raw: RawResponse) -> ChatCompletion:
            assert raw.body is not None
            return parse_invoke_response(invocation, raw.headers, raw.body, latency=time.monotonic() - started)

        return await transport.send(
            invocation.path,
            invocation.body,
            invocation.headers,
            stream=False,
            on_retry=on_retry,
            max_retries=max_retries,
            read=read,
        )

    async def _send_raw(
        self,
        path: str,
        body: bytes,
        headers: Sequence[tuple[str, str]],
        *,
        on_retry: RetryHook | None = None,
        check: Callable[[InvokeModelResponse], object] | None = None,
    ) -> InvokeModelResponse:
        """Send a ready body and keep the model's JSON answer as it is (within the client's deadline).

        ``check`` raises for an answer its operation cannot use; like the parser's, its errors are
        built from the response, so they are raised where the transport scrubs them.
        """
        seconds = self._deadline
        if seconds is None:
            return await self._send_raw_now(path, body, headers, on_retry, check)
        with anyio.CancelScope(deadline=anyio.current_time() + seconds):
            return await self._send_raw_now(path, body, headers, on_retry, check)
        raise deadline_expired(seconds)  # reached only when the scope cancelled the call

    async def _send_raw_now(
        self,
        path: str,
        body: bytes,
        headers: Sequence[tuple[str, str]],
        on_retry: RetryHook | None,
        check: Callable[[InvokeModelResponse], object] | None,
    ) -> InvokeModelResponse:
        transport = await self._ready()
        started = time.monotonic()

        def read(raw: RawResponse) -> InvokeModelResponse:
            assert raw.body is not None
            answer = parse_raw_invoke_response(raw.headers, raw.body, latency=time.monotonic() - started)
            if check is not None:
                check(answer)
            return answer

        return await transport.send(path, body, headers, stream=False, on_retry=on_retry, read=read)

    async def _open_stream(self, invocation: Invocation, *, deadline: float | None = None) -> ChatCompletionStream:
        """Open a stream; ``deadline`` (seconds; None: the client's) bounds it from here until it is closed."""
        instruments = self._telemetry.instruments()
        if instruments is None:
            return await self._open_stream_within(invocation, deadline, None)
        observer = await self._observer(instruments, invocation)
        return await instruments.run(
            observer, lambda _hook: self._open_stream_within(invocation, deadline, observer), None
        )

    async def _open_stream_within(
        self, invocation: Invocation, deadline: float | None, observer: CallObserver | None
    ) -> ChatCompletionStream:
        seconds = self._deadline if deadline is None else deadline
        if seconds is None:
            return await self._open_stream_now(invocation, None, None, observer)
        at = anyio.current_time() + seconds
        with anyio.CancelScope(deadline=at):
            return await self._open_stream_now(invocation, at, seconds, observer)
        raise deadline_expired(seconds)  # reached only when the scope cancelled the call

    async def _open_stream_now(
        self, invocation: Invocation, at: float | None, seconds: float | None, observer: CallObserver | None = None
    ) -> ChatCompletionStream:
        transport = await self._ready()
        self._check_model_region(invocation.model)
        started = time.monotonic()

        # One retry budget for the whole stream: the first send's retries and every re-send share it.
        retries_left = [transport.retry.max_retries]

        async def reopen() -> RawResponse:
            raw = await transport.send(
                invocation.path,
                invocation.body,
                invocation.headers,
                stream=True,
                max_retries=retries_left[0],
                on_retry=None if observer is None else observer.retry,
                read=functools.partial(check_stream_content_type, surface=invocation.surface),
            )
            retries_left[0] -= raw.attempts - 1
            return raw

        async def retry_after(error: BedrockError) -> bool:
            """Spend one retry on re-sending the stream, after backing off; False when none is left."""
            if retries_left[0] <= 0:
                return False
            retries_left[0] -= 1
            number = transport.retry.max_retries - retries_left[0] - 1
            if observer is not None:
                observer.retry(error, number + 1)
            throttled = getattr(error, "is_throttle", False)
            await anyio.sleep(transport.retry.delay(number, throttled=throttled, jitter=random.random()))
            return True

        return ChatCompletionStream(
            invocation=invocation,
            response=await reopen(),
            reopen=reopen,
            retry_after=retry_after,
            # Known transports bound each read themselves; others get a per-read deadline here.
            idle_timeout=None if transport.enforces_read_timeouts else self._stream_idle_timeout,
            started=started,
            deadline_at=at,
            deadline=seconds,
            observer=observer,
        )
