"""The strict URL parser shared by the policy schema and the `return_url_allowed` matcher."""

from __future__ import annotations

import ipaddress
import re
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"https": 443, "http": 80}


class UrlRejected(ValueError):
    """The URL is not one the gateway is willing to reason about; the message says why."""


@dataclass(frozen=True)
class Url:
    """An absolute http(s) URL that passed `parse_url`, reduced to what matching compares."""

    scheme: str
    host: str  # lower case; IPv6 in brackets, compressed
    port: int  # explicit or the scheme's default
    path: str  # as written, "" when absent
    has_query: bool

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


_DNS_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# WHATWG treats a host whose last label looks numeric as an IPv4 address (e.g. 0x7f.1).
_NUMERIC_LABEL_RE = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_IPV6_NETLOC_RE = re.compile(r"\[([0-9a-f:.]+)\](?::([0-9]+))?")
_NETLOC_RE = re.compile(r"([^:\[\]]+)(?::([0-9]+))?")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_PERCENT_RE = re.compile(r"%(?![0-9a-fA-F]{2})")
_ENCODED_DOT_OR_SLASH_RE = re.compile(r"%(?:2e|2f|5c)", re.IGNORECASE)


def _check_chars(url: str) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise UrlRejected(f"must be at most {MAX_URL_LENGTH} characters")
    if "\\" in url:
        raise UrlRejected("must not contain backslashes")
    # urlsplit silently strips tabs, newlines and edge whitespace; refuse them before it can
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in url):
        raise UrlRejected("must not contain whitespace, control or non-ASCII characters")


def _parse_host(host: str) -> str:
    if host.endswith("."):
        raise UrlRejected("host must not end with a dot")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if (
        len(host) > 253
        or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels)
        or _NUMERIC_LABEL_RE.fullmatch(labels[-1])
    ):
        raise UrlRejected("host is not a valid host name")
    return host


def _parse_netloc(netloc: str) -> tuple[str, int | None]:
    if "@" in netloc:
        raise UrlRejected("must not contain user info (@)")
    netloc = netloc.lower()
    if match := _IPV6_NETLOC_RE.fullmatch(netloc):
        try:
            host = f"[{ipaddress.IPv6Address(match[1]).compressed}]"
        except ValueError:
            raise UrlRejected("host is not a valid IPv6 address") from None
    elif match := _NETLOC_RE.fullmatch(netloc):
        host = _parse_host(match[1])
    else:
        raise UrlRejected("host is missing or not valid")
    port = match[2]
    if port is None:
        if netloc.endswith(":"):
            raise UrlRejected("port is not valid")
        return host, None
    if not _PORT_RE.fullmatch(port) or int(port) > 65535:
        raise UrlRejected("port is not valid")
    return host, int(port)


def _check_path(path: str) -> None:
    segments = path.split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        raise UrlRejected("path must not contain '.' or '..' segments")
    if "" in segments[:-1]:
        raise UrlRejected("path must not contain empty segments (//)")
    if _PERCENT_RE.search(path):
        raise UrlRejected("path has a malformed percent-encoding")
    if _ENCODED_DOT_OR_SLASH_RE.search(path):
        raise UrlRejected("path must not contain encoded '.', '/' or '\\' (%2e, %2f, %5c)")


def parse_url(url: str) -> Url:
    """Parse an absolute http(s) URL strictly, or raise `UrlRejected` saying why."""
    if not isinstance(url, str):
        raise UrlRejected("must be a string")
    _check_chars(url)
    if "#" in url:
        raise UrlRejected("must not contain a fragment (#)")
    try:
        # urlsplit itself validates brackets (and, on some versions, the IPv6 inside them)
        parts = urlsplit(url)
    except ValueError:
        raise UrlRejected("host is missing or not valid") from None
    if parts.scheme not in DEFAULT_PORTS or not url[len(parts.scheme) :].startswith("://"):
        raise UrlRejected("must be an absolute http(s) URL")
    host, port = _parse_netloc(parts.netloc)
    _check_path(parts.path)
    return Url(
        scheme=parts.scheme,
        host=host,
        port=DEFAULT_PORTS[parts.scheme] if port is None else port,
        path=parts.path,
        has_query="?" in url,
    )


def _path_within(candidate: str, allowed: str) -> bool:
    """True when `candidate` equals `allowed` or extends it at a `/` boundary."""
    candidate, allowed = candidate or "/", allowed or "/"
    if candidate == allowed:
        return True
    if not candidate.startswith(allowed):
        return False
    return allowed.endswith("/") or candidate[len(allowed)] == "/"


def return_url_allowed(candidate: str, allowed: t.Iterable[str]) -> bool:
    """Whether `candidate` may be used as a return URL given the policy's `allowed` URLs.

    Scheme, host and port must be equal (after default-port normalisation); the path must
    equal an allowed path or extend it at a `/` boundary; a query string is allowed. Anything
    the strict parser refuses (user info, fragments, backslashes, control characters,
    dot segments, encoded dots or slashes, odd hosts) is rejected outright.
    """
    try:
        url = parse_url(candidate)
    except UrlRejected:
        return False
    for entry in allowed:
        try:
            rule = parse_url(entry)
        except UrlRejected:
            continue
        same_origin = (url.scheme, url.host, url.port) == (rule.scheme, rule.host, rule.port)
        if same_origin and _path_within(url.path, rule.path):
            return True
    return False
