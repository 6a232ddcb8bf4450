"""The same calls made with bedrock_chat and with boto3 + opentelemetry-instrumentation-botocore, compared
attribute by attribute; the findings feed the README's table (``benchmarks/otel_compare.py`` saves them to
``benchmarks/results/otel_compare.json``, and ``telemetry/test_telemetry_compare.py`` checks that file is current).

A cell is ``=`` (both recorded it, same value), ``ours``/``peer`` (only one side did), ``A | B`` (both,
different values: ours first), or empty (neither). Values that differ per call by nature are compared by
kind: request ids (UUIDs) become ``<uuid>``, the emulator's port ``<port>``, measured seconds ``<s>``.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from e2e_helpers import emulator_client
from telemetry_peer import (
    APP_PROFILE_ARN,
    MODEL,
    PARAMS,
    QUESTION,
    Capture,
    CapturedSpan,
    MemoryTelemetry,
    cached_system,
    instrumented_boto3,
    invoke_body,
)

from bedrock_chat import BedrockError
from bedrock_chat.emulator import BedrockEmulator


@attrs.frozen
class Scenario:
    """One call, made the same way by both clients (a cached one is made twice: the second reads the cache)."""

    label: str
    model_id: str
    stream: bool = False
    cached: bool = False
    fault: str | None = None
    #: Retry once after the fault (the call then succeeds), rather than fail.
    retried: bool = False


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("plain id", MODEL),
    Scenario("plain id, stream", MODEL, stream=True),
    Scenario("global. profile", f"global.{MODEL}"),
    Scenario("us. profile, stream", f"us.{MODEL}", stream=True),
    Scenario("app-profile ARN", APP_PROFILE_ARN),
    Scenario("app-profile ARN, stream", APP_PROFILE_ARN, stream=True),
    Scenario("cache read", MODEL, cached=True),
    Scenario("cache read, stream", MODEL, stream=True, cached=True),
    Scenario("throttled", MODEL, fault="throttle"),
    Scenario("throttled, retried", MODEL, fault="throttle", retried=True),
)
SPAN_NAME, SPAN_KIND, SPAN_STATUS, SPAN_EVENTS = "(span name)", "(span kind)", "(span status)", "(span events)"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Ours: what each attribute is measured in seconds (so compared by kind).
_SECONDS = frozenset({"gen_ai.response.time_to_first_chunk"})


# -- making the calls --------------------------------------------------------------------------------------


def peer_capture(emu: BedrockEmulator, scenario: Scenario) -> Capture:
    """The scenario's call through boto3 + the botocore instrumentation (a stream is iterated, not closed)."""
    emu.reset()
    with instrumented_boto3(emu, max_attempts=2 if scenario.retried else 1) as peer:
        if scenario.cached:
            peer.invoke(scenario.model_id, invoke_body(cached=True), stream=scenario.stream)
            peer.capture()
        if scenario.fault is not None and not scenario.retried:
            emu.enqueue_faults(scenario.fault)
            try:
                peer.invoke(scenario.model_id, invoke_body(cached=False), stream=scenario.stream)
            except peer.client.exceptions.ClientError:
                pass
            else:
                raise AssertionError(f"{scenario.label}: the fault did not fail the call")
        else:
            if scenario.fault is not None:
                emu.enqueue_faults(scenario.fault)
            peer.invoke(scenario.model_id, invoke_body(cached=scenario.cached), stream=scenario.stream)
        return peer.capture()


async def _ours_call(emu: BedrockEmulator, scenario: Scenario, telemetry: MemoryTelemetry) -> None:
    kwargs: dict[str, Any] = {"model": scenario.model_id, "messages": list(QUESTION), "surface": "invoke", **PARAMS}
    if scenario.cached:
        kwargs["system"] = cached_system()
    async with emulator_client(
        emu,
        max_retries=1 if scenario.retried else 0,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    ) as client:
        for attempt in range(2 if scenario.cached else 1):
            if attempt == 1:
                telemetry.capture()  # the first call wrote the cache; the second is the one compared
            if not scenario.stream:
                await client.ChatCompletion.create(**kwargs)
                continue
            async with await client.ChatCompletion.create(stream=True, **kwargs) as chunks:
                async for _ in chunks:
                    pass


def ours_capture(emu: BedrockEmulator, scenario: Scenario) -> Capture:
    """The scenario's call through bedrock_chat, with its own tracer and meter providers."""
    emu.reset()
    telemetry = MemoryTelemetry()
    try:
        if scenario.fault is not None:
            emu.enqueue_faults(scenario.fault)
        if scenario.fault is not None and not scenario.retried:
            try:
                asyncio.run(_ours_call(emu, scenario, telemetry))
            except BedrockError:
                pass
            else:
                raise AssertionError(f"{scenario.label}: the fault did not fail the call")
        else:
            asyncio.run(_ours_call(emu, scenario, telemetry))
        return telemetry.capture()
    finally:
        telemetry.shutdown()


# -- comparing ---------------------------------------------------------------------------------------------


