"""#15: structured outputs, effort, thinking and citations in results, extra_body and extra_headers.

Replies the emulator's fake model cannot give yet (schema-conforming JSON, thinking with signatures,
citations) come from :class:`ScriptedBedrock`, a loopback server speaking Bedrock's wire shapes; what
the emulator checks (bodies it accepts or refuses, SigV4 over extra headers) is checked against it.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import jsonschema
import pytest
from e2e_helpers import emulator_client
from scripted_bedrock import ScriptedBedrock

from bedrock_chat import (
    AnthropicBedrock,
    AuthenticationError,
    ChatCompletion,
    EventStreamError,
    InvalidRequestError,
    StructuredOutputError,
    Surface,
    ValidationError,
    resolve_model,
)
from bedrock_chat._cli.main import main as cli_main
from bedrock_chat._core import structured
from bedrock_chat._core.prompt import normalize_conversation
from bedrock_chat._core.protocol import SamplingParams, prepare_invocation
from bedrock_chat._core.responses import STOP_REASONS, StreamAssembler
from bedrock_chat.emulator import BedrockEmulator

pytestmark = pytest.mark.asyncio

OPUS_47 = "anthropic.claude-opus-4-7"  # on both surfaces, effort and structured outputs
HI = [{"role": "user", "content": "Hi"}]
SURFACES = ["invoke", "messages-endpoint"]
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
FORMAT = {"format": {"type": "json_schema", "schema": SCHEMA}}


def text(value: str, **more: Any) -> dict[str, Any]:
    return {"type": "text", "text": value, **more}


@pytest.fixture
def scripted() -> Iterator[ScriptedBedrock]:
    server = ScriptedBedrock([text("Hello")]).start()
    yield server
    server.close()


def client_for(server: ScriptedBedrock, **kwargs: Any) -> AnthropicBedrock:
    return AnthropicBedrock(
        access_key="AKIDEXAMPLE", secret_key="secret", region="us-east-1", endpoint_url=server.url, **kwargs
    )


async def ask(client: AnthropicBedrock, *, stream: bool, **kwargs: Any) -> ChatCompletion:
    """create(), whole or streamed: both must give the same completion."""
    kwargs.setdefault("model", OPUS_47)
    kwargs.setdefault("messages", HI)
    kwargs.setdefault("max_tokens_to_sample", 2000)
    if not stream:
        chat: ChatCompletion = await client.ChatCompletion.create(**kwargs)
        return chat
    result = await client.ChatCompletion.create(stream=True, **kwargs)
    async with result:
        async for _ in result:
            pass
    streamed: ChatCompletion = result.completion
    return streamed


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"output_config": "low"}, "output_config"),
        ({"output_config": {}}, "output_config"),
        ({"output_config": {"speed": "fast"}}, "output_config.speed"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        (
            {"output_config": {"effort": "max"}, "model": "anthropic.claude-opus-4-5-20251101-v1:0"},
            "output_config.effort",
        ),
        (
            {"output_config": {"effort": "low"}, "model": "anthropic.claude-3-5-haiku-20241022-v1:0"},
            "output_config.effort",
        ),
        ({"output_config": {"effort": "low"}, "model": "anthropic.claude-v2"}, "output_config"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format.schema"),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": SCHEMA, "name": "x"}}},
            "output_config.format.name",
        ),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {"type": "nonsense"}}}},
            "output_config.format.schema['type']",
        ),
        ({"output_config": FORMAT, "model": "anthropic.claude-3-haiku-20240307-v1:0"}, "output_config.format"),
        ({"tools": [{"name": "t", "input_schema": {"type": "object"}, "strict": "yes"}]}, "tools[0].strict"),
        (
            {
                "tools": [{"name": "t", "input_schema": {"type": "object"}, "strict": True}],
                "model": "anthropic.claude-3-haiku-20240307-v1:0",
            },
            "tools[0].strict",
        ),
        ({"extra_body": ["x"]}, "extra_body"),
        ({"extra_body": {"stream": True}}, 'extra_body["stream"]'),
        ({"extra_body": {"metadata": {1, 2}}}, "extra_body"),
        ({"extra_headers": {"Authorization": "Bearer x"}}, "extra_headers['Authorization']"),
        ({"extra_headers": {"host": "example.com"}}, "extra_headers['host']"),
        ({"extra_headers": {"X-Amz-Date": "20260101T000000Z"}}, "extra_headers['X-Amz-Date']"),
        ({"extra_headers": {"x-amz-security-token": "t"}}, "extra_headers['x-amz-security-token']"),
        ({"extra_headers": {"Content-Length": "1"}}, "extra_headers['Content-Length']"),
        ({"extra_headers": {"content-type": "text/plain"}}, "extra_headers['content-type']"),
        ({"extra_headers": {"x-trace": "a", "X-Trace": "b"}}, "extra_headers['X-Trace']"),
        ({"extra_headers": {"bad name": "v"}}, "extra_headers"),
    ],
)
async def test_bad_arguments_are_refused_before_any_io(
    scripted: ScriptedBedrock, kwargs: dict[str, Any], field: str
) -> None:
    """Each bad argument is an InvalidRequestError naming its field, and nothing reaches the server."""
    async with client_for(scripted) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await ask(client, stream=False, **kwargs)
    assert caught.value.field == field
    assert scripted.requests == []


async def test_a_header_value_is_never_shown(scripted: ScriptedBedrock) -> None:
    """A header value with a line break is refused without quoting it: it may be a secret."""
    async with client_for(scripted) as client:
        with pytest.raises(InvalidRequestError) as caught:
            await ask(client, stream=False, extra_headers={"x-api-key": "s3cr3t\r\nx: y"})
    assert "s3cr3t" not in str(caught.value)
    assert scripted.requests == []


# ---------------------------------------------------------------------------------------------- structured outputs


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("surface", SURFACES)
async def test_structured_output_is_parsed_and_valid_for_its_schema(
    scripted: ScriptedBedrock, surface: str, stream: bool
) -> None:
    """output_config.format goes in the body; chat.parsed is the reply's JSON, valid for the schema."""
    scripted.content = [text('{"name": "Ada", '), text('"age": 36}')]
    async with client_for(scripted) as client:
        chat = await ask(client, stream=stream, surface=surface, output_config={**FORMAT, "effort": "low"})
    assert scripted.last_body()["output_config"] == {"effort": "low", "format": FORMAT["format"]}
    assert chat.parsed == {"name": "Ada", "age": 36}
    jsonschema.validate(chat.parsed, SCHEMA)


