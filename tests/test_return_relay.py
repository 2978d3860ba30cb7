"""The return relay: relay tokens, the signed gateway_token, JWKS and key rotation."""

from __future__ import annotations

import re
import time
import typing as t

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.services import relay_tokens
from gateway.services import signing_keys
from tests.conftest import PartnerActions
from tests.conftest import SandboxControl
from tests.conftest import add_partner
from tests.embedded import act
from tests.embedded import path_and_query
from tests.embedded import query

RETURN_URL = "http://127.0.0.1:8070/signed"


# --- helpers ------------------------------------------------------------------


NDA = {"template": "nda", "fields": {"company": "Analytical Engines Ltd"}}


def start_session(partner: PartnerActions, sandbox: SandboxControl,
                  template: dict[str, t.Any] | None = None) -> tuple[str, str]:
    """(envelope id, signing URL) of a fresh envelope with an open signing session.

    The single-signer NDA by default: the partner's signature completes the envelope.
    """
    env_id = partner.create(**(template or NDA)).get_json()["envelope_id"]
    view = partner.view(env_id)
    assert view.status_code == 201, view.get_json()
    return env_id, view.get_json()["url"]


def relay_url(sandbox: SandboxControl, env_id: str) -> str:
    """The returnUrl the gateway gave DocuSign for the envelope's latest signing session."""
    return sandbox.envelope(env_id)["views"][-1]["return_url"]


def jwks_keys(client: t.Any) -> dict[str, t.Any]:
    resp = client.get("/.well-known/jwks.json")
    assert resp.status_code == 200
    return {jwk["kid"]: jwt.algorithms.ECAlgorithm.from_jwk(jwk) for jwk in resp.get_json()["keys"]}


