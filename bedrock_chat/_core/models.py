"""The registry of Claude models on Bedrock: which API each speaks, where it is served, its limits.

Theory of operation: a caller may name a model in many forms -- a base id
(``anthropic.claude-v2:1``), a cross-region inference-profile id (``us.anthropic...``), an undated alias
(``anthropic.claude-haiku-4-5``) or an ARN (foundation-model, inference-profile, application profile,
provisioned model, ...). :func:`resolve_model` peels the ARN and the profile prefix off, finds the base
model when it can, and returns a :class:`ResolvedModel` that keeps the id exactly as given (that is what
goes on the wire) next to what the registry knows. An id it does not know still works: it is treated
as a Messages-API model on InvokeModel with unchecked limits, because every model Bedrock has added since
2024 speaks Messages.

Facts come from ``shared/CLAUDE_MODELS.md`` and ``shared/CLAUDE_REQUEST_FEATURES_2026.md``. Where sources
conflict on a limit, the registry keeps the *larger* value: the service is the final judge, and a
client-side limit that is too tight would refuse requests the service accepts. For the same reason a
feature the sources leave open for a model of a generation that has it (effort, the 1-hour cache TTL,
structured outputs) is marked supported, with "UNVERIFIED" beside it.

Request features, with their sources (the keys of ``CLAUDE_MODELS.md`` plus):

- **CACHE** (cache floors, ``cache_min_tokens``): the third-party list in ``CLAUDE_REQUEST_FEATURES_2026.md``
  (UNVERIFIED there), cross-checked with docs.litellm.ai ``completion/prompt_caching`` (Bedrock rows) and
  docs.orq.ai ``proxy/prompt-caching``. Where they disagree the larger floor is kept: the floor only feeds
  :class:`~bedrock_chat.CacheBreakpointWarning`, which fires only when the reply shows nothing was cached.
  ``None``: no published floor, so no warning.
- **TTL1H** (``cache_ttl_1h``): "1 hour on Opus 4.5+, Sonnet 4.5+, Haiku 4.5+" (``CLAUDE_REQUEST_FEATURES_2026.md``).
- **EFFORT** (``effort_levels``): platform.claude.com ``build-with-claude/effort`` (models, and which take
  ``max`` and ``xhigh``); the 5.1 and 5.5 models from ``CLAUDE_REQUEST_FEATURES_2026.md`` ("the 5.x
  generation; Haiku 5.5 is the first Haiku with effort"), UNVERIFIED per model.
- **SO** (``structured_outputs``): platform.claude.com ``build-with-claude/structured-outputs`` ("GA on the
  Claude API and Amazon Bedrock for Opus 4.6, Sonnet 4.6, Sonnet 4.5, Opus 4.5 and Haiku 4.5") and AWS
  ``claude-messages-structured-outputs`` ("Sonnet, Opus, Haiku, Fable, and Mythos families; support varies
  by model and endpoint"): the 2026 models are UNVERIFIED per model.

Claude Fable 5.2 and Mythos 5.2 have a system card but no Bedrock model id in any source
(``CLAUDE_MODELS.md``), so they are not listed: an id is not invented. When one appears it works as an
unknown model (Messages API, limits unchecked); pass ``surface="messages-endpoint"`` if it is served there.
"""

from __future__ import annotations

import enum
import functools
import re

import attrs

from .._errors import InvalidRequestError

__all__ = [
    "EFFORT_LEVELS",
    "MODELS",
    "ModelApi",
    "ModelInfo",
    "ResolvedModel",
    "SamplingRule",
    "Surface",
    "resolve_model",
]


class ModelApi(enum.StrEnum):
    """The request/response body a model speaks."""

    TEXT_COMPLETIONS = "text-completions"
    MESSAGES = "messages"


class Surface(enum.StrEnum):
    """The bedrock-runtime endpoint that serves a model."""

    INVOKE = "invoke"  # /model/{id}/invoke and /invoke-with-response-stream (AWS event stream)
    MESSAGES_ENDPOINT = "messages-endpoint"  # /anthropic/v1/messages (model in the body, SSE)


