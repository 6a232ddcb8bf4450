"""The model registry: every Claude model, every id form (profiles, ARNs, aliases), and unknown ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import PROFILE_PREFIXES, account_ids, model_id_forms, region_names

from bedrock_chat import MODELS, InvalidRequestError, ModelApi, Surface, resolve_model
from bedrock_chat._core.models import EFFORT_LEVELS

# Every base id in shared/CLAUDE_MODELS.md section 1, with its API and the registry's output limit.
EXPECTED: list[tuple[str, ModelApi, int]] = [
    ("anthropic.claude-v1", ModelApi.TEXT_COMPLETIONS, 4096),
    ("anthropic.claude-instant-v1", ModelApi.TEXT_COMPLETIONS, 4096),
    ("anthropic.claude-v2", ModelApi.TEXT_COMPLETIONS, 4096),
    ("anthropic.claude-v2:1", ModelApi.TEXT_COMPLETIONS, 4096),
    ("anthropic.claude-v2:1:18k", ModelApi.TEXT_COMPLETIONS, 4096),
    ("anthropic.claude-v2:1:200k", ModelApi.TEXT_COMPLETIONS, 4096),
    ("anthropic.claude-3-haiku-20240307-v1:0", ModelApi.MESSAGES, 4096),
    ("anthropic.claude-3-sonnet-20240229-v1:0", ModelApi.MESSAGES, 4096),
    ("anthropic.claude-3-opus-20240229-v1:0", ModelApi.MESSAGES, 4096),
    ("anthropic.claude-3-5-sonnet-20240620-v1:0", ModelApi.MESSAGES, 4096),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", ModelApi.MESSAGES, 8192),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", ModelApi.MESSAGES, 8192),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", ModelApi.MESSAGES, 64_000),
    ("anthropic.claude-sonnet-4-20250514-v1:0", ModelApi.MESSAGES, 64_000),
    ("anthropic.claude-opus-4-20250514-v1:0", ModelApi.MESSAGES, 32_000),
    ("anthropic.claude-opus-4-1-20250805-v1:0", ModelApi.MESSAGES, 32_000),
    ("anthropic.claude-sonnet-4-5-20250929-v1:0", ModelApi.MESSAGES, 64_000),
    ("anthropic.claude-haiku-4-5-20251001-v1:0", ModelApi.MESSAGES, 64_000),
    ("anthropic.claude-opus-4-5-20251101-v1:0", ModelApi.MESSAGES, 64_000),
    ("anthropic.claude-opus-4-6-v1", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-sonnet-4-6", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-opus-4-7", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-opus-4-8", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-mythos-preview", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-fable-5", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-fable-5-1", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-mythos-5", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-mythos-5-1", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-opus-5", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-sonnet-5", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-opus-5-5", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-sonnet-5-5", ModelApi.MESSAGES, 128_000),
    ("anthropic.claude-haiku-5-5", ModelApi.MESSAGES, 128_000),
]


@pytest.mark.parametrize(("model_id", "api", "max_output"), EXPECTED)
def test_every_claude_model_is_registered(model_id: str, api: ModelApi, max_output: int) -> None:
    """Each Claude model Bedrock offers resolves to its own entry, with its API and output limit."""
    resolved = resolve_model(model_id)
    assert resolved.info is not None
    assert resolved.info.id == model_id
    assert resolved.api is api
    assert resolved.max_output_tokens == max_output
    assert resolved.model_id == model_id


def test_registry_has_nothing_unexpected() -> None:
    """The registry holds exactly the expected models, each once, with sane limits."""
    ids = [info.id for info in MODELS]
    assert len(ids) == len(set(ids))
    assert set(ids) == {model_id for model_id, _, _ in EXPECTED}
    for info in MODELS:
        assert info.id.startswith("anthropic.claude-")
        assert 0 < info.max_output_tokens <= info.context_window
        assert info.surfaces
        assert info.name


def test_aliases_resolve_to_their_model() -> None:
    """An undated alias such as ``anthropic.claude-haiku-4-5`` finds the dated model."""
    resolved = resolve_model("anthropic.claude-haiku-4-5")
    assert resolved.info is not None
    assert resolved.info.id == "anthropic.claude-haiku-4-5-20251001-v1:0"
    assert resolved.model_id == "anthropic.claude-haiku-4-5"


def test_version_suffix_falls_back_to_the_base() -> None:
    """``anthropic.claude-v2:0`` is Claude 2.0 (the registry lists it without the ``:0``)."""
    info = resolve_model("anthropic.claude-v2:0").info
    assert info is not None
    assert info.id == "anthropic.claude-v2"


@pytest.mark.parametrize("prefix", PROFILE_PREFIXES)
def test_profile_prefixes(prefix: str) -> None:
    """Every cross-region profile prefix (us., eu., apac., global., us-gov., jp., au.) resolves to the base model."""
    resolved = resolve_model(f"{prefix}.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert resolved.profile_prefix == prefix
    assert resolved.info is not None
    assert resolved.info.id == "anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert resolved.model_id == f"{prefix}.anthropic.claude-sonnet-4-5-20250929-v1:0"


@given(form=model_id_forms())
def test_every_id_form_resolves_to_its_base(form: tuple[str, str, str | None, str | None]) -> None:
    """Plain ids, profile ids and foundation-model / inference-profile ARNs all find the base model."""
    model_id, base, prefix, region = form
    resolved = resolve_model(model_id)
    assert resolved.model_id == model_id  # what goes on the wire is never rewritten
    assert resolved.info is not None
    assert resolved.info.id == base
    assert resolved.profile_prefix == prefix
    assert resolved.arn_region == region


@pytest.mark.parametrize(
    "model_id",
    [
        "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "arn:aws-us-gov:bedrock:us-gov-west-1:111122223333:inference-profile/us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-v2:1",
    ],
)
def test_arns_keep_their_region(model_id: str) -> None:
    """An ARN's region is recorded, so the client can refuse to silently send it elsewhere."""
    resolved = resolve_model(model_id)
    assert resolved.arn_region == model_id.split(":")[3]
    assert resolved.arn_kind in ("inference-profile", "foundation-model")
    assert resolved.info is not None


