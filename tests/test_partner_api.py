"""The partner API through HTTP, against the real emulator."""

from __future__ import annotations

import time

import pytest
import requests

from tests.conftest import PartnerActions
from tests.conftest import add_partner

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}


def problem(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert PROBLEM_KEYS <= set(body)
    assert body["code"] == code
    assert body["status"] == status
    return body


# --- the happy path ---------------------------------------------------------


def test_create_view_status_flow(partner: PartnerActions, sandbox) -> None:
    resp = partner.create()
    assert resp.status_code == 201
    body = resp.get_json()
    assert set(body) == {"envelope_id", "status", "template", "reference", "created_at"}
    assert body["status"] == "created"
    assert body["template"] == "membership"
    assert body["reference"] == "order-778"
    assert resp.headers["Location"] == f"/v1/envelopes/{body['envelope_id']}"
    upstream = sandbox.envelope(body["envelope_id"])
    assert upstream["status"] == "created"

    view = partner.view(body["envelope_id"])
    assert view.status_code == 201, view.get_json()
    assert set(view.get_json()) == {"url", "expires_at"}
    assert view.get_json()["url"].startswith(sandbox.url + "/Signing/")
    assert sandbox.envelope(body["envelope_id"])["status"] == "sent"

    status = partner.status(body["envelope_id"])
    assert status.status_code == 200
    assert status.get_json()["status"] == "sent"
    assert status.get_json()["template"] == "membership"


def test_gateway_chooses_role_and_client_user_id(partner: PartnerActions, sandbox) -> None:
    env_id = partner.create().get_json()["envelope_id"]
    record = sandbox.envelope(env_id)
    text = str(record)
    assert "Member" in text  # the policy's role, not anything the partner sent
    assert "ada@example.com" in text


def test_rate_limit_headers_on_success(partner: PartnerActions, client) -> None:
    resp = client.get("/v1/templates", headers=partner.headers)
    assert resp.status_code == 200
    assert resp.headers["X-RateLimit-Limit"] == "120"
    assert int(resp.headers["X-RateLimit-Remaining"]) == 119
    assert "Retry-After" not in resp.headers


def test_templates_lists_aliases_never_ids(partner: PartnerActions, client) -> None:
    resp = client.get("/v1/templates", headers=partner.headers)
    body = resp.get_json()
    aliases = {tpl["alias"] for tpl in body["templates"]}
    assert aliases == {"membership", "nda"}
    text = resp.get_data(as_text=True)
    assert "5d1c9a3e" not in text and "Member\"" not in text
    membership = next(tpl for tpl in body["templates"] if tpl["alias"] == "membership")
    assert membership["fields"]["member_number"]["required"] is True


# --- keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_api_key"),
        ("Basic abc", "missing_api_key"),
        ("Bearer ", "missing_api_key"),
        ("Bearer not-a-key", "invalid_api_key"),
        ("Bearer pgw_aaaaaaaaaaaa_" + "A" * 32 + "_AAAAAA", "invalid_api_key"),
    ],
)
def test_bad_keys_are_401(client, header, code, sandbox) -> None:
    headers = {"Authorization": header} if header else {}
    resp = client.get("/v1/templates", headers=headers)
    problem(resp, 401, code)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert sandbox.calls().get("token", 0) == 0


def test_tampered_key_is_401(partner: PartnerActions, client) -> None:
    # same key id and a valid checksum is impossible to forge without the secret
    tampered = partner.key[:-8] + ("x" if partner.key[-8] != "x" else "y") + partner.key[-7:]
    resp = client.get("/v1/templates", headers={"Authorization": f"Bearer {tampered}"})
    problem(resp, 401, "invalid_api_key")


def test_revoke_bites_on_next_request(app, partner: PartnerActions, client) -> None:
    from gateway import store
    from gateway.services import partner_keys as keys

    assert client.get("/v1/templates", headers=partner.headers).status_code == 200
    with app.app_context(), store.transaction() as conn:
        keys.revoke_partner(conn, "example")
    problem(client.get("/v1/templates", headers=partner.headers), 401, "key_revoked")