NESTED_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "status": {"enum": ["draft", "final"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "author": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": False,
        },
    },
    "required": ["title", "status", "tags", "author"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("surface", SURFACES)
async def test_structured_output_from_the_emulator_is_parsed_and_valid(
    bedrock_emulator: BedrockEmulator, surface: str, stream: bool
) -> None:
    """End to end: the emulator answers output_config.format with JSON for the schema; chat.parsed gives it."""
    output_config = {"format": {"type": "json_schema", "schema": NESTED_SCHEMA}, "effort": "xhigh"}
    async with emulator_client(bedrock_emulator) as client:
        chat = await ask(client, stream=stream, surface=surface, output_config=output_config)
    jsonschema.validate(chat.parsed, NESTED_SCHEMA)
    assert chat.parsed == json.loads(chat.completion)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("reply", "stop_reason", "says"),
    [
        ('{"name": "Ada", "age"', "max_tokens", "not valid JSON"),
        ("I can't help with that.", "refusal", "not valid JSON"),
        ('{"name": "Ada", "age": "thirty-six"}', "end_turn", "does not match the schema"),
    ],
)
async def test_a_reply_that_does_not_conform_is_a_typed_error(
    scripted: ScriptedBedrock, stream: bool, reply: str, stop_reason: str, says: str
) -> None:
    """chat.parsed raises StructuredOutputError with the raw text; the message never quotes the reply."""
    scripted.content, scripted.stop_reason = [text(reply)], stop_reason
    async with client_for(scripted) as client:
        chat = await ask(client, stream=stream, output_config=FORMAT)
    assert chat.completion == reply  # the result itself is whole
    with pytest.raises(StructuredOutputError) as caught:
        chat.parsed  # noqa: B018 -- the property raises
    error = caught.value
    assert says in str(error)
    assert error.text == reply
    assert error.stop_reason == stop_reason
    assert "Ada" not in str(error)
    assert "thirty" not in str(error)
    assert "help" not in str(error)


