"""The demo stack with quick webhook retries, a recorder on the example site's webhook
endpoint, and a member who signs through the site without a browser."""

from __future__ import annotations

import json
import re
import threading
import time
import typing as t

import pytest
import requests
import sqlalchemy as sa

from gateway import store
from gateway.cli.demo_stack import DemoStack
from tests.embedded import act

HOOK_PATH = "/hooks/signing"


class HookRecorder:
    """WSGI middleware on the site: records each webhook and the site's answer to it.

    `stall` seconds are added before the answer of the next `stall_count` webhooks whose
    type is `stall_type`: the site has applied them, but the gateway gives up waiting.
    """

    def __init__(self, app: t.Any) -> None:
        self.app = app
        self.seen: list[dict[str, t.Any]] = []
        self.stall = 0.0
        self.stall_type = ""
        self.stall_count = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        if environ.get("PATH_INFO") != HOOK_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = _Body(body)
        answer: dict[str, t.Any] = {}

        def recording_start(status: str, headers: t.Any, *rest: t.Any) -> t.Any:
            answer["status"] = int(status.split()[0])
            return start_response(status, headers, *rest)

        chunks = b"".join(self.app(environ, recording_start))
        kind = json.loads(body)["type"]
        with self._lock:
            self.seen.append({"id": environ.get("HTTP_WEBHOOK_ID"), "type": kind,
                              "status": answer["status"], "answer": json.loads(chunks)})
            stall = self.stall if kind == self.stall_type and self.stall_count > 0 else 0.0
            if stall:
                self.stall_count -= 1
        if stall:
            time.sleep(stall)
        return [chunks]

    def ids(self) -> list[str]:
        return [s["id"] for s in self.seen]

    def applied(self) -> list[str]:
        """The webhook ids the site applied (not answered as duplicates)."""
        return [s["id"] for s in self.seen if s["status"] == 200 and not s["answer"]["duplicate"]]


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int = -1) -> bytes:
        out, self._data = (self._data, b"") if size < 0 else (self._data[:size], self._data[size:])
        return out


@pytest.fixture
def stack() -> t.Iterator[DemoStack]:
    # retries about a second apart (the jitter's floor), a short per-attempt timeout, and a
    # site that asks the gateway's status API only hourly: what it knows comes from webhooks
    with DemoStack(sandbox_port=0, gateway_port=0, site_port=0,
                   sandbox_config={"SANDBOX_CONNECT_RETRY_DELAYS": (0.05,)},
                   gateway_config={"WEBHOOK_INTERVAL": 0.1, "WEBHOOK_RETRY_SCHEDULE": (0.2,),
                                   "WEBHOOK_TIMEOUT": 1.0},
                   site_config={"STATUS_FALLBACK_SECONDS": 3600.0}) as running:
        yield running


@pytest.fixture
def recorder(stack: DemoStack) -> HookRecorder:
    assert stack.site_app is not None
    rec = HookRecorder(stack.site_app.wsgi_app)
    stack.site_app.wsgi_app = rec  # type: ignore[method-assign]
    return rec


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, name
    return match.group(1)


class Member:
    """A member's browser on the example site (a requests session keeps its cookie)."""

    def __init__(self, stack: DemoStack) -> None:
        self.stack = stack
        self.http = requests.Session()

    def sign(self) -> str:
        """Fill the form, sign in the (emulated) iframe; the envelope id."""
        site = self.stack.site_url
        form = self.http.get(site + "/", timeout=10).text
        page = self.http.post(site + "/sign", timeout=30, data={
            "csrf": _hidden(form, "csrf"), "submission": _hidden(form, "submission"),
            "name": "Ada Lovelace", "email": "ada@example.com", "member_number": "1815",
            "plan": "plus"})
        assert page.status_code == 200, page.text
        url = re.search(r'<iframe id="signing-frame" title="Signing" src="([^"]+)"', page.text)
        envelope_id = re.search(r'id="envelope-id">([^<]+)<', page.text)
        assert url and envelope_id
        act(url[1].replace("&amp;", "&"), "sign")
        # the site's one status-API read for the hour: later news can only come by webhook
        self.known(envelope_id[1])
        return envelope_id[1]

    def known(self, envelope_id: str) -> dict[str, t.Any]:
        """What the site's page would show (status.json)."""
        resp = self.http.get(f"{self.stack.site_url}/envelopes/{envelope_id}/status.json",
                             timeout=10)
        assert resp.status_code == 200
        return t.cast(dict, resp.json())


def countersigner(stack: DemoStack, envelope_id: str, action: str = "sign") -> None:
    """The owner's countersigner acts on the emulator's control page (its JSON form)."""
    record = requests.get(f"{stack.sandbox_url}/_sandbox/envelopes/{envelope_id}", timeout=5).json()
    rid = next(r["recipientId"] for r in record["recipients"] if r["roleName"] == "Countersigner")
    done = requests.post(f"{stack.sandbox_url}/_sandbox/envelopes/{envelope_id}/recipients/{rid}/"
                         f"{action}", json={}, timeout=10)
    assert done.status_code == 200, done.text


def outbox(stack: DemoStack) -> list[dict[str, t.Any]]:
    """Every partner-webhook event, oldest first."""
    assert stack.gateway_app is not None
    with stack.gateway_app.app_context(), store.transaction() as conn:
        rows = conn.execute(sa.select(store.webhook_events).order_by(store.webhook_events.c.id))
        return [dict(r._mapping) for r in rows]
