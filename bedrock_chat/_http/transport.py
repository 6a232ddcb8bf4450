"""Sending signed requests: the one place where I/O errors become bedrock_chat errors.

Theory of operation: :meth:`BedrockTransport.send` signs each attempt afresh (a retry carries a new
X-Amz-Date), hands an ``httpx.Request`` straight to an ``httpx.AsyncBaseTransport`` -- not through
``httpx.AsyncClient``, whose per-request machinery costs more than everything else here put together;
whole-body POSTs through our httptools, aiohttp and httpcore2 transports skip the httpx objects
altogether -- and classifies the outcome: a 200 is returned, anything else becomes the typed error of
:mod:`bedrock_chat._errors`, and retryable errors are retried with backoff under :class:`RetryPolicy`.
Timeouts travel in ``request.extensions["timeout"]``, which httpx's transports honour. Every response
that is not handed to the caller is closed before the next step, including when the task is cancelled,
so no connection is ever left checked out.

Credentials on the request path: one attempt's headers travel as :class:`RequestHeaders`, whose values
are revealed inline where a transport is called, so no local variable of ours holds the token, the
API key or the signed ``Authorization`` (tracebacks that print locals show the header names only);
exceptions from the HTTP libraries lose their frames (:func:`~bedrock_chat._errors.drop_tracebacks`),
which do hold them. What the server sends back into an error passes through the attempt's
:class:`~bedrock_chat._errors.Scrubber`, and so do httpcore's DEBUG records while the attempt runs.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast, overload

import anyio
import httpx

from .._core.config import RetryPolicy
from .._core.responses import parse_error_response, request_id_from
from .._core.sigv4 import SigV4Signer
from .._errors import (
    APIConnectionError,
    APIError,
    BedrockError,
    ConfigurationError,
    ExpiredTokenError,
    InvalidRequestError,
    ProxyError,
    RequestTimeoutError,
    ResponseTooLargeError,
    Scrubber,
    TransportError,
    drop_tracebacks,
    from_the_server,
)
from .._types import AwsCredentials
from .bodies import collect_capped
from .cache import BoundedCache
from .credentials import CredentialSource
from .endpoint import Endpoint

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BedrockTransport",
    "RawResponse",
    "RequestHeaders",
    "USER_AGENT",
    "close_response",
    "translate_httpx_error",
]

USER_AGENT = "bedrock-chat/0.1"

T = TypeVar("T")

#: ``post_and_read(url, headers, body, timeouts, max_body=...) -> (status, lower-cased headers, body)``.
FastPost = Callable[..., Awaitable[tuple[int, dict[str, str], bytes]]]

#: The default cap on a non-streaming body. Bedrock's answers are bounded by max output tokens: the
#: largest limit is 128,000 tokens, about 4 characters each, and JSON's ``\uXXXX`` escapes take at most
#: 6 bytes a character: 128,000 x 4 x 6 = 3.1 MB. 32 MiB is ten times that (room for tool input,
#: thinking and its signature), and an error body is a few hundred bytes.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
Signer = Callable[[str, str, Sequence[tuple[str, str]], bytes, AwsCredentials], list[tuple[str, str]]]


def translate_httpx_error(exc: Exception) -> TransportError | InvalidRequestError:
    """httpx's exceptions -> ours (the caller chains the cause with ``from``).

    ``exc`` and what is chained to it lose their frames: the HTTP libraries' locals hold the request's headers.
    """
    drop_tracebacks(exc)
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"request timed out ({type(exc).__name__}): {exc or 'no detail'}")
    if isinstance(exc, httpx.ProxyError):  # every engine words it "<status> <reason>"
        found = re.match(r"(\d{3})\b", str(exc))
        status = int(found.group(1)) if found else None
        return ProxyError(f"the proxy refused the request: {exc or 'no detail'}", status=status)
    if isinstance(exc, httpx.LocalProtocolError):
        # h11 quotes the offending header value, which may be a credential: say which kind, not what.
        return InvalidRequestError("headers", "a header value is not valid HTTP (not shown: it may be a secret)")
    return APIConnectionError(f"connection failed ({type(exc).__name__}): {exc or 'no detail'}")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """``x-amz-retry-after`` (milliseconds) or ``retry-after`` (seconds)."""
    value = headers.get("x-amz-retry-after")
    scale = 0.001
    if value is None:
        value, scale = headers.get("retry-after"), 1.0
    if value is None:
        return None
    try:
        return max(0.0, float(value) * scale)
    except ValueError:
        return None


_TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


def _retryable(error: BedrockError) -> bool:
    """By class (throttling, not ready, timeouts, connections), or by a transient 5xx status whatever its code."""
    if getattr(error, "retryable", False):
        return True
    return isinstance(error, APIError) and error.status in _TRANSIENT_STATUSES


#: Requests (DEBUG) and retries (INFO): see ``bedrock_chat._log`` for what is logged and what never is.
_log = logging.getLogger(__name__)


def _status_of(error: BedrockError) -> str:
    """What an attempt's log line says it ended with: the HTTP status, or the error's class when none came."""
    status = getattr(error, "status", None)
    return str(status) if status is not None else type(error).__name__


def _log_attempt(path: str, status: int | str, started: float, request_id: str | None) -> None:
    """One DEBUG line per attempt: no header, body or query, only what identifies the request."""
    _log.debug(
        "POST %s -> %s in %.1f ms%s",
        path,
        status,
        (time.monotonic() - started) * 1000,
        f" [request id {request_id}]" if request_id else "",
    )


class RequestHeaders:
    """One attempt's headers, credentials included, shown by name only.

    ``reveal()`` is called inline where a transport is handed the headers, so that no frame on the
    request path keeps them in a local variable that a traceback formatter (``capture_locals``,
    Sentry, ``rich``) would print; the object is not a sequence either, so such tools fall back on
    ``repr`` instead of walking into it.
    """

    __slots__ = ("_pairs",)

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def reveal(self) -> list[tuple[str, str]]:
        """The (name, value) pairs to put on the wire."""
        return self._pairs

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        return next((value for key, value in self._pairs if key == name), None)

    def __repr__(self) -> str:
        return f"RequestHeaders({', '.join(name for name, _ in self._pairs)}; values not shown)"


class RawResponse:
    """A successful (200) answer: lower-cased headers, and the body or (for a stream) the open response.

    ``scrubber`` holds the attempt's secrets, for the errors a stream may still bring.
    """

    __slots__ = ("attempts", "body", "headers", "response", "scrubber")

    def __init__(self, headers: Mapping[str, str], body: bytes | None, response: httpx.Response | None = None) -> None:
        self.headers = headers
        self.body = body
        self.response = response
        self.attempts = 1
        self.scrubber: Scrubber | None = None


def _shorter(a: float | None, b: float | None) -> float | None:
    """The tighter of two optional bounds (None: unbounded)."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def _failure(exc: httpx.HTTPError) -> tuple[BedrockError, None]:
    error = translate_httpx_error(exc)
    if not isinstance(error, InvalidRequestError):  # its cause would quote the header value
        error.__cause__ = exc
    return error, None