@given(
    kind=st.sampled_from(["application-inference-profile", "provisioned-model", "custom-model", "imported-model"]),
    region=region_names,
    account=account_ids,
    resource=st.from_regex(r"[a-z0-9]{12}", fullmatch=True),
)
def test_opaque_arns_are_unknown_messages_models(kind: str, region: str, account: str, resource: str) -> None:
    """ARNs that do not name a base model still resolve: Messages API, limits left to the service."""
    model_id = f"arn:aws:bedrock:{region}:{account}:{kind}/{resource}"
    resolved = resolve_model(model_id)
    assert (resolved.info, resolved.api, resolved.max_output_tokens) == (None, ModelApi.MESSAGES, None)
    assert (resolved.arn_kind, resolved.arn_region) == (kind, region)


@given(model_id=st.from_regex(r"[a-z][a-z0-9.:-]{0,60}", fullmatch=True))
def test_unknown_ids_work_as_messages_models(model_id: str) -> None:
    """Any well-formed id resolves; one the registry does not know is a Messages model with no limit."""
    resolved = resolve_model(model_id)
    assert resolved.model_id == model_id
    if resolved.info is None:
        assert resolved.api is ModelApi.MESSAGES
        assert resolved.max_output_tokens is None
        assert resolved.display_name == model_id


def test_a_future_claude_model_is_a_messages_model() -> None:
    """A model released after this registry still works, as a Messages model."""
    resolved = resolve_model("us.anthropic.claude-opus-9-20300101-v1:0")
    assert (resolved.info, resolved.api, resolved.profile_prefix) == (None, ModelApi.MESSAGES, "us")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "anthropic.claude v2",
        "anthropic.claude-v2\n",
        "anthropic.claüde",
        "x" * 2049,
        "arn:nope",
        "arn:aws:s3:::b",
    ],
)
def test_malformed_ids_are_rejected(bad: str) -> None:
    """Empty, spaced, non-ASCII, over-long and non-Bedrock-ARN ids raise InvalidRequestError naming ``model``."""
    with pytest.raises(InvalidRequestError) as info:
        resolve_model(bad)
    assert info.value.field == "model"


@pytest.mark.parametrize("bad", [None, 3, b"anthropic.claude-v2"])
def test_non_string_ids_are_rejected(bad: object) -> None:
    """A model id that is not a string raises InvalidRequestError, not a TypeError."""
    with pytest.raises(InvalidRequestError, match="model"):
        resolve_model(bad)  # type: ignore[arg-type]


