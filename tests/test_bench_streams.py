"""The many-streams benchmark's server and checks: its replayed streams parse with real clients, and a
truncated stream fails the benchmark instead of being measured.

The paced server runs as the benchmark runs it (a subprocess, with its own capture from the emulator);
the expected text is what the emulator itself streams for the same request (it is deterministic).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_streams
from _paced_server import INVOKE_PATH, PacedInfo, capture, paced_server

CHUNKS = 12


@pytest.fixture(scope="module")
def expected_pieces() -> dict[str, list[str]]:
    """Each surface's text pieces as the real emulator streams them."""
    recordings = capture(CHUNKS)
    return {surface: recordings[surface, CHUNKS].text_pieces() for surface in ("invoke", "messages")}


@pytest.fixture(scope="module")
def server() -> Iterator[PacedInfo]:
    with paced_server(None, interval_ms=2, chunks=CHUNKS) as info:
        yield info


@pytest.fixture(scope="module")
def truncated_server() -> Iterator[PacedInfo]:
    with paced_server(None, interval_ms=2, chunks=CHUNKS, truncate=5) as info:
        yield info


async def _bedrock_chat_pieces(endpoint: str, surface: str) -> tuple[list[str], str]:
    from bedrock_chat import AnthropicBedrock

    async with AnthropicBedrock(
        access_key="AKIDTEST", secret_key="test-secret", region="us-east-1", endpoint_url=endpoint
    ) as client:
        stream = await client.ChatCompletion.create(
            model=bench_streams.MODEL,
            messages=[{"role": "user", "content": "Hello, emulator"}],
            max_tokens_to_sample=CHUNKS,
            stream=True,
            surface="invoke" if surface == "invoke" else "messages-endpoint",
        )
        async with stream:
            pieces = [chunk.text async for chunk in stream if chunk.text]
        return pieces, stream.completion.completion


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages"])
async def test_bedrock_chat_reads_the_paced_streams(
    server: PacedInfo, expected_pieces: dict[str, list[str]], surface: str
) -> None:
    """bedrock_chat gets the emulator's text, piece by piece, from the replayed (and paced) bytes."""
    pieces, completion = await _bedrock_chat_pieces(server.endpoint, surface)
    assert pieces == expected_pieces[surface]
    assert len(pieces) == CHUNKS
    assert completion == "".join(expected_pieces[surface])


def test_boto3_reads_the_paced_invoke_stream(server: PacedInfo, expected_pieces: dict[str, list[str]]) -> None:
    """boto3 (botocore's own event-stream parser, CRCs checked) reads the replayed frames; it has no
    operation for the Messages endpoint, which bedrock_chat and the anthropic SDK cover."""
    client: Any = boto3.client(
        "bedrock-runtime",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="test-secret",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=10),
    )
    try:
        body = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": CHUNKS,
            "messages": [{"role": "user", "content": "Hi"}],
        }
        response = client.invoke_model_with_response_stream(modelId=bench_streams.MODEL, body=json.dumps(body))
        events = [json.loads(item["chunk"]["bytes"]) for item in response["body"]]
    finally:
        client.close()
    texts = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert texts == expected_pieces["invoke"]
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]


@pytest.mark.asyncio
@pytest.mark.parametrize("key", ["aiohttp (floor) [invoke]", "aiohttp (floor) [messages]", "bedrock_chat [invoke]"])
async def test_a_wave_of_full_streams_passes_the_check(server: PacedInfo, key: str) -> None:
    """The benchmark's own wave (warm-up, ramp, ticker, checks) completes on streams that are whole."""
    contender = bench_streams.CONTENDERS[key]
    async with contender.factory(server.endpoint, 8, contender.surface) as one:
        figures = await bench_streams.measure_wave(one, 8, CHUNKS, ramp_s=0.01, warmup=2)
    assert figures["streams"] == 8
    assert figures["open_peak"] >= 1
    assert figures["cpu_us_per_chunk"] > 0


