"""The ``bedrock-chat`` command: ``chat`` (one-shot or interactive), ``models`` and ``emulator``.

The only place that starts an event loop (``anyio.run``). Exit codes: 0 ok, 1 a service or
configuration error (one line on stderr: the error class, its message and the request id), 2 a usage
error, 130 interrupted. A usage error is the arguments' fault: argparse's checks, and any flag value
``create`` would refuse, found before anything starts by validating the flags exactly as ``create``
does (:class:`UsageError`: one line naming the flag, in argparse's words). Messages speak the command
line's terms (flags, environment variables), not the Python arguments the library's messages name.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import anyio

from .._batch.scheduler import prepare_chat
from .._client import AnthropicBedrock
from .._core.argtypes import bounded, non_empty
from .._core.config import RetryPolicy
from .._core.models import MODELS, Surface
from .._errors import BedrockError, ConfigurationError, CredentialsError, InvalidRequestError
from .._types import ChatCompletion

__all__ = ["DEFAULT_MODEL", "EMULATOR_NOTE", "UsageError", "main"]

#: Claude Sonnet 4.6 through the global cross-region profile: current, and served on InvokeModel.
_BUILTIN_MODEL = "global.anthropic.claude-sonnet-4-6"
#: ``$BEDROCK_CHAT_MODEL`` if set; an empty one counts as unset (as the AWS SDKs treat their variables).
DEFAULT_MODEL = os.environ.get("BEDROCK_CHAT_MODEL") or _BUILTIN_MODEL

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: Said once per run, on a terminal: without it the fake model's replies read as "it is broken".
EMULATOR_NOTE = (
    "bedrock-chat: --emulator: replies come from the emulator's fake model "
    "(the prompt echoed, then filler words), not from Claude"
)


class UsageError(InvalidRequestError):
    """A flag's value is wrong: reported like argparse's own errors (one line naming the flag), exit 2."""

    def __init__(self, flag: str, reason: str) -> None:
        super().__init__(flag, reason)
        self.reason = reason


_positive_int = bounded(int, 1)
_non_negative_int = bounded(int, 0)
_unit_float = bounded(float, 0.0, 1.0)
_top_k = bounded(int, 0, 500)
_positive_float = bounded(float, 1e-3)


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from ..emulator._cli import add_emulator_arguments, add_fault_arguments

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
    chat.add_argument("--max-tokens", type=_positive_int, default=1024, help="most tokens to generate (default 1024)")
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
    chat.add_argument("--no-stream", action="store_true", help="wait for the whole reply instead of streaming it")
    chat.add_argument("--json", action="store_true", help="print the whole result (usage, stop reason, ...) as JSON")
    chat.add_argument(
        "--max-retries",
        type=_non_negative_int,
        default=RetryPolicy().max_retries,
        metavar="N",
        help="retries of a throttled, failed (5xx) or dropped request (default %(default)s)",
    )
    _add_connection_flags(chat)
    add_fault_arguments(chat)  # they shape the emulator's answers when --emulator is given

    from .batch import add_batch_parser

    add_batch_parser(sub)
    sub.add_parser("models", help="list the Claude models bedrock-chat knows", description="List known models.")

    emulator = sub.add_parser(
        "emulator", help="run the local Bedrock emulator", description="Run the local Bedrock runtime emulator."
    )
    add_emulator_arguments(emulator)
    return parser


# -- chat -------------------------------------------------------------------------------------------


def _emulator_flags_given(args: argparse.Namespace) -> list[str]:
    """The emulator's answer and fault flags given a value other than their default."""
    from ..emulator._cli import add_fault_arguments  # here, as in build_parser: the emulator loads only if used

    flags = argparse.ArgumentParser(add_help=False)
    add_fault_arguments(flags)
    return [
        action.option_strings[0]
        for action in flags._actions  # argparse keeps no public list of a parser's flags
        if getattr(args, action.dest, action.default) != action.default
    ]