def test_longest_id_is_accepted() -> None:
    """A 2048-character id is within Bedrock's limit."""
    assert resolve_model("a" * 2048).model_id == "a" * 2048


def test_surfaces() -> None:
    """Models up to Opus 4.6 default to InvokeModel; the 2026 models to the Messages endpoint."""
    by_id = {info.id: info for info in MODELS}
    assert by_id["anthropic.claude-v2:1"].default_surface is Surface.INVOKE
    assert by_id["anthropic.claude-haiku-4-5-20251001-v1:0"].default_surface is Surface.INVOKE
    assert by_id["anthropic.claude-opus-4-7"].surfaces == {Surface.INVOKE, Surface.MESSAGES_ENDPOINT}
    assert by_id["anthropic.claude-opus-4-7"].default_surface is Surface.MESSAGES_ENDPOINT
    assert by_id["anthropic.claude-opus-5"].default_surface is Surface.MESSAGES_ENDPOINT


# The request features of shared/CLAUDE_REQUEST_FEATURES_2026.md (and the sources in the registry's docstring):
# model -> (cache floor, 1h TTL, effort levels, structured outputs).
_E3 = frozenset({"low", "medium", "high"})
_EMAX = _E3 | {"max"}
_EX = _EMAX | {"xhigh"}
FEATURES: dict[str, tuple[int | None, bool, frozenset[str], bool]] = {
    "anthropic.claude-v2:1": (None, False, frozenset(), False),
    "anthropic.claude-3-haiku-20240307-v1:0": (2048, False, frozenset(), False),
    "anthropic.claude-3-5-haiku-20241022-v1:0": (2048, False, frozenset(), False),
    "anthropic.claude-3-7-sonnet-20250219-v1:0": (1024, False, frozenset(), False),
    "anthropic.claude-opus-4-1-20250805-v1:0": (1024, False, frozenset(), False),
    "anthropic.claude-sonnet-4-5-20250929-v1:0": (1024, True, frozenset(), True),
    "anthropic.claude-haiku-4-5-20251001-v1:0": (4096, True, frozenset(), True),
    "anthropic.claude-opus-4-5-20251101-v1:0": (4096, True, _E3, True),
    "anthropic.claude-opus-4-6-v1": (4096, True, _EMAX, True),
    "anthropic.claude-sonnet-4-6": (2048, True, _EMAX, True),
    "anthropic.claude-opus-4-7": (4096, True, _EX, True),
    "anthropic.claude-opus-4-8": (1024, True, _EX, True),
    "anthropic.claude-opus-5": (512, True, _EX, True),
    "anthropic.claude-fable-5": (512, True, _EX, True),
    "anthropic.claude-mythos-5": (512, True, _EX, True),
    "anthropic.claude-sonnet-5": (1024, True, _EX, True),
    "anthropic.claude-haiku-5-5": (None, True, _EX, True),
}


@pytest.mark.parametrize("model_id", sorted(FEATURES))
def test_request_features_per_model(model_id: str) -> None:
    """Cache floor, 1h TTL, effort levels and structured outputs are the registry's data for each model."""
    info = resolve_model(model_id).info
    assert info is not None
    got = (info.cache_min_tokens, info.cache_ttl_1h, info.effort_levels, info.structured_outputs)
    assert got == FEATURES[model_id]


def test_request_features_are_consistent() -> None:
    """Text-completion models have none of the Messages features; effort values are the known words."""
    for info in MODELS:
        assert info.effort_levels <= set(EFFORT_LEVELS)
        if info.api is ModelApi.TEXT_COMPLETIONS:
            assert (info.cache_min_tokens, info.cache_ttl_1h, info.effort_levels, info.structured_outputs) == (
                None,
                False,
                frozenset(),
                False,
            )
        assert info.cache_min_tokens is None or info.cache_min_tokens >= 512


@pytest.mark.parametrize("model_id", ["anthropic.claude-fable-5-2", "anthropic.claude-mythos-5-2"])
def test_models_without_a_bedrock_id_are_not_invented(model_id: str) -> None:
    """Fable/Mythos 5.2 have no Bedrock id in any source: they resolve as unknown models, not as registry entries."""
    assert resolve_model(model_id).info is None
