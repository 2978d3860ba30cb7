"""The DocuSign client against the real emulator, served over HTTP in a background thread.

Every test starts from a reset emulator with a freshly registered key and consent, and
a fresh gateway app whose store holds those settings. The emulator's call counter is the
witness for what went over the wire (retries, token reuse), and its clock and fault
injection stand in for time passing and DocuSign misbehaving.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
import typing as t

import pytest
import requests
import sqlalchemy as sa
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

import sandbox
from gateway import errors
from gateway import store
from gateway import upstream
from gateway.store import vault
from gateway.upstream import auth
from gateway.upstream import transport
from sandbox.server import BackgroundServer

MEMBERSHIP = "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"
# the emulator's tokens live 20 minutes here, so that a token can expire on DocuSign's
# side (clock advanced past it) while a new assertion, good for an hour, is still valid
TOKEN_TTL = 1200
REFRESH_MARGIN = 300
READ_TIMEOUT = 1.0
BUDGET = 4.0


def _pem(key: t.Any, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
         encryption: t.Any = None) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption()
    ).decode("ascii")


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def emulator() -> t.Iterator[str]:
    server = BackgroundServer(sandbox.create_app({"SANDBOX_TOKEN_TTL": TOKEN_TTL}))
    server.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.stop()


class Control:
    """The emulator's control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def post(self, path: str, body: t.Mapping[str, t.Any] | None = None) -> t.Any:
        resp = requests.post(f"{self.url}/_sandbox/{path}", json=body or {}, timeout=5)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def info(self) -> dict[str, t.Any]:
        return requests.get(f"{self.url}/_sandbox/info", timeout=5).json()

    def calls(self) -> dict[str, int]:
        return requests.get(f"{self.url}/_sandbox/calls", timeout=5).json()["counts"]

    def fault(self, mode: str = "status", *, endpoint: str | None, count: int = 1,
              **options: t.Any) -> None:
        self.post("faults", {"mode": mode, "endpoint": endpoint, "count": count, **options})

    def advance(self, seconds: float) -> None:
        self.post("clock", {"advance": seconds})


@pytest.fixture
def ctl(emulator: str) -> Control:
    control = Control(emulator)
    control.post("reset")
    return control


def _make_app(tmp_path: t.Any) -> Flask:
    config = {
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
        "MASTER_KEY": Fernet.generate_key().decode(),
        "POLICY_DIR": str(tmp_path / "policies"),
        "DOCUSIGN_CONNECT_TIMEOUT": 1.0,
        "DOCUSIGN_READ_TIMEOUT": READ_TIMEOUT,
        "DOCUSIGN_TOTAL_BUDGET": BUDGET,
        "DOCUSIGN_TOKEN_REFRESH_MARGIN": REFRESH_MARGIN,
        # look at the settings row on every call: tests change it between calls
        "DOCUSIGN_SETTINGS_RECHECK": 0,
    }
    try:
        from gateway import create_app

        app = create_app(config)
    except ImportError:
        # the rest of the gateway is still being written: wire only what this module needs
        app = Flask("upstream-test")
        app.config.update(config)
        errors.init_app(app)
        vault.init_app(app)
        store.init_app(app)
        upstream.init_app(app)
    return app


@pytest.fixture
def bare_app(tmp_path: t.Any) -> t.Iterator[Flask]:
    """An initialised gateway app with no DocuSign settings."""
    app = _make_app(tmp_path)
    with app.app_context():
        store.init_db(store.get_engine())
        yield app
    store_engine = app.extensions["store"]
    store_engine.dispose()


@pytest.fixture
def settings(ctl: Control, private_key_pem: str) -> upstream.DocuSignSettings:
    return upstream.configure_sandbox(ctl.url, private_key_pem=private_key_pem)


def _save(settings: upstream.DocuSignSettings) -> None:
    with store.get_engine().begin() as conn:
        upstream.save_settings(conn, settings, now=time.time())


