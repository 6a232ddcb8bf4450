"""Request-body validation for both Claude APIs, with Bedrock's error wording.

A body is checked in two passes, as Bedrock appears to: first a JSON-schema pass (required keys,
extraneous keys, value types) whose findings are reported together in one "Malformed input request"
message, then the semantic rules (prompt turns, token limits, message order). The schemas are data
tables, so adding a field is a one-line change.

Wording sources (BEDROCK_PROTOCOL.md §3 and public issues): the prompt-turn messages and the
"not supported on this API" message are quoted from real responses; the schema-pass layout
(``#: required key [x] not found``) follows messages seen in public issues; everything else is
UNVERIFIED, written in the same style.

The ``anthropic_version`` rule (decided in ``_features``' docstring, from the spec; which models accept a
date is UNVERIFIED): ``bedrock-2023-05-31`` is always accepted; the ARN-versioned (dated, legacy) models
reject anything else with 400, while the models whose ``_features`` row says ``api_dates`` (the 2026
generation, also Haiku 4.5) accept any Anthropic API version of the form ``YYYY-MM-DD`` (the current
anthropic SDK sends ``2026-10-21``). Models the registry does not know (application-profile and
provisioned-model ARNs) follow the legacy rule.

The ``/anthropic/v1/messages`` surface (:func:`parse_messages_endpoint_body`) takes the same Messages
body with ``model`` (and optionally ``stream``) in it and the API version in the ``anthropic-version``
header (:func:`check_api_version_header`); a body ``anthropic_version`` is tolerated and ignored there
(UNVERIFIED: one third-party client still sends it, the anthropic SDK does not). Its messages reuse the
wording above, since what Bedrock says on that surface is UNVERIFIED too.

Messages bodies on both surfaces: content blocks (text, image, ``tool_use``, ``tool_result``), the
tool-turn pairing, ``tools`` and ``tool_choice`` follow the rules in ``_content``; ``anthropic_beta``
(InvokeModel only: the Messages endpoint takes betas in a header) is a list of strings, each item
checked in the schema pass like ``stop_sequences``'.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._body import AUTO, BodyError, ParsedRequest
from ._content import check_content, check_tool_turns, parse_tool_choice, parse_tools
from ._features import features_for
from ._models import Api, ModelRef

__all__ = [
    "BEDROCK_VERSION",
    "BodyError",
    "ParsedRequest",
    "anthropic_model_name",
    "check_api_version_header",
    "parse_body",
    "parse_messages_endpoint_body",
]

BEDROCK_VERSION = "bedrock-2023-05-31"
_API_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HUMAN = "\n\nHuman:"
_ASSISTANT = "\n\nAssistant:"
#: List fields whose items must be strings (checked in the schema pass).
_STRING_LISTS = ("stop_sequences", "anthropic_beta")


_NUMBER = (int, float)
_JSON_TYPE_NAMES: Mapping[type, str] = {
    str: "String",
    int: "Integer",
    float: "Number",
    list: "JSONArray",
    dict: "JSONObject",
    bool: "Boolean",
    type(None): "Null",
}

#: key -> accepted Python types, per API. Required keys are listed separately.
_TEXT_SCHEMA: Mapping[str, tuple[type, ...]] = {
    "prompt": (str,),
    "max_tokens_to_sample": (int,),
    "stop_sequences": (list,),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "top_k": (int,),
    "anthropic_version": (str,),
}
_TEXT_REQUIRED = ("prompt", "max_tokens_to_sample")

_MESSAGES_SCHEMA: Mapping[str, tuple[type, ...]] = {
    "anthropic_version": (str,),
    "anthropic_beta": (list,),
    "max_tokens": (int,),
    "messages": (list,),
    "system": (str, list),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "top_k": (int,),
    "stop_sequences": (list,),
    "tools": (list,),
    "tool_choice": (dict,),
    "metadata": (dict,),
    "thinking": (dict,),
    "output_config": (dict,),
    "output_format": (dict,),
    "service_tier": (str,),
    "container": (str, dict),
    "context_management": (dict,),
    "mcp_servers": (list,),
}
_MESSAGES_REQUIRED = ("anthropic_version", "max_tokens", "messages")

#: The /anthropic/v1/messages body: the model travels in it, betas and the version in headers.
_ENDPOINT_SCHEMA: Mapping[str, tuple[type, ...]] = {
    **{key: types for key, types in _MESSAGES_SCHEMA.items() if key not in ("anthropic_version", "anthropic_beta")},
    "model": (str,),
    "stream": (bool,),
}
_ENDPOINT_REQUIRED = ("model", "max_tokens", "messages")

#: key -> (minimum, maximum) for the sampling parameters, both APIs.
_RANGES: Mapping[str, tuple[float, float]] = {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0), "top_k": (0, 500)}


def _type_name(value: object) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _malformed(problems: Sequence[str]) -> BodyError:
    return BodyError("Malformed input request: " + "".join(problems) + ", please reformat your input and try again.")


def _check_schema(body: Mapping[str, Any], schema: Mapping[str, tuple[type, ...]], required: Sequence[str]) -> None:
    problems = [f"#: required key [{key}] not found" for key in required if key not in body]
    for key, value in body.items():
        accepted = schema.get(key)
        if accepted is None:
            problems.append(f"#: extraneous key [{key}] is not permitted")
        elif (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
            expected = "Number" if float in accepted else _JSON_TYPE_NAMES[accepted[0]]
            problems.append(f"#/{key}: expected type: {expected}, found: {_type_name(value)}")
    for key in _STRING_LISTS:
        items = body.get(key)
        if isinstance(items, list):
            problems.extend(
                f"#/{key}/{i}: expected type: String, found: {_type_name(item)}"
                for i, item in enumerate(items)
                if not isinstance(item, str)
            )
    for key, (low, high) in _RANGES.items():
        value = body.get(key)
        if isinstance(value, _NUMBER) and not isinstance(value, bool):
            if value < low:
                problems.append(f"#/{key}: {value} is not greater or equal to {low}")
            elif value > high:
                problems.append(f"#/{key}: {value} is not less or equal to {high}")
    if problems:
        raise _malformed(problems)


def anthropic_model_name(model: ModelRef) -> str:
    """The name Anthropic's API uses (``claude-3-5-haiku-20241022``): what Messages bodies report as ``model``."""
    return model.anthropic_name


