"""Round trips per partner request, counted (never timed): PostgreSQL's and Redis's."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import redis

from tests.conftest import add_partner
from tests.conftest import make_gateway
from tests.services.fleet import free_port

pytestmark = pytest.mark.services


@pytest.fixture
def private_redis(tmp_path: Path) -> t.Iterator[redis.Redis]:
    """A redis-server of the test's own: its command counter counts only our requests."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield redis.Redis(port=port)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _envelope(app: t.Any, partner: str) -> str:
    """A fresh envelope row of the partner's: a status read is served from the record."""
    import sqlalchemy as sa

    from gateway import store

    envelope_id = str(uuid.uuid4())
    now = time.time()
    with app.app_context(), store.transaction() as conn:
        partner_id = conn.execute(sa.select(store.partners.c.id)
                                  .where(store.partners.c.name == partner)).scalar_one()
        conn.execute(store.envelopes.insert().values(
            envelope_id=envelope_id, partner_id=partner_id, template_alias="membership",
            client_user_id="1", signer_enc="x", status="sent", created_at=now, updated_at=now))
    return envelope_id


def _round_trips(folder: Path) -> int:
    return sum(line.startswith("B\t") and "\tReadyForQuery" in line
               for trace in folder.glob("*.trace") for line in trace.read_text().splitlines())


def test_status_read_round_trips(tmp_path: Path, pg_url: str, private_redis: redis.Redis,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    traces = tmp_path / "traces"
    traces.mkdir()
    port = private_redis.connection_pool.connection_kwargs["port"]
    app = make_gateway(tmp_path, None, None, DATABASE_URL=pg_url, DB_TRACE_DIR=str(traces),
                       RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{port}/0")
    key = add_partner(app, "example")
    envelope_id = _envelope(app, "example")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get(f"/v1/envelopes/{envelope_id}", headers=headers).status_code == 200  # warm
    sent: list[int] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self: t.Any, command: t.Any, check_health: bool = True) -> None:
        sent.append(1)  # one request to Redis (a pipeline would be one too)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    db_before = _round_trips(traces)
    reads = 10
    for _ in range(reads):
        resp = client.get(f"/v1/envelopes/{envelope_id}", headers=headers)
        assert resp.status_code == 200 and resp.headers["X-RateLimit-Remaining"]
    db = _round_trips(traces) - db_before
    redis_commands = len(sent)
    assert 0 < db / reads <= 4, f"{db / reads} PostgreSQL round trips per status read"
    assert redis_commands / reads == 1, f"{redis_commands / reads} Redis round trips per request"
    from gateway import store

    with app.app_context():
        store.get_engine().dispose()
