"""Credentials: redaction, botocore's chain off the event loop, single flight, refresh and invalidation."""

from __future__ import annotations

import datetime
import json
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import anyio
import pytest

from bedrock_chat import AwsCredentials, CredentialsError
from bedrock_chat._http.credentials import BotocoreCredentialSource, StaticCredentialSource

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN+/="


# --------------------------------------------------------------------------------------------- redaction


def test_credentials_repr_hides_secrets() -> None:
    """repr and str show the access key id but never the secret key or the session token."""
    credentials = AwsCredentials("AKIDEXAMPLE", SECRET, TOKEN, expiry=1.0)
    for text in (repr(credentials), str(credentials), f"{credentials}", repr([credentials])):
        assert "AKIDEXAMPLE" in text
        assert SECRET not in text
        assert TOKEN not in text
    assert "session_token=<redacted>" in repr(credentials)
    assert "session_token" not in repr(AwsCredentials("AKIDEXAMPLE", SECRET))


@pytest.mark.asyncio
async def test_static_source_returns_the_given_keys() -> None:
    """Explicit keys are used as given, and invalidating them changes nothing."""
    credentials = AwsCredentials("AKIDEXAMPLE", SECRET)
    source = StaticCredentialSource(credentials)
    await source.invalidate(credentials)
    assert await source.get() is credentials
    assert SECRET not in repr(source)


# -------------------------------------------------------------------------------------- a fake botocore


class Frozen(NamedTuple):
    """What botocore's ``get_frozen_credentials`` returns."""

    access_key: str
    secret_key: str
    token: str | None


class FakeBotocoreCredentials:
    """Stands in for botocore's (Refreshable)Credentials."""

    def __init__(self, frozen: Frozen, expiry: datetime.datetime | None) -> None:
        self._frozen = frozen
        self._expiry_time = expiry

    def get_frozen_credentials(self) -> Frozen:
        """The current keys."""
        return self._frozen


class FakeChain:
    """A fake botocore session factory: counts calls, blocks for ``delay`` seconds, can fail or return nothing."""

    def __init__(self, *, delay: float = 0.0, expiry: datetime.datetime | None = None) -> None:
        self.delay = delay
        self.expiry = expiry
        self.fail: Exception | None = None
        self.empty = False
        self.incomplete = False
        self.region: object = "eu-west-3"
        self.sessions = 0
        self.calls = 0
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, profile: str | None) -> FakeChain.Session:
        with self._lock:
            self.sessions += 1
        return FakeChain.Session(self)

    class Session:
        """One botocore session."""

        def __init__(self, chain: FakeChain) -> None:
            self.chain = chain

        def get_credentials(self) -> FakeBotocoreCredentials | None:
            """Resolve, slowly: this is where botocore reads files and calls IMDS/SSO/STS."""
            chain = self.chain
            with chain._lock:
                chain.calls += 1
                number = chain.calls
                chain.threads.add(threading.get_ident())
            if chain.delay:
                time.sleep(chain.delay)  # simulates blocking I/O in the worker thread, not synchronisation
            if chain.fail is not None:
                raise chain.fail
            if chain.empty:
                return None
            if chain.incomplete:
                return FakeBotocoreCredentials(Frozen(f"AKID{number}", "", None), None)
            return FakeBotocoreCredentials(Frozen(f"AKID{number}", SECRET, TOKEN), chain.expiry)

        def get_config_variable(self, name: str) -> object:
            """The profile's region."""
            assert name == "region"
            if isinstance(self.chain.region, Exception):
                raise self.chain.region
            return self.chain.region


# ------------------------------------------------------------------------------------------- single flight