_INVOKE = frozenset({Surface.INVOKE})
_BOTH = frozenset({Surface.INVOKE, Surface.MESSAGES_ENDPOINT})
_MESSAGES_ENDPOINT = frozenset({Surface.MESSAGES_ENDPOINT})


class SamplingRule(enum.StrEnum):
    """Which sampling parameters a model accepts (sent values only; unset ones are never sent)."""

    ANY = "any"
    #: Sonnet 4.5, Haiku 4.5, Opus 4.1 and later 4.x answer 400 to temperature and top_p together.
    TEMPERATURE_OR_TOP_P = "temperature-or-top-p"
    #: Sonnet 5 and the 5.5 generation refuse non-default temperature, top_p and top_k.
    DEFAULTS_ONLY = "defaults-only"


_NO_THINKING: frozenset[str] = frozenset()
_BUDGETED = frozenset({"enabled", "disabled"})
_BUDGETED_OR_ADAPTIVE = frozenset({"enabled", "adaptive", "disabled"})
_ADAPTIVE = frozenset({"adaptive", "disabled"})

#: ``output_config.effort`` values (EFFORT): Opus 4.5 has three, ``max`` came with Opus 4.6, ``xhigh`` with 4.7.
EFFORT_LEVELS: tuple[str, ...] = ("low", "medium", "high", "xhigh", "max")
_NO_EFFORT: frozenset[str] = frozenset()
_EFFORT_3 = frozenset({"low", "medium", "high"})
_EFFORT_MAX = _EFFORT_3 | {"max"}
_EFFORT_XHIGH = _EFFORT_MAX | {"xhigh"}


@attrs.frozen
class ModelInfo:
    """What the registry knows about one base model.

    ``surfaces`` are the endpoints that serve it and ``preferred_surface`` the one ``create`` uses
    unless told otherwise; ``sampling`` and ``thinking_types`` are the request rules the registry
    checks before any I/O (``thinking_types`` empty: the model has no extended thinking).

    Request features (sources in the module docstring): ``cache_min_tokens`` is the shortest prefix a
    cache breakpoint caches (below it Bedrock silently caches nothing; ``None``: not published);
    ``cache_ttl_1h`` says whether ``cache_control.ttl`` may be ``"1h"``; ``effort_levels`` are the
    ``output_config.effort`` values it takes (empty: no effort); ``structured_outputs`` says whether it
    takes ``output_config.format`` and ``"strict"`` tools.
    """

    id: str
    name: str
    api: ModelApi
    max_output_tokens: int
    context_window: int
    surfaces: frozenset[Surface]
    preferred_surface: Surface
    aliases: tuple[str, ...] = ()
    sampling: SamplingRule = SamplingRule.ANY
    thinking_types: frozenset[str] = _NO_THINKING
    cache_min_tokens: int | None = None
    cache_ttl_1h: bool = False
    effort_levels: frozenset[str] = frozenset()
    structured_outputs: bool = False

    @property
    def default_surface(self) -> Surface:
        """The surface ``create`` uses for this model unless the caller forces one."""
        return self.preferred_surface


def _m(
    model_id: str,
    name: str,
    max_output: int,
    context: int,
    *,
    api: ModelApi = ModelApi.MESSAGES,
    surfaces: frozenset[Surface] = _INVOKE,
    preferred: Surface | None = None,
    aliases: tuple[str, ...] = (),
    sampling: SamplingRule = SamplingRule.ANY,
    thinking: frozenset[str] = _NO_THINKING,
    cache_min: int | None = None,
    ttl_1h: bool = False,
    effort: frozenset[str] = _NO_EFFORT,
    structured: bool = False,
) -> ModelInfo:
    if preferred is None:
        preferred = Surface.INVOKE if Surface.INVOKE in surfaces else Surface.MESSAGES_ENDPOINT
    return ModelInfo(
        model_id,
        name,
        api,
        max_output,
        context,
        surfaces,
        preferred,
        aliases,
        sampling,
        thinking,
        cache_min_tokens=cache_min,
        cache_ttl_1h=ttl_1h,
        effort_levels=effort,
        structured_outputs=structured,
    )


_TC = ModelApi.TEXT_COMPLETIONS
_EXCLUSIVE = SamplingRule.TEMPERATURE_OR_TOP_P
_DEFAULTS = SamplingRule.DEFAULTS_ONLY
_NEW = Surface.MESSAGES_ENDPOINT