def test_rotation_grace_and_expiry(app, partner: PartnerActions, client, monkeypatch) -> None:
    from gateway import store
    from gateway.services import partner_keys as keys

    with app.app_context(), store.transaction() as conn:
        new_key = keys.rotate_key(conn, "example", grace=60)
    new = PartnerActions(client, "example", new_key)
    assert client.get("/v1/templates", headers=partner.headers).status_code == 200
    assert client.get("/v1/templates", headers=new.headers).status_code == 200
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 61)
    problem(client.get("/v1/templates", headers=partner.headers), 401, "key_expired")
    assert client.get("/v1/templates", headers=new.headers).status_code == 200


def test_partner_without_valid_policy_can_do_nothing(app, client, tmp_path, sandbox) -> None:
    key = add_partner(app, "other")
    (tmp_path / "policies" / "other.toml").write_text('partner = "other"\nbogus = 1\n')
    resp = client.post("/v1/envelopes", json={}, headers={"Authorization": f"Bearer {key}"})
    problem(resp, 403, "policy_unavailable")
    assert sum(sandbox.calls().values()) == 0


# --- policy -----------------------------------------------------------------


def test_operation_not_in_policy(app, client) -> None:
    viewer = PartnerActions(client, "viewer", add_partner(app, "viewer"))
    problem(viewer.create(), 403, "operation_not_allowed")


@pytest.mark.parametrize("template", ["internal", "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a03",
                                      "5d1c9a3e-7b2f-4c61-9a0e-2f6b8d4c1a01"])
def test_template_not_in_policy(partner: PartnerActions, template, sandbox) -> None:
    body = problem(partner.create(template=template), 403, "template_not_allowed")
    assert "5d1c9a3e" not in body["detail"]
    assert sandbox.calls().get("create_envelope", 0) == 0


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"member_number": "12345", "plan": "plus", "salary": "1"}, "salary"),
        ({"plan": "plus"}, "member_number"),
        ({"member_number": "1" * 21, "plan": "plus"}, "member_number"),
        ({"member_number": "12a45", "plan": "plus"}, "member_number"),
        ({"member_number": "12345", "plan": "platinum"}, "plan"),
        ({"member_number": 12345, "plan": "plus"}, "member_number"),
    ],
)
def test_fields_checked_against_policy(partner: PartnerActions, fields, bad, sandbox) -> None:
    body = problem(partner.create(fields=fields), 422, "field_invalid")
    assert bad in body["errors"]["fields"]
    assert sandbox.calls().get("create_envelope", 0) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"signer": {"name": "Ada", "email": "not-an-email"}}, "signer"),
        ({"signer": {"name": "", "email": "ada@example.com"}}, "signer"),
        ({"signer": {"name": "Ada", "email": "ada@example.com", "phone": "1"}}, "signer"),
        ({"surprise": True}, "surprise"),
        ({"reference": "r" * 256}, "reference"),
        ({"template": None}, "template"),
    ],
)
def test_schema_errors_are_422(partner: PartnerActions, overrides, field) -> None:
    body = problem(partner.create(**overrides), 422, "validation_failed")
    assert field in body["errors"]


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'"text"'])
def test_unparseable_json_is_400(partner: PartnerActions, client, raw) -> None:
    resp = client.post("/v1/envelopes", data=raw, headers=partner.headers,
                       content_type="application/json")
    problem(resp, 400, "malformed_json")


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8070/signed",
        "http://127.0.0.1:8071/signed",
        "http://127.0.0.2:8070/signed",
        "http://127.0.0.1:8070/other",
        "http://127.0.0.1:8070/signedx",
        "http://127.0.0.1:8070@evil.example/signed",
        "http://127.0.0.1:8070.evil.example/signed",
        "http://evil.example\\@127.0.0.1:8070/signed",
        "javascript:alert(1)",
        "//127.0.0.1:8070/signed",
    ],
)
def test_return_url_allowlist(partner: PartnerActions, url, sandbox) -> None:
    env_id = partner.create().get_json()["envelope_id"]
    problem(partner.view(env_id, return_url=url), 422, "return_url_not_allowed")
    assert sandbox.calls().get("recipient_view", 0) == 0
    assert sandbox.envelope(env_id)["status"] == "created"


