"""Credentials that a hostile server echoes back, and credentials in tracebacks that show local variables.

A small server on port 0 plays the hostile peer: it reads each request and answers with the request's
credentials (and the secret key it was told) echoed in every shape a server might produce (``\\/``,
``\\u`` escapes of every character or of some, percent-encoding), in the error body, in the
error-type and request-id headers, in a mid-stream exception frame, in an SSE ``error`` event and in
a response header logged at DEBUG. None of it may reach an error's text, attributes or a traceback
formatted with ``capture_locals=True``; and failures at every depth (signing, a refused connection,
a dropped one, a service error, a stream error) on every transport leave no credential in any frame.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.abc
import pytest
from e2e_helpers import child_environment

from bedrock_chat import AnthropicBedrock, APIError, BedrockError, CredentialsError, EventStreamError, RetryPolicy
from bedrock_chat._core.eventstream import encode_chunk_event, encode_exception_event
from bedrock_chat._core.sse import encode_event
from bedrock_chat._http.credentials import BotocoreCredentialSource
from bedrock_chat._http.transport import _HEADER_LOGGERS
from reliability.reliability_helpers import LoopbackServer, read_request

MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
MESSAGES_MODEL = "anthropic.claude-opus-4-7"
HI = [{"role": "user", "content": "tell me a secret"}]
ACCESS_KEY = "AKIDCANARYEXAMPLE"
CANARY_SECRET = "CanarySecretKey/0123456789+abcdefghijKLMN"
CANARY_TOKEN = "CanarySessionToken/IQoJb3JpZ2luX2VjEXAMPLE+ZZZ="
CANARY_API_KEY = "canary-bedrock-api-key/ABCDEFGH+ijklmnop="
SIGNATURE = re.compile(r"Signature=([0-9a-f]{64})")
BACKENDS = ["httptools", "aiohttp", "httpcore2", "httpx"]

# ---------------------------------------------------------------------------------------------- escapes


def _json_slash(text: str) -> str:
    return text.replace("/", "\\/")


def _json_u_all(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def _json_u_some(text: str) -> str:
    return "".join(f"\\u{ord(c):04X}" if i % 3 == 1 else c for i, c in enumerate(text))


def _percent(text: str) -> str:
    return quote(text, safe="")


#: How an echo is spelled inside a JSON string (the JSON decoder undoes all of these).
JSON_ESCAPES: dict[str, Callable[[str], str]] = {
    "plain": lambda text: text,
    "slash": _json_slash,
    "u-every-char": _json_u_all,
    "u-some-chars": _json_u_some,
}
#: How an echo is spelled in a body that is not JSON (nothing decodes these before the scrubber).
TEXT_ESCAPES: dict[str, Callable[[str], str]] = {**JSON_ESCAPES, "percent": _percent}


# ---------------------------------------------------------------------------------------------- the server


class EchoServer(LoopbackServer):
    """An HTTP/1.1 server on a free loopback port that answers each request by ``respond(credentials)``.

    ``credentials`` are what the request carried (Authorization and its signature, the session token,
    or the API key), plus the secret key of a signed request (the test knows it); ``respond`` returns
    the raw response bytes, or None to drop the connection after reading the request.
    """

    def __init__(self, respond: Callable[[list[str]], bytes | None]) -> None:
        super().__init__()
        self.respond = respond
        self.requests = 0

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                lines, _ = await read_request(stream)
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return
            fields = {
                name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:] if ": " in line)
            }
            self.requests += 1
            authorization = fields.get("authorization", "")
            if authorization.startswith("Bearer "):  # a client with an API key has no secret key to leak
                echoed = [authorization, authorization.removeprefix("Bearer ")]
            else:
                echoed = [authorization, *SIGNATURE.findall(authorization), CANARY_SECRET]
                echoed += [fields[name] for name in ("x-amz-security-token",) if name in fields]
            answer = self.respond(echoed)
            if answer is not None:
                try:
                    await stream.send(answer)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return


def _response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    lines += [f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _joined(echoed: list[str], escape: Callable[[str], str]) -> str:
    return " | ".join(escape(value) for value in echoed)


def _client(url: str, backend: str, *, api_key: bool = False) -> AnthropicBedrock:
    keys: dict[str, Any] = (
        {"api_key": CANARY_API_KEY}
        if api_key
        else {"access_key": ACCESS_KEY, "secret_key": CANARY_SECRET, "session_token": CANARY_TOKEN}
    )
    return AnthropicBedrock(
        **keys,
        region="us-east-1",
        endpoint_url=url,
        http_backend=backend,  # type: ignore[arg-type]
        retry_policy=RetryPolicy(max_retries=0),
    )


async def _failure(client: AnthropicBedrock, *, stream: bool = False, model: str = MODEL) -> BedrockError:
    """The error one create (or one stream read to its end) raises."""
    with anyio.fail_after(10):
        try:
            async with client:
                if not stream:
                    await client.ChatCompletion.create(model=model, messages=HI)
                else:
                    async with await client.ChatCompletion.create(model=model, messages=HI, stream=True) as chunks:
                        async for _ in chunks:
                            pass
        except BedrockError as exc:
            return exc
    raise AssertionError("no error was raised")


def _everything_shown(error: BaseException) -> str:
    """str, repr, attributes, and the traceback with every frame's local variables, causes and contexts included."""
    formatted = traceback.TracebackException.from_exception(error, capture_locals=True).format()
    shown = [str(error), repr(error), repr(error.args), repr(vars(error)), "".join(formatted)]
    return "\n".join(shown)


