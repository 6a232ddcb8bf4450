"""OpenTelemetry spans and metrics of each call, when the application has set up OpenTelemetry.

Cost model: ``opentelemetry-api`` (the ``[otel]`` extra) is imported on first use, once, and only once the
application has imported it itself (until then no SDK can be configured: no import time for others); without it, or
with only the API's own no-op/proxy providers in place (no SDK configured), :meth:`Telemetry.instruments`
returns None and the request path runs exactly as without this module (one method call per request).
Once a real provider is set (it can be set only once per process), instruments are made once per client.
Attribute dicts are built only for a span that is recording; metric attributes are a handful of keys.

One CLIENT span per ``create`` (streamed or not) and ``count_tokens``, named ``{operation} {model}``, with
the GenAI conventions' attributes (``bedrock_chat._core.genai``). Choices:

- **Retries are span events** (``bedrock_chat.retry``: the error's class, the retry's number counted
  across the whole operation, so a stream re-sent after a mid-stream failure goes on counting, and the
  request id), not child spans per attempt: the GenAI span is the logical operation, an attempt is not a GenAI
  operation, a retry-free call (nearly all) then costs one span, not two, and an HTTP-level span per
  attempt is what an HTTP client instrumentation adds when wanted.
- **A stream's span** lasts until it is read to its end, fails, or is closed: its ``gen_ai.response.
  time_to_first_chunk`` is set at the first chunk. A stream closed (or cancelled) before its end ends the
  span with ``error.type = "cancelled"`` and status ERROR, and reports no usage: the operation did not
  complete, and counting it a success with no tokens would skew success rates and token totals. A
  stream dropped without either (never closed, never read to its end) ends its span when it is
  garbage-collected, with ``error.type = "abandoned"``: a span left open forever is never exported, and
  the call then vanishes from traces and duration metrics alike. (OpenTelemetry's own GenAI stream
  wrappers, used by the openai-v2 instrumentation, end a span only on exhaustion, error or close.)
- **Errors** set status ERROR and ``error.type`` = our exception's class name (``ThrottlingError``...);
  a cancelled call's is ``cancelled``. Arguments refused before any I/O make no span (nothing was sent).
- **Content** (prompts, replies, system instructions, tool definitions) is recorded only on opt-in:
  ``telemetry_content=True`` or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``. Credentials
  are never in what is recorded: they are not in the conversation, and headers are never recorded.
- **A batch** is an INTERNAL span ``bedrock_chat.batch``, each request's span its child (the batch's
  context is attached inside each worker, so this holds under trio too), with the summary at the end.
  The CLI's ``bedrock-chat batch`` sends its records' raw bodies (:meth:`Instruments.start_raw`) and
  makes the same spans.
- **Sampling**: the request attributes (operation, provider, model, server address and port among
  them) are given when the span is created, as the conventions ask, so a sampler can decide on them.
- **Exemplars**: a call's duration, token usage and time to first chunk are recorded in the context of
  its span (as OpenTelemetry's own GenAI utilities do), so an SDK's trace-based exemplar filter links them
  to the call's span, also when the caller has none. Per-chunk records are made in the reader's context:
  offering each of a stream's chunks as an exemplar costs about a sixth of a record each, for exemplars
  that say nothing the call's own do not.
- **Chunks** are the stream's output events (:data:`genai.OUTPUT_CHUNK_TYPES`): the conventions time
  "output" chunks, and Anthropic's envelope events (``message_start``, ``content_block_start``/``stop``,
  ``message_delta``, ``message_stop``, ``ping``) carry none of the model's output.

Cost with an SDK (``benchmarks/bench_telemetry.py``): nearly all of it is the SDK's own work, one span with
its attributes and three histogram records per call (attribute cleaning and hashing, per record), plus
one record per output chunk. Ours is kept to what that needs: the span's attributes are built once per
call and given in two calls (at creation, for samplers, and at the end), response attributes only for a
recording span, and the metric attribute dicts are built once per (operation, model, server) and reused
(the SDK copies what it is given); one clock read per event.
"""

from __future__ import annotations

import json
import os
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from ._core import genai
from ._core.models import ResolvedModel
from ._core.protocol import Invocation
from ._core.responses import InvokeModelResponse
from ._errors import BedrockError, ConfigurationError
from ._types import ChatCompletion, Usage

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["CONTENT_ENV", "BatchTelemetry", "CallObserver", "Instruments", "Telemetry"]

T = TypeVar("T")


