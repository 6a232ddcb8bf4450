"""Proxy selection (``bedrock_chat._core.proxy``), checked against its peers: botocore, urllib and urllib3.

The module promises to read the environment exactly as botocore does (which is urllib's
``getproxies_environment`` + ``proxy_bypass_environment`` on Linux), plus one addition (loopback endpoints
never use an environment proxy). The differential tests below run botocore's own code under the same
environment and compare. The four divergences the first run of these tests found (a blank-padded ``*``,
mixed-case names like ``Https_proxy``, IPv6-literal endpoints, a password with a ``/`` echoed in an
error) are fixed; each keeps a focused regression test (``test_regression_*``), and the strategies now
draw those inputs too.
"""

from __future__ import annotations

import base64
import os
import sys
import urllib.request
from collections.abc import Callable, Mapping
from unittest import mock
from urllib.parse import quote, unquote, urlsplit

import pytest
from botocore.httpsession import ProxyConfiguration
from botocore.utils import get_environ_proxies
from hypothesis import given, settings
from hypothesis import strategies as st
from urllib3.util import parse_url

from bedrock_chat import ConfigurationError
from bedrock_chat._core.proxy import Proxy, _environment_proxies, _exempt, parse_proxy, proxy_for

# Not in typeshed; it is public (documented in urllib.request) and is what ``proxy_bypass`` is on Linux.
_proxy_bypass_environment: Callable[[str, Mapping[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]

# botocore's ``proxy_bypass`` is urllib's platform function: on macOS/Windows it also consults the system
# proxy settings (SystemConfiguration / the registry), which our pure function deliberately does not.
# On Linux it is exactly ``proxy_bypass_environment``, so the differential against botocore is exact there.
pytestmark = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="botocore/urllib consult platform proxy settings here"
)

CANARY = "S3cr3t-canary"
CANARY_FORMS = (CANARY, "S3cr3t%2Dcanary", "S3cr3t%2dcanary", "S3cr3t")

ENDPOINTS = (
    "https://bedrock-runtime.us-east-1.amazonaws.com",
    "https://bedrock-runtime.us-east-1.amazonaws.com:443",
    "http://bedrock.example.com:8080",
    "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com",
    "https://[2001:db8::1]",
    "https://[2001:db8::1]:443",
)

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "Https_proxy", "Http_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
# Variables urllib collects too, which must never be picked for an http(s) endpoint.
OTHER_VARIABLES = ("ALL_PROXY", "all_proxy", "FTP_PROXY")

PROXY_VALUES = (
    "",
    "http://proxy.corp:3128",
    "proxy.corp:8080",  # no scheme: http://
    "proxy.corp",  # no scheme, no port: http://proxy.corp:80
    "//proxy.corp:3128",
    "https://secure-proxy.corp",
    "https://secure-proxy.corp:8443/",
    "http://Proxy.CORP:3128",
    "http://user:p%40ss%3Aw%20rd@proxy.corp:3128",
    "alice:pw@proxy.corp:3128",
    "http://[fd00::1]:3128",
    "http://10.0.0.1",
    "socks5://proxy.corp:1080",  # refused by us; botocore would mangle it to http://socks5://...
    "socks5h://bob:pw@proxy.corp:1080",
)

# NO_PROXY entries; lists are joined with optional spaces and leading dots around each entry.
NO_PROXY_ENTRIES = (
    "*",
    ".amazonaws.com",
    "amazonaws.com",
    "bedrock-runtime.us-east-1.amazonaws.com",
    "bedrock-runtime.us-east-1.amazonaws.com:443",
    "amazonaws.com:443",
    "example.com:443",
    "example.com:8080",
    "bedrock.example.com",
    "BEDROCK.Example.com",
    "east-1.amazonaws.com",  # a suffix, but not a dot-suffix: must not exempt us-east-1 hosts
    "vpce.amazonaws.com",
    "localhost",
    "[2001:db8::1]",
    "[2001:db8::1]:443",
    "2001:db8::1",
    "",
)


@st.composite
def no_proxy_values(draw: st.DrawFn) -> str:
    """A NO_PROXY value: a comma list of entries, each with optional surrounding spaces / leading dots."""
    entries = draw(st.lists(st.sampled_from(NO_PROXY_ENTRIES), max_size=4))
    padded = [
        draw(st.sampled_from(["", " ", "  "])) + draw(st.sampled_from(["", ".", ".."])) * bool(entry) + entry
        for entry in entries
    ]
    return ",".join(p + draw(st.sampled_from(["", " "])) for p in padded)


@st.composite
def environments(draw: st.DrawFn) -> dict[str, str]:
    """An environment built from the proxy variables, in random insertion order."""
    names = draw(
        st.lists(
            st.sampled_from(PROXY_VARIABLES + NO_PROXY_VARIABLES + OTHER_VARIABLES + ("REQUEST_METHOD",)),
            unique=True,
        )
    )
    env: dict[str, str] = {}
    for name in names:
        if name in NO_PROXY_VARIABLES:
            env[name] = draw(no_proxy_values())
        elif name == "REQUEST_METHOD":
            env[name] = draw(st.sampled_from(["GET", "POST", ""]))
        else:
            env[name] = draw(st.sampled_from(PROXY_VALUES))
    return env


def _botocore_choice(env: Mapping[str, str], url: str) -> tuple[str | None, str | None]:
    """(the raw environment value botocore picks for ``url``, the proxy URL it would connect through)."""
    with mock.patch.dict(os.environ, env, clear=True):
        proxies = get_environ_proxies(url)
        chosen: str | None = ProxyConfiguration(proxies=proxies).proxy_url_for(url)
    return proxies.get(urlsplit(url).scheme), chosen


def _normalised(url: str) -> tuple[str, str | None, str | None]:
    """urllib3's view of a proxy URL (what botocore connects to): scheme://host:port, user, password."""
    parsed = parse_url(url)
    assert parsed.scheme in ("http", "https"), url
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    username = password = None
    if parsed.auth is not None:
        user, _, secret = parsed.auth.partition(":")
        username, password = unquote(user), unquote(secret)
    return f"{parsed.scheme}://{parsed.host}:{port}", username, password


def _variables_for(scheme: str) -> set[str]:
    return {f"{scheme.upper()}_PROXY", f"{scheme}_proxy", f"{scheme.capitalize()}_proxy"}


@settings(max_examples=400)
@given(env=environments(), endpoint=st.sampled_from(ENDPOINTS))
def test_environment_proxy_matches_botocore(env: dict[str, str], endpoint: str) -> None:
    """For any proxy environment, proxy_for picks the proxy (URL and credentials) botocore would use."""
    raw, botocore_url = _botocore_choice(env, endpoint)
    if raw is not None and "://" in raw and urlsplit(raw).scheme not in ("http", "https"):
        with pytest.raises(ConfigurationError) as caught:
            proxy_for(endpoint, explicit=None, trust_env=True, environ=env)
        assert str(caught.value).split(":")[0] in _variables_for(urlsplit(endpoint).scheme)
        return
    ours = proxy_for(endpoint, explicit=None, trust_env=True, environ=env)
    if botocore_url is None:
        assert ours is None
        return
    assert ours is not None
    url, username, password = _normalised(botocore_url)
    assert (ours.url, ours.username, ours.password) == (url, username, password)
    expected_header = ProxyConfiguration().proxy_headers_for(botocore_url).get("Proxy-Authorization")
    assert ours.authorization == expected_header


@settings(max_examples=400)
@given(env=environments())
def test_environment_variables_match_urllib(env: dict[str, str]) -> None:
    """_environment_proxies reads the same scheme -> URL table as urllib.request.getproxies_environment."""
    with mock.patch.dict(os.environ, env, clear=True):
        expected = urllib.request.getproxies_environment()
    found = _environment_proxies(env)
    assert {scheme: value for scheme, (value, _) in found.items()} == expected
    for scheme, (value, variable) in found.items():  # the reported source really holds that value
        assert variable.lower() == f"{scheme}_proxy"
        assert env[variable] == value


NETLOCS = (
    "bedrock-runtime.us-east-1.amazonaws.com",
    "bedrock-runtime.us-east-1.amazonaws.com:443",
    "Bedrock-Runtime.US-East-1.amazonaws.com",
    "bedrock.example.com:8080",
    "bedrock.example.com",
    "example.com:443",
    "vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com",
    "amazonaws.com",
    "notamazonaws.com",
)


@settings(max_examples=400)
@given(no_proxy=no_proxy_values(), netloc=st.sampled_from(NETLOCS))
def test_exemption_matches_urllib(no_proxy: str, netloc: str) -> None:
    """_exempt agrees with urllib.request.proxy_bypass_environment on every NO_PROXY list and host[:port]."""
    expected = _proxy_bypass_environment(netloc, {"no": no_proxy})
    assert _exempt(netloc, no_proxy) is expected


# --- regressions: the divergences from botocore/urllib these tests first found ---------------------------


@pytest.mark.parametrize("no_proxy", [" *", "* ", " * "])
def test_regression_star_with_blanks(no_proxy: str) -> None:
    """NO_PROXY=' *' exempts nothing for botocore/urllib (only an exact '*' is special), so it must not here."""
    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": no_proxy}
    endpoint = ENDPOINTS[0]
    _, botocore_url = _botocore_choice(env, endpoint)
    assert botocore_url == "http://proxy.corp:3128"
    assert proxy_for(endpoint, explicit=None, trust_env=True, environ=env) == Proxy("http://proxy.corp:3128")


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        # urllib's winning second pass takes every name ending in lower-case '_proxy', not only all-lower names:
        ({"HTTPS_PROXY": "http://proxy.corp:3128", "Https_proxy": ""}, ENDPOINTS[0]),
        (
            {"HTTP_PROXY": "http://a.corp:3128", "Http_proxy": "http://b.corp:3128", "REQUEST_METHOD": "GET"},
            ENDPOINTS[2],
        ),
    ],
)
def test_regression_mixed_case_variable_names(env: dict[str, str], endpoint: str) -> None:
    """Variables like 'Https_proxy' are read with urllib's precedence, as botocore reads them."""
    _, botocore_url = _botocore_choice(env, endpoint)
    ours = proxy_for(endpoint, explicit=None, trust_env=True, environ=env)
    assert (ours.url if ours else None) == (_normalised(botocore_url)[0] if botocore_url else None)


