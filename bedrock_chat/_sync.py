"""``AnthropicBedrockSync``: the async client driven from plain, blocking code.

No logic is duplicated: an anyio blocking portal runs the async client on an event loop in a
background thread, and each call here waits for the corresponding coroutine there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._client import AnthropicBedrock
from ._core.responses import InvokeModelResponse
from ._errors import ConfigurationError
from ._streaming import ChatCompletionStream
from ._types import ChatCompletion, StreamChunk

if TYPE_CHECKING:  # _batch is imported on use, as the async client does: most programs never batch
    from ._batch.chat import BatchResult, BatchRun

__all__ = ["AnthropicBedrockSync", "SyncBatchRun", "SyncChatCompletionStream"]

_END = object()
_T = TypeVar("_T")


async def _next_or_end(iterator: AsyncIterator[_T]) -> _T | object:
    """The next item, or ``_END``: StopAsyncIteration is not carried across the portal."""
    try:
        return await iterator.__anext__()
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


class SyncBatchRun:
    """A running ``ChatCompletion.batch`` for blocking code: ``with ... as results:``, then ``for r in results``.

    The batch's task group lives in the portal's event loop for the duration of the ``with`` block;
    leaving it early cancels the requests still running, as the async block does.
    """

    def __init__(self, portal: BlockingPortal, run: BatchRun) -> None:
        self._portal = portal
        self._run = run
        self._context: AbstractContextManager[BatchRun] | None = None

    def __enter__(self) -> SyncBatchRun:
        context = self._portal.wrap_async_context_manager(self._run)
        context.__enter__()
        self._context = context
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(exc_type, exc, tb)

    def __iter__(self) -> Iterator[BatchResult]:
        if self._context is None:
            raise TypeError(
                "a batch runs tasks that must end with a block: use "
                "'with client.ChatCompletion.batch(requests) as results:' and then 'for result in results:' inside it"
            )
        while True:
            result = self._portal.call(_next_or_end, self._run)
            if result is _END:
                return
            yield cast("BatchResult", result)

    @property
    def in_flight(self) -> int:
        """Requests holding a concurrency slot right now."""
        return self._run.in_flight

    @property
    def send_rate(self) -> float:
        """The adaptive send rate now, in attempts per second (lowered by throttling, probing up after it)."""
        return self._run.send_rate

    @property
    def completed(self) -> int:
        """Results delivered so far."""
        return self._run.completed

    @property
    def failed(self) -> int:
        """Of those, errors."""
        return self._run.failed


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

    def batch(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        concurrency: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int | None = None,
    ) -> SyncBatchRun:
        """Same arguments as ``AnthropicBedrock.ChatCompletion.batch``; ``with ... as results: for r in results``.

        ``requests`` is read lazily on the client's event-loop thread.
        """
        portal, client = self._owner._live()
        run = portal.call(
            functools.partial(
                client.ChatCompletion.batch,
                requests,
                concurrency=concurrency,
                requests_per_minute=requests_per_minute,
                tokens_per_minute=tokens_per_minute,
                max_retries=max_retries,
            )
        )
        return SyncBatchRun(portal, run)

    def batch_in_order(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        concurrency: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int | None = None,
    ) -> list[BatchResult]:
        """Same arguments and result as ``AnthropicBedrock.ChatCompletion.batch_in_order``, blocking."""
        portal, client = self._owner._live()
        return portal.call(
            functools.partial(
                client.ChatCompletion.batch_in_order,
                requests,
                concurrency=concurrency,
                requests_per_minute=requests_per_minute,
                tokens_per_minute=tokens_per_minute,
                max_retries=max_retries,
            )
        )


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
