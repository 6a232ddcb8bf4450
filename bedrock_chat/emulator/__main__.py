"""``python -m bedrock_chat.emulator``: the same server as ``bedrock-chat emulator``."""

from __future__ import annotations

import argparse
import sys

from ._cli import add_emulator_arguments, run_emulator_command


def main(argv: list[str] | None = None) -> int:
    """Parse the emulator flags and serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m bedrock_chat.emulator",
        description="A local AWS Bedrock runtime emulator for Anthropic Claude models.",
    )
    add_emulator_arguments(parser)
    return run_emulator_command(parser.parse_args(argv), prog=parser.prog)


if __name__ == "__main__":
    sys.exit(main())
