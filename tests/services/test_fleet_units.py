"""The fleet guarantees' building blocks, in one process on SQLite (no services needed).

The same code runs on PostgreSQL and Redis in the `test_services_*` modules; these pin
the details: the emulator's listStatusChanges, reconciling an abandoned idempotent
create, the account budget, the fleet-shared token, Retry-After on upstream errors,
and the audit chain with `gateway audit --verify`.
"""

from __future__ import annotations

import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.conftest import PartnerActions
from tests.conftest import add_partner
from tests.conftest import make_gateway

REST = "/restapi/v2.1/accounts/{account}"


def _problem(resp: t.Any, status: int, code: str) -> dict[str, t.Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    assert resp.get_json()["code"] == code
    return resp.get_json()


# --- the emulator's listStatusChanges ------------------------------------------------


@pytest.fixture
def emulator_client() -> t.Any:
    from sandbox import create_app

    return create_app({"TESTING": True}).test_client()


def _token(client: t.Any) -> tuple[str, str]:
    """A bearer token for the emulator's demo user, minted straight into its state."""
    from sandbox import DEMO_ACCOUNT_ID
    from sandbox import DEMO_USER_ID
    from sandbox import get_state

    state = get_state(client.application)
    with state.lock:
        state.tokens["t0k3n"] = {"user_id": DEMO_USER_ID, "expires": state.now() + 3600}
    return REST.format(account=DEMO_ACCOUNT_ID), "Bearer t0k3n"


def _make(client: t.Any, base: str, auth: str, marker: str | None) -> str:
    from sandbox import MEMBERSHIP_TEMPLATE_ID

    body: dict[str, t.Any] = {
        "templateId": MEMBERSHIP_TEMPLATE_ID, "status": "created",
        "templateRoles": [{"roleName": "Member", "name": "Ada", "email": "ada@example.com"}],
    }
    if marker:
        body["customFields"] = {"textCustomFields": [{"name": "gateway_request", "value": marker}]}
    resp = client.post(base + "/envelopes", json=body, headers={"Authorization": auth})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["envelopeId"]


def test_emulator_lists_envelopes_by_custom_field(emulator_client: t.Any) -> None:
    base, auth = _token(emulator_client)
    wanted = _make(emulator_client, base, auth, "abc")
    _make(emulator_client, base, auth, "other")
    _make(emulator_client, base, auth, None)
    query = "?from_date=2020-01-01T00:00:00Z&custom_field=gateway_request=abc&include=custom_fields"
    resp = emulator_client.get(base + "/envelopes" + query, headers={"Authorization": auth})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["resultSetSize"] == "1"
    assert [e["envelopeId"] for e in body["envelopes"]] == [wanted]
    assert body["envelopes"][0]["customFields"]["textCustomFields"] == [
        {"name": "gateway_request", "value": "abc"}]

    none = emulator_client.get(base + "/envelopes?from_date=2020-01-01&custom_field=gateway_request=x",
                               headers={"Authorization": auth}).get_json()
    assert none["resultSetSize"] == "0" and "envelopes" not in none
    later = emulator_client.get(base + "/envelopes?from_date=2999-01-01T00:00:00Z",
                                headers={"Authorization": auth}).get_json()
    assert later["resultSetSize"] == "0"


@pytest.mark.parametrize("query", ["", "?custom_field=a=b", "?from_date=yesterday",
                                   "?from_date=2020-01-01&custom_field=novalue"])
def test_emulator_list_rejects_bad_queries(emulator_client: t.Any, query: str) -> None:
    base, auth = _token(emulator_client)
    resp = emulator_client.get(base + "/envelopes" + query, headers={"Authorization": auth})
    assert resp.status_code == 400
    assert resp.get_json()["errorCode"] == "INVALID_REQUEST_PARAMETER"


# --- idempotency: an abandoned claim is reconciled, never duplicated ---------------------


BODY = {"template": "membership", "signer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "fields": {"member_number": "12345", "plan": "plus"}, "reference": "order-778"}


def _abandon(app: t.Any, key: str, *, made_upstream: bool) -> str | None:
    """What a worker killed mid-create leaves: a pending claim, maybe an envelope upstream."""
    from gateway import store
    from gateway.services import drafts
    from gateway.services import idempotency
    from gateway.upstream import get_client
    from gateway.web import schemas

    with app.app_context():
        with store.transaction() as conn:
            partner_id = conn.execute(sa.select(store.partners.c.id)).scalar_one()
        digest = idempotency.request_hash(schemas.CreateEnvelopeSchema().load(BODY))
        claim = idempotency.begin(partner_id, key, digest, ttl=3600, lease=30, wait=0)
        assert isinstance(claim, idempotency.Claim) and not claim.recovered
        envelope_id = None
        if made_upstream:
            envelope_id = get_client().create_envelope(
                template_id="5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01", email_subject="Membership",
                role="Member", signer_name="Ada Lovelace", signer_email="ada@example.com",
                client_user_id=drafts._client_user_id(claim), tabs={},
                custom_fields={idempotency.MARKER_FIELD: claim.marker},
            )["envelopeId"]
        with store.transaction() as conn:  # and the worker died a minute ago
            conn.execute(store.idempotency.update().values(created_at=claim.started - 60))
    return envelope_id


def test_retry_adopts_the_envelope_an_abandoned_attempt_made(app: t.Any, partner: PartnerActions,
                                                             sandbox: t.Any) -> None:
    made = _abandon(app, "order-abandoned", made_upstream=True)
    resp = partner.create(headers={"Idempotency-Key": "order-abandoned"})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["envelope_id"] == made
    calls = sandbox.calls()
    assert calls["create_envelope"] == 1 and calls["list_status_changes"] == 1
    assert partner.view(made).status_code == 201  # the derived signer id matches upstream
    again = partner.create(headers={"Idempotency-Key": "order-abandoned"})
    assert again.get_json() == resp.get_json()
    assert sandbox.calls()["list_status_changes"] == 1


def test_retry_creates_when_the_abandoned_attempt_made_nothing(app: t.Any, partner: PartnerActions,
                                                               sandbox: t.Any) -> None:
    _abandon(app, "order-lost", made_upstream=False)
    resp = partner.create(headers={"Idempotency-Key": "order-lost"})
    assert resp.status_code == 201
    calls = sandbox.calls()
    assert calls["create_envelope"] == 1 and calls["list_status_changes"] == 1
    record = sandbox.envelope(resp.get_json()["envelope_id"])
    assert "gateway_request" in {f["name"] for f in record["customFields"]}


def test_a_running_claim_is_waited_for_then_409(tmp_path: Path, sandbox: t.Any,
                                                rsa_private_pem: str) -> None:
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, IDEMPOTENCY_WAIT=0.3)
    partner = PartnerActions(app.test_client(), "example", add_partner(app, "example"))
    from gateway import store
    from gateway.services import idempotency
    from gateway.web import schemas

    with app.app_context():
        with store.transaction() as conn:
            partner_id = conn.execute(sa.select(store.partners.c.id)).scalar_one()
        digest = idempotency.request_hash(schemas.CreateEnvelopeSchema().load(BODY))
        idempotency.begin(partner_id, "busy", digest, ttl=3600, lease=30, wait=0)
    started = time.monotonic()
    resp = partner.create(headers={"Idempotency-Key": "busy"})
    assert time.monotonic() - started >= 0.25
    _problem(resp, 409, "idempotency_in_progress")
    assert 28 <= int(resp.headers["Retry-After"]) <= 30  # until the holder's lease ends
    assert sandbox.calls()["create_envelope"] == 0


def test_timeout_keeps_the_claim_and_says_when_to_retry(tmp_path: Path, sandbox: t.Any,
                                                        rsa_private_pem: str) -> None:
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, DOCUSIGN_READ_TIMEOUT=0.3,
                       DOCUSIGN_TOTAL_BUDGET=1.0, IDEMPOTENCY_LEASE=2.0, IDEMPOTENCY_WAIT=0.1)
    partner = PartnerActions(app.test_client(), "example", add_partner(app, "example"))
    sandbox.fault(mode="delay", delay_ms=600, endpoint="create_envelope")
    slow = partner.create(headers={"Idempotency-Key": "slow"})
    _problem(slow, 504, "upstream_timeout")
    time.sleep(int(slow.headers["Retry-After"]))
    retry = partner.create(headers={"Idempotency-Key": "slow"})
    assert retry.status_code == 201, retry.get_json()
    assert sandbox.calls()["create_envelope"] == 1  # the slow one, adopted


