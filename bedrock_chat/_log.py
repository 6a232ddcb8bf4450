"""The library's stdlib logging: one ``bedrock_chat`` logger, silent until the application asks.

What is logged, and at which level (never a secret, a signature, a prompt or a reply):

- DEBUG: each attempt of a request (method, path, status, latency, request id) and each resolution of
  credentials through botocore's chain (the method botocore names, and when they expire);
- INFO: each retry (the error's class, the attempt, the delay before it, the request id);
- WARNING: only what the caller should act on.

The package's logger has a ``NullHandler``, as the logging HOWTO asks of libraries: nothing reaches
stderr unless the application configures logging, or ``BEDROCK_CHAT_LOG=debug|info`` is set (read once,
at import, like the anthropic SDK's ``ANTHROPIC_LOG``), or the command line gets ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Mapping

__all__ = ["LOGGER_NAME", "configure_from_environment", "log_to_stderr", "logger"]

LOGGER_NAME = "bedrock_chat"
#: The package's logger: each module writes to its child ``logging.getLogger(__name__)``, so records name it.
logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`log_to_stderr` installs: a class of its own, so it is installed once."""


def log_to_stderr(level: int) -> None:
    """Show the library's records of ``level`` and above on stderr (idempotent; the lowest level asked wins)."""
    handler = next((h for h in logger.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
        handler.setLevel(level)
    else:
        handler.setLevel(min(level, handler.level))
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)


def configure_from_environment(environ: Mapping[str, str] = os.environ) -> None:
    """``BEDROCK_CHAT_LOG=debug|info`` turns on :func:`log_to_stderr`; any other non-empty value is refused aloud."""
    value = environ.get("BEDROCK_CHAT_LOG", "").strip().lower()
    if not value:
        return
    level = _LEVELS.get(value)
    if level is None:
        warnings.warn(
            f"BEDROCK_CHAT_LOG={value!r} is not one of {', '.join(_LEVELS)}: ignored", RuntimeWarning, stacklevel=2
        )
        return
    log_to_stderr(level)