@pytest.mark.parametrize(
    ("endpoint", "no_proxy"),
    [
        ("https://[2001:db8::1]", "[2001:db8::1]"),  # urllib compares the bracketed netloc host
        ("https://[2001:db8::1]:443", "[2001:db8::1]:443"),
        ("https://[2001:db8::1]", "2001:db8::1"),  # ... so the bare form exempts nothing there
    ],
)
def test_regression_ipv6_endpoint_no_proxy(endpoint: str, no_proxy: str) -> None:
    """NO_PROXY matching for an IPv6-literal endpoint agrees with botocore."""
    env = {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": no_proxy}
    _, botocore_url = _botocore_choice(env, endpoint)
    ours = proxy_for(endpoint, explicit=None, trust_env=True, environ=env)
    assert (ours.url if ours else None) == (_normalised(botocore_url)[0] if botocore_url else None)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:S3cr3t/canary@proxy.corp:3128",  # an unencoded '/' in the password
        "user:S3cr3t/canary@proxy.corp:3128",
        "http://user:12345/S3cr3t@proxy.corp:3128",  # parses as host 'user', port 12345, a path
    ],
)
def test_regression_password_with_slash_not_echoed(url: str) -> None:
    """A refused URL whose password holds an unencoded '/' does not leak the password into the error."""
    with pytest.raises(ConfigurationError) as caught:
        parse_proxy(url, source="HTTPS_PROXY")
    assert "HTTPS_PROXY" in str(caught.value)
    assert "S3cr3t" not in str(caught.value)
    assert "S3cr3t" not in repr(caught.value)


