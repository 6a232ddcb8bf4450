"""The endpoint URL, validated, and the Host value that gets signed (an httpx.URL: the I/O side).

Plain ``http://`` is refused for anything but loopback unless the caller opts in, because SigV4 headers
sent in clear text can be replayed.
"""

from __future__ import annotations

import attrs
import httpx

from .._core.config import LOCALHOST, is_loopback_address
from .._errors import ConfigurationError

__all__ = ["Endpoint", "parse_endpoint"]


@attrs.frozen
class Endpoint:
    """Where requests go: the base URL and the Host header value that gets signed.

    ``verify_loopback`` is set for plain http to ``localhost``: the name must be resolved (off the event
    loop) and checked with :func:`check_resolves_to_loopback` before anything is sent.
    """

    url: httpx.URL
    host: str  # netloc as sent in Host: default ports omitted
    verify_loopback: bool = False

    @property
    def base_path(self) -> str:
        """The endpoint's own path prefix ("" for a bare host), prepended to every operation path."""
        return self.url.raw_path.decode("ascii").rstrip("/")

    def url_for(self, path: str) -> httpx.URL:
        """Absolute URL for an already-encoded operation path (kept raw, so %3A stays %3A on the wire)."""
        return self.url.copy_with(raw_path=(self.base_path + path).encode("ascii"))


def parse_endpoint(url: str, *, allow_insecure_http: bool = False, field: str = "endpoint_url") -> Endpoint:
    """Validate an endpoint URL (scheme, host, no query) and derive the signed Host value."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"{field}: {url!r} is not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(f"{field}: {url!r} must be an http(s) URL with a host")
    if parsed.query or parsed.fragment or parsed.userinfo:
        raise ConfigurationError(f"{field}: must not contain credentials, a query or a fragment")
    insecure = parsed.scheme == "http" and not allow_insecure_http
    if insecure and parsed.host != LOCALHOST and not is_loopback_address(parsed.host):
        raise ConfigurationError(
            f"{field}: plain http is allowed only for loopback hosts, not {parsed.host!r}; "
            "use https, or pass allow_insecure_http=True if you really mean it"
        )
    return Endpoint(parsed, parsed.netloc.decode("ascii"), verify_loopback=insecure and parsed.host == LOCALHOST)
