"""``bedrock-chat chat``: one prompt, or an interactive conversation on a terminal."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from typing import Any, TextIO

import anyio

from .._batch.chat import prepare_chat
from .._client import AnthropicBedrock
from .._errors import BedrockError, InvalidRequestError
from .._types import ChatCompletion
from .shared import EXIT_OK, EXIT_USAGE, UsageError, client_settings, report_error

__all__ = ["EMULATOR_NOTE", "describe_reply", "json_schema_file", "run_chat"]


#: Said once per run, on a terminal: without it the fake model's replies read as "it is broken".
EMULATOR_NOTE = (
    "bedrock-chat: --emulator: replies come from the emulator's fake model "
    "(the prompt echoed, then filler words), not from Claude"
)


def describe_reply(chat: ChatCompletion) -> str:
    """``--verbose``'s line after a reply: request id, tokens (cache reads and writes if reported), stop reason."""
    usage = chat.usage
    tokens = f"{usage.input_tokens} in, {usage.output_tokens} out"
    if usage.cache_read_input_tokens is not None or usage.cache_creation_input_tokens is not None:
        tokens += (
            f" (cache: {usage.cache_read_input_tokens or 0} read, {usage.cache_creation_input_tokens or 0} written)"
        )
    return (
        f"bedrock-chat: request id {chat.request_id or '(none)'}; tokens {tokens}; "
        f"stop {chat.stop_reason}; {chat.latency * 1000:.0f} ms"
    )


def _create_kwargs(args: argparse.Namespace, messages: list[dict[str, Any]]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": args.model, "messages": messages, "max_tokens_to_sample": args.max_tokens}
    for name in ("temperature", "top_p", "top_k", "system", "surface"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    if args.stop:
        kwargs["stop_sequences"] = args.stop
    output_config: dict[str, Any] = {}
    if args.effort is not None:
        output_config["effort"] = args.effort
    if args.json_schema is not None:
        output_config["format"] = {"type": "json_schema", "schema": args.json_schema}
    if output_config:
        kwargs["output_config"] = output_config
    return kwargs


def json_schema_file(path: str) -> dict[str, Any]:
    """``--json-schema FILE``: a JSON object read from the file (argparse reports anything else, exit 2)."""
    try:
        with open(path, encoding="utf-8") as file:
            schema = json.load(file)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror or error}") from None
    except (ValueError, RecursionError) as error:
        raise argparse.ArgumentTypeError(f"{path} is not JSON: {error}") from None
    if not isinstance(schema, dict) or not schema:
        raise argparse.ArgumentTypeError(f"{path} must hold a JSON schema object")
    return schema


async def _one_turn(
    settings: dict[str, Any], args: argparse.Namespace, messages: list[dict[str, Any]], out: TextIO
) -> ChatCompletion:
    """Send one turn; stream its text to ``out`` unless --no-stream or --json."""
    async with AnthropicBedrock(**settings) as client:
        kwargs = _create_kwargs(args, messages)
        if args.json_schema is not None:  # the parsed JSON is printed, not the text as it streams
            chat: ChatCompletion = await client.ChatCompletion.create(**kwargs)
            parsed = chat.parsed  # StructuredOutputError: one line, exit 1
            if not args.json:
                out.write(json.dumps(parsed, ensure_ascii=False, indent=2))
        elif args.no_stream or args.json:
            chat = await client.ChatCompletion.create(**kwargs)
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
        result = chat.to_dict()
        if args.json_schema is not None:
            result["parsed"] = chat.parsed
        out.write(json.dumps(result, ensure_ascii=False, indent=2))
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


#: Fields inside create()'s arguments that a flag of their own sets.
_FIELD_FLAGS = (("output_config.effort", "--effort"), ("output_config.format", "--json-schema"))


def _flag_error(error: InvalidRequestError) -> UsageError | None:
    """The usage error for create()'s complaint about an argument a flag set; None for any other."""
    flag = next((flag for field, flag in _FIELD_FLAGS if error.field.startswith(field)), None)
    flag = flag or _FLAGS.get(re.split(r"[.\[]", error.field, maxsplit=1)[0])
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
            report_error(error, err, emulator=args.emulator)
            continue
        if args.verbose:
            err.write(describe_reply(chat) + "\n")
        history = chat["messages"]


def _read_prompt(args: argparse.Namespace, stdin: TextIO) -> str | None:
    if args.prompt == "-" or (args.prompt is None and not stdin.isatty()):
        return stdin.read()
    return args.prompt  # type: ignore[no-any-return]


def run_chat(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    """Run ``bedrock-chat chat``: one prompt (argument or stdin), else an interactive chat on a terminal."""
    prompt = _read_prompt(args, stdin)
    if prompt is not None and not prompt.strip():
        err.write("bedrock-chat: the prompt is empty\n")
        return EXIT_USAGE
    with client_settings(args) as settings:
        settings = {**settings, "max_retries": args.max_retries}
        _check_request_flags(settings, args)
        if args.emulator and err.isatty():
            err.write(EMULATOR_NOTE + "\n")
            err.flush()
        if prompt is None:
            return _interactive(settings, args, out, err, input)
        chat = anyio.run(_one_turn, settings, args, [{"role": "user", "content": prompt}], out)
        if args.verbose:
            err.write(describe_reply(chat) + "\n")
    return EXIT_OK