# --- loopback, trust_env, explicit --------------------------------------------------------------------

ENV_EVERYWHERE = {
    "HTTP_PROXY": "http://env-proxy.corp:3128",
    "http_proxy": "http://env-proxy.corp:3128",
    "HTTPS_PROXY": "http://env-proxy.corp:3128",
    "https_proxy": "http://env-proxy.corp:3128",
}
LOOPBACK_ENDPOINTS = (
    "http://127.0.0.1:8000",
    "http://127.9.8.7:8000",
    "https://127.0.0.1",
    "http://localhost:4000",
    "http://LOCALHOST:4000",
    "http://[::1]:8080",
    "http://api.localhost",
)


@pytest.mark.parametrize("endpoint", LOOPBACK_ENDPOINTS)
def test_loopback_ignores_environment_proxy(endpoint: str) -> None:
    """A loopback endpoint never goes through an environment proxy, though every proxy variable is set."""
    assert proxy_for(endpoint, explicit=None, trust_env=True, environ=ENV_EVERYWHERE) is None


@pytest.mark.parametrize("endpoint", LOOPBACK_ENDPOINTS)
def test_loopback_uses_explicit_proxy(endpoint: str) -> None:
    """An explicit proxy applies to loopback endpoints too."""
    ours = proxy_for(endpoint, explicit="http://explicit.corp:8080", trust_env=True, environ=ENV_EVERYWHERE)
    assert ours == Proxy("http://explicit.corp:8080")


