"""bedrock_chat: an async-first client for Anthropic Claude on Amazon Bedrock.

Everything public is imported here; every other module is private. The local Bedrock emulator lives in
:mod:`bedrock_chat.emulator` and is imported only when used.
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._client import AnthropicBedrock
from ._completions import ChatCompletions
from ._core.config import RetryPolicy
from ._core.models import MODELS, ModelApi, ModelInfo, ResolvedModel, Surface, resolve_model
from ._core.responses import InvokeModelResponse
from ._errors import (
    AccessDeniedError,
    APIConnectionError,
    APIError,
    AuthenticationError,
    BedrockError,
    CacheBreakpointWarning,
    ConfigurationError,
    ConflictError,
    CredentialsError,
    EventStreamError,
    ExpiredTokenError,
    IncompleteStreamError,
    InternalServerError,
    InvalidRequestError,
    ModelError,
    ModelNotReadyError,
    ModelStreamError,
    ModelTimeoutError,
    ProxyError,
    RequestTimeoutError,
    ResourceNotFoundError,
    ResponseTooLargeError,
    ServiceQuotaExceededError,
    ServiceUnavailableError,
    StructuredOutputError,
    ThrottlingError,
    TransportError,
    ValidationError,
)
from ._log import configure_from_environment as _configure_logging
from ._streaming import ChatCompletionStream
from ._types import AwsCredentials, CacheCreation, ChatCompletion, StreamChunk, Usage

if _typing.TYPE_CHECKING:
    from ._batch.chat import BatchResult, BatchRun
    from ._sync import AnthropicBedrockSync, SyncBatchRun, SyncChatCompletionStream

_configure_logging()  # BEDROCK_CHAT_LOG

# Imported on first use, so that `import bedrock_chat` stays cheap for the common async case.
_LAZY = {
    "AnthropicBedrockSync": "._sync",
    "SyncBatchRun": "._sync",
    "SyncChatCompletionStream": "._sync",
    "BatchResult": "._batch.chat",
    "BatchRun": "._batch.chat",
}


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bedrock_chat' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "AccessDeniedError",
    "AnthropicBedrock",
    "AnthropicBedrockSync",
    "AuthenticationError",
    "AwsCredentials",
    "BatchResult",
    "BatchRun",
    "BedrockError",
    "CacheBreakpointWarning",
    "CacheCreation",
    "ChatCompletion",
    "ChatCompletionStream",
    "ChatCompletions",
    "ConfigurationError",
    "ConflictError",
    "CredentialsError",
    "EventStreamError",
    "ExpiredTokenError",
    "IncompleteStreamError",
    "InternalServerError",
    "InvalidRequestError",
    "InvokeModelResponse",
    "MODELS",
    "ModelApi",
    "ModelError",
    "ModelInfo",
    "ModelNotReadyError",
    "ModelStreamError",
    "ModelTimeoutError",
    "ProxyError",
    "RequestTimeoutError",
    "ResolvedModel",
    "ResourceNotFoundError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServiceQuotaExceededError",
    "ServiceUnavailableError",
    "StreamChunk",
    "StructuredOutputError",
    "Surface",
    "SyncBatchRun",
    "SyncChatCompletionStream",
    "ThrottlingError",
    "TransportError",
    "Usage",
    "ValidationError",
    "resolve_model",
]