@pytest.fixture
def app(bare_app: Flask, settings: upstream.DocuSignSettings) -> Flask:
    _save(settings)
    return bare_app


@pytest.fixture
def client(app: Flask, monkeypatch: pytest.MonkeyPatch) -> upstream.DocuSignClient:
    # keep jittered backoff short: the tests count retries, they do not need to wait
    monkeypatch.setattr(transport, "BACKOFF_BASE", 0.02)
    return upstream.get_client()


def _create(client: upstream.DocuSignClient, **overrides: t.Any) -> dict[str, t.Any]:
    args: dict[str, t.Any] = {
        "template_id": MEMBERSHIP,
        "email_subject": "Your membership agreement",
        "role": "Member",
        "signer_name": "Ada Lovelace",
        "signer_email": "ada@example.com",
        "client_user_id": "cu-4f1d2e",
        "tabs": {"member_number": "12345", "plan": "gold"},
        "custom_fields": {"gateway_partner": "acme", "gateway_reference": "order-778"},
    }
    args.update(overrides)
    return client.create_envelope(**args)


def _view(client: upstream.DocuSignClient, envelope_id: str) -> str:
    return client.recipient_view(
        envelope_id,
        return_url="http://127.0.0.1:8080/v1/return/tok",
        user_name="Ada Lovelace",
        email="ada@example.com",
        client_user_id="cu-4f1d2e",
        frame_ancestors=["http://127.0.0.1:8080", "https://apps-d.docusign.com"],
        message_origins=["https://apps-d.docusign.com"],
    )


# --- the happy path ---------------------------------------------------------------


def test_full_flow_draft_send_view_status(client: upstream.DocuSignClient, ctl: Control) -> None:
    summary = _create(client)
    assert summary["status"] == "created"
    envelope_id = summary["envelopeId"]

    client.send_envelope(envelope_id)
    url = _view(client, envelope_id)
    assert url.startswith(ctl.url + "/Signing/")

    envelope = client.get_envelope(envelope_id)
    assert envelope["envelopeId"] == envelope_id
    assert envelope["status"] == "sent"

    calls = ctl.calls()
    assert calls["token"] == 1 and calls["userinfo"] == 1
    assert (calls["create_envelope"], calls["update_envelope"], calls["recipient_view"],
            calls["get_envelope"]) == (1, 1, 1, 1)


def test_check_reports_the_configured_account(client: upstream.DocuSignClient,
                                              ctl: Control) -> None:
    info = ctl.info()
    result = client.check()
    assert set(result) == {"user_name", "account_name", "base_uri"}
    assert result["base_uri"] == info["base_uri"].rstrip("/")
    assert result["user_name"] and result["account_name"]
    client.check()
    assert ctl.calls()["token"] == 1
    client.check(fresh=True)
    assert ctl.calls()["token"] == 2 and ctl.calls()["userinfo"] == 2


def test_token_status_needs_no_network(client: upstream.DocuSignClient, ctl: Control) -> None:
    assert client.token_status() == {"held": False, "expires_in": None}
    client.check()
    before = ctl.calls()
    status = client.token_status()
    assert status["held"] is True
    assert TOKEN_TTL - 10 <= status["expires_in"] <= TOKEN_TTL
    assert ctl.calls() == before


# --- one token for everyone -------------------------------------------------------


def test_token_is_reused_across_calls(client: upstream.DocuSignClient, ctl: Control) -> None:
    for _ in range(3):
        _create(client)
    assert ctl.calls()["token"] == 1
    assert ctl.calls()["create_envelope"] == 3


def test_twenty_threads_share_one_token_request(app: Flask, client: upstream.DocuSignClient,
                                                ctl: Control) -> None:
    barrier = threading.Barrier(20)
    results: list[t.Any] = []

    def work() -> None:
        barrier.wait()
        try:
            results.append(_create(client)["envelopeId"])
        except Exception as exc:  # surfaced by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(isinstance(r, str) for r in results), results
    assert len(set(results)) == 20
    calls = ctl.calls()
    assert calls["token"] == 1
    assert calls["userinfo"] == 1
    assert calls["create_envelope"] == 20


