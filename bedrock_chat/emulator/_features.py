"""The emulator's own table of per-model request features: cache floors, the 1-hour TTL, effort,
structured outputs, thinking and the ``anthropic_version`` values a model takes.

Written from ``shared/CLAUDE_REQUEST_FEATURES_2026.md`` (the "spec") and the public docs it cites, never
from the client's registry: the emulator is a second opinion. Rows are keyed by the base id of the
emulator's own model table (``_models``), which reads profiles, aliases and ARNs; a test checks that every
Messages model it serves has a row. Every value says where it comes from; **UNVERIFIED** marks values the
spec itself marks so, or that fill a gap in it (then the guess is named).

``anthropic_version`` (issue #15, item 7), decided from the spec's "API version" paragraph and Anthropic's
legacy Bedrock page ([A2] in BEDROCK_MESSAGES_ENDPOINT.md): ``bedrock-2023-05-31`` is accepted by every
model on InvokeModel. An Anthropic API date (``YYYY-MM-DD``, the current SDK sends ``2026-10-21``) is a
400 for the ARN-versioned (dated) models -- every model up to Opus 4.6 and Sonnet 4.6 -- and accepted by
the 2026 generation, which has no ARN-versioned id ([A2]: Opus 4.7 is left out of the legacy table for
that reason). Which models accept it is UNVERIFIED in the spec; Haiku 4.5, the one older model the
Messages endpoint serves ([A1]), is counted with the 2026 generation (UNVERIFIED).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ._models import ModelRef

__all__ = ["EFFORT_LEVELS", "FEATURES", "LEGACY", "UNKNOWN", "ModelFeatures", "features_for"]

#: ``output_config.effort`` values (spec, "Effort and thinking"; ``xhigh`` from platform.claude.com
#: ``build-with-claude/effort``, which also says which models take ``max`` and ``xhigh``).
EFFORT_LEVELS: tuple[str, ...] = ("low", "medium", "high", "xhigh", "max")
_BASE_EFFORT = frozenset({"low", "medium", "high"})  # Opus 4.5 (effort doc: before max and xhigh)
_ALL_EFFORT = _BASE_EFFORT | {"max"}  # effort doc: Opus 4.6, Sonnet 4.6, Mythos Preview
_XHIGH_EFFORT = _ALL_EFFORT | {"xhigh"}  # effort doc: Opus 4.7, 4.8, 5, Sonnet 5, Fable 5, Mythos 5


@attrs.frozen
class ModelFeatures:
    """What one model accepts, as the emulator enforces it.

    ``cache_floor``: the minimum prefix (tokens) a cache breakpoint needs; below it nothing is cached and
    no error is raised. ``ttl_1h``: ``cache_control.ttl = "1h"`` accepted. ``effort``: the accepted
    ``output_config.effort`` values (empty: the field is a 400). ``structured_outputs``:
    ``output_config.format`` and strict tools accepted. ``thinking``: accepted ``thinking.type`` values
    (empty: a 400). ``api_dates``: an Anthropic API date accepted as ``anthropic_version``.
    """

    cache_floor: int = 1024
    ttl_1h: bool = False
    effort: frozenset[str] = frozenset()
    structured_outputs: bool = False
    thinking: frozenset[str] = frozenset()
    api_dates: bool = False


_BUDGETED = frozenset({"enabled", "disabled"})
_BOTH = frozenset({"enabled", "adaptive", "disabled"})
_ADAPTIVE = frozenset({"adaptive", "disabled"})


def _gen_2026(floor: int, **extra: object) -> ModelFeatures:
    """A 2026 model: 1h TTL (spec: "Opus 4.5+, Sonnet 4.5+, Haiku 4.5+"), effort (spec: "the 5.x
    generation"; Opus 4.7/4.8 as "Opus 4.5+"), structured outputs (UNVERIFIED per model: "support
    varies"), adaptive thinking only (spec: "Opus 4.7+ accept only this"), API dates ([A2])."""
    values: dict[str, object] = {
        "cache_floor": floor,
        "ttl_1h": True,
        "effort": _XHIGH_EFFORT,
        "structured_outputs": True,
        "thinking": _ADAPTIVE,
        "api_dates": True,
    }
    values.update(extra)
    return ModelFeatures(**values)  # type: ignore[arg-type]


#: base model id -> features. Cache floors: the spec's "Published minimums (UNVERIFIED, third-party)".
FEATURES: Mapping[str, ModelFeatures] = {
    # Claude 3 / 3.5: no thinking, effort or structured outputs (spec lists none for them). Floors:
    # Haiku 3/3.5 2,048 (spec); Sonnet/Opus 3 and 3.5 Sonnet 1,024 (UNVERIFIED: the spec's default tier).
    "anthropic.claude-3-sonnet-20240229-v1:0": ModelFeatures(),
    "anthropic.claude-3-haiku-20240307-v1:0": ModelFeatures(cache_floor=2048),
    "anthropic.claude-3-opus-20240229-v1:0": ModelFeatures(),
    "anthropic.claude-3-5-sonnet-20240620-v1:0": ModelFeatures(),
    "anthropic.claude-3-5-sonnet-20241022-v2:0": ModelFeatures(),
    "anthropic.claude-3-5-haiku-20241022-v1:0": ModelFeatures(cache_floor=2048),
    # 3.7 Sonnet, Sonnet 4, Opus 4: 1,024 (spec); budgeted thinking (spec: "enabled ... (older)").
    "anthropic.claude-3-7-sonnet-20250219-v1:0": ModelFeatures(thinking=_BUDGETED),
    "anthropic.claude-sonnet-4-20250514-v1:0": ModelFeatures(thinking=_BUDGETED),  # floor UNVERIFIED
    "anthropic.claude-opus-4-20250514-v1:0": ModelFeatures(thinking=_BUDGETED),
    # Opus 4.1: 1,024 (spec); no structured outputs (the structured-outputs doc's GA list on Amazon Bedrock:
    # Opus 4.6, Sonnet 4.6, Sonnet 4.5, Opus 4.5, Haiku 4.5; Opus 4.1 had it in the API's beta only).
    "anthropic.claude-opus-4-1-20250805-v1:0": ModelFeatures(thinking=_BUDGETED),
    # Sonnet 4.5: 1,024, 1h TTL (spec); structured outputs UNVERIFIED.
    "anthropic.claude-sonnet-4-5-20250929-v1:0": ModelFeatures(
        ttl_1h=True, thinking=_BUDGETED, structured_outputs=True
    ),
    # Haiku 4.5: 4,096, 1h TTL (spec); no effort (spec: Haiku 5.5 is the first Haiku with it).
    "anthropic.claude-haiku-4-5-20251001-v1:0": ModelFeatures(
        cache_floor=4096, ttl_1h=True, thinking=_BUDGETED, structured_outputs=True, api_dates=True
    ),
    # Opus 4.5: 4,096, 1h TTL, effort (spec: "Opus 4.5+"; the effort doc: low, medium and high only).
    "anthropic.claude-opus-4-5-20251101-v1:0": ModelFeatures(
        cache_floor=4096, ttl_1h=True, effort=_BASE_EFFORT, thinking=_BUDGETED, structured_outputs=True
    ),
    # Opus 4.6: 4,096 (spec); enabled and adaptive thinking (UNVERIFIED: adaptive arrived with 4.6).
    "anthropic.claude-opus-4-6-v1": ModelFeatures(
        cache_floor=4096, ttl_1h=True, effort=_ALL_EFFORT, thinking=_BOTH, structured_outputs=True
    ),
    # Sonnet 4.6: 1,024 (spec); effort up to max (the effort doc lists it; the spec named Opus 4.5+ and 5.x only).
    "anthropic.claude-sonnet-4-6": ModelFeatures(
        ttl_1h=True, effort=_ALL_EFFORT, thinking=_BOTH, structured_outputs=True
    ),
    # The 2026 generation. Floors: Opus 4.7 2,048; Opus 4.8 and Sonnet 5 1,024; Opus 5, Fable 5 and
    # Mythos 5 512 (spec). Their .1/.5 successors and Mythos Preview are not in the spec's list
    # (UNVERIFIED: taken as their family's floor).
    "anthropic.claude-opus-4-7": _gen_2026(2048),
    "anthropic.claude-opus-4-8": _gen_2026(1024),
    "anthropic.claude-mythos-preview": _gen_2026(512, effort=_ALL_EFFORT),  # effort doc: max, not xhigh
    "anthropic.claude-opus-5": _gen_2026(512),
    "anthropic.claude-sonnet-5": _gen_2026(1024),
    "anthropic.claude-fable-5": _gen_2026(512),
    "anthropic.claude-fable-5-1": _gen_2026(512),
    "anthropic.claude-mythos-5": _gen_2026(512),
    "anthropic.claude-mythos-5-1": _gen_2026(512),
    "anthropic.claude-opus-5-5": _gen_2026(512),
    # Sonnet 5.5 adds {"type": "between_tools"} (spec, third-party).
    "anthropic.claude-sonnet-5-5": _gen_2026(1024, thinking=_ADAPTIVE | {"between_tools"}),
    # Haiku 5.5: the first Haiku with effort (spec).
    "anthropic.claude-haiku-5-5": _gen_2026(1024),
}

#: What a model the table does not know gets (application-profile and provisioned-model ARNs, whose
#: model the emulator cannot know): everything accepted, the spec's default floor, so that the emulator
#: never refuses what a newer model may take (UNVERIFIED by nature).
UNKNOWN = ModelFeatures(ttl_1h=True, effort=_XHIGH_EFFORT, structured_outputs=True, thinking=_BOTH, api_dates=True)
#: A served model without a row: the text-completion era (Claude 1, Instant, 2.x), none of the features.
LEGACY = ModelFeatures()


def features_for(model: ModelRef) -> ModelFeatures:
    """The row of a served model (``_models``' reading of the id: profiles, aliases and ARNs peeled off)."""
    if model.model is None:
        return UNKNOWN
    return FEATURES.get(model.model.id, LEGACY)