@pytest.mark.parametrize(
    "endpoint", ["http://localhost.example.com", "http://notlocalhost:80", "http://128.0.0.1", "http://[::2]:80"]
)
def test_loopback_rule_is_not_a_prefix_match(endpoint: str) -> None:
    """Hosts that merely look like loopback still use the environment proxy."""
    assert proxy_for(endpoint, explicit=None, trust_env=True, environ=ENV_EVERYWHERE) == Proxy(
        "http://env-proxy.corp:3128"
    )


@given(env=environments(), endpoint=st.sampled_from(ENDPOINTS))
def test_trust_env_false_ignores_environment(env: dict[str, str], endpoint: str) -> None:
    """With trust_env=False no environment (not even a refused socks URL) is read."""
    assert proxy_for(endpoint, explicit=None, trust_env=False, environ=env) is None


@given(env=environments(), endpoint=st.sampled_from(ENDPOINTS), trust_env=st.booleans())
def test_explicit_overrides_environment(env: dict[str, str], endpoint: str, trust_env: bool) -> None:
    """An explicit proxy wins over any environment, NO_PROXY included, as botocore's proxies= config does."""
    ours = proxy_for(endpoint, explicit="https://u%3A1:p%40ss@explicit.corp:8443", trust_env=trust_env, environ=env)
    assert ours == Proxy("https://explicit.corp:8443", "u:1", "p@ss")
    assert ours.password == "p@ss"