async def test_parsed_is_none_without_a_format(scripted: ScriptedBedrock) -> None:
    async with client_for(scripted) as client:
        chat = await ask(client, stream=False)
    assert chat.parsed is None


@pytest.mark.parametrize("surface", SURFACES)
async def test_the_emulator_accepts_effort_and_format_on_both_surfaces(
    bedrock_emulator: BedrockEmulator, surface: str
) -> None:
    """Our output_config is a body the emulator (Bedrock's schema) accepts, whole and streamed."""
    async with emulator_client(bedrock_emulator) as client:
        for stream in (False, True):
            chat = await ask(client, stream=stream, surface=surface, output_config={"effort": "xhigh"})
            assert chat.stop_reason == "end_turn"


# ---------------------------------------------------------------------------------------------- thinking


SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds" + "+/=" * 20
THINKING_REPLY: list[dict[str, Any]] = [
    {"type": "thinking", "thinking": "The user wants the weather. I will call the tool.", "signature": SIGNATURE},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
    {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
]
WEATHER = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("surface", SURFACES)
async def test_thinking_and_tool_use_round_trip_byte_exact(
    scripted: ScriptedBedrock, bedrock_emulator: BedrockEmulator, surface: str, stream: bool
) -> None:
    """Thinking blocks keep their signatures in content and messages; sent back, they pass and arrive unchanged."""
    scripted.content, scripted.stop_reason = copy.deepcopy(THINKING_REPLY), "tool_use"
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    thinking = {"type": "adaptive"}
    async with client_for(scripted) as client:
        chat = await ask(client, stream=stream, surface=surface, messages=messages, tools=WEATHER, thinking=thinking)
        assert chat.content == THINKING_REPLY
        assert chat.thinking == THINKING_REPLY[0]["thinking"]
        assert chat.stop_reason == "tool_use"
        assert chat.tool_calls[0]["input"] == {"city": "Paris"}
        assert chat["messages"][-1] == {"role": "assistant", "content": THINKING_REPLY}
        result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18 C"}
        follow_up = [*chat["messages"], {"role": "user", "content": [result]}]
        await ask(client, stream=stream, surface=surface, messages=follow_up, tools=WEATHER, thinking=thinking)
    sent = scripted.requests[-1][1]
    assert json.dumps(SIGNATURE).encode() in sent  # the signature, byte for byte
    assert json.loads(sent)["messages"][1] == {"role": "assistant", "content": THINKING_REPLY}
    # The whole loop against the emulator, which signs its thinking and refuses a signature it did not make:
    # what our client assembled (streamed: from thinking_delta and signature_delta) passes its validation.
    question = [{"role": "user", "content": "get_weather in Paris?"}]
    async with emulator_client(bedrock_emulator) as client:
        first = await ask(
            client, stream=stream, surface=surface, messages=question, tools=WEATHER, thinking=thinking, model=OPUS_47
        )
        assert first.content[0]["type"] == "thinking"
        assert first.content[0]["signature"]
        assert first.thinking == first.content[0]["thinking"]
        assert first.stop_reason == "tool_use"
        call = first.tool_calls[0]
        result = {"type": "tool_result", "tool_use_id": call["id"], "content": "18 C"}
        loop = [*first["messages"], {"role": "user", "content": [result]}]
        answer = await ask(
            client, stream=stream, surface=surface, messages=loop, tools=WEATHER, thinking=thinking, model=OPUS_47
        )
    assert answer.stop_reason == "end_turn"


# ---------------------------------------------------------------------------------------------- citations


CITATION = {
    "type": "char_location",
    "cited_text": "The grass is green.",
    "document_index": 0,
    "document_title": "Facts",
    "start_char_index": 0,
    "end_char_index": 19,
}
DOCUMENT = {
    "type": "document",
    "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green. The sky is blue."},
    "title": "Facts",
    "citations": {"enabled": True},
}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("surface", SURFACES)
async def test_citations_are_kept_and_assembled(scripted: ScriptedBedrock, surface: str, stream: bool) -> None:
    """Text blocks keep their citations (streamed ones from citations_delta), in content and in messages."""
    reply = [
        text("According to the document, "),
        text("the grass is green.", citations=[CITATION, {**CITATION, "document_index": 1}]),
    ]
    scripted.content = copy.deepcopy(reply)
    messages = [{"role": "user", "content": [DOCUMENT, text("What color is the grass?")]}]
    async with client_for(scripted) as client:
        chat = await ask(client, stream=stream, surface=surface, messages=messages)
    assert scripted.last_body()["messages"][0]["content"][0] == DOCUMENT
    assert chat.content == reply
    assert chat.completion == "According to the document, the grass is green."
    assert chat["messages"][-1]["content"] == reply