@pytest.mark.asyncio
@pytest.mark.parametrize("surface", ["invoke", "messages"])
async def test_a_truncated_stream_fails_the_chunk_count_check(truncated_server: PacedInfo, surface: str) -> None:
    """A floor reading a stream cut after 5 of 12 chunks (cleanly ended, so no client error) fails the wave."""
    contender = bench_streams.CONTENDERS[f"aiohttp (floor) [{surface}]"]
    async with contender.factory(truncated_server.endpoint, 4, surface) as one:
        with pytest.raises(bench_streams.ChunkCountError, match=f"4 of 4 streams did not carry {CHUNKS} text chunks"):
            await bench_streams.measure_wave(one, 4, CHUNKS, ramp_s=0.0, warmup=1)


def test_the_check_names_short_streams_and_uneven_text() -> None:
    """check_streams: a count off by one, or the same count with different text, is a failure."""
    bench_streams.check_streams([(0.1, 3, 10), (0.2, 3, 10)], 3)
    with pytest.raises(bench_streams.ChunkCountError, match="1 of 2 streams"):
        bench_streams.check_streams([(0.1, 3, 10), (0.2, 2, 7)], 3)
    with pytest.raises(bench_streams.ChunkCountError, match="different text lengths"):
        bench_streams.check_streams([(0.1, 3, 10), (0.2, 3, 9)], 3)


def test_the_server_refuses_what_it_has_no_stream_for(server: PacedInfo) -> None:
    """A request the server has no recording for is a 400, never a different stream."""
    import http.client

    host, _, port = server.endpoint.removeprefix("http://").rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", INVOKE_PATH, body=json.dumps({"max_tokens": CHUNKS + 1}))
        response = connection.getresponse()
        assert response.status == 400
        assert b"no stream" in response.read()
    finally:
        connection.close()


def test_server_load_is_the_share_of_a_core_over_the_wave() -> None:
    """Mean CPU share over the wave's window, peak over >= 0.25 s windows."""
    samples = [(0.0, 0.0), (0.5, 0.1), (1.0, 0.5), (1.5, 0.6), (2.0, 0.7)]
    mean, peak = bench_streams.server_load(samples, 0.5, 1.5)
    assert mean == pytest.approx(0.5)
    assert peak == pytest.approx(0.8)


def test_render_builds_the_tables_from_a_saved_document() -> None:
    """render() reads what main() saves: rows, PASS/FAIL targets, server-bound marks, missing figures as '-'."""
    row = {"server_bound": False, "server_cpu": 0.25, "server_cpu_peak": 0.3, "open_peak": 4, "wall_s": 1.0}
    figures = dict.fromkeys(bench_streams.METRICS, 1.0) | row
    rounds = [
        {
            "bedrock_chat [invoke]": {**figures, "cpu_us_per_chunk": 10.0, "lag_ms_p99": 12.0},
            "aiobotocore [invoke]": {
                **figures,
                "cpu_us_per_chunk": 30.0,
                "server_cpu": 0.9,
                "server_cpu_peak": 0.95,
                "server_bound": True,
            },
        }
    ]
    config = {"streams": 4, "chunks": 12, "interval_ms": 20.0, "ramp_s": 0.004, "warmup": 1, "rounds": 1}
    data = {"config": config, **bench_streams.summarize(rounds, 4), "failures": []}
    data["rows"][0]["ttft_ms_p99"] = None
    text = bench_streams.render({"benchmark": "streams", "meta": {}, "data": data})
    assert "| bedrock_chat | invoke | 10.0 | 1.0 | 1.00 / 12.0 | 1.0 / - |" in text
    assert "90% (peak 95%) **server-bound**" in text
    assert "| CPU per chunk [invoke] vs aiobotocore | 0.33 | <= 0.5 | PASS |" in text
    assert "| loop lag p99 [invoke] at 4 streams (ms) | 12.00 | <= 10 | FAIL |" in text
