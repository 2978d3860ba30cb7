"""Where a partner webhook may go: public addresses only, and exactly the address checked.

The URL's host is resolved once; every address must be public (no private, link-local,
multicast, reserved, unspecified or cloud-metadata address), except loopback when the
URL itself names a loopback host (a local receiver the policy asked for). The request is
then sent to the checked address, with the URL's host in `Host` and, for https, in SNI
and certificate verification: a DNS answer that changes between the check and the
connection (DNS rebinding) cannot send the request elsewhere.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

import requests
from requests.adapters import HTTPAdapter

METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class Refused(Exception):
    """The webhook URL's host is not one the gateway may connect to; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked destination: the URL to send to (host replaced by the checked address)."""

    pinned_url: str
    host_header: str
    hostname: str
    scheme: str


def _is_loopback_host(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, loopback_ok: bool) -> str | None:
    if addr.is_loopback:
        return None if loopback_ok else "refused: loopback address"
    if addr in METADATA_ADDRESSES:
        return "refused: metadata address"
    if (addr.is_private or addr.is_link_local or addr.is_multicast or addr.is_reserved
            or addr.is_unspecified or not addr.is_global):
        return "refused: private address"
    return None


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise Refused("refused: host does not resolve") from None
    out = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        out.append(addr)
    if not out:
        raise Refused("refused: host does not resolve")
    return out


def check_destination(url: str) -> Target:
    """Resolve the URL's host once; refuse any non-public address; the target to send to."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.scheme not in ("http", "https"):
        raise Refused("refused: not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    loopback_ok = _is_loopback_host(host)
    for addr in addresses:
        why = _refusal(addr, loopback_ok)
        if why is not None:
            raise Refused(why)
    first = addresses[0]
    literal = f"[{first}]" if first.version == 6 else str(first)
    pinned = urlunsplit(parts._replace(netloc=f"{literal}:{port}"))
    return Target(pinned_url=pinned, host_header=parts.netloc.rpartition("@")[2],
                  hostname=host, scheme=parts.scheme)


class _PinnedTLS(HTTPAdapter):
    """Connects to an address but speaks TLS (SNI, certificate check) for the hostname."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__()

    def init_poolmanager(self, *args: t.Any, **kwargs: t.Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


@contextlib.contextmanager
def pinned_session(target: Target) -> t.Iterator[requests.Session]:
    """A session that sends to the target's checked address (https verified for its name)."""
    with requests.Session() as http:
        http.trust_env = False  # no proxy from the environment may reroute the request
        if target.scheme == "https":
            http.mount("https://", _PinnedTLS(target.hostname))
        yield http