def _lower_headers(response: httpx.Response) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers.raw}


async def close_response(response: httpx.Response) -> None:
    """Close a response even inside a cancelled scope: a cancelled task must still release its connection."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
        await response.aclose()


class BedrockTransport:
    """Signs, sends and retries. Owns the httpx transport unless one was passed in."""

    def __init__(
        self,
        *,
        endpoint: Endpoint,
        region: str,
        credentials: CredentialSource | None,
        transport: httpx.AsyncBaseTransport,
        owns_transport: bool,
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        stream_idle_timeout: float | None = None,
        signer: str = "builtin",
        api_key: str | None = None,
        service: str = "bedrock",
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        jitter: Callable[[], float] = random.random,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.transport = transport
        self._owns_transport = owns_transport
        self._timeout_ext = timeout.as_dict()
        # A stream's reads are bounded by its idle timeout: the transport enforces it on every read.
        self._stream_timeout_ext = {
            **self._timeout_ext,
            "read": _shorter(stream_idle_timeout, self._timeout_ext["read"]),
        }
        self._urls: BoundedCache[str, httpx.URL] = BoundedCache(endpoint.url_for)
        self._url_texts: BoundedCache[str, str] = BoundedCache(lambda path: str(self._urls[path]))
        #: Set when the transport offers a whole-body POST without httpx objects (our httptools, aiohttp and
        #: httpcore2 transports).
        self._fast_post: FastPost | None = getattr(transport, "post_and_read", None)
        self.retry = retry
        self._clock = clock or time.time
        self._sleep = sleep
        self._jitter = jitter
        self._api_key = api_key
        self._sign = self._make_signer(signer, region, service)
        self._closed = False
        _install_header_log_filter()
        #: The most bytes a non-streaming body (an answer or an error) may have.
        self.max_response_bytes = max_response_bytes

    def _make_signer(self, signer: str, region: str, service: str) -> Signer:
        host = self.endpoint.host
        scheme = self.endpoint.url.scheme
        if signer == "builtin":
            builtin = SigV4Signer(region=region, service=service)

            def sign(
                method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes, creds: AwsCredentials
            ) -> list[tuple[str, str]]:
                return builtin.sign(
                    method=method,
                    host=host,
                    scheme=scheme,
                    path=path,
                    headers=headers,
                    body=body,
                    credentials=creds,
                    timestamp=self._clock(),
                ).items()

            return sign
        if signer == "botocore":
            return _botocore_signer(self.endpoint, region, service)
        raise ConfigurationError(f"signer: must be 'builtin' or 'botocore', got {signer!r}")

    @property
    def enforces_read_timeouts(self) -> bool:
        """True for the transports known to honour ``extensions["timeout"]["read"]`` on every read."""
        return isinstance(self.transport, httpx.AsyncHTTPTransport) or getattr(
            self.transport, "enforces_read_timeouts", False
        )

    async def aclose(self) -> None:
        """Close the underlying transport (if owned); idempotent."""
        if not self._closed:
            self._closed = True
            if self._owns_transport:
                await self.transport.aclose()

    def signed_headers(
        self, path: str, body: bytes, headers: Sequence[tuple[str, str]], credentials: AwsCredentials | None
    ) -> list[tuple[str, str]]:
        """Every header of one attempt: signed afresh (or the Bedrock API key when ``credentials`` is None)."""
        if credentials is None:
            signed = [("authorization", f"Bearer {self._api_key}")]
        else:
            # An endpoint behind a proxy may have a base path: sign the path that is actually sent.
            signed = self._sign("POST", self.endpoint.base_path + path, headers, body, credentials)
        return [
            ("host", self.endpoint.host),
            *headers,
            *signed,
            ("user-agent", USER_AGENT),
            ("content-length", str(len(body))),
        ]

    def _url(self, path: str) -> httpx.URL:
        return self._urls[path]

    def _url_text(self, path: str) -> str:
        return self._url_texts[path]

    def _secrets(self, credentials: AwsCredentials | None, headers: RequestHeaders) -> Iterable[str | None]:
        """What an attempt must not see echoed back: see :class:`~bedrock_chat._errors.Scrubber`."""
        authorization = headers.get("authorization") or ""
        signature = authorization.rpartition("Signature=")[2] if "Signature=" in authorization else None
        if credentials is None:
            return (authorization, self._api_key)
        return (authorization, signature, credentials.secret_key, credentials.session_token)

    @overload
    async def send(
        self,
        path: str,
        body: bytes,
        headers: Sequence[tuple[str, str]],
        *,
        stream: bool,
        on_retry: Callable[[BedrockError, int], None] | None = ...,
        max_retries: int | None = ...,
        read: None = ...,
    ) -> RawResponse: ...

    @overload
    async def send(
        self,
        path: str,
        body: bytes,
        headers: Sequence[tuple[str, str]],
        *,
        stream: bool,
        on_retry: Callable[[BedrockError, int], None] | None = ...,
        max_retries: int | None = ...,
        read: Callable[[RawResponse], T],
    ) -> T: ...

    async def send(
        self,
        path: str,
        body: bytes,
        headers: Sequence[tuple[str, str]],
        *,
        stream: bool,
        on_retry: Callable[[BedrockError, int], None] | None = None,
        max_retries: int | None = None,
        read: Callable[[RawResponse], T] | None = None,
    ) -> RawResponse | T:
        """Send with retries; returns a 200 (body read unless ``stream``), raises the typed error otherwise.

        ``max_retries`` overrides the policy's (a stream re-sent after a failure spends what is left of
        its one budget); the answer's ``attempts`` says how many attempts it took. ``read`` interprets
        the 200 (parses it, checks its content type) and its result is returned: every error built
        from a response then leaves through :func:`~bedrock_chat._errors.from_the_server` here, the 200's
        with the non-200's, scrubbed with the attempt's secrets and without the parsers' frames; a
        stream whose ``read`` fails is closed.
        """
        if self._closed:
            raise ConfigurationError("the client is closed")
        allowed = self.retry.max_retries if max_retries is None else max_retries
        retries = 0
        refreshed = False
        while True:
            credentials = await self.credentials.get() if self.credentials is not None else None
            all_headers = RequestHeaders(self.signed_headers(path, body, headers, credentials))
            scrubber = Scrubber(functools.partial(self._secrets, credentials, all_headers))
            token = _ATTEMPT_SCRUBBER.set(scrubber)  # for httpcore's DEBUG records of this attempt
            started = time.monotonic() if _log.isEnabledFor(logging.DEBUG) else None  # a clock read only when logged
            try:
                outcome = await self._attempt(path, body, all_headers, scrubber, stream=stream)
            finally:
                _ATTEMPT_SCRUBBER.reset(token)
            if isinstance(outcome, RawResponse):
                outcome.attempts = retries + 1 + refreshed
                outcome.scrubber = scrubber
                if started is not None:
                    _log_attempt(path, 200, started, request_id_from(outcome.headers))
                if read is None:
                    return outcome
                if outcome.response is not None:
                    return await self._read_answer(outcome, read)
                try:  # a whole body: nothing to close, so no coroutine for it (the hot path)
                    return read(outcome)
                except BedrockError as unreadable:
                    failure = from_the_server(unreadable, scrubber)
                raise failure  # outside the except block: no context holds the parser's frames
            error, retry_after = outcome
            from_the_server(error, scrubber)
            if started is not None:
                _log_attempt(path, _status_of(error), started, getattr(error, "request_id", None))
            if isinstance(error, ExpiredTokenError):
                if refreshed or self.credentials is None or credentials is None:
                    raise error  # still expired after re-resolving (or an API key): retrying cannot help
                # Temporary credentials ran out between resolution and use: re-resolve once, no backoff.
                refreshed = True
                await self.credentials.invalidate(credentials)
                continue
            if not _retryable(error) or retries >= allowed:
                raise error
            delay = self.retry.delay(
                retries,
                throttled=isinstance(error, APIError) and error.is_throttle,
                jitter=self._jitter(),
                retry_after=retry_after,
            )
            retries += 1
            request_id = getattr(error, "request_id", None)
            _log.info(
                "retry %d of %d in %.2f s after %s%s",
                retries,
                allowed,
                delay,
                type(error).__name__,
                f" [request id {request_id}]" if request_id else "",
            )
            if on_retry is not None:
                on_retry(error, retries)
            await self._sleep(delay)

    @staticmethod
    async def _read_answer(answer: RawResponse, read: Callable[[RawResponse], T]) -> T:
        """``read(answer)``; what it raises passes :func:`from_the_server`, and an open stream is closed."""
        try:
            return read(answer)
        except BedrockError as error:
            failure = from_the_server(error, answer.scrubber)
        except BaseException:
            if answer.response is not None:
                await close_response(answer.response)
            raise
        if answer.response is not None:
            await close_response(answer.response)
        raise failure  # outside the except block: no context holds the parser's frames

    async def _attempt(
        self,
        path: str,
        body: bytes,
        all_headers: RequestHeaders,
        scrubber: Scrubber,
        *,
        stream: bool,
    ) -> RawResponse | tuple[BedrockError, float | None]:
        """One attempt: the 200 answer, or the typed error and the service's retry-after hint."""
        timeout = self._stream_timeout_ext if stream else self._timeout_ext
        status: int
        if self._fast_post is not None and not stream:
            # Our httptools, aiohttp and httpcore2 transports: no httpx.Request/Response objects on the hot path.
            try:
                status, lowered, answer = await self._fast_post(
                    self._url_text(path), all_headers.reveal(), body, timeout, max_body=self.max_response_bytes
                )
            except httpx.HTTPError as exc:
                return _failure(exc)
        else:
            request = httpx.Request(
                "POST", self._url(path), headers=all_headers.reveal(), content=body, extensions={"timeout": timeout}
            )
            try:
                response = await self.transport.handle_async_request(request)
            except httpx.HTTPError as exc:
                return _failure(exc)
            status, lowered = response.status_code, _lower_headers(response)
            if status == 200 and stream:
                return RawResponse(lowered, None, response)
            try:
                answer = await self._read(response, self.max_response_bytes)
            except TransportError as exc:
                return exc, None
        if status == 200:
            return RawResponse(lowered, answer)
        if status == 407:  # Bedrock never answers 407: a forwarding proxy did
            return ProxyError("the proxy refused the request: 407 Proxy Authentication Required", status=407), None
        return parse_error_response(status, lowered, answer, scrubber), _retry_after(lowered)

    @staticmethod
    async def _read(response: httpx.Response, limit: int) -> bytes:
        """Read the whole body (at most ``limit`` bytes) and release the connection, whatever happens."""
        try:
            body = await _read_capped(response, limit)
        except httpx.HTTPError as exc:
            await close_response(response)
            raise translate_httpx_error(exc) from exc
        except BaseException:
            await close_response(response)
            raise
        try:
            await response.aclose()  # the body is read: releasing is cheap and needs no shield
        except BaseException:
            await close_response(response)
            raise
        return body


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The whole body, or ResponseTooLargeError having taken at most ``limit`` bytes and one read of it."""
    try:
        body = response.content  # a response built with its body (httpx.MockTransport) has nothing to read
    except httpx.ResponseNotRead:
        pass
    else:
        if len(body) > limit:
            raise ResponseTooLargeError.past(status=response.status_code, limit=limit)
        return body
    length = response.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ResponseTooLargeError.past(status=response.status_code, limit=limit)  # refused before reading any
    # httpx types it as an iterator; it is an async generator, closed by collect_capped.
    return await collect_capped(cast(AsyncGenerator[bytes, None], response.aiter_raw()), limit, response.status_code)


_botocore_signing = contextvars.ContextVar("_botocore_signing", default=False)


class _HideSigningDetails(logging.Filter):
    """botocore.auth logs the canonical request (session token included) and the signature at DEBUG.

    While *our* call to ``add_auth`` runs (a context variable says so) those records are dropped;
    everyone else's botocore logging is untouched.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_botocore_signing.get() and record.levelno <= logging.DEBUG)


