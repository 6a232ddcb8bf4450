"""Routing and the request pipeline: raw request in, :class:`~._responses.Reply` out, no I/O.

Every request goes through the same steps, each of which may answer early:

1. **Route** on the raw path (before any percent-decoding, so ``%2F`` inside an ARN stays inside the
   model segment): a table of ``/model/{id}/<tail>`` operations plus a table of exact paths. Unknown
   path or wrong method: 404 UnknownOperationException (UNVERIFIED: what Bedrock's front end answers).
   A route whose body names the model and asks for a stream (``/anthropic/v1/messages``) has it
   *peeked* now, so that the fault draw knows whether the answer streams.
2. **Authenticate** (``_auth``), unless ``verify_signatures`` is off. The Messages endpoint accepts its
   own set of signing names and ``x-api-key`` as well.
3. **Content type**, when sent, must be ``application/json`` (boto3 sends none when ``contentType`` is
   omitted, which the service accepts): else 400 ValidationException (UNVERIFIED wording).
4. **Fault**: the scripted queue's head, else the seeded rates (``_faults``). An HTTP-error fault
   answers now; the others change the reply built in step 6.
5. **Headers, model and body**: on InvokeModel routes, the request-option headers first
   (``_core.request_options``: guardrail, trace, latency, service tier, metadata) -> 400; the model id is
   percent-decoded once and resolved with the emulator's own table (``_models``); malformed or an
   unknown profile prefix -> 400 ValidationException, unknown -> 404 ResourceNotFoundException, a
   model served only on ``/anthropic/v1/messages`` -> 400 ValidationException (UNVERIFIED); then JSON
   and the API's rules (``_validation``, ``_content``) -> 400. On the Messages endpoint, first the
   ``anthropic-version`` header, and the surfaces are the other way round.
6. **Answer** with the fake model's reply (``_fake_model``, or a tool call by ``_tools``' rules), as
   JSON or as event-stream frames (SSE on the Messages endpoint). CountTokens (``_count_tokens``)
   answers ``{"inputTokens": N}`` with the same count InvokeModel reports for the body. Converse and
   ConverseStream are not served: they answer Bedrock's 400 ValidationException for a model that does
   not support the operation (``CONVERSE_UNSUPPORTED``).

Each :class:`Route` carries its surface's wire format: how it renders errors and applies mid-body
faults (``_responses`` for InvokeModel, ``_messages_endpoint`` for ``/anthropic/v1/messages``).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from . import _count_tokens as count_tokens_op
from . import _messages_endpoint as messages_endpoint
from ._auth import INVOKE_SIGNING_NAMES, verify_request
from ._cache import CacheUsage, PromptCache, plan_cache, split_input
from ._fake_model import FakeReply, count_tokens, fake_reply, split_chunks
from ._faults import HTTP_ERRORS, Fault, FaultInjector, FaultKind
from ._features import features_for
from ._models import Api, ModelIdError, ModelRef, Surface, parse_model_id
from ._options import EmulatorOptions
from ._quota import QuotaState, Reservation
from ._request_features import NONE, RequestFeatures, check_request_features, citations, thinking_block
from ._request_options import body_fields, parse_request_options, response_headers
from ._responses import (
    NO_ADDITIONS,
    NO_PADDING,
    Additions,
    Reply,
    apply_fault,
    error_reply,
    messages_body,
    messages_stream_frames,
    new_request_id,
    ok_reply,
    padder,
    stream_reply,
    text_body,
    text_stream_frames,
)
from ._tools import ToolCall, plan_tool_use, schema_value
from ._validation import (
    BodyError,
    ParsedRequest,
    anthropic_model_name,
    check_api_version_header,
    parse_body,
    parse_messages_endpoint_body,
)
from ._wire_errors import ServiceError

__all__ = ["CONVERSE_UNSUPPORTED", "MODEL_ROUTES", "PATH_ROUTES", "Call", "Dispatched", "Dispatcher", "Route"]

_MODEL_PREFIX = "/model/"


def _validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


@attrs.frozen(kw_only=True)
class Call:
    """One routed, authenticated request, as a handler sees it.

    ``model_id`` is the percent-decoded ``{modelId}`` path segment on model routes, the body's
    ``model`` on the Messages endpoint; ``document`` is what the route's ``peek`` parsed (or None).
    """

    options: EmulatorOptions
    route: Route
    model_id: str | None
    body: bytes
    request_id: str
    fault: Fault | None = None
    streaming: bool = False
    headers: Sequence[tuple[bytes, bytes]] = ()
    document: dict[str, Any] | ServiceError | None = None
    cache: PromptCache | None = None


@attrs.frozen(kw_only=True)
class Route:
    """One operation: its name, method, surface, the handler that answers it, and its wire format.

    ``streaming`` is fixed per route unless ``peek`` reads it (and the model) from the body;
    ``render_error`` and ``apply_fault`` are the surface's error shape and mid-body faults.
    """

    operation: str
    method: str
    streaming: bool
    handler: Callable[[Call], Reply]
    surface: Surface = Surface.INVOKE
    peek: Callable[[bytes], messages_endpoint.Peeked] | None = None
    render_error: Callable[[ServiceError, str], Reply] = error_reply
    apply_fault: Callable[[Reply, Fault], Reply] = apply_fault


#: Where a model the table serves elsewhere is told to go (UNVERIFIED wording).
_WRONG_SURFACE: Mapping[Surface, str] = {
    Surface.INVOKE: "The model {} is served on the Messages API endpoint (/anthropic/v1/messages), not on InvokeModel.",
    Surface.MESSAGES_ENDPOINT: (
        "The provided model identifier is invalid: {} is served on InvokeModel (/model/{{modelId}}/invoke), "
        "not on the Messages API endpoint."
    ),
}


def _resolve(model_id: str, surface: Surface) -> ModelRef | ServiceError:
    model = parse_model_id(model_id)
    if model is ModelIdError.INVALID:
        field = "modelId" if surface is Surface.INVOKE else "model"
        return _validation(
            f"1 validation error detected: Value '{model_id}' at '{field}' failed to satisfy constraint: Member "
            "must satisfy the model identifier pattern (1 to 2048 characters)"
        )
    if model is ModelIdError.UNKNOWN:
        return ServiceError(
            "ResourceNotFoundException", "Could not resolve the foundation model from the provided model identifier."
        )
    if surface not in model.surfaces:
        return _validation(_WRONG_SURFACE[surface].format(model_id))
    return model


def _parse(body: bytes, model: ModelRef) -> tuple[ParsedRequest, dict[str, Any]] | ServiceError:
    try:
        document: Any = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return _validation(f"Malformed input request: {exc}, please reformat your input and try again.")
    if not isinstance(document, dict):
        return _validation(
            "Malformed input request: #: expected type: JSONObject, found: "
            f"{type(document).__name__}, please reformat your input and try again."
        )
    try:
        return parse_body(document, model), document
    except BodyError as exc:
        return _validation(exc.message)


@attrs.frozen
class Plan:
    """A validated Messages request's extras: its features, and what the cache read and wrote."""

    features: RequestFeatures = NONE
    cache: CacheUsage | None = None


