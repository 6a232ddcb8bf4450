"""Routing and the request pipeline: raw request in, :class:`~._responses.Reply` out, no I/O.

Every request goes through the same steps, each of which may answer early:

1. **Route** on the raw path (before any percent-decoding, so ``%2F`` inside an ARN stays inside the
   model segment): a table of ``/model/{id}/<tail>`` operations plus a table of exact paths. Unknown
   path or wrong method: 404 UnknownOperationException (UNVERIFIED: what Bedrock's front end answers).
2. **Authenticate** (``_auth``), unless ``verify_signatures`` is off.
3. **Content type**, when sent, must be ``application/json`` (boto3 sends none when ``contentType`` is
   omitted, which the service accepts): else 400 ValidationException (UNVERIFIED wording).
4. **Fault**: the scripted queue's head, else the seeded rates (``_faults``). An HTTP-error fault
   answers now; the others change the reply built in step 6.
5. **Model and body**: the model id is percent-decoded once and resolved with the registry; unknown
   -> 404 ResourceNotFoundException, a model served only on ``/anthropic/v1/messages`` -> 400
   ValidationException (UNVERIFIED); then JSON and the API's rules (``_validation``) -> 400.
6. **Answer** with the fake model's reply (``_fake_model``), as JSON or as event-stream frames.

To add the ``/anthropic/v1/messages`` surface later, put a :class:`Route` with its own handler into
:data:`PATH_ROUTES`; steps 1-4 are shared.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from .._errors import InvalidRequestError
from .._models import ModelApi, ResolvedModel, Surface, resolve_model
from ._auth import verify_request
from ._fake_model import count_tokens, fake_reply, split_chunks
from ._faults import Fault, FaultInjector, FaultKind, ServiceError
from ._options import EmulatorOptions
from ._responses import (
    Reply,
    apply_fault,
    error_reply,
    messages_body,
    messages_stream_frames,
    new_request_id,
    ok_reply,
    stream_reply,
    text_body,
    text_stream_frames,
)
from ._validation import BodyError, ParsedRequest, anthropic_model_name, parse_body

__all__ = ["MODEL_ROUTES", "PATH_ROUTES", "Call", "Dispatched", "Dispatcher", "Route"]

_MODEL_PREFIX = "/model/"
#: ARN kinds the registry cannot resolve to a base model but the emulator serves (as Messages models).
_OPAQUE_ARN_KINDS = frozenset({"application-inference-profile", "provisioned-model"})


def _validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", 400, message)


@attrs.frozen
class Call:
    """One routed, authenticated request, as a handler sees it."""

    options: EmulatorOptions
    route: Route
    model_id: str | None  # the percent-decoded ``{modelId}`` path segment, for model routes
    body: bytes
    request_id: str
    fault: Fault | None


@attrs.frozen
class Route:
    """One operation: its name, HTTP method, whether it streams, and the handler that answers it."""

    operation: str
    method: str
    streaming: bool
    handler: Callable[[Call], Reply]


def _resolve(model_id: str) -> ResolvedModel | ServiceError:
    try:
        model = resolve_model(model_id)
    except InvalidRequestError:
        return _validation(
            f"1 validation error detected: Value '{model_id}' at 'modelId' failed to satisfy constraint: Member "
            "must satisfy the model identifier pattern (1 to 2048 characters)"
        )
    if model.info is None and model.arn_kind not in _OPAQUE_ARN_KINDS:
        return ServiceError(
            "ResourceNotFoundException",
            404,
            "Could not resolve the foundation model from the provided model identifier.",
        )
    if model.info is not None and Surface.INVOKE not in model.info.surfaces:
        return _validation(
            f"The model {model_id} is served on the Messages API endpoint (/anthropic/v1/messages), not on InvokeModel."
        )
    return model


def _parse(body: bytes, model: ResolvedModel) -> ParsedRequest | ServiceError:
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
        return parse_body(document, model)
    except BodyError as exc:
        return _validation(exc.message)


def _invoke(call: Call) -> Reply:
    """InvokeModel and InvokeModelWithResponseStream: the fake model's reply for a valid body."""
    assert call.model_id is not None
    model = _resolve(call.model_id)
    if isinstance(model, ServiceError):
        return error_reply(model, call.request_id)
    parsed = _parse(call.body, model)
    if isinstance(parsed, ServiceError):
        return error_reply(parsed, call.request_id)
    options = call.options
    text_completion = parsed.api is ModelApi.TEXT_COMPLETIONS
    generation = fake_reply(
        input_text=parsed.input_text,
        last_user_text=parsed.last_user_text,
        max_tokens=parsed.max_tokens,
        stop_sequences=parsed.stop_sequences,
        seed=options.seed,
        reply_tokens=options.reply_tokens,
        text_completion=text_completion,
    )
    input_tokens = count_tokens(parsed.input_text)
    faults = options.faults
    first_byte_ms = round((faults.latency + faults.time_to_first_byte) * 1000)
    message_id = "msg_bdrk_" + call.request_id.replace("-", "")[:24]
    name = anthropic_model_name(model)
    if not call.route.streaming:
        body = (
            text_body(generation)
            if text_completion
            else messages_body(generation, message_id=message_id, model=name, input_tokens=input_tokens)
        )
        return ok_reply(
            body,
            request_id=call.request_id,
            input_tokens=input_tokens,
            output_tokens=generation.output_tokens,
            latency_ms=round(faults.latency * 1000),
        )
    # The metrics are planned, not measured: deterministic, and what the delays are set to produce.
    pieces = split_chunks(generation.text, options.chunk_tokens, generation.rng_seed)
    frame_count = len(pieces) + (1 if text_completion else 5)
    latency_ms = first_byte_ms + round(faults.chunk_delay * 1000 * (frame_count - 1))
    if text_completion:
        frames = text_stream_frames(
            generation, pieces, input_tokens=input_tokens, latency_ms=latency_ms, first_byte_ms=first_byte_ms
        )
    else:
        frames = messages_stream_frames(
            generation,
            pieces,
            message_id=message_id,
            model=name,
            input_tokens=input_tokens,
            latency_ms=latency_ms,
            first_byte_ms=first_byte_ms,
        )
    return stream_reply(frames, request_id=call.request_id)


