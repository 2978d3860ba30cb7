"""Multi-recipient templates: routing order, the remote countersigner, recipient events."""

from __future__ import annotations

import json
import re

import pytest

from sandbox import constants as c
from tests.sandbox.conftest import rest_error

LEASE_ID = "11111111-2222-4333-8444-555555555555"


def actions(page) -> dict[str, str]:
    html = page.get_data(as_text=True)
    return {a.rsplit("/", 1)[1]: a for a in re.findall(r'action="([^"]+)"', html)}


def embedded_sign(ds, eid, action="sign", **view):
    page = ds.client.get(ds.signing_path(eid, **view))
    assert page.status_code == 200
    resp = ds.client.post(actions(page)[action], data={"reason": "not today"})
    assert resp.status_code == 302
    return page


def statuses(ds, eid):
    record = ds.record(eid)
    return record["status"], [r["status"] for r in record["recipients"]]


def recipients(ds, eid):
    return ds.rest("GET", f"/envelopes/{eid}/recipients").get_json()


# --- lifecycle ---------------------------------------------------------------------------------


def test_embedded_signer_then_countersigner_completes(make_ds):
    ds = make_ds(SANDBOX_ENVELOPE_POLL_LIMIT=100)
    eid = ds.sent_envelope()
    assert statuses(ds, eid) == ("sent", ["sent", "created", "created"])
    embedded_sign(ds, eid)
    # the embedded signer is done, the countersigner's turn comes; the envelope stays sent
    assert statuses(ds, eid) == ("sent", ["completed", "sent", "created"])
    body = recipients(ds, eid)
    assert body["currentRoutingOrder"] == "2"
    member, countersigner = body["signers"]
    assert member["status"] == "completed" and "signedDateTime" in member and "deliveredDateTime" in member
    assert countersigner["status"] == "sent" and "sentDateTime" in countersigner
    assert countersigner["name"] == c.DEMO_COUNTERSIGNER_NAME
    resp = ds.control(f"/envelopes/{eid}/recipients/2/sign")
    assert resp == {
        "envelopeId": eid,
        "recipientId": "2",
        "status": "completed",
        "envelopeStatus": "completed",
    }
    assert statuses(ds, eid) == ("completed", ["completed", "completed", "completed"])
    body = ds.rest("GET", f"/envelopes/{eid}?include=recipients").get_json()
    assert body["status"] == "completed"
    (cc,) = body["recipients"]["carbonCopies"]
    assert (cc["roleName"], cc["status"], cc["recipientType"]) == ("Legal", "completed", "carbonCopy")
    assert body["recipients"]["signers"][1]["signedDateTime"]
    assert body["recipients"] == recipients(ds, eid)


def test_countersigner_declines(make_ds):
    ds = make_ds(SANDBOX_ENVELOPE_POLL_LIMIT=100)
    eid = ds.sent_envelope()
    embedded_sign(ds, eid)
    resp = ds.control(f"/envelopes/{eid}/recipients/2/decline", {"reason": "Terms changed"})
    assert resp["status"] == "declined" and resp["envelopeStatus"] == "declined"
    assert statuses(ds, eid) == ("declined", ["completed", "declined", "created"])
    countersigner = recipients(ds, eid)["signers"][1]
    assert countersigner["declinedReason"] == "Terms changed"
    assert "declinedDateTime" in countersigner


def test_signer_declines_countersigner_never_sent(ds):
    eid = ds.sent_envelope()
    embedded_sign(ds, eid, action="decline")
    assert statuses(ds, eid) == ("declined", ["declined", "created", "created"])
    member, countersigner = recipients(ds, eid)["signers"]
    assert member["declinedReason"] == "not today"
    assert "sentDateTime" not in countersigner
    resp = ds.client.post(f"/_sandbox/envelopes/{eid}/recipients/2/sign")
    assert resp.status_code == 409


