"""The audit trail's hash chain on PostgreSQL: concurrent writers, and `gateway audit --verify`."""

from __future__ import annotations

import os
import subprocess
import threading
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import make_gateway
from tests.services.fleet import GATEWAY

pytestmark = pytest.mark.services


@pytest.fixture
def pg_app(tmp_path: Path, pg_url: str) -> t.Iterator[t.Any]:
    app = make_gateway(tmp_path, None, None, DATABASE_URL=pg_url)
    yield app
    from gateway import store

    with app.app_context():
        store.get_engine().dispose()


def _write(app: t.Any, count: int, *, threads: int = 1) -> None:
    from gateway.services import audit

    def work(n: int) -> None:
        with app.app_context():
            for i in range(count):
                audit.record(operation="test", partner=f"p{n}", method="GET", path=f"/v1/x/{i}",
                             status=200, code="ok", latency_ms=1.5 + i, request_id=f"r{n}-{i}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _verify(app: t.Any) -> t.Any:
    from gateway import store
    from gateway.services import audit

    with app.app_context(), store.transaction() as conn:
        return audit.verify(conn)


def _sql(app: t.Any, statement: str, **params: t.Any) -> t.Any:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.text(statement), params)


def _ids(app: t.Any) -> list[int]:
    return [row[0] for row in _sql(app, "SELECT id FROM audit_events ORDER BY id")]


def _cli_verify(app: t.Any, tmp_path: Path, pg_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_INSTANCE_PATH=str(tmp_path / "instance"), DATABASE_URL=pg_url,
               GATEWAY_MASTER_KEY=app.config["MASTER_KEY"],
               GATEWAY_POLICY_DIR=str(tmp_path / "policies"))
    return subprocess.run([GATEWAY, "audit", "--verify"], env=env, capture_output=True, text=True,
                          timeout=60)


def test_concurrent_writers_keep_one_chain(pg_app: t.Any) -> None:
    _write(pg_app, 30, threads=8)
    verdict = _verify(pg_app)
    assert verdict.problem is None
    assert verdict.checked == 240
    rows = list(_sql(pg_app, "SELECT prev_hash, row_hash FROM audit_events ORDER BY id"))
    # one chain, no fork: every hash is the previous row's exactly once
    assert [r.prev_hash for r in rows[1:]] == [r.row_hash for r in rows[:-1]]


def test_verify_names_an_edited_record(pg_app: t.Any, tmp_path: Path, pg_url: str) -> None:
    _write(pg_app, 10)
    ok = _cli_verify(pg_app, tmp_path, pg_url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 10 record(s) chained")

    target = _ids(pg_app)[3]
    _sql(pg_app, "UPDATE audit_events SET status = 403 WHERE id = :id", id=target)
    broken = _cli_verify(pg_app, tmp_path, pg_url)
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines()[-1] == (
        f"error: audit chain broken: record {target} was edited")

    # rewriting its hash too does not help without the chain key
    _sql(pg_app, "UPDATE audit_events SET row_hash = :h WHERE id = :id", id=target, h="0" * 64)
    assert _verify(pg_app).problem == f"record {target} was edited"
    _sql(pg_app, "UPDATE audit_events SET status = 200, row_hash = "
                 "(SELECT prev_hash FROM audit_events WHERE id = :next) WHERE id = :id",
         id=target, next=_ids(pg_app)[4])
    assert _verify(pg_app).problem is None  # put back exactly as it was: intact again


def test_verify_names_a_deleted_record(pg_app: t.Any, tmp_path: Path, pg_url: str) -> None:
    _write(pg_app, 10)
    ids = _ids(pg_app)
    _sql(pg_app, "DELETE FROM audit_events WHERE id = :id", id=ids[5])
    broken = _cli_verify(pg_app, tmp_path, pg_url)
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines()[-1] == (
        f"error: audit chain broken: record(s) missing between record {ids[4]} and record {ids[6]}")


def test_verify_notices_the_newest_records_deleted(pg_app: t.Any) -> None:
    _write(pg_app, 5)
    ids = _ids(pg_app)
    _sql(pg_app, "DELETE FROM audit_events WHERE id >= :id", id=ids[3])
    assert _verify(pg_app).problem == (
        f"record(s) missing after record {ids[2]}: the chain head names record {ids[4]}")
