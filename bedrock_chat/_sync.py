"""``AnthropicBedrockSync``: the async client driven from plain, blocking code.

No logic is duplicated: an anyio blocking portal runs the async client on an event loop in a
background thread, and each call here waits for the corresponding coroutine there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._client import AnthropicBedrock
from ._errors import ConfigurationError
from ._protocol import InvokeModelResponse
from ._streaming import ChatCompletionStream
from ._types import ChatCompletion, StreamChunk

__all__ = ["AnthropicBedrockSync", "SyncChatCompletionStream"]

_END = object()


async def _next_or_end(stream: ChatCompletionStream) -> StreamChunk | object:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        return _END


class SyncChatCompletionStream:
    """A plain-iterator view of :class:`ChatCompletionStream`; use it in a ``with`` block."""

    def __init__(self, portal: BlockingPortal, stream: ChatCompletionStream) -> None:
        self._portal = portal
        self._stream = stream

    def __enter__(self) -> SyncChatCompletionStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP response."""
        self._portal.call(self._stream.aclose)

    def __iter__(self) -> Iterator[StreamChunk]:
        while True:
            chunk = self._portal.call(_next_or_end, self._stream)
            if chunk is _END:
                return
            assert isinstance(chunk, StreamChunk)
            yield chunk

    @property
    def text_stream(self) -> Iterator[str]:
        """The text pieces only."""
        return (chunk.text for chunk in self if chunk.text)

    @property
    def completion(self) -> ChatCompletion:
        """The final result, once the stream was read to its end."""
        return self._stream.completion

    @property
    def request_id(self) -> str | None:
        """The service's request id."""
        return self._stream.request_id


class _SyncChatCompletions:
    def __init__(self, owner: AnthropicBedrockSync) -> None:
        self._owner = owner

    @overload
    def create(self, *, stream: Literal[False] = ..., **kwargs: Any) -> ChatCompletion: ...
    @overload
    def create(self, *, stream: Literal[True], **kwargs: Any) -> SyncChatCompletionStream: ...

    def create(self, *, stream: bool = False, **kwargs: Any) -> ChatCompletion | SyncChatCompletionStream:
        """Same arguments and result as ``AnthropicBedrock.ChatCompletion.create``, blocking."""
        portal, client = self._owner._live()

        async def call() -> Any:
            return await client.ChatCompletion.create(stream=stream, **kwargs)

        result = portal.call(call)
        if isinstance(result, ChatCompletionStream):
            return SyncChatCompletionStream(portal, result)
        assert isinstance(result, ChatCompletion)
        return result


class AnthropicBedrockSync:
    """Blocking twin of :class:`AnthropicBedrock` (same constructor arguments), for scripts.

    Use it as a context manager or call :meth:`close`; it owns one background event-loop thread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = self._stack.enter_context(start_blocking_portal())
        try:
            self._client = self._portal.call(self._make_client, args, kwargs)
        except BaseException:
            self._stack.close()
            raise
        self.ChatCompletion = _SyncChatCompletions(self)

    @staticmethod
    async def _make_client(args: Sequence[Any], kwargs: dict[str, Any]) -> AnthropicBedrock:
        return AnthropicBedrock(*args, **kwargs)

    def _live(self) -> tuple[BlockingPortal, AnthropicBedrock]:
        if self._portal is None:
            raise ConfigurationError("the client is closed")
        return self._portal, self._client

    def count_tokens(self, **kwargs: Any) -> int:
        """Same arguments and result as ``AnthropicBedrock.count_tokens``, blocking."""
        portal, client = self._live()
        return portal.call(functools.partial(client.count_tokens, **kwargs))

    def invoke_model(self, *, model: str, body: Mapping[str, Any]) -> InvokeModelResponse:
        """Same arguments and result as ``AnthropicBedrock.invoke_model``, blocking."""
        portal, client = self._live()
        return portal.call(functools.partial(client.invoke_model, model=model, body=body))

    def close(self) -> None:
        """Close the client and stop its event-loop thread (idempotent)."""
        if self._portal is not None:
            try:
                self._portal.call(self._client.aclose)
            finally:
                self._portal = None
                self._stack.close()

    def __enter__(self) -> AnthropicBedrockSync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