def test_control_sign_refusals(ds):
    eid = ds.sent_envelope()
    for path, status in [
        (f"/envelopes/{eid}/recipients/2/sign", 409),  # not its turn yet
        (f"/envelopes/{eid}/recipients/1/sign", 409),  # embedded: signs through a view
        (f"/envelopes/{eid}/recipients/3/sign", 409),  # a carbon copy
        (f"/envelopes/{eid}/recipients/9/sign", 404),
        ("/envelopes/00000000-0000-0000-0000-000000000000/recipients/2/decline", 404),
    ]:
        resp = ds.client.post("/_sandbox" + path)
        assert resp.status_code == status, path
        assert "error" in resp.get_json()
    assert ds.client.post(
        f"/_sandbox/envelopes/{eid}/recipients/2/decline", json={"reason": 3}
    ).status_code in (400, 409)
    assert statuses(ds, eid) == ("sent", ["sent", "created", "created"])
    draft = ds.create().get_json()["envelopeId"]
    assert ds.client.post(f"/_sandbox/envelopes/{draft}/recipients/2/sign").status_code == 409


def test_control_sign_after_finished(ds):
    eid = ds.sent_envelope()
    embedded_sign(ds, eid)
    ds.control(f"/envelopes/{eid}/recipients/2/sign")
    assert ds.client.post(f"/_sandbox/envelopes/{eid}/recipients/2/decline").status_code == 409
    voided = ds.sent_envelope()
    embedded_sign(ds, voided)
    ds.rest("PUT", f"/envelopes/{voided}", json={"status": "voided", "voidedReason": "x"})
    assert ds.client.post(f"/_sandbox/envelopes/{voided}/recipients/2/sign").status_code == 409


def test_view_only_when_its_routing_order_is_current(ds):
    countersigner = {
        "roleName": "Countersigner",
        "name": "Grace Hopper",
        "email": "grace@example.com",
        "clientUserId": "cs-1",
    }
    resp = ds.create(status="sent", templateRoles=[ds.role(), countersigner])
    eid = resp.get_json()["envelopeId"]
    view = {"userName": "Grace Hopper", "email": "grace@example.com", "clientUserId": "cs-1"}
    message = rest_error(ds.view(eid, **view), c.RECIPIENT_NOT_IN_SEQUENCE_CODE)
    assert message == c.RECIPIENT_NOT_IN_SEQUENCE_MESSAGE
    # a carbon copy never gets a view
    rest_error(
        ds.view(eid, userName=c.DEMO_LEGAL_NAME, email=c.DEMO_LEGAL_EMAIL, clientUserId="x"),
        c.UNKNOWN_RECIPIENT_CODE,
    )
    embedded_sign(ds, eid)
    embedded_sign(ds, eid, **view)
    assert statuses(ds, eid) == ("completed", ["completed", "completed", "completed"])


def test_named_preset_role_overrides_the_template(ds):
    legal = {"roleName": "Legal", "name": "Partner Legal", "email": "legal@partner.example"}
    eid = ds.create(templateRoles=[ds.role(), legal]).get_json()["envelopeId"]
    record = ds.record(eid)
    assert [(r["roleName"], r["email"]) for r in record["recipients"]] == [
        ("Member", "ada@example.com"),
        ("Countersigner", c.DEMO_COUNTERSIGNER_EMAIL),
        ("Legal", "legal@partner.example"),
    ]
    legal["tabs"] = {"textTabs": [{"tabLabel": "member_number", "value": "1"}]}
    rest_error(ds.create(templateRoles=[ds.role(), legal]), c.UNKNOWN_TAB_LABEL_CODE)


def test_unnamed_placeholder_role_is_an_error(ds):
    countersigner = {"roleName": "Countersigner", "name": "G", "email": "g@example.com"}
    resp = ds.create(templateRoles=[countersigner])
    assert c.PLACEHOLDER_ROLE_REQUIRED
    assert "Member" in rest_error(resp, c.ROLE_MISMATCH_CODE)


# --- Connect -----------------------------------------------------------------------------------