def test_token_is_refreshed_before_it_expires(client: upstream.DocuSignClient,
                                              ctl: Control) -> None:
    _create(client)
    # both clocks move to 200 s before expiry, inside the 300 s refresh margin
    elapsed = TOKEN_TTL - 200
    ctl.advance(elapsed)
    real_clock = client.clock
    client.clock = lambda: real_clock() + elapsed

    _create(client)

    calls = ctl.calls()
    assert calls["token"] == 2
    # refreshed ahead: the create was not first refused with the old token
    assert calls["create_envelope"] == 2
    assert client.token_status()["expires_in"] > TOKEN_TTL - 10


def test_oversized_refresh_margin_still_reuses_the_token(client: upstream.DocuSignClient,
                                                         ctl: Control) -> None:
    # a margin longer than the token's life must not turn into one token per call
    client.refresh_margin = TOKEN_TTL * 2
    _create(client)
    _create(client)
    assert ctl.calls()["token"] == 1


def test_expired_token_is_replaced_once_on_401(client: upstream.DocuSignClient,
                                               ctl: Control) -> None:
    _create(client)
    # DocuSign considers the token expired; the client still believes it is good
    ctl.advance(TOKEN_TTL + 1)

    envelope = _create(client)

    assert envelope["status"] == "created"
    calls = ctl.calls()
    assert calls["token"] == 2
    # the refused create, then the one retry with the new token
    assert calls["create_envelope"] == 3


def test_new_settings_take_effect_without_restart(client: upstream.DocuSignClient,
                                                  ctl: Control,
                                                  settings: upstream.DocuSignSettings) -> None:
    _create(client)
    other_key = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    _save(dataclasses.replace(settings, private_key_pem=other_key))
    # the new key is not registered with the emulator: the old token must not be reused
    with pytest.raises(errors.UpstreamAuthFailed):
        _create(client)
    assert ctl.calls()["token"] == 2


# --- auth failures ----------------------------------------------------------------


def test_consent_required_carries_the_consent_url(client: upstream.DocuSignClient,
                                                  ctl: Control,
                                                  settings: upstream.DocuSignSettings) -> None:
    ctl.post("consent", {"integration_key": settings.integration_key,
                         "user_id": settings.user_id, "granted": False})
    with pytest.raises(errors.UpstreamConsentRequired) as caught:
        _create(client)
    exc = caught.value
    assert exc.code == 503
    assert exc.consent_url == upstream.consent_url(settings)
    assert settings.integration_key not in exc.description
    assert ctl.calls()["token"] == 1  # a refusal is not retried
    assert ctl.calls()["create_envelope"] == 0


def test_unregistered_key_is_auth_failure(bare_app: Flask, ctl: Control,
                                          settings: upstream.DocuSignSettings) -> None:
    other_key = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    _save(dataclasses.replace(settings, private_key_pem=other_key))
    with pytest.raises(errors.UpstreamAuthFailed) as caught:
        upstream.get_client().check()
    assert caught.value.code == 502
    assert "no_valid_keys_or_signatures" in caught.value.description
    assert ctl.calls()["token"] == 1


def test_not_configured(bare_app: Flask, ctl: Control) -> None:
    with pytest.raises(errors.UpstreamNotConfigured):
        upstream.get_client().get_envelope("0b0c9d6e-1111-4222-8333-444455556666")
    assert sum(ctl.calls().values()) == 0


def test_consent_url_format() -> None:
    settings = upstream.DocuSignSettings(
        integration_key="8a0f3c2e-4b1d-4e6f-9c7a-1d2e3f4a5b01", user_id="u", account_id="a",
        private_key_pem="", oauth_base_url="https://account-d.docusign.com",
        audience="account-d.docusign.com",
    )
    assert upstream.consent_url(settings) == (
        "https://account-d.docusign.com/oauth/auth?response_type=code"
        "&scope=signature%20impersonation&client_id=8a0f3c2e-4b1d-4e6f-9c7a-1d2e3f4a5b01"
        "&redirect_uri=https%3A%2F%2Fdevelopers.docusign.com%2Fplatform%2Fauth%2Fconsent"
    )


