"""The emulator over real HTTP/1.1: routes, responses, recording, bad input, keep-alive, 100-continue.

Responses are parsed with the standard library's ``http.client`` (a parser independent of the h11 the
server uses) and frames with the project's event-stream decoder.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from emulator_testing import MESSAGES_BODY, MESSAGES_BYTES, Signer, sign_with_botocore

from bedrock_chat._core.eventstream import EventStreamDecoder, decode_chunk_payload
from bedrock_chat.emulator import MAX_BODY_BYTES, BedrockEmulator, count_tokens, fake_reply

HAIKU_35 = "anthropic.claude-3-5-haiku-20241022-v1:0"
TEXT_BODY = {"prompt": "\n\nHuman: Hello there, emulator\n\nAssistant:", "max_tokens_to_sample": 50}
QUOTED = "anthropic.claude-3-5-haiku-20241022-v1%3A0"


@pytest.fixture
def signer() -> Signer:
    """botocore's signer, as a fixture."""
    return sign_with_botocore


@pytest.fixture
def messages_body() -> bytes:
    """A valid Messages body."""
    return MESSAGES_BYTES


@contextlib.contextmanager
def connect(emu: BedrockEmulator) -> Iterator[http.client.HTTPConnection]:
    """A keep-alive ``http.client`` connection to the emulator, closed afterwards."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def request(
    conn: http.client.HTTPConnection,
    emu: BedrockEmulator,
    signer: Signer,
    path: str,
    body: bytes,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    """Send one botocore-signed request on ``conn``; the response and its whole body."""
    signed = signer(emu, path, body, headers=headers)
    conn.request(method, path, body=body, headers=signed)
    response = conn.getresponse()
    return response, response.read()


def frames(data: bytes) -> list[Any]:
    """Decode an event-stream body into ``(headers, payload)`` pairs, unwrapping chunk events."""
    decoder = EventStreamDecoder()
    decoder.feed(data)
    out: list[Any] = []
    for message in decoder:
        if message.event_type == "chunk":
            out.append(json.loads(decode_chunk_payload(message.payload)))
        else:
            out.append((dict(message.headers), json.loads(message.payload)))
    decoder.close()
    return out


def test_invoke_messages(bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes) -> None:
    """InvokeModel answers Bedrock's Messages body and usage headers, as the fake model's rules predict."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        response, data = request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/json"
    uuid.UUID(response.getheader("x-amzn-RequestId") or "")
    expected = fake_reply(input_text="Hello there, emulator", last_user_text="Hello there, emulator", max_tokens=50)
    body = json.loads(data)
    assert body["id"].startswith("msg_bdrk_")
    assert body == {
        "id": body["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": expected.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": expected.output_tokens},
    }
    assert response.getheader("X-Amzn-Bedrock-Input-Token-Count") == "3"
    assert response.getheader("X-Amzn-Bedrock-Output-Token-Count") == str(expected.output_tokens)
    assert response.getheader("X-Amzn-Bedrock-Invocation-Latency") == "0"


def test_requests_are_recorded(bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes) -> None:
    """The log keeps method, raw path, headers, body, decoded model id, operation and status."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)
    (recorded,) = emu.requests
    assert (recorded.method, recorded.path, recorded.body) == ("POST", f"/model/{QUOTED}/invoke", messages_body)
    assert (recorded.model_id, recorded.operation, recorded.status, recorded.fault) == (
        HAIKU_35,
        "InvokeModel",
        200,
        None,
    )
    assert recorded.header("Content-Type") == "application/json"
    assert (recorded.header("authorization") or "").startswith("AWS4-HMAC-SHA256 ")
    assert recorded.header("x-missing") is None


def test_invoke_text_completion(bedrock_emulator: BedrockEmulator, signer: Signer) -> None:
    """A text-completion model answers {completion, stop_reason, stop} and stops on "\\n\\nHuman:" by default."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        response, data = request(conn, emu, signer, "/model/anthropic.claude-v2/invoke", json.dumps(TEXT_BODY).encode())
    assert response.status == 200
    body = json.loads(data)
    assert set(body) == {"completion", "stop_reason", "stop"}
    assert body["completion"].startswith(" Hello there, emulator ")
    assert (body["stop_reason"], body["stop"]) == ("stop_sequence", "\n\nHuman:")
    assert response.getheader("X-Amzn-Bedrock-Output-Token-Count") == str(count_tokens(body["completion"]))


def test_stop_sequences_over_http(bedrock_emulator: BedrockEmulator, signer: Signer) -> None:
    """User stop sequences cut the reply and are reported, in both APIs."""
    emu = bedrock_emulator
    text = {**TEXT_BODY, "prompt": "\n\nHuman: one two STOP three\n\nAssistant:", "stop_sequences": ["STOP"]}
    messages = {
        **MESSAGES_BODY,
        "messages": [{"role": "user", "content": "one two STOP three"}],
        "stop_sequences": ["STOP"],
    }
    with connect(emu) as conn:
        _, data = request(conn, emu, signer, "/model/anthropic.claude-v2/invoke", json.dumps(text).encode())
        assert json.loads(data) == {"completion": " one two ", "stop_reason": "stop_sequence", "stop": "STOP"}
        _, data = request(conn, emu, signer, f"/model/{QUOTED}/invoke", json.dumps(messages).encode())
    body = json.loads(data)
    assert body["content"][0]["text"] == "one two "
    assert (body["stop_reason"], body["stop_sequence"], body["usage"]["output_tokens"]) == ("stop_sequence", "STOP", 2)


def test_messages_stream(bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes) -> None:
    """The stream is chunked event-stream frames carrying the Messages event sequence and the metrics."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        response, data = request(conn, emu, signer, f"/model/{QUOTED}/invoke-with-response-stream", messages_body)
    assert response.status == 200
    assert response.getheader("Content-Type") == "application/vnd.amazon.eventstream"
    assert response.getheader("X-Amzn-Bedrock-Content-Type") == "application/json"
    assert response.getheader("Transfer-Encoding") == "chunked"
    events = frames(data)
    types = [event["type"] for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    assert len(types) - 5 > 1, "the text comes in several chunks"
    text = "".join(event["delta"]["text"] for event in events[2:-3])
    expected = fake_reply(input_text="Hello there, emulator", last_user_text="Hello there, emulator", max_tokens=50)
    assert text == expected.text
    assert events[0]["message"]["usage"] == {"input_tokens": 3, "output_tokens": 1}
    assert events[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2]["usage"] == {"output_tokens": expected.output_tokens}
    assert events[-1]["amazon-bedrock-invocationMetrics"] == {
        "inputTokenCount": 3,
        "outputTokenCount": expected.output_tokens,
        "invocationLatency": 0,
        "firstByteLatency": 0,
    }


def test_text_completion_stream(bedrock_emulator: BedrockEmulator, signer: Signer) -> None:
    """Text-completion chunks carry the text; the last one the stop reason and the metrics."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        _, data = request(
            conn, emu, signer, "/model/anthropic.claude-v2/invoke-with-response-stream", json.dumps(TEXT_BODY).encode()
        )
    events = frames(data)
    assert len(events) > 2
    assert all(event["stop_reason"] is None and event["stop"] is None for event in events[:-1])
    assert events[-1]["stop_reason"] == "stop_sequence"
    assert events[-1]["stop"] == "\n\nHuman:"
    completion = "".join(event["completion"] for event in events)
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == count_tokens(completion)


