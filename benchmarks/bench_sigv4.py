"""Time our SigV4 signer against botocore's ``SigV4Auth.add_auth`` on the same Bedrock request.

Run: ``python benchmarks/bench_sigv4.py``. Both sign an InvokeModel request with a 500-byte JSON
body and a session token; each side reads the clock per call as it would in a client (botocore
internally, ours via ``time.time()``), so the signing-key caches stay warm as they do in practice.
"""

from __future__ import annotations

import json
import statistics
import time
import timeit

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


def _median_us(func: object, number: int) -> float:
    """Median over REPEATS runs of the per-call time in microseconds."""
    runs = timeit.repeat(func, number=number, repeat=REPEATS)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


def main() -> None:
    """Print µs per signature for both signers and the speed-up."""
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

    ours_us = _median_us(ours, 20_000)
    theirs_us = _median_us(theirs, 2_000)
    print(f"request: POST {PATH}, {len(body)}-byte body, session token, medians of {REPEATS} runs")
    print(f"bedrock_chat SigV4Signer.sign : {ours_us:8.2f} µs/op")
    print(f"botocore SigV4Auth.add_auth   : {theirs_us:8.2f} µs/op")
    print(f"speed-up                      : {theirs_us / ours_us:8.1f}x")


if __name__ == "__main__":
    main()
