"""The benchmarks' replay server (``benchmarks/_replay_server.py``) answers as the emulator does.

Each client the suite measures -- bedrock_chat, boto3 (botocore's parsing, as aiobotocore's) and the
anthropic SDK -- sends the suite's request to the emulator and to the replay server, for each kind the
suite uses (InvokeModel JSON, the 1,000-chunk InvokeModelWithResponseStream); the parsed results must be
equal, apart from the ids Bedrock makes per request. The HTTP layer is checked on raw sockets: pipelined
requests, bodies split across reads, ``Expect: 100-continue``, chunked bodies refused, unknown routes,
distinct request ids.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _harness  # noqa: E402
from _clients import FLOOR, INVOKE_MAX_TOKENS, MODEL, MODEL_PATH, PROMPT, STREAM_MAX_TOKENS  # noqa: E402

from bedrock_chat import AnthropicBedrock  # noqa: E402
from bedrock_chat.emulator import EmulatorOptions, run_emulator_in_thread  # noqa: E402

KINDS = ("invoke", "stream")
MESSAGES: Any = [{"role": "user", "content": PROMPT}]


@pytest.fixture(scope="module")
def replay_url() -> Iterator[str]:
    """The replay server as the suite runs it: a subprocess that captured its replies at start-up."""
    with _harness.replay_server(None) as info:
        yield info.endpoint


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    """The emulator as the suite runs it (signatures unchecked, 1,000-token replies, one token per chunk)."""
    options = EmulatorOptions(verify_signatures=False, reply_tokens=STREAM_MAX_TOKENS, chunk_tokens=1)
    with run_emulator_in_thread(options) as emu:
        yield emu.endpoint_url
        assert not emu.errors


def _without_ids(value: Any) -> Any:
    """The value with the per-request ids (``id``, ``request_id``) and the client-side latency removed."""
    if isinstance(value, dict):
        return {k: _without_ids(v) for k, v in value.items() if k not in {"id", "request_id", "latency"}}
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


# -- each client's parsed result ------------------------------------------------------------------------


async def _bedrock_chat(url: str, kind: str) -> tuple[Any, str | None]:
    async with AnthropicBedrock(
        access_key=_harness.ACCESS_KEY, secret_key=_harness.SECRET_KEY, region=_harness.REGION, endpoint_url=url
    ) as client:
        if kind == "invoke":
            chat = await client.ChatCompletion.create(
                model=MODEL, messages=MESSAGES, max_tokens_to_sample=INVOKE_MAX_TOKENS
            )
            return _without_ids(chat.to_dict()), chat.request_id
        stream = await client.ChatCompletion.create(
            model=MODEL, messages=MESSAGES, max_tokens_to_sample=STREAM_MAX_TOKENS, stream=True
        )
        async with stream:
            chunks = [(chunk.type, chunk.text, _without_ids(dict(chunk.event))) async for chunk in stream]
        return {"chunks": chunks, "final": _without_ids(stream.completion.to_dict())}, stream.request_id


def _boto3(url: str, kind: str) -> tuple[Any, str | None]:
    import boto3

    client = boto3.client(
        "bedrock-runtime",
        region_name=_harness.REGION,
        endpoint_url=url,
        aws_access_key_id=_harness.ACCESS_KEY,
        aws_secret_access_key=_harness.SECRET_KEY,
    )
    max_tokens = INVOKE_MAX_TOKENS if kind == "invoke" else STREAM_MAX_TOKENS
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens, "messages": MESSAGES})
    if kind == "invoke":
        response = client.invoke_model(modelId=MODEL, body=body, contentType="application/json")
        parsed = _without_ids(json.loads(response["body"].read()))
    else:
        response = client.invoke_model_with_response_stream(modelId=MODEL, body=body, contentType="application/json")
        parsed = [_without_ids(json.loads(event["chunk"]["bytes"])) for event in response["body"]]
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    rest = {k: v for k, v in headers.items() if k not in {"x-amzn-requestid", "date"}}
    request_id = response["ResponseMetadata"]["RequestId"]
    return {"parsed": parsed, "content_type": response["contentType"], "headers": rest}, request_id


async def _anthropic(url: str, kind: str) -> tuple[Any, str | None]:
    import anthropic

    async with anthropic.AsyncAnthropicBedrock(
        aws_access_key=_harness.ACCESS_KEY,
        aws_secret_key=_harness.SECRET_KEY,
        aws_region=_harness.REGION,
        base_url=url,
    ) as client:
        if kind == "invoke":
            raw = await client.messages.with_raw_response.create(
                model=MODEL, max_tokens=INVOKE_MAX_TOKENS, messages=MESSAGES
            )
            message = await raw.parse()
            return _without_ids(message.model_dump()), raw.headers.get("x-amzn-requestid")
        stream = await client.messages.create(model=MODEL, max_tokens=STREAM_MAX_TOKENS, messages=MESSAGES, stream=True)
        async with stream:
            events = [_without_ids(event.model_dump()) async for event in stream]
        return events, stream.response.headers.get("x-amzn-requestid")


# -- the same parsed result from both servers ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.asyncio
async def test_bedrock_chat_parses_the_same(replay_url: str, emulator_url: str, kind: str) -> None:
    expected, _ = await _bedrock_chat(emulator_url, kind)
    first, first_id = await _bedrock_chat(replay_url, kind)
    second, second_id = await _bedrock_chat(replay_url, kind)
    assert first == expected
    assert second == expected
    assert first_id
    assert second_id
    assert first_id != second_id
    if kind == "stream":
        texts = [text for _, text, _ in first["chunks"] if text]
        assert len(texts) == STREAM_MAX_TOKENS


@pytest.mark.parametrize("kind", KINDS)
def test_boto3_parses_the_same(replay_url: str, emulator_url: str, kind: str) -> None:
    expected, _ = _boto3(emulator_url, kind)
    first, first_id = _boto3(replay_url, kind)
    second, second_id = _boto3(replay_url, kind)
    assert first == expected
    assert second == expected
    assert first_id
    assert second_id
    assert first_id != second_id


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.asyncio
async def test_anthropic_parses_the_same(replay_url: str, emulator_url: str, kind: str) -> None:
    expected, _ = await _anthropic(emulator_url, kind)
    first, first_id = await _anthropic(replay_url, kind)
    second, second_id = await _anthropic(replay_url, kind)
    assert first == expected
    assert second == expected
    assert first_id
    assert second_id
    assert first_id != second_id


# -- HTTP/1.1 on raw sockets ------------------------------------------------------------------------------


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _request(path: str, body: bytes = b"{}", extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


class _Reader:
    """Responses off one socket, parsed by h11 (chunked bodies included); 1xx responses are returned too."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = h11.Connection(h11.CLIENT)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response (h11 reads only responses to requests it saw sent: it is shown a stand-in)."""
        if self.conn.our_state is h11.IDLE:
            self.conn.send(h11.Request(method="POST", target="/", headers=[("host", "x"), ("content-length", "0")]))
            self.conn.send(h11.EndOfMessage())
        status, headers, body = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.InformationalResponse):
                return event.status_code, {}, b""
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                    self.conn.start_next_cycle()
                return status, headers, body
            elif isinstance(event, h11.ConnectionClosed):
                return status, headers, body