# --- the account budget -----------------------------------------------------------------


def test_account_budget_refuses_before_calling_docusign(tmp_path: Path, sandbox: t.Any,
                                                        rsa_private_pem: str) -> None:
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, ACCOUNT_HOURLY_LIMIT=4,
                       ACCOUNT_RESERVE=0.5)
    client = app.test_client()
    one = PartnerActions(client, "example", add_partner(app, "example"))
    two = PartnerActions(client, "other", add_partner(app, "other"))
    assert one.create().status_code == 201
    assert two.create().status_code == 201
    refused = _problem(one.create(), 429, "account_budget_exhausted")
    assert refused["status"] == 429
    resp = two.create()
    _problem(resp, 429, "account_budget_exhausted")
    assert 0 < int(resp.headers["Retry-After"]) <= 3600
    assert sandbox.calls()["create_envelope"] == 2


def test_account_budget_can_be_turned_off(tmp_path: Path, sandbox: t.Any,
                                          rsa_private_pem: str) -> None:
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, ACCOUNT_HOURLY_LIMIT=0)
    partner = PartnerActions(app.test_client(), "example", add_partner(app, "example"))
    assert [partner.create().status_code for _ in range(3)] == [201] * 3


# --- one token for every process on the database -------------------------------------------


def test_two_processes_share_one_token(tmp_path: Path, sandbox: t.Any, rsa_private_pem: str) -> None:
    from gateway import create_app

    first = make_gateway(tmp_path, sandbox.url, rsa_private_pem)
    key = add_partner(first, "example")
    # a second app on the same database and master key stands in for another worker
    second = create_app(dict(first.config))
    for app in (first, second, first, second):
        assert PartnerActions(app.test_client(), "example", key).create().status_code == 201
    calls = sandbox.calls()
    assert calls["token"] == 1 and calls["userinfo"] == 1


