"""The audit trail on PostgreSQL: concurrent writers and sealers, late commits, a killed worker,
and `gateway audit --verify`."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import typing as t
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.conftest import make_gateway
from tests.services.fleet import GATEWAY
from tests.services.fleet import ROOT
from tests.services.fleet import emulator
from tests.services.fleet import running_fleet

pytestmark = pytest.mark.services


@pytest.fixture
def pg_app(tmp_path: Path, pg_url: str) -> t.Iterator[t.Any]:
    app = make_gateway(tmp_path, None, None, DATABASE_URL=pg_url)
    yield app
    from gateway import store

    with app.app_context():
        store.get_engine().dispose()


def _write(app: t.Any, count: int, *, threads: int = 1, seal: bool = True) -> None:
    from gateway.services import audit
    from gateway.services import audit_seal

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
    if seal:
        with app.app_context():
            audit_seal.seal_all()


def _verify(app: t.Any) -> t.Any:
    from gateway import store
    from gateway.services import audit_seal

    with app.app_context(), store.transaction() as conn:
        return audit_seal.verify(conn)


def _sql(app: t.Any, statement: str, **params: t.Any) -> t.Any:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.text(statement), params)


def _ids(app: t.Any) -> list[int]:
    return [row[0] for row in _sql(app, "SELECT id FROM audit_events ORDER BY seal_seq")]


def _seq(app: t.Any, row_id: int) -> int:
    return int(_sql(app, "SELECT seal_seq FROM audit_events WHERE id = :id", id=row_id).scalar())


def _cli_verify(app: t.Any, tmp_path: Path, pg_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_INSTANCE_PATH=str(tmp_path / "instance"), DATABASE_URL=pg_url,
               GATEWAY_MASTER_KEY=app.config["MASTER_KEY"],
               GATEWAY_POLICY_DIR=str(tmp_path / "policies"))
    return subprocess.run([*GATEWAY, "audit", "--verify"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_concurrent_writers_keep_one_chain(pg_app: t.Any) -> None:
    _write(pg_app, 30, threads=8)
    verdict = _verify(pg_app)
    assert verdict.problem is None
    assert verdict.checked == 240
    rows = list(_sql(pg_app, "SELECT prev_hash, row_hash FROM audit_events ORDER BY seal_seq"))
    # one chain, no fork: every hash is the previous row's exactly once
    assert [r.prev_hash for r in rows[1:]] == [r.row_hash for r in rows[:-1]]


def test_verify_names_an_edited_record(pg_app: t.Any, tmp_path: Path, pg_url: str) -> None:
    _write(pg_app, 10)
    ok = _cli_verify(pg_app, tmp_path, pg_url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 10 record(s) sealed and chained")

    target = _ids(pg_app)[3]
    seq = _seq(pg_app, target)
    _sql(pg_app, "UPDATE audit_events SET status = 403 WHERE id = :id", id=target)
    broken = _cli_verify(pg_app, tmp_path, pg_url)
    assert broken.returncode == 1
    assert broken.stderr.strip().splitlines()[-1] == (
        f"error: audit chain broken: sealed record {seq} (id {target}) was edited")

    # rewriting its hash too does not help without the chain key
    _sql(pg_app, "UPDATE audit_events SET row_hash = :h WHERE id = :id", id=target, h="0" * 64)
    assert _verify(pg_app).problem == f"sealed record {seq} (id {target}) was edited"
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
        "error: audit chain broken: record(s) missing between sealed record 5 and sealed "
        f"record 7 (id {ids[6]})")


def test_verify_notices_the_newest_records_deleted(pg_app: t.Any) -> None:
    _write(pg_app, 5)
    ids = _ids(pg_app)
    _sql(pg_app, "DELETE FROM audit_events WHERE id >= :id", id=ids[3])
    assert _verify(pg_app).problem == (
        "record(s) missing after sealed record 3: the chain head names sealed record 5")


def test_concurrent_sealers_never_fork_the_chain(pg_app: t.Any) -> None:
    from gateway.services import audit_seal

    _write(pg_app, 40, threads=4, seal=False)

    def seal() -> None:
        with pg_app.app_context():
            audit_seal.seal_all(batch=7)

    sealers = [threading.Thread(target=seal) for _ in range(4)]
    for sealer in sealers:
        sealer.start()
    for sealer in sealers:
        sealer.join()
    verdict = _verify(pg_app)
    assert (verdict.checked, verdict.unsealed, verdict.problem) == (160, 0, None)


def test_a_lower_id_committed_late_is_sealed_not_skipped(pg_app: t.Any) -> None:
    """Sequence ids are taken at INSERT but seen at COMMIT: id order is not commit order."""
    from gateway import store
    from gateway.services import audit_seal

    with pg_app.app_context():
        late = store.get_engine().connect()
        tx = late.begin()
        late.execute(store.audit_events.insert().values(at=1.0, operation="late"))  # takes an id
        _write(pg_app, 2)  # higher ids, committed and sealed first
        tx.commit()
        late.close()
        assert audit_seal.seal_all() == 1
    order = [r[0] for r in _sql(pg_app, "SELECT operation FROM audit_events ORDER BY seal_seq")]
    assert order == ["test", "test", "late"]
    assert _verify(pg_app).problem is None and _verify(pg_app).checked == 3


def test_a_killed_worker_loses_no_answered_request(tmp_path: Path) -> None:
    """Every answered request is a durable row before the answer leaves: SIGKILL the whole
    instance before anything was sealed, and `gateway audit --verify` still has each one."""
    with emulator() as sandbox, running_fleet(tmp_path, sandbox, {"a": "1000/minute"},
                                              instances=1, workers=1, AUDIT_SEALER=False) as fleet:
        instance = fleet.instances[0]
        before = int(fleet.gateway("audit", "--verify", "--no-seal").stdout.split(", ")[1].split()[0])
        answered = [requests.get(instance.url + "/v1/templates", headers=fleet.headers("a"),
                                 timeout=10).status_code for _ in range(20)]
        assert answered == [200] * 20
        os.killpg(instance.process.pid, signal.SIGKILL)
        instance.process.wait(timeout=10)
        waiting = fleet.gateway("audit", "--verify", "--no-seal").stdout
        assert f", {before + 20} not yet sealed" in waiting
        done = fleet.gateway("audit", "--verify").stdout
        assert done.startswith(f"ok: {before + 20} record(s) sealed and chained "
                               f"({before + 20} sealed now), 0 not yet sealed")
        rows = fleet.gateway("audit", "--partner", "a").stdout.splitlines()
        assert len([r for r in rows if "list_templates" in r]) == 20