def test_thousand_chunk_stream(bedrock_emulator: BedrockEmulator, signer: Signer) -> None:
    """chunk_tokens=1 with reply_tokens >= max_tokens gives exactly max_tokens one-token chunks (benchmark knob)."""
    emu = bedrock_emulator
    emu.options = attrs.evolve(emu.options, chunk_tokens=1, reply_tokens=10**6)
    body = json.dumps({**MESSAGES_BODY, "max_tokens": 1000}).encode()
    with connect(emu) as conn:
        _, data = request(conn, emu, signer, f"/model/{QUOTED}/invoke-with-response-stream", body)
    events = frames(data)
    deltas = [event for event in events if event["type"] == "content_block_delta"]
    assert len(deltas) == 1000
    assert all(count_tokens(delta["delta"]["text"]) == 1 for delta in deltas)
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("path_id", "model_id"),
    [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", HAIKU_35),  # the anthropic SDK's raw ':'
        (QUOTED, HAIKU_35),  # botocore's %3A
        ("us.anthropic.claude-sonnet-4-20250514-v1%3A0", "us.anthropic.claude-sonnet-4-20250514-v1:0"),
        (
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20241022"
            "-v2%3A0",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        (
            "arn%3Aaws%3Abedrock%3Aus-west-2%3A%3Afoundation-model%2Fanthropic.claude-3-haiku-20240307-v1%3A0",
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
        ),
        (
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aapplication-inference-profile%2Fa1b2c3d4e5f6",
            "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/a1b2c3d4e5f6",
        ),
        (
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aprovisioned-model%2Fa1b2c3d4e5f6",
            "arn:aws:bedrock:us-east-1:111122223333:provisioned-model/a1b2c3d4e5f6",
        ),
    ],
)
def test_model_id_forms(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes, path_id: str, model_id: str
) -> None:
    """Raw and percent-encoded ids, profiles and ARNs (with %2F) are decoded once and served."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        response, _ = request(conn, emu, signer, f"/model/{path_id}/invoke", messages_body)
    assert response.status == 200
    assert emu.requests[-1].model_id == model_id


@pytest.mark.parametrize(
    ("path_id", "status", "code"),
    [
        ("anthropic.claude-9-nonexistent-v1%3A0", 404, "ResourceNotFoundException"),
        ("arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Acustom-model%2Fx", 404, "ResourceNotFoundException"),
        ("anthropic.claude-opus-4-8", 400, "ValidationException"),  # served on /anthropic/v1/messages only
        ("has%20space", 400, "ValidationException"),
        ("arn%3Aaws%3As3%3A%3A%3Abucket", 400, "ValidationException"),
        # The emulator's own table (emulator/_models.py), not the client's registry, decides these.
        ("ca.anthropic.claude-sonnet-4-6", 400, "ValidationException"),  # no such profile prefix
        (
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fus.anthropic.claude-sonnet-4-6",
            400,
            "ValidationException",
        ),
        ("anthropic.claude-opus-4-6", 404, "ResourceNotFoundException"),  # no source gives this alias
    ],
)
def test_bad_model_ids(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes, path_id: str, status: int, code: str
) -> None:
    """Unknown models are 404 ResourceNotFoundException; malformed ids and wrong-surface models are 400."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        response, data = request(conn, emu, signer, f"/model/{path_id}/invoke", messages_body)
    assert response.status == status
    assert (response.getheader("x-amzn-ErrorType") or "").split(":")[0] == code
    assert set(json.loads(data)) == {"message"}


