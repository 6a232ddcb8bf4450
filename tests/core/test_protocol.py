"""Request bodies, wire paths, response parsing and stream assembly for both Claude APIs (pure, sans-IO)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import anthropic
import attrs
import botocore.utils
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import conversations, json_values, response_like_objects, text_blocks, texts, valid_sampling

from bedrock_chat import (
    APIError,
    BedrockError,
    ChatCompletion,
    IncompleteStreamError,
    InvalidRequestError,
    ThrottlingError,
    Usage,
    ValidationError,
    resolve_model,
)
from bedrock_chat._core.prompt import normalize_conversation
from bedrock_chat._core.protocol import (
    ANTHROPIC_VERSION,
    Invocation,
    build_body,
    invoke_path,
    prepare_invocation,
    validate_sampling,
)
from bedrock_chat._core.responses import (
    StreamAssembler,
    invoke_usage,
    parse_error_response,
    parse_invoke_response,
    usage_from_body,
    usage_from_headers,
)

TEXT_MODEL = "anthropic.claude-v2:1"
MESSAGES_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def _invocation(model: str, messages: list[dict[str, Any]], *, stream: bool = False, **params: Any) -> Invocation:
    resolved = resolve_model(model)
    system = params.pop("system", None)
    sampling = validate_sampling(resolved, **params)
    return prepare_invocation(resolved, normalize_conversation(messages, system=system), sampling, stream=stream)


def _body(model: str, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(_invocation(model, messages, **params).body)
    return body


HI = [{"role": "user", "content": "Hi"}]

# -------------------------------------------------------------------------------------------- sampling


def test_sampling_defaults() -> None:
    """max_tokens_to_sample defaults to 256; stop sequences to none; the rest are left to the model."""
    sampling = validate_sampling(resolve_model(TEXT_MODEL))
    assert (sampling.max_tokens, sampling.stop_sequences) == (256, ())
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (None, None, None)
    assert _body(TEXT_MODEL, HI) == {"prompt": "\n\nHuman: Hi\n\nAssistant:", "max_tokens_to_sample": 256}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens_to_sample", 0),
        ("max_tokens_to_sample", -1),
        ("max_tokens_to_sample", 4097),
        ("max_tokens_to_sample", 1.5),
        ("max_tokens_to_sample", "256"),
        ("max_tokens_to_sample", True),
        ("max_tokens_to_sample", None),
        ("temperature", -0.1),
        ("temperature", 1.01),
        ("temperature", math.nan),
        ("temperature", math.inf),
        ("temperature", "0.5"),
        ("temperature", True),
        ("top_p", -0.01),
        ("top_p", 2),
        ("top_p", math.nan),
        ("top_k", -1),
        ("top_k", 501),
        ("top_k", 5.0),
        ("top_k", False),
        ("stop_sequences", "END"),
        ("stop_sequences", b"END"),
        ("stop_sequences", 3),
        ("stop_sequences", {"a": 1}),
        ("stop_sequences[0]", [""]),
        ("stop_sequences[1]", ["ok", 3]),
    ],
)
def test_bad_sampling_values_name_the_field(field: str, value: object) -> None:
    """Every out-of-range or mistyped parameter raises InvalidRequestError naming it."""
    argument = field.split("[")[0]
    with pytest.raises(InvalidRequestError) as info:
        validate_sampling(resolve_model(TEXT_MODEL), **{argument: value})
    assert info.value.field == field


@pytest.mark.parametrize(
    ("model", "limit"),
    [(TEXT_MODEL, 4096), (MESSAGES_MODEL, 4096), ("anthropic.claude-sonnet-4-5-20250929-v1:0", 64_000)],
)
def test_max_tokens_bounded_by_the_model(model: str, limit: int) -> None:
    """1 and the model's own maximum are accepted; one more is refused with the bound in the message."""
    resolved = resolve_model(model)
    assert validate_sampling(resolved, max_tokens_to_sample=1).max_tokens == 1
    assert validate_sampling(resolved, max_tokens_to_sample=limit).max_tokens == limit
    with pytest.raises(InvalidRequestError, match=f"1..{limit}"):
        validate_sampling(resolved, max_tokens_to_sample=limit + 1)


def test_unknown_models_have_unchecked_limits() -> None:
    """A model the registry does not know gets no client-side max_tokens limit."""
    assert validate_sampling(resolve_model("anthropic.claude-next"), max_tokens_to_sample=10**7).max_tokens == 10**7