def _plan(call: Call, document: dict[str, Any], model: ModelRef) -> Plan | ServiceError:
    """Check the request's 2026 features and apply its cache breakpoints (``_request_features``, ``_cache``)."""
    features = features_for(model)
    try:
        request = check_request_features(document, features)
        key = model.model.id if model.model is not None else model.model_id
        cache_plan = plan_cache(document, key, ttl_1h=features.ttl_1h)
    except BodyError as exc:
        return _validation(exc.message)
    if cache_plan is None or call.cache is None:
        return Plan(request) if request is not NONE else _NO_PLAN
    return Plan(request, call.cache.apply(cache_plan, floor=features.cache_floor, clock=call.options.cache_clock))


_NO_PLAN = Plan()


def _structured(parsed: ParsedRequest, schema: Mapping[str, Any], seed: int) -> FakeReply:
    """The reply to ``output_config.format``: compact JSON from the schema, cut at max tokens like any text."""
    text = json.dumps(schema_value(schema, parsed.last_user_text), separators=(",", ":"))
    pieces = split_chunks(text, 1)
    if len(pieces) > parsed.max_tokens:
        text = "".join(pieces[: parsed.max_tokens])
        return FakeReply(text, "max_tokens", None, count_tokens(text), seed)
    return FakeReply(text, "end_turn", None, count_tokens(text), seed)


