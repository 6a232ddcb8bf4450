"""Time our SigV4 signer against botocore's ``SigV4Auth.add_auth`` on the same Bedrock request.

Run: ``python benchmarks/bench_sigv4.py [--quick] [--no-save]``. Both sign an InvokeModel request with a 500-byte JSON
body and a session token; each side reads the clock per call as it would in a client (botocore
internally, ours via ``time.time()``), so the signing-key caches stay warm as they do in practice.
The figures go to ``benchmarks/results/sigv4.json`` (``--no-save``: printed only, as run.py's rounds use it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit
from typing import Any

import _results
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bedrock_chat._core.sigv4 import SigV4Signer, percent_encode_path_segment
from bedrock_chat._types import AwsCredentials

REGION = "us-east-1"
HOST = f"bedrock-runtime.{REGION}.amazonaws.com"
PATH = f"/model/{percent_encode_path_segment('anthropic.claude-3-5-sonnet-20241022-v2:0')}/invoke"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEXAMPLE" * 20
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "User-Agent": "bedrock-chat/0.1.0",
}
REPEATS = 7


def _body(size: int = 500) -> bytes:
    """A JSON Messages-API body padded to exactly ``size`` bytes."""
    skeleton = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256, "messages": []}
    prefix = len(json.dumps({**skeleton, "messages": [{"role": "user", "content": ""}]}).encode())
    content = "x" * (size - prefix)
    body = json.dumps({**skeleton, "messages": [{"role": "user", "content": content}]}).encode()
    assert len(body) == size
    return body


def _median_us(func: object, number: int, repeats: int) -> float:
    """Median over ``repeats`` runs of the per-call time in microseconds."""
    runs = timeit.repeat(func, number=number, repeat=repeats)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


def main(argv: list[str] | None = None) -> None:
    """Print µs per signature for both signers and the speed-up; save them unless ``--no-save``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs instead of 7, a tenth of the calls each")
    parser.add_argument("--no-save", action="store_true", help="print only; leave results/sigv4.json alone")
    args = parser.parse_args(argv)
    repeats, scale = (3, 10) if args.quick else (REPEATS, 1)
    body = _body()
    signer = SigV4Signer(region=REGION)
    ours_credentials = AwsCredentials(ACCESS_KEY, SECRET_KEY, TOKEN)

    def ours() -> None:
        signer.sign(
            method="POST",
            host=HOST,
            path=PATH,
            headers=HEADERS,
            body=body,
            credentials=ours_credentials,
            timestamp=time.time(),
        )

    botocore_auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, TOKEN), "bedrock", REGION)
    request = AWSRequest(method="POST", url=f"https://{HOST}{PATH}", data=body, headers=dict(HEADERS))

    def theirs() -> None:
        botocore_auth.add_auth(request)  # re-signing replaces the previous signature headers

    ours_us = _median_us(ours, 20_000 // scale, repeats)
    theirs_us = _median_us(theirs, 2_000 // scale, repeats)
    print(f"request: POST {PATH}, {len(body)}-byte body, session token, medians of {repeats} runs")
    print(f"bedrock_chat SigV4Signer.sign : {ours_us:8.2f} µs/op")
    print(f"botocore SigV4Auth.add_auth   : {theirs_us:8.2f} µs/op")
    print(f"speed-up                      : {theirs_us / ours_us:8.1f}x")
    if not args.no_save:
        data = {"body_bytes": len(body), "repeats": repeats, "ours_us": ours_us, "botocore_us": theirs_us}
        _results.save("sigv4", data, _results.metadata(quick=args.quick))


def render(document: dict[str, Any]) -> str:
    """The README's signer table, from ``results/sigv4.json``."""
    data = document["data"]
    speed_up = data["botocore_us"] / data["ours_us"]
    return "\n".join(
        [
            f"| SigV4 signature ({data['body_bytes']}-byte body, session token) | µs per signature | speed-up |",
            "|---|---:|---:|",
            f"| bedrock_chat `SigV4Signer.sign` | {data['ours_us']:.2f} | {speed_up:.1f}x |",
            f"| botocore `SigV4Auth.add_auth` | {data['botocore_us']:.2f} | 1.0x |",
            "",
            _results.caption(document, "python benchmarks/bench_sigv4.py"),
        ]
    )


if __name__ == "__main__":
    main()