def _check_version(version: object, model: ModelRef) -> None:
    if version is None or version == BEDROCK_VERSION:
        return
    features = features_for(model) if model.model is not None else None
    if features is not None and features.api_dates and isinstance(version, str) and _API_DATE.match(version):
        return
    raise BodyError(f'anthropic_version: "{version}" is not supported for this model; use "{BEDROCK_VERSION}"')


def check_api_version_header(value: str | None) -> None:
    """The ``anthropic-version`` header of ``/anthropic/v1/messages``: required, any ``YYYY-MM-DD`` date.

    The first message is the one Anthropic's API sends; the second is UNVERIFIED.
    """
    if value is None:
        raise BodyError("anthropic-version: header is required")
    if not _API_DATE.match(value):
        raise BodyError(f"anthropic-version: {value!r} is not a valid version (expected a date such as 2023-06-01)")


def parse_messages_endpoint_body(body: Mapping[str, Any], model: ModelRef) -> ParsedRequest:
    """Validate an ``/anthropic/v1/messages`` body; raises :class:`BodyError` (see the module docstring)."""
    fields = {key: value for key, value in body.items() if key != "anthropic_version"}
    return _parse_messages(fields, model, _ENDPOINT_SCHEMA, _ENDPOINT_REQUIRED)


def parse_body(body: Mapping[str, Any], model: ModelRef) -> ParsedRequest:
    """Validate a decoded JSON body for ``model``'s API; raises :class:`BodyError` with Bedrock's message.

    A model that takes both bodies (Claude Instant and 2.x) reads a body with ``messages`` as Messages.
    """
    apis = model.apis
    if Api.TEXT_COMPLETIONS in apis and (Api.MESSAGES not in apis or "messages" not in body):
        return _parse_text(body, model)
    if "prompt" in body and "messages" not in body:
        raise BodyError(
            f'"{anthropic_model_name(model)}" is not supported on this API. Please use the Messages API instead.'
        )
    return _parse_messages(body, model, _MESSAGES_SCHEMA, _MESSAGES_REQUIRED)


