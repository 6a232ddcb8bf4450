"""The client's tables against the emulator's own: models, profiles, ARNs and error codes.

The emulator keeps its own table of what Bedrock serves (``emulator/_models.py``) and its own error
wire format (``emulator/_wire_errors.py``), written from the spec, so that a wrong entry in the client's
registry (``_core/models.py``) or error table (``_errors.py``) is caught here rather than confirmed by the
emulator. Where the two differ on purpose (the client leaves the final word to the service; the
emulator plays the service), the difference is pinned by name below.
"""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest

from bedrock_chat._core.models import MODELS, ModelInfo, ResolvedModel, resolve_model
from bedrock_chat._core.responses import parse_stream_error_event
from bedrock_chat._errors import (
    AccessDeniedError,
    APIError,
    AuthenticationError,
    ConflictError,
    ExpiredTokenError,
    InternalServerError,
    InvalidRequestError,
    ModelError,
    ModelNotReadyError,
    ModelStreamError,
    ModelTimeoutError,
    ResourceNotFoundError,
    ServiceQuotaExceededError,
    ServiceUnavailableError,
    ThrottlingError,
    ValidationError,
    error_class_for_code,
)
from bedrock_chat.emulator._features import FEATURES
from bedrock_chat.emulator._models import (
    PROFILE_PREFIXES,
    SERVED_MODELS,
    Api,
    ModelIdError,
    ModelRef,
    ServedModel,
    parse_model_id,
)
from bedrock_chat.emulator._wire_errors import ERROR_SHAPES, STREAM_EXCEPTION_CODES

EMULATOR_IDS = [(name, model) for model in SERVED_MODELS for name in (model.id, *model.aliases)]
CLIENT_IDS = [(name, info) for info in MODELS for name in (info.id, *info.aliases)]


def client_info(model_id: str) -> ModelInfo:
    """The client registry's entry for ``model_id`` (it must have one)."""
    info = resolve_model(model_id).info
    assert info is not None, f"the client's registry does not know {model_id}"
    return info


def served(model_id: str) -> ModelRef:
    """The emulator's reading of an id it must serve."""
    ref = parse_model_id(model_id)
    assert isinstance(ref, ModelRef), f"the emulator does not serve {model_id}: {ref}"
    return ref


@pytest.mark.parametrize(("model_id", "model"), EMULATOR_IDS, ids=[name for name, _ in EMULATOR_IDS])
def test_the_client_agrees_on_every_model_the_emulator_serves(model_id: str, model: ServedModel) -> None:
    """Same base model, a body Bedrock takes, the same output limit for that body, context and surfaces."""
    info = client_info(model_id)
    assert info.id == model.id
    client_api = Api(info.api.value)
    assert client_api in model.apis, f"{model_id}: the client sends a {client_api} body Bedrock does not take"
    assert info.max_output_tokens == model.max_tokens_for(client_api)
    assert info.context_window == model.context_window
    assert {surface.value for surface in info.surfaces} == {surface.value for surface in model.surfaces}


@pytest.mark.parametrize(("model_id", "info"), CLIENT_IDS, ids=[name for name, _ in CLIENT_IDS])
def test_the_emulator_serves_every_model_the_client_lists(model_id: str, info: ModelInfo) -> None:
    """No registry entry (id or alias) without a source: the spec-written table holds each one."""
    model = served(model_id).model
    assert model is not None
    assert model.id == info.id


PROFILE_IDS = sorted(f"{prefix}.{model.id}" for model in SERVED_MODELS for prefix in PROFILE_PREFIXES)


@pytest.mark.parametrize("model_id", PROFILE_IDS)
def test_every_profile_prefix_resolves_alike(model_id: str) -> None:
    """A cross-region profile id names the same base model and prefix on both sides."""
    client, emulator = resolve_model(model_id), served(model_id)
    assert client.profile_prefix == emulator.profile_prefix == model_id.split(".", 1)[0]
    assert emulator.model is not None
    assert client_info(model_id).id == emulator.model.id