def _assert_no_credential(text: str, signatures: Sequence[str] = ()) -> None:
    for canary in (CANARY_SECRET, CANARY_TOKEN, CANARY_API_KEY, *signatures):
        assert canary not in text


# ---------------------------------------------------------------------------------------------- echoes


@pytest.mark.parametrize("escape", list(JSON_ESCAPES))
@pytest.mark.parametrize("api_key", [False, True], ids=["sigv4", "api-key"])
@pytest.mark.asyncio
async def test_an_error_body_echoing_credentials_in_json_escapes_is_scrubbed(escape: str, api_key: bool) -> None:
    """A JSON error body spelling the credentials with ``\\/`` or ``\\u`` escapes: decoded, then scrubbed."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        body = '{"message": "you sent ' + _joined(echoed, JSON_ESCAPES[escape]) + '", "detail": ["'
        body += JSON_ESCAPES[escape](echoed[-1]) + '"]}'
        return _response("400 Bad Request", {"x-amzn-ErrorType": "ValidationException"}, body.encode())

    async with EchoServer(respond) as server:
        error = await _failure(_client(server.url, "httptools", api_key=api_key))
    assert isinstance(error, APIError), error
    assert error.code == "ValidationException"
    assert "<redacted>" in error.service_message
    assert "<redacted>" in json.dumps(error.body)
    _assert_no_credential(_everything_shown(error), SIGNATURE.findall(seen[0][0]))


@pytest.mark.parametrize("escape", list(TEXT_ESCAPES))
@pytest.mark.asyncio
async def test_a_text_error_body_echoing_credentials_is_scrubbed_however_spelled(escape: str) -> None:
    """A body that is not JSON: the echo is found in the raw text, under JSON escapes, and percent-encoded."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        body = ("<html>denied: " + _joined(echoed, TEXT_ESCAPES[escape]) + "</html>" + "x" * 3000).encode()
        return _response("403 Forbidden", {"Content-Type": "text/html"}, body)

    async with EchoServer(respond) as server:
        error = await _failure(_client(server.url, "httpcore2"))
    assert isinstance(error, APIError), error
    assert error.status == 403
    assert "<redacted>" in str(error)
    _assert_no_credential(_everything_shown(error), SIGNATURE.findall(seen[0][0]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.asyncio
async def test_credentials_echoed_in_the_error_type_and_request_id_headers_are_scrubbed(backend: str) -> None:
    """``x-amzn-ErrorType`` and ``x-amzn-RequestId`` become the error's code and request id: scrubbed too."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        headers = {"x-amzn-ErrorType": f"Bad{echoed[-1]}", "x-amzn-RequestId": _joined(echoed, _percent)}
        return _response("400 Bad Request", headers, b"{}")

    async with EchoServer(respond) as server:
        error = await _failure(_client(server.url, backend))
    assert isinstance(error, APIError), error
    assert "<redacted>" in error.code
    assert "<redacted>" in (error.request_id or "")
    _assert_no_credential(_everything_shown(error), SIGNATURE.findall(seen[0][0]))


def _stream_with_exception(echoed: list[str]) -> bytes:
    chunk = json.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})
    exception = encode_exception_event(
        f"throttling{echoed[-1]}Exception",
        ('{"message": "' + _joined(echoed, _json_u_some) + '"}').encode(),
    )
    body = encode_chunk_event(chunk.encode()) + exception
    return _response("200 OK", {"Content-Type": "application/vnd.amazon.eventstream"}, body)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.asyncio
async def test_a_mid_stream_exception_frame_echoing_credentials_is_scrubbed(backend: str) -> None:
    """An exception frame whose type and message echo the credentials: scrubbed, and no frame holds the bytes."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        return _stream_with_exception(echoed)

    async with EchoServer(respond) as server:
        error = await _failure(_client(server.url, backend), stream=True)
    assert isinstance(error, APIError), error
    assert error.status == 200
    assert "<redacted>" in str(error)
    assert error.partial_text == "Hel"
    _assert_no_credential(_everything_shown(error), SIGNATURE.findall(seen[0][0]))


@pytest.mark.parametrize("api_key", [False, True], ids=["sigv4", "api-key"])
@pytest.mark.asyncio
async def test_an_sse_error_event_echoing_credentials_is_scrubbed(api_key: bool) -> None:
    """``event: error`` on the /anthropic/v1/messages surface, its message echoing the credentials with escapes."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        data = '{"type": "error", "error": {"type": "overloaded_error", "message": "'
        data += _joined(echoed, _json_slash) + '"}}'
        return _response("200 OK", {"Content-Type": "text/event-stream"}, encode_event("error", data))

    async with EchoServer(respond) as server:
        error = await _failure(_client(server.url, "httptools", api_key=api_key), stream=True, model=MESSAGES_MODEL)
    assert isinstance(error, APIError), error
    assert error.code == "overloaded_error"
    assert "<redacted>" in str(error)
    _assert_no_credential(_everything_shown(error), SIGNATURE.findall(seen[0][0]))


@pytest.mark.parametrize("backend", ["httpcore2", "httpx"])
@pytest.mark.asyncio
async def test_a_response_header_echoing_credentials_is_not_logged_at_debug(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """httpcore logs response headers at DEBUG: a credential echoed in one is masked in the record."""
    for name in ("httpcore", "httpcore2", *_HEADER_LOGGERS):
        caplog.set_level(logging.DEBUG, logger=name)
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        headers = {"x-amzn-ErrorType": "ValidationException", "x-echo": _joined(echoed, lambda text: text)}
        return _response("400 Bad Request", headers, b"{}")

    async with EchoServer(respond) as server:
        await _failure(_client(server.url, backend))
        await _failure(_client(server.url, backend, api_key=True))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "x-echo" in logged, "httpcore's header record was captured"
    assert "<redacted>" in logged
    _assert_no_credential(logged, [s for echoed in seen for s in SIGNATURE.findall(echoed[0])])


# ---------------------------------------------------------------------------------------------- tracebacks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _drop_mid_stream(echoed: list[str]) -> bytes:
    whole = _stream_with_exception(echoed)
    return whole[: len(whole) - 20]  # headers announce more than is sent: the connection closes inside a frame


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "depth",
    [
        "connection-refused",
        "dropped-before-answer",
        "service-error",
        "service-error-api-key",
        "stream-exception",
        "stream-cut",
        "signing",
    ],
)
@pytest.mark.asyncio
async def test_a_traceback_with_local_variables_shows_no_credential(backend: str, depth: str) -> None:
    """Failures at every depth, formatted with ``capture_locals=True``: no frame holds a credential or signature."""
    responses: dict[str, Callable[[list[str]], bytes | None]] = {
        "dropped-before-answer": lambda echoed: None,
        "service-error": lambda echoed: _response(
            "400 Bad Request", {"x-amzn-ErrorType": "ValidationException"}, b'{"message": "no"}'
        ),
        "service-error-api-key": lambda echoed: _response("403 Forbidden", {}, b'{"message": "no"}'),
        "stream-exception": _stream_with_exception,
        "stream-cut": _drop_mid_stream,
        "signing": lambda echoed: None,
        "connection-refused": lambda echoed: None,
    }
    async with EchoServer(responses[depth]) as server:
        url = f"http://127.0.0.1:{_free_port()}" if depth == "connection-refused" else server.url
        client = _client(url, backend, api_key=depth.endswith("api-key"))
        if depth == "signing":
            error: BaseException = await _signing_failure(client)
        else:
            error = await _failure(client, stream=depth.startswith("stream"))
    shown = _everything_shown(error)
    assert "self = <bedrock_chat." in shown, "the traceback shows the locals of our frames"
    _assert_no_credential(shown)
    assert not SIGNATURE.search(shown)


async def _signing_failure(client: AnthropicBedrock) -> BaseException:
    """The signer refuses a ``Date`` header: the failure happens inside signing, with the secret in reach."""
    async with client:
        transport = await client._ready()
        with anyio.fail_after(10):
            try:
                await transport.send("/model/x/invoke", b"{}", [("date", "today")], stream=False)
            except ValueError as exc:
                return exc
    raise AssertionError("signing did not fail")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"AccessKeyId": ""}, id="incomplete-credentials"),
        pytest.param({}, id="missing-access-key-id"),
    ],
)
@pytest.mark.asyncio
async def test_a_credential_chain_failure_shows_no_credential_in_its_traceback(
    answer: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's chain (a ``credential_process``) hands back a secret with no usable key id: no frame keeps it."""
    process = tmp_path / "credential_process.py"
    document = {"Version": 1, "SecretAccessKey": CANARY_SECRET, "SessionToken": CANARY_TOKEN, **answer}
    process.write_text(f"print({json.dumps(json.dumps(document))})\n")
    config = tmp_path / "config"
    config.write_text(f"[profile canary]\ncredential_process = {sys.executable} {process}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    shown = _everything_shown(await _chain_failure("canary"))
    assert "self = <bedrock_chat._http.credentials.BotocoreCredentialSource" in shown
    _assert_no_credential(shown)


async def _chain_failure(profile: str) -> CredentialsError:
    """The CredentialsError resolving ``profile`` raises (caught here: the test's frame holds the canaries)."""
    with anyio.fail_after(20):
        try:
            await BotocoreCredentialSource(profile).get()
        except CredentialsError as exc:
            return exc
    raise AssertionError("resolving did not fail")


# ---------------------------------------------------------------------------------------------- the scrubber

SCRUB_VECTORS = [
    # (text the server sent, what must be left) for the secret CANARY_TOKEN
    (f"token {CANARY_TOKEN} again {CANARY_TOKEN}", "token <redacted> again <redacted>"),
    (f"token {_json_slash(CANARY_TOKEN)}", "token <redacted>"),
    (f"token {_json_u_all(CANARY_TOKEN)}", "token <redacted>"),
    (f"token {_json_u_some(CANARY_TOKEN)} \\n", "token <redacted> \n"),
    (f"token={_percent(CANARY_TOKEN)}", "token=<redacted>"),
    ("token=" + re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), _percent(CANARY_TOKEN)), "token=<redacted>"),
    ("token " + "".join(f"&#{ord(c)};" for c in CANARY_TOKEN), "token <redacted>"),
    ("nothing secret \\u0041 %41 &amp;", "nothing secret \\u0041 %41 &amp;"),  # left as sent: no secret behind
    (CANARY_TOKEN[:-3], CANARY_TOKEN[:-3]),  # a fragment is not found (documented limit)
]


@pytest.mark.parametrize(("sent", "shown"), SCRUB_VECTORS)
def test_the_scrubber_finds_a_secret_in_every_documented_spelling(sent: str, shown: str) -> None:
    """Vectors: plain, JSON escapes (all or some characters), percent-encoding in either case, HTML references."""
    from bedrock_chat._errors import Scrubber

    scrubber = Scrubber(lambda: [CANARY_TOKEN, None, ""])
    assert scrubber(sent) == shown
    assert CANARY_TOKEN not in repr(scrubber)


# ---------------------------------------------------------------------------------------------- 200 answers

#: A 200 answer's body the client cannot use, and what the error must be; the request-id header echoes.
BAD_200_BODIES: dict[str, Callable[[list[str]], bytes]] = {
    "json-not-an-object": lambda echoed: b"[1]",
    "not-json-echoing": lambda echoed: f"oops {_joined(echoed, lambda text: text)}".encode(),
    "nested-too-deep": lambda echoed: b"[" * 100_000,
}

#: The operations that read a non-streaming 200: create on each surface, invoke_model and count_tokens.
OPERATIONS = ["create-invoke", "create-messages", "invoke_model", "count_tokens"]


async def _operation_failure(client: AnthropicBedrock, operation: str) -> BedrockError:
    """The error one call of ``operation`` raises, against a server answering 200."""
    with anyio.fail_after(10):
        try:
            async with client:
                if operation == "create-invoke":
                    await client.ChatCompletion.create(model=MODEL, messages=HI)
                elif operation == "create-messages":
                    await client.ChatCompletion.create(model=MESSAGES_MODEL, messages=HI)
                elif operation == "invoke_model":
                    await client.invoke_model(model=MODEL, body={"anthropic_version": "bedrock-2023-05-31"})
                else:
                    await client.count_tokens(model=MODEL, messages=HI)
        except BedrockError as exc:
            return exc
    raise AssertionError("no error was raised")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("answer", list(BAD_200_BODIES))
@pytest.mark.asyncio
async def test_a_malformed_200_echoing_credentials_is_scrubbed_and_keeps_no_frame_of_its_bytes(
    backend: str, operation: str, answer: str
) -> None:
    """A 200 whose body is unusable and whose request id echoes: a scrubbed MalformedResponse, its bytes in no frame."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": _joined(echoed, lambda text: text)}
        return _response("200 OK", headers, BAD_200_BODIES[answer](echoed))

    async with EchoServer(respond) as server:
        error = await _operation_failure(_client(server.url, backend), operation)
    assert isinstance(error, APIError), error
    assert error.code == "MalformedResponse"
    assert "<redacted>" in (error.request_id or "")
    shown = _everything_shown(error)
    assert "self = <bedrock_chat." in shown, "the traceback shows the locals of our frames"
    _assert_no_credential(shown, SIGNATURE.findall(seen[0][0]))
    assert "oops" not in shown, "no frame holds the body"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", [MODEL, MESSAGES_MODEL], ids=["invoke", "messages"])
@pytest.mark.parametrize("where", ["request-id", "content-type"])
@pytest.mark.asyncio
async def test_a_stream_of_the_wrong_content_type_echoing_credentials_is_scrubbed(
    backend: str, model: str, where: str
) -> None:
    """A 200 stream that is an HTML page (its request id echoing) or ``text/<secret>``: a scrubbed EventStreamError."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        headers = {"Content-Type": "text/html", "x-amzn-RequestId": _joined(echoed, lambda text: text)}
        if where == "content-type":
            headers = {"Content-Type": f"text/{echoed[-1]}"}
        return _response("200 OK", headers, b"<html>" + echoed[-1].encode() + b"</html>")

    async with EchoServer(respond) as server:
        error = await _failure(_client(server.url, backend), stream=True, model=model)
    assert type(error) is EventStreamError, error
    assert "<redacted>" in str(error)
    assert server.requests == 1, "a page of the wrong type is not retried"
    shown = _everything_shown(error)
    assert "self = <bedrock_chat." in shown
    _assert_no_credential(shown, SIGNATURE.findall(seen[0][0]))


@pytest.mark.asyncio
async def test_a_batch_output_error_message_is_scrubbed(tmp_path: Path) -> None:
    """``bedrock-chat batch`` writes a malformed 200's error into OUTPUT's ``errorMessage``: scrubbed there too."""
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": _joined(echoed, _json_slash)}
        return _response("200 OK", headers, b"[1]")

    source = tmp_path / "in.jsonl"
    model_input = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 8, "messages": HI}
    source.write_text(json.dumps({"recordId": "r0", "modelInput": model_input}) + "\n")
    env = child_environment(
        tmp_path, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=CANARY_SECRET, AWS_SESSION_TOKEN=CANARY_TOKEN
    )
    async with EchoServer(respond) as server:
        command = [sys.executable, "-m", "bedrock_chat", "batch", str(source), "-o", str(tmp_path / "out.jsonl")]
        command += ["--model", MODEL, "--endpoint-url", server.url, "--region", "us-east-1", "--max-retries", "0"]
        with anyio.fail_after(60):
            done = await anyio.run_process(command, env=env, cwd=tmp_path, check=False)
    output = (tmp_path / "out.jsonl").read_text()
    line = json.loads(output)
    assert "MalformedResponse" in line["error"]["errorMessage"]
    assert "<redacted>" in line["error"]["errorMessage"]
    everything = output + done.stdout.decode() + done.stderr.decode()
    _assert_no_credential(everything, SIGNATURE.findall(seen[0][0]))


