"""JWT grant, userinfo and consent page (docs/docusign-facts.md §1-2)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import sandbox
from sandbox import constants as c


def oauth_error(resp, error="invalid_grant"):
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    return body["error_description"]


def test_good_grant(ds):
    resp = ds.request_token(ds.assertion())
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 40
    # opaque: not a JWT the client could read
    assert body["access_token"].count(".") == 0


def test_assertion_lifetime_of_4000_seconds_accepted(ds):
    assert ds.request_token(ds.assertion(exp=ds.now() + 4000)).status_code == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://account-d.docusign.com"}, "no_valid_keys_or_signatures"),
        ({"aud": "account-d.docusign.com/"}, "no_valid_keys_or_signatures"),
        ({"aud": "account.docusign.com"}, "no_valid_keys_or_signatures"),
        ({"aud": None}, "no_valid_keys_or_signatures"),
        ({"exp": None}, "no_valid_keys_or_signatures"),
        ({"exp": "soon"}, "no_valid_keys_or_signatures"),
        ({"iss": "00000000-0000-0000-0000-000000000000"}, "issuer_not_found"),
        ({"iss": None}, "issuer_not_found"),
        ({"sub": "00000000-0000-0000-0000-000000000000"}, "user_not_found"),
        ({"sub": c.DEMO_USER_EMAIL}, "user_not_found"),
        ({"sub": None}, "user_not_found"),
    ],
)
def test_claim_rules(ds, claims, reason):
    assert oauth_error(ds.request_token(ds.assertion(**claims))) == reason


def test_expired_assertion(ds):
    now = ds.now()
    assertion = ds.assertion(iat=now - 7200, exp=now - 1)
    assert oauth_error(ds.request_token(assertion)) == "expired_grant"


def test_future_nbf_rejected_past_nbf_accepted(ds):
    now = ds.now()
    assert oauth_error(ds.request_token(ds.assertion(nbf=now + 60))) == "no_valid_keys_or_signatures"
    assert ds.request_token(ds.assertion(nbf=now - 60)).status_code == 200


def test_lifetime_cap(ds):
    too_long = ds.assertion(exp=ds.now() + c.MAX_ASSERTION_LIFETIME + 60)
    assert oauth_error(ds.request_token(too_long)) == c.ASSERTION_TOO_LONG_DESCRIPTION


def test_unregistered_key(ds, rsa_keys):
    assertion = ds.assertion(key=rsa_keys[1])
    assert oauth_error(ds.request_token(assertion)) == "no_valid_keys_or_signatures"


def test_no_key_registered_at_start(bare_ds):
    bare_ds.grant()
    assert oauth_error(bare_ds.request_token(bare_ds.assertion())) == "no_valid_keys_or_signatures"


def test_any_of_several_registered_keys(ds, rsa_keys):
    ds.register(rsa_keys[1])
    assert ds.request_token(ds.assertion(key=rsa_keys[1])).status_code == 200
    assert ds.request_token(ds.assertion(key=rsa_keys[0])).status_code == 200


def test_hs256_and_none_algorithms_rejected(ds):
    hs = jwt.encode(ds.claims(), "s" * 64, algorithm="HS256")
    assert oauth_error(ds.request_token(hs)) == "no_valid_keys_or_signatures"
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(ds.claims()).encode()).rstrip(b"=")
    unsigned = (header + b"." + payload + b".").decode()
    assert oauth_error(ds.request_token(unsigned)) == "no_valid_keys_or_signatures"


def test_rs512_rejected(ds):
    assertion = jwt.encode(ds.claims(), ds.key, algorithm="RS512")
    assert oauth_error(ds.request_token(assertion)) == "no_valid_keys_or_signatures"


def test_missing_consent(bare_ds):
    bare_ds.register()
    assert oauth_error(bare_ds.request_token(bare_ds.assertion()), "consent_required")


def test_withdrawn_consent(ds):
    ds.grant(False)
    assert oauth_error(ds.request_token(ds.assertion()), "consent_required")


@pytest.mark.parametrize("scope", ["signature", "impersonation", "", None, "extended"])
def test_scope_must_hold_signature_and_impersonation(ds, scope):
    resp = ds.request_token(ds.assertion(scope=scope))
    oauth_error(resp, c.SCOPE_MISSING_ERROR)


def test_wider_scope_accepted(ds):
    assertion = ds.assertion(scope="signature extended impersonation")
    assert ds.request_token(assertion).status_code == 200


def test_wrong_grant_type(ds):
    oauth_error(ds.request_token(ds.assertion(), grant_type="client_credentials"), "unsupported_grant_type")


def test_missing_parameters(ds, client):
    oauth_error(client.post("/oauth/token", data={}), c.MISSING_PARAMETER_ERROR)
    oauth_error(
        client.post("/oauth/token", data={"grant_type": c.JWT_BEARER_GRANT_TYPE}),
        c.MISSING_PARAMETER_ERROR,
    )
    # a JSON body is not a form: the grant type is simply not there
    resp = client.post(
        "/oauth/token",
        json={"grant_type": c.JWT_BEARER_GRANT_TYPE, "assertion": ds.assertion()},
    )
    oauth_error(resp, c.MISSING_PARAMETER_ERROR)


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        ("x", "no_valid_keys_or_signatures"),
        ("a.b.c", "no_valid_keys_or_signatures"),
        ("....", "no_valid_keys_or_signatures"),
        # a well-formed RS256 header over empty claims: no iss to look up
        ("eyJhbGciOiJSUzI1NiJ9.e30.", "issuer_not_found"),
    ],
)
def test_garbage_assertion(ds, garbage, reason):
    assert oauth_error(ds.request_token(garbage)) == reason


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_tampered_character_is_rejected(ds, data):
    good = ds.assertion()
    index = data.draw(st.integers(min_value=0, max_value=len(good) - 1), label="index")
    alphabet = st.characters(min_codepoint=33, max_codepoint=126)
    replacement = data.draw(alphabet.filter(lambda ch: ch != good[index]), label="char")
    tampered = good[:index] + replacement + good[index + 1 :]
    resp = ds.request_token(tampered)
    assert resp.status_code == 400
    assert "access_token" not in resp.get_json()


def test_non_canonical_base64_signature_rejected(ds):
    """The last base64url character carries spare bits: changing only those is tampering too."""
    good = ds.assertion()
    head, _, signature = good.rpartition(".")
    # 256 signature bytes -> 342 chars; the last char holds 2 data bits and 4 spare bits
    last = signature[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(last) ^ 1]
    forged = f"{head}.{signature[:-1]}{twin}"
    assert base64.urlsafe_b64decode(forged.rpartition(".")[2] + "==") == base64.urlsafe_b64decode(
        signature + "=="
    )
    assert oauth_error(ds.request_token(forged)) == "no_valid_keys_or_signatures"


# --- token lifetime and userinfo -------------------------------------------------------


def test_token_expires_on_the_emulator_clock(ds):
    assert ds.rest("GET", "/envelopes/00000000-0000-0000-0000-000000000000").status_code == 404
    ds.advance(3599)
    assert ds.client.get("/oauth/userinfo", headers=ds.auth).status_code == 200
    ds.advance(2)
    resp = ds.client.get("/oauth/userinfo", headers=ds.auth)
    assert resp.status_code == c.USERINFO_AUTH_ERROR_STATUS
    assert resp.get_json()["error"] == c.USERINFO_AUTH_ERROR
    resp = ds.rest("GET", "/envelopes/00000000-0000-0000-0000-000000000000")
    assert resp.status_code == 401
    assert resp.get_json()["errorCode"] == "USER_AUTHENTICATION_FAILED"


def test_longer_assertion_does_not_extend_token(ds):
    resp = ds.request_token(ds.assertion(exp=ds.now() + 4000))
    assert resp.get_json()["expires_in"] == 3600


def test_userinfo_shape(ds):
    resp = ds.client.get("/oauth/userinfo", headers=ds.auth)
    assert resp.status_code == 200
    body = resp.get_json()
    assert set(body) == {"sub", "name", "given_name", "family_name", "created", "email", "accounts"}
    assert body["sub"] == c.DEMO_USER_ID
    assert body["name"] == "Gateway System Sender"
    assert body["email"] == "sender@sandbox.example"
    (account,) = body["accounts"]
    assert set(account) == {"account_id", "is_default", "account_name", "base_uri", "organization"}
    assert account["account_id"] == c.DEMO_ACCOUNT_ID
    assert account["is_default"] is True
    assert account["base_uri"] == "http://localhost"
    assert set(account["organization"]) == {"organization_id", "links"}


def test_base_uri_from_config(make_ds):
    ds = make_ds(SANDBOX_BASE_URI="https://demo.sandbox.test/")
    account = ds.client.get("/oauth/userinfo", headers=ds.auth).get_json()["accounts"][0]
    assert account["base_uri"] == "https://demo.sandbox.test"
    url = ds.view(ds.sent_envelope()).get_json()["url"]
    assert url.startswith("https://demo.sandbox.test/Signing/MTRedeem/v1/")
    info = ds.client.get("/_sandbox/info").get_json()
    assert info["base_uri"] == info["auth_base_url"] == "https://demo.sandbox.test"


def test_unknown_config_key_rejected():
    with pytest.raises(ValueError, match="SANDBOX_HORLY_LIMIT"):
        sandbox.create_app({"SANDBOX_HORLY_LIMIT": 1})


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "bearer"])
def test_userinfo_needs_a_valid_token(client, header):
    headers = {"Authorization": header} if header else {}
    resp = client.get("/oauth/userinfo", headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == c.USERINFO_AUTH_ERROR


# --- consent page -----------------------------------------------------------------------


CONSENT = (
    "/oauth/auth?response_type=code&scope=signature%20impersonation"
    f"&client_id={c.DEMO_INTEGRATION_KEY}"
    "&redirect_uri=https%3A%2F%2Fdevelopers.docusign.com%2Fplatform%2Fauth%2Fconsent&state=s1"
)


def test_consent_page_grants_consent(bare_ds, client):
    bare_ds.register()
    assert oauth_error(bare_ds.request_token(bare_ds.assertion()), "consent_required")
    page = client.get(CONSENT)
    assert page.status_code == 200
    assert 'id="allow"' in page.get_data(as_text=True)
    done = client.post(CONSENT, data={"decision": "allow"})
    assert done.status_code == 200
    text = done.get_data(as_text=True)
    assert "Consent granted" in text
    assert "https://developers.docusign.com/platform/auth/consent?code=" in text
    assert "state=s1" in text
    assert bare_ds.request_token(bare_ds.assertion()).status_code == 200


def test_consent_page_plus_separated_scope(client):
    url = CONSENT.replace("signature%20impersonation", "signature+impersonation")
    assert client.get(url).status_code == 200


def test_consent_deny_grants_nothing(bare_ds, client):
    bare_ds.register()
    done = client.post(CONSENT, data={"decision": "deny"})
    assert "error=access_denied" in done.get_data(as_text=True)
    assert oauth_error(bare_ds.request_token(bare_ds.assertion()), "consent_required")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("response_type=code", "response_type=token"),
        (c.DEMO_INTEGRATION_KEY, "00000000-0000-0000-0000-000000000000"),
        ("signature%20impersonation", "signature"),
        ("redirect_uri=https", "redirect_uri=ftp"),
    ],
)
def test_consent_page_rejects_bad_requests(client, old, new):
    resp = client.get(CONSENT.replace(old, new))
    assert resp.status_code == 400
    assert resp.mimetype == "text/html"