# --- faults: retried when idempotent, never when not -------------------------------


@pytest.fixture
def envelope_id(client: upstream.DocuSignClient) -> str:
    envelope = _create(client)["envelopeId"]
    return envelope


def test_get_is_retried_after_500(client: upstream.DocuSignClient, ctl: Control,
                                  envelope_id: str) -> None:
    ctl.fault(endpoint="get_envelope", status=500, count=2)
    assert client.get_envelope(envelope_id)["status"] == "created"
    assert ctl.calls()["get_envelope"] == 3


def test_create_is_not_retried_after_500(client: upstream.DocuSignClient, ctl: Control) -> None:
    client.check()
    ctl.fault(endpoint="create_envelope", status=500)
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        _create(client)
    assert caught.value.code == 502
    assert ctl.calls()["create_envelope"] == 1


def test_persistent_500_gives_up_after_a_few_attempts(client: upstream.DocuSignClient,
                                                      ctl: Control, envelope_id: str) -> None:
    ctl.fault(endpoint="get_envelope", status=500, count=50)
    with pytest.raises(errors.UpstreamUnavailable):
        client.get_envelope(envelope_id)
    assert ctl.calls()["get_envelope"] == upstream.MAX_ATTEMPTS


def test_503_retry_after_is_honoured(client: upstream.DocuSignClient, ctl: Control,
                                     envelope_id: str) -> None:
    ctl.fault(endpoint="get_envelope", status=503, retry_after=1)
    started = time.monotonic()
    assert client.get_envelope(envelope_id)["envelopeId"] == envelope_id
    assert time.monotonic() - started >= 1.0
    assert ctl.calls()["get_envelope"] == 2


def test_503_retry_after_beyond_budget_is_passed_on(client: upstream.DocuSignClient,
                                                    ctl: Control, envelope_id: str) -> None:
    ctl.fault(endpoint="get_envelope", status=503, retry_after=60)
    started = time.monotonic()
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        client.get_envelope(envelope_id)
    assert time.monotonic() - started < 1.0  # no point waiting: it would not fit
    assert caught.value.retry_after == 60
    assert ctl.calls()["get_envelope"] == 1


def test_429_get_retried_create_not(client: upstream.DocuSignClient, ctl: Control,
                                    envelope_id: str) -> None:
    ctl.fault(endpoint="get_envelope", status=429)
    assert client.get_envelope(envelope_id)["envelopeId"] == envelope_id
    assert ctl.calls()["get_envelope"] == 2

    ctl.fault(endpoint="create_envelope", status=429, retry_after=7)
    with pytest.raises(errors.UpstreamRateLimited) as caught:
        _create(client)
    assert caught.value.code == 503
    assert caught.value.retry_after == 7
    assert ctl.calls()["create_envelope"] == 2  # the fixture's, and this refused one


def test_envelope_polling_limit_is_rate_limited(client: upstream.DocuSignClient, ctl: Control,
                                                envelope_id: str) -> None:
    client.get_envelope(envelope_id)
    with pytest.raises(errors.UpstreamRateLimited) as caught:
        client.get_envelope(envelope_id)
    # the emulator allows one poll per 15 minutes: far beyond the budget, so no retry
    assert 800 <= caught.value.retry_after <= 900
    assert ctl.calls()["get_envelope"] == 2


def test_slow_get_is_retried_within_the_budget(client: upstream.DocuSignClient, ctl: Control,
                                               envelope_id: str) -> None:
    ctl.fault("delay", endpoint="get_envelope", delay_ms=int(READ_TIMEOUT * 1000) + 800)
    assert client.get_envelope(envelope_id)["envelopeId"] == envelope_id
    assert ctl.calls()["get_envelope"] == 2


