"""Configuration checked without I/O: regions, endpoint URLs and the retry policy."""

from __future__ import annotations

import math

import botocore.session
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import region_names

from bedrock_chat import ConfigurationError, RetryPolicy
from bedrock_chat._core.config import default_endpoint_url, region_from_env, validate_region
from bedrock_chat._http.endpoint import parse_endpoint

# ------------------------------------------------------------------------------------------------ regions


@pytest.mark.parametrize(
    "region",
    [
        "us-east-1",
        "us-west-2",
        "eu-central-2",
        "ap-southeast-4",
        "il-central-1",
        "us-gov-west-1",
        "cn-northwest-1",
        "us-iso-east-1",
        "us-isob-east-1",
        "eusc-de-east-1",
    ],
)
def test_real_regions_are_accepted(region: str) -> None:
    """Region names of every AWS partition pass."""
    assert validate_region(region) == region


@pytest.mark.parametrize(
    "region",
    [
        "us-east-1.evil.com/x",
        "us-east-1.amazonaws.com",
        "us-east-1/",
        "us-east-1\n",
        "us-east-1 ",
        " us-east-1",
        "us-east-1:443",
        "us-east-1#",
        "US-EAST-1",
        "us east 1",
        "useast1",
        "us-east",
        "../us-east-1",
        "",
    ],
)
def test_malformed_regions_are_refused(region: str) -> None:
    """Anything that could smuggle a host, path or header into the request is not a region."""
    with pytest.raises(ConfigurationError, match="not an AWS region"):
        validate_region(region)


@pytest.mark.parametrize("region", [None, 1, b"us-east-1"])
def test_non_string_regions_are_refused(region: object) -> None:
    """A region that is not a string is a ConfigurationError, not a TypeError."""
    with pytest.raises(ConfigurationError):
        validate_region(region)  # type: ignore[arg-type]


def test_region_error_names_its_source() -> None:
    """The message says where the bad region came from (argument, variable or profile)."""
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        validate_region("nope", source="AWS_REGION")


@given(region=region_names)
def test_region_shaped_names_are_accepted(region: str) -> None:
    """Every name shaped like an AWS region is accepted as it is."""
    assert validate_region(region) == region


@given(
    region=st.text(min_size=1, max_size=30).filter(
        lambda text: not set(text) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    )
)
def test_names_with_other_characters_are_refused(region: str) -> None:
    """A name containing anything but lowercase letters, digits and hyphens is refused."""
    with pytest.raises(ConfigurationError):
        validate_region(region)


def _botocore_regions() -> list[str]:
    loader = botocore.session.Session().get_component("data_loader")
    return sorted(
        region for partition in loader.load_data("endpoints")["partitions"] for region in partition["regions"]
    )


@pytest.mark.parametrize("region", _botocore_regions())
def test_default_endpoint_agrees_with_botocore(region: str) -> None:
    """For every region botocore knows, our default endpoint is the one botocore's resolver picks."""
    client = botocore.session.Session().create_client(
        "bedrock-runtime", region_name=region, aws_access_key_id="AKID", aws_secret_access_key="SECRET"
    )
    assert validate_region(region) == region
    assert default_endpoint_url(region) == client.meta.endpoint_url


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"AWS_REGION": "eu-west-1"}, ("eu-west-1", "AWS_REGION")),
        ({"AWS_DEFAULT_REGION": "eu-west-2"}, ("eu-west-2", "AWS_DEFAULT_REGION")),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-2"}, ("eu-west-1", "AWS_REGION")),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-2"}, ("eu-west-2", "AWS_DEFAULT_REGION")),
    ],
)
def test_region_from_env(environ: dict[str, str], expected: tuple[str, str] | None) -> None:
    """AWS_REGION wins over AWS_DEFAULT_REGION; empty values count as unset."""
    assert region_from_env(environ) == expected


