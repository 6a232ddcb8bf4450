"""The emulator's own table of what Bedrock serves, and its own reading of model ids, profiles and ARNs.

Theory of operation
-------------------
The emulator checks the client, so it must not take its facts from the client's registry
(``bedrock_chat._core.models``): a wrong entry there would be confirmed by the very code meant to catch
it. This table was written from ``shared/CLAUDE_MODELS.md`` (sources LL, A-BR, AWS-TC, AWS-MSG, BOTO,
named beside the values) and ``BEDROCK_MESSAGES_ENDPOINT.md`` ([A1], [A2], [W3]); a test
(``tests/emulator/test_tables_agree.py``) compares the two tables, so a disagreement fails one named test.

:func:`parse_model_id` reads a ``modelId`` (InvokeModel's path segment, or the Messages endpoint's
``model``) the way Bedrock is documented to, and says what the service would do with it:

- **served** (:class:`ModelRef`): a base id or alias in the table; a cross-region inference-profile id
  (a prefix in :data:`PROFILE_PREFIXES` before a base id); a foundation-model ARN (empty account field)
  or an inference-profile ARN (an account, and a profile id inside); an application-inference-profile
  or provisioned-model ARN, which route to a model the emulator cannot know (served as a Messages model
  with unchecked limits);
- **unknown** (404 ResourceNotFoundException): a well-formed id or ARN the table does not hold;
- **invalid** (400 ValidationException, "The provided model identifier is invalid."): anything else
  (a profile prefix Bedrock has not shown, a profile id in a foundation-model ARN, a base id in an
  inference-profile ARN, an ARN of a kind that is not a model).

Where the spec is ambiguous (each is noted at its value)
--------------------------------------------------------
- Per-model profile prefixes are "at least these" (CLAUDE_MODELS.md §2), so they are recorded
  (``profiles``) but not enforced: any prefix of :data:`PROFILE_PREFIXES` is served for any model.
- Claude Instant, 2.0 and 2.1 take both bodies (AWS-TC and AWS-MSG): ``apis`` holds both, and the
  Text Completions field ``max_tokens_to_sample`` is capped at :data:`TEXT_COMPLETIONS_MAX_TOKENS`
  whatever the model's own output limit (LL's 8,191).
- Conflicting limits take the larger value (a Bedrock stand-in that refuses what the service accepts
  would fail correct clients); each conflict is named beside its value.
- Which models answer on ``/anthropic/v1/messages``: [A1] names Fable 5.1, Fable 5, Opus 4.8, Sonnet 5,
  Opus 4.7 and Haiku 4.5; the rest of the 2026 generation is taken to follow them (UNVERIFIED). Only
  Opus 4.7 is documented on InvokeModel as well ([A2]); Haiku 4.5's dated id is InvokeModel's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping

import attrs

__all__ = [
    "PROFILE_PREFIXES",
    "SERVED_MODELS",
    "TEXT_COMPLETIONS_MAX_TOKENS",
    "Api",
    "ModelIdError",
    "ModelRef",
    "ServedModel",
    "Surface",
    "parse_model_id",
]


class Api(enum.StrEnum):
    """A request body Bedrock accepts for a model."""

    TEXT_COMPLETIONS = "text-completions"  # prompt + max_tokens_to_sample (AWS-TC)
    MESSAGES = "messages"  # anthropic_version + max_tokens + messages (AWS-MSG)


class Surface(enum.StrEnum):
    """The bedrock-runtime endpoint a model answers on."""

    INVOKE = "invoke"  # /model/{modelId}/invoke and /invoke-with-response-stream
    MESSAGES_ENDPOINT = "messages-endpoint"  # /anthropic/v1/messages


#: The Text Completions API's cap on ``max_tokens_to_sample``: "default 200, range 0 to 4096" (AWS-TC).
TEXT_COMPLETIONS_MAX_TOKENS = 4096

#: Cross-region inference-profile prefixes seen for Claude (CLAUDE_MODELS.md §2: LL and A-BR). No source
#: shows ``ca.`` or any other (UNVERIFIED that there are none).
PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "jp", "au", "global", "us-gov"})


@attrs.frozen
class ServedModel:
    """One base model as Bedrock serves it: bodies, endpoints, limits, aliases and confirmed profile prefixes."""

    id: str
    apis: frozenset[Api]
    surfaces: frozenset[Surface]
    max_output_tokens: int
    context_window: int
    aliases: tuple[str, ...] = ()
    profiles: frozenset[str] = frozenset()

    def max_tokens_for(self, api: Api) -> int:
        """The largest ``max_tokens`` (or ``max_tokens_to_sample``) this model takes in ``api``'s body."""
        if api is Api.TEXT_COMPLETIONS:
            return min(self.max_output_tokens, TEXT_COMPLETIONS_MAX_TOKENS)
        return self.max_output_tokens

    @property
    def anthropic_name(self) -> str:
        """The name a Messages body reports as ``model``: the id without ``anthropic.`` and its ``-vN:M`` version.

        Text-completion-era ids (``claude-v2:1``) keep their version: it is part of the name.
        """
        name = self.id.removeprefix("anthropic.")
        if Api.TEXT_COMPLETIONS in self.apis:
            return name
        return _ID_VERSION.sub("", name)