def _arns() -> list[str]:
    arns = []
    for model in SERVED_MODELS:
        arns.append(f"arn:aws:bedrock:us-west-2::foundation-model/{model.id}")
        arns.append(f"arn:aws:bedrock:eu-west-1:111122223333:inference-profile/eu.{model.id}")
        arns.append(f"arn:aws-us-gov:bedrock:us-gov-west-1:111122223333:inference-profile/us-gov.{model.id}")
    arns.append("arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/a1b2c3d4e5f6")
    arns.append("arn:aws:bedrock:eu-central-1:123456789012:provisioned-model/abc123def456")
    return arns


@pytest.mark.parametrize("arn", _arns())
def test_every_arn_form_resolves_alike(arn: str) -> None:
    """Kind, region, profile prefix and base model agree for each ARN form CLAUDE_MODELS.md section 3 gives."""
    client, emulator = resolve_model(arn), served(arn)
    assert (client.arn_kind, client.arn_region, client.profile_prefix) == (
        emulator.arn_kind,
        emulator.arn_region,
        emulator.profile_prefix,
    )
    assert (client.info.id if client.info else None) == (emulator.model.id if emulator.model else None)


MALFORMED_IDS = [
    "",
    "anthropic.claude v2",
    "anthropic.claude-v2\n",
    "x" * 2049,
    "anthropic.claude-v2%3A1",
    "../invoke",
    "anthropic.claude-v2/invoke",
    "arn:aws:s3:::bucket/key",
    "arn:aws:bedrock:us-east-1:111122223333:inference-profile/../us.anthropic.claude-v2",
]


@pytest.mark.parametrize("model_id", MALFORMED_IDS)
def test_ids_the_client_refuses_are_invalid_for_the_emulator(model_id: str) -> None:
    """What the client refuses before any I/O, the emulator (as Bedrock) refuses as an invalid identifier."""
    with pytest.raises(InvalidRequestError):
        resolve_model(model_id)
    assert parse_model_id(model_id) is ModelIdError.INVALID


#: Ids the client resolves (leaving the last word to the service) that Bedrock, as the spec reads, refuses.
STRICTER_IN_THE_EMULATOR: list[tuple[str, ModelIdError]] = [
    ("ca.anthropic.claude-sonnet-4-6", ModelIdError.INVALID),  # no source shows a ca. profile (section 2)
    ("arn:aws:bedrock:us-east-1::foundation-model/us.anthropic.claude-v2", ModelIdError.INVALID),  # a profile id
    ("arn:aws:bedrock:us-east-1:111122223333:foundation-model/anthropic.claude-v2", ModelIdError.INVALID),  # account
    ("arn:aws:bedrock:us-east-1:111122223333:inference-profile/anthropic.claude-v2", ModelIdError.INVALID),
    ("arn:aws:bedrock:us-east-1:111122223333:guardrail/abc123def456", ModelIdError.INVALID),  # not a model
    ("anthropic.claude-v2:0", ModelIdError.UNKNOWN),  # the client's ":N" fallback; no source lists this id
    ("anthropic.claude-opus-4-6-v1:0", ModelIdError.UNKNOWN),
]


@pytest.mark.parametrize(("model_id", "answer"), STRICTER_IN_THE_EMULATOR)
def test_where_the_emulator_is_stricter_than_the_client(model_id: str, answer: ModelIdError) -> None:
    """Pinned differences: the client sends these on (and Bedrock judges); the emulator answers as Bedrock."""
    assert isinstance(resolve_model(model_id), ResolvedModel)
    assert parse_model_id(model_id) is answer


#: What a real Bedrock error of each code must raise in the client (the spec's meaning of each code).
EXPECTED_CLASSES: dict[str, type[APIError]] = {
    "ValidationException": ValidationError,
    "ServiceQuotaExceededException": ServiceQuotaExceededError,
    "ConflictException": ConflictError,
    "AccessDeniedException": AccessDeniedError,
    "ResourceNotFoundException": ResourceNotFoundError,
    "ModelTimeoutException": ModelTimeoutError,
    "ModelErrorException": ModelError,
    "ModelStreamErrorException": ModelStreamError,
    "ThrottlingException": ThrottlingError,
    "ModelNotReadyException": ModelNotReadyError,
    "InternalServerException": InternalServerError,
    "ServiceUnavailableException": ServiceUnavailableError,
    "MissingAuthenticationTokenException": AuthenticationError,
    "IncompleteSignatureException": AuthenticationError,
    "InvalidSignatureException": AuthenticationError,
    "UnrecognizedClientException": AuthenticationError,
    "ExpiredTokenException": ExpiredTokenError,
    # A malformed body is the caller's 400, like a validation failure.
    "SerializationException": ValidationError,
    # A path the service does not serve: the client never calls one, so no class of its own.
    "UnknownOperationException": APIError,
}