@pytest.mark.parametrize(
    ("env", "endpoint", "source"),
    [
        ({"HTTPS_PROXY": f"socks5://user:{CANARY}@proxy.corp:1080"}, ENDPOINTS[0], "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "http://ok.corp", "https_proxy": f"ftp://user:{CANARY}@p"}, ENDPOINTS[0], "https_proxy"),
        ({"http_proxy": f"http://user:{CANARY}@proxy.corp:3128/path"}, ENDPOINTS[2], "http_proxy"),
    ],
)
def test_environment_errors_name_the_variable(env: dict[str, str], endpoint: str, source: str) -> None:
    """A refused environment proxy raises ConfigurationError naming the variable, without the password."""
    with pytest.raises(ConfigurationError) as caught:
        proxy_for(endpoint, explicit=None, trust_env=True, environ=env)
    assert str(caught.value).startswith(source + ":")
    for form in CANARY_FORMS:
        assert form not in str(caught.value)
        assert form not in repr(caught.value)


def test_unused_bad_variable_is_not_an_error() -> None:
    """A socks HTTP_PROXY does not break an https endpoint (botocore would not read it either)."""
    env = {"HTTP_PROXY": "socks5://proxy.corp:1080", "HTTPS_PROXY": "proxy.corp:3128"}
    assert proxy_for(ENDPOINTS[0], explicit=None, trust_env=True, environ=env) == Proxy("http://proxy.corp:3128")


# --- parse_proxy ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("proxy.corp:3128", "http://proxy.corp:3128"),
        ("proxy.corp", "http://proxy.corp:80"),
        ("//proxy.corp:3128", "http://proxy.corp:3128"),
        ("http://proxy.corp", "http://proxy.corp:80"),
        ("http://proxy.corp/", "http://proxy.corp:80"),
        ("https://proxy.corp", "https://proxy.corp:443"),
        ("https://proxy.corp:8443/", "https://proxy.corp:8443"),
        ("HTTP://Proxy.CORP:3128", "http://proxy.corp:3128"),
        ("  http://proxy.corp:3128 \n", "http://proxy.corp:3128"),
        ("http://[fd00::1]:3128", "http://[fd00::1]:3128"),
        ("https://[2001:DB8::1]", "https://[2001:db8::1]:443"),
        ("http://10.0.0.1:8080", "http://10.0.0.1:8080"),
    ],
)
def test_parse_proxy_accepts(url: str, expected: str) -> None:
    """Accepted proxy forms normalise to scheme://host:port with the scheme's default port."""
    ours = parse_proxy(url)
    assert ours == Proxy(expected)
    assert (ours.username, ours.password, ours.authorization) == (None, None, None)


REFUSED = (
    "",
    "   ",
    "socks5://proxy.corp:1080",
    "socks5h://proxy.corp:1080",
    "ftp://proxy.corp",
    "http://proxy.corp:3128/x",
    "http://proxy.corp:3128?q",
    "http://proxy.corp:3128/?q=1",
    "http://proxy.corp:3128#f",
    "http://",
    "http://:3128",
    "//",
    "http://proxy.corp:99999",
    "http://proxy.corp:abc",
    "proxy.corp:99999",
    "http://pro xy.corp:3128",
)


@pytest.mark.parametrize("url", REFUSED)
@pytest.mark.parametrize("source", ["proxy", "HTTPS_PROXY"])
def test_parse_proxy_refuses(url: str, source: str) -> None:
    """Refused proxy forms raise ConfigurationError whose message starts with the source's name."""
    with pytest.raises(ConfigurationError) as caught:
        parse_proxy(url, source=source)
    assert str(caught.value).startswith(source + ":")