def _generate(
    parsed: ParsedRequest, options: EmulatorOptions, request_id: str, plan: Plan = _NO_PLAN
) -> tuple[FakeReply, ToolCall | None, Additions]:
    """The fake model's answer: a tool call when ``_tools``' rules call for one, else ``_fake_model``'s text
    (JSON from the schema under ``output_config.format``), with the thinking block, citations and cache usage."""
    generation: FakeReply | None = None
    call: ToolCall | None = None
    if parsed.tools:
        call_id = "toolu_bdrk_" + hashlib.blake2b(request_id.encode(), digest_size=12).hexdigest()
        planned = plan_tool_use(parsed, call_id=call_id)
        if planned is not None:
            generation, call = planned
    if generation is None:
        generation = fake_reply(
            input_text=parsed.input_text,
            last_user_text=parsed.last_user_text,
            max_tokens=parsed.max_tokens,
            stop_sequences=parsed.stop_sequences,
            seed=options.seed,
            reply_tokens=options.reply_tokens,
            text_completion=parsed.api is Api.TEXT_COMPLETIONS,
        )
        if plan.features.output_schema is not None:
            generation = _structured(parsed, plan.features.output_schema, generation.rng_seed)
    if plan is _NO_PLAN:
        return generation, call, NO_ADDITIONS
    features = plan.features
    thinking = thinking_block(parsed.last_user_text) if features.thinking else None
    if thinking is not None:
        extra_tokens = count_tokens(thinking["thinking"])
        generation = attrs.evolve(generation, output_tokens=generation.output_tokens + extra_tokens)
    add = Additions(thinking=thinking, citations=tuple(citations(features)), cache=plan.cache)
    return generation, call, add


def _input_tokens(parsed: ParsedRequest, plan: Plan) -> int:
    total = count_tokens(parsed.input_text)
    return total if plan.cache is None else split_input(total, plan.cache)


def _reservation(
    options: EmulatorOptions, parsed: ParsedRequest, plan: Plan, input_tokens: int, output_tokens: int
) -> Reservation | None:
    """What a tokens-per-minute quota charges (``_quota``): input and cache writes, not cache reads.

    None without such a quota, so that requests pay for it only when it is on."""
    if options.quota.tokens_per_minute is None:
        return None
    charged = input_tokens + (plan.cache.write if plan.cache is not None else 0)
    return Reservation(charged + parsed.max_tokens, charged + output_tokens)