def test_every_emulator_error_code_has_an_expected_client_class() -> None:
    """A new code in the emulator's table needs a decision here."""
    assert set(EXPECTED_CLASSES) == set(ERROR_SHAPES)


@pytest.mark.parametrize("code", sorted(ERROR_SHAPES))
def test_each_error_code_raises_its_class_in_the_client(code: str) -> None:
    """``x-amzn-ErrorType: Code:namespace`` with the emulator's status -> the class a real error of that code gets."""
    shape = ERROR_SHAPES[code]
    assert error_class_for_code(f"{code}:{shape.namespace}", shape.status) is EXPECTED_CLASSES[code]


@pytest.mark.parametrize(("member", "code"), sorted(STREAM_EXCEPTION_CODES.items()))
def test_each_stream_exception_raises_its_class_in_the_client(member: str, code: str) -> None:
    """An exception frame's lowerCamel ``:exception-type`` raises the same class as the HTTP error."""
    assert error_class_for_code(member, 200) is EXPECTED_CLASSES[code]


#: ``api_error`` mid-stream cannot tell an internal error from a model stream error; the client reads the
#: more likely one (``_core.responses._MID_STREAM_CLASSES``).
SSE_AMBIGUOUS = {"internalServerException": ModelStreamError}


@pytest.mark.parametrize(("member", "code"), sorted(STREAM_EXCEPTION_CODES.items()))
def test_each_sse_error_event_raises_its_class_in_the_client(member: str, code: str) -> None:
    """The Messages endpoint's ``event: error`` for a stream exception raises the InvokeModel frame's class."""
    event = {"type": "error", "error": {"type": ERROR_SHAPES[code].anthropic_type, "message": "m"}}
    expected = SSE_AMBIGUOUS.get(member, EXPECTED_CLASSES[code])
    assert type(parse_stream_error_event(event, None)) is expected


def _botocore_statuses() -> dict[str, int]:
    session = botocore.session.get_session()
    statuses: dict[str, int] = {}
    for service in ("bedrock-runtime", "bedrock"):
        model = session.get_service_model(service)
        for name in model.shape_names:
            shape: Any = model.shape_for(name)
            if shape.metadata.get("exception"):
                statuses[name] = shape.metadata["error"]["httpStatusCode"]
    return statuses


def test_statuses_match_botocores_service_models() -> None:
    """Every code botocore models (bedrock-runtime and the bedrock control plane) has botocore's status."""
    modeled = _botocore_statuses()
    ours = {code: shape.status for code, shape in ERROR_SHAPES.items() if code in modeled}
    assert ours == {code: modeled[code] for code in ours}
    assert "ValidationException" in ours
    assert "ConflictException" in ours


def test_stream_exceptions_are_the_response_stream_members() -> None:
    """The exception frames are exactly bedrock-runtime's ResponseStream members (all but ``chunk``)."""
    stream: Any = botocore.session.get_session().get_service_model("bedrock-runtime").shape_for("ResponseStream")
    assert set(STREAM_EXCEPTION_CODES) == set(stream.members) - {"chunk"}


@pytest.mark.parametrize("info", [info for info in MODELS if info.id in FEATURES], ids=lambda info: info.id)
def test_request_features_agree(info: ModelInfo) -> None:
    """Effort levels, the 1-hour TTL and structured outputs: the client refuses before I/O what the emulator would.

    Cache floors are left out on purpose: the client keeps the larger of conflicting published floors
    (it only feeds a warning that needs a reply showing nothing was cached), the emulator the spec's.
    """
    features = FEATURES[info.id]
    assert set(info.effort_levels) == set(features.effort)
    assert info.cache_ttl_1h == features.ttl_1h
    assert info.structured_outputs == features.structured_outputs