def _normal(name: str, value: Any, port: int) -> Any:
    """A value as compared: lists as tuples, per-call values by kind."""
    if isinstance(value, list):
        value = tuple(value)
    if isinstance(value, str) and _UUID.match(value):
        return "<uuid>"
    if name == "server.port" and value == port:
        return "<port>"
    if name in _SECONDS and isinstance(value, float):
        return "<s>"
    return value


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _span_view(capture: Capture, port: int) -> dict[str, Any]:
    """The capture's one span as ``{attribute: value}`` plus its name, kind and status; {} with no span."""
    if not capture.spans:
        return {}
    if len(capture.spans) != 1:
        raise AssertionError(f"expected one span, got {[s.name for s in capture.spans]}")
    span: CapturedSpan = capture.spans[0]
    view = {name: _normal(name, value, port) for name, value in span.attributes.items()}
    view.update({SPAN_NAME: span.name, SPAN_KIND: span.kind, SPAN_STATUS: span.status})
    if span.events:
        view[SPAN_EVENTS] = span.events
    return view


def cell(ours: Mapping[str, Any], peer: Mapping[str, Any], name: str) -> str:
    """One table cell: ``=``, ``ours``, ``peer``, ``A | B`` or empty."""
    if name in ours and name in peer:
        return "=" if ours[name] == peer[name] else f"{_show(ours[name])} | {_show(peer[name])}"
    if name in ours:
        return "ours"
    return "peer" if name in peer else ""


def _metric_cell(ours: Capture, peer: Capture, metric: str) -> str:
    on_ours, on_peer = bool(ours.points_of(metric)), bool(peer.points_of(metric))
    return {(True, True): "both", (True, False): "ours", (False, True): "peer"}.get((on_ours, on_peer), "")


# -- the conventions, as the opentelemetry-semantic-conventions package publishes them ----------------------

_CONSTANT = re.compile(r'^[A-Z0-9_]+: Final = "(?P<name>[^"]+)"\n"""\n(?P<doc>.*?)"""', re.DOTALL | re.MULTILINE)
_REPLACED = re.compile(r"Replaced by `(?P<by>[^`]+)`")


def published_names() -> dict[str, str]:
    """Every attribute and metric name the semconv package defines -> its status there.

    ``current``, or ``deprecated: use X`` where the package says a name was replaced (its GenAI names all
    carry a note that they moved to the GenAI conventions repository; that is a move, not a deprecation).
    """
    found: dict[str, str] = {}
    for package in (
        "opentelemetry.semconv.attributes",
        "opentelemetry.semconv._incubating.attributes",
        "opentelemetry.semconv._incubating.metrics",
        "opentelemetry.semconv.metrics",
    ):
        module = importlib.import_module(package)
        for info in pkgutil.iter_modules(module.__path__):
            spec = importlib.util.find_spec(f"{package}.{info.name}")
            if spec is None or spec.origin is None:
                continue
            for match in _CONSTANT.finditer(Path(spec.origin).read_text()):
                replaced = _REPLACED.search(match["doc"])
                status = f"deprecated: use {replaced['by']}" if replaced else "current"
                found.setdefault(match["name"], status)
    return found


def convention(name: str, published: Mapping[str, str]) -> str:
    if name.startswith("("):
        return ""
    return published.get(name, "not in the conventions")


# -- the whole comparison --------------------------------------------------------------------------------


def compare(emu: BedrockEmulator, scenarios: Sequence[Scenario] = SCENARIOS) -> dict[str, Any]:
    """Run every scenario on both sides; the findings as a JSON-ready document (rows of cells, per scenario)."""
    views: list[tuple[dict[str, Any], dict[str, Any]]] = []
    captures: list[tuple[Capture, Capture]] = []
    for scenario in scenarios:
        ours, peer = ours_capture(emu, scenario), peer_capture(emu, scenario)
        captures.append((ours, peer))
        views.append((_span_view(ours, emu.port), _span_view(peer, emu.port)))
    published = published_names()
    pseudo = [SPAN_NAME, SPAN_KIND, SPAN_STATUS, SPAN_EVENTS]
    names = sorted({n for pair in views for view in pair for n in view} - set(pseudo))
    rows = [
        {
            "name": name,
            "convention": convention(name, published),
            "cells": [cell(ours, peer, name) for ours, peer in views],
        }
        for name in [*pseudo, *names]
    ]
    metrics = sorted({p.metric for pair in captures for capture in pair for p in capture.points})
    metric_rows = [
        {
            "name": metric,
            "convention": convention(metric, published),
            "cells": [_metric_cell(ours, peer, metric) for ours, peer in captures],
        }
        for metric in metrics
    ]
    return {
        "scenarios": [scenario.label for scenario in scenarios],
        "spans": rows,
        "metrics": metric_rows,
        "raw": [
            {"ours": {k: _show(v) for k, v in o.items()}, "peer": {k: _show(v) for k, v in p.items()}} for o, p in views
        ],
    }
