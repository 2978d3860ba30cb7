"""The health probes: /healthz and /readyz."""

from __future__ import annotations

import threading
import time
import typing as t

import pytest
import requests

from gateway import store
from gateway.upstream import get_client
from tests.conftest import make_gateway

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
