"""``client.batch()`` and ``batch_in_order()``: ``create`` requests run through the scheduler."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio.abc
import attrs

from .._core.protocol import Invocation
from .._errors import BedrockError, InvalidRequestError
from .._telemetry import BatchTelemetry
from .._types import ChatCompletion
from .scheduler import (
    DEFAULT_BATCH_RETRIES,
    DEFAULT_CONCURRENCY,
    WINDOW,
    Operation,
    RetryHook,
    Scheduler,
    estimate_tokens,
    used_tokens,
)

if TYPE_CHECKING:
    from .._client import AnthropicBedrock

__all__ = ["BatchResult", "BatchRun", "Requests", "batch_retries", "chat_batch", "collect_in_order", "prepare_chat"]


Requests: TypeAlias = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]


@attrs.frozen
class BatchResult:
    """One finished request of ``ChatCompletion.batch``: exactly one of ``completion`` and ``error`` is set.

    ``index`` is the request's position in the input; ``request`` the keyword arguments as given.
    """

    index: int
    request: Mapping[str, Any]
    completion: ChatCompletion | None
    error: BedrockError | None

    @property
    def ok(self) -> bool:
        """Whether the request succeeded."""
        return self.error is None

    def unwrap(self) -> ChatCompletion:
        """The completion, or raise the request's error."""
        if self.error is not None:
            raise self.error
        assert self.completion is not None
        return self.completion


@functools.cache
def _create_parameters(create: Callable[..., Any]) -> dict[str, Any]:
    """``create``'s keyword arguments and defaults, read from its signature so the two cannot drift apart."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(create).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "stream"
    }


def prepare_chat(client: AnthropicBedrock, request: object) -> Invocation:
    """The request's Invocation, validated exactly as ``create`` validates it (before any I/O)."""
    if not isinstance(request, Mapping):
        raise InvalidRequestError(
            "request", f"must be a dict of create() keyword arguments, got {type(request).__name__}"
        )
    parameters = _create_parameters(type(client.ChatCompletion).create)
    if request.get("stream", False) is not False:
        raise InvalidRequestError(
            "stream", f"a batch collects whole replies: must be False or absent, got {request['stream']!r}"
        )
    unknown = sorted(str(key) for key in request if key not in parameters and key != "stream")
    if unknown:
        raise InvalidRequestError(unknown[0], f"is not an argument of create(); expected some of {sorted(parameters)}")
    if not isinstance(request.get("model"), (str, type(None))):  # resolve_model is cached: it needs a hashable
        raise InvalidRequestError("model", f"must be a string, got {type(request['model']).__name__}")
    arguments: dict[str, Any] = {}
    for name, default in parameters.items():
        if name in request:
            arguments[name] = request[name]
        elif default is inspect.Parameter.empty:
            raise InvalidRequestError(name, "is required")
        else:
            arguments[name] = default
    try:
        return client._prepare(**arguments, stream=False)
    except InvalidRequestError:
        raise
    except (TypeError, ValueError) as exc:
        # Input create() cannot encode (a lone surrogate, say) must fail its item, not the whole batch.
        raise InvalidRequestError("request", f"cannot be sent: {type(exc).__name__}: {exc}") from exc


def _estimate_invocation(invocation: Invocation) -> int:
    conversation = invocation.conversation
    return estimate_tokens(
        {
            "system": conversation.system,
            "messages": [turn.content for turn in conversation.turns],
            "max_tokens": invocation.sampling.max_tokens,
        }
    )


class BatchRun:
    """A running ``ChatCompletion.batch``: ``async with`` it, then ``async for`` over its results.

    Results come as they finish (``result.index`` is the input position). Leaving the block early
    cancels what is still running. Live counters (``in_flight``, ``send_rate``, ``completed``,
    ``failed``) are there for progress displays.
    """

    def __init__(
        self,
        scheduler: Scheduler[Mapping[str, Any], Invocation, ChatCompletion],
        telemetry: BatchTelemetry | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._running = False
        self._telemetry = telemetry

    async def __aenter__(self) -> BatchRun:
        if self._telemetry is not None:
            self._telemetry.begin()
        try:
            await self._scheduler.__aenter__()
        except BaseException as error:
            if self._telemetry is not None:
                self._telemetry.end(error)
            raise
        self._running = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._running = False
        try:
            await self._scheduler.__aexit__(exc_type, exc, tb)
        except BaseException as error:
            if self._telemetry is not None:
                self._telemetry.end(error)
            raise
        if self._telemetry is not None:
            self._telemetry.end(exc)

    def __aiter__(self) -> BatchRun:
        if not self._running:
            raise TypeError(
                "a batch runs tasks that must end with a block: use "
                "'async with client.ChatCompletion.batch(requests) as results:' and then "
                "'async for result in results:' inside it"
            )
        return self

    async def __anext__(self) -> BatchResult:
        outcome = await self._scheduler.next_outcome()
        if self._telemetry is not None:
            self._telemetry.outcome(outcome.error is None)
        return BatchResult(outcome.index, outcome.item, outcome.value, outcome.error)

    @property
    def in_flight(self) -> int:
        """Requests holding a concurrency slot right now."""
        return self._scheduler.in_flight

    @property
    def send_rate(self) -> float:
        """The adaptive send rate now, in attempts per second (lowered by throttling, probing up after it)."""
        return self._scheduler.send_rate

    @property
    def completed(self) -> int:
        """Results delivered so far."""
        return self._scheduler.delivered

    @property
    def failed(self) -> int:
        """Of those, errors."""
        return self._scheduler.failed


def chat_batch(
    client: AnthropicBedrock,
    requests: Requests,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    max_retries: int | None = None,
    clock: Callable[[], float] = anyio.current_time,
    sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
    window: float = WINDOW,
) -> BatchRun:
    """The engine behind ``ChatCompletion.batch`` (``clock``, ``sleep`` and ``window`` are for tests)."""
    retries = batch_retries(client, max_retries)
    instruments = client._telemetry.instruments()
    telemetry = None if instruments is None else BatchTelemetry(instruments)

    def execute(invocation: Invocation, on_retry: RetryHook) -> Awaitable[ChatCompletion]:
        if telemetry is not None:
            return telemetry.run(lambda hook: client._invoke(invocation, on_retry=hook, max_retries=retries), on_retry)
        return client._invoke(invocation, on_retry=on_retry, max_retries=retries)

    operation: Operation[Mapping[str, Any], Invocation, ChatCompletion] = Operation(
        prepare=functools.partial(prepare_chat, client),
        execute=execute,
        estimate_tokens=_estimate_invocation,
        used_tokens=lambda completion: used_tokens(completion.usage),
    )
    scheduler = Scheduler(
        requests,
        operation,
        concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        clock=clock,
        sleep=sleep,
        window=window,
    )
    return BatchRun(scheduler, telemetry)


def batch_retries(client: AnthropicBedrock, max_retries: object) -> int:
    """A batch's retries per request: ``max_retries`` if given, else DEFAULT_BATCH_RETRIES or the client's, if more."""
    if max_retries is None:
        return max(client._retry.max_retries, DEFAULT_BATCH_RETRIES)
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise InvalidRequestError("max_retries", f"must be an integer >= 0 (or None), got {max_retries!r}")
    return max_retries


async def collect_in_order(run: BatchRun) -> list[BatchResult]:
    """Every result of ``run``, in input order (this one holds them all: it is for batches that fit in memory)."""
    results: dict[int, BatchResult] = {}
    async with run:
        async for result in run:
            results[result.index] = result
    return [results[index] for index in range(len(results))]
