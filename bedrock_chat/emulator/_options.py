"""Everything that shapes the emulator's answers, as one frozen value.

An emulator reads its options once per request, so a test (or the pytest fixture) can swap them
between requests by assigning ``emu.options = attrs.evolve(emu.options, ...)``; one attribute
assignment is atomic, which keeps this safe when the server runs in another thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from ._faults import Faults
from ._job_options import JobOptions
from ._quota import Quota

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_MESSAGES_SIGNING_NAMES",
    "DEFAULT_REGION",
    "DEFAULT_SECRET_KEY",
    "EmulatorOptions",
]

#: AWS's documentation example keys: recognisably fake, and what an emulator accepts by default.
DEFAULT_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
DEFAULT_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DEFAULT_REGION = "us-east-1"
#: SigV4 service names accepted on ``/anthropic/v1/messages`` by default.
DEFAULT_MESSAGES_SIGNING_NAMES: frozenset[str] = frozenset({"bedrock", "bedrock-mantle"})


def _positive_or_none(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 or None, got {value!r}")


def _non_negative_or_none(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0 or None, got {value!r}")


def _signing_names(_instance: object, attribute: attrs.Attribute[frozenset[str]], value: frozenset[str]) -> None:
    if not isinstance(value, frozenset) or not value or not all(isinstance(n, str) and n for n in value):
        raise ValueError(f"{attribute.name} must be a non-empty frozenset of service names, got {value!r}")


@attrs.frozen(kw_only=True)
class EmulatorOptions:
    """How an emulator authenticates, answers and fails.

    Args:
        region: the region requests must be signed for (credential scope).
        access_key, secret_key, session_token: the one set of credentials accepted. With a
            session token, requests must carry ``X-Amz-Security-Token`` equal to it.
        api_key: a Bedrock API key accepted as ``Authorization: Bearer <key>`` (and, on
            ``/anthropic/v1/messages``, as ``x-api-key: <key>``); None: API keys are refused.
        messages_signing_names: the SigV4 service names accepted in the credential scope of
            ``/anthropic/v1/messages`` requests. The default takes both ``bedrock`` (bedrock-runtime's
            signing name, which this project's client uses) and ``bedrock-mantle`` (what the anthropic
            SDK's ``AnthropicBedrockMantle`` signs); the InvokeModel routes always want ``bedrock``.
        verify_signatures: False accepts any request without looking at its authentication
            (for benchmarks).
        seed: seeds the fake model's words (see ``_fake_model``).
        reply_tokens: the natural reply length in tokens (None: echo plus 8-24 words). Replies are
            always cut at the request's max tokens, so a large value gives exactly max tokens.
        chunk_tokens: tokens per streamed text chunk (None: 1-3, seeded).
        faults: random faults and delays.
        quota: requests- and tokens-per-minute buckets that throttle when empty (``_quota``; off by default).
        clock: the emulator's wall clock (POSIX seconds), against which ``X-Amz-Date`` is checked.
        cache_clock: the clock (seconds) prompt-cache TTLs run on (``_cache``); a test passes its own
            to expire entries without waiting (apart from ``clock``, so signatures stay valid).
        stream_padding: InvokeModel stream chunks carry Bedrock's ``"p"`` padding next to ``bytes``
            (a prefix of ``a-zA-Z0-9`` of seeded random length), as real streams do; False: none.
        jobs: batch inference jobs' S3 endpoint, pace and injected record failures (``_job_options``).
    """

    region: str = DEFAULT_REGION
    access_key: str = DEFAULT_ACCESS_KEY
    secret_key: str = attrs.field(default=DEFAULT_SECRET_KEY, repr=False)
    session_token: str | None = attrs.field(default=None, repr=False)
    api_key: str | None = attrs.field(default=None, repr=False)
    messages_signing_names: frozenset[str] = attrs.field(
        default=DEFAULT_MESSAGES_SIGNING_NAMES, validator=_signing_names
    )
    verify_signatures: bool = True
    seed: int = 0
    reply_tokens: int | None = attrs.field(default=None, validator=_non_negative_or_none)
    chunk_tokens: int | None = attrs.field(default=None, validator=_positive_or_none)
    faults: Faults = attrs.field(factory=Faults)
    quota: Quota = attrs.field(factory=Quota)
    clock: Callable[[], float] = attrs.field(default=time.time, eq=False, repr=False)
    cache_clock: Callable[[], float] = attrs.field(default=time.monotonic, eq=False, repr=False)
    stream_padding: bool = True
    jobs: JobOptions = attrs.field(factory=JobOptions)