def _new(
    model_id: str,
    name: str,
    *,
    sampling: SamplingRule = _EXCLUSIVE,
    both: bool = False,
    cache_min: int | None = None,
    effort: frozenset[str] = _EFFORT_XHIGH,
) -> ModelInfo:
    """A 2026 model: 1M context, 128K output, adaptive thinking, served on the Messages endpoint.

    The 1-hour TTL (TTL1H: "Opus/Sonnet/Haiku 4.5+"; Fable and Mythos UNVERIFIED) and structured
    outputs (SO: per model UNVERIFIED) are on for all of them.
    """
    return _m(
        model_id,
        name,
        128_000,
        1_000_000,
        surfaces=_BOTH if both else _MESSAGES_ENDPOINT,
        preferred=_NEW,
        sampling=sampling,
        thinking=_ADAPTIVE,
        cache_min=cache_min,
        ttl_1h=True,
        effort=effort,
        structured=True,
    )


#: Every Claude model Bedrock has offered, oldest first. Feature sources (CACHE, TTL1H, EFFORT, SO): module doc.
MODELS: tuple[ModelInfo, ...] = (
    # Text-completion models: max_tokens_to_sample is capped at 4,096 by the Text Completions API.
    # No content blocks, so no cache breakpoints, effort or structured outputs.
    _m("anthropic.claude-v1", "Claude 1", 4096, 100_000, api=_TC),
    _m("anthropic.claude-instant-v1", "Claude Instant 1.2", 4096, 100_000, api=_TC),
    _m("anthropic.claude-v2", "Claude 2.0", 4096, 100_000, api=_TC),
    _m("anthropic.claude-v2:1", "Claude 2.1", 4096, 200_000, api=_TC),
    _m("anthropic.claude-v2:1:18k", "Claude 2.1 (18K)", 4096, 18_000, api=_TC),
    _m("anthropic.claude-v2:1:200k", "Claude 2.1 (200K)", 4096, 200_000, api=_TC),
    # Claude 3 and later: the Messages API.
    _m("anthropic.claude-3-sonnet-20240229-v1:0", "Claude 3 Sonnet", 4096, 200_000),  # CACHE: no floor published
    _m("anthropic.claude-3-haiku-20240307-v1:0", "Claude 3 Haiku", 4096, 200_000, cache_min=2048),  # CACHE
    _m("anthropic.claude-3-opus-20240229-v1:0", "Claude 3 Opus", 4096, 200_000, cache_min=1024),  # CACHE (3.x rows)
    _m("anthropic.claude-3-5-sonnet-20240620-v1:0", "Claude 3.5 Sonnet", 4096, 200_000, cache_min=1024),  # CACHE
    _m("anthropic.claude-3-5-sonnet-20241022-v2:0", "Claude 3.5 Sonnet v2", 8192, 200_000, cache_min=1024),  # CACHE
    _m("anthropic.claude-3-5-haiku-20241022-v1:0", "Claude 3.5 Haiku", 8192, 200_000, cache_min=2048),  # CACHE
    # 3.7 Sonnet: LiteLLM says 8,192, Anthropic documents 64,000; the larger value wins (see module doc).
    _m(
        "anthropic.claude-3-7-sonnet-20250219-v1:0",
        "Claude 3.7 Sonnet",
        64_000,
        200_000,
        thinking=_BUDGETED,
        cache_min=1024,  # CACHE
    ),
    _m(
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "Claude Sonnet 4",
        64_000,
        200_000,
        thinking=_BUDGETED,
        cache_min=1024,  # CACHE: litellm/orq (the spec's list omits Sonnet 4)
    ),
    _m(
        "anthropic.claude-opus-4-20250514-v1:0",
        "Claude Opus 4",
        32_000,
        200_000,
        thinking=_BUDGETED,
        cache_min=1024,  # CACHE
    ),
    _m(
        "anthropic.claude-opus-4-1-20250805-v1:0",
        "Claude Opus 4.1",
        32_000,
        200_000,
        sampling=_EXCLUSIVE,
        thinking=_BUDGETED,
        cache_min=1024,  # CACHE
    ),
    _m(
        "anthropic.claude-sonnet-4-5-20250929-v1:0",
        "Claude Sonnet 4.5",
        64_000,
        200_000,
        sampling=_EXCLUSIVE,
        thinking=_BUDGETED,
        cache_min=1024,  # CACHE
        ttl_1h=True,  # TTL1H
        structured=True,  # SO
    ),
    # Haiku 4.5 is on both surfaces; its dated id is InvokeModel's, so that stays its default.
    _m(
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        "Claude Haiku 4.5",
        64_000,
        200_000,
        surfaces=_BOTH,
        aliases=("anthropic.claude-haiku-4-5",),
        sampling=_EXCLUSIVE,
        thinking=_BUDGETED,
        cache_min=4096,  # CACHE
        ttl_1h=True,  # TTL1H
        structured=True,  # SO; no effort (EFFORT: Haiku 5.5 is the first Haiku with it)
    ),
    _m(
        "anthropic.claude-opus-4-5-20251101-v1:0",
        "Claude Opus 4.5",
        64_000,
        200_000,
        sampling=_EXCLUSIVE,
        thinking=_BUDGETED,
        cache_min=4096,  # CACHE
        ttl_1h=True,  # TTL1H
        effort=_EFFORT_3,  # EFFORT: predates "max"
        structured=True,  # SO
    ),
    _m(
        "anthropic.claude-opus-4-6-v1",
        "Claude Opus 4.6",
        128_000,
        1_000_000,
        sampling=_EXCLUSIVE,
        thinking=_BUDGETED_OR_ADAPTIVE,
        cache_min=4096,  # CACHE
        ttl_1h=True,  # TTL1H
        effort=_EFFORT_MAX,  # EFFORT
        structured=True,  # SO
    ),
    # Sonnet 4.6: 64,000 (LiteLLM) vs 128K (Anthropic); the larger wins.
    _m(
        "anthropic.claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        128_000,
        1_000_000,
        sampling=_EXCLUSIVE,
        thinking=_BUDGETED_OR_ADAPTIVE,
        cache_min=2048,  # CACHE: 1,024 (spec list) vs 2,048 (orq); the larger is kept
        ttl_1h=True,  # TTL1H
        effort=_EFFORT_MAX,  # EFFORT
        structured=True,  # SO
    ),
    # 2026 models: the /anthropic/v1/messages endpoint (Opus 4.7 is on InvokeModel as well).
    # CACHE: 2,048 (spec list) vs 4,096 (litellm's Bedrock row) for Opus 4.7; the larger is kept.
    _new("anthropic.claude-opus-4-7", "Claude Opus 4.7", both=True, cache_min=4096),
    _new("anthropic.claude-opus-4-8", "Claude Opus 4.8", cache_min=1024),  # CACHE
    # Mythos Preview: EFFORT lists it with "max" but not "xhigh"; CACHE: no floor published.
    _new("anthropic.claude-mythos-preview", "Claude Mythos Preview", effort=_EFFORT_MAX),
    _new("anthropic.claude-opus-5", "Claude Opus 5", cache_min=512),  # CACHE
    _new("anthropic.claude-sonnet-5", "Claude Sonnet 5", sampling=_DEFAULTS, cache_min=1024),  # CACHE
    _new("anthropic.claude-fable-5", "Claude Fable 5", cache_min=512),  # CACHE
    # The 5.1 and 5.5 models: no published cache floor; EFFORT levels UNVERIFIED (those of the 5.0 models).
    _new("anthropic.claude-fable-5-1", "Claude Fable 5.1"),
    _new("anthropic.claude-mythos-5", "Claude Mythos 5", cache_min=512),  # CACHE
    _new("anthropic.claude-mythos-5-1", "Claude Mythos 5.1"),
    _new("anthropic.claude-opus-5-5", "Claude Opus 5.5", sampling=_DEFAULTS),
    _new("anthropic.claude-sonnet-5-5", "Claude Sonnet 5.5", sampling=_DEFAULTS),
    _new("anthropic.claude-haiku-5-5", "Claude Haiku 5.5", sampling=_DEFAULTS),
)

