"""A local webhook receiver, a partner whose policy points at it, and events to deliver."""

from __future__ import annotations

import http.server
import os
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import store
from tests.conftest import ROOT
from tests.conftest import add_partner


class Receiver:
    """An http.server on 127.0.0.1 that records every request and answers as told."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        #: status codes to answer, in turn; the last one repeats (default 204)
        self.answers: list[int] = []
        self.location = "http://127.0.0.1:1/elsewhere"
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.answers.pop(0) if len(receiver.answers) > 1 else \
                    (receiver.answers[0] if receiver.answers else 204)
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                receiver.requests.append(({"method": "GET", "path": self.path}, b""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: t.Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        return [h["webhook-id"] for h, _ in self.requests if "webhook-id" in h]


@pytest.fixture
def receiver() -> t.Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.stop()


def write_policy(app: t.Any, webhook_url: str | None) -> None:
    """The example partner's policy, with (or without) a webhook_url."""
    text = (ROOT / "policies" / "example.toml").read_text()
    if webhook_url:
        text = text.replace('partner = "example"\n', f'partner = "example"\nwebhook_url = "{webhook_url}"\n')
    path = Path(app.config["POLICY_DIR"]) / "example.toml"
    path.write_text(text)
    # the policy cache reloads on (mtime, size, inode): make sure the change is seen
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.fixture
def hooked(app: t.Any, receiver: Receiver) -> t.Any:
    """The app, with partner `example` whose policy sends webhooks to the receiver."""
    add_partner(app, "example")
    write_policy(app, receiver.url)
    return app


def partner_id(app: t.Any, name: str = "example") -> int:
    with app.app_context(), store.transaction() as conn:
        return int(conn.execute(sa.select(store.partners.c.id)
                                .where(store.partners.c.name == name)).scalar_one())


def rotate_secret(app: t.Any, grace: float = 0.0, now: float | None = None) -> str:
    from gateway.services import webhook_secrets

    pid = partner_id(app)
    with app.app_context(), store.transaction() as conn:
        return webhook_secrets.rotate(conn, pid, grace, time.time() if now is None else now)


def new_envelope(app: t.Any, name: str = "example") -> str:
    """An envelope row of the partner, as `sent`."""
    envelope_id = str(uuid.uuid4())
    pid = partner_id(app, name)
    with app.app_context(), store.transaction() as conn:
        conn.execute(store.envelopes.insert().values(
            envelope_id=envelope_id, partner_id=pid, template_alias="membership",
            reference="order-1", client_user_id=uuid.uuid4().hex,
            signer_enc="not-read-by-webhooks",
            status="sent", created_at=time.time(), updated_at=time.time()))
    return envelope_id


def report(app: t.Any, envelope_id: str, status: str | None, signer_status: str | None = None,
           as_of: float | None = None) -> t.Any:
    """DocuSign reports a status: the state machine queues the events."""
    from gateway.services.envelopes import Reported
    from gateway.services.envelopes import record_upstream

    with app.app_context(), store.transaction() as conn:
        return record_upstream(conn, envelope_id, Reported(status, signer_status,
                                                           as_of or time.time()),
                               source="test", last_event=None, now=time.time())


def events(app: t.Any) -> list[dict[str, t.Any]]:
    """Every event, oldest first."""
    with app.app_context(), store.transaction() as conn:
        rows = conn.execute(sa.select(store.webhook_events).order_by(store.webhook_events.c.id))
        return [dict(r._mapping) for r in rows]


def deliver(app: t.Any, now: float | None = None, **kw: t.Any) -> dict[str, t.Any]:
    from gateway.services import webhook_sender

    with app.app_context():
        return webhook_sender.deliver_due(now, **kw)
