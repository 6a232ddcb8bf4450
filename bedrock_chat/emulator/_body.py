"""What body validation produces: the parsed request the fake model answers, and the error it raises.

These values sit below both the validators (``_validation``, ``_content``) and the tool-use planner
(``_tools``), so none of those modules has to import another to share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._models import Api

__all__ = ["BodyError", "ParsedRequest", "Tool", "ToolChoice"]


class BodyError(Exception):
    """The body is invalid; ``message`` is the ValidationException text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@attrs.frozen
class Tool:
    """One entry of ``tools``: its name and JSON schema (None for a typed, built-in tool such as ``bash``)."""

    name: str
    input_schema: Mapping[str, Any] | None = None


@attrs.frozen
class ToolChoice:
    """``tool_choice``: ``auto``, ``any``, ``tool`` (with ``name``) or ``none``."""

    type: str
    name: str | None = None


#: What a request without ``tool_choice`` gets: the Messages API's default.
AUTO = ToolChoice("auto")


@attrs.frozen
class ParsedRequest:
    """What the fake model needs from a valid body.

    ``input_text`` is every counted text (see ``_fake_model``); ``last_user_text`` the text of the last
    user turn; ``answers_tool_result`` whether that turn carries ``tool_result`` blocks.
    """

    api: Api
    input_text: str
    last_user_text: str
    max_tokens: int
    stop_sequences: tuple[str, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = AUTO
    answers_tool_result: bool = False
