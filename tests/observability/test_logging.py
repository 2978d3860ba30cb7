"""JSON logs, the access log and redaction."""

from __future__ import annotations

import io
import json
import logging
import sys
import typing as t

import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from gateway import store
from gateway.observability import logging as obs_logging
from gateway.observability.logging import redact
from gateway.upstream import get_client
from tests.conftest import PartnerActions
from tests.conftest import add_partner
from tests.conftest import make_gateway

# --- JSON logs and redaction -------------------------------------------------------------


@pytest.fixture
def log_lines(app: t.Any) -> t.Iterator[list[str]]:
    """Everything the gateway's log handler writes during the test, one string per line."""
    handler = obs_logging.log_handler()
    assert handler is not None
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler.stream = buf
    # DEBUG: urllib3's request lines and every library's chatter must be clean too
    root.setLevel(logging.DEBUG)
    lines: list[str] = []
    try:
        yield lines
    finally:
        root.setLevel(level)
        handler.stream = None
        lines.extend(buf.getvalue().splitlines())


def test_one_json_line_per_request_with_the_request_id(client, log_lines):
    resp = client.get("/v1/templates", headers={"X-Request-ID": "trace-42"})
    assert resp.status_code == 401
    assert resp.headers["X-Request-ID"] == "trace-42"
    client.get("/healthz")
    client.get("/nowhere", headers={"X-Request-ID": "bad id with spaces"})
    records = [json.loads(line) for line in _drain(log_lines)]
    access = [r for r in records if r["logger"] == "gateway.access"]
    assert [r["path"] for r in access] == ["/v1/templates", "/healthz", "/nowhere"]
    first = access[0]
    assert first["request_id"] == "trace-42"
    assert first | {"ts": None, "duration_ms": None} == {
        "ts": None, "level": "info", "logger": "gateway.access",
        "message": first["message"], "request_id": "trace-42", "method": "GET",
        "path": "/v1/templates", "status": 401, "duration_ms": None, "partner": None,
        "operation": "list_templates", "code": "missing_api_key", "remote_addr": "127.0.0.1",
    }
    assert access[2]["request_id"] != "bad id with spaces" and len(access[2]["request_id"]) == 32
    assert access[2]["status"] == 404


def _drain(lines: list[str]) -> list[str]:
    handler = obs_logging.log_handler()
    assert handler is not None
    buf = handler.stream
    assert isinstance(buf, io.StringIO)
    lines.extend(buf.getvalue().splitlines())
    buf.seek(0)
    buf.truncate()
    return lines


PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       "-----END PRIVATE KEY-----")
KEY = "pgw_abcdefghijkl_0123456789abcdefghijABCDEFGHIJ_a1B2c3"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(("text", "expected"), [
    (f"key {KEY} used", "key pgw_*** used"),
    (f"Authorization: Bearer {KEY}", "Authorization: Bearer ***"),
    ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer ***"),
    ("authorization=bearer%20xyz123", "authorization=bearer ***"),
    (f"token {JWT} done", "token [JWT redacted] done"),
    ("assertion eyJhbGciOiJSUzI1NiJ9.e30.", "assertion [JWT redacted]"),
    (f"pem {PEM} end", "pem [PEM redacted] end"),
    ("cut -----BEGIN RSA PRIVATE KEY-----\nMIIE", "cut [PEM redacted]"),
    ("signer ada.lovelace@example.com joined", "signer a***@example.com joined"),
    ("to=ada%40example.com&x=1", "to=a***%40example.com&x=1"),
    ('{"access_token": "s3cr3t-t0ken", "expires_in": 3600}', '{"access_token": "***", "expires_in": 3600}'),
    ("password=hunter2hunter2&user=root", "password=***&user=root"),
    ("sealed gAAAAABmZ2V0dGluZ3N0YXJ0ZWQtd2l0aC1mZXJuZXQ=", "sealed [ciphertext redacted]"),
    ("envelope 5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01 sent (201)",
     "envelope 5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01 sent (201)"),
    ("a***@example.com", "a***@example.com"),
])
def test_redact(text, expected):
    assert redact(text) == expected
    assert redact(redact(text)) == expected


def test_the_filter_scrubs_arguments_extras_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "key %s for %s", (KEY, "ada@example.com"),
                               None)
    record.authorization = f"Bearer {KEY}"
    try:
        raise ValueError(f"bad {PEM}")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert obs_logging.RedactingFilter().filter(record) is True
    line = obs_logging.JsonFormatter().format(record)
    doc = json.loads(line)
    assert doc["message"] == "key pgw_*** for a***@example.com"
    assert doc["authorization"] == "Bearer ***"
    assert "[PEM redacted]" in doc["exc"] and "MIIE" not in line and KEY not in line