def test_pipelined_requests_get_replies_in_order_with_distinct_ids(replay_url: str) -> None:
    with _connect(replay_url) as sock:
        invoke, stream = f"{MODEL_PATH}/invoke", f"{MODEL_PATH}/invoke-with-response-stream"
        sock.sendall(_request(invoke) + _request(stream) + _request(invoke))
        reader = _Reader(sock)
        replies = [reader.response() for _ in range(3)]
    assert [status for status, _, _ in replies] == [200, 200, 200]
    assert replies[1][1]["content-type"] == "application/vnd.amazon.eventstream"
    ids = [headers["x-amzn-requestid"] for _, headers, _ in replies]
    assert len(set(ids)) == 3
    assert all(len(i) == 36 for i in ids)
    # The message id Bedrock derives from the request id follows it.
    for _, headers, body in (replies[0], replies[2]):
        assert json.loads(body)["id"] == "msg_bdrk_" + headers["x-amzn-requestid"].replace("-", "")[:24]


def test_a_reply_waits_for_the_whole_body(replay_url: str) -> None:
    body = json.dumps({"messages": MESSAGES, "padding": "x" * 5000}).encode()
    raw = _request(f"{MODEL_PATH}/invoke", body)
    with _connect(replay_url) as sock:
        sock.sendall(raw[:-10])
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # nothing yet: the body is not all in
        sock.settimeout(10)
        sock.sendall(raw[-10:])
        reader = _Reader(sock)
        status, _, reply = reader.response()
    assert status == 200
    assert json.loads(reply)["usage"]["output_tokens"] == INVOKE_MAX_TOKENS