def test_return_url_with_query_and_subpath_allowed(partner: PartnerActions) -> None:
    env_id = partner.create().get_json()["envelope_id"]
    assert partner.view(env_id, "http://127.0.0.1:8070/signed/thanks?order=778").status_code == 201


# --- ownership ----------------------------------------------------------------


def test_other_partners_envelope_is_404(partner: PartnerActions, other_partner, sandbox) -> None:
    env_id = partner.create().get_json()["envelope_id"]
    before = sandbox.calls()
    problem(other_partner.status(env_id), 404, "envelope_not_found")
    problem(other_partner.view(env_id, "https://other.example/done"), 404, "envelope_not_found")
    assert sandbox.calls() == before


def test_unknown_envelope_is_404(partner: PartnerActions) -> None:
    problem(partner.status("00000000-0000-0000-0000-000000000000"), 404, "envelope_not_found")


# --- no generic proxy -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/envelopes", 405, "method_not_allowed"),
        ("DELETE", "/v1/envelopes/abc", 405, "method_not_allowed"),
        ("PUT", "/v1/envelopes/abc", 405, "method_not_allowed"),
        ("GET", "/v1/envelopes/abc/documents", 404, "not_found"),
        ("POST", "/v1/envelopes/abc/views/recipient", 404, "not_found"),
        ("GET", "/restapi/v2.1/accounts/x/envelopes", 404, "not_found"),
        ("GET", "/v1/accounts", 404, "not_found"),
        ("GET", "/", 404, "not_found"),
    ],
)
def test_anything_else_is_blocked_and_audited(app, partner, client, sandbox, method, path,
                                              status, code) -> None:
    from gateway import store
    from gateway.services import audit

    resp = client.open(path, method=method, headers=partner.headers)
    problem(resp, status, code)
    assert sum(sandbox.calls().values()) == 0
    with app.app_context(), store.transaction() as conn:
        counts = audit.anonymous(conn)
    # no route matched, so no partner is known: counted per address and minute, not a row each
    assert [(c["code"], c["count"], c["last_path"]) for c in counts] == [(code, 1, path)]


# --- idempotency ----------------------------------------------------------------


def test_idempotent_replay_makes_one_envelope(partner: PartnerActions, sandbox) -> None:
    first = partner.create(headers={"Idempotency-Key": "order-778"})
    second = partner.create(headers={"Idempotency-Key": "order-778"})
    assert first.status_code == second.status_code == 201
    assert first.get_json() == second.get_json()
    assert sandbox.calls()["create_envelope"] == 1


def test_idempotency_key_with_other_body_is_409(partner: PartnerActions, sandbox) -> None:
    partner.create(headers={"Idempotency-Key": "k1"})
    problem(partner.create(headers={"Idempotency-Key": "k1"}, reference="other"), 409,
            "idempotency_conflict")
    assert sandbox.calls()["create_envelope"] == 1


def test_idempotency_keys_are_per_partner(partner, other_partner, sandbox) -> None:
    a = partner.create(headers={"Idempotency-Key": "same"})
    b = other_partner.create(headers={"Idempotency-Key": "same"})
    assert a.get_json()["envelope_id"] != b.get_json()["envelope_id"]


def test_failed_create_releases_idempotency_key(partner: PartnerActions, sandbox) -> None:
    sandbox.fault(mode="status", status=500, count=1, endpoint="create_envelope")
    problem(partner.create(headers={"Idempotency-Key": "retry-me"}), 502, "upstream_unavailable")
    assert partner.create(headers={"Idempotency-Key": "retry-me"}).status_code == 201


