"""The Connect listener: HMAC verification, idempotent and ordered status updates."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import typing as t

import pytest
import requests
import sqlalchemy as sa

from gateway.services import connect_messages
from gateway.services.connect_messages import MAX_SIGNATURE_HEADERS
from gateway.services.connect_messages import sign
from gateway.services.connect_messages import signature_headers
from gateway.services.connect_messages import verify
from gateway.services.envelopes import parse_time
from tests.conftest import PartnerActions
from tests.conftest import SandboxControl
from tests.conftest import as_public_host
from tests.embedded import act
from tests.embedded import wait_for

SECRET = "connect-secret-one-0123456789"
SECRET_2 = "connect-secret-two-9876543210"
PATH = "/webhooks/docusign"


# --- sign / verify (pure) ---------------------------------------------------------


def test_sign_is_docusigns_hmac() -> None:
    body = b'{"event": "envelope-completed"}\r\n'
    expected = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    assert sign(SECRET, body) == expected


def test_sign_matches_the_emulator() -> None:
    from sandbox.connect import sign as sandbox_sign

    body = json.dumps({"x": "é"}, indent=2, ensure_ascii=False).encode()
    assert sign("sëcret-ünicode-0123", body) == sandbox_sign("sëcret-ünicode-0123", body)


def test_verify_accepts_any_header_for_any_secret() -> None:
    body = b"{}"
    assert verify([SECRET], body, {"X-DocuSign-Signature-1": sign(SECRET, body)})
    # DocuSign signs with each active secret, one header each: ours may be any of them
    headers = {"X-DocuSign-Signature-1": sign("unknown-to-us-000000", body),
               "X-DocuSign-Signature-2": sign(SECRET_2, body)}
    assert verify([SECRET, SECRET_2], body, headers)
    assert verify([SECRET_2], body, [("x-docusign-signature-7", sign(SECRET_2, body))])


@pytest.mark.parametrize("headers", [
    {},
    {"X-DocuSign-Signature-1": ""},
    {"X-DocuSign-Signature-1": "not base64 at all"},
    {"X-DocuSign-Signature-1": "é\u2603"},
    {"X-DocuSign-Signature": sign(SECRET, b"{}")},          # no number
    {"X-DocuSign-Signature-x": sign(SECRET, b"{}")},
    {"X-Signature-1": sign(SECRET, b"{}")},
    {"X-DocuSign-Signature-1": sign(SECRET_2, b"{}")},      # a secret we do not hold
    {"X-DocuSign-Signature-1": sign(SECRET, b"{} ")},       # another body
])
def test_verify_rejects(headers: dict[str, str]) -> None:
    assert not verify([SECRET], b"{}", headers)


def test_verify_with_no_secrets_rejects_everything() -> None:
    assert not verify([], b"{}", {"X-DocuSign-Signature-1": sign(SECRET, b"{}")})


def test_the_number_of_signature_headers_looked_at_is_capped() -> None:
    body = b"{}"
    headers = [(f"X-DocuSign-Signature-{n}", "junk") for n in range(1, MAX_SIGNATURE_HEADERS + 1)]
    headers.append((f"X-DocuSign-Signature-{MAX_SIGNATURE_HEADERS + 1}", sign(SECRET, body)))
    assert len(signature_headers(headers)) == MAX_SIGNATURE_HEADERS
    assert not verify([SECRET], body, headers)


def test_parse_time_reads_docusign_dates() -> None:
    assert parse_time("2019-11-05T11:01:37.5966414Z") == pytest.approx(
        dt.datetime(2019, 11, 5, 11, 1, 37, 596641, tzinfo=dt.UTC).timestamp())
    assert parse_time("2019-11-05T11:01:37") == parse_time("2019-11-05T11:01:37Z")
    for bad in (None, "", "yesterday", 12):
        assert parse_time(bad) is None


# --- the endpoint ------------------------------------------------------------------


@pytest.fixture
def secrets_(app: t.Any) -> list[str]:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        connect_messages.add_secret(conn, SECRET, now=0.0)
        connect_messages.add_secret(conn, SECRET_2, now=1.0)
    return [SECRET, SECRET_2]


def stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(1_700_000_000 + seconds, dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.%f0Z")


def message(envelope_id: str, status: str, at: float, *, retry: int = 0,
            event: str | None = None, summary: bool = True) -> dict[str, t.Any]:
    data: dict[str, t.Any] = {"accountId": "acct", "userId": "user", "envelopeId": envelope_id}
    if summary:
        data["envelopeSummary"] = {"envelopeId": envelope_id, "status": status,
                                   "statusChangedDateTime": stamp(at)}
    return {"event": event or f"envelope-{status}", "apiVersion": "v2.1", "retryCount": retry,
            "configurationId": 1, "generatedDateTime": stamp(at + 0.5), "data": data}


def post(client: t.Any, msg: t.Any, *, secret: str | None = SECRET, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> t.Any:
    body = raw if raw is not None else json.dumps(msg, indent=2).encode()
    sent = {"Content-Type": "application/json"}
    if secret is not None:
        sent["X-DocuSign-Signature-1"] = sign(secret, body)
    return client.post(PATH, data=body, headers=sent | (headers or {}))


def row(app: t.Any, env_id: str) -> t.Any:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.select(store.envelopes)
                            .where(store.envelopes.c.envelope_id == env_id)).first()


def upstream_rows(app: t.Any) -> int:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.select(sa.func.count())
                            .select_from(store.envelope_upstream)).scalar_one()


def audit_rows(app: t.Any) -> list[dict[str, t.Any]]:
    from gateway import store
    from gateway.services import audit

    with app.app_context(), store.transaction() as conn:
        return [r for r in audit.query(conn) if r["path"] == PATH]


@pytest.fixture
def env_id(partner: PartnerActions) -> str:
    return str(partner.create().get_json()["envelope_id"])


def unauthorized(resp: t.Any) -> dict[str, t.Any]:
    assert resp.status_code == 401
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == "invalid_signature"
    assert "WWW-Authenticate" not in resp.headers
    return body


def test_unsigned_and_forged_messages_are_401_and_change_nothing(app, client, secrets_,
                                                                 env_id) -> None:
    before = row(app, env_id)
    msg = message(env_id, "completed", 10)
    unsigned = unauthorized(post(client, msg, secret=None))
    forged = unauthorized(post(client, msg, secret="guessed-secret-000000"))
    body = json.dumps(msg).encode()
    replayed_header = unauthorized(post(client, None, raw=body + b" ", headers={
        "X-DocuSign-Signature-1": sign(SECRET, body)}))
    # one uniform answer: nothing tells a prober what was wrong
    assert {unsigned["detail"], forged["detail"], replayed_header["detail"]} == {
        "The message signature is missing or invalid."}
    after = row(app, env_id)
    assert (after.status, after.last_event, after.updated_at) == (
        before.status, before.last_event, before.updated_at)
    assert upstream_rows(app) == 0
    rows = audit_rows(app)
    assert [(r["status"], r["code"], r["partner"], r["envelope_id"]) for r in rows] == [
        (401, "invalid_signature", None, None)] * 3


def test_no_configured_secret_refuses_everything(app, client, env_id) -> None:
    unauthorized(post(client, message(env_id, "completed", 10)))
    assert row(app, env_id).status == "created"


def test_signed_event_updates_status_and_status_reads_need_no_poll(app, client, partner, secrets_,
                                                                   env_id, sandbox) -> None:
    resp = post(client, message(env_id, "completed", 10), secret=SECRET_2)
    assert resp.status_code == 200
    assert resp.get_json() == {"received": True, "applied": True}
    record = row(app, env_id)
    assert (record.status, record.last_event) == ("completed", "envelope-completed")
    status = partner.status(env_id).get_json()
    assert (status["status"], status["last_event"]) == ("completed", "envelope-completed")
    assert sandbox.calls()["get_envelope"] == 0
    (audited,) = audit_rows(app)
    assert (audited["status"], audited["code"], audited["partner"], audited["envelope_id"]) == (
        200, "ok", "example", env_id)


def test_non_final_status_is_fresh_and_served_without_polling(app, client, partner, secrets_,
                                                              env_id, sandbox) -> None:
    assert post(client, message(env_id, "delivered", 10)).status_code == 200
    assert partner.status(env_id).get_json()["status"] == "delivered"
    assert sandbox.calls()["get_envelope"] == 0


def test_redelivery_is_idempotent(app, client, secrets_, env_id) -> None:
    assert post(client, message(env_id, "delivered", 10)).get_json()["applied"] is True
    first = row(app, env_id)
    again = post(client, message(env_id, "delivered", 10, retry=3))
    assert again.status_code == 200
    assert again.get_json()["applied"] is False
    assert row(app, env_id).updated_at == first.updated_at
    assert audit_rows(app)[-1]["code"] == "ignored_stale"


def test_stale_event_is_ignored(app, client, secrets_, env_id) -> None:
    post(client, message(env_id, "delivered", 20))
    late = post(client, message(env_id, "sent", 10))
    assert late.get_json()["applied"] is False
    assert row(app, env_id).status == "delivered"


def test_a_final_status_never_moves_back(app, client, secrets_, env_id) -> None:
    post(client, message(env_id, "completed", 10))
    # even a newer-looking non-final event does not undo a completion
    assert post(client, message(env_id, "delivered", 99)).get_json()["applied"] is False
    assert post(client, message(env_id, "declined", 120)).get_json()["applied"] is False
    assert row(app, env_id).status == "completed"


def test_event_name_is_used_when_there_is_no_summary(app, client, secrets_, env_id) -> None:
    assert post(client, message(env_id, "voided", 10, summary=False)).get_json()["applied"]
    assert row(app, env_id).status == "voided"


def test_unknown_envelope_is_acknowledged_and_ignored(app, client, secrets_, env_id) -> None:
    resp = post(client, message("00000000-0000-0000-0000-000000000000", "completed", 10))
    assert resp.status_code == 200
    assert resp.get_json()["applied"] is False
    assert row(app, env_id).status == "created"
    assert audit_rows(app)[-1]["code"] == "ignored_unknown_envelope"


@pytest.mark.parametrize("msg", [
    {"event": "recipient-sent", "data": {"envelopeId": "e"}},
    {"event": "envelope-completed", "data": {}},
    {"event": "envelope-purge", "data": {"envelopeId": "e"}},
    {"event": "envelope-completed", "data": {"envelopeId": "x" * 65}},
    {},
])
def test_messages_that_say_nothing_usable_are_ignored(app, client, secrets_, msg) -> None:
    resp = post(client, msg)
    assert resp.status_code == 200
    assert audit_rows(app)[-1]["code"] == "ignored_event"


def test_signed_garbage_is_400(client, secrets_) -> None:
    assert post(client, None, raw=b"<xml/>").status_code == 400
    assert post(client, None, raw=b"[1, 2]").status_code == 400


def test_oversized_body_is_413_before_anything_else(app, client, secrets_, env_id) -> None:
    msg = message(env_id, "completed", 10)
    msg["padding"] = "x" * app.config["CONNECT_MAX_BYTES"]
    resp = post(client, msg)
    assert resp.status_code == 413
    assert row(app, env_id).status == "created"


def test_removed_secret_stops_working(app, client, secrets_, env_id) -> None:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        entries = connect_messages.load_secrets(conn)
        assert [e["secret"] for e in entries] == [SECRET_2, SECRET]
        assert connect_messages.remove_secret(conn, entries[1]["id"], now=2.0)
        assert not connect_messages.remove_secret(conn, "nope", now=2.0)
    unauthorized(post(client, message(env_id, "completed", 10), secret=SECRET))
    assert post(client, message(env_id, "completed", 10), secret=SECRET_2).status_code == 200


def test_secrets_are_stored_encrypted_and_validated(app) -> None:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        _, generated = connect_messages.add_secret(conn, now=0.0)
        assert len(generated) >= 32
        with pytest.raises(ValueError, match="16 characters"):
            connect_messages.add_secret(conn, "short", now=0.0)
        with pytest.raises(ValueError, match="already"):
            connect_messages.add_secret(conn, generated, now=0.0)
        raw = conn.execute(sa.select(store.settings.c.value, store.settings.c.encrypted)
                           .where(store.settings.c.name == connect_messages.SECRETS_SETTING)).first()
    assert raw.encrypted and generated not in raw.value


# --- the real emulator delivering to a real server ---------------------------------


def test_emulator_connect_drives_the_status_to_completed(app, client, partner, secrets_,
                                                         sandbox: SandboxControl) -> None:
    from sandbox.server import BackgroundServer

    with BackgroundServer(as_public_host(app)) as server:
        sandbox.post("/_sandbox/connect", {"url": server.url + PATH, "hmac_secrets": [SECRET_2]})
        env_id = partner.create(template="nda", fields={"company": "Analytical Engines Ltd"}
                                ).get_json()["envelope_id"]
        url = partner.view(env_id).get_json()["url"]
        act(url, "sign")  # the browser's return is never followed: Connect alone must tell

        def delivered() -> list[dict[str, t.Any]]:
            log = requests.get(sandbox.url + "/_sandbox/connect/deliveries", timeout=5).json()
            return [d for d in log if d["event"] == "envelope-completed"
                    and d.get("status_code") == 200]

        wait_for(delivered)
    record = row(app, env_id)
    assert (record.status, record.last_event) == ("completed", "envelope-completed")
    assert partner.status(env_id).get_json()["status"] == "completed"
    assert sandbox.calls()["get_envelope"] == 0


# --- the owner's commands ------------------------------------------------------------


@pytest.fixture
def owner(app: t.Any, monkeypatch: pytest.MonkeyPatch) -> t.Any:
    """The owner's shell, pointed at the test gateway's database and master key."""
    from click.testing import CliRunner

    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("GATEWAY_MASTER_KEY", app.config["MASTER_KEY"])
    monkeypatch.setenv("GATEWAY_POLICY_DIR", app.config["POLICY_DIR"])
    return CliRunner()


def test_cli_manages_connect_secrets(app, client, owner, env_id) -> None:
    from gateway.cli import cli

    empty = owner.invoke(cli, ["docusign", "connect-secret", "list"])
    assert "no Connect secrets" in empty.output
    generated = owner.invoke(cli, ["docusign", "connect-secret", "add", "--generate"])
    assert generated.exit_code == 0, generated.output
    secret = generated.stdout.strip()
    assert len(secret) >= 32
    pasted = owner.invoke(cli, ["docusign", "connect-secret", "add"],
                          input="pasted-from-docusign-0123456789\n")
    assert pasted.exit_code == 0, pasted.output
    assert "pasted-from-docusign" not in pasted.output  # read hidden, never echoed
    listed = owner.invoke(cli, ["docusign", "connect-secret", "list"])
    ids = [line.split()[0] for line in listed.output.splitlines()]
    assert len(ids) == 2
    assert secret not in listed.output and "pasted-from" not in listed.output
    assert post(client, message(env_id, "sent", 1), secret=secret).status_code == 200
    short = owner.invoke(cli, ["docusign", "connect-secret", "add"], input="short\n")
    assert short.exit_code == 1 and "error: " in short.output
    removed = owner.invoke(cli, ["docusign", "connect-secret", "remove", ids[1]])
    assert removed.exit_code == 0, removed.output
    unauthorized(post(client, message(env_id, "delivered", 2), secret=secret))
    missing = owner.invoke(cli, ["docusign", "connect-secret", "remove", "nope"])
    assert missing.exit_code == 1


def test_cli_points_the_emulators_connect_at_the_gateway(app, owner, sandbox) -> None:
    from gateway.cli import cli

    listener = "http://127.0.0.1:8080/webhooks/docusign"
    ok = owner.invoke(cli, ["docusign", "sandbox-connect", "--sandbox", sandbox.url,
                            "--listener", listener])
    assert ok.exit_code == 0, ok.output
    assert listener in ok.output
    down = owner.invoke(cli, ["docusign", "sandbox-connect", "--sandbox", "http://127.0.0.1:9",
                              "--listener", listener])
    assert down.exit_code == 1
    assert down.output.startswith("error: no DocuSign emulator answers")


@pytest.mark.services
def test_ordering_and_redelivery_on_postgresql(tmp_path, sandbox, rsa_private_pem) -> None:
    from tests.conftest import add_partner
    from tests.conftest import make_gateway
    from tests.services.fleet import pg_schema

    with pg_schema() as url:
        pg_app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, DATABASE_URL=url)
        try:
            pg_client = pg_app.test_client()
            actions = PartnerActions(pg_client, "example", add_partner(pg_app, "example"))
            with pg_app.app_context():
                from gateway import store

                with store.transaction() as conn:
                    connect_messages.add_secret(conn, SECRET, now=0.0)
            env = actions.create().get_json()["envelope_id"]
            assert post(pg_client, message(env, "delivered", 20)).get_json()["applied"] is True
            assert post(pg_client, message(env, "delivered", 20, retry=1)).get_json()["applied"] is False
            assert post(pg_client, message(env, "sent", 10)).get_json()["applied"] is False
            assert post(pg_client, message(env, "completed", 30)).get_json()["applied"] is True
            assert post(pg_client, message(env, "voided", 40)).get_json()["applied"] is False
            assert actions.status(env).get_json()["status"] == "completed"
        finally:
            pg_app.extensions["store"].dispose()