_ID_VERSION = re.compile(r"-v\d+(?::\d+)?$")

_TC = frozenset({Api.TEXT_COMPLETIONS})
_TC_MSG = frozenset({Api.TEXT_COMPLETIONS, Api.MESSAGES})
_MSG = frozenset({Api.MESSAGES})
_INVOKE = frozenset({Surface.INVOKE})
_ENDPOINT = frozenset({Surface.MESSAGES_ENDPOINT})
_BOTH = frozenset({Surface.INVOKE, Surface.MESSAGES_ENDPOINT})
_ALL = PROFILE_PREFIXES


def _p(*prefixes: str) -> frozenset[str]:
    return frozenset(prefixes)


def _legacy(model_id: str, max_output: int, context: int, profiles: frozenset[str] = frozenset()) -> ServedModel:
    """A Claude 3 / 4.x model: the Messages body, on InvokeModel only."""
    return ServedModel(model_id, _MSG, _INVOKE, max_output, context, profiles=profiles)


def _new(model_id: str, profiles: frozenset[str], surfaces: frozenset[Surface] = _ENDPOINT) -> ServedModel:
    """A 2026 model: 1M context, 128K output (LL), on the Messages endpoint ([A1])."""
    return ServedModel(model_id, _MSG, surfaces, 128_000, 1_000_000, profiles=profiles)