class _Answer(Protocol):
    """What a batch request answers with: a ChatCompletion, or the CLI's raw InvokeModelResponse."""

    @property
    def usage(self) -> Usage: ...


A = TypeVar("A", bound=_Answer)
RetryHook = Callable[[BedrockError, int], None]

#: The environment variable the GenAI instrumentations read for content capture.
CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SCOPE = "bedrock_chat"
_VERSION = "0.1.0"

#: The conventions' ExplicitBucketBoundaries advice (gen-ai-metrics): seconds, and tokens.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

_UNSET: Any = object()
#: Setting a tracer or meter provider imports one of these; until one is imported no SDK can be configured.
_OTEL_MODULES = frozenset({"opentelemetry.trace", "opentelemetry.metrics"})
_api: Any = _UNSET  # the opentelemetry modules, or None when the API is not installed


def _otel() -> Any:
    """The OpenTelemetry API (a namespace of what is used), imported once; None when it is not installed."""
    global _api
    if _api is _UNSET:
        try:
            from opentelemetry import context, metrics, trace
            from opentelemetry.metrics import _internal as metrics_internal
        except ImportError:
            _api = None
        else:

            class _Api:
                pass

            _api = _Api()
            _api.context, _api.metrics, _api.trace = context, metrics, trace
            _api.metrics_internal = metrics_internal
    return _api


def _no_sdk(api: Any) -> bool:
    """No provider set beyond the API's own. The API's globals (None until one is set) are read first: the
    public getters cost microseconds each (they consult the environment); if those names ever change,
    the public check answers."""
    if getattr(api.trace, "_TRACER_PROVIDER", _UNSET) is None and (
        getattr(api.metrics_internal, "_METER_PROVIDER", _UNSET) is None
    ):
        return True
    return _is_api_default(api.trace.get_tracer_provider()) and _is_api_default(api.metrics.get_meter_provider())


def _is_api_default(provider: object) -> bool:
    """The API's own providers (no-op, or the proxy standing in until an SDK is set) are defined in the API."""
    return type(provider).__module__.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


