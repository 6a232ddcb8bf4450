"""A local, faithful stand-in for the AWS Bedrock runtime (Anthropic Claude models), for tests and benchmarks.

Three ways to run it::

    async with BedrockEmulator() as emu:              # in your event loop (asyncio or trio)
        ...  # point a client at emu.endpoint_url with emu.access_key / emu.secret_key / emu.region

    with run_emulator_in_thread() as emu:             # in a daemon thread, for sync code
        ...

    $ python -m bedrock_chat.emulator --port 0        # prints endpoint_url=http://127.0.0.1:PORT

and the ``bedrock_emulator`` pytest fixture. It serves InvokeModel and InvokeModelWithResponseStream
(AWS event stream), CountTokens (``_count_tokens``) and Bedrock's Messages-API surface
``POST /anthropic/v1/messages`` (JSON or SSE; its choices are in ``_messages_endpoint``) over real
HTTP/1.1, checks SigV4 with botocore as the reference (API keys too, as ``Authorization: Bearer``,
when ``EmulatorOptions.api_key`` is set), checks Bedrock's request-option headers (guardrail, trace,
latency, service tier, metadata: ``_core.request_options``) and Messages content blocks, tools and
``tool_choice`` (``_content``), answers with a deterministic fake model (rules in ``_fake_model``: see
:func:`count_tokens` and :func:`fake_reply`; tool calls by the rules in ``_tools``), and injects
faults by rate (:class:`Faults`) or by script (:meth:`BedrockEmulator.enqueue_faults`, names in
:data:`FAULT_NAMES`), and can enforce an account :class:`Quota` (requests and tokens per minute,
``_quota``). Hostile clients cannot knock it over: :class:`ServerLimits` bounds header and
idle time, connections and the request log's memory, and it outlives running out of descriptors.

The emulator checks the client, so it shares only the pure wire codecs (``_core.eventstream``,
``_core.sse``) and the command-line argument types with it (the import-linter contract ``emulator-peer``).
Its table of what Bedrock serves (``_models``) and its error wire format (``_wire_errors``) are its own,
written from the spec and compared with the client's by ``tests/emulator/test_tables_agree.py``.
"""

from __future__ import annotations

from ._fake_model import FakeReply, count_tokens, fake_reply, split_chunks
from ._faults import FAULT_NAMES, Faults
from ._limits import ServerLimits
from ._options import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_MESSAGES_SIGNING_NAMES,
    DEFAULT_REGION,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
)
from ._quota import Quota
from ._server import MAX_BODY_BYTES, BedrockEmulator, RecordedRequest
from ._thread import run_emulator_in_thread

__all__ = [
    "BedrockEmulator",
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_MESSAGES_SIGNING_NAMES",
    "DEFAULT_REGION",
    "DEFAULT_SECRET_KEY",
    "EmulatorOptions",
    "FAULT_NAMES",
    "FakeReply",
    "Faults",
    "MAX_BODY_BYTES",
    "Quota",
    "RecordedRequest",
    "ServerLimits",
    "count_tokens",
    "fake_reply",
    "run_emulator_in_thread",
    "split_chunks",
]