#: Every model the emulator serves, in CLAUDE_MODELS.md §1's order. Values: (max output, context window).
SERVED_MODELS: tuple[ServedModel, ...] = (
    # Text-completion era. Claude 1: TC only (UNVERIFIED), 8,191 out (LL).
    ServedModel("anthropic.claude-v1", _TC, _INVOKE, 8191, 100_000),
    # Instant 1.2 and 2.x take both bodies (AWS-TC, AWS-MSG). 8,191 out (LL); 2.0: 4,096 (AWS-TC, no LL entry).
    ServedModel("anthropic.claude-instant-v1", _TC_MSG, _INVOKE, 8191, 100_000),
    ServedModel("anthropic.claude-v2", _TC_MSG, _INVOKE, 4096, 100_000),  # context UNVERIFIED for Bedrock
    # 2.1's context: 200,000 (Anthropic's size) vs 100,000 (LL): conflict, the larger kept.
    ServedModel("anthropic.claude-v2:1", _TC_MSG, _INVOKE, 8191, 200_000),
    # The :18k / :200k variants: context per suffix; they may be provisioned-throughput only (UNVERIFIED),
    # served on demand here.
    ServedModel("anthropic.claude-v2:1:18k", _TC_MSG, _INVOKE, 8191, 18_000),
    ServedModel("anthropic.claude-v2:1:200k", _TC_MSG, _INVOKE, 8191, 200_000),
    # Claude 3 and later: the Messages body.
    _legacy("anthropic.claude-3-haiku-20240307-v1:0", 4096, 200_000),  # AWS-CARD-3-haiku
    _legacy("anthropic.claude-3-sonnet-20240229-v1:0", 4096, 200_000),  # both UNVERIFIED (AWS-MSG lists it)
    _legacy("anthropic.claude-3-opus-20240229-v1:0", 4096, 200_000, _p("us", "eu")),  # LL
    _legacy("anthropic.claude-3-5-sonnet-20240620-v1:0", 4096, 200_000, _p("us", "eu")),  # LL
    _legacy("anthropic.claude-3-5-sonnet-20241022-v2:0", 8192, 200_000, _p("us", "eu")),  # LL
    _legacy("anthropic.claude-3-5-haiku-20241022-v1:0", 8192, 200_000, _p("us", "eu")),  # AWS-CARD-3-5-haiku, LL
    # 3.7 Sonnet: LL says 8,192; Anthropic documents 64,000 and Bedrock users report larger values
    # accepted (drupal localgov_publications_importer#3577651): conflict, the larger kept.
    _legacy("anthropic.claude-3-7-sonnet-20250219-v1:0", 64_000, 200_000, _p("us", "eu", "apac")),  # A-BR
    _legacy("anthropic.claude-sonnet-4-20250514-v1:0", 64_000, 200_000, _p("global", "us", "eu", "apac")),  # LL, A-BR
    _legacy("anthropic.claude-opus-4-20250514-v1:0", 32_000, 200_000, _p("us", "eu")),  # LL
    _legacy("anthropic.claude-opus-4-1-20250805-v1:0", 32_000, 200_000, _p("us", "eu")),  # A-BR (us), LL (eu)
    _legacy(
        "anthropic.claude-sonnet-4-5-20250929-v1:0", 64_000, 200_000, _p("global", "us", "eu", "jp", "au", "us-gov")
    ),  # LL, A-BR
    # Haiku 4.5: InvokeModel under its dated id; the Messages endpoint under the undated one ([A1], LL mantle keys).
    ServedModel(
        "anthropic.claude-haiku-4-5-20251001-v1:0",
        _MSG,
        _BOTH,
        64_000,
        200_000,
        aliases=("anthropic.claude-haiku-4-5",),
        profiles=_p("global", "us", "eu", "jp", "apac", "au"),
    ),  # LL
    _legacy("anthropic.claude-opus-4-5-20251101-v1:0", 64_000, 200_000, _p("global", "us", "eu")),  # LL, A-BR
    # Opus 4.6: "-v1", no date, no ":0" (A-BR). No source gives an undated alias.
    _legacy("anthropic.claude-opus-4-6-v1", 128_000, 1_000_000, _p("global", "us", "eu", "jp", "apac", "au")),
    # Sonnet 4.6: 64,000 (LL) vs 128K (Anthropic's model page): conflict, the larger kept. apac: LL yes, A-BR no.
    _legacy("anthropic.claude-sonnet-4-6", 128_000, 1_000_000, _p("global", "us", "eu", "jp", "au")),
    # 2026: Opus 4.7 is on InvokeModel too ([A2]); 1M / 128K ([W3]).
    _new("anthropic.claude-opus-4-7", _p("global", "us", "eu", "jp", "apac", "au"), _BOTH),
    _new("anthropic.claude-opus-4-8", _ALL),  # LL only
    _new("anthropic.claude-mythos-preview", _p("us", "apac", "au")),  # LL; invitation only
    _new("anthropic.claude-opus-5", _ALL),
    _new("anthropic.claude-sonnet-5", _ALL),
    _new("anthropic.claude-fable-5", _p("global", "us", "eu", "apac", "au")),
    _new("anthropic.claude-fable-5-1", _p("global", "us", "eu", "us-gov")),
    _new("anthropic.claude-mythos-5", _p("us")),
    _new("anthropic.claude-mythos-5-1", _p("us", "global")),
    _new("anthropic.claude-opus-5-5", _ALL),  # UNVERIFIED on Bedrock
    _new("anthropic.claude-sonnet-5-5", _ALL),  # UNVERIFIED on Bedrock
    _new("anthropic.claude-haiku-5-5", _ALL),  # LL; vercel/ai @ai-sdk/amazon-bedrock@4.0.192
    # Fable 5.2 / Mythos 5.2: a system card exists, no Bedrock id found (UNVERIFIED): not served.
)

_BY_ID: Mapping[str, ServedModel] = {name: model for model in SERVED_MODELS for name in (model.id, *model.aliases)}

# InvokeModelIdentifier (BOTO): 1 to 2048 characters. Printable ASCII without spaces is what every form uses.
_MODEL_ID = re.compile(r"[\x21-\x7e]{1,2048}")
_ARN = re.compile(
    r"arn:(?P<partition>aws(?:-[a-z]+)*):bedrock:(?P<region>[a-z0-9-]*):(?P<account>[^:]*):"
    r"(?P<kind>[a-z-]+)/(?P<resource>.+)"
)
_ACCOUNT = re.compile(r"[0-9]{12}")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]")
# Provisioned-model and application-inference-profile ids: 12 lowercase alphanumerics (CLAUDE_MODELS.md §3).
_OPAQUE_ID = re.compile(r"[a-z0-9]{12}")
# Plain ids and the resource part of a model ARN: letters, digits and ".-_:" (never "%", "/" or dot segments).
_BASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
#: ARN kinds that name a model Bedrock could serve but the emulator cannot know (a 404, like an unknown id).
_FOREIGN_MODEL_KINDS = frozenset(
    {"custom-model", "custom-model-deployment", "imported-model", "prompt", "prompt-router", "default-prompt-router"}
)
#: ARN kinds that route to a model chosen at creation time: served, as an unknown Messages model.
_OPAQUE_KINDS = frozenset({"application-inference-profile", "provisioned-model"})


