"""The `/_sandbox` control API: keys, consent, templates, clock, reset, records."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import constants as c


def pem_of(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def add_key(client, pem, ik=c.DEMO_INTEGRATION_KEY):
    return client.post("/_sandbox/keys", json={"integration_key": ik, "public_key_pem": pem})


def test_at_most_five_keys(client, rsa_keys):
    for key in rsa_keys[:5]:
        resp = add_key(client, pem_of(key))
        assert resp.status_code == 201
        assert set(resp.get_json()) == {"key_id"}
    resp = add_key(client, pem_of(rsa_keys[5]))
    assert resp.status_code == 400
    assert "5" in resp.get_json()["error"]


def test_same_key_twice_is_idempotent(client, rsa_keys):
    first = add_key(client, pem_of(rsa_keys[0])).get_json()["key_id"]
    again = add_key(client, pem_of(rsa_keys[0]))
    assert again.status_code == 200
    assert again.get_json()["key_id"] == first


@pytest.mark.parametrize(
    "pem",
    [
        "not a pem",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "",
    ],
)
def test_bad_pem(client, pem):
    resp = add_key(client, pem)
    assert resp.status_code == 400


def test_non_rsa_and_short_keys_rejected(client):
    assert add_key(client, pem_of(ec.generate_private_key(ec.SECP256R1()))).status_code == 400
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert add_key(client, pem_of(small)).status_code == 400


def test_unknown_integration_key(client, rsa_keys):
    assert add_key(client, pem_of(rsa_keys[0]), ik="nope").status_code == 404


def test_delete_key(ds, rsa_keys):
    key_id = ds.control("/keys", method="GET")[c.DEMO_INTEGRATION_KEY][0]
    ds.control(f"/keys/{key_id}", method="DELETE")
    resp = ds.request_token(ds.assertion())
    assert resp.get_json()["error_description"] == "no_valid_keys_or_signatures"
    assert ds.client.delete(f"/_sandbox/keys/{key_id}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"integration_key": "nope", "user_id": c.DEMO_USER_ID},
        {"integration_key": c.DEMO_INTEGRATION_KEY, "user_id": "nope"},
        {"integration_key": c.DEMO_INTEGRATION_KEY, "user_id": c.DEMO_USER_ID, "granted": "yes"},
    ],
)
def test_bad_consent(client, body):
    assert client.post("/_sandbox/consent", json=body).status_code in (400, 404)


def test_add_template_and_conflicts(ds):
    tpl = ds.control(
        "/templates",
        {
            "templateId": "11111111-2222-4333-8444-555555555555",
            "name": "Lease",
            "roles": ["Tenant"],
            "textTabs": ["unit"],
        },
    )
    assert tpl["templateId"] == "11111111-2222-4333-8444-555555555555"
    assert tpl["emailSubject"] == "Please sign: Lease"
    again = ds.client.post("/_sandbox/templates", json={**tpl})
    assert again.status_code == 409
    role = {"roleName": "Tenant", "name": "T", "email": "t@example.com"}
    role["tabs"] = {"textTabs": [{"tabLabel": "unit", "value": "4B"}]}
    assert ds.create(templateId=tpl["templateId"], templateRoles=[role]).status_code == 201
    names = [t["name"] for t in ds.control("/templates", method="GET")]
    assert names == ["Membership agreement", "Mutual NDA", "Internal HR form", "Lease"]


@pytest.mark.parametrize(
    "body",
    [
        {"roles": ["A"]},
        {"name": "X", "roles": []},
        {"name": "X", "roles": ["A", "A"]},
        {"name": "X", "roles": ["A"], "templateId": "not-a-guid"},
        {"name": "X", "roles": ["A"], "textTabs": ["a", "a"]},
        {"name": "X", "roles": ["A"], "textTabs": "a"},
    ],
)
def test_bad_templates(client, body):
    assert client.post("/_sandbox/templates", json=body).status_code == 400


def test_clock(ds):
    before = ds.control("/clock", method="GET")["now"]
    after = ds.control("/clock", {"advance": 600})["now"]
    assert after - before >= 600
    for bad in (-1, "10", None, True):
        assert ds.client.post("/_sandbox/clock", json={"advance": bad}).status_code == 400


def test_reset_restores_the_seed(ds, listener):
    _, url = listener
    eid = ds.sent_envelope()
    ds.control("/connect", {"url": url, "hmac_secrets": ["s"]})
    ds.control("/faults", {"status": 500, "count": 3})
    ds.control("/templates", {"name": "Extra", "roles": ["A"]})
    ds.advance(5000)
    ds.control("/reset")
    assert ds.client.get(f"/_sandbox/envelopes/{eid}").status_code == 404
    assert ds.control("/keys", method="GET") == {c.DEMO_INTEGRATION_KEY: []}
    assert ds.control("/faults", method="GET") == {"faults": []}
    assert ds.control("/calls", method="GET")["total"] == 0
    assert len(ds.control("/templates", method="GET")) == 3
    assert ds.control("/clock", method="GET")["offset"] == 0
    # tokens issued before the reset are gone too
    resp = ds.client.get("/oauth/userinfo", headers=ds.auth)
    assert resp.status_code == 401
    ds.register()
    assert ds.request_token(ds.assertion()).get_json()["error"] == "consent_required"
    assert ds.state.connect.config["enabled"] is False


def test_envelope_record(ds):
    eid = ds.sent_envelope()
    ds.client.get(ds.signing_path(eid))
    record = ds.record(eid)
    assert record["envelopeId"] == eid
    assert record["templateId"] == c.MEMBERSHIP_TEMPLATE_ID
    assert record["status"] == "sent"  # the countersigner has not opened it yet
    assert record["recipients"][0]["status"] == "delivered"
    assert len(record["views"]) == 1
    assert record["views"][0]["redeemed"] is not None
    assert len(record["sessions"]) == 1
    listing = ds.control("/envelopes", method="GET")
    assert listing == [{"envelopeId": eid, "status": "sent"}]


def test_control_errors_are_json(client):
    resp = client.post("/_sandbox/keys", data="x", content_type="text/plain")
    assert resp.status_code == 400
    assert "error" in resp.get_json()
    resp = client.get("/_sandbox/nothing")
    assert resp.status_code == 404
    assert "error" in resp.get_json()