@pytest.mark.asyncio
async def test_a_control_plane_error_echoing_credentials_is_scrubbed(tmp_path: Path) -> None:
    """``client.batch_jobs`` (boto3), the control plane's error echoing the credentials: scrubbed, in no frame."""
    pytest.importorskip("boto3")
    seen: list[list[str]] = []

    def respond(echoed: list[str]) -> bytes:
        seen.append(echoed)
        body = json.dumps({"message": "you sent " + _joined(echoed, lambda text: text)}).encode()
        return _response("400 Bad Request", {"x-amzn-ErrorType": "ValidationException"}, body)

    async with EchoServer(respond) as server:
        error = await _control_plane_failure(server.url)
    assert "ValidationException" in str(error)
    assert "<redacted>" in str(error)
    assert seen, "the control plane was called"
    shown = _everything_shown(error)
    assert "self = <bedrock_chat." in shown
    _assert_no_credential(shown, SIGNATURE.findall(seen[0][0]))


async def _control_plane_failure(url: str) -> BedrockError:
    """The error of one GetModelInvocationJob (caught here: the test's frame holds the canaries)."""
    client = AnthropicBedrock(
        access_key=ACCESS_KEY,
        secret_key=CANARY_SECRET,
        session_token=CANARY_TOKEN,
        region="us-east-1",
        control_plane_endpoint_url=url,
    )
    with anyio.fail_after(30):
        try:
            async with client:
                await client.batch_jobs.status("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/x")
        except BedrockError as exc:
            return exc
    raise AssertionError("no error was raised")