@pytest.mark.parametrize("surface", SURFACES)
async def test_the_emulator_accepts_document_blocks(bedrock_emulator: BedrockEmulator, surface: str) -> None:
    async with emulator_client(bedrock_emulator) as client:
        chat = await ask(
            client, stream=False, surface=surface, messages=[{"role": "user", "content": [DOCUMENT, text("Grass?")]}]
        )
    assert chat.stop_reason == "end_turn"


# ---------------------------------------------------------------------------------------------- stop reasons


@pytest.mark.parametrize("stop_reason", STOP_REASONS)
@pytest.mark.parametrize("surface", SURFACES)
async def test_every_stop_reason_comes_through_on_both_surfaces(
    scripted: ScriptedBedrock, surface: str, stop_reason: str
) -> None:
    scripted.stop_reason = stop_reason
    async with client_for(scripted) as client:
        for stream in (False, True):
            chat = await ask(client, stream=stream, surface=surface)
            assert chat.stop_reason == stop_reason


# ---------------------------------------------------------------------------------------------- extra_body


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("surface", SURFACES)
async def test_extra_body_is_merged_and_wins(scripted: ScriptedBedrock, surface: str, stream: bool) -> None:
    async with client_for(scripted) as client:
        await ask(
            client, stream=stream, surface=surface, extra_body={"max_tokens": 7, "context_management": {"edits": []}}
        )
    body = scripted.last_body()
    assert body["max_tokens"] == 7
    assert body["context_management"] == {"edits": []}


@pytest.mark.parametrize("surface", SURFACES)
async def test_extra_body_reaches_the_emulator(bedrock_emulator: BedrockEmulator, surface: str) -> None:
    """A field Bedrock does not know is sent: the emulator refuses it by name."""
    async with emulator_client(bedrock_emulator) as client:
        with pytest.raises(ValidationError, match="not_a_field"):
            await ask(client, stream=False, surface=surface, extra_body={"not_a_field": 1})
        chat = await ask(client, stream=False, surface=surface, extra_body={"metadata": {"user_id": "u-1"}})
    assert chat.stop_reason == "end_turn"


# ---------------------------------------------------------------------------------------------- extra_headers