def test_connect_recipient_events_in_order(ds, listener):
    hook, url = listener
    ds.control("/connect", {"url": url, "hmac_secrets": ["s"]})
    eid = ds.sent_envelope()
    embedded_sign(ds, eid)
    ds.control(f"/envelopes/{eid}/recipients/2/sign")
    assert ds.state.connect.wait_idle(5)
    messages = [json.loads(body) for _, body in hook.posts]
    assert [(m["event"], m["data"].get("recipientId")) for m in messages] == [
        ("recipient-sent", "1"),
        ("envelope-sent", None),
        ("recipient-delivered", "1"),
        ("recipient-completed", "1"),
        ("recipient-sent", "2"),
        ("recipient-delivered", "2"),
        ("envelope-delivered", None),
        ("recipient-completed", "2"),
        ("recipient-sent", "3"),
        ("recipient-completed", "3"),
        ("envelope-completed", None),
    ]
    first = messages[0]
    assert list(first["data"]) == ["accountId", "userId", "recipientId", "envelopeId", "envelopeSummary"]
    assert first["uri"] == f"/restapi/v2.1/accounts/{c.DEMO_ACCOUNT_ID}/envelopes/{eid}"
    summary = first["data"]["envelopeSummary"]
    assert summary["recipients"]["signers"][0]["status"] == "sent"
    assert summary["recipients"]["carbonCopies"][0]["roleName"] == "Legal"
    deliveries = ds.control("/connect/deliveries", method="GET")
    assert [d["recipient_id"] for d in deliveries][:2] == ["1", None]


def test_connect_decline_events(ds, listener):
    hook, url = listener
    ds.control("/connect", {"url": url, "hmac_secrets": ["s"]})
    eid = ds.sent_envelope()
    embedded_sign(ds, eid, action="decline")
    assert ds.state.connect.wait_idle(5)
    events = [json.loads(body)["event"] for _, body in hook.posts]
    assert events[-3:] == ["recipient-delivered", "recipient-declined", "envelope-declined"]


# --- templates: GET and the control API ---------------------------------------------------------


def test_get_template_shape(ds):
    body = ds.rest("GET", f"/templates/{c.MEMBERSHIP_TEMPLATE_ID}").get_json()
    assert body["templateId"] == c.MEMBERSHIP_TEMPLATE_ID
    assert body["name"] == "Membership agreement"
    assert body["emailSubject"] == "Please sign: Membership agreement"
    recipients = body["recipients"]
    member, countersigner = recipients["signers"]
    assert (member["roleName"], member["routingOrder"], member["recipientId"]) == ("Member", "1", "1")
    assert member["name"] == "" and member["email"] == ""
    assert "tabs" not in member
    assert (countersigner["name"], countersigner["routingOrder"]) == (c.DEMO_COUNTERSIGNER_NAME, "2")
    (cc,) = recipients["carbonCopies"]
    assert (cc["roleName"], cc["routingOrder"], cc["email"]) == ("Legal", "3", c.DEMO_LEGAL_EMAIL)
    assert recipients["recipientCount"] == "3"
    with_tabs = ds.rest("GET", f"/templates/{c.MEMBERSHIP_TEMPLATE_ID}?include=tabs").get_json()
    tabs = with_tabs["recipients"]["signers"][0]["tabs"]["textTabs"]
    assert [(t["tabLabel"], t["tooltip"], t["required"]) for t in tabs] == [
        ("member_number", "Member number", "true"),
        ("plan", "Membership plan", "true"),
        ("start_date", "Start date", "false"),
    ]
    assert with_tabs["recipients"]["signers"][1].get("tabs") == {"textTabs": []}


def test_get_template_unknown_counted_and_faultable(ds):
    ds.control("/calls", method="DELETE")
    resp = ds.rest("GET", "/templates/00000000-0000-0000-0000-000000000000")
    rest_error(resp, c.TEMPLATE_NOT_FOUND_CODE, c.TEMPLATE_NOT_FOUND_STATUS)
    ds.control("/faults", {"status": 503, "endpoint": "get_template"})
    assert ds.rest("GET", f"/templates/{c.NDA_TEMPLATE_ID}").status_code == 503
    assert ds.rest("GET", f"/templates/{c.NDA_TEMPLATE_ID}").status_code == 200
    assert ds.control("/calls", method="GET")["counts"]["get_template"] == 3


