"""A scripted Bedrock on a free loopback port: answers every call with one reply, in Bedrock's wire shapes.

For replies the emulator's fake model cannot give yet (schema-conforming JSON, thinking with signatures,
citations, every stop reason): the reply's content blocks are sent as a Messages body on ``invoke``, as
chunk frames (with the padding field ``p``, as real streams have it) on ``invoke-with-response-stream``,
and as JSON or server-sent events on ``/anthropic/v1/messages``, streams split into the deltas the
Messages API sends (``text_delta``, ``thinking_delta``, ``signature_delta``, ``citations_delta``,
``input_json_delta``). Every request's head lines and body are kept in ``requests``.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from typing import Any

from bedrock_chat._core.eventstream import encode_message
from bedrock_chat._core.sse import encode_event

_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [piece for piece in (text[:middle], text[middle:]) if piece]


def block_events(index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
    """The stream events of one content block: start (without its streamed fields), deltas, stop."""
    kind = block["type"]
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas += [{"type": "text_delta", "text": piece} for piece in _halves(block["text"])]
        deltas += [{"type": "citations_delta", "citation": citation} for citation in block.get("citations") or ()]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas += [{"type": "thinking_delta", "thinking": piece} for piece in _halves(block["thinking"])]
        deltas += [{"type": "signature_delta", "signature": piece} for piece in _halves(block["signature"])]
    elif kind == "tool_use":
        start = {**block, "input": {}}
        deltas += [{"type": "input_json_delta", "partial_json": piece} for piece in _halves(json.dumps(block["input"]))]
    else:  # redacted_thinking and others arrive whole
        start = block
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]


class ScriptedBedrock:
    """Answers each request with the same reply: ``content`` blocks and ``stop_reason``.

    Served from a daemon thread (``start()``/``close()``), so a synchronous fixture can own it.
    """

    def __init__(self, content: list[dict[str, Any]], *, stop_reason: str = "end_turn") -> None:
        self.content = content
        self.stop_reason = stop_reason
        self.requests: list[tuple[list[str], bytes]] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ScriptedBedrock:
        scripted = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                lines = [self.requestline, *(f"{name}: {value}" for name, value in self.headers.items())]
                scripted.requests.append((lines, body))
                content_type, answer = scripted._answer(self.path, body)
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(answer)))
                self.send_header("x-amzn-requestid", "scripted-1")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def message(self) -> dict[str, Any]:
        return {
            "id": "msg_bdrk_scripted",
            "type": "message",
            "role": "assistant",
            "model": "scripted",
            "content": self.content,
            "stop_reason": self.stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 7},
        }

    def events(self) -> list[dict[str, Any]]:
        start = {
            **self.message(),
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 11, "output_tokens": 1},
        }
        events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        for index, block in enumerate(self.content):
            events += block_events(index, block)
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": 7},
            }
        )
        events.append({"type": "message_stop"})
        return events

    def _answer(self, path: str, body: bytes) -> tuple[str, bytes]:
        if path.endswith("/invoke"):
            return "application/json", json.dumps(self.message()).encode()
        if path.endswith("/invoke-with-response-stream"):
            frames = []
            for n, event in enumerate(self.events()):
                inner = base64.b64encode(json.dumps(event).encode()).decode()
                payload = json.dumps({"bytes": inner, "p": _PADDING[: 1 + n % len(_PADDING)]}).encode()
                headers = ((":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event"))
                frames.append(encode_message(headers, payload))
            return "application/vnd.amazon.eventstream", b"".join(frames)
        if json.loads(body).get("stream"):
            stream = b"".join(encode_event(event["type"], json.dumps(event)) for event in self.events())
            return "text/event-stream", stream
        return "application/json", json.dumps(self.message()).encode()

    def last_body(self) -> dict[str, Any]:
        """The JSON body of the last request."""
        body: dict[str, Any] = json.loads(self.requests[-1][1])
        return body

    def last_headers(self) -> dict[str, str]:
        """The last request's headers, names lower-cased."""
        return {
            name.lower(): value.strip() for name, _, value in (line.partition(":") for line in self.requests[-1][0][1:])
        }
