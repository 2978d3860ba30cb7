"""`gateway docusign go-live-check`: one line per production requirement, ok or the fix."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.services import golive
from tests.golive.helpers import change_settings
from tests.golive.helpers import lines
from tests.golive.helpers import run


def record_connect(status: int = 200) -> None:
    from gateway import create_app
    from gateway.services import audit

    app = create_app()
    with app.app_context():
        audit.record(operation="connect_event", status=status, method="POST",
                     path="/webhooks/docusign")
    app.extensions["store"].dispose()


@pytest.fixture
def production(configured: CliRunner, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The emulator standing in for a production account that meets every requirement."""
    monkeypatch.setattr(golive, "PRODUCTION_AUTH_HOST", "127.0.0.1")
    change_settings(production=True, sandbox=False)
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "https://sign.example.com")
    run(configured, "docusign", "connect-secret", "add", "--generate")
    record_connect()
    return configured


def by_name(out: list[str]) -> dict[str, str]:
    rows = {}
    for line in out:
        if line.startswith(("ok ", "FAIL ")):
            rows[line[6:].split(":", 1)[0]] = line
    return rows


def test_every_requirement_met(production: CliRunner) -> None:
    out = lines(run(production, "docusign", "go-live-check", "--workers", "1"))
    assert [line.split(":", 1)[0] for line in out] == [
        "ok    production auth host", "ok    GATEWAY_PUBLIC_URL", "ok    consent",
        "ok    policies", "ok    Connect", "ok    master key", "ok    workers"]
    assert "2 template(s) pass `gateway policies check --upstream`" in out[3]
    assert "1 signed message(s) in the last 7 days" in out[4]


def test_http_public_url_in_production(production: CliRunner,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PUBLIC_URL", "http://sign.example.com")
    out = lines(run(production, "docusign", "go-live-check", "--workers", "1", code=1))
    failed = [line for line in out if line.startswith("FAIL")]
    assert failed == ["FAIL  GATEWAY_PUBLIC_URL: http://sign.example.com is not https: set it to "
                      "the https URL signers' browsers reach the gateway at (DocuSign sends them "
                      "back there)"]
    assert out[-1] == "1 of 7 requirements not met"


def test_the_emulator_is_not_production(configured: CliRunner) -> None:
    rows = by_name(lines(run(configured, "docusign", "go-live-check", code=1)))
    assert rows["production auth host"].startswith(
        "FAIL  production auth host: the gateway is wired to the emulator: run `gateway docusign "
        "configure --integration-key IK")
    assert rows["GATEWAY_PUBLIC_URL"].startswith("FAIL  GATEWAY_PUBLIC_URL: not set")
    assert rows["Connect"].startswith("FAIL  Connect: no HMAC secret")
    assert rows["database"].startswith("FAIL  database: SQLite cannot be shared by 2 workers")
    assert rows["rate limit storage"].startswith("FAIL  rate limit storage: memory://")


def test_demo_host_is_not_production(production: CliRunner) -> None:
    change_settings(production=False)
    rows = by_name(lines(run(production, "docusign", "go-live-check", "--workers", "1", code=1)))
    assert rows["production auth host"].startswith("FAIL  production auth host: the auth host is "
                                                   "127.0.0.1 (demo)")


def test_consent_revoked_fails_consent_and_skips_policies(production: CliRunner,
                                                          sandbox: t.Any) -> None:
    import requests

    info = requests.get(sandbox.url + "/_sandbox/info", timeout=5).json()
    sandbox.post("/_sandbox/consent", {"integration_key": info["integration_key"],
                                       "user_id": info["user_id"], "granted": False})
    rows = by_name(lines(run(production, "docusign", "go-live-check", "--workers", "1", code=1)))
    assert rows["consent"].startswith("FAIL  consent: JWT grant: consent required")
    assert rows["policies"] == "FAIL  policies: not checked: the consent line must be ok first"


def test_a_policy_error_fails_the_policies_line(production: CliRunner, tmp_path: Path) -> None:
    policy = tmp_path / "policies" / "example.toml"
    policy.write_text(policy.read_text().replace('role = "Signer"', 'role = "Signr"'))
    rows = by_name(lines(run(production, "docusign", "go-live-check", "--workers", "1", code=1)))
    assert rows["policies"].startswith("FAIL  policies: 1 problem(s), first: example/nda: role "
                                       "'Signr' is not a signer role")


def test_no_signed_connect_message_recently(production: CliRunner, tmp_path: Path) -> None:
    from gateway import create_app
    from gateway import store

    app = create_app()
    with app.app_context(), store.transaction() as conn:
        conn.execute(store.audit_events.update().values(at=1.0))  # long ago
    app.extensions["store"].dispose()
    record_connect(status=401)  # a refused (unsigned) message does not count
    rows = by_name(lines(run(production, "docusign", "go-live-check", "--workers", "1",
                             "--connect-days", "3", code=1)))
    assert rows["Connect"].startswith("FAIL  Connect: no signed Connect message received in the "
                                      "last 3 days")


def test_master_key_readable_by_others(production: CliRunner, tmp_path: Path) -> None:
    key = tmp_path / "instance" / "master.key"
    os.chmod(key, 0o644)
    # the gateway refuses to open its vault with such a key, so nothing else can be checked
    out = lines(run(production, "docusign", "go-live-check", "--workers", "1", code=1))
    assert out == [f"error: {key} is readable by others; run `chmod 600 {key}`"]
    assert golive.master_key("", str(tmp_path / "instance")).text == (
        f"{key} has mode 0644, readable by others: `chmod 600 {key}`")
    assert golive.master_key("k", str(tmp_path / "instance")).ok


def test_several_workers_need_postgres_and_redis() -> None:
    assert all(r.ok for r in golive.shared_state("postgresql+psycopg://u@db/gw",
                                                 "redis://cache:6379/0", workers=4))
    db, limiter = golive.shared_state("", "memory://", workers=4)
    assert not db.ok and not limiter.ok and "4 workers allow 4x" in limiter.text
    assert golive.shared_state("sqlite:///x.db", "memory://", workers=1)[0].ok
