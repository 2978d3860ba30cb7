"""The sealer on SQLite: rows wait unsealed, get chained in seal order, and verify sees both."""

from __future__ import annotations

import time
import typing as t

import sqlalchemy as sa
from click.testing import CliRunner

from tests.conftest import make_gateway


def _record(app: t.Any, count: int) -> None:
    from gateway.services import audit

    with app.app_context():
        for i in range(count):
            audit.record(operation="test", partner="p", method="GET", path=f"/v1/x/{i}",
                         status=200, code="ok", latency_ms=1.5, request_id=f"r{i}")


def _verify(app: t.Any) -> t.Any:
    from gateway import store
    from gateway.services import audit_seal

    with app.app_context(), store.transaction() as conn:
        return audit_seal.verify(conn)


def _seal(app: t.Any, batch: int = 1000) -> int:
    from gateway.services import audit_seal

    with app.app_context():
        return audit_seal.seal_all(batch)


def test_a_request_writes_a_row_the_sealer_chains(tmp_path: t.Any) -> None:
    app = make_gateway(tmp_path, None, None)
    assert app.test_client().get("/nope", headers={"Authorization": "Bearer x"}).status_code == 404
    _record(app, 7)
    before = _verify(app)
    assert (before.checked, before.unsealed, before.problem) == (0, 7, None)
    assert _seal(app, batch=3) == 7
    after = _verify(app)
    assert (after.checked, after.unsealed, after.head_seq, after.problem) == (7, 0, 7, None)


def test_rows_are_chained_in_seal_order_not_id_order(tmp_path: t.Any) -> None:
    """A row that becomes visible after a higher id was sealed is sealed next, not skipped."""
    from gateway import store

    app = make_gateway(tmp_path, None, None)
    _record(app, 3)
    with app.app_context(), store.transaction() as conn:
        # as if id 2 had committed late: hide it from the first batch
        conn.execute(sa.text("UPDATE audit_events SET seal_seq = -1 WHERE id = 2"))
    _seal(app)
    with app.app_context(), store.transaction() as conn:
        conn.execute(sa.text("UPDATE audit_events SET seal_seq = NULL WHERE id = 2"))
    assert _seal(app) == 1
    with app.app_context(), store.transaction() as conn:
        order = conn.execute(sa.text("SELECT id FROM audit_events ORDER BY seal_seq")).scalars().all()
    assert order == [1, 3, 2]
    assert _verify(app).problem is None and _verify(app).checked == 3


def test_verify_names_an_edited_sealed_record(tmp_path: t.Any) -> None:
    from gateway import store

    app = make_gateway(tmp_path, None, None)
    _record(app, 4)
    _seal(app)
    with app.app_context(), store.transaction() as conn:
        conn.execute(sa.text("UPDATE audit_events SET status = 403 WHERE id = 2"))
    assert _verify(app).problem == "sealed record 2 (id 2) was edited"


def test_cli_seals_and_reports(owner: CliRunner, monkeypatch: t.Any) -> None:
    from gateway import create_app
    from gateway.cli import cli

    monkeypatch.setenv("GATEWAY_AUDIT_SEALER", "false")  # the serving sealer would seal them
    assert owner.invoke(cli, ["init"]).exit_code == 0
    key = owner.invoke(cli, ["partners", "add", "example"]).stdout.strip().splitlines()[-1]
    client = create_app().test_client()
    for _ in range(3):
        client.get("/v1/templates", headers={"Authorization": f"Bearer {key}"})
    waiting = owner.invoke(cli, ["audit", "--verify", "--no-seal"])
    assert waiting.exit_code == 0, waiting.output
    assert "ok: 0 record(s) sealed and chained (0 sealed now), 3 not yet sealed" in waiting.output
    sealed = owner.invoke(cli, ["audit", "seal"])
    assert sealed.output.strip() == "ok: 3 record(s) sealed"
    done = owner.invoke(cli, ["audit", "--verify"])
    assert "ok: 3 record(s) sealed and chained (0 sealed now), 0 not yet sealed" in done.output


def test_a_serving_process_runs_the_sealer(owner: CliRunner) -> None:
    from gateway import create_app
    from gateway.cli import cli

    assert owner.invoke(cli, ["init"]).exit_code == 0
    key = owner.invoke(cli, ["partners", "add", "example"]).stdout.strip().splitlines()[-1]
    app = create_app()
    app.test_client().get("/v1/templates", headers={"Authorization": f"Bearer {key}"})
    sealer = app.extensions["audit_sealer_stop"]
    try:
        # the sealer seals on its own (an event to wait for, not a speed to assert)
        for _ in range(200):
            if "0 not yet sealed" in owner.invoke(cli, ["audit", "--verify", "--no-seal"]).output:
                break
            time.sleep(0.05)
        verdict = owner.invoke(cli, ["audit", "--verify", "--no-seal"]).output
        assert verdict.startswith("ok: 1 record(s) sealed"), verdict
    finally:
        sealer.set()
