"""What every ``bedrock-chat`` subcommand shares: the connection flags, the client settings (an
emulator for the duration with ``--emulator``), the default model, exit codes and the error report.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import Any, TextIO

import attrs

from .._core.argtypes import bounded, non_empty
from .._errors import BedrockError, ConfigurationError, CredentialsError, InvalidRequestError
from ..emulator import run_emulator_in_thread
from ..emulator._cli import add_fault_arguments, emulator_options_from_args, scripted_faults_from_args

__all__ = [
    "DEFAULT_MODEL",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "add_connection_flags",
    "client_settings",
    "positive_int",
    "report_error",
]


#: Claude Sonnet 4.6 through the global cross-region profile: current, and served on InvokeModel.
_BUILTIN_MODEL = "global.anthropic.claude-sonnet-4-6"
#: ``$BEDROCK_CHAT_MODEL`` if set; an empty one counts as unset (as the AWS SDKs treat their variables).
DEFAULT_MODEL = os.environ.get("BEDROCK_CHAT_MODEL") or _BUILTIN_MODEL

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(InvalidRequestError):
    """A flag's value is wrong: reported like argparse's own errors (one line naming the flag), exit 2."""

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(flag, reason)
        self.reason = reason


positive_int = bounded(int, 1)

_positive_float = bounded(float, 1e-3)


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--region``, ``--profile``, ``--endpoint-url`` and ``--emulator`` to a subcommand."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--region", type=non_empty, help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)"
    )
    group.add_argument("--profile", type=non_empty, help="named profile of the shared AWS config files")
    group.add_argument(
        "--endpoint-url",
        type=non_empty,
        help="override the Bedrock runtime endpoint (default: AWS_ENDPOINT_URL_BEDROCK_RUNTIME)",
    )
    group.add_argument(
        "--emulator", action="store_true", help="start the built-in Bedrock emulator and talk to it (no AWS needed)"
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="the most one request may take, retries and a whole stream included (default: none)",
    )


def _emulator_flags_given(args: argparse.Namespace) -> list[str]:
    """The emulator's answer and fault flags given a value other than their default."""

    flags = argparse.ArgumentParser(add_help=False)
    add_fault_arguments(flags)
    return [
        action.option_strings[0]
        for action in flags._actions  # argparse keeps no public list of a parser's flags
        if getattr(args, action.dest, action.default) != action.default
    ]


@contextlib.contextmanager
def client_settings(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Constructor arguments for AnthropicBedrock; with --emulator, an emulator runs for the duration.

    Raises:
        UsageError: flags that contradict each other, or that would be silently ignored.
    """
    deadline = {"deadline": args.timeout} if getattr(args, "timeout", None) is not None else {}
    if not args.emulator:
        given = _emulator_flags_given(args)
        if given:
            raise UsageError(given[0], "shapes the emulator's answers: it needs --emulator")
        # The AWS SDKs' variable for this service, so `bedrock-chat emulator`'s export lines work here and in boto3.
        endpoint_url = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") or None
        yield {"region": args.region, "profile": args.profile, "endpoint_url": endpoint_url, **deadline}
        return
    for flag, value in (("--profile", args.profile), ("--endpoint-url", args.endpoint_url)):
        if value is not None:
            raise UsageError(flag, "cannot be combined with --emulator (the emulator is the endpoint, with its keys)")

    options = emulator_options_from_args(args)
    if args.region is not None:
        options = attrs.evolve(options, region=args.region)
    with run_emulator_in_thread(options) as emu:
        emu.enqueue_faults(*scripted_faults_from_args(args))
        yield {
            "access_key": emu.access_key,
            "secret_key": emu.secret_key,
            "region": emu.region,
            "endpoint_url": emu.endpoint_url,
            **deadline,
        }


#: The library's messages that name Python arguments, as (class, start, the command line's words). Both
#: mean nothing is configured yet, the newcomer's case, where trying the emulator first helps.
_CLI_MESSAGES: tuple[tuple[type[BedrockError], str, str], ...] = (
    (
        CredentialsError,
        "no AWS credentials found",
        "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_BEARER_TOKEN_BEDROCK), "
        "or pass --profile NAME or set AWS_PROFILE for a configured profile (aws configure / aws sso login)",
    ),
    (
        ConfigurationError,
        "no AWS region",
        "no AWS region: pass --region, set AWS_REGION or AWS_DEFAULT_REGION, or configure one for the profile",
    ),
)
#: Configuration fields named at the start of the library's messages -> the flags that set them.
_CONFIGURATION_FLAGS = {"region": "--region", "endpoint_url": "--endpoint-url"}
_HINT = "or add --emulator to try bedrock-chat against its built-in local Bedrock emulator, no AWS needed"


def report_error(error: BedrockError, err: TextIO, *, emulator: bool) -> None:
    """One line: the error's class and message (in the command line's terms), and a hint where one helps."""
    message, hint = str(error), ""
    field, colon, rest = message.partition(": ")
    if isinstance(error, ConfigurationError) and colon and field in _CONFIGURATION_FLAGS:
        message = f"{_CONFIGURATION_FLAGS[field]}: {rest}"
    for kind, start, words in _CLI_MESSAGES:
        if isinstance(error, kind) and message.startswith(start):
            message = words
            if not emulator:
                hint = f" ({_HINT})"
            break
    err.write(f"bedrock-chat: {type(error).__name__}: {message}{hint}\n")
    err.flush()
