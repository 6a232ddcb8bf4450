"""Assemble a long streamed answer on each surface: CPU seconds for the whole stream through the client.

Each case serves one pre-built stream body from an ``httpx.MockTransport`` (in 64 KiB pieces, as a
socket would) and drains ``create(stream=True)``: decoding, assembly and the final ChatCompletion,
no network. The Messages cases must cost about what the text-completion one does per character: the
assembly is linear on every surface. Run: ``python benchmarks/bench_assembly.py [--quick] [--no-save]``;
the figures go to ``benchmarks/results/assembly.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import _results
import anyio
import httpx

from bedrock_chat import AnthropicBedrock
from bedrock_chat._core.eventstream import encode_chunk_event
from bedrock_chat._core.sse import encode_event

MESSAGES_MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
TEXT_MODEL = "anthropic.claude-v2"
PIECE = 64 * 1024


def _messages_events(deltas: int, size: int) -> list[dict[str, object]]:
    text = "a" * (size - 1) + " "
    events: list[dict[str, object]] = [
        {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}] * deltas
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": deltas}},
        {"type": "message_stop"},
    ]
    return events


def invoke_messages_body(deltas: int, size: int) -> bytes:
    """InvokeModelWithResponseStream, Messages API: event-stream frames wrapping the Messages events."""
    return b"".join(encode_chunk_event(json.dumps(event).encode()) for event in _messages_events(deltas, size))


def messages_endpoint_body(deltas: int, size: int) -> bytes:
    """The /anthropic/v1/messages surface: server-sent events."""
    return b"".join(encode_event(str(event["type"]), json.dumps(event)) for event in _messages_events(deltas, size))


def text_completion_body(deltas: int, size: int) -> bytes:
    """InvokeModelWithResponseStream, text completions: one ``completion`` piece per frame."""
    text = "a" * (size - 1) + " "
    frames = [encode_chunk_event(json.dumps({"completion": text, "stop_reason": None}).encode())] * deltas
    final = {"completion": "", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}
    return b"".join([*frames, encode_chunk_event(json.dumps(final).encode())])


CASES: dict[str, tuple[str, str, str, Callable[[int, int], bytes]]] = {
    # name: (model, surface, content type, body builder)
    "InvokeModel, Messages API": (MESSAGES_MODEL, "invoke", "application/vnd.amazon.eventstream", invoke_messages_body),
    "Messages endpoint (SSE)": (MESSAGES_MODEL, "messages-endpoint", "text/event-stream", messages_endpoint_body),
    "InvokeModel, text completions": (TEXT_MODEL, "invoke", "application/vnd.amazon.eventstream", text_completion_body),
}


class _Pieces(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), PIECE):
            yield self._body[start : start + PIECE]


async def drain_once(model: str, surface: str, content_type: str, body: bytes) -> tuple[float, int]:
    """CPU seconds to drain one stream of ``body``, and the length of the assembled text."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": content_type}, stream=_Pieces(body))

    async with AnthropicBedrock(
        access_key="AKIDEXAMPLE", secret_key="x", region="us-east-1", transport=httpx.MockTransport(handler)
    ) as client:
        started = time.process_time()
        stream = await client.ChatCompletion.create(
            model=model, messages=[{"role": "user", "content": "hi"}], stream=True, surface=surface
        )
        completion = await stream.final_completion()
        took = time.process_time() - started
    return took, len(completion.completion)


_HEADER = ("| answer | surface | deltas | chars | CPU s | us per delta |", "|---|---|---:|---:|---:|---:|")


def _row(row: dict[str, Any]) -> str:
    return (
        f"| {row['answer']} | {row['surface']} | {row['deltas']:,} | {row['chars']:,} | {row['cpu_s']:.3f} | "
        f"{row['cpu_s'] / row['deltas'] * 1e6:.1f} |"
    )


def main(argv: list[str] | None = None) -> None:
    """Drain each shape on each surface, print the table and save it (unless ``--no-save``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller answers (about a tenth)")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/assembly.json alone")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    shapes = [(6000 // scale, 1000, "long deltas"), (100_000 // scale, 5, "word-sized deltas")]
    print("\n".join(_HEADER))
    rows: list[dict[str, Any]] = []
    for deltas, size, label in shapes:
        for name, (model, surface, content_type, build) in CASES.items():
            body = build(deltas, size)
            took, length = anyio.run(drain_once, model, surface, content_type, body)
            assert length == deltas * size, (name, length)
            rows.append({"answer": label, "surface": name, "deltas": deltas, "chars": length, "cpu_s": took})
            print(_row(rows[-1]))
    if not args.no_save:
        _results.save("assembly", {"piece_bytes": PIECE, "rows": rows}, _results.metadata(quick=args.quick))


def render(document: dict[str, Any]) -> str:
    """The README's stream-assembly table, from ``results/assembly.json``."""
    rows = [_row(row) for row in document["data"]["rows"]]
    caption = _results.caption(document, "python benchmarks/bench_assembly.py")
    return "\n".join([*_HEADER, *rows, "", caption])


if __name__ == "__main__":
    main()