def _invoke(call: Call) -> Reply:
    """InvokeModel and InvokeModelWithResponseStream: the fake model's reply for a valid body and headers."""
    assert call.model_id is not None
    request_options = parse_request_options(call.headers)
    if isinstance(request_options, ServiceError):
        return error_reply(request_options, call.request_id)
    model = _resolve(call.model_id, Surface.INVOKE)
    if isinstance(model, ServiceError):
        return error_reply(model, call.request_id)
    parsed_document = _parse(call.body, model)
    if isinstance(parsed_document, ServiceError):
        return error_reply(parsed_document, call.request_id)
    parsed, document = parsed_document
    options = call.options
    text_completion = parsed.api is Api.TEXT_COMPLETIONS
    plan = _NO_PLAN
    if not text_completion:
        checked = _plan(call, document, model)
        if isinstance(checked, ServiceError):
            return error_reply(checked, call.request_id)
        plan = checked
    generation, tool_call, add = _generate(parsed, options, call.request_id, plan)
    input_tokens = _input_tokens(parsed, plan)
    faults = options.faults
    message_id = "msg_bdrk_" + call.request_id.replace("-", "")[:24]
    name = anthropic_model_name(model)
    extra, headers = body_fields(request_options), response_headers(request_options)
    if not call.streaming:
        body = (
            text_body(generation, extra)
            if text_completion
            else messages_body(
                generation,
                message_id=message_id,
                model=name,
                input_tokens=input_tokens,
                call=tool_call,
                extra=extra,
                add=add,
            )
        )
        return ok_reply(
            body,
            request_id=call.request_id,
            input_tokens=input_tokens,
            output_tokens=generation.output_tokens,
            latency_ms=round(faults.latency * 1000),
            headers=headers,
            cache=add.cache,
            reservation=_reservation(options, parsed, plan, input_tokens, generation.output_tokens),
        )
    pieces = split_chunks(generation.text, options.chunk_tokens, generation.rng_seed)
    first_byte_ms = round((faults.latency + faults.time_to_first_byte) * 1000)
    chunk_delay_ms = faults.chunk_delay * 1000
    pad = padder(generation.rng_seed) if options.stream_padding else NO_PADDING
    if text_completion:
        frames = text_stream_frames(
            generation,
            pieces,
            input_tokens=input_tokens,
            first_byte_ms=first_byte_ms,
            chunk_delay_ms=chunk_delay_ms,
            extra=extra,
            pad=pad,
        )
    else:
        frames = messages_stream_frames(
            generation,
            pieces,
            message_id=message_id,
            model=name,
            input_tokens=input_tokens,
            first_byte_ms=first_byte_ms,
            chunk_delay_ms=chunk_delay_ms,
            call=tool_call,
            extra=extra,
            add=add,
            pad=pad,
        )
    reply = stream_reply(frames, request_id=call.request_id, headers=headers)
    reservation = _reservation(options, parsed, plan, input_tokens, generation.output_tokens)
    return reply if reservation is None else attrs.evolve(reply, reservation=reservation)


def _count(call: Call) -> Reply:
    """CountTokens: the ``input_tokens`` InvokeModel would report for the body (or a Converse request's count)."""
    assert call.model_id is not None
    model = _resolve(call.model_id, Surface.INVOKE)
    if isinstance(model, ServiceError):
        return error_reply(model, call.request_id)
    request = count_tokens_op.parse_count_tokens_request(call.body)
    if isinstance(request, ServiceError):
        return error_reply(request, call.request_id)
    if isinstance(request, count_tokens_op.ConverseInput):
        return count_tokens_op.count_reply(count_tokens(request.text), request_id=call.request_id)
    parsed = _parse(request.body, model)
    if isinstance(parsed, ServiceError):
        return error_reply(parsed, call.request_id)
    return count_tokens_op.count_reply(count_tokens(parsed[0].input_text), request_id=call.request_id)


def _messages(call: Call) -> Reply:
    """``POST /anthropic/v1/messages``: the fake model's reply as an Anthropic Message or as SSE."""
    render = messages_endpoint.error_reply
    version = None
    for header, value in call.headers:
        if header == b"anthropic-version":
            version = value.decode("latin-1")
    document = call.document
    try:
        check_api_version_header(version)
    except BodyError as exc:
        return render(_validation(exc.message), call.request_id)
    if isinstance(document, ServiceError):
        return render(document, call.request_id)
    assert document is not None
    if "model" not in document:
        return render(_validation("model: Field required"), call.request_id)
    if call.model_id is None:
        return render(_validation("model: Input should be a valid string"), call.request_id)
    model = _resolve(call.model_id, Surface.MESSAGES_ENDPOINT)
    if isinstance(model, ServiceError):
        return render(model, call.request_id)
    try:
        parsed = parse_messages_endpoint_body(document, model)
    except BodyError as exc:
        return render(_validation(exc.message), call.request_id)
    plan = _plan(call, document, model)
    if isinstance(plan, ServiceError):
        return render(plan, call.request_id)
    options = call.options
    generation, tool_call, add = _generate(parsed, options, call.request_id, plan)
    input_tokens = _input_tokens(parsed, plan)
    message_id = "msg_bdrk_" + call.request_id.replace("-", "")[:24]
    name = messages_endpoint.response_model_name(model)
    if not call.streaming:
        body = messages_endpoint.message_body(
            generation, message_id=message_id, model=name, input_tokens=input_tokens, call=tool_call, add=add
        )
        reply = messages_endpoint.json_reply(body, request_id=call.request_id)
    else:
        pieces = split_chunks(generation.text, options.chunk_tokens, generation.rng_seed)
        events = messages_endpoint.sse_events(
            generation, pieces, message_id=message_id, model=name, input_tokens=input_tokens, call=tool_call, add=add
        )
        reply = messages_endpoint.sse_reply(events, request_id=call.request_id)
    reservation = _reservation(options, parsed, plan, input_tokens, generation.output_tokens)
    return reply if reservation is None else attrs.evolve(reply, reservation=reservation)


