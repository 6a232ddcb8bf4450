"""The ``bedrock-chat`` command: ``chat`` (one-shot or interactive), ``models`` and ``emulator``.

The only place that starts an event loop (``anyio.run``). Exit codes: 0 ok, 1 a service or
configuration error (one line on stderr: the error class, its message and the request id), 2 a usage
error (argparse), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

import anyio

from ._argtypes import bounded
from ._client import AnthropicBedrock
from ._errors import BedrockError, ConfigurationError, CredentialsError
from ._models import MODELS, Surface
from ._types import ChatCompletion

__all__ = ["DEFAULT_MODEL", "main"]

#: Claude Sonnet 4.6 through the global cross-region profile: current, and served on InvokeModel.
DEFAULT_MODEL = os.environ.get("BEDROCK_CHAT_MODEL", "global.anthropic.claude-sonnet-4-6")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_HINT = "run with --emulator to try bedrock-chat against its built-in local Bedrock emulator"


_positive_int = bounded(int, 1)
_unit_float = bounded(float, 0.0, 1.0)
_top_k = bounded(int, 0, 500)


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, the profile's)")
    group.add_argument("--profile", help="named profile of the shared AWS config files")
    group.add_argument("--endpoint-url", help="override the Bedrock runtime endpoint")
    group.add_argument(
        "--emulator", action="store_true", help="start the built-in Bedrock emulator and talk to it (no AWS needed)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from .emulator._cli import add_emulator_arguments, add_fault_arguments

    parser = argparse.ArgumentParser(
        prog="bedrock-chat", description="Chat with Claude on Amazon Bedrock (or its built-in emulator)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{chat,batch,models,emulator}")

    chat = sub.add_parser("chat", help="send a prompt, or chat interactively", description="Chat with Claude.")
    chat.add_argument(
        "prompt", nargs="?", help="the prompt; '-' reads it from stdin; none starts an interactive chat on a terminal"
    )
    chat.add_argument("--model", default=DEFAULT_MODEL, help=f"model id, profile id or ARN (default {DEFAULT_MODEL})")
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
    _add_connection_flags(chat)
    add_fault_arguments(chat)  # they shape the emulator's answers when --emulator is given

    from ._batch_cli import add_batch_parser

    add_batch_parser(sub)
    sub.add_parser("models", help="list the Claude models bedrock-chat knows", description="List known models.")

    emulator = sub.add_parser(
        "emulator", help="run the local Bedrock emulator", description="Run the local Bedrock runtime emulator."
    )
    add_emulator_arguments(emulator)
    return parser


# -- chat -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _client_settings(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Constructor arguments for AnthropicBedrock; with --emulator, an emulator runs for the duration."""
    if not args.emulator:
        yield {"region": args.region, "profile": args.profile, "endpoint_url": args.endpoint_url}
        return
    if args.profile or args.endpoint_url:
        raise ConfigurationError("--emulator cannot be combined with --profile or --endpoint-url")
    import attrs

    from .emulator import run_emulator_in_thread
    from .emulator._cli import emulator_options_from_args, scripted_faults_from_args

    options = emulator_options_from_args(args)
    if args.region:
        options = attrs.evolve(options, region=args.region)
    with run_emulator_in_thread(options) as emu:
        emu.enqueue_faults(*scripted_faults_from_args(args))
        yield {
            "access_key": emu.access_key,
            "secret_key": emu.secret_key,
            "region": emu.region,
            "endpoint_url": emu.endpoint_url,
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


def _report(error: BedrockError, err: TextIO) -> None:
    hint = ""
    if isinstance(error, (CredentialsError, ConfigurationError)):
        hint = f" ({_HINT})"
    err.write(f"bedrock-chat: {type(error).__name__}: {error}{hint}\n")
    err.flush()


def _interactive(
    settings: dict[str, Any], args: argparse.Namespace, out: TextIO, err: TextIO, read: Callable[[str], str]
) -> int:
    """Multi-turn chat: history kept; /reset, /exit; Ctrl-C cancels a reply; Ctrl-D exits."""
    out.write(f"bedrock-chat: {args.model}. /reset clears the conversation, /exit or Ctrl-D quits.\n")
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
        if text in ("/exit", "/quit"):
            return EXIT_OK
        if text == "/reset":
            history = []
            out.write("(conversation cleared)\n")
            continue
        out.write("claude> ")
        out.flush()
        try:
            chat = anyio.run(_one_turn, settings, args, [*history, {"role": "user", "content": line}], out)
        except KeyboardInterrupt:
            out.write("\n(reply cancelled)\n")
            continue
        except BedrockError as error:
            _report(error, err)
            continue
        history = chat["messages"]


def _read_prompt(args: argparse.Namespace, stdin: TextIO) -> str | None:
    if args.prompt == "-" or (args.prompt is None and not stdin.isatty()):
        return stdin.read()
    return args.prompt  # type: ignore[no-any-return]


def _chat(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    prompt = _read_prompt(args, stdin)
    with _client_settings(args) as settings:
        if prompt is None:
            return _interactive(settings, args, out, err, input)
        if not prompt.strip():
            err.write("bedrock-chat: the prompt is empty\n")
            return EXIT_USAGE
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
            from ._batch_cli import run_batch_command

            return run_batch_command(args)
        if args.command == "emulator":
            from .emulator._cli import run_emulator_command

            return run_emulator_command(args)
        return _chat(args, sys.stdin, sys.stdout, sys.stderr)
    except BedrockError as error:
        _report(error, sys.stderr)
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