_BY_ID: dict[str, ModelInfo] = {}
for _info in MODELS:
    _BY_ID[_info.id] = _info
    for _alias in _info.aliases:
        _BY_ID[_alias] = _info
del _info, _alias

_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):bedrock:(?P<region>[a-z0-9-]*):(?P<account>\d{12})?:"
    r"(?P<kind>[a-z-]+)/(?P<resource>.+)$"
)
# Cross-region inference-profile prefixes: us., eu., apac., jp., au., global., us-gov., ... (any short region group).
_PROFILE = re.compile(r"^(?P<prefix>[a-z]{2,6}(?:-[a-z]{2,4})?)\.(?P<base>anthropic\..+)$")
# A trailing ":N" version or "-vN" on ids the registry lists without it (and vice versa).
_VERSION_SUFFIX = re.compile(r"(?::\d+)$")
# Model, profile and resource ids use these characters only: never "%", and "/" only inside an ARN.
_SAFE_RESOURCE = re.compile(r"[A-Za-z0-9._:/-]+")
_MODEL_ID_OK = re.compile(r"^[\x21-\x7e]{1,2048}$")


@attrs.frozen
class ResolvedModel:
    """A model id as the caller gave it, with what the registry knows about it.

    ``model_id`` is sent unchanged (an inference profile or ARN routes differently from its base
    model); ``info`` is None for models the registry does not know; ``arn_region`` is the region an
    ARN names, which the client must not silently override.
    """

    model_id: str
    info: ModelInfo | None
    arn_kind: str | None = None
    arn_region: str | None = None
    profile_prefix: str | None = None

    @property
    def api(self) -> ModelApi:
        """Unknown models are assumed to speak Messages (every model since Claude 3 does)."""
        return self.info.api if self.info is not None else ModelApi.MESSAGES

    @property
    def max_output_tokens(self) -> int | None:
        """None when unknown: the limit is left to the service."""
        return self.info.max_output_tokens if self.info is not None else None

    @property
    def display_name(self) -> str:
        """Human-readable name, or the id for unknown models."""
        return self.info.name if self.info is not None else self.model_id