# --- status ---------------------------------------------------------------------


def test_status_served_from_store_when_fresh(partner: PartnerActions, sandbox) -> None:
    env_id = partner.create().get_json()["envelope_id"]
    for _ in range(5):
        assert partner.status(env_id).status_code == 200
    assert sandbox.calls().get("get_envelope", 0) == 0


def test_status_polls_upstream_at_most_once_per_interval(app, partner, sandbox, monkeypatch):
    env_id = partner.create().get_json()["envelope_id"]
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 16 * 60)
    sandbox.advance(16 * 60)
    for _ in range(3):
        assert partner.status(env_id).status_code == 200
    assert sandbox.calls().get("get_envelope", 0) == 1


# --- rate limits ----------------------------------------------------------------


def test_rate_limit_is_per_partner_and_429(app, client) -> None:
    viewer = PartnerActions(client, "viewer", add_partner(app, "viewer"))
    for _ in range(3):
        assert viewer.status("nope").status_code == 404
    resp = viewer.status("nope")
    problem(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    other = PartnerActions(client, "other", add_partner(app, "other"))
    assert other.status("nope").status_code == 404


# --- upstream errors --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"mode": "status", "status": 500, "count": 5}, 502, "upstream_unavailable"),
        ({"mode": "status", "status": 429, "count": 5, "retry_after": 7}, 503,
         "upstream_rate_limited"),
    ],
)
def test_upstream_failures_mapped(partner: PartnerActions, sandbox, fault, status, code) -> None:
    sandbox.fault(endpoint="create_envelope", **fault)
    body = problem(partner.create(), status, code)
    assert "accounts" not in body["detail"]


def test_consent_missing_is_503(partner: PartnerActions, sandbox) -> None:
    info = requests.get(sandbox.url + "/_sandbox/info", timeout=5).json()
    sandbox.post("/_sandbox/consent", {"integration_key": info["integration_key"],
                                       "user_id": info["user_id"], "granted": False})
    body = problem(partner.create(), 503, "upstream_consent_required")
    assert info["integration_key"] not in str(body)


# --- errors never leak ------------------------------------------------------------


def test_500_is_problem_json_without_internals(app, partner, monkeypatch) -> None:
    from gateway.services import drafts

    def boom(*a, **k):
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(drafts, "_create", boom)
    resp = partner.create()
    body = problem(resp, 500, "internal_error")
    assert "secret internals" not in resp.get_data(as_text=True)
    assert body["request_id"] == resp.headers["X-Request-ID"]


def test_request_id_is_echoed(client) -> None:
    resp = client.get("/nowhere", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    assert resp.get_json()["request_id"] == "abc-123"


def test_unreachable_rate_limit_store_fails_closed(tmp_path, sandbox, rsa_private_pem) -> None:
    from tests.conftest import make_gateway

    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem,
                       RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    key = add_partner(app, "example")
    resp = app.test_client().get("/v1/templates", headers={"Authorization": f"Bearer {key}"})
    body = problem(resp, 503, "rate_limit_unavailable")
    assert resp.headers["Retry-After"] == "5"
    assert "redis" not in body["detail"].lower()


def test_a_create_kept_upstream_but_not_recorded_is_adopted_not_repeated(
        app, partner, sandbox, monkeypatch) -> None:
    """DocuSign made the envelope, then the gateway's write failed: the retry adopts it."""
    import sqlalchemy as sa

    from gateway.services import envelopes

    real_insert = envelopes.insert

    def database_gone(*args, **kwargs):
        raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(envelopes, "insert", database_gone)
    first = partner.create(headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 503
    monkeypatch.setattr(envelopes, "insert", real_insert)
    retry = partner.create(headers={"Idempotency-Key": "order-1"})
    assert retry.status_code == 201, retry.get_json()
    assert sandbox.calls()["create_envelope"] == 1
    assert partner.status(retry.get_json()["envelope_id"]).status_code == 200