def test_hanging_get_times_out_inside_the_budget(client: upstream.DocuSignClient,
                                                 ctl: Control, envelope_id: str) -> None:
    ctl.fault("delay", endpoint="get_envelope", delay_ms=3000, count=50)
    started = time.monotonic()
    with pytest.raises(errors.UpstreamTimeout) as caught:
        client.get_envelope(envelope_id)
    elapsed = time.monotonic() - started
    assert caught.value.code == 504
    assert elapsed <= BUDGET + 0.5
    assert ctl.calls()["get_envelope"] >= 2


def test_slow_create_times_out_without_retry(client: upstream.DocuSignClient,
                                             ctl: Control) -> None:
    client.check()
    ctl.fault("delay", endpoint="create_envelope", delay_ms=int(READ_TIMEOUT * 1000) + 800)
    with pytest.raises(errors.UpstreamTimeout):
        _create(client)
    assert ctl.calls()["create_envelope"] == 1


def test_dropped_get_is_retried(client: upstream.DocuSignClient, ctl: Control,
                                envelope_id: str) -> None:
    ctl.fault("drop", endpoint="get_envelope")
    assert client.get_envelope(envelope_id)["envelopeId"] == envelope_id
    assert ctl.calls()["get_envelope"] == 2


def test_dropped_create_is_not_retried(client: upstream.DocuSignClient, ctl: Control) -> None:
    client.check()
    ctl.fault("drop", endpoint="create_envelope")
    with pytest.raises(errors.UpstreamUnavailable):
        _create(client)
    assert ctl.calls()["create_envelope"] == 1


def test_token_endpoint_is_retried(client: upstream.DocuSignClient, ctl: Control) -> None:
    ctl.fault(endpoint="token", status=503)
    client.check()
    assert ctl.calls()["token"] == 2


def test_refused_connection_is_unavailable(bare_app: Flask,
                                           settings: upstream.DocuSignSettings) -> None:
    port = _free_port()
    _save(dataclasses.replace(settings, oauth_base_url=f"http://127.0.0.1:{port}"))
    client = upstream.get_client()
    seen: list[tuple[str, int | str]] = []
    client.on_call = lambda endpoint, status, seconds: seen.append((endpoint, status))
    with pytest.raises(errors.UpstreamUnavailable):
        client.check()
    assert seen == [("token", "connection")] * upstream.MAX_ATTEMPTS


# --- DocuSign says no -------------------------------------------------------------


def test_rejection_names_only_the_error_code(client: upstream.DocuSignClient,
                                             ctl: Control) -> None:
    unknown = "0b0c9d6e-1111-4222-8333-444455556666"
    with pytest.raises(errors.UpstreamRejected) as caught:
        _create(client, template_id=unknown)
    exc = caught.value
    assert exc.code == 502
    assert exc.description == "DocuSign rejected the request (TEMPLATE_ID_INVALID)."
    assert exc.upstream_code == "TEMPLATE_ID_INVALID"
    assert ctl.calls()["create_envelope"] == 1


def test_view_on_a_draft_is_rejected(client: upstream.DocuSignClient, envelope_id: str) -> None:
    with pytest.raises(errors.UpstreamRejected) as caught:
        _view(client, envelope_id)
    assert "ENVELOPE_INVALID_STATUS" in caught.value.description


def test_malformed_envelope_id_never_leaves(client: upstream.DocuSignClient,
                                            ctl: Control) -> None:
    with pytest.raises(errors.UpstreamRejected):
        client.get_envelope("../../users")
    assert sum(ctl.calls().values()) == 0


# --- nothing secret in logs or errors ---------------------------------------------