def _lookup(base: str) -> ModelInfo | None:
    info = _BY_ID.get(base)
    if info is None:
        info = _BY_ID.get(_VERSION_SUFFIX.sub("", base))
    return info


def resolve_model(model_id: str) -> ResolvedModel:
    """Resolve any accepted form of a model id; raises InvalidRequestError for a malformed one."""
    if not isinstance(model_id, str):
        raise InvalidRequestError("model", f"must be a string, got {type(model_id).__name__}")
    return _resolve(model_id)


@functools.lru_cache(maxsize=512)
def _resolve(model_id: str) -> ResolvedModel:
    if not _MODEL_ID_OK.fullmatch(model_id):  # fullmatch: "$" would let a trailing newline through
        raise InvalidRequestError(
            "model", "must be 1 to 2048 printable ASCII characters without spaces (a Bedrock model id or ARN)"
        )
    arn_kind = arn_region = None
    base = model_id
    arn = _ARN.match(model_id)
    if arn is not None:
        arn_kind = arn["kind"]
        arn_region = arn["region"] or None
        base = arn["resource"] if arn_kind in ("foundation-model", "inference-profile") else ""
    elif model_id.startswith("arn:"):
        raise InvalidRequestError(
            "model", f"{model_id!r} is not a Bedrock ARN (arn:aws:bedrock:REGION:ACCOUNT:TYPE/ID)"
        )
    resource = arn["resource"] if arn is not None else model_id
    if (
        not _SAFE_RESOURCE.fullmatch(resource)
        or (arn is None and "/" in resource)
        or any(segment in (".", "..") for segment in resource.split("/"))
    ):
        # The id goes into the URL path: escapes and dot segments could address another operation.
        raise InvalidRequestError(
            "model", f"{model_id!r} is not a model id (letters, digits and '.', '-', '_', ':'; '/' only inside an ARN)"
        )
    profile_prefix = None
    profile = _PROFILE.match(base)
    if profile is not None:
        profile_prefix = profile["prefix"]
        base = profile["base"]
    info = _lookup(base) if base else None
    return ResolvedModel(model_id, info, arn_kind, arn_region, profile_prefix)
