"""The emulator's quota: token buckets on a virtual clock, and throttles over the wire only when a bucket is empty."""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs
import botocore.exceptions
import pytest
from emulator_testing import MESSAGES_BODY, boto3_runtime_client, post_signed

from bedrock_chat.emulator import BedrockEmulator, EmulatorOptions, Faults, Quota
from bedrock_chat.emulator._cli import add_emulator_arguments, emulator_options_from_args
from bedrock_chat.emulator._quota import QuotaState, Reservation, TokenBucket

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"


class Clock:
    """A virtual monotonic clock: time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------------------------- the bucket


def test_bucket_starts_full_and_refuses_only_when_empty() -> None:
    """A bucket of 4 pays four units at once, refuses the fifth, and refills at its rate."""
    bucket = TokenBucket(rate=2.0, capacity=4.0, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(5)] == [True, True, True, True, False]
    assert bucket.take(1, 0.49) is False  # 0.98 units refilled: not yet one
    assert bucket.take(1, 0.5) is True
    assert bucket.level(100.0) == 4.0  # never above capacity


def test_bucket_runs_an_oversized_amount_alone_and_goes_into_debt() -> None:
    """An amount above the capacity is paid only from a full bucket, which then owes the difference."""
    bucket = TokenBucket(rate=10.0, capacity=10.0, now=0.0)
    assert bucket.take(25, 0.0) is True
    assert bucket.level(0.0) == -15.0
    assert bucket.take(1, 1.0) is False  # -5: still in debt
    assert bucket.take(1, 1.6) is True


def test_bucket_give_back_is_capped() -> None:
    """Settled reservations refill, but never above capacity."""
    bucket = TokenBucket(rate=1.0, capacity=10.0, now=0.0)
    assert bucket.take(8, 0.0)
    bucket.give_back(5, 0.0)
    assert bucket.level(0.0) == 7.0
    bucket.give_back(50, 0.0)
    assert bucket.level(0.0) == 10.0


def test_state_charges_both_buckets_or_neither() -> None:
    """A request the token bucket refuses takes no request either (and the other way round)."""
    clock = Clock()
    quota = Quota(requests_per_minute=120, tokens_per_minute=600, burst_seconds=1.0, clock=clock)  # 2 req, 10 tok
    state = QuotaState()
    assert state.admit(quota, Reservation(reserved=8, used=3))
    assert not state.admit(quota, Reservation(reserved=8, used=3))  # 2 tokens left
    assert state.admit(quota, Reservation(reserved=2, used=2))  # the refused one took no request
    assert not state.admit(quota, Reservation(reserved=0, used=0))  # both requests spent
    state.settle(quota, Reservation(reserved=8, used=3))  # 5 tokens back
    clock.now = 0.5  # one request refilled
    assert state.admit(quota, Reservation(reserved=5, used=5))


def test_state_rebuilds_full_buckets_when_the_quota_changes() -> None:
    """New quota settings start with full buckets; a reset does too."""
    clock = Clock()
    state = QuotaState()
    quota = Quota(requests_per_minute=60, burst_seconds=1.0, clock=clock)
    assert state.admit(quota, None)
    assert not state.admit(quota, None)
    other = attrs.evolve(quota, requests_per_minute=61)
    assert state.admit(other, None)
    state.reset()
    assert state.admit(other, None)


def test_rate_over_a_simulated_minute_is_the_quota() -> None:
    """Offered 10 requests/s for 60 s against 120/min with a 1 s burst: 2 for the burst plus 2/s refill."""
    clock = Clock()
    quota = Quota(requests_per_minute=120, burst_seconds=1.0, clock=clock)
    state = QuotaState()
    admitted = 0
    for step in range(600):
        clock.now = step / 10
        admitted += state.admit(quota, None)
    assert admitted == 2 + 119  # the burst, then one every 0.5 s from 0.5 to 59.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests_per_minute": 0},
        {"requests_per_minute": -5},
        {"tokens_per_minute": float("inf")},
        {"tokens_per_minute": True},
        {"burst_seconds": 0},
        {"burst_seconds": float("nan")},
    ],
)
def test_bad_quotas_are_refused(kwargs: dict[str, Any]) -> None:
    """A quota of zero, a negative or infinite rate, or a bad burst is a ValueError naming the field."""
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        Quota(**kwargs)


# ---------------------------------------------------------------------------------------------- over the wire


@pytest.fixture
def clock() -> Clock:
    """The quota's clock for one test."""
    return Clock()


def _quota(emu: BedrockEmulator, clock: Clock, **kwargs: Any) -> None:
    emu.options = attrs.evolve(emu.options, quota=Quota(clock=clock, **kwargs))


def _invoke(emu: BedrockEmulator, body: dict[str, Any] | None = None, *, stream: bool = False) -> Any:
    operation = "invoke-with-response-stream" if stream else "invoke"
    return post_signed(emu, f"/model/{HAIKU}/{operation}", json.dumps(body or MESSAGES_BODY).encode())