@contextlib.contextmanager
def _client_settings(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
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
    import attrs

    from ..emulator import run_emulator_in_thread
    from ..emulator._cli import emulator_options_from_args, scripted_faults_from_args

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


def _create_kwargs(args: argparse.Namespace, messages: list[dict[str, Any]]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": args.model, "messages": messages, "max_tokens_to_sample": args.max_tokens}
    for name in ("temperature", "top_p", "top_k", "system", "surface"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.stop:
        kwargs["stop_sequences"] = args.stop
    return kwargs


async def _one_turn(
    settings: dict[str, Any], args: argparse.Namespace, messages: list[dict[str, Any]], out: TextIO
) -> ChatCompletion:
    """Send one turn; stream its text to ``out`` unless --no-stream or --json."""
    async with AnthropicBedrock(**settings) as client:
        kwargs = _create_kwargs(args, messages)
        if args.no_stream or args.json:
            chat: ChatCompletion = await client.ChatCompletion.create(**kwargs)
            if not args.json:
                out.write(chat.completion)
        else:
            stream = await client.ChatCompletion.create(stream=True, **kwargs)
            wrote = False
            try:
                async with stream:
                    async for text in stream.text_stream:
                        out.write(text)
                        out.flush()
                        wrote = True
            except BedrockError:
                if wrote:  # end the partial reply's line, so the error report starts on its own line
                    out.write("\n")
                    out.flush()
                raise
            chat = stream.completion
    if args.json:
        out.write(json.dumps(chat.to_dict(), ensure_ascii=False, indent=2))
    out.write("\n")
    out.flush()
    return chat


#: create()'s arguments -> the chat flags that set them.
_FLAGS = {
    "model": "--model",
    "max_tokens_to_sample": "--max-tokens",
    "stop_sequences": "--stop",
    "temperature": "--temperature",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "system": "--system",
    "surface": "--surface",
}
#: Argument names that create()'s messages quote; "model" and "system" are left alone: also plain words.
_QUOTED_ARGUMENTS = re.compile(r"\b(max_tokens_to_sample|stop_sequences|temperature|top_p|top_k)\b")


def _flag_error(error: InvalidRequestError) -> UsageError | None:
    """The usage error for create()'s complaint about an argument a flag set; None for any other."""
    flag = _FLAGS.get(re.split(r"[.\[]", error.field, maxsplit=1)[0])
    if flag is None:
        return None
    reason = error.message.removeprefix(f"{error.field}: ")
    return UsageError(flag, _QUOTED_ARGUMENTS.sub(lambda found: _FLAGS[found[1]], reason))


def _check_request_flags(settings: dict[str, Any], args: argparse.Namespace) -> None:
    """Validate the request flags exactly as create() will, so that a bad one stops the run before it starts."""
    try:
        prepare_chat(AnthropicBedrock(**settings), _create_kwargs(args, [{"role": "user", "content": "?"}]))
    except InvalidRequestError as error:
        usage = _flag_error(error)
        if usage is None:
            raise
        raise usage from None


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


def _report(error: BedrockError, err: TextIO, *, emulator: bool) -> None:
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


#: The interactive chat's commands. A line starting with "/" is one of them, never a prompt.
_COMMANDS = {"/help": "list these commands", "/reset": "forget the conversation", "/exit": "quit (/quit, Ctrl-D too)"}
_COMMANDS_HELP = "".join(f"{name:<7} {what}\n" for name, what in _COMMANDS.items()) + (
    "Ctrl-C cancels a reply. To send a line starting with /, type it as //.\n"
)


def _interactive(
    settings: dict[str, Any], args: argparse.Namespace, out: TextIO, err: TextIO, read: Callable[[str], str]
) -> int:
    """Multi-turn chat: history kept; /help, /reset, /exit; Ctrl-C cancels a reply; Ctrl-D exits."""
    out.write(f"bedrock-chat: {args.model}. /help lists the commands, /exit or Ctrl-D quits.\n")
    history: list[dict[str, Any]] = []
    while True:
        try:
            line = read("you> ")
        except EOFError:
            out.write("\n")
            return EXIT_OK
        except KeyboardInterrupt:
            out.write("\n")
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("//"):  # the escape: sent with one "/" fewer
            line = line.replace("/", "", 1)
        elif text.startswith("/"):
            if text in ("/exit", "/quit"):
                return EXIT_OK
            if text == "/reset":
                history = []
                out.write("(conversation cleared)\n")
            elif text == "/help":
                out.write(_COMMANDS_HELP)
            else:  # a typo of a command must not reach the model as a prompt
                out.write(f"unknown command {text.split()[0]}: /help lists the commands (// sends a leading /)\n")
            continue
        out.write("claude> ")
        out.flush()
        try:
            chat = anyio.run(_one_turn, settings, args, [*history, {"role": "user", "content": line}], out)
        except KeyboardInterrupt:
            out.write("\n(reply cancelled)\n")
            continue
        except BedrockError as error:
            _report(error, err, emulator=args.emulator)
            continue
        history = chat["messages"]


def _read_prompt(args: argparse.Namespace, stdin: TextIO) -> str | None:
    if args.prompt == "-" or (args.prompt is None and not stdin.isatty()):
        return stdin.read()
    return args.prompt  # type: ignore[no-any-return]


def _chat(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    prompt = _read_prompt(args, stdin)
    if prompt is not None and not prompt.strip():
        err.write("bedrock-chat: the prompt is empty\n")
        return EXIT_USAGE
    with _client_settings(args) as settings:
        settings = {**settings, "max_retries": args.max_retries}
        _check_request_flags(settings, args)
        if args.emulator and err.isatty():
            err.write(EMULATOR_NOTE + "\n")
            err.flush()
        if prompt is None:
            return _interactive(settings, args, out, err, input)
        anyio.run(_one_turn, settings, args, [{"role": "user", "content": prompt}], out)
    return EXIT_OK


# -- models -----------------------------------------------------------------------------------------


def _models(out: TextIO) -> int:
    rows = [("MODEL ID", "NAME", "API", "SURFACES", "MAX OUTPUT", "CONTEXT")]
    for info in MODELS:
        # The surface create() uses by default is marked with a star.
        surfaces = ",".join(
            surface.value + ("*" if surface is info.default_surface and len(info.surfaces) > 1 else "")
            for surface in sorted(info.surfaces, key=lambda surface: surface.value)
        )
        rows.append(
            (info.id, info.name, info.api.value, surfaces, f"{info.max_output_tokens:,}", f"{info.context_window:,}")
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.ljust(width) if i < 4 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    out.write("\n* the surface used by default where a model has two (force one with --surface).")
    out.write("\nCross-region profile ids (us., eu., apac., global., ...) and ARNs resolve to these models.\n")
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            return _models(sys.stdout)
        if args.command == "batch":
            from .batch import run_batch_command

            return run_batch_command(args)
        if args.command == "emulator":
            from ..emulator._cli import run_emulator_command

            return run_emulator_command(args)
        return _chat(args, sys.stdin, sys.stdout, sys.stderr)
    except UsageError as error:
        sys.stderr.write(f"bedrock-chat {args.command}: error: argument {error.field}: {error.reason}\n")
        return EXIT_USAGE
    except BedrockError as error:
        _report(error, sys.stderr, emulator=getattr(args, "emulator", False))
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