def test_error_response_shape(bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes) -> None:
    """Errors carry x-amzn-ErrorType with the Bedrock namespace, x-amzn-RequestId and a JSON message body."""
    emu = bedrock_emulator
    emu.enqueue_faults("model_error")
    with connect(emu) as conn:
        response, data = request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)
    assert response.status == 424
    assert response.getheader("x-amzn-ErrorType") == (
        "ModelErrorException:http://internal.amazon.com/coral/com.amazon.bedrock/"
    )
    assert response.getheader("Content-Type") == "application/json"
    uuid.UUID(response.getheader("x-amzn-RequestId") or "")
    body = json.loads(data)
    assert body["originalStatusCode"] == 500
    assert isinstance(body["message"], str)
    assert emu.requests[-1].fault == "model_error"


def test_keep_alive_serves_many_requests_on_one_connection(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes
) -> None:
    """One connection serves successive requests, errors included, without being closed."""
    emu = bedrock_emulator
    emu.enqueue_faults("none", "throttle")
    with connect(emu) as conn:
        statuses = [request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)[0].status for _ in range(4)]
        sock = conn.sock
        request(conn, emu, signer, f"/model/{QUOTED}/invoke-with-response-stream", messages_body)
        request(conn, emu, signer, f"/model/{QUOTED}/invoke", b"{not json")
        assert conn.sock is sock, "http.client reopens only if the server closed the connection"
    assert statuses == [200, 429, 200, 200]


