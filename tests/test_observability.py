"""Metrics, JSON logs (with redaction) and the health probes."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import typing as t

import pytest
import requests
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gateway import store
from gateway.services import relay_tokens
from gateway.upstream import get_client
from gateway.web import operator as observability
from gateway.web.operator import redact
from tests.conftest import ROOT
from tests.conftest import PartnerActions
from tests.conftest import add_partner
from tests.conftest import make_gateway


def samples(client: t.Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics as {(name, labels): value}."""
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


# --- health ---------------------------------------------------------------------------


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json == {"status": "ok"}


def test_readyz_ready_obtains_a_token(app, client):
    with app.app_context():
        assert get_client().token_status()["held"] is False
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.json
    assert resp.json == {"status": "ready",
                         "checks": {"database": "ok", "policies": "ok", "upstream": "ok"}}
    with app.app_context():
        assert get_client().token_status()["held"] is True


def _not_ready(client: t.Any) -> dict[str, t.Any]:
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert resp.headers["Retry-After"] == "5"
    assert resp.json["code"] == "not_ready"
    return t.cast(dict[str, t.Any], resp.json["errors"])


def test_readyz_upstream_not_configured(tmp_path):
    app = make_gateway(tmp_path, None, None)
    assert _not_ready(app.test_client()) == {"upstream": ["upstream_not_configured"]}


def test_readyz_upstream_consent_missing(client, sandbox):
    info = requests.get(sandbox.url + "/_sandbox/info", timeout=5).json()
    sandbox.post("/_sandbox/consent", {"integration_key": info["integration_key"],
                                       "user_id": info["user_id"], "granted": False})
    assert _not_ready(client) == {"upstream": ["upstream_consent_required"]}


def test_readyz_without_valid_policies(tmp_path, sandbox, rsa_private_pem):
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, POLICY_DIR=str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    assert _not_ready(app.test_client()) == {"policies": ["no_valid_policy"]}
    app.config["POLICY_DIR"] = str(tmp_path / "missing")
    app.extensions["policies"].directory = str(tmp_path / "missing")
    assert _not_ready(app.test_client()) == {"policies": ["policy_dir_missing"]}


def test_readyz_database_not_initialised(tmp_path, sandbox, rsa_private_pem):
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem)
    app.extensions["store"] = store.make_engine(f"sqlite:///{tmp_path / 'blank.db'}")
    assert _not_ready(app.test_client())["database"] == ["database_not_initialised"]


def test_readyz_remembers_an_upstream_failure(app, client, monkeypatch):
    calls = []

    def failing_check(**_: t.Any) -> None:
        from gateway import errors

        calls.append(1)
        raise errors.UpstreamAuthFailed()

    with app.app_context():
        monkeypatch.setattr(get_client(), "check", failing_check)
    assert _not_ready(client) == {"upstream": ["upstream_auth_failed"]}
    assert _not_ready(client) == {"upstream": ["upstream_auth_failed"]}
    assert len(calls) == 1  # DocuSign's token endpoint is not hammered by probes


def test_readyz_does_not_wait_for_a_slow_upstream(tmp_path, sandbox, rsa_private_pem, monkeypatch):
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, READYZ_UPSTREAM_TIMEOUT=0.05)
    release = threading.Event()
    with app.app_context():
        client_ = get_client()
        real_check = client_.check

        def slow_check(**kwargs: t.Any) -> t.Any:
            release.wait(5)
            return real_check(**kwargs)

        monkeypatch.setattr(client_, "check", slow_check)
    http = app.test_client()
    started = time.perf_counter()
    assert _not_ready(http) == {"upstream": ["upstream_pending"]}
    assert time.perf_counter() - started < 1
    release.set()
    for _ in range(100):
        if http.get("/readyz").status_code == 200:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the background token request never made the gateway ready")


# --- metrics ----------------------------------------------------------------------------


