"""Fidelity gaps found by a conformance check: returnUrl length, listStatusChanges filters,
numeric clientUserId, and no Retry-After on limit errors."""

from __future__ import annotations

from sandbox import constants as c
from tests.sandbox.conftest import rest_error


def _url(length: int) -> str:
    base = "https://partner.example/back?x="
    return base + "a" * (length - len(base))


def test_return_url_length_limit(ds):
    eid = ds.sent_envelope()
    assert len(_url(c.RETURN_URL_MAX)) == 470
    assert ds.view(eid, returnUrl=_url(c.RETURN_URL_MAX)).status_code == 201
    resp = ds.view(eid, returnUrl=_url(c.RETURN_URL_MAX + 1))
    if c.RETURN_URL_TOO_LONG_REFUSED:
        assert "returnUrl" in rest_error(resp, c.INVALID_PARAMETER_CODE)
    else:  # as DocuSign documents: the signer is sent to the URL cut to 470 characters
        assert resp.status_code == 201
        assert ds.record(eid)["views"][-1]["return_url"] == _url(c.RETURN_URL_MAX + 1)[:470]


def test_numeric_client_user_id_is_read_as_a_string(ds):
    role = ds.role(clientUserId=1000)
    eid = ds.create(status="sent", templateRoles=[role]).get_json()["envelopeId"]
    assert ds.record(eid)["recipients"][0]["clientUserId"] == "1000"
    assert ds.view(eid, clientUserId=1000).status_code == 201
    assert ds.view(eid, clientUserId="1000").status_code == 201
    # not any JSON type: a boolean or an object is still refused
    rest_error(ds.create(templateRoles=[ds.role(clientUserId=True)]), c.INVALID_PARAMETER_CODE)
    rest_error(ds.view(eid, clientUserId={"a": 1}), c.INVALID_PARAMETER_CODE)


def _ids(resp) -> list[str]:
    assert resp.status_code == 200, resp.get_json()
    return [e["envelopeId"] for e in resp.get_json().get("envelopes", [])]


def test_list_status_filter(ds):
    draft = ds.create().get_json()["envelopeId"]
    sent = ds.sent_envelope()
    voided = ds.sent_envelope()
    ds.rest("PUT", f"/envelopes/{voided}", json={"status": "voided", "voidedReason": "x"})
    since = "2000-01-01T00:00:00Z"
    assert _ids(ds.rest("GET", f"/envelopes?from_date={since}&status=sent")) == [sent]
    assert sorted(_ids(ds.rest("GET", f"/envelopes?from_date={since}&status=created,voided"))) == sorted(
        [draft, voided]
    )
    assert len(_ids(ds.rest("GET", f"/envelopes?from_date={since}&status=any"))) == 3
    assert _ids(ds.rest("GET", f"/envelopes?from_date={since}&status=completed")) == []
    rest_error(ds.rest("GET", f"/envelopes?from_date={since}&status=finished"), c.INVALID_PARAMETER_CODE)


def test_list_include_recipients(ds):
    eid = ds.sent_envelope()
    resp = ds.rest("GET", f"/envelopes?envelope_ids={eid}&include=recipients")
    (envelope,) = resp.get_json()["envelopes"]
    recipients = envelope["recipients"]
    assert [s["roleName"] for s in recipients["signers"]] == ["Member", "Countersigner"]
    assert recipients["carbonCopies"][0]["roleName"] == "Legal"
    plain = ds.rest("GET", f"/envelopes?envelope_ids={eid}").get_json()["envelopes"][0]
    assert "recipients" not in plain


def test_limit_errors_carry_no_retry_after(make_ds):
    ds = make_ds(SANDBOX_BURST_LIMIT=2)
    eid = ds.sent_envelope()
    assert ds.rest("GET", f"/envelopes/{eid}").status_code == 200
    resp = ds.rest("GET", f"/envelopes/{eid}")
    assert resp.status_code == c.RATE_LIMIT_STATUS
    assert resp.get_json()["errorCode"] == c.BURST_LIMIT_CODE
    assert not c.RATE_LIMIT_SENDS_RETRY_AFTER
    assert "Retry-After" not in resp.headers
    assert resp.headers["X-BurstLimit-Remaining"] == "0"
    ds.advance(30)
    resp = ds.rest("GET", f"/envelopes/{eid}")
    assert resp.get_json()["errorCode"] == c.POLL_LIMIT_CODE
    assert "Retry-After" not in resp.headers
