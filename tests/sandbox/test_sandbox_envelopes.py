"""REST: auth, account, create from template, read, update (docs/docusign-facts.md §3, §4, §6, §7)."""

from __future__ import annotations

import re

import pytest

from sandbox import constants as c

MISSING = "00000000-0000-0000-0000-000000000000"
DATETIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


def rest_error(resp, code, status=400):
    assert resp.status_code == status, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"errorCode", "message"}
    assert body["errorCode"] == code
    return body["message"]


# --- authentication and account -------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not-a-token", "Basic Zm9vOmJhcg=="])
def test_rest_needs_a_bearer_token(client, header):
    headers = {"Authorization": header} if header else {}
    resp = client.get(f"/restapi/v2.1/accounts/{c.DEMO_ACCOUNT_ID}/envelopes/{MISSING}", headers=headers)
    rest_error(resp, "USER_AUTHENTICATION_FAILED", 401)
    assert resp.headers["X-RateLimit-Limit"] == "3000"


def test_expired_token_is_rejected(ds):
    ds.token()
    ds.advance(3600)
    rest_error(ds.create(), "USER_AUTHENTICATION_FAILED", 401)


def test_wrong_account(ds):
    resp = ds.client.get(f"/restapi/v2.1/accounts/{MISSING}/envelopes/{MISSING}", headers=ds.auth)
    rest_error(resp, c.ACCOUNT_MISMATCH_CODE, c.ACCOUNT_MISMATCH_STATUS)


def test_account_id_is_case_insensitive(ds):
    resp = ds.client.get(
        f"/restapi/v2.1/accounts/{c.DEMO_ACCOUNT_ID.upper()}/envelopes/{MISSING}",
        headers=ds.auth,
    )
    rest_error(resp, c.ENVELOPE_NOT_FOUND_CODE, c.ENVELOPE_NOT_FOUND_STATUS)


def test_unknown_route_is_json_404(ds):
    resp = ds.rest("GET", "/templates")
    rest_error(resp, c.UNKNOWN_ROUTE_CODE, c.UNKNOWN_ROUTE_STATUS)
    assert "X-RateLimit-Remaining" in resp.headers
    resp = ds.client.get("/restapi/v2/whatever")
    rest_error(resp, c.UNKNOWN_ROUTE_CODE, 404)


def test_wrong_method_is_json_405(ds):
    resp = ds.rest("DELETE", f"/envelopes/{MISSING}")
    rest_error(resp, c.METHOD_NOT_ALLOWED_CODE, 405)


def test_unknown_envelope(ds):
    for method, path in [
        ("GET", f"/envelopes/{MISSING}"),
        ("GET", f"/envelopes/{MISSING}/recipients"),
    ]:
        rest_error(ds.rest(method, path), c.ENVELOPE_NOT_FOUND_CODE, c.ENVELOPE_NOT_FOUND_STATUS)
    resp = ds.rest("PUT", f"/envelopes/{MISSING}", json={"status": "sent"})
    rest_error(resp, c.ENVELOPE_NOT_FOUND_CODE, c.ENVELOPE_NOT_FOUND_STATUS)
    rest_error(ds.view(MISSING), c.ENVELOPE_NOT_FOUND_CODE, c.ENVELOPE_NOT_FOUND_STATUS)


# --- create -----------------------------------------------------------------------------


def test_create_draft_summary(ds):
    resp = ds.create()
    assert resp.status_code == 201
    body = resp.get_json()
    assert list(body) == ["envelopeId", "uri", "statusDateTime", "status"]
    assert body["status"] == "created"
    assert body["uri"] == f"/envelopes/{body['envelopeId']}"
    assert DATETIME_RE.match(body["statusDateTime"])
    record = ds.record(body["envelopeId"])
    assert record["status"] == "created"
    signer = record["recipients"][0]
    assert signer["tabs"] == {"member_number": "12345", "plan": "plus", "start_date": ""}
    assert signer["clientUserId"] == "cu-1"
    assert record["emailSubject"] == "Your membership agreement"


def test_create_and_send(ds):
    resp = ds.create(status="sent")
    assert resp.status_code == 201
    assert resp.get_json()["status"] == "sent"


def test_every_create_makes_a_new_envelope(ds):
    first = ds.create().get_json()["envelopeId"]
    second = ds.create().get_json()["envelopeId"]
    assert first != second