@given(params=valid_sampling())
def test_valid_sampling_reaches_the_body(params: dict[str, Any]) -> None:
    """Each valid parameter is accepted and sent under its wire name; unset ones are not sent."""
    for model, tokens_key in ((TEXT_MODEL, "max_tokens_to_sample"), (MESSAGES_MODEL, "max_tokens")):
        body = _body(model, HI, **params)
        assert body[tokens_key] == params.get("max_tokens_to_sample", 256)
        assert body.get("stop_sequences", []) == params.get("stop_sequences", [])
        for name in ("temperature", "top_p", "top_k"):
            assert body.get(name) == params.get(name)


# ---------------------------------------------------------------------------------------------- bodies


def test_text_completion_body() -> None:
    """A text-completion model gets ``prompt`` and ``max_tokens_to_sample``, system text before the first turn."""
    body = _body(
        TEXT_MODEL,
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}],
        stop_sequences=["END"],
        temperature=0.5,
    )
    assert body == {
        "prompt": "You are a pirate.\n\nHuman: Hi\n\nAssistant:",
        "max_tokens_to_sample": 256,
        "stop_sequences": ["END"],
        "temperature": 0.5,
    }


def test_messages_body() -> None:
    """A Messages model gets the fixed anthropic_version, max_tokens, system and messages; no model or stream."""
    body = _body(MESSAGES_MODEL, [*HI, {"role": "assistant", "content": "Well"}], system="Be brief.", top_k=5)
    assert body == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well"}],
        "top_k": 5,
    }


@given(messages=conversations(blocks=True))
def test_messages_body_always_has_the_bedrock_version(messages: list[dict[str, Any]]) -> None:
    """Every Messages body, whatever the conversation, carries ``anthropic_version: bedrock-2023-05-31``."""
    body = _body(MESSAGES_MODEL, messages)
    assert body["anthropic_version"] == ANTHROPIC_VERSION == "bedrock-2023-05-31"
    assert "model" not in body
    assert "stream" not in body
    assert ("system" in body) is any(m["role"] == "system" for m in messages)


@pytest.mark.parametrize("model", ["us.anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-next"])
def test_profiles_and_unknown_models_use_the_messages_body(model: str) -> None:
    """Profile ids of Messages models, and unknown ids, get the Messages body."""
    assert _body(model, HI)["anthropic_version"] == ANTHROPIC_VERSION


def test_text_completion_body_rejects_blocks() -> None:
    """Content blocks sent to a text-completion model fail before any I/O, naming the messages."""
    with pytest.raises(InvalidRequestError, match="text-completion"):
        _body(TEXT_MODEL, [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])


def test_body_is_compact_utf8_json() -> None:
    """The body is UTF-8 JSON (non-ASCII kept as is), with no NaN."""
    invocation = _invocation(MESSAGES_MODEL, [{"role": "user", "content": "héllo ☃"}])
    assert "héllo ☃".encode() in invocation.body
    assert b": " not in invocation.body


def test_build_body_matches_prepared_bytes() -> None:
    """The prepared bytes are the JSON of build_body."""
    invocation = _invocation(MESSAGES_MODEL, HI)
    assert json.loads(invocation.body) == build_body(invocation.model, invocation.conversation, invocation.sampling)


# ---------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("model", "stream", "path"),
    [
        ("anthropic.claude-v2:1", False, "/model/anthropic.claude-v2%3A1/invoke"),
        (
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            True,
            "/model/us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke-with-response-stream",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            False,
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2F"
            "us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke",
        ),
    ],
)
def test_invoke_path_vectors(model: str, stream: bool, path: str) -> None:
    """The protocol notes' worked paths: ``:`` as ``%3A`` and an ARN's ``/`` as ``%2F``."""
    assert invoke_path(model, stream=stream) == path
    assert _invocation(model if "arn:" not in model else MESSAGES_MODEL, HI, stream=stream).path.endswith(
        "/invoke-with-response-stream" if stream else "/invoke"
    )


@given(model_id=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80))
def test_invoke_path_encodes_like_botocore(model_id: str) -> None:
    """The model id segment is exactly botocore's ``percent_encode`` of it (safe set ``-._~``)."""
    assert invoke_path(model_id, stream=False) == f"/model/{botocore.utils.percent_encode(model_id)}/invoke"


# ------------------------------------------------------------------------------- differential: anthropic


