"""Recipient view and the embedded signing page (docs/docusign-facts.md §4, §5)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest

from sandbox import constants as c
from tests.sandbox.conftest import rest_error

MISSING = "00000000-0000-0000-0000-000000000000"


def actions(page) -> dict[str, str]:
    """The form action URL of each button, keyed by the button id."""
    html = page.get_data(as_text=True)
    found = re.findall(
        r'<form method="post" action="([^"]+)">\s*(?:<input[^>]*>\s*)?'
        r'<button id="(\w+)"',
        html,
    )
    return {button: action for action, button in found}


# --- recipient view ------------------------------------------------------------------------


def test_view_url(ds):
    eid = ds.sent_envelope()
    resp = ds.view(eid)
    assert resp.status_code == c.RECIPIENT_VIEW_STATUS
    body = resp.get_json()
    assert list(body) == ["url"]
    assert body["url"].startswith("http://localhost/Signing/MTRedeem/v1/")
    token = body["url"].rsplit("/", 1)[1]
    assert len(token) >= 40


def test_view_on_draft_rejected(ds):
    eid = ds.create().get_json()["envelopeId"]
    rest_error(ds.view(eid), c.VIEW_INVALID_STATUS_CODE)


@pytest.mark.parametrize(
    "override",
    [
        {"clientUserId": "cu-2"},
        {"email": "eve@example.com"},
        {"userName": "Ada"},
    ],
)
def test_view_must_match_embedded_recipient(ds, override):
    rest_error(ds.view(ds.sent_envelope(), **override), "UNKNOWN_ENVELOPE_RECIPIENT")


def test_view_email_case_insensitive(ds):
    assert ds.view(ds.sent_envelope(), email="ADA@example.com").status_code == 201


def test_view_for_non_embedded_recipient_rejected(ds):
    resp = ds.create(status="sent", templateRoles=[ds.role(clientUserId=None)])
    eid = resp.get_json()["envelopeId"]
    rest_error(ds.view(eid, clientUserId="cu-1"), "UNKNOWN_ENVELOPE_RECIPIENT")


@pytest.mark.parametrize(
    "missing", ["returnUrl", "authenticationMethod", "userName", "email", "clientUserId"]
)
def test_view_required_fields(ds, missing):
    message = rest_error(ds.view(ds.sent_envelope(), **{missing: None}), "INVALID_REQUEST_PARAMETER")
    assert missing in message


def test_view_empty_body(ds):
    eid = ds.sent_envelope()
    resp = ds.rest("POST", f"/envelopes/{eid}/views/recipient", json={})
    rest_error(resp, "INVALID_REQUEST_BODY")
    resp = ds.rest("POST", f"/envelopes/{eid}/views/recipient")
    rest_error(resp, "INVALID_REQUEST_BODY")


@pytest.mark.parametrize(
    "override",
    [
        {"returnUrl": "/relative"},
        {"returnUrl": "javascript:alert(1)"},
        {"frameAncestors": ["https://ok.example", "https://bad.example; script-src *"]},
        {"frameAncestors": "https://ok.example"},
        {"messageOrigins": ["https://ok.example/path"]},
    ],
)
def test_view_rejects_bad_urls(ds, override):
    rest_error(ds.view(ds.sent_envelope(), **override), "INVALID_REQUEST_PARAMETER")


def test_view_on_voided_envelope_rejected(ds):
    eid = ds.sent_envelope()
    ds.rest("PUT", f"/envelopes/{eid}", json={"status": "voided", "voidedReason": "x"})
    rest_error(ds.view(eid), c.VIEW_INVALID_STATUS_CODE)


def test_view_stores_frame_settings(ds):
    eid = ds.sent_envelope()
    ds.view(
        eid,
        frameAncestors=["https://partner.example", "https://apps-d.docusign.com"],
        messageOrigins=["https://apps-d.docusign.com"],
    )
    (view,) = ds.record(eid)["views"]
    assert view["frame_ancestors"] == ["https://partner.example", "https://apps-d.docusign.com"]
    assert view["message_origins"] == ["https://apps-d.docusign.com"]
    assert view["return_url"] == "https://partner.example/back?ref=7"


# --- signing page ---------------------------------------------------------------------------


def test_signing_page_marks_delivered_and_shows_values(ds):
    eid = ds.sent_envelope()
    path = ds.signing_path(eid)
    page = ds.client.get(path)
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "Your membership agreement" in html
    assert "Ada Lovelace" in html
    assert "12345" in html and "plus" in html
    assert set(actions(page)) == {"sign", "decline", "cancel"}
    # plain HTML: nothing loaded from elsewhere
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    record = ds.record(eid)
    # the membership template routes on to a countersigner, who has not opened it yet
    assert record["status"] == "sent"
    assert record["recipients"][0]["status"] == "delivered"


def test_signing_page_escapes_values(ds):
    role = ds.role(name="<b>Ada</b>", tabs={"textTabs": [{"tabLabel": "plan", "value": "<i>x"}]})
    eid = ds.create(status="sent", templateRoles=[role]).get_json()["envelopeId"]
    html = ds.client.get(ds.signing_path(eid, userName="<b>Ada</b>")).get_data(as_text=True)
    assert "<b>Ada</b>" not in html and "&lt;b&gt;Ada&lt;/b&gt;" in html
    assert "<i>x" not in html


def test_signing_url_is_single_use(ds):
    path = ds.signing_path(ds.sent_envelope())
    assert ds.client.get(path).status_code == 200
    again = ds.client.get(path)
    assert again.status_code == 410
    assert "already been used" in again.get_data(as_text=True)


def test_signing_url_expires(ds):
    path = ds.signing_path(ds.sent_envelope())
    ds.advance(300)
    resp = ds.client.get(path)
    assert resp.status_code == 410
    assert "expired" in resp.get_data(as_text=True)


def test_signing_url_just_before_expiry(ds):
    path = ds.signing_path(ds.sent_envelope())
    ds.advance(299)
    assert ds.client.get(path).status_code == 200


def test_unknown_signing_url(client):
    resp = client.get(c.SIGNING_PATH_PREFIX + "nope")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"


@pytest.mark.parametrize(
    ("ancestors", "policy"),
    [
        (None, "frame-ancestors 'self'"),
        (["https://partner.example"], "frame-ancestors 'self' https://partner.example"),
        (
            ["http://127.0.0.1:8070", "https://apps-d.docusign.com"],
            "frame-ancestors 'self' http://127.0.0.1:8070 https://apps-d.docusign.com",
        ),
    ],
)
def test_frame_ancestors_header(ds, ancestors, policy):
    page = ds.client.get(ds.signing_path(ds.sent_envelope(), frameAncestors=ancestors))
    assert page.headers["Content-Security-Policy"] == policy
    assert "X-Frame-Options" not in page.headers


def test_error_pages_keep_frame_ancestors(ds):
    path = ds.signing_path(ds.sent_envelope(), frameAncestors=["https://partner.example"])
    ds.client.get(path)
    again = ds.client.get(path)
    assert again.headers["Content-Security-Policy"] == ("frame-ancestors 'self' https://partner.example")


def _redirect(resp) -> tuple[str, dict[str, list[str]]]:
    assert resp.status_code == 302
    parts = urlsplit(resp.headers["Location"])
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)


def test_sign(ds):
    eid = ds.sent_envelope()
    page = ds.client.get(ds.signing_path(eid))
    where, query = _redirect(ds.client.post(actions(page)["sign"]))
    assert where == "https://partner.example/back"
    assert query == {"ref": ["7"], "event": ["signing_complete"]}
    record = ds.record(eid)
    # the membership template's countersigner (routing order 2) signs next
    assert record["status"] == "sent"
    assert [r["status"] for r in record["recipients"]] == ["completed", "sent", "created"]
    ds.control(f"/envelopes/{eid}/recipients/2/sign")
    body = ds.rest("GET", f"/envelopes/{eid}?include=recipients").get_json()
    assert body["status"] == "completed"
    assert "completedDateTime" in body
    signer = body["recipients"]["signers"][0]
    assert signer["status"] == "completed"
    assert "signedDateTime" in signer


def test_decline(ds):
    eid = ds.sent_envelope()
    page = ds.client.get(ds.signing_path(eid, returnUrl="https://partner.example/back"))
    where, query = _redirect(ds.client.post(actions(page)["decline"], data={"reason": "no"}))
    assert query == {"event": ["decline"]}
    record = ds.record(eid)
    assert record["status"] == "declined"
    assert record["recipients"][0]["status"] == "declined"
    assert record["recipients"][0]["declinedReason"] == "no"


def test_cancel_changes_nothing(ds):
    eid = ds.sent_envelope()
    page = ds.client.get(ds.signing_path(eid))
    _, query = _redirect(ds.client.post(actions(page)["cancel"]))
    assert query["event"] == ["cancel"]
    assert ds.record(eid)["status"] == "sent"  # the countersigner has not opened it yet
    # the session is over, but a new view can be requested and signed
    assert ds.client.post(actions(page)["sign"]).status_code == 410
    page = ds.client.get(ds.signing_path(eid))
    _, query = _redirect(ds.client.post(actions(page)["sign"]))
    assert query["event"] == ["signing_complete"]


def test_actions_after_terminal_status(ds):
    eid = ds.sent_envelope()
    first = ds.client.get(ds.signing_path(eid))
    second = ds.client.get(ds.signing_path(eid))
    ds.client.post(actions(first)["sign"])
    resp = ds.client.post(actions(second)["decline"])
    assert resp.status_code == 409
    assert resp.mimetype == "text/html"
    # and no new view for a finished envelope
    rest_error(ds.view(eid), c.VIEW_INVALID_STATUS_CODE)


def test_voided_while_open(ds):
    eid = ds.sent_envelope()
    page = ds.client.get(ds.signing_path(eid))
    path = ds.signing_path(eid)
    ds.rest("PUT", f"/envelopes/{eid}", json={"status": "voided", "voidedReason": "x"})
    assert ds.client.post(actions(page)["sign"]).status_code == 409
    assert ds.client.get(path).status_code == 409
    assert ds.record(eid)["status"] == "voided"


def test_session_timeout(ds):
    eid = ds.sent_envelope()
    page = ds.client.get(ds.signing_path(eid))
    ds.advance(3600)
    _, query = _redirect(ds.client.post(actions(page)["sign"]))
    assert query["event"] == ["session_timeout"]
    assert ds.record(eid)["status"] == "sent"  # the countersigner has not opened it yet


def test_unknown_session_or_action(ds):
    page = ds.client.get(ds.signing_path(ds.sent_envelope()))
    sign = actions(page)["sign"]
    assert ds.client.post(sign.replace("/sign", "/approve")).status_code == 404
    assert ds.client.post("/Signing/session/nope/sign").status_code == 404
    assert ds.client.get(sign).status_code == 405