def test_default_email_subject_from_template(ds):
    eid = ds.create(emailSubject=None).get_json()["envelopeId"]
    assert ds.record(eid)["emailSubject"] == "Please sign: Membership agreement"


def test_custom_fields_kept(ds):
    fields = {"textCustomFields": [{"name": "reference", "value": "order-1", "show": "false"}]}
    eid = ds.create(customFields=fields).get_json()["envelopeId"]
    body = ds.rest("GET", f"/envelopes/{eid}?include=custom_fields").get_json()
    assert body["customFields"]["textCustomFields"] == [
        {"name": "reference", "value": "order-1", "show": "false"}
    ]


def test_unknown_template(ds):
    rest_error(ds.create(templateId=MISSING), c.TEMPLATE_NOT_FOUND_CODE)
    rest_error(ds.create(templateId=None), c.TEMPLATE_NOT_FOUND_CODE)


@pytest.mark.parametrize("status", ["draft", "completed", "voided", "SENT", 1])
def test_bad_create_status(ds, status):
    message = rest_error(ds.create(status=status), "INVALID_REQUEST_PARAMETER")
    assert "'status'" in message


def test_missing_create_status(ds):
    resp = ds.create(status=None)
    if c.CREATE_STATUS_REQUIRED:
        rest_error(resp, "INVALID_REQUEST_PARAMETER")
    else:
        assert resp.get_json()["status"] == "created"


@pytest.mark.parametrize(
    "roles",
    [
        [{"roleName": "Signer", "name": "A", "email": "a@example.com"}],
        [{"roleName": "member", "name": "A", "email": "a@example.com"}],
        [{"name": "A", "email": "a@example.com"}],
        [],
        [
            {"roleName": "Member", "name": "A", "email": "a@example.com"},
            {"roleName": "Member", "name": "B", "email": "b@example.com"},
        ],
    ],
    ids=["other-role", "case", "no-role", "no-roles", "twice"],
)
def test_roles_must_match_template(ds, roles):
    rest_error(ds.create(templateRoles=roles), c.ROLE_MISMATCH_CODE)


def test_unknown_tab_label(ds):
    role = ds.role(tabs={"textTabs": [{"tabLabel": "salary", "value": "1"}]})
    message = rest_error(ds.create(templateRoles=[role]), c.UNKNOWN_TAB_LABEL_CODE)
    assert "salary" in message


def test_unknown_tab_type(ds):
    role = ds.role(tabs={"checkboxTabs": [{"tabLabel": "plan", "selected": "true"}]})
    rest_error(ds.create(templateRoles=[role]), c.UNKNOWN_TAB_LABEL_CODE)


def test_tab_value_must_be_a_string(ds):
    role = ds.role(tabs={"textTabs": [{"tabLabel": "plan", "value": 3}]})
    rest_error(ds.create(templateRoles=[role]), "INVALID_REQUEST_PARAMETER")


@pytest.mark.parametrize("email", ["", "ada", "ada@", "ada@example", "a da@example.com", None])
def test_invalid_email(ds, email):
    role = ds.role(email=email)
    rest_error(ds.create(templateRoles=[role]), c.INVALID_EMAIL_CODE)


@pytest.mark.parametrize("name", ["", "   ", None, 7])
def test_invalid_name(ds, name):
    role = ds.role(name=name)
    rest_error(ds.create(templateRoles=[role]), c.INVALID_NAME_CODE)


def test_non_embedded_recipient_allowed_on_create(ds):
    resp = ds.create(templateRoles=[ds.role(clientUserId=None)])
    assert resp.status_code == 201
    assert ds.record(resp.get_json()["envelopeId"])["recipients"][0]["clientUserId"] is None


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("", "application/json"),
        ("{not json", "application/json"),
        ("[]", "application/json"),
        ("{}", "application/json"),
        ('{"templateId": "x"}', "text/plain"),
    ],
)
def test_invalid_body(ds, data, content_type):
    resp = ds.rest("POST", "/envelopes", data=data, content_type=content_type)
    message = rest_error(resp, "INVALID_REQUEST_BODY")
    assert message == "The request body is missing or improperly formatted."


def test_template_roles_must_be_a_list(ds):
    rest_error(ds.create(templateRoles={"roleName": "Member"}), "INVALID_REQUEST_BODY")