@pytest.fixture(scope="module")
def anthropic_body() -> Iterator[Callable[..., tuple[str, dict[str, Any]]]]:
    """Send a call through the anthropic SDK's Bedrock client into a mock transport; return its path and body."""
    captured: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        captured.append(request)
        reply: dict[str, Any] = {
            "id": "msg_bdrk_1",
            "type": "message",
            "role": "assistant",
            "model": "m",
            "content": [],
        }
        reply |= {"stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}
        return httpx2.Response(200, json=reply)

    client = anthropic.AnthropicBedrock(
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_region="us-east-1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )

    def send(**kwargs: Any) -> tuple[str, dict[str, Any]]:
        client.messages.create(**kwargs)
        request = captured.pop()
        return request.url.raw_path.decode(), json.loads(request.content)

    yield send
    client.close()


@settings(deadline=None)  # each example goes through the SDK's whole request pipeline
@given(
    contents=st.lists(st.one_of(texts, text_blocks), min_size=1, max_size=5),
    system=st.none() | texts,
    max_tokens=st.integers(1, 4096),
    stops=st.lists(texts, max_size=2),
    model=st.sampled_from(
        [MESSAGES_MODEL, "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-opus-4-7"]
    ),
)
def test_messages_body_agrees_with_the_anthropic_sdk(
    anthropic_body: Callable[..., tuple[str, dict[str, Any]]],
    contents: list[Any],
    system: str | None,
    max_tokens: int,
    stops: list[str],
    model: str,
) -> None:
    """Our body equals the anthropic SDK's for the same call, except that our anthropic_version is fixed."""
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]
    kwargs: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system is not None:
        kwargs["system"] = system
    if stops:
        kwargs["stop_sequences"] = stops
    sdk_path, sdk_body = anthropic_body(**kwargs)
    ours = _invocation(model, messages, system=system, max_tokens_to_sample=max_tokens, stop_sequences=stops)
    our_body = json.loads(ours.body)
    assert our_body.pop("anthropic_version") == "bedrock-2023-05-31"
    sdk_body.pop("anthropic_version")  # the SDK sends its global API version, which older models refuse
    assert our_body == sdk_body
    assert unquote(ours.path) == unquote(sdk_path)  # same model id; the SDK leaves ':' raw on the wire


# ------------------------------------------------------------------------------------------- responses


def _parse(invocation: Invocation, body: object, headers: dict[str, str] | None = None) -> ChatCompletion:
    return parse_invoke_response(invocation, headers or {}, json.dumps(body).encode(), latency=0.25)


@pytest.mark.parametrize(
    ("stop_reason", "stop", "expected"),
    [
        ("stop_sequence", "\n\nHuman:", ("end_turn", None)),
        ("stop_sequence", None, ("end_turn", None)),
        ("stop_sequence", "END", ("stop_sequence", "END")),
        ("max_tokens", None, ("max_tokens", None)),
    ],
)
def test_text_completion_response(stop_reason: str, stop: str | None, expected: tuple[str, str | None]) -> None:
    """Text completions: the turn's leading space is dropped and stop reasons join the Messages vocabulary."""
    invocation = _invocation(TEXT_MODEL, HI)
    headers = {
        "x-amzn-requestid": "req-1",
        "x-amzn-bedrock-input-token-count": "12",
        "x-amzn-bedrock-output-token-count": "3",
        "x-amzn-bedrock-invocation-latency": "926",
    }
    chat = _parse(invocation, {"completion": " Hello!", "stop_reason": stop_reason, "stop": stop}, headers)
    assert chat.completion == "Hello!"
    assert (chat.stop_reason, chat.stop) == expected
    assert chat.usage == Usage(input_tokens=12, output_tokens=3, invocation_latency_ms=926)
    assert (chat.request_id, chat.latency, chat.model) == ("req-1", 0.25, TEXT_MODEL)
    assert chat["messages"] == [*HI, {"role": "assistant", "content": "Hello!"}]


@pytest.mark.parametrize("stop_reason", ["end_turn", "max_tokens", "tool_use", "refusal"])
def test_messages_response(stop_reason: str) -> None:
    """Messages: text of the text blocks, the stop reason as sent, usage from the body over the headers."""
    invocation = _invocation(MESSAGES_MODEL, HI)
    body = {
        "id": "msg_bdrk_01",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 265},
    }
    chat = _parse(
        invocation, body, {"x-amzn-bedrock-input-token-count": "29", "x-amzn-bedrock-invocation-latency": "5"}
    )
    assert (chat.completion, chat.stop_reason, chat.stop, chat.id) == ("Hello there", stop_reason, None, "msg_bdrk_01")
    assert chat.usage == Usage(input_tokens=30, output_tokens=265, invocation_latency_ms=5)
    assert chat.messages[-1] == {"role": "assistant", "content": "Hello there"}