#: ``/model/{modelId}/<tail>`` operations, keyed by tail. (Converse, ConverseStream and CountTokens are
#: not emulated: they answer like unknown paths.)
MODEL_ROUTES: Mapping[str, Route] = {
    "invoke": Route("InvokeModel", "POST", False, _invoke),
    "invoke-with-response-stream": Route("InvokeModelWithResponseStream", "POST", True, _invoke),
}
#: Exact-path operations (the place for ``/anthropic/v1/messages``).
PATH_ROUTES: Mapping[str, Route] = {}


def _content_type_ok(value: bytes | None) -> bool:
    # boto3 sends no Content-Type when ``contentType`` is omitted, and AWS's own examples omit it.
    if value is None:
        return True
    media_type = value.split(b";", 1)[0].strip().lower()
    return media_type == b"application/json"


class Dispatched(NamedTuple):
    """A reply, with what the request log needs to know about the request."""

    reply: Reply
    operation: str | None = None
    model_id: str | None = None


class Dispatcher:
    """Runs the pipeline of the module docstring; one per emulator, shared by its connections."""

    def __init__(self, injector: FaultInjector) -> None:
        self._injector = injector

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
            return Dispatched(error_reply(ServiceError("UnknownOperationException", 404, message), request_id))
        model_id = urllib.parse.unquote(segment) if segment is not None else None
        if options.verify_signatures:
            failure = verify_request(
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
            )
            if failure is not None:
                return Dispatched(error_reply(failure, request_id), route.operation, model_id)
        reply = self._answer(options, route, model_id, headers, body, request_id)
        faults = options.faults
        if faults.latency or faults.time_to_first_byte or faults.chunk_delay:
            reply = attrs.evolve(
                reply,
                delay=faults.latency,
                first_part_delay=faults.time_to_first_byte if reply.chunked else 0.0,
                part_delay=faults.chunk_delay if reply.chunked else 0.0,
            )
        return Dispatched(reply, route.operation, model_id)

    def _answer(
        self,
        options: EmulatorOptions,
        route: Route,
        model_id: str | None,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        request_id: str,
    ) -> Reply:
        """Steps 3 to 6 of the pipeline, for an authenticated request."""
        content_type = None
        for name, value in headers:
            if name == b"content-type":
                content_type = value
        if not _content_type_ok(content_type):
            shown = content_type.decode("latin-1") if content_type is not None else "(none)"
            message = f"The provided content type {shown} is not supported; you must specify application/json."
            return error_reply(_validation(message), request_id)
        fault = self._injector.next_fault(options.faults, streaming=route.streaming)
        if fault is None:
            return route.handler(Call(options, route, model_id, body, request_id, None))
        if fault.kind is FaultKind.HTTP_ERROR and fault.error is not None:
            return attrs.evolve(error_reply(fault.error, request_id), fault=fault.name)
        reply = route.handler(Call(options, route, model_id, body, request_id, fault))
        if reply.status == 200:
            return apply_fault(reply, fault)
        return attrs.evolve(reply, fault=fault.name)