class Recorder(httpx.AsyncBaseTransport):
    """httpx's own transport, keeping each request; ``tamper`` changes a header after it was signed."""

    def __init__(self, tamper: tuple[str, str] | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []
        self.tamper = tamper

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.tamper is not None:
            request.headers[self.tamper[0]] = self.tamper[1]
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("surface", SURFACES)
async def test_extra_headers_are_signed_and_sent(bedrock_emulator: BedrockEmulator, surface: str) -> None:
    """The emulator verifies SigV4: the header is in SignedHeaders, and changing it after signing is refused."""
    recorder = Recorder()
    async with recorder, emulator_client(bedrock_emulator, transport=recorder) as client:  # a given transport is ours
        chat = await ask(client, stream=False, surface=surface, extra_headers={"X-Team": "search"})
    assert chat.stop_reason == "end_turn"
    sent = recorder.requests[-1].headers
    assert sent["x-team"] == "search"
    assert "x-team" in sent["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    tampered = Recorder(tamper=("x-team", "other"))
    async with tampered, emulator_client(bedrock_emulator, transport=tampered, max_retries=0) as client:
        with pytest.raises(AuthenticationError):
            await ask(client, stream=False, surface=surface, extra_headers={"X-Team": "search"})


async def test_an_extra_header_replaces_ours(scripted: ScriptedBedrock) -> None:
    async with client_for(scripted) as client:
        await ask(
            client,
            stream=False,
            surface="messages-endpoint",
            anthropic_beta=["a-1"],
            extra_headers={"Anthropic-Beta": "b-2"},
        )
    beta = [line for line in scripted.requests[-1][0] if line.lower().startswith("anthropic-beta:")]
    assert beta == ["anthropic-beta: b-2"]


# ---------------------------------------------------------------------------------------------- CLI


async def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """The chat command in a worker thread (it runs its own event loop), stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with anyio.fail_after(60):
        code = await anyio.to_thread.run_sync(cli_main, argv)
    return code, out.getvalue(), err.getvalue()


async def test_cli_json_schema_prints_the_parsed_json(
    scripted: ScriptedBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    scripted.content = [text('{"age": 36, "name": "Ada"}')]
    argv = [
        "chat",
        "--model",
        OPUS_47,
        "--endpoint-url",
        scripted.url,
        "--effort",
        "high",
        "--json-schema",
        str(schema_file),
        "Who?",
    ]
    code, out, err = await run_cli(argv, monkeypatch)
    assert (code, err) == (0, "")
    assert json.loads(out) == {"age": 36, "name": "Ada"}
    assert scripted.last_body()["output_config"] == {
        "effort": "high",
        "format": {"type": "json_schema", "schema": SCHEMA},
    }


async def test_cli_json_schema_nonconforming_reply_is_one_line_exit_1(
    scripted: ScriptedBedrock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    scripted.content = [text("Sorry, no.")]
    argv = ["chat", "--model", OPUS_47, "--endpoint-url", scripted.url, "--json-schema", str(schema_file), "Who?"]
    code, out, err = await run_cli(argv, monkeypatch)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("bedrock-chat: StructuredOutputError: the reply is not valid JSON")


async def test_cli_effort_the_model_does_not_take_is_a_usage_error(
    scripted: ScriptedBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [
        "chat",
        "--model",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "--endpoint-url",
        scripted.url,
        "--effort",
        "low",
        "Hi",
    ]
    code, _, err = await run_cli(argv, monkeypatch)
    assert code == 2
    assert "argument --effort:" in err
    assert scripted.requests == []


async def test_cli_json_schema_file_must_be_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "schema.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as caught:
        await run_cli(["chat", "--json-schema", str(bad), "Hi"], monkeypatch)
    assert caught.value.code == 2


async def test_without_jsonschema_only_the_json_is_checked(
    scripted: ScriptedBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jsonschema is optional: absent, a schema-invalid reply still parses, and a non-JSON one still fails."""
    monkeypatch.setattr(structured, "_JSONSCHEMA", [None])
    scripted.content = [text('{"name": 1}')]
    async with client_for(scripted) as client:
        chat = await ask(client, stream=False, output_config=FORMAT)
        assert chat.parsed == {"name": 1}
        scripted.content = [text("no")]
        chat = await ask(client, stream=False, output_config=FORMAT)
    with pytest.raises(StructuredOutputError):
        chat.parsed  # noqa: B018 -- the property raises


async def test_streamed_citations_leave_the_events_unchanged() -> None:
    """The assembler appends to its own copy of a block's citations, never to the event handed to the caller."""
    invocation = prepare_invocation(
        resolve_model(OPUS_47), normalize_conversation(HI), SamplingParams(), stream=True, surface=Surface.INVOKE
    )
    assembler = StreamAssembler(invocation)
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": "", "citations": []}}
    assembler.feed({"type": "message_start", "message": {"id": "m", "usage": {}}})
    assembler.feed(start)
    assembler.feed(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": CITATION}}
    )
    with pytest.raises(EventStreamError):
        assembler.feed({"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": 1}})
    assembler.feed({"type": "content_block_stop", "index": 0})
    assembler.feed({"type": "message_stop"})
    assert start["content_block"] == {"type": "text", "text": "", "citations": []}
    chat = assembler.completion(request_id=None, latency=0.0)
    assert chat.content == [{"type": "text", "text": "", "citations": [CITATION]}]
