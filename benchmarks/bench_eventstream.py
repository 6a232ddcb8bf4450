"""Decode a 1,000-chunk Bedrock Messages stream: bedrock_chat's decoder against botocore's.

Both sides do the whole per-token job a streaming client does: split frames, check CRCs, read the
headers, JSON-decode the ``{"bytes": ...}`` payload, base64-decode it and JSON-decode the model's
event. Bytes arrive in 1-4 KB pieces as from a socket. Every chunk carries Bedrock's padding field
``"p"`` (a prefix of ``a-zA-Z0-9`` of random length, as real streams have it) unless ``--no-padding``.
Run: ``python benchmarks/bench_eventstream.py [--quick] [--no-save]``; the figures go to
``benchmarks/results/eventstream.json`` (``--no-save``: printed only, as run.py's rounds use it).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import time
from collections.abc import Callable
from typing import Any

import _results
from _stream_timing import measure, split
from botocore.eventstream import EventStreamBuffer

from bedrock_chat._core.eventstream import EventStreamDecoder, decode_chunk_payload, encode_chunk_event

#: Bedrock pads each chunk with a prefix of this (aws-sdk-js-v3#6919 shows lengths from 3 to 61).
PADDING_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "on", "bedrock")


def build_stream(chunks: int = 1000, seed: int = 0, *, padding: bool = True) -> bytes:
    """message_start, ``chunks - 2`` text deltas, message_stop with invocation metrics (each padded)."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_bdrk_01ABCDEFGHIJKLMNOPQRSTUV",
                "type": "message",
                "role": "assistant",
                "model": "claude-3-5-sonnet-20241022",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        }
    ]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " " + rng.choice(_WORDS)}}
        for _ in range(chunks - 2)
    ]
    events.append(
        {
            "type": "message_stop",
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": 25,
                "outputTokenCount": chunks - 2,
                "invocationLatency": 12345,
                "firstByteLatency": 321,
            },
        }
    )
    return b"".join(
        encode_chunk_event(
            json.dumps(event, separators=(",", ":")).encode(),
            PADDING_ALPHABET[: rng.randint(1, len(PADDING_ALPHABET))] if padding else b"",
        )
        for event in events
    )


def decode_botocore(pieces: list[bytes], inner: Callable[[bytes], object] = json.loads) -> list[object]:
    """What a botocore-based client does per chunk (EventStream's loop, minus its shape parser)."""
    buffer = EventStreamBuffer()
    events = []
    for piece in pieces:
        buffer.add_data(piece)
        for message in buffer:
            document = json.loads(message.payload)
            events.append(inner(base64.b64decode(document["bytes"])))
    return events


def _parse_event(data: bytes) -> object:
    """What the client does with a chunk's model event: UTF-8 decode, then json.loads on the str."""
    return json.loads(data.decode())


def decode_ours(pieces: list[bytes], inner: Callable[[bytes], object] = _parse_event) -> list[object]:
    """The bedrock_chat client hot path (as in ``_streaming._EventStreamSource``)."""
    decoder = EventStreamDecoder()
    events = []
    for piece in pieces:
        decoder.feed(piece)
        for message in decoder:
            events.append(inner(decode_chunk_payload(message.payload)))
    decoder.close()
    return events


def _frames_only(decode: Callable[..., list[object]]) -> Callable[[list[bytes]], list[object]]:
    """The same loop with the model event left as bytes: what remains once the shared json.loads is gone."""
    return lambda pieces: decode(pieces, bytes)


#: (row title, botocore's key, ours): the two comparisons printed, saved and rendered.
ROWS = (
    ("full per-token work (frames + payload + base64 + json.loads of the event)", "botocore", "ours"),
    ("the same without the final json.loads, which both pay alike", "botocore frames", "ours frames"),
)


def main(argv: list[str] | None = None) -> None:
    """Check both decoders agree, then time them, print the ratios and save them (unless ``--no-save``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, help="interleaved runs (default 21; quick 5)")
    parser.add_argument("--no-padding", action="store_true", help='chunks without the "p" padding field')
    parser.add_argument("--quick", action="store_true", help="5 runs instead of 21")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/eventstream.json alone")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 21)

    stream = build_stream(args.chunks, padding=not args.no_padding)
    pieces = split(stream)
    events = decode_ours(pieces)
    if events != decode_botocore(pieces) or len(events) != args.chunks:
        raise SystemExit("the two decoders disagree: not timing them")
    padded = "without" if args.no_padding else "with"
    print(f"stream: {args.chunks} chunk frames {padded} padding, {len(stream):,} bytes", end="")
    print(f" in {len(pieces)} pieces of 1-4 KB")

    medians = measure(
        {
            "botocore": decode_botocore,
            "ours": decode_ours,
            "botocore frames": _frames_only(decode_botocore),
            "ours frames": _frames_only(decode_ours),
        },
        pieces,
        args.repeats,
        clock=time.perf_counter,
    )
    for title, theirs, ours in ROWS:
        print(f"{title}:")
        print(f"  botocore EventStreamBuffer + json + base64: {medians[theirs] * 1e3:7.2f} ms/stream")
        print(f"  bedrock_chat decoder + decode_chunk_payload: {medians[ours] * 1e3:7.2f} ms/stream")
        print(f"  speed-up: {medians[theirs] / medians[ours]:.2f}x")
    print(f"(medians of {args.repeats} interleaved runs of 5 streams each)")
    if not args.no_save:
        data = {
            "chunks": args.chunks,
            "padding": not args.no_padding,
            "bytes": len(stream),
            "pieces": len(pieces),
            "repeats": args.repeats,
            "ms_per_stream": {name: seconds * 1e3 for name, seconds in medians.items()},
        }
        _results.save("eventstream", data, _results.metadata(quick=args.quick))


def render(document: dict[str, Any]) -> str:
    """The README's decoder table, from ``results/eventstream.json``."""
    data = document["data"]
    ms = data["ms_per_stream"]
    padded = 'every chunk padded with `"p"` as Bedrock sends it' if data["padding"] else "no padding"
    lines = [
        f"| decode + parse a {data['chunks']:,}-chunk stream ({padded}) | bedrock_chat ms | "
        "botocore `EventStreamBuffer` + json + base64 ms | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for title, theirs, ours in ROWS:
        lines.append(f"| {title} | {ms[ours]:.2f} | {ms[theirs]:.2f} | {ms[theirs] / ms[ours]:.2f}x |")
    lines += ["", _results.caption(document, "python benchmarks/bench_eventstream.py")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
