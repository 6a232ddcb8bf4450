"""Command-line glue: ``bedrock-chat emulator`` and ``python -m bedrock_chat.emulator``.

:func:`add_fault_arguments` holds the flags that shape answers and faults, so that another command (the
chat command's ``--emulator``) can offer them without the server flags; :func:`add_emulator_arguments`
adds those too. Every ``dest`` starts with ``emulator_`` so the flags can share a namespace with any
other command's. :func:`emulator_options_from_args` works on a namespace built by either.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from typing import TextIO

import anyio

from .._core.argtypes import bounded
from .._errors import ConfigurationError
from ._faults import FAULT_NAMES, STREAM_EXCEPTIONS, Faults, parse_fault
from ._limits import ServerLimits
from ._options import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_MESSAGES_SIGNING_NAMES,
    DEFAULT_REGION,
    DEFAULT_SECRET_KEY,
    EmulatorOptions,
)
from ._quota import DEFAULT_BURST_SECONDS, Quota
from ._server import BedrockEmulator

__all__ = [
    "add_emulator_arguments",
    "add_fault_arguments",
    "emulator_limits_from_args",
    "emulator_options_from_args",
    "environment_lines",
    "run_emulator_command",
    "scripted_faults_from_args",
]


_rate = bounded(float, 0.0, 1.0)
_seconds = bounded(float, 0.0)
_count = bounded(int, 1)
_tokens = bounded(int, 0)
_port = bounded(int, 0, 65535)
_timeout = bounded(float, 0.001, 86400.0)
_bytes = bounded(int, 0)
_bytes_per_second = bounded(float, 0.0, 1e12)
_per_minute = bounded(float, 0.001, 1e12)
_burst_seconds = bounded(float, 0.001, 86400.0)


def _rate_or_none(text: str) -> float | None:
    """A minimum rate in bytes/s; 0 means none (``ServerLimits.min_data_rate=None``)."""
    return _bytes_per_second(text) or None


def _signing_names(text: str) -> frozenset[str]:
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no signing service")
    return names


def _fault_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        try:
            parse_fault(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return names


#: (flag, dest suffix, type, help) for every rate and delay: one table, one loop.
_FAULT_FLAGS = (
    ("--throttle-rate", "throttle_rate", _rate, "probability of 429 ThrottlingException"),
    ("--model-not-ready-rate", "model_not_ready_rate", _rate, "probability of 429 ModelNotReadyException"),
    ("--internal-error-rate", "internal_error_rate", _rate, "probability of 500 InternalServerException"),
    ("--service-unavailable-rate", "service_unavailable_rate", _rate, "probability of 503 ServiceUnavailable"),
    ("--stall-rate", "stall_rate", _rate, "probability of sending headers and then nothing"),
    ("--stream-exception-rate", "stream_exception_rate", _rate, "probability of a mid-stream exception frame"),
    ("--drop-mid-stream-rate", "drop_mid_stream_rate", _rate, "probability of closing the socket mid-stream"),
    ("--bad-crc-rate", "bad_crc_rate", _rate, "probability of a frame with a wrong CRC"),
    ("--latency", "latency", _seconds, "seconds before every answer"),
    ("--time-to-first-byte", "time_to_first_byte", _seconds, "seconds between stream headers and first frame"),
    ("--chunk-delay", "chunk_delay", _seconds, "seconds between stream frames"),
)

#: (flag, ServerLimits field, type, metavar, help with ``{}`` for the default) for every server limit.
_LIMIT_FLAGS = (
    (
        "--header-timeout",
        "header_timeout",
        _timeout,
        "SECONDS",
        "time from a request's first byte to the end of its headers (default {:g})",
    ),
    (
        "--idle-timeout",
        "idle_timeout",
        _timeout,
        "SECONDS",
        "time a connection may make no progress: keep-alive wait, body pause, unread reply (default {:g})",
    ),
    (
        "--min-data-rate",
        "min_data_rate",
        _rate_or_none,
        "BYTES_PER_S",
        "average rate a request body or a reply must move at, allowing idle-timeout seconds of lag; "
        "0: no minimum (default {:g})",
    ),
    (
        "--body-timeout",
        "body_timeout",
        _timeout,
        "SECONDS",
        "time from the end of a request's headers to the end of its body (default {:g})",
    ),
    (
        "--max-connections",
        "max_connections",
        _count,
        "N",
        "connections served at once; more wait to be accepted (default {})",
    ),
    (
        "--max-recorded-body-bytes",
        "max_recorded_body_bytes",
        _bytes,
        "N",
        "bytes of each body the request log keeps (default {})",
    ),
)


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fake-model and fault flags (no server flags)."""
    group = parser.add_argument_group("emulator answers and faults")
    group.add_argument(
        "--seed", dest="emulator_seed", type=int, default=0, metavar="N", help="seed of the fake model and faults"
    )
    group.add_argument(
        "--reply-tokens",
        dest="emulator_reply_tokens",
        type=_tokens,
        default=None,
        metavar="N",
        help="reply length in tokens, cut at the request's max tokens (default: echo plus 8-24 words)",
    )
    group.add_argument(
        "--chunk-tokens",
        dest="emulator_chunk_tokens",
        type=_count,
        default=None,
        metavar="N",
        help="tokens per stream chunk (default: 1-3)",
    )
    for flag, dest, kind, help_text in _FAULT_FLAGS:
        metavar = "P" if kind is _rate else "SECONDS"
        group.add_argument(flag, dest=f"emulator_{dest}", type=kind, default=0.0, metavar=metavar, help=help_text)
    group.add_argument(
        "--stream-exception-type",
        dest="emulator_stream_exception_type",
        choices=sorted(STREAM_EXCEPTIONS),
        default="modelStreamErrorException",
        help="exception frame sent by --stream-exception-rate",
    )
    group.add_argument(
        "--quota-rpm",
        dest="emulator_quota_rpm",
        type=_per_minute,
        default=None,
        metavar="N",
        help="requests per minute the account may make; more are throttled (429) once the bucket is empty "
        "(default: no quota)",
    )
    group.add_argument(
        "--quota-tpm",
        dest="emulator_quota_tpm",
        type=_per_minute,
        default=None,
        metavar="N",
        help="tokens per minute: input and cache writes plus max_tokens reserved, settled to the output used "
        "(default: no quota)",
    )
    group.add_argument(
        "--quota-burst",
        dest="emulator_quota_burst",
        type=_burst_seconds,
        default=DEFAULT_BURST_SECONDS,
        metavar="SECONDS",
        help=f"seconds of its rate each quota bucket holds (default {DEFAULT_BURST_SECONDS:g})",
    )
    group.add_argument(
        "--faults",
        dest="emulator_faults",
        type=_fault_list,
        default=[],
        metavar="NAME[,NAME...]",
        help=f"scripted faults for the first requests, in order; names: {', '.join(FAULT_NAMES)} "
        "(stream_exception:TYPE)",
    )


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server flags (host, port, credentials) and the fault flags."""
    group = parser.add_argument_group("emulator server")
    group.add_argument("--host", dest="emulator_host", default="127.0.0.1", metavar="HOST", help="interface to bind")
    group.add_argument(
        "--port", dest="emulator_port", type=_port, default=0, metavar="PORT", help="port to bind (0: any free port)"
    )
    group.add_argument(
        "--region",
        dest="emulator_region",
        default=DEFAULT_REGION,
        metavar="REGION",
        help="region requests are signed for",
    )
    group.add_argument(
        "--access-key", dest="emulator_access_key", default=DEFAULT_ACCESS_KEY, metavar="K", help="accepted key id"
    )
    group.add_argument(
        "--secret-key", dest="emulator_secret_key", default=DEFAULT_SECRET_KEY, metavar="S", help="accepted secret"
    )
    group.add_argument(
        "--session-token",
        dest="emulator_session_token",
        default=None,
        metavar="T",
        help="session token requests must carry (default: none allowed)",
    )
    group.add_argument(
        "--messages-signing-names",
        dest="emulator_messages_signing_names",
        type=_signing_names,
        default=DEFAULT_MESSAGES_SIGNING_NAMES,
        metavar="NAME[,NAME...]",
        help="SigV4 service names accepted on /anthropic/v1/messages (default: bedrock,bedrock-mantle)",
    )
    group.add_argument(
        "--no-verify-signatures",
        dest="emulator_verify_signatures",
        action="store_false",
        help="accept requests without checking SigV4 (benchmarks)",
    )
    group.add_argument("--backend", dest="emulator_backend", choices=("asyncio", "trio"), default="asyncio")
    defaults = ServerLimits()
    limits = parser.add_argument_group("emulator limits (against clients that hold on)")
    for flag, field, kind, metavar, help_text in _LIMIT_FLAGS:
        default = getattr(defaults, field)
        limits.add_argument(
            flag, dest=f"emulator_{field}", type=kind, default=default, metavar=metavar, help=help_text.format(default)
        )
    add_fault_arguments(parser)


def emulator_options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """The :class:`EmulatorOptions` the flags describe; flags a parser did not define keep their defaults."""

    def get(name: str, default: object) -> object:
        return getattr(args, f"emulator_{name}", default)

    faults = Faults(
        seed=int(get("seed", 0)),  # type: ignore[call-overload]
        stream_exception_type=str(get("stream_exception_type", "modelStreamErrorException")),
        **{dest: float(get(dest, 0.0)) for _, dest, _, _ in _FAULT_FLAGS},  # type: ignore[arg-type]
    )
    reply_tokens = get("reply_tokens", None)
    chunk_tokens = get("chunk_tokens", None)
    session_token = get("session_token", None)
    signing_names = get("messages_signing_names", DEFAULT_MESSAGES_SIGNING_NAMES)
    assert isinstance(signing_names, frozenset), "set by _signing_names"
    return EmulatorOptions(
        region=str(get("region", DEFAULT_REGION)),
        access_key=str(get("access_key", DEFAULT_ACCESS_KEY)),
        secret_key=str(get("secret_key", DEFAULT_SECRET_KEY)),
        session_token=str(session_token) if session_token is not None else None,
        messages_signing_names=signing_names,
        verify_signatures=bool(get("verify_signatures", True)),
        seed=int(get("seed", 0)),  # type: ignore[call-overload]
        reply_tokens=int(reply_tokens) if reply_tokens is not None else None,  # type: ignore[call-overload]
        chunk_tokens=int(chunk_tokens) if chunk_tokens is not None else None,  # type: ignore[call-overload]
        faults=faults,
        quota=Quota(
            requests_per_minute=_float_or_none(get("quota_rpm", None)),
            tokens_per_minute=_float_or_none(get("quota_tpm", None)),
            burst_seconds=float(get("quota_burst", DEFAULT_BURST_SECONDS)),  # type: ignore[arg-type]
        ),
    )


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def emulator_limits_from_args(args: argparse.Namespace) -> ServerLimits:
    """The :class:`ServerLimits` the flags describe; flags a parser did not define keep their defaults."""
    defaults = ServerLimits()
    return ServerLimits(
        **{field: getattr(args, f"emulator_{field}", getattr(defaults, field)) for _, field, _, _, _ in _LIMIT_FLAGS}
    )


def scripted_faults_from_args(args: argparse.Namespace) -> list[str]:
    """The ``--faults`` names, to pass to :meth:`BedrockEmulator.enqueue_faults`."""
    return list(getattr(args, "emulator_faults", []))


#: Variables that would override the exported keys or send something else: a profile, another token,
#: a Bedrock API key (which the client prefers when no keys are passed explicitly).
_CONFLICTING_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_BEARER_TOKEN_BEDROCK")


def environment_lines(emulator: BedrockEmulator) -> list[str]:
    """Shell lines that point ``bedrock-chat`` (and boto3) at ``emulator``, ready to paste.

    ``bedrock-chat`` reads the endpoint from ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` (as boto3 does), the
    keys through botocore's chain (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``)
    and the region from ``AWS_REGION`` (boto3: ``AWS_DEFAULT_REGION``, so both are set).
    """
    unset = [name for name in _CONFLICTING_VARIABLES if not (name == "AWS_SESSION_TOKEN" and emulator.session_token)]
    exports = [
        ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", emulator.endpoint_url),
        ("AWS_ACCESS_KEY_ID", emulator.access_key),
        ("AWS_SECRET_ACCESS_KEY", emulator.secret_key),
    ]
    if emulator.session_token is not None:
        exports.append(("AWS_SESSION_TOKEN", emulator.session_token))
    exports += [("AWS_REGION", emulator.region), ("AWS_DEFAULT_REGION", emulator.region)]
    return [f"unset {' '.join(unset)}", *(f"export {name}={shlex.quote(value)}" for name, value in exports)]


async def _serve(args: argparse.Namespace, out: TextIO) -> None:
    options = emulator_options_from_args(args)
    limits = emulator_limits_from_args(args)
    host, port = args.emulator_host, args.emulator_port
    # Signals are caught before the server exists, so an early Ctrl-C is still a clean exit.
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with contextlib.AsyncExitStack() as stack:
            try:
                emulator = await stack.enter_async_context(
                    BedrockEmulator(options, host=host, port=port, limits=limits)
                )
            except OSError as exc:
                # The port is taken, the host unknown or not ours: one line, not a traceback.
                raise ConfigurationError(
                    f"--host/--port: cannot listen on {host}:{port}: {exc.strerror or exc}"
                ) from None
            emulator.enqueue_faults(*scripted_faults_from_args(args))
            credentials = f"region={emulator.region} access_key={emulator.access_key} secret_key={emulator.secret_key}"
            if emulator.session_token is not None:
                credentials += f" session_token={emulator.session_token}"
            lines = [f"endpoint_url={emulator.endpoint_url}", credentials]
            lines += ["# To point bedrock-chat (or boto3) at this emulator from another shell, paste:"]
            lines += environment_lines(emulator)
            out.write("\n".join(lines) + "\n")
            out.flush()
            async for _ in signals:
                break


def run_emulator_command(args: argparse.Namespace, *, prog: str = "bedrock-chat emulator") -> int:
    """Serve until SIGINT or SIGTERM; returns the exit status (0, or 1 with one line on stderr if it cannot bind)."""
    try:
        anyio.run(_serve, args, sys.stdout, backend=getattr(args, "emulator_backend", "asyncio"))
    except ConfigurationError as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        sys.stderr.flush()
        return 1
    return 0