@pytest.mark.asyncio
async def test_single_flight_under_concurrency_without_blocking_the_loop() -> None:
    """200 concurrent get()s while the chain blocks 0.2 s: one resolution, in a worker thread, loop kept running."""
    chain = FakeChain(delay=0.2)
    source = BotocoreCredentialSource(session_factory=chain)
    results: list[AwsCredentials] = []
    gaps: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await anyio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def getter() -> None:
        results.append(await source.get())

    loop_thread = threading.get_ident()
    started = time.monotonic()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            async with anyio.create_task_group() as getters:
                for _ in range(200):
                    getters.start_soon(getter)
            done.set()
    assert time.monotonic() - started >= 0.2  # the resolution really did block for its 0.2 s
    assert (chain.calls, source.resolutions, len(results)) == (1, 1, 200)
    assert all(result is results[0] for result in results)
    assert loop_thread not in chain.threads
    assert len(gaps) > 5
    assert max(gaps) < 0.1  # a bound, not a measurement: a blocked loop would show a gap of >= 0.2 s


@pytest.mark.asyncio
async def test_a_failed_resolution_is_shared_by_its_waiters() -> None:
    """When the chain fails, the callers that waited on it all get the error; the chain is not rerun per caller."""
    chain = FakeChain(delay=0.2)
    chain.fail = RuntimeError("no route to IMDS")
    source = BotocoreCredentialSource(session_factory=chain)
    errors: list[BaseException] = []

    async def getter() -> None:
        try:
            await source.get()
        except CredentialsError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(getter)
    assert len(errors) == 200
    assert chain.calls == 1
    assert all("no route to IMDS" in str(error) for error in errors)


@pytest.mark.asyncio
async def test_a_later_call_retries_after_a_failure() -> None:
    """A failure is not cached forever: the next caller runs the chain again."""
    chain = FakeChain()
    chain.fail = RuntimeError("transient")
    source = BotocoreCredentialSource(session_factory=chain)
    with anyio.fail_after(5):
        with pytest.raises(CredentialsError):
            await source.get()
        chain.fail = None
        assert (await source.get()).access_key == "AKID2"
    assert chain.calls == 2


@pytest.mark.asyncio
async def test_cached_until_close_to_expiry() -> None:
    """Temporary credentials are reused until within the refresh margin of their expiry, then re-read.

    botocore's refreshable credentials object refreshes itself inside ``get_frozen_credentials``, so the
    session is kept and only that call is repeated (in the worker thread).
    """
    expiry = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    now = [expiry.timestamp() - 3600]
    chain = FakeChain(expiry=expiry)
    source = BotocoreCredentialSource(session_factory=chain, clock=lambda: now[0], refresh_margin=600)
    with anyio.fail_after(5):
        first = await source.get()
        assert first.expiry == expiry.timestamp()
        assert await source.get() is first
        now[0] = expiry.timestamp() - 599
        second = await source.get()
    assert second is not first
    assert (source.resolutions, chain.sessions) == (2, 1)


@pytest.mark.asyncio
async def test_naive_expiry_is_utc() -> None:
    """A timezone-less expiry from botocore is read as UTC."""
    chain = FakeChain(expiry=datetime.datetime(2030, 1, 1))
    source = BotocoreCredentialSource(session_factory=chain, clock=lambda: 0.0)
    with anyio.fail_after(5):
        credentials = await source.get()
    assert credentials.expiry == datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC).timestamp()


@pytest.mark.asyncio
async def test_invalidate_resolves_again_once() -> None:
    """Many callers reporting the same expired credentials cause one new resolution, with a fresh session."""
    chain = FakeChain()
    source = BotocoreCredentialSource(session_factory=chain)
    with anyio.fail_after(5):
        stale = await source.get()

        async def report_and_get() -> None:
            await source.invalidate(stale)
            assert (await source.get()) is not stale

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(report_and_get)
    assert (chain.calls, chain.sessions) == (2, 2)


@pytest.mark.asyncio
async def test_invalidating_other_credentials_is_a_no_op() -> None:
    """A report about credentials that are no longer current does not trigger another resolution."""
    chain = FakeChain()
    source = BotocoreCredentialSource(session_factory=chain)
    with anyio.fail_after(5):
        current = await source.get()
        await source.invalidate(AwsCredentials("OLD", "old"))
        assert await source.get() is current
    assert chain.calls == 1


# -------------------------------------------------------------------------------------------- failures