def test_a_refused_token_is_dropped_for_everyone(tmp_path: Path, sandbox: t.Any, sandbox_server: t.Any,
                                                 rsa_private_pem: str) -> None:
    from gateway import create_app
    from sandbox import get_state

    first = make_gateway(tmp_path, sandbox.url, rsa_private_pem)
    key = add_partner(first, "example")
    second = create_app(dict(first.config))
    for app in (first, second):
        assert PartnerActions(app.test_client(), "example", key).create().status_code == 201
    state = get_state(sandbox_server.app)
    with state.lock:  # DocuSign drops the shared token early; both processes still hold it
        state.tokens.clear()
    for app in (first, second):
        assert PartnerActions(app.test_client(), "example", key).create().status_code == 201
    # the second, refused too, found the first one's replacement instead of fetching its own
    assert sandbox.calls()["token"] == 2


# --- Retry-After on upstream errors is DocuSign's, not the partner window's -------------------


def test_upstream_retry_after_survives_the_rate_limiter(partner: PartnerActions, sandbox: t.Any) -> None:
    sandbox.fault(mode="status", status=503, retry_after=7, endpoint="create_envelope")
    resp = partner.create()
    _problem(resp, 502, "upstream_unavailable")
    assert resp.headers["Retry-After"] == "7"
    sandbox.fault(mode="status", status=500, endpoint="create_envelope")
    assert "Retry-After" not in _problem_headers(partner.create(), 502)


def _problem_headers(resp: t.Any, status: int) -> t.Any:
    assert resp.status_code == status
    return resp.headers


def test_failed_status_poll_asks_again_on_retry(tmp_path: Path, sandbox: t.Any,
                                                rsa_private_pem: str) -> None:
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, STATUS_MIN_POLL_INTERVAL=0)
    partner = PartnerActions(app.test_client(), "example", add_partner(app, "example"))
    envelope_id = partner.create().get_json()["envelope_id"]
    sandbox.fault(mode="status", status=503, endpoint="get_envelope", count=4)
    _problem(partner.status(envelope_id), 502, "upstream_unavailable")
    assert partner.status(envelope_id).status_code == 200
    assert sandbox.calls()["get_envelope"] == 5


# --- the audit chain on SQLite, and `gateway audit --verify` --------------------------------


def _cli(owner: CliRunner, *args: str) -> t.Any:
    from gateway.cli import cli

    return owner.invoke(cli, list(args), catch_exceptions=False)


def test_audit_verify_from_the_command_line(owner: CliRunner, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import create_app

    monkeypatch.setenv("GATEWAY_AUDIT_SEALER", "false")  # `--verify` seals, not a thread

    assert _cli(owner, "init").exit_code == 0
    fresh = _cli(owner, "audit", "--verify")
    assert fresh.exit_code == 0 and fresh.output.startswith("ok: 0 record(s)")
    key = _cli(owner, "partners", "add", "example").stdout.strip()
    client = create_app().test_client()
    for _ in range(4):
        client.get("/v1/templates", headers={"Authorization": f"Bearer {key}"})
    client.get("/v1/nowhere", headers={"Authorization": f"Bearer {key}"})  # counted, not a row
    ok = _cli(owner, "audit", "--verify")
    assert ok.exit_code == 0 and ok.output.startswith(
        "ok: 4 record(s) sealed and chained (4 sealed now), 0 not yet sealed; head record 4 ")

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'instance' / 'gateway.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET partner = 'mallory' WHERE id = 2"))
    broken = _cli(owner, "audit", "--verify")
    assert broken.exit_code == 1
    assert broken.output.strip() == "error: audit chain broken: sealed record 2 (id 2) was edited"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET partner = 'example' WHERE id = 2"))
        conn.execute(sa.text("DELETE FROM audit_events WHERE id = 3"))
    engine.dispose()
    gone = _cli(owner, "audit", "--verify")
    assert gone.output.strip() == (
        "error: audit chain broken: record(s) missing between sealed record 2 and sealed "
        "record 4 (id 4)")