def test_region_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping, the process environment is read."""
    assert region_from_env() is None
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    assert region_from_env() == ("ap-south-1", "AWS_DEFAULT_REGION")


# ---------------------------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://bedrock-runtime.us-east-1.amazonaws.com", "bedrock-runtime.us-east-1.amazonaws.com"),
        (
            "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/",
            "vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com",
        ),
        ("https://example.com:443", "example.com"),
        ("https://example.com:8443", "example.com:8443"),
        ("http://localhost:8080", "localhost:8080"),
        ("http://127.0.0.1:9", "127.0.0.1:9"),
        ("http://127.8.9.10", "127.8.9.10"),
        ("http://[::1]:8080", "[::1]:8080"),
    ],
)
def test_endpoints_accepted(url: str, host: str) -> None:
    """https anywhere and plain http on loopback are accepted; the signed Host omits default ports."""
    assert parse_endpoint(url).host == host


@pytest.mark.parametrize(
    "url",
    [
        "http://bedrock-runtime.us-east-1.amazonaws.com",
        "http://10.0.0.1:8080",
        "http://localhost.evil.com",
        "http://127.0.0.1.nip.io",
        "http://emulator.localhost:1234",  # a resolver may send *.localhost to DNS
        "http://LOCALHOST.:1234",
    ],
)
def test_plain_http_refused_off_loopback(url: str) -> None:
    """Plain http to a non-loopback host is refused (signed headers would travel in clear) unless opted in."""
    with pytest.raises(ConfigurationError, match="plain http"):
        parse_endpoint(url)
    assert parse_endpoint(url, allow_insecure_http=True).url == httpx.URL(url)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com",
        "example.com",
        "https://",
        "https://example.com/?a=1",
        "https://example.com/#frag",
        "https://user:pass@example.com",
        "not a url",
        "",
    ],
)
def test_malformed_endpoints_refused(url: str) -> None:
    """Endpoints without an http(s) scheme and host, or with a query, fragment or credentials, are refused."""
    with pytest.raises(ConfigurationError, match="endpoint_url"):
        parse_endpoint(url)


def test_non_string_endpoint_refused() -> None:
    """An endpoint that is not a string is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        parse_endpoint(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("base", ["https://example.com", "https://example.com/"])
def test_url_for_keeps_the_path_encoded(base: str) -> None:
    """Joining a wire path keeps ``%3A`` and ``%2F`` as sent (httpx must not decode them)."""
    url = parse_endpoint(base).url_for("/model/arn%3Aaws%2Fx%3A0/invoke")
    assert url.raw_path == b"/model/arn%3Aaws%2Fx%3A0/invoke"
    assert url.host == "example.com"


# ------------------------------------------------------------------------------------------- retry policy


def test_retry_policy_defaults() -> None:
    """Two retries (three attempts), botocore's base delays, a 20 s cap."""
    policy = RetryPolicy()
    assert (policy.max_retries, policy.base, policy.throttle_base, policy.cap) == (2, 0.1, 1.0, 20.0)


@pytest.mark.parametrize("max_retries", [-1, 1.5, True, "2", None])
def test_bad_max_retries_refused(max_retries: object) -> None:
    """max_retries must be an integer >= 0."""
    with pytest.raises(ConfigurationError, match="max_retries"):
        RetryPolicy(max_retries=max_retries)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["base", "throttle_base", "cap"])
@pytest.mark.parametrize("value", [-0.1, -math.inf, math.nan])
def test_bad_delays_refused(field: str, value: float) -> None:
    """Negative (and NaN) delays are refused when the policy is made, not when a retry sleeps."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


@given(
    retry=st.integers(0, 10_000),
    jitter=st.floats(0, 1, exclude_max=True),
    base=st.floats(0, 10),
    throttle_base=st.floats(0, 10),
    cap=st.floats(0, 100),
    throttled=st.booleans(),
)
def test_delay_is_full_jitter_exponential_and_capped(
    retry: int, jitter: float, base: float, throttle_base: float, cap: float, throttled: bool
) -> None:
    """The delay is ``jitter * min(cap, base * 2**retry)`` (throttles use throttle_base), never above the cap."""
    policy = RetryPolicy(base=base, throttle_base=throttle_base, cap=cap)
    delay = policy.delay(retry, throttled=throttled, jitter=jitter)
    scale = throttle_base if throttled else base
    ceiling = min(cap, scale * 2.0 ** min(retry, 64))
    assert 0 <= delay <= cap
    assert delay == pytest.approx(jitter * ceiling)


def test_delay_grows_exponentially() -> None:
    """At full jitter the delays double each retry until the cap."""
    policy = RetryPolicy(base=0.5, cap=3.0)
    assert [policy.delay(n, throttled=False, jitter=1.0) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert [policy.delay(n, throttled=True, jitter=1.0) for n in range(3)] == [1.0, 2.0, 3.0]


@given(retry_after=st.floats(0, 1000), jitter=st.floats(0, 1, exclude_max=True))
def test_retry_after_raises_the_delay_up_to_the_cap(retry_after: float, jitter: float) -> None:
    """A service retry-after hint is honoured, but never beyond the cap."""
    policy = RetryPolicy(base=0.1, cap=20.0)
    delay = policy.delay(0, throttled=False, jitter=jitter, retry_after=retry_after)
    assert delay == pytest.approx(max(jitter * 0.1, min(retry_after, 20.0)))


def test_zero_delays_for_tests() -> None:
    """A policy with zero bases never sleeps: the knob tests use to stay fast."""
    policy = RetryPolicy(base=0, throttle_base=0)
    assert {policy.delay(n, throttled=t, jitter=0.99) for n in range(5) for t in (True, False)} == {0.0}