def test_control_template_with_recipients(ds):
    tpl = ds.control(
        "/templates",
        {
            "templateId": LEASE_ID,
            "name": "Lease",
            "recipients": [
                {
                    "roleName": "Agent",
                    "type": "carbonCopy",
                    "routingOrder": 2,
                    "name": "A",
                    "email": "a@x.example",
                },
                {
                    "roleName": "Tenant",
                    "textTabs": [{"tabLabel": "unit", "tooltip": "Unit", "required": False}],
                },
            ],
        },
    )
    assert [r["roleName"] for r in tpl["recipients"]] == ["Tenant", "Agent"]
    assert tpl["roles"] == ["Tenant", "Agent"] and tpl["textTabs"] == ["unit"]
    assert ds.client.post("/_sandbox/templates", json=tpl).status_code == 409
    role = {"roleName": "Tenant", "name": "T", "email": "t@example.com"}
    eid = ds.create(templateId=LEASE_ID, status="sent", templateRoles=[role]).get_json()["envelopeId"]
    # a remote signer at order 1, a copy at order 2
    assert statuses(ds, eid) == ("sent", ["sent", "created"])
    ds.control(f"/envelopes/{eid}/recipients/1/sign")
    assert statuses(ds, eid) == ("completed", ["completed", "completed"])


@pytest.mark.parametrize(
    "recipients",
    [
        [],
        [{"roleName": "A", "type": "carbonCopy", "name": "A", "email": "a@x.example"}],  # no signer
        [{"roleName": "A", "type": "agent"}],
        [{"roleName": "A", "name": "Only a name"}],
        [{"roleName": "A", "name": "A", "email": "not-an-email"}],
        [{"roleName": "A", "routingOrder": 0}],
        [{"roleName": "A"}, {"roleName": "A"}],
        [{"roleName": "A", "textTabs": [{"tabLabel": "x", "required": "maybe"}]}],
        [{"roleName": "A"}, {"roleName": "B", "type": "carbonCopy", "textTabs": ["x"]}],
    ],
)
def test_bad_template_recipients(client, recipients):
    assert client.post("/_sandbox/templates", json={"name": "X", "recipients": recipients}).status_code == 400


# --- signing page and the control page ----------------------------------------------------------


def test_signing_page_shows_readable_labels_and_routing(ds):
    eid = ds.sent_envelope()
    html = ds.client.get(ds.signing_path(eid)).get_data(as_text=True)
    cells = dict(
        re.findall(
            r'<td class="tab-name">([^<]*)(?:<span[^>]*>[^<]*</span>)?</td>'
            r'<td class="tab-value">([^<]*)</td>',
            html,
        )
    )
    assert {k.strip(): v for k, v in cells.items()} == {"Member number": "12345", "Membership plan": "plus"}
    assert "Start date" not in html  # an empty optional tab is left out
    assert ">member_number<" not in html
    assert re.search(r"After you sign, this goes to\s*<strong>Grace Hopper</strong> \(Countersigner\)", html)


def test_signing_page_keeps_empty_required_fields(ds):
    role = ds.role(tabs={"textTabs": [{"tabLabel": "start_date", "value": "2030-01-01"}]})
    eid = ds.create(status="sent", templateRoles=[role]).get_json()["envelopeId"]
    html = ds.client.get(ds.signing_path(eid)).get_data(as_text=True)
    assert "Start date" in html and "2030-01-01" in html
    assert "Member number" in html  # required, shown though empty


def test_control_page_countersign_button(ds):
    eid = ds.sent_envelope()
    page = ds.client.get("/_sandbox/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "countersign-" not in page.get_data(as_text=True)  # the member signs first
    assert "<script" not in page.get_data(as_text=True)
    embedded_sign(ds, eid)
    html = ds.client.get("/_sandbox/").get_data(as_text=True)
    assert f'id="countersign-{eid}-2"' in html and f'id="decline-{eid}-2"' in html
    assert "Grace Hopper" in html
    forms = re.findall(r'action="([^"]+)"', html)
    sign = next(f for f in forms if f.endswith(f"/{eid}/recipients/2/sign"))
    resp = ds.client.post(sign, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/_sandbox/")
    assert statuses(ds, eid)[0] == "completed"
    assert f'id="countersign-{eid}-2"' not in ds.client.get("/_sandbox/").get_data(as_text=True)


def test_control_page_decline_button(ds):
    eid = ds.sent_envelope()
    embedded_sign(ds, eid)
    html = ds.client.get("/_sandbox/").get_data(as_text=True)
    decline = next(
        f for f in re.findall(r'action="([^"]+)"', html) if f.endswith(f"/{eid}/recipients/2/decline")
    )
    assert ds.client.post(decline, data={"reason": "Not approved"}).status_code == 303
    record = ds.record(eid)
    assert record["status"] == "declined"
    assert record["recipients"][1]["declinedReason"] == "Not approved"