def test_messages_stop_sequence() -> None:
    """A Messages stop on a caller's sequence reports ``stop_sequence`` and the sequence."""
    invocation = _invocation(MESSAGES_MODEL, HI, stop_sequences=["END"])
    chat = _parse(invocation, {"content": [], "stop_reason": "stop_sequence", "stop_sequence": "END"})
    assert (chat.stop_reason, chat.stop) == ("stop_sequence", "END")


def test_tool_use_reply_keeps_its_blocks() -> None:
    """A reply with a tool_use block is appended as blocks, so it can be sent back with the tool result."""
    invocation = _invocation(MESSAGES_MODEL, HI)
    content = [{"type": "text", "text": "Let me check."}, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]
    chat = _parse(invocation, {"content": content, "stop_reason": "tool_use"})
    assert chat.messages[-1] == {"role": "assistant", "content": content}
    assert chat.content == content
    assert chat.completion == "Let me check."


@pytest.mark.parametrize("model", [TEXT_MODEL, MESSAGES_MODEL])
def test_prefill_is_completed_not_duplicated(model: str) -> None:
    """With a trailing assistant prefill, chat['messages'] shows it whole; completion is only the new text."""
    invocation = _invocation(model, [*HI, {"role": "assistant", "content": "The answer is"}])
    if model == TEXT_MODEL:
        assert json.loads(invocation.body)["prompt"].endswith("\n\nAssistant: The answer is")
        body: dict[str, Any] = {"completion": " 42.", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}
    else:
        body = {"content": [{"type": "text", "text": " 42."}], "stop_reason": "end_turn"}
    chat = _parse(invocation, body)
    assert chat.completion == " 42."
    assert chat["messages"] == [*HI, {"role": "assistant", "content": "The answer is 42."}]
    assert chat.stop_reason == "end_turn"


def test_system_messages_stay_in_the_returned_conversation() -> None:
    """The returned messages are the input as given (system included) plus the reply, ready for the next turn."""
    messages = [{"role": "system", "content": "Be brief."}, *HI]
    chat = _parse(_invocation(MESSAGES_MODEL, messages), {"content": [{"type": "text", "text": "Yo"}]})
    assert chat["messages"] == [*messages, {"role": "assistant", "content": "Yo"}]


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (TEXT_MODEL, "not json"),
        (TEXT_MODEL, [1, 2]),
        (TEXT_MODEL, {"completion": 3}),
        (TEXT_MODEL, {}),
        (MESSAGES_MODEL, {"content": "text"}),
        (MESSAGES_MODEL, {"content": ["text"]}),
        (MESSAGES_MODEL, {}),
    ],
)
def test_malformed_success_bodies_raise_api_errors(model: str, body: object) -> None:
    """A 200 whose body is not the expected shape raises a typed APIError, never a KeyError or AttributeError."""
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(APIError, match="unexpected response body") as info:
        parse_invoke_response(_invocation(model, HI), {"x-amzn-requestid": "r"}, raw, latency=0)
    assert info.value.request_id == "r"


@given(body=json_values | response_like_objects, model=st.sampled_from([TEXT_MODEL, MESSAGES_MODEL]))
def test_any_success_body_parses_or_raises_a_typed_error(body: object, model: str) -> None:
    """Whatever JSON a 200 carries, parsing gives a ChatCompletion or an APIError, nothing else."""
    try:
        chat = _parse(_invocation(model, HI), body)
    except APIError:
        return
    assert isinstance(chat.completion, str)
    json.dumps(chat.to_dict())


REPLY = {"content": [{"type": "text", "text": "h\u00e9llo \U0001f600"}], "stop_reason": "end_turn", "usage": {}}


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(REPLY).encode(),  # ASCII with escapes: the decoded fast path
        json.dumps(REPLY, ensure_ascii=False).encode(),  # raw UTF-8
        b"\xef\xbb\xbf" + json.dumps(REPLY).encode(),  # a UTF-8 BOM: json.loads' own detection
        json.dumps(REPLY, ensure_ascii=False).encode("utf-16-le"),  # "{" then NUL: UTF-16, as json.loads reads it
        json.dumps(REPLY, ensure_ascii=False).encode("utf-32-le"),
        json.dumps(REPLY, ensure_ascii=False).encode("utf-16"),  # with its BOM
    ],
)
def test_success_bodies_decode_as_json_loads_decodes_them(raw: bytes) -> None:
    """A reply is read in whichever encoding json.loads detects for those bytes, fast path or not."""
    chat = parse_invoke_response(_invocation(MESSAGES_MODEL, HI), {}, raw, latency=0)
    assert chat.completion == "h\u00e9llo \U0001f600" == json.loads(raw)["content"][0]["text"]