def read_response(sock: socket.socket) -> http.client.HTTPResponse:
    """Parse one response from a raw socket with http.client (body read in full)."""
    response = http.client.HTTPResponse(sock, method="POST")
    response.begin()
    response.read()
    return response


def good_request_works(emu: BedrockEmulator, signer: Signer, messages_body: bytes) -> bool:
    """A fresh connection still gets a 200."""
    with connect(emu) as conn:
        return request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)[0].status == 200


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "status", "code"),
    [
        ("POST", f"/model/{QUOTED}/invoke", "application/json", b"{not json", 400, "ValidationException"),
        ("POST", f"/model/{QUOTED}/invoke", "application/json", b"[1, 2]", 400, "ValidationException"),
        ("POST", f"/model/{QUOTED}/invoke", "application/json", b"\xff\xfe", 400, "ValidationException"),
        ("POST", f"/model/{QUOTED}/invoke", "application/json", b"", 400, "ValidationException"),
        ("POST", f"/model/{QUOTED}/invoke", "text/plain", b"{}", 400, "ValidationException"),
        ("POST", f"/model/{QUOTED}/converse", "application/json", b"{}", 400, "ValidationException"),
        ("POST", f"/model/{QUOTED}/converse/x", "application/json", b"{}", 404, "UnknownOperationException"),
        ("POST", "/", "application/json", b"{}", 404, "UnknownOperationException"),
        ("POST", "/model//invoke", "application/json", b"{}", 404, "UnknownOperationException"),
        ("GET", f"/model/{QUOTED}/invoke", "application/json", b"", 404, "UnknownOperationException"),
        ("PUT", f"/model/{QUOTED}/invoke", "application/json", b"{}", 404, "UnknownOperationException"),
    ],
)
def test_bad_requests_keep_the_connection_usable(
    bedrock_emulator: BedrockEmulator,
    signer: Signer,
    messages_body: bytes,
    method: str,
    path: str,
    content_type: str,
    body: bytes,
    status: int,
    code: str,
) -> None:
    """Bad bodies, content types, paths and methods get typed errors; the connection stays usable."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        response, _ = request(conn, emu, signer, path, body, method=method, headers={"Content-Type": content_type})
        assert response.status == status
        assert (response.getheader("x-amzn-ErrorType") or "").split(":")[0] == code
        assert request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)[0].status == 200
    assert not emu.errors


def test_oversized_body_is_refused_before_it_is_read(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes
) -> None:
    """A Content-Length over 25,000,000 gets 400 without the body being sent; the server keeps serving."""
    emu = bedrock_emulator
    head = (
        f"POST /model/{QUOTED}/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(head)
        response = read_response(sock)
        assert response.status == 400
        assert (response.getheader("x-amzn-ErrorType") or "").startswith("ValidationException:")
        assert response.getheader("Connection") == "close"
        assert sock.recv(1) == b"", "the connection is closed: its unread body would poison it"
    assert emu.requests[-1].status == 400
    assert good_request_works(emu, signer, messages_body)


def test_oversized_chunked_body_is_refused(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes
) -> None:
    """A chunked upload is cut off with 400 as soon as it passes the limit."""
    emu = bedrock_emulator
    head = (
        f"POST /model/{QUOTED}/invoke HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"x" * (1 << 20)
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(head)
        with contextlib.suppress(ConnectionError):  # the server may close while we are still sending
            for _ in range(MAX_BODY_BYTES // len(piece) + 2):
                sock.sendall(chunk)
        with contextlib.suppress(ConnectionError):
            response = read_response(sock)
            assert response.status == 400
    assert emu.requests[-1].status == 400
    assert good_request_works(emu, signer, messages_body)


@pytest.mark.parametrize(
    "raw",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",  # no Host header
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: nope\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nshort",  # then the client leaves
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
    ],
)
def test_malformed_http_never_crashes_the_server(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes, raw: bytes
) -> None:
    """Garbage, missing Host, bad lengths and truncated bodies end that connection only."""
    emu = bedrock_emulator
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400 ")
    assert good_request_works(emu, signer, messages_body)
    assert not emu.errors


def test_expect_100_continue(bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes) -> None:
    """A client that waits for 100 Continue gets it, then sends the body and gets its answer."""
    emu = bedrock_emulator
    path = f"/model/{QUOTED}/invoke"
    headers = signer(emu, path, messages_body)
    headers.update({"Expect": "100-continue", "Content-Length": str(len(messages_body))})
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(head.encode())
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(messages_body)
        assert read_response(sock).status == 200


def test_http_1_0_client(bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes) -> None:
    """An HTTP/1.0 client gets a close-delimited stream (no chunked encoding) and a closed connection."""
    emu = bedrock_emulator
    path = f"/model/{QUOTED}/invoke-with-response-stream"
    headers = signer(emu, path, messages_body)
    headers["Content-Length"] = str(len(messages_body))
    head = f"POST {path} HTTP/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", emu.port), timeout=10) as sock:
        sock.sendall(head.encode() + messages_body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 200 ")
    assert b"chunked" not in head_bytes.lower()
    assert frames(body)[-1]["type"] == "message_stop"


def test_head_request(bedrock_emulator: BedrockEmulator) -> None:
    """HEAD gets the 404 headers without a body, and the connection stays usable."""
    emu = bedrock_emulator
    with connect(emu) as conn:
        conn.request("HEAD", "/")
        response = conn.getresponse()
        assert response.status == 404
        assert response.read() == b""
        conn.request("HEAD", "/")
        assert conn.getresponse().status == 404


def test_internal_errors_answer_500_and_are_recorded(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the emulator's own code answers 500, is kept in emu.errors, and does not stop the server."""
    emu = bedrock_emulator

    def broken(*args: object) -> None:
        raise RuntimeError("emulator bug")

    monkeypatch.setattr(emu._dispatcher, "dispatch", broken)
    with connect(emu) as conn:
        response, _ = request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)
    assert response.status == 500
    assert [str(error) for error in emu.errors] == ["emulator bug"]
    monkeypatch.undo()
    emu.errors.clear()
    assert good_request_works(emu, signer, messages_body)


def test_options_can_change_between_requests(
    bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes
) -> None:
    """Assigning emu.options takes effect on the next request (here: a fixed reply length)."""
    emu = bedrock_emulator
    emu.options = attrs.evolve(emu.options, reply_tokens=4)
    with connect(emu) as conn:
        _, data = request(conn, emu, signer, f"/model/{QUOTED}/invoke", messages_body)
    assert json.loads(data)["usage"]["output_tokens"] == 4


def test_signature_checks_over_http(bedrock_emulator: BedrockEmulator, signer: Signer, messages_body: bytes) -> None:
    """Over the wire: a wrong secret is 403 InvalidSignatureException; verify_signatures=False accepts it."""
    emu = bedrock_emulator
    path = f"/model/{QUOTED}/invoke"
    with connect(emu) as conn:
        conn.request("POST", path, body=messages_body, headers=signer(emu, path, messages_body, secret_key="wrong"))
        response = conn.getresponse()
        response.read()
        assert response.status == 403
        assert (response.getheader("x-amzn-ErrorType") or "").startswith("InvalidSignatureException:")
        emu.options = attrs.evolve(emu.options, verify_signatures=False)
        conn.request("POST", path, body=messages_body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200
