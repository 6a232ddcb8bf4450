"""Helpers shared by the emulator's tests: botocore as the reference signer, and a valid request body.

Imported as ``emulator_testing`` (pytest puts this directory on ``sys.path`` for the test modules
here). The emulator's own fixtures come from its pytest plugin, registered by the package's pytest11
entry point.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from bedrock_chat._core.eventstream import EventStreamDecoder, decode_chunk_payload
from bedrock_chat.emulator import BedrockEmulator

__all__ = ["MESSAGES_BODY", "MESSAGES_BYTES", "Answer", "Signer", "chunk_events", "post_signed", "sign_with_botocore"]

#: A valid Messages body (Claude 3.5 Haiku and friends).
MESSAGES_BODY: dict[str, Any] = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "Hello there, emulator"}],
}
MESSAGES_BYTES = json.dumps(MESSAGES_BODY).encode()

#: sign(emulator, path, body, **overrides) -> headers to send.
Signer = Callable[..., dict[str, str]]


def sign_with_botocore(
    emu: BedrockEmulator,
    path: str,
    body: bytes,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    session_token: str | None = None,
    region: str | None = None,
    when: datetime.datetime | None = None,
    headers: dict[str, str] | None = None,
    service: str = "bedrock",
) -> dict[str, str]:
    """Headers (Host included) for a POST to ``path`` signed by botocore, the reference signer.

    ``service`` is the SigV4 signing name (``bedrock-mantle`` is what the anthropic SDK's mantle client uses).
    """
    host = emu.endpoint_url.removeprefix("http://")
    request = AWSRequest(
        method="POST",
        url=f"{emu.endpoint_url}{path}",
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    credentials = Credentials(access_key or emu.access_key, secret_key or emu.secret_key, session_token)
    signer = botocore.auth.SigV4Auth(credentials, service, region or emu.region)
    moment = when or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=moment):
        signer.add_auth(request)
    return {"Host": host, **dict(request.headers.items())}


class Answer:
    """A response read whole: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def error_code(self) -> str:
        """The AWS error code (``x-amzn-ErrorType`` up to the first ``:``)."""
        return self.headers.get("x-amzn-errortype", "").split(":", 1)[0]


def post_signed(
    emu: BedrockEmulator,
    path: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    signed: bool = True,
    service: str = "bedrock",
) -> Answer:
    """POST ``body`` to ``path`` over a fresh ``http.client`` connection, signed by botocore unless ``signed`` is False.

    ``headers`` are signed too (as botocore signs modeled headers); unsigned requests send them as given.
    """
    if signed:
        sent = sign_with_botocore(emu, path, body, headers=headers, service=service)
    else:
        sent = {"Content-Type": "application/json", **(headers or {})}
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        return Answer(response.status, {name.lower(): value for name, value in response.getheaders()}, data)
    finally:
        conn.close()


def chunk_events(data: bytes) -> list[Any]:
    """The model events of an InvokeModelWithResponseStream body (every frame must be a ``chunk``)."""
    decoder = EventStreamDecoder()
    decoder.feed(data)
    events = []
    for message in decoder:
        assert message.event_type == "chunk", message
        events.append(json.loads(decode_chunk_payload(message.payload)))
    decoder.close()
    return events


@contextlib.contextmanager
def boto3_runtime_client(emu: BedrockEmulator, *, retries: int = 0) -> Iterator[Any]:
    """A boto3 bedrock-runtime client aimed at ``emu`` with its keys, closed afterwards: a single attempt
    unless ``retries`` (botocore's standard mode, so a retried call reports its retry count)."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=emu.endpoint_url,
        region_name=emu.region,
        aws_access_key_id=emu.access_key,
        aws_secret_access_key=emu.secret_key,
        config=Config(
            retries={"total_max_attempts": 1 + retries, "mode": "standard"}, read_timeout=10, connect_timeout=10
        ),
    )
    try:
        yield client
    finally:
        client.close()
