"""Helpers for the embedded-signing tests: walk the emulator's signing page without a browser."""

from __future__ import annotations

import re
import socket
import time
import typing as t
import urllib.parse

import requests

_ACTION_RE = re.compile(r'action="(/Signing/session/[^"]+/(sign|decline|cancel))"')


def signing_actions(html: str) -> dict[str, str]:
    """{"sign": path, "decline": path, "cancel": path} from the emulator's signing page."""
    return {m.group(2): m.group(1) for m in _ACTION_RE.finditer(html)}


def act(signing_url: str, action: str) -> str:
    """Open a signing URL and press one button; returns where DocuSign sends the browser."""
    base = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(signing_url))
    with requests.Session() as http:
        page = http.get(signing_url, timeout=10)
        page.raise_for_status()
        path = signing_actions(page.text)[action]
        resp = http.post(base + path, data={"reason": "test"}, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    return resp.headers["Location"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def path_and_query(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def wait_for(check: t.Callable[[], t.Any], timeout: float = 10.0, interval: float = 0.05) -> t.Any:
    """Poll until `check()` is truthy; its value, or AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)