_HIDE_SIGNING_DETAILS = _HideSigningDetails()

#: The running attempt's scrubber (None outside our requests): a context variable, so each task sees its own.
_ATTEMPT_SCRUBBER: contextvars.ContextVar[Scrubber | None] = contextvars.ContextVar("_ATTEMPT_SCRUBBER", default=None)

#: The loggers whose DEBUG records may quote headers: httpcore's and httpcore2's return values (the
#: response headers, which a server may echo a credential into), and hpack's encoded/decoded headers.
_HEADER_LOGGERS = (
    *(f"{package}.{module}" for package in ("httpcore", "httpcore2") for module in ("http11", "http2", "connection")),
    "httpcore.proxy",
    "httpcore2.proxy",
    "hpack.hpack",
    "hpack.table",
)


class _ScrubHeaderRecords(logging.Filter):
    """Masks the running attempt's credentials in a header-quoting library's log records.

    The records are kept (they are what DEBUG logging is for) with the secret replaced. Outside our
    requests, or when nothing matches, the record is untouched; the filter only runs for records a
    logger emits, so logging above DEBUG costs nothing.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = _ATTEMPT_SCRUBBER.get()
        if scrub is not None:
            message = record.getMessage()
            cleaned = scrub(message)
            if cleaned != message:
                record.msg, record.args = cleaned, ()
        return True


_SCRUB_HEADER_RECORDS = _ScrubHeaderRecords()


def _install_header_log_filter() -> None:
    """Idempotent; on each logger, because a logger's filters do not apply to its children's records."""
    for name in _HEADER_LOGGERS:
        header_logger = logging.getLogger(name)
        if _SCRUB_HEADER_RECORDS not in header_logger.filters:
            header_logger.addFilter(_SCRUB_HEADER_RECORDS)


def _botocore_signer(endpoint: Endpoint, region: str, service: str) -> Signer:
    """Sign with botocore's own SigV4Auth (for users who want the reference implementation)."""
    # botocore is slow to import: loaded on first use (start-up time)
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    botocore_auth_logger = logging.getLogger("botocore.auth")
    if _HIDE_SIGNING_DETAILS not in botocore_auth_logger.filters:
        botocore_auth_logger.addFilter(_HIDE_SIGNING_DETAILS)

    def signed(
        method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes, creds: AwsCredentials
    ) -> list[tuple[str, str]]:
        url = str(endpoint.url.copy_with(raw_path=path.encode("ascii")))
        request = AWSRequest(method, url, data=body, headers=dict(headers))
        token = _botocore_signing.set(True)
        try:
            SigV4Auth(Credentials(creds.access_key, creds.secret_key, creds.session_token), service, region).add_auth(
                request
            )
        finally:
            _botocore_signing.reset(token)
        wanted = ("authorization", "x-amz-date", "x-amz-security-token")
        return [(name.lower(), value) for name, value in request.headers.items() if name.lower() in wanted]

    def sign(
        method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes, creds: AwsCredentials
    ) -> list[tuple[str, str]]:
        try:
            return signed(method, path, headers, body, creds)
        except Exception as exc:
            # botocore's frames (and ours above) hold its Credentials and the signed request: drop them.
            raise exc.with_traceback(None)  # noqa: B904 (the same exception, re-raised)

    return sign