def test_seeded_templates(ds):
    role = {"roleName": "Signer", "name": "Bo", "email": "bo@example.com", "clientUserId": "9"}
    role["tabs"] = {"textTabs": [{"tabLabel": "company", "value": "Acme"}]}
    resp = ds.create(templateId=c.NDA_TEMPLATE_ID, templateRoles=[role])
    assert resp.status_code == 201
    role = {"roleName": "Employee", "name": "Cy", "email": "cy@example.com"}
    role["tabs"] = {"textTabs": [{"tabLabel": "salary", "value": "1"}]}
    assert ds.create(templateId=c.INTERNAL_TEMPLATE_ID, templateRoles=[role]).status_code == 201


def test_added_template_with_two_roles(ds):
    tpl = ds.control(
        "/templates",
        {"name": "Two party", "roles": ["A", "B"], "textTabs": ["x", {"tabLabel": "y"}]},
    )
    roles = [
        {"roleName": "B", "name": "Bee", "email": "b@example.com", "clientUserId": "b"},
        {"roleName": "A", "name": "Ay", "email": "a@example.com", "clientUserId": "a"},
    ]
    eid = ds.create(templateId=tpl["templateId"], templateRoles=roles).get_json()["envelopeId"]
    recipients = ds.rest("GET", f"/envelopes/{eid}/recipients").get_json()
    assert [s["roleName"] for s in recipients["signers"]] == ["A", "B"]
    assert [s["recipientId"] for s in recipients["signers"]] == ["1", "2"]
    assert recipients["recipientCount"] == "2"


# --- read ---------------------------------------------------------------------------------