def test_expect_100_continue_is_answered(replay_url: str) -> None:
    body = b'{"a": 1}'
    head = _request(f"{MODEL_PATH}/invoke", body, "Expect: 100-continue\r\n")[: -len(body)]
    with _connect(replay_url) as sock:
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        reader = _Reader(sock)
        assert reader.response()[0] == 200


def test_a_chunked_request_body_is_refused_and_the_connection_closed(replay_url: str) -> None:
    with _connect(replay_url) as sock:
        head = f"POST {MODEL_PATH}/invoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head.encode() + b"2\r\n{}\r\n0\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 400 ")
    assert b"chunked request bodies" in received


def test_an_unknown_route_is_a_404_and_the_connection_stays_open(replay_url: str) -> None:
    with _connect(replay_url) as sock:
        sock.sendall(_request("/model/some.other-model/invoke") + _request(f"{MODEL_PATH}/invoke"))
        reader = _Reader(sock)
        status, _, body = reader.response()
        assert status == 404
        assert b"some.other-model" in body
        assert reader.response()[0] == 200


def test_the_model_id_matches_encoded_or_not(replay_url: str) -> None:
    with _connect(replay_url) as sock:
        plain = MODEL_PATH.replace("%3A", ":")
        sock.sendall(_request(f"{plain}/invoke") + _request(f"{MODEL_PATH.replace('%3A', '%3a')}/invoke"))
        reader = _Reader(sock)
        assert [reader.response()[0] for _ in range(2)] == [200, 200]


def test_server_cpu_is_read_from_proc() -> None:
    """The harness reads the server's CPU seconds before and after each window; unknown pids give None."""
    import os

    own = _harness.process_cpu_seconds(os.getpid())
    assert own is not None
    assert own > 0
    assert _harness.process_cpu_seconds(None) is None


# -- the suite's server-bound rule ------------------------------------------------------------------------


def _round(server_util: float) -> dict[str, Any]:
    """A round of the suite where the floor and bedrock_chat were measured, the server at ``server_util``."""
    import run

    def figures(cpu_ms: float) -> dict[str, float]:
        return {"rps": 1000.0, "cpu_ms_per_request": cpu_ms, "latency_ms_p50": 1.0, "server_util": server_util}

    by_c = {c: {str(c): figures(cpu) for c in run.CONCURRENCIES} for c, cpu in ((FLOOR, 0.2), (run.OURS, 0.22))}
    round_: dict[str, Any] = {"invoke": by_c, "stream": {}, "micro": {}, "import_ms": {}}
    round_["ratios"] = run.ratios(round_)
    return round_


def test_a_server_bound_figure_is_marked_and_never_used_for_a_verdict() -> None:
    import run

    key = f"{run.OURS}:cpu_vs_floor@32"
    clean, bound = _round(0.5), _round(0.95)
    assert clean["ratios"][key] == pytest.approx(1.1)
    assert bound["ratios"][key] != bound["ratios"][key]  # NaN: left out

    summary = run.aggregate([clean, bound])
    assert summary["targets"][key]["value"] == pytest.approx(1.1)  # the clean round alone
    assert summary["targets"][key]["met"] is True
    assert summary["targets"][key]["server_bound_rounds"] == 1
    assert f"{run.OURS} c=32" in summary["server_bound"]

    only_bound = run.aggregate([bound, _round(0.95)])
    assert only_bound["targets"][key]["met"] is None
    table = "\n".join(run.render_tables(only_bound))
    row = next(line for line in table.splitlines() if line.startswith(f"| {run.OURS} |"))
    assert "| 95%* |" in row
    assert "above 80% of its core" in table


def test_render_reads_a_saved_suite_document() -> None:
    import _results
    import run

    rounds = [_round(0.3)]
    settings = run.parse_settings(["--quick", "--only", f"{FLOOR},{run.OURS}"])
    meta = _results.metadata(server_cpu=0, client_cpu=1, seconds=1.0, loadavg_end="0")
    data = {"settings": dataclasses.asdict(settings), "summary": run.aggregate(rounds), "rounds": rounds}
    document = json.loads(json.dumps(_results.json_safe({"benchmark": "suite", "meta": meta, "data": data})))
    text = run.render(document)
    assert text.startswith(meta["machine"])
    assert "| c=32 server |" in text
    assert f"| {run.OURS}: CPU/request vs aiohttp floor, c=32 | <= 1.15x | 1.10x | yes |" in text