@pytest.mark.parametrize("stream", [False, True])
def test_requests_quota_throttles_only_when_the_bucket_is_empty(
    bedrock_emulator: BedrockEmulator, clock: Clock, stream: bool
) -> None:
    """Three requests of burst pass, the fourth is Bedrock's 429 ThrottlingException, and refill lets one more in."""
    _quota(bedrock_emulator, clock, requests_per_minute=60, burst_seconds=3.0)
    statuses = [_invoke(bedrock_emulator, stream=stream).status for _ in range(3)]
    throttled = _invoke(bedrock_emulator, stream=stream)
    assert statuses == [200, 200, 200]
    assert throttled.status == 429
    assert throttled.error_code == "ThrottlingException"
    assert throttled.json() == {"message": "Too many requests, please wait before trying again."}
    assert bedrock_emulator.requests[-1].fault == "quota"
    clock.now = 1.0
    assert _invoke(bedrock_emulator, stream=stream).status == 200
    assert _invoke(bedrock_emulator, stream=stream).status == 429


def test_tokens_quota_reserves_max_tokens_and_settles_to_the_output(
    bedrock_emulator: BedrockEmulator, clock: Clock
) -> None:
    """Input + max_tokens is reserved at the start; once the answer is sent the unused part comes back."""
    body = {**MESSAGES_BODY, "max_tokens": 400}
    first = _invoke(bedrock_emulator, body)
    assert first.status == 200
    used = int(first.headers["x-amzn-bedrock-input-token-count"]) + int(
        first.headers["x-amzn-bedrock-output-token-count"]
    )
    reserved = int(first.headers["x-amzn-bedrock-input-token-count"]) + 400
    assert used < reserved
    # Room for one reservation plus one settled request: the second fits only because the first was
    # settled (unsettled, it would hold `reserved`, leaving `used` < `reserved`); the third does not fit.
    _quota(bedrock_emulator, clock, tokens_per_minute=reserved + used, burst_seconds=60.0)
    assert [_invoke(bedrock_emulator, body).status for _ in range(3)] == [200, 200, 429]
    clock.now = 60.0 * (reserved - (reserved - used)) / (reserved + used)  # refilled by `used` tokens
    assert _invoke(bedrock_emulator, body).status == 200


def test_boto3_sees_the_quota_as_a_throttling_exception(bedrock_emulator: BedrockEmulator, clock: Clock) -> None:
    """botocore parses the quota's 429 as ThrottlingException, as it would Bedrock's."""
    _quota(bedrock_emulator, clock, requests_per_minute=60, burst_seconds=1.0)
    with boto3_runtime_client(bedrock_emulator) as client:
        client.invoke_model(modelId=HAIKU, body=json.dumps(MESSAGES_BODY))
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            client.invoke_model(modelId=HAIKU, body=json.dumps(MESSAGES_BODY))
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def test_messages_endpoint_is_throttled_in_its_own_error_shape(bedrock_emulator: BedrockEmulator, clock: Clock) -> None:
    """On /anthropic/v1/messages the quota's throttle is that surface's 429."""
    _quota(bedrock_emulator, clock, requests_per_minute=60, burst_seconds=1.0)
    body = {"model": "anthropic.claude-opus-4-7", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"anthropic-version": "2023-06-01"}
    sent = [
        post_signed(bedrock_emulator, "/anthropic/v1/messages", json.dumps(body).encode(), headers=headers)
        for _ in range(2)
    ]
    assert [answer.status for answer in sent] == [200, 429]
    assert bedrock_emulator.requests[-1].fault == "quota"


def test_random_throttles_and_errors_cost_no_quota(bedrock_emulator: BedrockEmulator, clock: Clock) -> None:
    """Load-independent throttles (the throttle rate) and bad requests are refused before the quota charges."""
    bedrock_emulator.options = attrs.evolve(
        bedrock_emulator.options,
        quota=Quota(requests_per_minute=60, burst_seconds=1.0, clock=clock),
        faults=Faults(throttle_rate=1.0),
    )
    assert [_invoke(bedrock_emulator).status for _ in range(3)] == [429, 429, 429]
    assert {request.fault for request in bedrock_emulator.requests} == {"throttle"}
    bedrock_emulator.options = attrs.evolve(bedrock_emulator.options, faults=Faults())
    assert _invoke(bedrock_emulator, {"max_tokens": 5}).status == 400
    assert _invoke(bedrock_emulator).status == 200  # the one request of burst was still there


def test_no_quota_by_default(bedrock_emulator: BedrockEmulator) -> None:
    """Without a quota nothing is throttled, however many requests arrive at once."""
    assert {_invoke(bedrock_emulator).status for _ in range(20)} == {200}


def test_cli_flags_build_the_quota() -> None:
    """``--quota-rpm``, ``--quota-tpm`` and ``--quota-burst`` become EmulatorOptions.quota; 0 is refused."""
    parser = argparse.ArgumentParser()
    add_emulator_arguments(parser)
    options = emulator_options_from_args(
        parser.parse_args(["--quota-rpm", "2400", "--quota-tpm", "100000", "--quota-burst", "1"])
    )
    assert (options.quota.requests_per_minute, options.quota.tokens_per_minute, options.quota.burst_seconds) == (
        2400.0,
        100000.0,
        1.0,
    )
    assert emulator_options_from_args(parser.parse_args([])).quota == EmulatorOptions().quota
    assert not EmulatorOptions().quota.enabled
    with pytest.raises(SystemExit):
        parser.parse_args(["--quota-rpm", "0"])