def test_get_envelope_fields(ds):
    eid = ds.create().get_json()["envelopeId"]
    resp = ds.rest("GET", f"/envelopes/{eid}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["envelopeId"] == eid
    assert body["status"] == "created"
    assert body["emailSubject"] == "Your membership agreement"
    for key in ("statusChangedDateTime", "statusDateTime", "createdDateTime", "lastModifiedDateTime"):
        assert DATETIME_RE.match(body[key]), key
    assert "sentDateTime" not in body
    assert body["envelopeUri"] == f"/envelopes/{eid}"
    assert body["recipientsUri"] == f"/envelopes/{eid}/recipients"
    assert "recipients" not in body


def test_get_envelope_include_recipients(make_ds):
    ds = make_ds(SANDBOX_ENVELOPE_POLL_LIMIT=10)
    eid = ds.create().get_json()["envelopeId"]
    body = ds.rest("GET", f"/envelopes/{eid}?include=recipients").get_json()
    assert body["recipients"]["signers"][0]["email"] == "ada@example.com"
    assert body["recipients"] == ds.rest("GET", f"/envelopes/{eid}/recipients").get_json()


def test_recipients_shape(ds):
    eid = ds.sent_envelope()
    body = ds.rest("GET", f"/envelopes/{eid}/recipients").get_json()
    # the membership template: Member (1), a preset Countersigner (2), a Legal copy (3)
    assert body["recipientCount"] == "3"
    assert body["currentRoutingOrder"] == "1"
    (cc,) = body["carbonCopies"]
    assert (cc["roleName"], cc["routingOrder"], cc["status"]) == ("Legal", "3", "created")
    for key in (
        "certifiedDeliveries",
        "agents",
        "editors",
        "intermediaries",
        "inPersonSigners",
        "witnesses",
        "notaries",
        "seals",
        "participants",
    ):
        assert body[key] == []
    signer, countersigner = body["signers"]
    assert (countersigner["roleName"], countersigner["routingOrder"]) == ("Countersigner", "2")
    assert countersigner["status"] == "created" and "clientUserId" not in countersigner
    assert signer["recipientId"] == "1"
    assert signer["routingOrder"] == "1"
    assert signer["status"] == "sent"
    assert signer["clientUserId"] == "cu-1"
    assert signer["roleName"] == "Member"
    assert DATETIME_RE.match(signer["sentDateTime"])
    assert "tabs" not in signer


def test_recipients_include_tabs(ds):
    eid = ds.sent_envelope()
    body = ds.rest("GET", f"/envelopes/{eid}/recipients?include_tabs=true").get_json()
    tabs = body["signers"][0]["tabs"]["textTabs"]
    assert {t["tabLabel"]: t["value"] for t in tabs}["member_number"] == "12345"


# --- update ---------------------------------------------------------------------------------


def test_put_draft_to_sent(ds):
    eid = ds.create().get_json()["envelopeId"]
    resp = ds.rest("PUT", f"/envelopes/{eid}", json={"status": "sent"})
    assert resp.status_code == 200
    assert resp.get_json() == {"envelopeId": eid}
    body = ds.rest("GET", f"/envelopes/{eid}?include=recipients").get_json()
    assert body["status"] == "sent"
    assert body["sentDateTime"] == body["initialSentDateTime"] == body["statusChangedDateTime"]
    assert body["recipients"]["signers"][0]["status"] == "sent"


def test_sending_twice_rejected(ds):
    eid = ds.sent_envelope()
    resp = ds.rest("PUT", f"/envelopes/{eid}", json={"status": "sent"})
    rest_error(resp, c.UPDATE_INVALID_STATUS_CODE)


@pytest.mark.parametrize("status", ["completed", "delivered", "draft", ""])
def test_put_status_values(ds, status):
    eid = ds.create().get_json()["envelopeId"]
    message = rest_error(
        ds.rest("PUT", f"/envelopes/{eid}", json={"status": status}), "INVALID_REQUEST_PARAMETER"
    )
    assert message.endswith("Value for 'status' must be 'created', 'sent' or 'voided'.")


@pytest.mark.parametrize("reason", [None, "", "  "])
def test_void_needs_a_reason(ds, reason):
    eid = ds.sent_envelope()
    body = {"status": "voided"} if reason is None else {"status": "voided", "voidedReason": reason}
    message = rest_error(ds.rest("PUT", f"/envelopes/{eid}", json=body), "INVALID_REQUEST_PARAMETER")
    assert "voidedReason" in message


def test_void_sent_envelope(ds):
    eid = ds.sent_envelope()
    body = {"status": "voided", "voidedReason": "changed my mind"}
    assert ds.rest("PUT", f"/envelopes/{eid}", json=body).status_code == 200
    envelope = ds.record(eid)
    assert envelope["status"] == "voided"
    assert envelope["voidedReason"] == "changed my mind"
    # terminal: cannot be voided or sent again
    rest_error(ds.rest("PUT", f"/envelopes/{eid}", json=body), c.VOID_INVALID_STATUS_CODE)
    resp = ds.rest("PUT", f"/envelopes/{eid}", json={"status": "sent"})
    rest_error(resp, c.UPDATE_INVALID_STATUS_CODE)


def test_void_draft_rejected(ds):
    eid = ds.create().get_json()["envelopeId"]
    body = {"status": "voided", "voidedReason": "x"}
    rest_error(ds.rest("PUT", f"/envelopes/{eid}", json=body), c.VOID_INVALID_STATUS_CODE)


def test_created_keeps_a_draft_but_cannot_recall_a_sent_one(ds):
    eid = ds.create().get_json()["envelopeId"]
    assert ds.rest("PUT", f"/envelopes/{eid}", json={"status": "created"}).status_code == 200
    assert ds.record(eid)["status"] == "created"
    sent = ds.sent_envelope()
    resp = ds.rest("PUT", f"/envelopes/{sent}", json={"status": "created"})
    rest_error(resp, c.UPDATE_INVALID_STATUS_CODE)


def test_put_email_subject_on_draft_only(ds):
    eid = ds.create().get_json()["envelopeId"]
    resp = ds.rest("PUT", f"/envelopes/{eid}", json={"emailSubject": "New subject"})
    assert resp.status_code == 200
    assert ds.record(eid)["emailSubject"] == "New subject"
    sent = ds.sent_envelope()
    resp = ds.rest("PUT", f"/envelopes/{sent}", json={"emailSubject": "Late"})
    rest_error(resp, c.UPDATE_INVALID_STATUS_CODE)


def test_put_empty_body(ds):
    eid = ds.create().get_json()["envelopeId"]
    rest_error(ds.rest("PUT", f"/envelopes/{eid}", json={}), "INVALID_REQUEST_BODY")


def test_guids_are_case_insensitive(ds):
    resp = ds.create(templateId=c.MEMBERSHIP_TEMPLATE_ID.upper())
    assert resp.status_code == 201
    eid = resp.get_json()["envelopeId"]
    assert eid == eid.lower()
    assert ds.rest("GET", f"/envelopes/{eid.upper()}").get_json()["envelopeId"] == eid
