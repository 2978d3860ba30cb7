"""What the audit trail records, through HTTP: operator paths, anonymous floods, redaction."""

from __future__ import annotations

import typing as t

import pytest

from tests.conftest import make_gateway


def _rows(app: t.Any) -> list[dict[str, t.Any]]:
    from gateway import store
    from gateway.services import audit

    with app.app_context(), store.transaction() as conn:
        return audit.query(conn)


def _anonymous(app: t.Any) -> list[dict[str, t.Any]]:
    from gateway import store
    from gateway.services import audit

    with app.app_context(), store.transaction() as conn:
        return audit.anonymous(conn)


@pytest.fixture
def bare(tmp_path: t.Any) -> t.Any:
    """A gateway without DocuSign: enough for everything that never reaches it."""
    return make_gateway(tmp_path, None, None, ANONYMOUS_RATE_LIMIT="5/minute")


@pytest.mark.parametrize("path", ["/adminXYZ/shell", "/metricsfoo", "/docs-private",
                                  "/healthzz", "/.well-knownx/y", "/admin/../../etc"])
def test_lookalikes_of_operator_paths_are_audited(bare: t.Any, path: str) -> None:
    resp = bare.test_client().get(path)
    assert resp.status_code == 404
    counts = _anonymous(bare)
    assert [(c["code"], c["count"]) for c in counts] == [("not_found", 1)]


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json", "/favicon.ico",
                                  "/robots.txt", "/.well-known/jwks.json"])
def test_operator_endpoints_are_not_audited(bare: t.Any, path: str) -> None:
    resp = bare.test_client().get(path)
    assert resp.status_code < 400
    assert _rows(bare) == [] and _anonymous(bare) == []


def test_browser_asks_answered_without_audit(bare: t.Any) -> None:
    client = bare.test_client()
    assert client.get("/favicon.ico").status_code == 204
    robots = client.get("/robots.txt")
    assert robots.status_code == 200 and robots.get_data(as_text=True).startswith("User-agent: *")


def test_a_flood_of_bad_keys_is_counted_and_throttled(bare: t.Any) -> None:
    client = bare.test_client()
    headers = {"Authorization": "Bearer pgw_aaaaaaaaaaaa_" + "A" * 32 + "_AAAAAA"}
    statuses = [client.get("/v1/templates", headers=headers).status_code for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    limited = client.get("/v1/templates")
    assert limited.status_code == 429
    assert limited.get_json()["code"] == "rate_limited"
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert int(limited.headers["Retry-After"]) >= 1
    # no chained row each: one counter per address, minute and code
    assert _rows(bare) == []
    assert {c["code"]: c["count"] for c in _anonymous(bare)} == {
        "invalid_api_key": 5, "rate_limited": 3}


def test_a_flood_of_unknown_paths_is_throttled_per_address(bare: t.Any) -> None:
    client = bare.test_client()
    for _ in range(5):
        assert client.get("/wp-login.php").status_code == 404
    assert client.get("/wp-login.php").status_code == 429
    # another address has its own budget
    assert client.get("/wp-login.php", environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 404


def test_partners_do_not_touch_the_anonymous_budget(app: t.Any, partner: t.Any) -> None:
    app.config["ANONYMOUS_RATE_LIMIT"] = "1/minute"
    client = app.test_client()
    assert client.get("/nope").status_code == 404
    assert client.get("/nope").status_code == 429
    ok = client.get("/v1/templates", headers=partner.headers)
    assert ok.status_code == 200
    assert ok.headers["X-RateLimit-Limit"] and ok.headers["X-RateLimit-Remaining"]


@pytest.mark.parametrize("path", ["/v1/return/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl/x",
                                  "/v1/return/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln/"])
def test_no_relay_token_reaches_the_trail(bare: t.Any, path: str) -> None:
    resp = bare.test_client().post(path)
    assert resp.status_code in (404, 405)
    stored = [c["last_path"] for c in _anonymous(bare)] + [r["path"] for r in _rows(bare)]
    assert stored == ["/v1/return/<token>"]


def test_audit_fields_are_redacted(bare: t.Any) -> None:
    from gateway.services import audit

    key = "pgw_aaaaaaaaaaaa_" + "B" * 32 + "_CCCCCC"
    with bare.app_context():
        audit.record(operation="test", path=f"/v1/x/{key}", detail="signer ada@example.com",
                     request_id="r1")
    row = _rows(bare)[-1]
    assert key not in row["path"] and "ada@example.com" not in row["detail"]


def test_revoked_key_rows_name_the_partner(app: t.Any, partner: t.Any) -> None:
    from gateway import store
    from gateway.services import partner_keys

    with app.app_context(), store.transaction() as conn:
        partner_keys.revoke_partner(conn, "example")
    resp = app.test_client().get("/v1/templates", headers=partner.headers)
    assert resp.get_json()["code"] == "key_revoked"
    assert [(r["code"], r["partner"]) for r in _rows(app)] == [("key_revoked", "example")]


def test_rate_limit_headers_come_from_the_hit(app: t.Any, partner: t.Any) -> None:
    client = app.test_client()
    remaining = [int(client.get("/v1/templates", headers=partner.headers)
                     .headers["X-RateLimit-Remaining"]) for _ in range(3)]
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]