class ModelIdError(enum.Enum):
    """Why a model id is not served: the two answers Bedrock gives."""

    INVALID = "invalid"  # 400 ValidationException
    UNKNOWN = "unknown"  # 404 ResourceNotFoundException


@attrs.frozen
class ModelRef:
    """A served model id: the id as given, the table's entry (None behind an opaque ARN) and how it was named."""

    model_id: str
    model: ServedModel | None
    arn_kind: str | None = None
    arn_region: str | None = None
    profile_prefix: str | None = None

    @property
    def apis(self) -> frozenset[Api]:
        """The bodies it takes: an opaque ARN's model is taken to speak Messages (every model since Claude 3 does)."""
        return self.model.apis if self.model is not None else _MSG

    @property
    def surfaces(self) -> frozenset[Surface]:
        """Where it answers: an opaque ARN is served on both surfaces (its model is unknown)."""
        return self.model.surfaces if self.model is not None else _BOTH

    def max_tokens_for(self, api: Api) -> int | None:
        """The model's output limit in ``api``'s body (None: unknown, unchecked)."""
        return self.model.max_tokens_for(api) if self.model is not None else None

    @property
    def anthropic_name(self) -> str:
        """The ``model`` an InvokeModel Messages body reports (the id as given, behind an opaque ARN)."""
        return self.model.anthropic_name if self.model is not None else self.model_id

    @property
    def unprefixed_id(self) -> str:
        """The id without its ARN wrapper and profile prefix (``us.anthropic.x`` -> ``anthropic.x``)."""
        name = self.model_id
        if self.arn_kind in ("foundation-model", "inference-profile"):
            name = name.split("/", 1)[1]
        if self.profile_prefix is not None:
            name = name.removeprefix(f"{self.profile_prefix}.")
        return name


def _split_profile(resource: str) -> tuple[str | None, str]:
    """``us.anthropic.x`` -> (``us``, ``anthropic.x``); a base id -> (None, id); an unknown prefix -> ("?", ...)."""
    head, dot, rest = resource.partition(".")
    if dot and head != "anthropic" and rest.startswith("anthropic."):
        return head, rest
    return None, resource


def parse_model_id(model_id: str) -> ModelRef | ModelIdError:
    """What Bedrock does with ``model_id`` (see the module docstring): the served model, or why not."""
    if not _MODEL_ID.fullmatch(model_id):
        return ModelIdError.INVALID
    arn = _ARN.fullmatch(model_id)
    if arn is None:
        if model_id.startswith("arn:") or not _BASE_ID.fullmatch(model_id):
            return ModelIdError.INVALID
        return _plain(model_id)
    kind, resource, account, region = arn["kind"], arn["resource"], arn["account"], arn["region"]
    if not _REGION.fullmatch(region):
        return ModelIdError.INVALID
    if kind == "foundation-model":
        # A foundation model belongs to no account: the field is empty (BOTO, CLAUDE_MODELS.md §3).
        if account or not _BASE_ID.fullmatch(resource) or _split_profile(resource)[0] is not None:
            return ModelIdError.INVALID
        model = _BY_ID.get(resource)
        return ModelRef(model_id, model, kind, region) if model is not None else ModelIdError.UNKNOWN
    if not _ACCOUNT.fullmatch(account):
        return ModelIdError.INVALID
    if kind == "inference-profile":
        if _split_profile(resource)[0] is None or not _BASE_ID.fullmatch(resource):
            return ModelIdError.INVALID
        served = _plain(resource)
        if isinstance(served, ModelIdError):
            return served
        return ModelRef(model_id, served.model, kind, region, served.profile_prefix)
    if kind in _OPAQUE_KINDS:
        return ModelRef(model_id, None, kind, region) if _OPAQUE_ID.fullmatch(resource) else ModelIdError.INVALID
    if kind in _FOREIGN_MODEL_KINDS:
        return ModelIdError.UNKNOWN
    return ModelIdError.INVALID


def _plain(model_id: str) -> ModelRef | ModelIdError:
    prefix, base = _split_profile(model_id)
    if prefix is not None and prefix not in PROFILE_PREFIXES:
        return ModelIdError.INVALID
    model = _BY_ID.get(base)
    if model is None:
        return ModelIdError.UNKNOWN
    return ModelRef(model_id, model, profile_prefix=prefix)