def test_no_secret_reaches_the_logs_in_a_full_flow(app, client, partner, sandbox, log_lines, monkeypatch):
    """Drive successes and failures, then read every line the handler wrote."""
    other = PartnerActions(client, "other", add_partner(app, "other"))
    secrets_seen: list[str] = [partner.key, other.key, "ada@example.com", "grace@example.com"]
    created = partner.create(signer={"name": "Ada Lovelace", "email": "ada@example.com"})
    envelope_id = created.json["envelope_id"]
    view = partner.view(envelope_id)
    assert view.status_code == 201
    secrets_seen.append(view.json["url"].split("?")[-1])
    assert partner.status(envelope_id).status_code == 200
    assert other.status(envelope_id).status_code == 404
    # the signer's browser through the return relay: the relay token sits in the logged path
    relay_path, proof = _through_the_relay(app, client, envelope_id)
    secrets_seen += [relay_path.rsplit("/", 1)[1], proof]
    # failures: bad JSON, bad body with an email in it, unknown key, upstream down
    client.post("/v1/envelopes", data="{nope", headers=partner.headers | {"Content-Type": "application/json"})
    partner.create(signer={"name": "", "email": "grace@example.com"})
    client.get("/v1/templates", headers={"Authorization": f"Bearer {partner.key[:-1]}x"})
    sandbox.fault(endpoint="create_envelope", status=503, count=4)
    partner.create()
    # revoked key
    from gateway.services import partner_keys as keys

    with app.app_context(), store.transaction() as conn:
        keys.revoke_partner(conn, "other")
        settings_pem = store.get_setting(conn, "docusign")["private_key_pem"]
    assert other.status(envelope_id).status_code == 401
    with app.app_context():
        token = get_client()._token
        assert token is not None
        secrets_seen.append(token.authorization.split(" ", 1)[1])
    # code that carelessly logs secrets, with a traceback
    careless = logging.getLogger("gateway.careless")
    careless.warning("retrying with %s", f"Bearer {partner.key}", extra={"signer": "ada@example.com"})
    try:
        raise RuntimeError(f"cannot parse {settings_pem}")
    except RuntimeError:
        careless.exception("key material problem for %s", "ada@example.com")
    lines = _drain(log_lines)
    assert len(lines) > 10
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert {r["logger"] for r in records} >= {"gateway.access", "gateway.careless"}
    everything = "\n".join(lines)
    pem_body = settings_pem.splitlines()[1]
    for secret in [*secrets_seen, pem_body, app.config["MASTER_KEY"]]:
        assert secret not in everything, secret[:12]
    assert "pgw_" not in everything.replace("pgw_***", "")
    assert "a***@example.com" in everything
    assert "-----BEGIN" not in everything


def _through_the_relay(app: t.Any, client: t.Any, envelope_id: str) -> tuple[str, str]:
    from urllib.parse import parse_qs
    from urllib.parse import urlsplit

    import sqlalchemy as sa

    from gateway.services import relay_tokens

    with app.test_request_context():
        with store.transaction() as conn:
            partner_id = conn.execute(sa.select(store.partners.c.id).where(
                store.partners.c.name == "example")).scalar_one()
        path = urlsplit(relay_tokens.relay_url(envelope_id, partner_id,
                                               "http://127.0.0.1:8070/signed")).path
    resp = client.get(path + "?event=cancel")
    assert resp.status_code == 303
    return path, parse_qs(urlsplit(resp.headers["Location"]).query)["gateway_token"][0]


def test_text_log_format_is_available(tmp_path):
    make_gateway(tmp_path, None, None, LOG_FORMAT="text")
    handler = obs_logging.log_handler()
    assert handler is not None
    try:
        assert not isinstance(handler.formatter, obs_logging.JsonFormatter)
    finally:
        handler.setFormatter(obs_logging.JsonFormatter())


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list("pgw_eyJAbasicBEARER-----BEGIN KEY=:@%40x.com 1\n")),
               max_size=80) | st.text(max_size=80))
def test_redaction_shortcut_never_skips_a_secret(text: str) -> None:
    """The trigger pre-check must only skip text that no pattern would change."""
    from gateway.observability import logging as obs_logging

    full = text
    for pattern, replacement in obs_logging._SECRETS:
        full = pattern.sub(replacement, full)
    full = obs_logging._EMAIL_RE.sub(lambda m: f"{m.group(1)}***{m.group(2)}{m.group(3)}", full)
    assert obs_logging.redact(text) == full