@pytest.mark.parametrize("raw", [b'{"content": "\xff"}', b"{", b'{"\xed\xa0\x80": 1}'])
def test_undecodable_success_bodies_agree_with_json_loads(raw: bytes) -> None:
    """Bytes json.loads refuses are a malformed reply; a lone surrogate it lets through parses (then fails on shape)."""
    try:
        json.loads(raw)
    except ValueError:
        with pytest.raises(APIError, match="not JSON"):
            parse_invoke_response(_invocation(MESSAGES_MODEL, HI), {}, raw, latency=0)
    else:
        with pytest.raises(APIError, match="no 'content' list"):
            parse_invoke_response(_invocation(MESSAGES_MODEL, HI), {}, raw, latency=0)


# ---------------------------------------------------------------------------------------------- errors


def test_error_response_from_header() -> None:
    """A throttle becomes ThrottlingError with the message, code and request id."""
    error = parse_error_response(
        429,
        {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/", "x-amzn-requestid": "r1"},
        b'{"message":"Too many requests"}',
    )
    assert isinstance(error, ThrottlingError)
    assert (error.code, error.service_message, error.request_id, error.status) == (
        "ThrottlingException",
        "Too many requests",
        "r1",
        429,
    )


def test_anthropic_style_error_body() -> None:
    """The Anthropic-style error body maps through the same table."""
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}'
    error = parse_error_response(400, {"request-id": "r2"}, body)
    assert isinstance(error, ValidationError)
    assert (error.service_message, error.request_id) == ("bad", "r2")


def test_non_json_error_body_becomes_the_message() -> None:
    """An HTML or text error page is kept (truncated) as the message."""
    error = parse_error_response(502, {}, b"<html>Bad Gateway</html>")
    assert "Bad Gateway" in error.service_message


@given(status=st.integers(300, 599), body=json_values, header=st.none() | st.text(max_size=30))
def test_any_error_response_is_an_api_error(status: int, body: object, header: str | None) -> None:
    """Whatever the status, header and body, an error response becomes an APIError."""
    headers = {} if header is None else {"x-amzn-errortype": header}
    error = parse_error_response(status, headers, json.dumps(body).encode())
    assert isinstance(error, APIError)
    assert error.status == status


def test_usage_from_headers_ignores_garbage() -> None:
    """Token-count headers that are not integers are treated as not reported."""
    usage = usage_from_headers({"x-amzn-bedrock-input-token-count": "12", "x-amzn-bedrock-output-token-count": "x"})
    assert (usage.input_tokens, usage.output_tokens) == (12, None)


_USAGE_HEADERS = (
    "x-amzn-bedrock-input-token-count",
    "x-amzn-bedrock-output-token-count",
    "x-amzn-bedrock-cache-read-input-token-count",
    "x-amzn-bedrock-cache-write-input-token-count",
    "x-amzn-bedrock-invocation-latency",
)
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
_COUNTS = st.one_of(st.none(), st.integers(-5, 10**9), st.booleans(), st.text(max_size=3), st.floats())


@given(
    headers=st.dictionaries(st.sampled_from(_USAGE_HEADERS), st.one_of(st.integers(0, 10**6).map(str), st.text())),
    body=st.one_of(
        st.none(),
        st.integers(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(
            st.sampled_from((*_USAGE_KEYS, "cache_creation")),
            st.one_of(
                _COUNTS,
                st.dictionaries(st.sampled_from(("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")), _COUNTS),
            ),
        ),
    ),
)
def test_invoke_usage_is_the_headers_merged_with_the_body(headers: dict[str, str], body: object) -> None:
    """The one-pass usage of an InvokeModel reply equals the three-object form it replaced."""
    assert invoke_usage(headers, body) == usage_from_headers(headers).merge(usage_from_body(body))


# ---------------------------------------------------------------------------------------------- streams


def test_text_completion_stream() -> None:
    """Text-completion chunks add up to the completion; the last one carries the stop reason."""
    assembler = StreamAssembler(_invocation(TEXT_MODEL, HI, stream=True))
    events: list[dict[str, Any]] = [
        {"completion": " Hel", "stop_reason": None, "stop": None},
        {"completion": "lo", "stop_reason": None, "stop": None},
        {
            "completion": "!",
            "stop_reason": "stop_sequence",
            "stop": "\n\nHuman:",
            "amazon-bedrock-invocationMetrics": {"inputTokenCount": 5, "outputTokenCount": 3},
        },
    ]
    assert [assembler.feed(event).text for event in events] == ["Hel", "lo", "!"]
    chat = assembler.completion(request_id="r", latency=1.0)
    assert (chat.completion, chat.stop_reason, chat.usage.input_tokens) == ("Hello!", "end_turn", 5)


def _messages_events() -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 7, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f"}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ": 1}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"invocationLatency": 50, "firstByteLatency": 9}},
    ]


