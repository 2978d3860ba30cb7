"""A webhook sender SIGKILLed mid-delivery loses nothing (PostgreSQL, real processes).

`gateway webhooks run` posts an event to a receiver that stalls its answer; the process
is killed with SIGKILL while the POST is in flight. Its lease keeps any other sender off
until it runs out; then a second `gateway webhooks run` sends the event again, with the
same `webhook-id`. The receiver saw it twice, deduplicates to once, and every event ends
`delivered`: at least once, nothing lost.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

from examples.partner_site.hooks import StatusBook
from gateway import store
from gateway.services import webhook_sender
from tests.conftest import ROOT
from tests.conftest import add_partner
from tests.embedded import wait_for
from tests.webhooks.conftest import deliver
from tests.webhooks.conftest import events
from tests.webhooks.conftest import new_envelope
from tests.webhooks.conftest import report
from tests.webhooks.conftest import rotate_secret
from tests.webhooks.conftest import write_policy

ENTRY = "from gateway.cli import main; main()"


class StallingReceiver:
    """Records every POST; the first one gets no answer until `release` is set."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if len(receiver.requests) == 1:
                    receiver.release.wait(60)  # the sender dies while waiting for this
                try:
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the killed sender's socket is gone

            def log_message(self, *args: t.Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        return [h["webhook-id"] for h, _ in self.requests]

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> t.Iterator[StallingReceiver]:
    rec = StallingReceiver()
    yield rec
    rec.stop()


@pytest.fixture
def pg_app(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Any:
    """A gateway on its own PostgreSQL schema, prepared as `gateway init` would."""
    from gateway import create_app
    from gateway.services import partner_keys as keys
    from gateway.services import signing_keys

    (tmp_path / "policies").mkdir()
    monkeypatch.setenv("GATEWAY_INSTANCE_PATH", str(tmp_path / "instance"))
    app = create_app({"TESTING": True, "DATABASE_URL": pg_url,
                      "MASTER_KEY": Fernet.generate_key().decode("ascii"),
                      "POLICY_DIR": str(tmp_path / "policies"),
                      "PUBLIC_URL": "http://gateway.test", "RATELIMIT_STORAGE_URI": "memory://"})
    with app.app_context():
        store.init_db(store.get_engine())
        with store.transaction() as conn:
            keys.ensure_pepper(conn)
            signing_keys.ensure_keys(conn)
    yield app
    app.extensions["store"].dispose()


def sender_process(app: t.Any, tmp_path: Path, timeout: float) -> subprocess.Popen[str]:
    """`gateway webhooks run` as its own process, on the same database and policies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_INSTANCE_PATH": str(tmp_path / "instance"),
            "GATEWAY_POLICY_DIR": app.config["POLICY_DIR"],
            "GATEWAY_MASTER_KEY": app.config["MASTER_KEY"],
            "DATABASE_URL": app.config["DATABASE_URL"],
            "RATELIMIT_STORAGE_URI": "memory://",
            "GATEWAY_WEBHOOK_TIMEOUT": json.dumps(timeout),
            "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", ENTRY, "webhooks", "run", "--interval", "0.1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def lease_holder(app: t.Any) -> tuple[str, float]:
    with app.app_context(), store.transaction() as conn:
        row = conn.execute(sa.select(store.settings.c.value, store.settings.c.updated_at)
                           .where(store.settings.c.name == webhook_sender.LEASE_SETTING)).one()
    return json.loads(row.value), float(row.updated_at)


def test_sigkill_during_delivery_loses_nothing(pg_app: t.Any, receiver: StallingReceiver,
                                               tmp_path: Path) -> None:
    add_partner(pg_app, "example")
    write_policy(pg_app, receiver.url)
    secret = rotate_secret(pg_app)
    report(pg_app, new_envelope(pg_app), "completed")  # signer_completed, then completed
    first, second = events(pg_app)

    doomed = sender_process(pg_app, tmp_path, timeout=30.0)
    try:
        wait_for(lambda: receiver.requests, timeout=30)  # the POST is in flight, unanswered
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.communicate(timeout=10)
    assert doomed.returncode == -signal.SIGKILL
    assert receiver.ids() == [first["event_id"]]
    # nothing was recorded as delivered: the answer never reached the sender
    assert [(e["state"], e["attempts"]) for e in events(pg_app)] == [("pending", 0)] * 2

    # the dead sender's lease still stands: no other sender sends meanwhile
    owner, until = lease_holder(pg_app)
    assert owner != webhook_sender.OWNER and until > time.time()
    assert deliver(pg_app)["lease"] is False
    assert len(receiver.requests) == 1
    # its lease runs out (WEBHOOK_TIMEOUT + 30 s; fast-forwarded here rather than waited)
    with pg_app.app_context(), store.transaction() as conn:
        conn.execute(store.settings.update()
                     .where(store.settings.c.name == webhook_sender.LEASE_SETTING)
                     .values(updated_at=time.time() - 1))

    survivor = sender_process(pg_app, tmp_path, timeout=5.0)
    try:
        wait_for(lambda: all(e["state"] == "delivered" for e in events(pg_app)), timeout=60)
    finally:
        survivor.send_signal(signal.SIGTERM)  # `webhooks run` stops cleanly on SIGTERM
        out, err = survivor.communicate(timeout=20)
    assert survivor.returncode == 0, err
    assert "Traceback" not in err

    ids = receiver.ids()
    assert ids == [first["event_id"], first["event_id"], second["event_id"]]
    for headers, body in receiver.requests:  # every attempt genuinely signed
        Webhook(secret).verify(body, headers)
    book = StatusBook()
    applied = [book.apply_webhook(h["webhook-id"], json.loads(b)["data"]["envelope_id"],
                                  json.loads(b)["data"]["status"],
                                  json.loads(b)["data"]["signer_status"], at=time.time())
               for h, b in receiver.requests]
    assert applied == [True, False, True]  # deduplicated by webhook-id: each event once
    final = events(pg_app)
    assert [(e["event_id"], e["state"]) for e in final] == [
        (first["event_id"], "delivered"), (second["event_id"], "delivered")]
    # the killed attempt never counted: each event delivered at its first recorded attempt
    assert [e["attempts"] for e in final] == [1, 1]
