"""CPU per request of bedrock_chat against the aiohttp floor, interleaved in one process (a diagnostic).

Run: ``python benchmarks/cpu_ab.py [--quick] [--requests N] [--reps R] [--calls]``.

Why a second tool next to ``run.py``: on a shared machine two child processes measured a minute apart
see different load, so their CPU-per-request ratio moves by tens of percent. Here the floor (aiohttp
``ClientSession.post`` with a static ``Authorization`` header, ``json.loads``; the suite's contender)
and ``ChatCompletion.create`` (default transport) run in the same process, against the replay server,
in alternating blocks of N requests (which one goes first alternates too), so load that comes and goes
hits both; the ratio of each adjacent pair is the figure, and the median over the pairs is reported.
``--calls`` adds Python function calls per request (cProfile over one more block each): a count that
does not move with load. Full run: 2 x 9 blocks of 2,000 requests at c=32 and c=256, about 1-2 minutes
on 2 cores; ``--quick``: 2 x 3 blocks of 500, about 15 s. Nothing is saved: ``run.py`` owns the
published figures; this is what the CPU cuts were measured with.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _clients import INVOKE_MAX_TOKENS, MODEL, PROMPT, Target, _messages_body, _reply_text, _static_headers, _url
from _harness import _pin_self, choose_cpus, log, replay_server

OneCall = Callable[[], Awaitable[str]]


async def _block(one: OneCall, requests: int, concurrency: int) -> float:
    """Process CPU seconds for ``requests`` calls from ``concurrency`` workers."""
    counter = itertools.count()

    async def worker() -> None:
        while next(counter) < requests:
            await one()

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - started


async def _calls(one: OneCall, requests: int, concurrency: int) -> float:
    """Python function calls per request over one block (cProfile; load-independent)."""
    profile = cProfile.Profile()
    profile.enable()
    await _block(one, requests, concurrency)
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / requests  # type: ignore[attr-defined]


async def _measure(
    target: Target, concurrency: int, requests: int, reps: int, calls: bool, layers: bool
) -> dict[str, Any]:
    import aiohttp

    from bedrock_chat import AnthropicBedrock

    url, headers = _url(target, False), _static_headers(False)
    body = json.dumps(_messages_body(INVOKE_MAX_TOKENS)).encode()
    messages = [{"role": "user", "content": PROMPT}]
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session,
        AnthropicBedrock(
            access_key=target.access_key,
            secret_key=target.secret_key,
            region=target.region,
            endpoint_url=target.endpoint,
            max_connections=concurrency,
        ) as client,
    ):

        async def floor() -> str:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}")
                return _reply_text(json.loads(await response.read()))

        create = client.ChatCompletion.create

        async def ours() -> str:
            chat = await create(model=MODEL, messages=messages, max_tokens_to_sample=INVOKE_MAX_TOKENS)
            text = chat.completion
            assert isinstance(text, str)
            assert text
            return text

        contenders: dict[str, OneCall] = {"floor": floor, "bedrock_chat": ours}
        if layers:
            contenders.update(await _layers(client, messages))
        for one in contenders.values():  # warm-up: pools full, caches filled
            await one()
            await _block(one, 4 * concurrency, concurrency)
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        ratios = []
        for rep in range(reps):
            order = list(contenders) if rep % 2 == 0 else list(reversed(contenders))
            for name in order:
                cpu[name].append(await _block(contenders[name], requests, concurrency) / requests)
            ratios.append(cpu["bedrock_chat"][-1] / cpu["floor"][-1])
        result: dict[str, Any] = {
            "concurrency": concurrency,
            "us_per_request": {name: statistics.median(values) * 1e6 for name, values in cpu.items()},
            "ratio_median": statistics.median(ratios),
            "ratios": ratios,
            "layer_ratios": {
                name: statistics.median(a / b for a, b in zip(values, cpu["floor"], strict=True))
                for name, values in cpu.items()
            },
        }
        if calls:
            result["calls_per_request"] = {
                name: await _calls(one, requests, concurrency) for name, one in contenders.items()
            }
        return result


async def _layers(client: Any, messages: list[dict[str, Any]]) -> dict[str, OneCall]:
    """The request path cut into layers, each measured like a contender (``--layers``).

    ``post_and_read``: the default transport with headers signed once (what the HTTP layer costs);
    ``send``: the signing + retry loop with a request prepared once (+ signing, the attempt loop);
    ``bedrock_chat`` (the contender) adds preparing the request and parsing the answer.
    """
    invocation = client._prepare(
        messages=messages,
        model=MODEL,
        max_tokens_to_sample=INVOKE_MAX_TOKENS,
        max_tokens=None,
        stop_sequences=None,
        temperature=None,
        top_p=None,
        top_k=None,
        system=None,
        thinking=None,
        surface=None,
        stream=False,
    )
    transport = await client._ready()
    credentials = await transport.credentials.get()
    headers = transport.signed_headers(invocation.path, invocation.body, invocation.headers, credentials)
    url = transport._url_text(invocation.path)
    fast_post = transport._fast_post
    timeouts = transport._timeout_ext

    async def post_and_read() -> str:
        status, _, answer = await fast_post(url, headers, invocation.body, timeouts, max_body=1 << 20)
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        return _reply_text(json.loads(answer))

    async def send() -> str:
        raw = await transport.send(invocation.path, invocation.body, invocation.headers, stream=False)
        return _reply_text(json.loads(raw.body))

    return {"post_and_read": post_and_read, "send": send}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 blocks of 500 requests per concurrency")
    parser.add_argument("--requests", type=int, help="requests per block (default 2000; quick 500)")
    parser.add_argument("--reps", type=int, help="block pairs per concurrency (default 9; quick 3)")
    parser.add_argument("--concurrency", default="32,256", help="comma-separated (default 32,256)")
    parser.add_argument("--calls", action="store_true", help="also count Python function calls per request")
    parser.add_argument("--layers", action="store_true", help="also measure the request path's lower layers")
    args = parser.parse_args(argv)
    requests = args.requests or (500 if args.quick else 2000)
    reps = args.reps or (3 if args.quick else 9)
    server_cpu, client_cpu = choose_cpus()
    _pin_self(client_cpu)
    with replay_server(server_cpu) as info:
        target = Target(info.endpoint, info.region, info.access_key, info.secret_key, 0, info.pid)
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            log(f"c={concurrency}: {reps} pairs of {requests}-request blocks")
            result = asyncio.run(_measure(target, concurrency, requests, reps, args.calls, args.layers))
            per = result["us_per_request"]
            line = (
                f"c={concurrency}: floor {per['floor']:.0f} us, bedrock_chat {per['bedrock_chat']:.0f} us per request; "
                f"ratio median {result['ratio_median']:.3f} (pairs: {', '.join(f'{r:.2f}' for r in result['ratios'])})"
            )
            if args.layers:
                line += "; per layer (x floor): " + ", ".join(
                    f"{name} {per[name]:.0f} us ({ratio:.2f})" for name, ratio in result["layer_ratios"].items()
                )
            if args.calls:
                counts = result["calls_per_request"]
                line += f"; calls/request floor {counts['floor']:.0f}, bedrock_chat {counts['bedrock_chat']:.0f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