#: What Bedrock answers (400 ValidationException) when Converse is called with a model it does not serve
#: that way (imported, speech or rerank models).
CONVERSE_UNSUPPORTED = (
    "This action doesn't support the model that you provided. Try again with a supported text or chat model."
)


def _converse(call: Call) -> Reply:
    """Converse and ConverseStream, which the emulator does not serve: Bedrock's own refusal of the operation.

    A routed, authenticated ValidationException (not a 404 for an unknown path) is what an SDK models: boto3
    raises ``client.exceptions.ValidationException``, and code that falls back to InvokeModel on it works.
    """
    return error_reply(_validation(CONVERSE_UNSUPPORTED), call.request_id)


#: ``/model/{modelId}/<tail>`` operations, keyed by tail. Converse and ConverseStream are routed and
#: authenticated, then refused as Bedrock refuses them for a model without Converse support.
MODEL_ROUTES: Mapping[str, Route] = {
    "invoke": Route(operation="InvokeModel", method="POST", streaming=False, handler=_invoke),
    "invoke-with-response-stream": Route(
        operation="InvokeModelWithResponseStream", method="POST", streaming=True, handler=_invoke
    ),
    "count-tokens": Route(operation=count_tokens_op.OPERATION, method="POST", streaming=False, handler=_count),
    "converse": Route(operation="Converse", method="POST", streaming=False, handler=_converse),
    "converse-stream": Route(operation="ConverseStream", method="POST", streaming=False, handler=_converse),
}
#: Exact-path operations: Bedrock's Messages-API surface, whose body says whether it streams.
PATH_ROUTES: Mapping[str, Route] = {
    messages_endpoint.PATH: Route(
        operation=messages_endpoint.OPERATION,
        method="POST",
        streaming=False,
        handler=_messages,
        surface=Surface.MESSAGES_ENDPOINT,
        peek=messages_endpoint.peek_body,
        render_error=messages_endpoint.error_reply,
        apply_fault=messages_endpoint.apply_fault,
    )
}


def _content_type_ok(value: bytes | None) -> bool:
    # boto3 sends no Content-Type when ``contentType`` is omitted, and AWS's own examples omit it.
    if value is None:
        return True
    media_type = value.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


def authenticate(
    options: EmulatorOptions,
    *,
    method: str,
    target: str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    signing_names: frozenset[str],
    accept_x_api_key: bool = False,
) -> ServiceError | None:
    """Check a request against the emulator's one set of credentials (every route authenticates alike)."""
    return verify_request(
        method=method,
        target=target,
        headers=headers,
        body=body,
        region=options.region,
        access_key=options.access_key,
        secret_key=options.secret_key,
        session_token=options.session_token,
        api_key=options.api_key,
        now=options.clock(),
        signing_names=signing_names,
        accept_x_api_key=accept_x_api_key,
    )


class Dispatched(NamedTuple):
    """A reply, with what the request log needs to know about the request.

    ``authenticated`` is False for a request refused before its credentials were accepted (unknown
    path, bad signature): the log keeps no body for those, so unauthenticated uploads cost no memory.
    """

    reply: Reply
    operation: str | None = None
    model_id: str | None = None
    authenticated: bool = False
    #: A tokens-per-minute reservation to settle once the reply is sent (``Dispatcher.settle``).
    reservation: Reservation | None = None