def verify(client: t.Any, token: str, audience: str = "example") -> dict[str, t.Any]:
    """What a partner does: pick the JWKS key by kid, pin ES256, check iss, aud and exp."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    key = jwks_keys(client)[header["kid"]]
    return jwt.decode(token, key, algorithms=["ES256"], audience=audience,
                      issuer="http://gateway.test", options={"require": ["exp", "iat", "sub"]})


def envelope(app: t.Any, env_id: str) -> t.Any:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.select(store.envelopes)
                            .where(store.envelopes.c.envelope_id == env_id)).first()


def partner_id(app: t.Any, name: str) -> int:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.select(store.partners.c.id)
                            .where(store.partners.c.name == name)).scalar_one()


def used_tokens(app: t.Any) -> int:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(store.used_tokens)).scalar_one()


def mint_relay_token(app: t.Any, secret: bytes | None = None, **claims: t.Any) -> str:
    """A relay token as the gateway would make it, with `claims` overridden."""

    with app.app_context():
        real_secret, _ = signing_keys.load()
    now = int(time.time())
    body = {"env": "x", "ptn": 1, "ret": RETURN_URL, "exp": now + 600,
            "jti": "j" * 32, "aud": relay_tokens.RELAY_AUDIENCE} | claims
    return jwt.encode(body, secret or real_secret, algorithm="HS256")


def rejected(resp: t.Any, text: str) -> None:
    assert resp.status_code == 400
    assert resp.mimetype == "text/html"
    assert "Location" not in resp.headers
    assert text in resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"


# --- the happy path -----------------------------------------------------------------


def test_signing_complete_redirects_with_a_verifiable_token(app, client, partner, sandbox) -> None:
    env_id, url = start_session(partner, sandbox)
    back = act(url, "sign")
    assert back.startswith("http://gateway.test/v1/return/")
    assert query(back)["event"] == "signing_complete"

    resp = client.get(path_and_query(back))

    assert resp.status_code == 303
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    target = resp.headers["Location"]
    assert target.startswith(RETURN_URL + "?")
    params = query(target)
    assert set(params) == {"envelope_id", "event", "gateway_token"}
    assert params["envelope_id"] == env_id
    assert params["event"] == "signing_complete"
    claims = verify(client, params["gateway_token"])
    assert claims["sub"] == claims["envelope_id"] == env_id
    assert claims["status"] == "completed"
    assert claims["event"] == "signing_complete"
    assert claims["reference"] == "order-778"
    assert claims["exp"] - claims["iat"] == app.config["GATEWAY_TOKEN_TTL"]
    row = envelope(app, env_id)
    assert (row.status, row.last_event) == ("completed", "signing_complete")
    assert row.upstream_checked_at is not None
    assert sandbox.calls()["get_envelope"] == 1


def test_relay_url_is_the_gateways_not_the_partners(partner, sandbox) -> None:
    env_id, _ = start_session(partner, sandbox)
    url = relay_url(sandbox, env_id)
    assert url.startswith("http://gateway.test/v1/return/")
    assert "127.0.0.1:8070" not in url


def test_policy_frame_ancestors_and_message_origins_reach_the_view(partner, sandbox) -> None:
    env_id, _ = start_session(partner, sandbox)
    view = sandbox.envelope(env_id)["views"][-1]
    assert view["frame_ancestors"] == ["http://127.0.0.1:8070"]
    assert view["message_origins"] == []


def test_status_after_relay_is_served_from_the_store(client, partner, sandbox) -> None:
    env_id, url = start_session(partner, sandbox)
    client.get(path_and_query(act(url, "sign")))
    calls = sandbox.calls()["get_envelope"]
    body = partner.status(env_id).get_json()
    assert (body["status"], body["last_event"]) == ("completed", "signing_complete")
    assert sandbox.calls()["get_envelope"] == calls


# --- the browser's word is not enough -----------------------------------------------


def test_typed_signing_complete_is_checked_with_docusign(app, client, partner, sandbox) -> None:
    env_id, _ = start_session(partner, sandbox)
    resp = client.get(path_and_query(relay_url(sandbox, env_id)) + "?event=signing_complete")
    assert resp.status_code == 303
    claims = verify(client, query(resp.headers["Location"])["gateway_token"])
    upstream_status = sandbox.envelope(env_id)["status"]
    assert upstream_status == "sent"
    # the token repeats what the browser said, and what DocuSign says
    assert (claims["event"], claims["status"]) == ("signing_complete", upstream_status)
    assert envelope(app, env_id).status == "sent"
    assert sandbox.calls()["get_envelope"] == 1


def test_decline_is_confirmed_declined(app, client, partner, sandbox) -> None:
    env_id, url = start_session(partner, sandbox)
    back = act(url, "decline")
    assert query(back)["event"] == "decline"
    resp = client.get(path_and_query(back))
    claims = verify(client, query(resp.headers["Location"])["gateway_token"])
    assert (claims["event"], claims["status"]) == ("decline", "declined")
    row = envelope(app, env_id)
    assert (row.status, row.last_event) == ("declined", "decline")


def test_typed_decline_does_not_decline(app, client, partner, sandbox) -> None:
    env_id, _ = start_session(partner, sandbox)
    resp = client.get(path_and_query(relay_url(sandbox, env_id)) + "?event=decline")
    claims = verify(client, query(resp.headers["Location"])["gateway_token"])
    assert claims["status"] == "sent"
    assert envelope(app, env_id).status == "sent"


def test_cancel_records_the_event_without_an_upstream_read(app, client, partner, sandbox) -> None:
    env_id, url = start_session(partner, sandbox)
    resp = client.get(path_and_query(act(url, "cancel")))
    claims = verify(client, query(resp.headers["Location"])["gateway_token"])
    assert (claims["event"], claims["status"]) == ("cancel", "sent")
    row = envelope(app, env_id)
    assert (row.status, row.last_event) == ("sent", "cancel")
    assert sandbox.calls()["get_envelope"] == 0


def test_final_status_already_recorded_needs_no_read(app, client, partner, sandbox) -> None:
    from gateway import store

    env_id, url = start_session(partner, sandbox)
    back = act(url, "sign")
    with app.app_context(), store.transaction() as conn:  # as a Connect event would have
        conn.execute(store.envelopes.update().values(status="completed"))
    resp = client.get(path_and_query(back))
    assert verify(client, query(resp.headers["Location"])["gateway_token"])["status"] == "completed"
    assert sandbox.calls()["get_envelope"] == 0


def test_failed_confirmation_leaves_the_status_unconfirmed(app, client, partner, sandbox) -> None:
    env_id, url = start_session(partner, sandbox)
    back = act(url, "sign")
    sandbox.fault(endpoint="get_envelope", status=400, error_code="UNSPECIFIED_ERROR")
    resp = client.get(path_and_query(back))
    assert resp.status_code == 303
    claims = verify(client, query(resp.headers["Location"])["gateway_token"])
    assert (claims["event"], claims["status"]) == ("signing_complete", "sent")
    assert envelope(app, env_id).status == "sent"


def test_slow_confirmation_does_not_hold_the_signer(app, client, partner, sandbox) -> None:
    import time

    app.config["RETURN_CONFIRM_BUDGET"] = 1.0
    app.config["DOCUSIGN_READ_TIMEOUT"] = 0.4
    app.extensions["docusign"].init_app(app)
    env_id, url = start_session(partner, sandbox)
    back = act(url, "sign")
    sandbox.fault(mode="delay", delay_ms=3000, count=10, endpoint="get_envelope")
    started = time.monotonic()
    resp = client.get(path_and_query(back))
    assert time.monotonic() - started < 2.5  # the client's own budget would be 25 s
    assert resp.status_code == 303
    claims = verify(client, query(resp.headers["Location"])["gateway_token"])
    assert claims["status"] != "completed"  # unconfirmed, and the token says so


def test_relay_url_stays_within_docusigns_return_url_limit(app, partner, sandbox, tmp_path) -> None:

    env_id, _ = start_session(partner, sandbox)
    assert len(relay_url(sandbox, env_id)) < 300
    policy = tmp_path / "policies" / "example.toml"
    policy.write_text(policy.read_text().replace(
        'return_urls = ["http://127.0.0.1:8070/signed"]', 'return_urls = ["http://127.0.0.1:8070/"]'))
    long_url = "http://127.0.0.1:8070/" + "a" * 300
    resp = partner.view(env_id, return_url=long_url)
    assert resp.status_code == 422
    assert resp.get_json()["code"] == "return_url_not_allowed"
    detail = resp.get_json()["detail"]
    assert "too long" in detail
    assert len(sandbox.envelope(env_id)["views"]) == 1
    fits = int(re.search(r"under about (\d+) characters", detail)[1])
    assert 140 < fits < 300
    with app.test_request_context():
        assert len(relay_tokens.relay_url(env_id, 1, long_url[:fits])) <= 470


def test_partner_query_parameters_are_kept() -> None:
    from gateway.web.relay import with_query

    out = with_query("https://p.example/signed?order=7&event=forged#top",
                     {"envelope_id": "e", "event": "cancel", "gateway_token": "t"})
    assert out == "https://p.example/signed?order=7&envelope_id=e&event=cancel&gateway_token=t#top"


# --- bad relay tokens change nothing ------------------------------------------------


def test_replayed_token_is_refused(app, client, partner, sandbox) -> None:
    env_id, url = start_session(partner, sandbox)
    back = act(url, "cancel")
    assert client.get(path_and_query(back)).status_code == 303
    before = envelope(app, env_id)
    token_path = path_and_query(back).split("?")[0]
    rejected(client.get(token_path + "?event=signing_complete"), "already used")
    after = envelope(app, env_id)
    assert (after.status, after.last_event, after.updated_at) == (
        before.status, before.last_event, before.updated_at)
    assert sandbox.calls()["get_envelope"] == 0


def _nothing_recorded(app: t.Any, env_id: str) -> None:
    row = envelope(app, env_id)
    assert (row.status, row.last_event) == ("sent", None)
    assert used_tokens(app) == 0


def test_tampered_token_is_refused(app, client, partner, sandbox) -> None:
    env_id, _ = start_session(partner, sandbox)
    url = path_and_query(relay_url(sandbox, env_id))
    head, payload, sig = url.split("/v1/return/")[1].split(".")
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_decode(payload).replace(b"127.0.0.1:8070", b"127.0.0.1:9999")).decode()
    rejected(client.get(f"/v1/return/{head}.{forged_payload}.{sig}?event=cancel"), "not valid")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    rejected(client.get(f"/v1/return/{head}.{payload}.{flipped}?event=cancel"), "not valid")
    rejected(client.get("/v1/return/not-a-token?event=cancel"), "not valid")
    _nothing_recorded(app, env_id)


def test_expired_token_is_refused(app, client, partner, sandbox) -> None:
    env_id, _ = start_session(partner, sandbox)
    token = mint_relay_token(app, env=env_id, exp=int(time.time()) - 5)
    rejected(client.get(f"/v1/return/{token}?event=signing_complete"), "expired")
    _nothing_recorded(app, env_id)
    assert sandbox.calls()["get_envelope"] == 0


def test_foreign_tokens_are_refused(app, client, partner, sandbox) -> None:
    env_id, _ = start_session(partner, sandbox)
    add_partner(app, "other")
    other_id = partner_id(app, "other")
    cases = [
        # signed by another gateway
        mint_relay_token(app, secret=b"x" * 32, env=env_id),
        # a real signature, but for another partner's id
        mint_relay_token(app, env=env_id, ptn=other_id),
        # a real signature for an envelope the gateway does not know
        mint_relay_token(app, env="00000000-0000-0000-0000-000000000000"),
        # another audience (e.g. some other HS256 token of the gateway)
        mint_relay_token(app, env=env_id, aud="something-else"),
        # a claim missing
        jwt.encode({"env": env_id, "ptn": 1, "exp": int(time.time()) + 60, "jti": "k" * 32,
                    "aud": "relay"}, b"y" * 32, algorithm="HS256"),
        # alg none
        jwt.encode({"env": env_id, "ptn": 1, "ret": RETURN_URL, "exp": int(time.time()) + 60,
                    "jti": "n" * 32, "aud": "relay"}, None, algorithm="none"),
    ]
    for token in cases:
        rejected(client.get(f"/v1/return/{token}?event=signing_complete"), "not valid")
    _nothing_recorded(app, env_id)
    assert sandbox.calls()["get_envelope"] == 0


@pytest.mark.parametrize("suffix", ["", "?event=", "?event=bogus", "?event=SIGNING_COMPLETE"])
def test_unknown_event_is_refused_and_keeps_the_token(app, client, partner, sandbox, suffix) -> None:
    env_id, _ = start_session(partner, sandbox)
    url = path_and_query(relay_url(sandbox, env_id))
    rejected(client.get(url + suffix), "did not say")
    _nothing_recorded(app, env_id)
    assert client.get(url + "?event=cancel").status_code == 303


def test_return_url_withdrawn_from_policy_is_refused(app, client, partner, sandbox, tmp_path) -> None:
    env_id, _ = start_session(partner, sandbox)
    url = path_and_query(relay_url(sandbox, env_id))
    policy = tmp_path / "policies" / "example.toml"
    policy.write_text(policy.read_text().replace(
        'return_urls = ["http://127.0.0.1:8070/signed"]', 'return_urls = ["http://127.0.0.1:8070/new"]'))
    rejected(client.get(url + "?event=cancel"), "no longer valid")
    _nothing_recorded(app, env_id)


def test_revoked_partner_gets_no_token(app, client, partner, sandbox) -> None:
    from gateway import store
    from gateway.services import partner_keys as keys

    env_id, _ = start_session(partner, sandbox)
    with app.app_context(), store.transaction() as conn:
        keys.revoke_partner(conn, "example")
    rejected(client.get(path_and_query(relay_url(sandbox, env_id)) + "?event=cancel"), "not valid")
    _nothing_recorded(app, env_id)


def test_relay_is_audited(app, client, partner, sandbox) -> None:
    from gateway import store
    from gateway.services import audit

    env_id, url = start_session(partner, sandbox)
    client.get(path_and_query(act(url, "cancel")))
    client.get("/v1/return/garbage?event=cancel")
    with app.app_context(), store.transaction() as conn:
        rows = [r for r in audit.query(conn) if r["operation"] == "return_relay"]
    assert [(r["status"], r["code"], r["partner"]) for r in rows] == [
        (303, "ok", "example"), (400, "relay_rejected", None)]
    assert rows[0]["envelope_id"] == env_id
    # the relay token is a bearer credential: the trail keeps the route, never the token
    assert [r["path"] for r in rows] == ["/v1/return/<token>"] * 2


def test_relay_is_rate_limited_per_client_address(client, sandbox) -> None:
    for _ in range(60):
        assert client.get("/v1/return/x?event=cancel").status_code == 400
    limited = client.get("/v1/return/x?event=cancel")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    elsewhere = client.get("/v1/return/x?event=cancel", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert elsewhere.status_code == 400


# --- JWKS and key rotation ---------------------------------------------------------


def test_jwks_publishes_public_keys_only(client) -> None:
    resp = client.get("/.well-known/jwks.json")
    assert resp.headers["Cache-Control"].startswith("public, max-age=")
    (jwk,) = resp.get_json()["keys"]
    assert {"kty", "crv", "x", "y", "kid", "alg", "use"} == set(jwk)
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in jwk


def _token(app: t.Any) -> str:

    with app.test_request_context():
        return relay_tokens.gateway_token(partner="example", envelope_id="e1", event="cancel",
                                          status="sent")


def _rotate(app: t.Any, **kwargs: t.Any) -> str:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return signing_keys.rotate_signing_key(conn, **kwargs)


def test_rotation_keeps_old_keys_until_their_tokens_expire(app, client, monkeypatch) -> None:
    old_token = _token(app)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    new_kid = _rotate(app)
    new_token = _token(app)
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    assert set(jwks_keys(client)) == {old_kid, new_kid}
    assert verify(client, old_token)["sub"] == verify(client, new_token)["sub"] == "e1"

    ttl = app.config["GATEWAY_TOKEN_TTL"]
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + ttl - 5)
    assert set(jwks_keys(client)) == {old_kid, new_kid}
    monkeypatch.setattr(time, "time", lambda: real_time() + ttl + 5)
    assert set(jwks_keys(client)) == {new_kid}


def test_rotation_prunes_keys_whose_tokens_all_expired(app, monkeypatch) -> None:
    from gateway import store

    first = _rotate(app)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + app.config["GATEWAY_TOKEN_TTL"] + 5)
    second = _rotate(app)
    with app.app_context(), store.transaction() as conn:
        states = {k["kid"]: k["state"] for k in signing_keys.signing_key_summary(conn)}
    assert states == {second: "active", first: "retired"}


def test_new_key_can_be_published_before_it_signs(app, client, monkeypatch) -> None:
    old_kid = jwt.get_unverified_header(_token(app))["kid"]
    new_kid = _rotate(app, activate_in=600)
    assert set(jwks_keys(client)) == {old_kid, new_kid}
    assert jwt.get_unverified_header(_token(app))["kid"] == old_kid
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 601)
    app.extensions.pop("relay_keys", None)
    assert jwt.get_unverified_header(_token(app))["kid"] == new_kid


def test_drop_old_unpublishes_a_leaked_key_at_once(app, client) -> None:
    old_token = _token(app)
    new_kid = _rotate(app, drop_old=True)
    assert set(jwks_keys(client)) == {new_kid}
    with pytest.raises(KeyError):
        verify(client, old_token)


def test_token_signed_by_an_unknown_key_does_not_verify(app, client) -> None:

    kid = next(iter(jwks_keys(client)))
    forged = jwt.encode({"iss": "http://gateway.test", "aud": "example", "sub": "e", "iat": 1,
                         "exp": int(time.time()) + 60}, ec.generate_private_key(ec.SECP256R1()),
                        algorithm="ES256", headers={"kid": kid})
    with pytest.raises(jwt.InvalidSignatureError):
        verify(client, forged)
    assert signing_keys.SIGNING_ALGORITHM == "ES256"


def test_cli_rotates_and_lists_signing_keys(app, monkeypatch) -> None:
    from click.testing import CliRunner

    from gateway.cli import cli

    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("GATEWAY_MASTER_KEY", app.config["MASTER_KEY"])
    monkeypatch.setenv("GATEWAY_POLICY_DIR", app.config["POLICY_DIR"])
    runner = CliRunner()
    result = runner.invoke(cli, ["keys", "rotate-signing", "--activate-in", "10m"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("new signing key ")
    listed = runner.invoke(cli, ["keys", "list-signing"])
    assert [line.split()[1] for line in listed.output.splitlines()] == ["pending", "active"]
    assert "PRIVATE" not in listed.output
    bad = runner.invoke(cli, ["keys", "rotate-signing", "--activate-in", "soon"])
    assert bad.exit_code == 1
