"""The ``bedrock-chat`` command: the parser of every subcommand, and :func:`main`, the console script.

The commands live beside it (``chat``, ``models``, ``batch``, ``batch_jobs``); this package is the only
place that starts an event loop (``anyio.run``). Exit codes: 0 ok, 1 a service or
configuration error (one line on stderr: the error class, its message and the request id), 2 a usage
error, 130 interrupted. A usage error is the arguments' fault: argparse's checks, and any flag value
``create`` would refuse, found before anything starts by validating the flags exactly as ``create``
does (:class:`UsageError`: one line naming the flag, in argparse's words). Messages speak the command
line's terms (flags, environment variables), not the Python arguments the library's messages name.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

from .._core.argtypes import bounded
from .._core.config import RetryPolicy
from .._core.models import EFFORT_LEVELS, Surface
from .._errors import BedrockError
from .._log import log_to_stderr
from ..emulator._cli import add_emulator_arguments, add_fault_arguments, run_emulator_command
from .batch import add_batch_parser, run_batch_command
from .chat import json_schema_file, run_chat
from .models import run_models
from .shared import (
    DEFAULT_MODEL,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    add_connection_flags,
    positive_int,
    report_error,
)

__all__ = ["main"]


_non_negative_int = bounded(int, 0)
_unit_float = bounded(float, 0.0, 1.0)
_top_k = bounded(int, 0, 500)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""

    parser = argparse.ArgumentParser(
        prog="bedrock-chat", description="Chat with Claude on Amazon Bedrock (or its built-in emulator)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{chat,batch,models,emulator}")

    chat = sub.add_parser(
        "chat",
        help="send a prompt, or chat interactively",
        description="Chat with Claude.",
        # The emulator's many fault flags stay in their own --help section, not in every usage line.
        usage="%(prog)s [options] [--emulator [emulator options]] [PROMPT | -]",
    )
    chat.add_argument(
        "prompt", nargs="?", help="the prompt; '-' reads it from stdin; none starts an interactive chat on a terminal"
    )
    chat.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"model id, profile id or ARN (default {DEFAULT_MODEL}; $BEDROCK_CHAT_MODEL)",
    )
    chat.add_argument("--max-tokens", type=positive_int, default=1024, help="most tokens to generate (default 1024)")
    chat.add_argument("--temperature", type=_unit_float, help="0 to 1 (default: the model's, 1)")
    chat.add_argument("--top-p", type=_unit_float, help="0 to 1 (default: the model's, 1)")
    chat.add_argument("--top-k", type=_top_k, help="0 to 500 (default: the model's, 250)")
    chat.add_argument("--stop", action="append", default=None, metavar="TEXT", help="stop sequence (repeatable)")
    chat.add_argument("--system", help="system prompt")
    chat.add_argument(
        "--surface",
        choices=[surface.value for surface in Surface],
        help="force the endpoint: InvokeModel or /anthropic/v1/messages (default: the model's preferred one)",
    )
    chat.add_argument(
        "--effort", choices=EFFORT_LEVELS, metavar="LEVEL", help=f"output_config effort: {', '.join(EFFORT_LEVELS)}"
    )
    chat.add_argument(
        "--json-schema",
        type=json_schema_file,
        metavar="FILE",
        help="ask for JSON valid for this schema (structured outputs); print the parsed JSON, exit 1 if it is not",
    )
    chat.add_argument("--no-stream", action="store_true", help="wait for the whole reply instead of streaming it")
    chat.add_argument("--json", action="store_true", help="print the whole result (usage, stop reason, ...) as JSON")
    chat.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="on stderr: each reply's request id and tokens, and each retry (-vv: each request too)",
    )
    chat.add_argument(
        "--max-retries",
        type=_non_negative_int,
        default=RetryPolicy().max_retries,
        metavar="N",
        help="retries of a throttled, failed (5xx) or dropped request (default %(default)s)",
    )
    add_connection_flags(chat)
    add_fault_arguments(chat)  # they shape the emulator's answers when --emulator is given

    add_batch_parser(sub)
    sub.add_parser("models", help="list the Claude models bedrock-chat knows", description="List known models.")

    emulator = sub.add_parser(
        "emulator", help="run the local Bedrock emulator", description="Run the local Bedrock runtime emulator."
    )
    add_emulator_arguments(emulator)
    return parser


# -- chat -------------------------------------------------------------------------------------------


# -- models -----------------------------------------------------------------------------------------


# -- entry point ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            return run_models(sys.stdout)
        if args.command == "batch":
            return run_batch_command(args)
        if args.command == "emulator":
            return run_emulator_command(args)
        if args.verbose:
            log_to_stderr(logging.INFO if args.verbose == 1 else logging.DEBUG)
        return run_chat(args, sys.stdin, sys.stdout, sys.stderr)
    except UsageError as error:
        sys.stderr.write(f"bedrock-chat {args.command}: error: argument {error.field}: {error.reason}\n")
        return EXIT_USAGE
    except BedrockError as error:
        report_error(error, sys.stderr, emulator=getattr(args, "emulator", False))
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (e.g. `| head`); nothing more to say.
        with contextlib.suppress(OSError):
            sys.stdout.close()
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