def test_metrics_count_requests_upstream_calls_and_token_refreshes(partner, client):
    created = partner.create()
    assert created.status_code == 201
    envelope_id = created.json["envelope_id"]
    assert partner.status(envelope_id).status_code == 200
    assert partner.status("no-such-envelope").status_code == 404
    assert client.get("/v1/templates", headers={"Authorization": "Bearer pgw_nope"}).status_code == 401
    m = samples(client)
    assert value(m, "gateway_requests_total", partner="example", operation="create_draft",
                 status="201") == 1
    assert value(m, "gateway_requests_total", partner="example", operation="status", status="200") == 1
    assert value(m, "gateway_requests_total", partner="example", operation="status", status="404") == 1
    assert value(m, "gateway_requests_total", partner="", operation="list_templates", status="401") == 1
    assert value(m, "gateway_upstream_calls_total", endpoint="create_envelope", status="201") == 1
    assert value(m, "gateway_upstream_duration_seconds_count", endpoint="create_envelope") == 1
    assert value(m, "gateway_upstream_token_refreshes_total", outcome="ok") == 1
    assert value(m, "gateway_request_duration_seconds_count", operation="create_draft") == 1
    text = client.get("/metrics").get_data(as_text=True)
    # unbounded values never become labels
    assert envelope_id not in text
    assert partner.key.split("_")[1] not in text


def test_metrics_count_rate_limit_rejections(app, client):
    viewer = PartnerActions(client, "viewer", add_partner(app, "viewer"))
    statuses = [viewer.status("x").status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]
    m = samples(client)
    assert value(m, "gateway_rate_limit_rejections_total", partner="viewer", operation="status") == 1
    assert value(m, "gateway_requests_total", partner="viewer", operation="status", status="429") == 1


def test_metrics_count_failed_upstream_attempts(partner, client, sandbox):
    sandbox.fault(endpoint="create_envelope", status=500, count=1)
    assert partner.create().status_code == 502
    m = samples(client)
    assert value(m, "gateway_upstream_calls_total", endpoint="create_envelope", status="500") == 1


_WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from gateway import create_app
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite://", "POLICY_DIR": sys.argv[2],
                      "MASTER_KEY": sys.argv[3]})
    client = app.test_client()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
""")


def test_metrics_add_up_across_worker_processes(tmp_path, client, monkeypatch):
    from cryptography.fernet import Fernet

    shared = tmp_path / "prom"
    shared.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"PROMETHEUS_MULTIPROC_DIR": str(shared), "GATEWAY_INSTANCE_PATH": str(tmp_path / "inst")}
    args = [sys.executable, "-c", _WORKER, str(ROOT), str(tmp_path), Fernet.generate_key().decode()]
    workers = [subprocess.Popen(args, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
    # any worker answering /metrics reads every worker's files
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    m = samples(client)
    assert value(m, "gateway_requests_total", partner="", operation="healthz", status="200") == 6


# --- JSON logs and redaction -------------------------------------------------------------


@pytest.fixture
def log_lines(app: t.Any) -> t.Iterator[list[str]]:
    """Everything the gateway's log handler writes during the test, one string per line."""
    handler = observability.log_handler()
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
    handler = observability.log_handler()
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
    assert observability.RedactingFilter().filter(record) is True
    line = observability.JsonFormatter().format(record)
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
    handler = observability.log_handler()
    assert handler is not None
    try:
        assert not isinstance(handler.formatter, observability.JsonFormatter)
    finally:
        handler.setFormatter(observability.JsonFormatter())


@settings(max_examples=500)
@given(st.text(alphabet=st.sampled_from(list("pgw_eyJAbasicBEARER-----BEGIN KEY=:@%40x.com 1\n")),
               max_size=80) | st.text(max_size=80))
def test_redaction_shortcut_never_skips_a_secret(text: str) -> None:
    """The trigger pre-check must only skip text that no pattern would change."""
    from gateway.web import operator as observability

    full = text
    for pattern, replacement in observability._SECRETS:
        full = pattern.sub(replacement, full)
    full = observability._EMAIL_RE.sub(lambda m: f"{m.group(1)}***{m.group(2)}{m.group(3)}", full)
    assert observability.redact(text) == full