class Dispatcher:
    """Runs the pipeline of the module docstring; one per emulator, shared by its connections."""

    def __init__(self, injector: FaultInjector) -> None:
        self._injector = injector
        #: The emulator's prompt cache, shared by its connections (``_cache``).
        self.cache = PromptCache()
        #: The quota's buckets (``_quota``), shared by its connections.
        self.quota = QuotaState()

    def dispatch(
        self, options: EmulatorOptions, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> Dispatched:
        """The reply to one request (``headers`` as h11 gives them: lower-case names)."""
        request_id = new_request_id()
        path = target.split("?", 1)[0]
        route = PATH_ROUTES.get(path)
        segment: str | None = None
        if route is None and path.startswith(_MODEL_PREFIX):
            segment, _, tail = path[len(_MODEL_PREFIX) :].partition("/")
            route = MODEL_ROUTES.get(tail) if segment else None
        if route is None or route.method != method:
            message = f"Unknown operation: {method} {path}"
            return Dispatched(error_reply(ServiceError("UnknownOperationException", message), request_id))
        model_id = urllib.parse.unquote(segment) if segment is not None else None
        streaming, document = route.streaming, None
        if route.peek is not None:
            peeked = route.peek(body)
            model_id, streaming, document = peeked.model_id, peeked.streaming, peeked.document
        call = Call(
            options=options,
            route=route,
            model_id=model_id,
            body=body,
            request_id=request_id,
            streaming=streaming,
            headers=headers,
            document=document,
            cache=self.cache,
        )
        if options.verify_signatures:
            on_messages = route.surface is Surface.MESSAGES_ENDPOINT
            failure = authenticate(
                options,
                method=method,
                target=target,
                headers=headers,
                body=body,
                signing_names=options.messages_signing_names if on_messages else INVOKE_SIGNING_NAMES,
                accept_x_api_key=on_messages,
            )
            if failure is not None:
                return Dispatched(route.render_error(failure, request_id), route.operation, call.model_id)
        reply = self._answer(call)
        reservation = None
        if options.quota.enabled and reply.status == 200:
            reservation = reply.reservation
            if not self.quota.admit(options.quota, reservation):
                # The quota's bucket is empty: the same 429 as an injected throttle, logged as "quota".
                throttle = route.render_error(HTTP_ERRORS["throttle"], request_id)
                return Dispatched(attrs.evolve(throttle, fault="quota"), route.operation, call.model_id, True)
        faults = options.faults
        if faults.latency or faults.time_to_first_byte or faults.chunk_delay:
            reply = attrs.evolve(
                reply,
                delay=faults.latency,
                first_part_delay=faults.time_to_first_byte if reply.chunked else 0.0,
                part_delay=faults.chunk_delay if reply.chunked else 0.0,
            )
        return Dispatched(reply, route.operation, call.model_id, authenticated=True, reservation=reservation)

    def settle(self, options: EmulatorOptions, reservation: Reservation) -> None:
        """A reply holding a token reservation has been sent (or abandoned): settle it to the tokens used."""
        self.quota.settle(options.quota, reservation)

    def _answer(self, call: Call) -> Reply:
        """Steps 3 to 6 of the pipeline, for an authenticated request."""
        route = call.route
        content_type = None
        for name, value in call.headers:
            if name == b"content-type":
                content_type = value
        if not _content_type_ok(content_type):
            shown = content_type.decode("latin-1") if content_type is not None else "(none)"
            message = f"The provided content type {shown} is not supported; you must specify application/json."
            return route.render_error(_validation(message), call.request_id)
        fault = self._injector.next_fault(call.options.faults, streaming=call.streaming)
        if fault is None:
            return route.handler(call)
        if fault.kind is FaultKind.HTTP_ERROR and fault.error is not None:
            return attrs.evolve(route.render_error(fault.error, call.request_id), fault=fault.name)
        reply = route.handler(attrs.evolve(call, fault=fault))
        if reply.status == 200:
            return route.apply_fault(reply, fault)
        return attrs.evolve(reply, fault=fault.name)