class RecordingSession(requests.Session):
    """Remembers every assertion and bearer token that went over the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def request(self, method: str, url: str, *args: t.Any, **kwargs: t.Any) -> t.Any:
        data = kwargs.get("data") or {}
        if "assertion" in data:
            self.secrets.add(data["assertion"])
        auth = (kwargs.get("headers") or {}).get("Authorization")
        if auth:
            self.secrets.add(auth.split(" ", 1)[1])
        return super().request(method, url, *args, **kwargs)


def test_no_ids_or_secrets_in_logs_or_errors(app: Flask, ctl: Control,
                                             settings: upstream.DocuSignSettings,
                                             caplog: pytest.LogCaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "BACKOFF_BASE", 0.02)
    session = RecordingSession()
    client = upstream.DocuSignClient(session=session)
    client.init_app(app)
    calls: list[tuple[str, int | str]] = []
    client.on_call = lambda endpoint, status, seconds: calls.append((endpoint, status))
    failures: list[errors.GatewayError] = []

    def expect_failure(fn: t.Callable[[], t.Any]) -> None:
        with pytest.raises(errors.GatewayError) as caught:
            fn()
        failures.append(caught.value)

    with caplog.at_level(logging.DEBUG):
        envelope_id = _create(client)["envelopeId"]
        client.send_envelope(envelope_id)
        _view(client, envelope_id)
        client.get_envelope(envelope_id)
        expect_failure(lambda: client.get_envelope(envelope_id))  # polling limit
        expect_failure(lambda: _create(client, template_id=MEMBERSHIP.replace("01", "99")))
        ctl.fault(endpoint="create_envelope", status=500)
        expect_failure(lambda: _create(client))
        ctl.fault("drop", endpoint="recipient_view")
        expect_failure(lambda: _view(client, envelope_id))
        ctl.advance(TOKEN_TTL + 1)
        _create(client)  # 401, then re-auth
        ctl.post("consent", {"integration_key": settings.integration_key,
                             "user_id": settings.user_id, "granted": False})
        ctl.advance(TOKEN_TTL + 1)
        expect_failure(lambda: _create(client))

    assert len(session.secrets) >= 3  # an assertion and two access tokens at least
    forbidden = {settings.account_id, settings.user_id, settings.integration_key, MEMBERSHIP,
                 MEMBERSHIP.replace("01", "99"), *session.secrets}
    forbidden |= {line for line in settings.private_key_pem.splitlines() if len(line) > 40}
    # the emulator runs in this process too; its own request log is not the gateway's
    ours = [r for r in caplog.records if not r.name.startswith(("werkzeug", "sandbox"))]
    assert any(r.name == "gateway.upstream.transport" for r in ours)
    texts = [r.getMessage() for r in ours]
    texts += [str(f.description) + repr(f.problem()) for f in failures]
    texts.append(repr(settings))
    for text in texts:
        for secret in forbidden:
            assert secret.lower() not in text.lower(), text
    assert ("create_envelope", 201) in calls and ("create_envelope", 401) in calls
    assert ("recipient_view", "connection") in calls
    logged = [r for r in ours if r.name == "gateway.upstream.transport"]
    assert any("get_envelope" in r.getMessage() and "200" in r.getMessage() for r in logged)


# --- setup helpers ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_configure_sandbox_wires_key_and_consent(ctl: Control) -> None:
    settings = upstream.configure_sandbox(ctl.url)
    info = ctl.info()
    assert settings.sandbox and not settings.production
    assert (settings.integration_key, settings.user_id, settings.account_id) == (
        info["integration_key"], info["user_id"], info["account_id"])
    assert settings.audience == info["audience"]
    assert "PRIVATE KEY" in settings.private_key_pem


def test_configure_sandbox_dead_port_is_one_line() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(upstream.UpstreamSetupError) as caught:
        upstream.configure_sandbox(url, timeout=1)
    assert str(caught.value) == f"no DocuSign emulator answers at {url}"


def test_configure_sandbox_bad_url() -> None:
    with pytest.raises(upstream.UpstreamSetupError, match="not an http"):
        upstream.configure_sandbox("ftp://example")


GUID = "8a0f3c2e-4b1d-4e6f-9c7a-1d2e3f4a5b01"


def _from_files(path: t.Any, **overrides: t.Any) -> upstream.DocuSignSettings:
    args = {"integration_key": GUID, "user_id": GUID, "account_id": GUID,
            "private_key_path": str(path), "production": False}
    args.update(overrides)
    return upstream.settings_from_files(**args)


@pytest.mark.parametrize("pkcs1", [False, True])
def test_settings_from_files(tmp_path: t.Any, pkcs1: bool) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = (serialization.PrivateFormat.TraditionalOpenSSL if pkcs1
           else serialization.PrivateFormat.PKCS8)
    path = tmp_path / "key.pem"
    path.write_text(_pem(key, fmt))
    demo = _from_files(path)
    assert (demo.oauth_base_url, demo.audience) == (
        "https://account-d.docusign.com", "account-d.docusign.com")
    prod = _from_files(path, production=True)
    assert (prod.oauth_base_url, prod.audience, prod.production) == (
        "https://account.docusign.com", "account.docusign.com", True)


def _bad_key_files(tmp_path: t.Any) -> dict[str, t.Any]:
    ec_key = tmp_path / "ec.pem"
    ec_key.write_text(_pem(ec.generate_private_key(ec.SECP256R1())))
    locked = tmp_path / "locked.pem"
    locked.write_text(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                           encryption=serialization.BestAvailableEncryption(b"pw")))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    unreadable = tmp_path / "missing.pem"
    return {"not an RSA": ec_key, "encrypted": locked, "not a PEM": garbage,
            "cannot read": unreadable, "directory": tmp_path}


def test_settings_from_files_refuses_bad_keys(tmp_path: t.Any) -> None:
    for expected, path in _bad_key_files(tmp_path).items():
        with pytest.raises(upstream.UpstreamSetupError) as caught:
            _from_files(path)
        message = str(caught.value)
        assert "\n" not in message
        if expected != "directory":
            assert expected in message, message
        assert str(path) in message


@pytest.mark.parametrize("field", ["integration_key", "user_id", "account_id"])
def test_settings_from_files_refuses_bad_guids(tmp_path: t.Any, field: str) -> None:
    path = tmp_path / "key.pem"
    path.write_text(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    with pytest.raises(upstream.UpstreamSetupError, match="is not a GUID") as caught:
        _from_files(path, **{field: "not-a-guid"})
    assert "not-a-guid" not in str(caught.value)


def test_settings_round_trip_is_encrypted(bare_app: Flask,
                                          settings: upstream.DocuSignSettings) -> None:
    _save(settings)
    with store.get_engine().connect() as conn:
        raw = conn.execute(sa.select(store.settings).where(store.settings.c.name == "docusign"))
        row = raw.one()
        assert row.encrypted
        assert "PRIVATE KEY" not in row.value
        assert settings.account_id not in row.value
        assert upstream.load_settings(conn) == settings
    assert "PRIVATE KEY" not in repr(settings)


def test_load_settings_when_unset(bare_app: Flask) -> None:
    with store.get_engine().connect() as conn:
        assert upstream.load_settings(conn) is None


def test_pick_account_matches_the_configured_account(
        settings: upstream.DocuSignSettings) -> None:
    wanted = dataclasses.replace(settings, account_id="0b0c9d6e-1111-4222-8333-444455556666")
    info = {"name": "Sender", "accounts": [
        {"account_id": settings.account_id, "is_default": True, "account_name": "Default",
         "base_uri": "https://na1.docusign.net"},
        {"account_id": wanted.account_id.upper(), "is_default": False, "account_name": "Other",
         "base_uri": "https://na2.docusign.net/"},
    ]}
    account = auth.pick_account(info, wanted)
    assert account.account_name == "Other"
    assert account.base_path == (
        f"https://na2.docusign.net/restapi/v2.1/accounts/{wanted.account_id}")
    with pytest.raises(errors.UpstreamAuthFailed) as caught:
        auth.pick_account({"accounts": info["accounts"][:1]}, wanted)
    assert wanted.account_id not in caught.value.description
