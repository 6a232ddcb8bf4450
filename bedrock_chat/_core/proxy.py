"""Which HTTP proxy (if any) carries the requests to an endpoint: an explicit URL, or the environment's.

The environment is read the way botocore reads it (``urllib``'s rules): ``HTTPS_PROXY`` for an https
endpoint, ``HTTP_PROXY`` for an http one, lower-case names winning over upper-case ones, ``NO_PROXY``
(host suffixes, ``*``) exempting hosts, and ``HTTP_PROXY`` ignored when ``REQUEST_METHOD`` says the
process is a CGI script (httpoxy, CVE-2016-1000110). One addition, as Go's ``ProxyFromEnvironment``
does: a loopback endpoint (the emulator, a local tunnel) never goes through an *environment* proxy,
so a developer's corporate proxy cannot capture local traffic; an explicit ``proxy=`` still applies.

Pure: the environment is passed in. A proxy URL's credentials become a ``Proxy-Authorization`` value
and are never shown: not in ``repr``, not in an error message.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import attrs

from .._errors import ConfigurationError
from .config import is_loopback

__all__ = ["Proxy", "parse_proxy", "proxy_for"]


@attrs.frozen(repr=False)
class Proxy:
    """An HTTP(S) proxy: its URL without credentials, and the Basic credentials its URL carried."""

    url: str  # scheme://host:port, no userinfo, no path
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"Proxy({self.url!r}, auth={'***' if self.username is not None else None})"

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` header value, or None without credentials."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def parse_proxy(url: str, *, source: str = "proxy") -> Proxy:
    """Validate a proxy URL (``http://`` or ``https://``, a host, nothing after the port).

    A URL without a scheme is taken as ``http://`` (as botocore and curl do). Errors name ``source``
    and show the URL without its credentials.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{source}: a proxy URL must be a non-empty string")
    text = url.strip()
    if "://" not in text:
        text = "http:" + text if text.startswith("//") else "http://" + text
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigurationError(f"{source}: {_shown(text)!r} is not a valid proxy URL") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"{source}: {_shown(text)!r}: only http:// and https:// proxies are supported, not {parts.scheme}://"
        )
    if not host or any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in host):
        raise ConfigurationError(f"{source}: {_shown(text)!r} has no valid host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(f"{source}: {_shown(text)!r} must not have a path, query or fragment")
    netloc_host = f"[{host}]" if ":" in host else host
    port = port if port is not None else (443 if parts.scheme == "https" else 80)
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return Proxy(f"{parts.scheme}://{netloc_host}:{port}", username, password)


def _shown(url: str) -> str:
    """The URL with everything before its last ``@`` masked (for messages; masking too much is harmless)."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"


def _environment_proxies(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """urllib's ``getproxies_environment`` over a mapping: scheme -> (URL, the variable it came from)."""
    found: dict[str, tuple[str, str]] = {}
    for name, value in environ.items():  # any case first ...
        if name.lower().endswith("_proxy") and value:
            found[name[:-6].lower()] = (value, name)
    if "REQUEST_METHOD" in environ:  # a CGI script: HTTP_PROXY may come from a request's Proxy header
        found.pop("http", None)
    for name, value in environ.items():  # ... then names ending in lower-case "_proxy" win
        if name.endswith("_proxy"):
            if value:
                found[name[:-6].lower()] = (value, name)
            else:
                found.pop(name[:-6].lower(), None)
    return found


def _exempt(netloc: str, no_proxy: str) -> bool:
    """urllib's NO_PROXY rule: exactly ``*``, or an entry equal to the host (or host:port) or a dot-suffix of it.

    The host is taken from the netloc as urllib takes it (an IPv6 literal keeps its brackets).
    """
    if no_proxy == "*":
        return True
    netloc = netloc.rpartition("@")[2].lower()
    host, colon, port = netloc.rpartition(":")
    host_only = host if colon and re.fullmatch("[0-9]*", port) else netloc
    for entry in no_proxy.split(","):
        name = entry.strip().lstrip(".").lower()
        if name and any(candidate == name or candidate.endswith("." + name) for candidate in (host_only, netloc)):
            return True
    return False


def proxy_for(
    endpoint_url: str, *, explicit: Proxy | str | None, trust_env: bool, environ: Mapping[str, str]
) -> Proxy | None:
    """The proxy for requests to ``endpoint_url``: ``explicit``, else the environment's, else None."""
    if explicit is not None:
        return explicit if isinstance(explicit, Proxy) else parse_proxy(explicit)
    if not trust_env:
        return None
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
    if is_loopback(host):
        return None
    found = _environment_proxies(environ)
    chosen = found.get(parts.scheme)
    if chosen is None:
        return None
    if "no" in found and _exempt(parts.netloc, found["no"][0]):
        return None
    value, variable = chosen
    return parse_proxy(value, source=variable)