@pytest.mark.parametrize(
    "url",
    [
        f"socks5://user:{CANARY}@proxy.corp:1080",
        "socks5h://user:S3cr3t%2Dcanary@proxy.corp:1080",
        f"ftp://user:{CANARY}@proxy.corp:21",
        f"http://user:{CANARY}@proxy.corp:3128/x",
        "http://user:S3cr3t%2Dcanary@proxy.corp:3128/x",
        f"http://user:{CANARY}@proxy.corp:3128?q",
        f"http://user:{CANARY}@proxy.corp:3128#f",
        f"http://user:{CANARY}@",
        f"http://user:{CANARY}@:3128",
        f"http://user:{CANARY}@proxy.corp:99999",
        "http://user:S3cr3t%2dcanary@proxy.corp:abc",
        f"user:{CANARY}@proxy.corp:99999",
        f"//user:{CANARY}@proxy.corp:3128/x",
        f"http://user:{CANARY}@pro xy.corp:3128",
        "http://user:S3cr3t?canary@proxy.corp:3128",  # unencoded '?' in the password
        "http://user:S3cr3t#canary@proxy.corp:3128",  # unencoded '#' in the password
        f"http://{CANARY}@proxy.corp:3128/x",  # the secret as a bare username (a token)
    ],
)
@pytest.mark.parametrize("source", ["proxy", "HTTPS_PROXY"])
def test_refused_url_never_shows_credentials(url: str, source: str) -> None:
    """Refusing a URL with credentials names the source and shows the password in no form (raw or decoded)."""
    with pytest.raises(ConfigurationError) as caught:
        parse_proxy(url, source=source)
    assert source in str(caught.value)
    for form in CANARY_FORMS:
        assert form not in str(caught.value)
        assert form not in repr(caught.value)


# --- credentials: Proxy-Authorization and repr ---------------------------------------------------------

# botocore encodes credentials as ASCII (non-ASCII raises there), and sends no header unless both the user
# and the password are non-empty. We send 'user:' for a user without password (as curl and requests do):
# a justified difference, so the differential covers non-empty ASCII pairs only.
_credential_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)


@given(username=_credential_text, password=_credential_text, scheme=st.sampled_from(["http", "https"]))
def test_authorization_matches_botocore(username: str, password: str, scheme: str) -> None:
    """Percent-encoded credentials decode to the raw pair, and the Basic header equals botocore's."""
    url = f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@proxy.corp:3128"
    ours = parse_proxy(url)
    assert (ours.url, ours.username, ours.password) == (f"{scheme}://proxy.corp:3128", username, password)
    assert ours.authorization == ProxyConfiguration().proxy_headers_for(url)["Proxy-Authorization"]


def test_authorization_example() -> None:
    """User 'a@b' with password 'p:ss w%rd' gives botocore's header and decodes back exactly."""
    url = "http://a%40b:p%3Ass%20w%25rd@proxy.corp:3128"
    ours = parse_proxy(url)
    assert (ours.username, ours.password) == ("a@b", "p:ss w%rd")
    expected = "Basic " + base64.b64encode(b"a@b:p:ss w%rd").decode("ascii")
    assert ours.authorization == expected == ProxyConfiguration().proxy_headers_for(url)["Proxy-Authorization"]


def test_user_without_password_sends_empty_password() -> None:
    """A user without password yields 'user:' Basic credentials (botocore drops them; see the note above)."""
    assert parse_proxy("http://tok%40en@proxy.corp:3128").authorization == "Basic " + base64.b64encode(
        b"tok@en:"
    ).decode("ascii")
    assert parse_proxy("http://token:@proxy.corp:3128").authorization == "Basic dG9rZW46"


@pytest.mark.parametrize(
    ("username", "password"),
    [("U-canary-user", CANARY), ("a@b U-canary", "p:ss w%rd S3cr3t"), ("U-canary", ""), ("U-canary", None)],
)
def test_repr_hides_credentials(username: str, password: str | None) -> None:
    """repr(Proxy) shows neither username nor password, whether built directly or parsed from a URL."""
    direct = Proxy("http://proxy.corp:3128", username, password)
    encoded = quote(username, safe="") + ("" if password is None else ":" + quote(password, safe=""))
    parsed = parse_proxy(f"http://{encoded}@proxy.corp:3128")
    assert parsed == direct
    for proxy in (direct, parsed):
        for shown in (repr(proxy), str(proxy), f"{proxy!r}", repr([proxy])):
            assert "canary" not in shown
            assert "U-" not in shown
            if password:
                assert password not in shown
                assert quote(password, safe="") not in shown
