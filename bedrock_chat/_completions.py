"""``client.ChatCompletion``: the ``create`` call of the anthropic-bedrock interface, and its batches.

The call's surface (its arguments, the overloads that type its result, the batch hand-over) is kept
apart from the client it runs on (``_client``: configuration, the per-loop transports, validation and
the request path), so that each module reads as one responsibility.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ._core.caching import warn_if_uncached
from ._core.config import validate_deadline
from ._core.models import Surface
from ._streaming import ChatCompletionStream
from ._types import ChatCompletion

if TYPE_CHECKING:
    from ._batch.chat import BatchResult, BatchRun, Requests
    from ._client import AnthropicBedrock

__all__ = ["ChatCompletions"]


class ChatCompletions:
    """``client.ChatCompletion``: the chat call of the anthropic-bedrock interface."""

    def __init__(self, client: AnthropicBedrock) -> None:
        self._client = client

    @overload
    async def create(
        self,
        *,
        messages: Sequence[dict[str, Any]],
        model: str,
        max_tokens_to_sample: int | None = ...,
        stop_sequences: Sequence[str] | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        top_k: int | None = ...,
        system: str | Sequence[Mapping[str, Any]] | None = ...,
        max_tokens: int | None = ...,
        thinking: Mapping[str, Any] | None = ...,
        tools: Sequence[Mapping[str, Any]] | None = ...,
        tool_choice: Mapping[str, Any] | None = ...,
        anthropic_beta: Sequence[str] | None = ...,
        output_config: Mapping[str, Any] | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        guardrail_identifier: str | None = ...,
        guardrail_version: str | None = ...,
        trace: str | None = ...,
        performance_config_latency: str | None = ...,
        service_tier: str | None = ...,
        request_metadata: Mapping[str, str] | None = ...,
        surface: Surface | str | None = ...,
        deadline: float | None = ...,
        stream: Literal[False] = ...,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        messages: Sequence[dict[str, Any]],
        model: str,
        max_tokens_to_sample: int | None = ...,
        stop_sequences: Sequence[str] | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        top_k: int | None = ...,
        system: str | Sequence[Mapping[str, Any]] | None = ...,
        max_tokens: int | None = ...,
        thinking: Mapping[str, Any] | None = ...,
        tools: Sequence[Mapping[str, Any]] | None = ...,
        tool_choice: Mapping[str, Any] | None = ...,
        anthropic_beta: Sequence[str] | None = ...,
        output_config: Mapping[str, Any] | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        guardrail_identifier: str | None = ...,
        guardrail_version: str | None = ...,
        trace: str | None = ...,
        performance_config_latency: str | None = ...,
        service_tier: str | None = ...,
        request_metadata: Mapping[str, str] | None = ...,
        surface: Surface | str | None = ...,
        deadline: float | None = ...,
        stream: Literal[True],
    ) -> ChatCompletionStream: ...

    @overload
    async def create(
        self,
        *,
        messages: Sequence[dict[str, Any]],
        model: str,
        max_tokens_to_sample: int | None = ...,
        stop_sequences: Sequence[str] | None = ...,
        temperature: float | None = ...,
        top_p: float | None = ...,
        top_k: int | None = ...,
        system: str | Sequence[Mapping[str, Any]] | None = ...,
        max_tokens: int | None = ...,
        thinking: Mapping[str, Any] | None = ...,
        tools: Sequence[Mapping[str, Any]] | None = ...,
        tool_choice: Mapping[str, Any] | None = ...,
        anthropic_beta: Sequence[str] | None = ...,
        output_config: Mapping[str, Any] | None = ...,
        extra_body: Mapping[str, Any] | None = ...,
        extra_headers: Mapping[str, str] | None = ...,
        guardrail_identifier: str | None = ...,
        guardrail_version: str | None = ...,
        trace: str | None = ...,
        performance_config_latency: str | None = ...,
        service_tier: str | None = ...,
        request_metadata: Mapping[str, str] | None = ...,
        surface: Surface | str | None = ...,
        deadline: float | None = ...,
        stream: bool,
    ) -> ChatCompletion | ChatCompletionStream: ...

    async def create(
        self,
        *,
        messages: Sequence[dict[str, Any]],
        model: str,
        max_tokens_to_sample: int | None = None,
        stop_sequences: Sequence[str] | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        system: str | Sequence[Mapping[str, Any]] | None = None,
        max_tokens: int | None = None,
        thinking: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Mapping[str, Any] | None = None,
        anthropic_beta: Sequence[str] | None = None,
        output_config: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        guardrail_identifier: str | None = None,
        guardrail_version: str | None = None,
        trace: str | None = None,
        performance_config_latency: str | None = None,
        service_tier: str | None = None,
        request_metadata: Mapping[str, str] | None = None,
        surface: Surface | str | None = None,
        deadline: float | None = None,
        stream: bool = False,
    ) -> ChatCompletion | ChatCompletionStream:
        """Send a conversation to a Claude model and return the reply appended to it.

        Args:
            messages: ``[{"role": "system"|"user"|"assistant", "content": ...}]``; a trailing assistant
                message is a prefill the reply continues.
            model: a Bedrock model id, inference-profile id or ARN; the API (text completions or
                Messages) is chosen from it.
            max_tokens_to_sample: most tokens to generate (default 256; ``max_tokens`` is an alias).
            stop_sequences: strings that end generation.
            temperature, top_p: 0 to 1; top_k: 0 to 500. Unset means the model's default
                (1, 1 and 250 for the Claude models that document them).
            system: system prompt, a string or (Messages models) text blocks that may carry ``cache_control``
                (alternatively, leading ``system`` messages).
            thinking: extended thinking, passed through (``{"type": "adaptive"}``, or
                ``{"type": "enabled", "budget_tokens": N}``), checked against what the model accepts.
            tools, tool_choice: tool definitions and the choice rule (Messages models); the reply's
                ``tool_use`` blocks are in ``chat.tool_calls``, answer them with ``tool_result`` blocks.
            anthropic_beta: beta flag names (Messages models).
            output_config: ``{"effort": "low"|"medium"|"high"|"max"}`` and/or ``{"format": {"type":
                "json_schema", "schema": {...}}}``, checked against what the model takes; with a format,
                ``chat.parsed`` is the reply's JSON.
            extra_body: fields merged into the JSON body last (they win over named arguments), for
                request fields this client does not know yet.
            extra_headers: headers sent (and signed) with the request; those the signer or the HTTP
                layer owns (``authorization``, ``host``, ``x-amz-*``, ``content-type``, ...) are refused.
            guardrail_identifier, guardrail_version, trace, performance_config_latency,
                service_tier, request_metadata: Bedrock's request options, sent as its headers.
            surface: force ``"invoke"`` (``/model/{id}/invoke``) or ``"messages-endpoint"``
                (``/anthropic/v1/messages``); by default the registry's choice for the model.
            deadline: seconds for the whole call -- credentials, every attempt and backoff, and for a
                stream everything until it is closed -- past which it raises RequestTimeoutError (not
                retried); None uses the client's ``deadline``.
            stream: return a :class:`ChatCompletionStream` once the response headers arrived.

        Raises:
            InvalidRequestError: a bad argument (raised before any I/O), naming the field.
            APIError: the service's error, typed by its code, after retries where they apply.
            RequestTimeoutError: a timeout, or the deadline, expired.
            ResponseTooLargeError: the answer was longer than the client's ``max_response_bytes``.
        """
        seconds = validate_deadline(deadline, per_call=True)
        invocation = self._client._prepare(
            messages=messages,
            model=model,
            max_tokens_to_sample=max_tokens_to_sample,
            max_tokens=max_tokens,
            stop_sequences=stop_sequences,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            system=system,
            thinking=thinking,
            tools=tools,
            tool_choice=tool_choice,
            anthropic_beta=anthropic_beta,
            output_config=output_config,
            extra_body=extra_body,
            extra_headers=extra_headers,
            guardrail_identifier=guardrail_identifier,
            guardrail_version=guardrail_version,
            trace=trace,
            performance_config_latency=performance_config_latency,
            service_tier=service_tier,
            request_metadata=request_metadata,
            surface=surface,
            stream=stream,
        )
        if stream:
            return await self._client._open_stream(invocation, deadline=seconds)
        chat = await self._client._invoke(invocation, deadline=seconds)
        if invocation.cache is not None:
            warn_if_uncached(invocation.cache, chat.usage, invocation.model.display_name, stacklevel=2)
        return chat

    def batch(
        self,
        requests: Requests,
        *,
        concurrency: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int | None = None,
    ) -> BatchRun:
        """Run many ``create`` calls concurrently; use as ``async with ... as results: async for r in results``.

        Args:
            requests: ``create`` keyword arguments (dicts), from a sync or async iterable read lazily.
            concurrency: most requests in flight (a cap: the send rate adapts to throttling below it).
            requests_per_minute, tokens_per_minute: limits that hold over any 60-second window; tokens
                are estimated before sending (prompt characters / 4 + max tokens) and reconciled with
                the reported usage.
            max_retries: retries per request (throttling, 5xx); None: 6, as ``bedrock-chat batch``, or
                the client's ``max_retries`` if more. A request out of retries is a lost record, and a
                batch can afford to wait: at 30% throttling, 2 retries lose 2.7% of the records.

        Each input yields one :class:`BatchResult` (its index, and the completion or the typed error),
        in completion order. Leaving the block early cancels the requests still running.
        """
        from ._batch.chat import chat_batch  # imported on use: most programs never batch

        return chat_batch(
            self._client,
            requests,
            concurrency=concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            max_retries=max_retries,
        )

    async def batch_in_order(
        self,
        requests: Requests,
        *,
        concurrency: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_retries: int | None = None,
    ) -> list[BatchResult]:
        """:meth:`batch`, collected: every result, in input order (all held in memory)."""
        # imported on use: most programs never batch (start-up time)
        from ._batch.chat import collect_in_order

        return await collect_in_order(
            self.batch(
                requests,
                concurrency=concurrency,
                requests_per_minute=requests_per_minute,
                tokens_per_minute=tokens_per_minute,
                max_retries=max_retries,
            )
        )
