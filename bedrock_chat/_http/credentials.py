"""Where signing credentials (and a default region) come from, resolved without blocking the event loop.

Explicit keys are used as given. Otherwise botocore's default chain (environment, shared
config/credentials files and profiles, SSO, container and instance metadata, web identity) is
consulted -- in a worker thread, because every one of those may touch files or the network -- and
temporary credentials are refreshed there too, ahead of their expiry. Concurrent requests that find the
credentials missing or stale wait on one refresh (single flight) instead of starting one each.
botocore is imported only here and only when the chain is actually needed: ``import bedrock_chat``
stays cheap.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.to_thread

from .._errors import CredentialsError, drop_tracebacks
from .._types import AwsCredentials
from .loops import PerLoop

__all__ = ["BotocoreCredentialSource", "CredentialSource", "StaticCredentialSource"]

#: Resolutions at DEBUG: the method botocore names (``env``, ``sso``, ``assume-role``...), never a key.
_log = logging.getLogger(__name__)

#: Refresh temporary credentials this many seconds before they expire (botocore's mandatory window).
REFRESH_MARGIN = 10 * 60.0


class CredentialSource(Protocol):
    """What the transport asks for credentials before signing each attempt."""

    async def get(self) -> AwsCredentials:
        """Current credentials, refreshed first if they are about to expire."""
        ...

    async def invalidate(self, stale: AwsCredentials) -> None:
        """The service called ``stale`` expired: resolve again (once, however many callers report it)."""
        ...


class StaticCredentialSource:
    """Credentials passed explicitly to the client; nothing to refresh."""

    def __init__(self, credentials: AwsCredentials) -> None:
        self._credentials = credentials

    async def get(self) -> AwsCredentials:
        """The explicit credentials."""
        return self._credentials

    async def invalidate(self, stale: AwsCredentials) -> None:
        """Explicit credentials cannot be re-resolved; the caller's ExpiredTokenError propagates."""


def _to_timestamp(value: object) -> float | None:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    return None


class BotocoreCredentialSource:
    """botocore's default credential chain, run in a worker thread, refreshed with single flight.

    ``clock`` is injectable so tests can move time; ``session_factory`` so tests can stand in for
    botocore's session (its default is ``botocore.session.Session``).
    """

    def __init__(
        self,
        profile: str | None = None,
        *,
        refresh_margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
        session_factory: Callable[[str | None], Any] | None = None,
    ) -> None:
        self._profile = profile
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._session_factory = session_factory or _botocore_session
        self._session: Any = None
        self._botocore_credentials: Any = None
        self._current: AwsCredentials | None = None
        self._lock = PerLoop(anyio.Lock)  # a client may outlive its event loop: one lock per loop
        # Bumped after every resolution attempt; with the last failure, lets the callers that waited
        # on a failed resolution share its outcome instead of each running the chain again in turn.
        self._attempts = 0
        self._last_error: CredentialsError | None = None
        #: How many times the chain was consulted (a test hook for single-flight checks).
        self.resolutions = 0

    def _fresh(self, credentials: AwsCredentials | None) -> bool:
        if credentials is None:
            return False
        return credentials.expiry is None or credentials.expiry - self._clock() > self._refresh_margin

    async def get(self) -> AwsCredentials:
        """Cached credentials on the fast path; otherwise one resolution in a worker thread."""
        current = self._current
        if current is not None and self._fresh(current):
            return current
        attempts_seen = self._attempts
        async with self._lock.get():
            if self._current is not None and self._fresh(self._current):
                return self._current
            failure = self._last_error
            if failure is not None and self._attempts != attempts_seen:
                raise CredentialsError(failure.message) from failure
            self._last_error = None
            try:
                self._current = await anyio.to_thread.run_sync(self._resolve, abandon_on_cancel=False)
            except CredentialsError as exc:
                self._last_error = exc
                raise
            finally:
                self._attempts += 1
            return self._current

    async def invalidate(self, stale: AwsCredentials) -> None:
        """Drop ``stale`` so the next :meth:`get` re-runs the chain; later reports of it are no-ops."""
        async with self._lock.get():
            if self._current is stale:
                self._current = None
                self._botocore_credentials = None
                self._session = None

    async def region(self) -> str | None:
        """The profile's configured region (shared config files), looked up off the event loop."""
        return await anyio.to_thread.run_sync(self._region)

    def _get_session(self) -> Any:
        if self._session is None:
            self._session = self._session_factory(self._profile)
        return self._session

    def _region(self) -> str | None:
        try:
            region = self._get_session().get_config_variable("region")
        except Exception as exc:  # botocore raises many types for broken config files
            raise CredentialsError(
                f"could not read the AWS configuration: {type(exc).__name__}: {exc}"
            ) from drop_tracebacks(exc)  # botocore's frames hold the parsed files, secret keys included
        return region if isinstance(region, str) and region else None

    def _resolve(self) -> AwsCredentials:
        """Runs in a worker thread: may read files, call SSO/STS/IMDS, and refresh."""
        self.resolutions += 1
        try:
            if self._botocore_credentials is None:
                self._botocore_credentials = self._get_session().get_credentials()
            credentials = self._botocore_credentials
            if credentials is None:
                raise CredentialsError(
                    "no AWS credentials found: pass access_key/secret_key, set AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY, or configure a profile (aws configure / aws sso login)"
                )
            # Not bound to a local here: botocore's frozen credentials are a namedtuple whose repr shows the
            # secret, and this frame is in the traceback of the error raised below.
            resolved = _from_frozen(credentials.get_frozen_credentials(), credentials)
        except CredentialsError:
            raise
        except Exception as exc:  # botocore's chain raises many unrelated types
            profile = f" (profile {self._profile!r})" if self._profile else ""
            raise CredentialsError(
                f"resolving AWS credentials{profile} failed: {type(exc).__name__}: {exc}"
            ) from drop_tracebacks(exc)  # botocore's frames hold what it resolved or refreshed
        if resolved is None:
            raise CredentialsError("the AWS credential chain returned incomplete credentials")
        _log.debug(
            "credentials resolved by botocore's chain (%s)%s",
            getattr(credentials, "method", None) or "unknown method",
            "" if resolved.expiry is None else f", expiring in {resolved.expiry - self._clock():.0f} s",
        )
        return resolved


def _from_frozen(frozen: Any, credentials: Any) -> AwsCredentials | None:
    """botocore's frozen credentials as ours; None when the key or the secret is missing."""
    if not frozen.access_key or not frozen.secret_key:
        return None
    return AwsCredentials(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token or None,
        expiry=_to_timestamp(getattr(credentials, "_expiry_time", None)),
    )


def _botocore_session(profile: str | None) -> Any:
    # botocore is slow to import: loaded on first use (start-up time)
    import botocore.exceptions
    import botocore.session

    try:
        return botocore.session.Session(profile=profile)
    except botocore.exceptions.ProfileNotFound as exc:
        raise CredentialsError(
            f"the AWS profile {profile!r} was not found in the shared config files"
        ) from drop_tracebacks(exc)