@pytest.mark.asyncio
async def test_no_credentials_is_a_clear_error() -> None:
    """A chain that finds nothing raises CredentialsError saying how to provide credentials."""
    chain = FakeChain()
    chain.empty = True
    with anyio.fail_after(5), pytest.raises(CredentialsError, match="no AWS credentials found"):
        await BotocoreCredentialSource(session_factory=chain).get()


@pytest.mark.asyncio
async def test_chain_errors_become_credentials_errors() -> None:
    """Whatever botocore raises becomes CredentialsError naming the profile, with the cause chained."""
    chain = FakeChain()
    chain.fail = KeyError("sso_start_url")
    with anyio.fail_after(5), pytest.raises(CredentialsError, match="profile 'dev'") as info:
        await BotocoreCredentialSource("dev", session_factory=chain).get()
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.asyncio
async def test_incomplete_credentials_are_refused() -> None:
    """A chain result without a secret key is an error, not an unsigned request later."""
    chain = FakeChain()
    chain.incomplete = True
    with anyio.fail_after(5), pytest.raises(CredentialsError, match="incomplete"):
        await BotocoreCredentialSource(session_factory=chain).get()


@pytest.mark.asyncio
async def test_profile_region_lookup() -> None:
    """The profile's region is read off the loop; none configured is None; a broken config is CredentialsError."""
    chain = FakeChain()
    source = BotocoreCredentialSource(session_factory=chain)
    with anyio.fail_after(5):
        assert await source.region() == "eu-west-3"
        chain.region = None
        assert await source.region() is None
        chain.region = ValueError("bad config")
        with pytest.raises(CredentialsError, match="bad config"):
            await source.region()


# ---------------------------------------------------------------------------------------- real botocore


@pytest.mark.asyncio
async def test_real_chain_reads_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's chain, unfaked, picks up AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    with anyio.fail_after(10):
        credentials = await BotocoreCredentialSource().get()
    assert (credentials.access_key, credentials.secret_key, credentials.session_token) == ("AKIDENV", SECRET, TOKEN)


@pytest.mark.asyncio
async def test_real_chain_reads_a_profile(aws_dir: Path) -> None:
    """A named profile's keys and region come from the shared files (the test's private copies)."""
    (aws_dir / "credentials").write_text(f"[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = {SECRET}\n")
    (aws_dir / "config").write_text("[profile dev]\nregion = ap-northeast-1\n")
    source = BotocoreCredentialSource("dev")
    with anyio.fail_after(10):
        assert (await source.get()).access_key == "AKIDDEV"
        assert await source.region() == "ap-northeast-1"


@pytest.mark.asyncio
async def test_real_chain_credential_process_expiry(aws_dir: Path) -> None:
    """Temporary credentials from a credential_process keep their expiry, so they are refreshed in time."""
    script = aws_dir / "creds.py"
    document = {
        "Version": 1,
        "AccessKeyId": "ASIAPROC",
        "SecretAccessKey": SECRET,
        "SessionToken": TOKEN,
        "Expiration": "2099-01-01T00:00:00Z",
    }
    script.write_text(f"print({json.dumps(json.dumps(document))})\n")
    (aws_dir / "config").write_text(f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    with anyio.fail_after(30):
        credentials = await BotocoreCredentialSource("proc").get()
    assert (credentials.access_key, credentials.session_token) == ("ASIAPROC", TOKEN)
    assert credentials.expiry == datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC).timestamp()


@pytest.mark.asyncio
async def test_real_chain_with_nothing_configured() -> None:
    """With no variables, files or metadata service, the chain reports that it found nothing."""
    with anyio.fail_after(30), pytest.raises(CredentialsError, match="no AWS credentials found"):
        await BotocoreCredentialSource().get()


@pytest.mark.asyncio
async def test_real_chain_unknown_profile() -> None:
    """A profile that does not exist is a CredentialsError naming it."""
    with anyio.fail_after(30), pytest.raises(CredentialsError, match="nope"):
        await BotocoreCredentialSource("nope").get()