def content_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` (any case) opts in to content capture."""
    return environ.get(CONTENT_ENV, "").strip().lower() == "true"


def _error_type(error: BaseException) -> str:
    if isinstance(error, anyio.get_cancelled_exc_class()):
        return "cancelled"
    return type(error).__name__


class Telemetry:
    """A client's telemetry switch: ``enabled`` None (on when an SDK is configured), True (on), False (off)."""

    __slots__ = ("_content", "_enabled", "_instruments", "_meter_provider", "_tracer_provider")

    def __init__(
        self,
        enabled: bool | None = None,
        *,
        content: bool | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if enabled is not None and not isinstance(enabled, bool):
            raise ConfigurationError(f"telemetry: must be None, True or False, got {enabled!r}")
        if content is not None and not isinstance(content, bool):
            raise ConfigurationError(f"telemetry_content: must be None, True or False, got {content!r}")
        self._content = content_from_environment() if content is None else content
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._instruments: Instruments | None = None
        given = tracer_provider is not None or meter_provider is not None
        if enabled is False:
            if given:
                raise ConfigurationError("telemetry=False: tracer_provider and meter_provider would not be used")
            self._enabled: bool | None = False
            return
        if (enabled or given) and _otel() is None:
            raise ConfigurationError(
                "telemetry: OpenTelemetry is not installed; pip install 'bedrock-chat[otel]' (opentelemetry-api)"
            )
        self._enabled = True if given else enabled
        if self._enabled:
            self._instruments = Instruments(tracer_provider, meter_provider, content=self._content)

    def instruments(self) -> Instruments | None:
        """The instruments to record a call with, or None: the request path then does nothing more."""
        found = self._instruments
        if found is not None or self._enabled is False:
            return found
        # keys().isdisjoint iterates the smaller side (two names), not all of sys.modules: once per request.
        if _api is _UNSET and sys.modules.keys().isdisjoint(_OTEL_MODULES):
            # Nobody has imported the API, so nobody can have set an SDK provider: importing it here would
            # only add its import time to the first request of every application that does not use it.
            return None
        api = _otel()
        if api is None:
            self._enabled = False  # not installed: never looked for again
            return None
        if _no_sdk(api):
            return None  # no SDK yet (one may be set later: this check is two global reads)
        found = self._instruments = Instruments(None, None, content=self._content)
        return found


class Instruments:
    """A tracer and the conventions' four histograms, made once per client."""

    def __init__(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None, *, content: bool
    ) -> None:
        api = _otel()
        self.api = api
        self.content = content
        self._client_kind = api.trace.SpanKind.CLIENT
        #: (operation, model, address, port) -> its metric attribute dicts (bounded: see :meth:`_dimensions`).
        self._dims: dict[tuple[object, ...], _Dimensions] = {}
        self.tracer = api.trace.get_tracer(_SCOPE, _VERSION, tracer_provider=tracer_provider)
        meter = api.metrics.get_meter(_SCOPE, _VERSION, meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.per_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            unit="s",
            description="Time between consecutive chunks of a streamed response",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    # -- the calls ------------------------------------------------------------------------------

    def start(self, invocation: Invocation, address: str, port: int, *, operation: str | None = None) -> CallObserver:
        """Start the span of one call (not made current: see :meth:`run`)."""
        name = operation or genai.operation_name(invocation)
        attributes = genai.request_attributes(invocation, operation=name, server_address=address, server_port=port)
        span = self.tracer.start_span(
            f"{name} {invocation.model.model_id}", kind=self._client_kind, attributes=attributes
        )
        recording = span.is_recording()
        if self.content and operation is None and recording:
            tools = json.loads(invocation.body).get("tools")
            span.set_attributes(genai.content_attributes(invocation.conversation, tools))
        return CallObserver(self, span, self._dimensions(attributes), recording, stream=invocation.stream)

    def start_raw(
        self,
        model: ResolvedModel,
        body: Mapping[str, Any],
        headers: Iterable[tuple[str, str]],
        address: str,
        port: int,
    ) -> CallObserver:
        """Start the span of a request sent as a ready JSON body (the CLI's batch records): the same span,
        its parameters read from the body (what ``create`` would have built it from)."""
        name = genai.model_operation_name(model)
        attributes = genai.raw_request_attributes(
            model, body, headers, operation=name, server_address=address, server_port=port
        )
        span = self.tracer.start_span(f"{name} {model.model_id}", kind=self._client_kind, attributes=attributes)
        recording = span.is_recording()
        if self.content and recording:
            span.set_attributes(genai.raw_content_attributes(body))
        return CallObserver(self, span, self._dimensions(attributes), recording, stream=False)

    def _dimensions(self, span_attributes: Mapping[str, Any]) -> _Dimensions:
        """The metric attribute dicts of a call with these span attributes, made once and then reused.

        Keyed by what they hold (the provider is constant); bounded, as model ids and endpoints come from
        callers: past :data:`_MAX_DIMENSIONS` combinations the cache starts again (correct, only slower).
        """
        key = (
            span_attributes.get(genai.GEN_AI_OPERATION_NAME),
            span_attributes.get(genai.GEN_AI_REQUEST_MODEL),
            span_attributes.get(genai.SERVER_ADDRESS),
            span_attributes.get(genai.SERVER_PORT),
        )
        found = self._dims.get(key)
        if found is None:
            if len(self._dims) >= _MAX_DIMENSIONS:
                self._dims.clear()
            found = self._dims[key] = _Dimensions(genai.metric_attributes(span_attributes))
        return found

    async def run(
        self, observer: CallObserver, call: Callable[[RetryHook], Awaitable[T]], on_retry: RetryHook | None
    ) -> T:
        """``call(hook)`` with the span current; success or failure ends it (``hook`` records retries)."""
        hook: RetryHook = observer.retry
        if on_retry is not None:

            def hook(error: BedrockError, number: int) -> None:
                observer.retry(error, number)
                on_retry(error, number)

        api = self.api
        token = api.context.attach(observer.context)
        try:
            return await call(hook)
        except BaseException as error:
            observer.fail(error)
            raise
        finally:
            api.context.detach(token)


#: How many (operation, model, server) combinations an :class:`Instruments` keeps metric attributes for.
_MAX_DIMENSIONS = 256


class _Dimensions:
    """The metric attribute dicts of one (operation, model, server): never mutated once made, so reused
    by every call (the SDK cleans each measurement's attributes into its own copy)."""

    __slots__ = ("_answered", "base")

    def __init__(self, base: dict[str, Any]) -> None:
        #: The request's dimensions: time to first chunk and per output chunk (no response model yet).
        self.base = base
        self._answered: dict[str | None, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}

    def answered(self, model: str | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Duration's, input tokens' and output tokens' attributes once the answer named its model."""
        found = self._answered.get(model)
        if found is None:
            if len(self._answered) >= _MAX_DIMENSIONS:
                self._answered.clear()
            duration = dict(self.base)
            if model:
                duration[genai.GEN_AI_RESPONSE_MODEL] = model
            found = self._answered[model] = (
                duration,
                {**duration, genai.GEN_AI_TOKEN_TYPE: "input"},
                {**duration, genai.GEN_AI_TOKEN_TYPE: "output"},
            )
        return found


class CallObserver:
    """One call's span and metrics: retries, chunks, and how it ended (ending is idempotent)."""

    __slots__ = (
        "_dims",
        "_ended",
        "_instruments",
        "_last_chunk",
        "_recording",
        "_retries",
        "_started",
        "context",
        "span",
        "stream",
    )

    def __init__(
        self, instruments: Instruments, span: Span, dims: _Dimensions, recording: bool, *, stream: bool
    ) -> None:
        self._instruments = instruments
        self.span = span
        #: A context with the span current: the call runs in it, and its metrics are recorded in it.
        self.context = instruments.api.trace.set_span_in_context(span)
        self._dims = dims
        #: The span records attributes (sampled): asked once, at its start.
        self._recording = recording
        self.stream = stream
        self._started = perf_counter()
        self._last_chunk: float | None = None
        self._ended = False
        self._retries = 0

    def retry(self, error: BedrockError, number: int) -> None:
        """A span event per retry: which error, which retry, and the failed attempt's request id.

        The retry's number is counted here, across the whole operation: ``number`` is the transport's
        count within one send, which starts again at 1 when a stream is re-sent after failing mid-way.
        """
        self._retries += 1
        if self._recording:
            attributes: dict[str, Any] = {
                genai.ERROR_TYPE: type(error).__name__,
                "bedrock_chat.retry.number": self._retries,
            }
            request_id = getattr(error, "request_id", None)
            if request_id:
                attributes[genai.AWS_REQUEST_ID] = request_id
            if getattr(error, "is_throttle", False):
                attributes["bedrock_chat.retry.throttled"] = True
            self.span.add_event("bedrock_chat.retry", attributes)

    def chunk(self) -> None:
        """A stream handed out an output chunk: time to the first, and between each later one and the one
        before (one clock read and one record with the prebuilt attributes)."""
        now = perf_counter()
        last = self._last_chunk
        self._last_chunk = now
        if last is not None:
            self._instruments.per_chunk.record(now - last, self._dims.base)
            return
        elapsed = now - self._started
        self._instruments.first_chunk.record(elapsed, self._dims.base, self.context)
        if self._recording:
            self.span.set_attribute(genai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, elapsed)

    def watch(self, stream: object) -> None:
        """End the span as ``abandoned`` if ``stream`` is garbage-collected before it ended (see the module
        docstring). Not at interpreter exit: the application's exporters may be shut down by then."""
        finalizer = weakref.finalize(stream, self._abandoned)
        finalizer.atexit = False

    def _abandoned(self) -> None:
        if not self._ended:
            self._fail_as("abandoned", None, "the stream was garbage-collected before it was closed or read to its end")

    def succeed(self, chat: ChatCompletion) -> None:
        """The answer is complete: response attributes, usage metrics, and the end of the span."""
        if self._ended:
            return
        attributes = None
        if self._recording:
            attributes = genai.response_attributes(chat)
            if self._instruments.content:
                attributes.update(genai.output_attributes(chat))
        self._succeed(chat.model, attributes, chat.usage)

    def succeed_raw(self, response: InvokeModelResponse) -> None:
        """A raw request (:meth:`Instruments.start_raw`) answered: the same, read from the model's JSON body."""
        if self._ended:
            return
        body = response.body
        model = body.get("model")
        attributes = None
        if self._recording:
            attributes = genai.raw_response_attributes(body, response.usage, response.request_id)
            if self._instruments.content:
                attributes.update(genai.raw_output_attributes(body))
        self._succeed(model if isinstance(model, str) else None, attributes, response.usage)

    def _succeed(self, model: str | None, attributes: dict[str, Any] | None, usage: Usage) -> None:
        """``attributes``: the response's, for a recording span (None otherwise), set in one call."""
        elapsed = perf_counter() - self._started
        self._ended = True
        span = self.span
        if attributes is not None:
            span.set_attributes(attributes)
        instruments = self._instruments
        duration, input_attributes, output_attributes = self._dims.answered(model)
        context = self.context
        total = genai.input_tokens(usage)
        if total is not None:
            instruments.tokens.record(total, input_attributes, context)
        if usage.output_tokens is not None:
            instruments.tokens.record(usage.output_tokens, output_attributes, context)
        instruments.duration.record(elapsed, duration, context)
        span.end()

    def counted(self, count: int, request_id: str | None) -> None:
        """CountTokens answered: the count is the input tokens (no usage metric: nothing was billed)."""
        if self._ended:
            return
        elapsed = perf_counter() - self._started
        self._ended = True
        if self._recording:
            attributes: dict[str, Any] = {genai.GEN_AI_USAGE_INPUT_TOKENS: count}
            if request_id:
                attributes[genai.AWS_REQUEST_ID] = request_id
            self.span.set_attributes(attributes)
        self._instruments.duration.record(elapsed, self._dims.base, self.context)
        self.span.end()

    def fail(self, error: BaseException, description: str | None = None) -> None:
        """The call failed (or was cancelled): status ERROR, ``error.type``, and the end of the span."""
        self._fail_as(_error_type(error), getattr(error, "request_id", None), description)

    def _fail_as(self, kind: str, request_id: str | None, description: str | None) -> None:
        if self._ended:
            return
        elapsed = perf_counter() - self._started
        self._ended = True
        span = self.span
        if self._recording:
            attributes: dict[str, Any] = {genai.ERROR_TYPE: kind}
            if request_id:
                attributes[genai.AWS_REQUEST_ID] = request_id
            span.set_attributes(attributes)
            # The class name only: an error's message may quote what the server sent back.
            api = self._instruments.api
            span.set_status(api.trace.Status(api.trace.StatusCode.ERROR, description or kind))
        self._instruments.duration.record(elapsed, {**self._dims.base, genai.ERROR_TYPE: kind}, self.context)
        span.end()

    def closed(self) -> None:
        """A stream was closed: if it had not ended, it was cut short by its reader (see the module docstring)."""
        if not self._ended:
            self._fail_as("cancelled", None, "the stream was closed before its end")


class BatchTelemetry:
    """A batch's span: parent of its requests' spans, with the summary set when the batch ends.

    The span starts when the batch starts running (:meth:`begin`, on entering its ``async with``), not
    when it is made: it then nests under the span current there, and a batch never run leaves no span open.
    """

    def __init__(self, instruments: Instruments) -> None:
        self._instruments = instruments
        self.span: Span | None = None
        self.context: Any = None
        self.ok = self.failed = self.throttles = 0
        self.input_tokens = self.output_tokens = self.cache_read = self.cache_write = 0

    def begin(self) -> None:
        """Start the batch's span, as a child of the current one."""
        api = self._instruments.api
        self.span = self._instruments.tracer.start_span("bedrock_chat.batch", kind=api.trace.SpanKind.INTERNAL)
        self.context = api.trace.set_span_in_context(self.span)

    async def run(self, call: Callable[[RetryHook], Awaitable[A]], on_retry: RetryHook) -> A:
        """One request, in the batch's context (its span is the request span's parent), throttles counted."""

        def hook(error: BedrockError, number: int) -> None:
            if getattr(error, "is_throttle", False):
                self.throttles += 1
            on_retry(error, number)

        api = self._instruments.api
        token = api.context.attach(self.context)
        try:
            answer = await call(hook)
        except BaseException as error:
            if getattr(error, "is_throttle", False):
                self.throttles += 1  # the throttle that exhausted the retries
            raise
        finally:
            api.context.detach(token)
        usage = answer.usage
        self.input_tokens += genai.input_tokens(usage) or 0
        self.output_tokens += usage.output_tokens or 0
        self.cache_read += usage.cache_read_input_tokens or 0
        self.cache_write += usage.cache_creation_input_tokens or 0
        return answer

    def outcome(self, ok: bool) -> None:
        """A result was delivered."""
        if ok:
            self.ok += 1
        else:
            self.failed += 1

    def end(self, error: BaseException | None = None) -> None:
        """The batch's summary, then the end of its span (once; nothing if it never began)."""
        span, self.span = self.span, None
        if span is None:
            return
        if span.is_recording():
            span.set_attributes(
                {
                    "bedrock_chat.batch.ok": self.ok,
                    "bedrock_chat.batch.failed": self.failed,
                    "bedrock_chat.batch.throttles": self.throttles,
                    genai.GEN_AI_USAGE_INPUT_TOKENS: self.input_tokens,
                    genai.GEN_AI_USAGE_OUTPUT_TOKENS: self.output_tokens,
                    genai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: self.cache_read,
                    genai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: self.cache_write,
                }
            )
            if error is not None:
                kind = _error_type(error)
                span.set_attribute(genai.ERROR_TYPE, kind)
                api = self._instruments.api
                span.set_status(api.trace.Status(api.trace.StatusCode.ERROR, kind))
        span.end()