def _parse_text(body: Mapping[str, Any], model: ModelRef) -> ParsedRequest:
    _check_schema(body, _TEXT_SCHEMA, _TEXT_REQUIRED)
    _check_version(body.get("anthropic_version"), model)
    prompt: str = body["prompt"]
    problems = []
    first_human = prompt.find(_HUMAN)
    if first_human == -1:
        problems.append(f'prompt must start with "{_HUMAN}" turn after an optional system prompt')
    if _ASSISTANT not in prompt or prompt.rfind(_ASSISTANT) < prompt.rfind(_HUMAN):
        problems.append(f'prompt must end with "{_ASSISTANT}" turn')
    if problems:
        raise BodyError("Invalid prompt: " + ", ".join(problems))
    max_tokens: int = body["max_tokens_to_sample"]
    limit = model.max_tokens_for(Api.TEXT_COMPLETIONS)
    if max_tokens < 0:
        raise _malformed([f"#/max_tokens_to_sample: {max_tokens} is not greater or equal to 0"])
    if limit is not None and max_tokens > limit:
        raise _malformed([f"#/max_tokens_to_sample: {max_tokens} is not less or equal to {limit}"])
    # The text after the last Human turn, up to the Assistant turn that follows it, is what the user said last.
    last_turn = prompt[prompt.rfind(_HUMAN) + len(_HUMAN) :]
    last_user = last_turn.split(_ASSISTANT, 1)[0]
    return ParsedRequest(Api.TEXT_COMPLETIONS, prompt, last_user, max_tokens, tuple(body.get("stop_sequences") or ()))


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    if kind == "tool_result":
        return _content_text(block.get("content"))
    return ""


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_block_text(block) for block in content if isinstance(block, dict))
    return ""


def _parse_messages(
    body: Mapping[str, Any],
    model: ModelRef,
    schema: Mapping[str, tuple[type, ...]],
    required: Sequence[str],
) -> ParsedRequest:
    _check_schema(body, schema, required)
    if "anthropic_version" in required:
        _check_version(body["anthropic_version"], model)
    max_tokens: int = body["max_tokens"]
    limit = model.max_tokens_for(Api.MESSAGES)
    if max_tokens < 1:
        raise BodyError("max_tokens: Input should be greater than or equal to 1")
    if limit is not None and max_tokens > limit:
        raise BodyError(
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of output tokens for "
            f"{anthropic_model_name(model)}"
        )
    messages: list[Any] = body["messages"]
    if not messages:
        raise BodyError("messages: at least one message is required")
    texts: list[str] = []
    system = body.get("system")
    if system is not None:
        if isinstance(system, list) and not all(
            isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
            for block in system
        ):
            raise BodyError("system: Input should be a valid string or a list of text blocks")
        texts.append(_content_text(system))
    last_user = ""
    answers_tool_result = False
    previous_role = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BodyError(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise BodyError(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise BodyError('messages: first message must use the "user" role')
        if role == previous_role:
            raise BodyError(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" '
                "roles in a row"
            )
        previous_role = role
        if "content" not in message:
            raise BodyError(f"messages.{i}.content: Field required")
        content = message["content"]
        check_content(i, role, content, is_final_assistant=role == "assistant" and i == len(messages) - 1)
        text = _content_text(content)
        texts.append(text)
        if role == "user":
            last_user = text
            answers_tool_result = isinstance(content, list) and any(b["type"] == "tool_result" for b in content)
    check_tool_turns(messages)
    tools = parse_tools(body.get("tools") or ())
    tool_choice = parse_tool_choice(body["tool_choice"], tools) if "tool_choice" in body else AUTO
    return ParsedRequest(
        Api.MESSAGES,
        "\n".join(texts),
        last_user,
        max_tokens,
        tuple(body.get("stop_sequences") or ()),
        tools=tools,
        tool_choice=tool_choice,
        answers_tool_result=answers_tool_result,
    )
