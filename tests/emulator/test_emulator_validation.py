"""Body validation for both Claude APIs: a table of bad bodies and the ValidationException text each gets."""

from __future__ import annotations

from typing import Any

import pytest

from bedrock_chat.emulator._models import Api, ModelRef, parse_model_id
from bedrock_chat.emulator._validation import BodyError, anthropic_model_name, parse_body

V1 = "anthropic.claude-v1"
V2 = "anthropic.claude-v2"
HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET_3 = "anthropic.claude-3-sonnet-20240229-v1:0"
HAIKU_45 = "anthropic.claude-haiku-4-5-20251001-v1:0"
APP_PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/a1b2c3d4e5f6"
PROMPT = "\n\nHuman: Hi there\n\nAssistant:"
USER = [{"role": "user", "content": "Hi there"}]


def served(model_id: str) -> ModelRef:
    """The emulator's reading of a model id it serves."""
    model = parse_model_id(model_id)
    assert isinstance(model, ModelRef), model
    return model


def messages(**fields: Any) -> dict[str, Any]:
    """A valid Messages body, changed by ``fields`` (a value of ... removes the key)."""
    body: dict[str, Any] = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": USER}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ...}


def text(**fields: Any) -> dict[str, Any]:
    """A valid text-completion body, changed by ``fields`` (a value of ... removes the key)."""
    body: dict[str, Any] = {"prompt": PROMPT, "max_tokens_to_sample": 10}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not ...}


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    # Text completions (BEDROCK_PROTOCOL.md section 3).
    (
        V2,
        text(prompt="Hi"),
        'Invalid prompt: prompt must start with "\n\nHuman:" turn after an optional system '
        'prompt, prompt must end with "\n\nAssistant:" turn',
    ),
    (V2, text(prompt="\n\nHuman: Hi"), 'Invalid prompt: prompt must end with "\n\nAssistant:" turn'),
    (V2, text(prompt="\n\nHuman: a\n\nAssistant: b\n\nHuman: c"), 'prompt must end with "\n\nAssistant:" turn'),
    (V2, text(max_tokens_to_sample=4097), "#/max_tokens_to_sample: 4097 is not less or equal to 4096"),
    (V2, text(max_tokens_to_sample=-1), "#/max_tokens_to_sample: -1 is not greater or equal to 0"),
    (V2, text(max_tokens_to_sample=...), "#: required key [max_tokens_to_sample] not found"),
    (V2, text(max_tokens_to_sample="10"), "#/max_tokens_to_sample: expected type: Integer, found: String"),
    (V2, text(max_tokens_to_sample=True), "#/max_tokens_to_sample: expected type: Integer, found: Boolean"),
    (V2, text(stop_sequences=[1]), "#/stop_sequences/0: expected type: String, found: Integer"),
    (V2, text(temperature=1.5), "#/temperature: 1.5 is not less or equal to 1.0"),
    (V2, text(anthropic_version="2026-10-21"), 'anthropic_version: "2026-10-21" is not supported for this model'),
    # Claude 1 takes text completions only (CLAUDE_MODELS.md: TC, UNVERIFIED); 2.x takes both (below).
    (V1, messages(), "#: required key [prompt] not found#: required key [max_tokens_to_sample] not found"),
    (V1, messages(), "#: extraneous key [messages] is not permitted"),
    # A text body sent to a Messages model (aws/fmeval#286).
    (SONNET_3, text(), '"claude-3-sonnet-20240229" is not supported on this API. Please use the Messages API instead.'),
    # Messages (section 4).
    (HAIKU_3, messages(anthropic_version=...), "#: required key [anthropic_version] not found"),
    (HAIKU_3, messages(anthropic_version="2026-10-21"), 'anthropic_version: "2026-10-21" is not supported'),
    (HAIKU_3, messages(anthropic_version="bedrock-2099-01-01"), "is not supported for this model"),
    (APP_PROFILE, messages(anthropic_version="2026-10-21"), "is not supported for this model"),
    (HAIKU_45, messages(anthropic_version="latest"), "is not supported for this model"),
    (
        HAIKU_3,
        messages(max_tokens=4097),
        "max_tokens: 4097 > 4096, which is the maximum allowed number of output tokens for claude-3-haiku-20240307",
    ),
    (HAIKU_3, messages(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
    (HAIKU_3, messages(model="claude"), "#: extraneous key [model] is not permitted"),
    (HAIKU_3, messages(stream=True), "#: extraneous key [stream] is not permitted"),
    (HAIKU_3, messages(messages=[]), "messages: at least one message is required"),
    (
        HAIKU_3,
        messages(messages=[{"role": "assistant", "content": "x"}]),
        'messages: first message must use the "user" role',
    ),
    (
        HAIKU_3,
        messages(messages=[*USER, *USER]),
        'messages: roles must alternate between "user" and "assistant", but found multiple "user" roles in a row',
    ),
    (HAIKU_3, messages(messages=[{"role": "system", "content": "x"}]), "messages.0.role: Input should be"),
    (
        HAIKU_3,
        messages(messages=[{"role": "user", "content": ""}]),
        "messages.0: all messages must have non-empty content except for the optional final assistant message",
    ),
    (HAIKU_3, messages(messages=[{"role": "user", "content": []}]), "messages.0: all messages must have non-empty"),
    (
        HAIKU_3,
        messages(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
        "messages: text content blocks must be non-empty",
    ),
    (HAIKU_3, messages(messages=[{"role": "user"}]), "messages.0.content: Field required"),
    (HAIKU_3, messages(messages=["hi"]), "messages.0: Input should be a valid dictionary"),
    (HAIKU_3, messages(messages=[{"role": "user", "content": 5}]), "messages.0.content: Input should be a valid"),
    (HAIKU_3, messages(messages=[{"role": "user", "content": [{"text": "x"}]}]), "messages.0.content.0:"),
    (HAIKU_3, messages(system=[{"type": "image"}]), "system: Input should be"),
    (HAIKU_3, messages(messages="hi"), "#/messages: expected type: JSONArray, found: String"),
    (HAIKU_3, messages(top_k=501), "#/top_k: 501 is not less or equal to 500"),
]


@pytest.mark.parametrize(("model_id", "body", "message"), BAD_BODIES)
def test_bad_bodies_get_bedrocks_message(model_id: str, body: dict[str, Any], message: str) -> None:
    """Each bad body is refused with (a message containing) the expected text."""
    with pytest.raises(BodyError) as caught:
        parse_body(body, served(model_id))
    assert message in caught.value.message


def test_schema_problems_are_reported_together() -> None:
    """The schema pass lists every problem in one 'Malformed input request' message."""
    with pytest.raises(BodyError) as caught:
        parse_body({"messages": USER, "top_p": "x"}, served(HAIKU_3))
    assert caught.value.message == (
        "Malformed input request: #: required key [anthropic_version] not found#: required key [max_tokens] not "
        "found#/top_p: expected type: Number, found: String, please reformat your input and try again."
    )


@pytest.mark.parametrize(
    ("model_id", "version"),
    [
        (HAIKU_3, "bedrock-2023-05-31"),
        (HAIKU_45, "bedrock-2023-05-31"),
        (HAIKU_45, "2026-10-21"),  # listed on the Messages endpoint: the SDK's default version is accepted
        ("anthropic.claude-opus-4-7", "2026-10-21"),
        (APP_PROFILE, "bedrock-2023-05-31"),
    ],
)
def test_accepted_versions(model_id: str, version: str) -> None:
    """bedrock-2023-05-31 always; dated API versions only for models on the Messages endpoint."""
    parsed = parse_body(messages(anthropic_version=version), served(model_id))
    assert parsed.api is Api.MESSAGES


def test_valid_text_body_is_parsed() -> None:
    """A text body with a system prompt and prefill: the last Human turn is what the user said."""
    prompt = "Be brief.\n\nHuman: first\n\nAssistant: ok\n\nHuman: second words\n\nAssistant: Sure,"
    parsed = parse_body(text(prompt=prompt, stop_sequences=["X"], anthropic_version="bedrock-2023-05-31"), served(V2))
    assert parsed.api is Api.TEXT_COMPLETIONS
    assert parsed.last_user_text.strip() == "second words"
    assert (parsed.input_text, parsed.max_tokens, parsed.stop_sequences) == (prompt, 10, ("X",))


def test_valid_messages_body_is_parsed() -> None:
    """System text, text blocks, tool results and a final empty assistant turn are accepted and counted."""
    body = messages(
        system=[{"type": "text", "text": "Be kind"}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw=="}},
                ],
            },
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "sunny day"}]},
            {"role": "assistant", "content": ""},
        ],
        stop_sequences=["END"],
        temperature=0.5,
    )
    parsed = parse_body(body, served(HAIKU_3))
    assert parsed.last_user_text == "sunny day"
    assert parsed.input_text.split() == ["Be", "kind", "look", "sunny", "day"]
    assert parsed.stop_sequences == ("END",)


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku-20241022"),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4-20250514"),
        ("anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        ("anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("anthropic.claude-v2:1", "claude-v2:1"),
        (APP_PROFILE, APP_PROFILE),
    ],
)
def test_anthropic_model_names(model_id: str, name: str) -> None:
    """Response bodies name the model as Anthropic's API does."""
    assert anthropic_model_name(served(model_id)) == name


@pytest.mark.parametrize("model_id", ["anthropic.claude-instant-v1", V2, "anthropic.claude-v2:1"])
def test_claude_2_takes_messages_bodies_too(model_id: str) -> None:
    """Instant 1.2 and 2.x take the Messages body as well (AWS-MSG lists them), capped by the model, not by TC."""
    parsed = parse_body(messages(max_tokens=4096), served(model_id))
    assert parsed.api is Api.MESSAGES
    assert parse_body(text(), served(model_id)).api is Api.TEXT_COMPLETIONS