def test_messages_stream() -> None:
    """Messages events build the text, the blocks (tool input parsed), the stop reason and the usage."""
    assembler = StreamAssembler(_invocation(MESSAGES_MODEL, HI, stream=True))
    texts_out = [assembler.feed(event).text for event in _messages_events()]
    assert "".join(texts_out) == "Hi!"
    chat = assembler.completion(request_id="r", latency=1.0)
    assert chat.content == [
        {"type": "text", "text": "Hi!"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
    ]
    assert (chat.stop_reason, chat.id) == ("tool_use", "msg_1")
    assert chat.usage == Usage(input_tokens=7, output_tokens=9, invocation_latency_ms=50, first_byte_latency_ms=9)


def test_stream_without_its_final_event_is_incomplete() -> None:
    """A stream cut before message_stop raises IncompleteStreamError carrying the text received."""
    assembler = StreamAssembler(_invocation(MESSAGES_MODEL, HI, stream=True))
    for event in _messages_events()[:4]:
        assembler.feed(event)
    with pytest.raises(IncompleteStreamError) as info:
        assembler.completion(request_id="r", latency=1.0)
    assert info.value.partial_text == "Hi!"


@given(events=st.lists(response_like_objects, max_size=8), model=st.sampled_from([TEXT_MODEL, MESSAGES_MODEL]))
def test_any_stream_events_give_chunks_or_typed_errors(events: list[dict[str, Any]], model: str) -> None:
    """Whatever JSON objects a stream carries, the assembler yields chunks or raises a BedrockError, nothing else."""
    assembler = StreamAssembler(_invocation(model, HI, stream=True))
    try:
        for event in events:
            assert isinstance(assembler.feed(event).text, str)
        chat = assembler.completion(request_id=None, latency=0.0)
    except BedrockError:
        return
    assert isinstance(chat.completion, str)


# --------------------------------------------------------------------------------------------- results


def _chat() -> ChatCompletion:
    return _parse(_invocation(MESSAGES_MODEL, HI), {"id": "m1", "content": [{"type": "text", "text": "Yo"}]})


def test_chat_completion_is_frozen() -> None:
    """ChatCompletion is an immutable value."""
    chat = _chat()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        chat.completion = "changed"  # type: ignore[misc]


def test_chat_completion_keys() -> None:
    """Fields read as keys too (``chat["messages"]``); unknown keys raise KeyError; to_dict is JSON."""
    chat = _chat()
    assert chat["messages"] is chat.messages
    assert chat["completion"] == "Yo"
    assert chat["usage"] == chat.usage.to_dict()
    assert "stop_reason" in chat
    assert "secret" not in chat
    assert list(chat) == list(chat.keys())
    with pytest.raises(KeyError):
        chat["nope"]
    as_dict = chat.to_dict()
    assert set(as_dict) == set(chat.keys()) >= {"messages", "completion", "stop_reason", "stop", "model", "usage"}
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_to_dict_is_json_even_with_image_bytes() -> None:
    """A conversation given raw image bytes still yields a JSON-serialisable result."""
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b"\x89PNG"}}
    invocation = _invocation(MESSAGES_MODEL, [{"role": "user", "content": [image]}])
    json.dumps(_parse(invocation, {"content": [{"type": "text", "text": "a PNG"}]}).to_dict())


def test_usage_merge_prefers_reported_values() -> None:
    """Usage.merge takes the other side's reported values and keeps ours where it reported nothing."""
    merged = Usage(input_tokens=1, output_tokens=2).merge(Usage(output_tokens=5, invocation_latency_ms=7))
    assert merged == Usage(input_tokens=1, output_tokens=5, invocation_latency_ms=7)
