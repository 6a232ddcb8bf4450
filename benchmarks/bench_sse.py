"""Decode a 1,000-event Anthropic Messages SSE stream: bedrock_chat's SSE decoder against the anthropic SDK's.

Both sides do the per-token job a streaming client does on the ``/anthropic/v1/messages`` surface:
split the bytes into lines and events, decode UTF-8, and ``json.loads`` each event's data. Bytes
arrive in 1-4 KB pieces as from a socket. Run: ``python benchmarks/bench_sse.py [--quick] [--no-save]``;
the figures go to ``benchmarks/results/sse.json``.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import _results
from _stream_timing import measure, split
from anthropic._streaming import SSEDecoder as SDKDecoder

from bedrock_chat._core.sse import SSEDecoder, encode_event

_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "on", "bedrock", "caf\u00e9")


def build_stream(events: int = 1000, seed: int = 0) -> bytes:
    """message_start, content_block_start, ping, text deltas, content_block_stop, message_delta, message_stop."""
    rng = random.Random(seed)
    head: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_bdrk_01ABCDEFGHIJKLMNOPQRSTUV",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "cache_read_input_tokens": 0, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
    ]
    tail: list[dict[str, Any]] = [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": events},
        },
        {"type": "message_stop"},
    ]
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " " + rng.choice(_WORDS)}}
        for _ in range(events - len(head) - len(tail))
    ]
    return b"".join(
        encode_event(body["type"], json.dumps(body, separators=(",", ":"))) for body in [*head, *deltas, *tail]
    )


def decode_sdk(pieces: list[bytes], parse: Callable[[str], object] = json.loads) -> list[object]:
    """The anthropic SDK's incremental path: ``SSEDecoder.iter_bytes`` over the response's byte chunks."""
    source: Iterator[bytes] = iter(pieces)
    return [parse(sse.data) for sse in SDKDecoder().iter_bytes(source)]


def decode_ours(pieces: list[bytes], parse: Callable[[str], object] = json.loads) -> list[object]:
    """The bedrock_chat client hot path: feed each piece, drain the events, close at the end."""
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        decoder.feed(piece)
        for event in decoder:
            events.append(parse(event.data))
    decoder.close()
    return events


def _events_only(decode: Callable[..., list[object]]) -> Callable[[list[bytes]], list[object]]:
    """The same loop with the data left as a string: what remains once the shared json.loads is gone."""
    return lambda pieces: decode(pieces, str)


#: (row title, the SDK's key, ours): the two comparisons printed, saved and rendered.
ROWS = (
    ("full per-token work (SSE decoding + json.loads of each event's data)", "sdk", "ours"),
    ("the same without json.loads, which both pay alike", "sdk events", "ours events"),
)


def main(argv: list[str] | None = None) -> None:
    """Check both decoders agree, then time them, print the ratios and save them (unless ``--no-save``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repeats", type=int, help="interleaved runs (default 21; quick 5)")
    parser.add_argument("--quick", action="store_true", help="5 runs instead of 21")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/sse.json alone")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 21)

    stream = build_stream(args.events)
    pieces = split(stream)
    events = decode_ours(pieces)
    if events != decode_sdk(pieces) or len(events) != args.events:
        raise SystemExit("the two decoders disagree: not timing them")
    print(f"stream: {args.events} SSE events, {len(stream):,} bytes in {len(pieces)} pieces of 1-4 KB")

    medians = measure(
        {
            "sdk": decode_sdk,
            "ours": decode_ours,
            "sdk events": _events_only(decode_sdk),
            "ours events": _events_only(decode_ours),
        },
        pieces,
        args.repeats,
    )
    for title, theirs, ours in ROWS:
        print(f"{title}:")
        print(f"  anthropic SDK SSEDecoder.iter_bytes: {medians[theirs] * 1e3:7.2f} ms CPU/stream")
        print(f"  bedrock_chat SSEDecoder:             {medians[ours] * 1e3:7.2f} ms CPU/stream")
        print(f"  speed-up: {medians[theirs] / medians[ours]:.2f}x")
    print(f"(medians of {args.repeats} interleaved runs of 5 streams each, CPU time)")
    if not args.no_save:
        data = {
            "events": args.events,
            "bytes": len(stream),
            "pieces": len(pieces),
            "repeats": args.repeats,
            "cpu_ms_per_stream": {name: seconds * 1e3 for name, seconds in medians.items()},
        }
        _results.save("sse", data, _results.metadata(quick=args.quick))


def render(document: dict[str, Any]) -> str:
    """The README's SSE decoder table, from ``results/sse.json``."""
    data = document["data"]
    ms = data["cpu_ms_per_stream"]
    lines = [
        f"| decode a {data['events']:,}-event SSE stream (Messages endpoint) | bedrock_chat CPU ms | "
        "anthropic SDK `SSEDecoder` CPU ms | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for title, theirs, ours in ROWS:
        lines.append(f"| {title} | {ms[ours]:.2f} | {ms[theirs]:.2f} | {ms[theirs] / ms[ours]:.2f}x |")
    lines += ["", _results.caption(document, "python benchmarks/bench_sse.py")]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
