"""The emulator's answers and the gateway's requests, against DocuSign's OpenAPI definitions.

The validator is :mod:`tests.fidelity.openapi` (definitions: tests/data/docusign-openapi/).
The whole suite's emulator traffic is also checked by ``tests/fidelity/plugin.py``; the
tests here name each endpoint and definition explicitly, and show each check can fail.

Out of scope (not in the eSignature swagger): the token response (OAuth), userinfo,
the signing pages and the emulator's ``/_sandbox`` control API.
"""

from __future__ import annotations

import hashlib
import json
import time
import typing as t
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import sandbox
from tests.fidelity import openapi
from tests.fidelity.openapi import validate
from tests.fidelity.plugin import GUARD

DATA = Path(__file__).resolve().parents[1] / "data" / "docusign-openapi"
FULL_DOCUMENT = Path("/work/shared/docusign-openapi/esignature.rest.swagger-v2.1.json")
REST = f"/restapi/v2.1/accounts/{sandbox.DEMO_ACCOUNT_ID}"
MISSING = "00000000-0000-4000-8000-000000000000"


# --- the validator itself ------------------------------------------------------------------


GOOD_DEFINITION = {
    "templateId": sandbox.MEMBERSHIP_TEMPLATE_ID,
    "emailSubject": "Membership",
    "status": "created",
    "templateRoles": [{
        "email": "ada@example.com", "name": "Ada Lovelace", "roleName": "Member", "clientUserId": "c-1",
        "tabs": {"textTabs": [{"tabLabel": "member_number", "value": "12345"}]},
    }],
    "customFields": {"textCustomFields": [{"name": "ref", "value": "x", "show": "false",
                                           "required": "false"}]},
}


def test_a_conforming_body_has_no_violations() -> None:
    assert validate("envelopeDefinition", GOOD_DEFINITION) == []


def test_an_undeclared_property_is_reported_with_its_path_and_definition() -> None:
    body = json.loads(json.dumps(GOOD_DEFINITION))
    body["templateRoles"][0]["tabs"]["textTabs"][0]["tablabel"] = "typo"
    body["emailSubjet"] = "typo"
    found = {(v.path, v.definition) for v in validate("envelopeDefinition", body)}
    assert found == {("$.templateRoles[0].tabs.textTabs[0].tablabel", "text"),
                     ("$.emailSubjet", "envelopeDefinition")}


def test_a_number_where_docusign_types_a_string_is_reported() -> None:
    body = json.loads(json.dumps(GOOD_DEFINITION))
    body["templateRoles"][0]["clientUserId"] = 1000
    (violation,) = validate("envelopeDefinition", body)
    assert (violation.path, violation.definition) == ("$.templateRoles[0].clientUserId", "templateRole")
    assert "not of type 'string'" in violation.message


def test_a_length_stated_in_the_description_is_enforced() -> None:
    """The swagger has no maxLength; "Maximum Length: 470 characters" is in returnUrl's prose."""
    assert openapi.definitions()["recipientViewRequest"]["properties"]["returnUrl"] == {
        "type": "string", "x-ds-max-length": 470}
    base = {"returnUrl": "https://p.example/", "authenticationMethod": "None", "userName": "A",
            "email": "a@example.com", "clientUserId": "c"}
    assert validate("recipientViewRequest", base) == []
    (violation,) = validate("recipientViewRequest", base | {"returnUrl": "https://p.example/" + "x" * 453})
    assert violation.path == "$.returnUrl" and "maximum length 470" in violation.message


def test_newer_properties_are_declared_by_the_sdk() -> None:
    """Each name the validator lets through beyond the 2022 document is in DocuSign's SDK model."""
    models = pytest.importorskip("docusign_esign.models")
    for definition, names in openapi.NEWER_PROPERTIES.items():
        model = getattr(models, definition[0].upper() + definition[1:])
        assert names <= set(model.attribute_map.values()), definition
        assert not names & set(openapi.definitions()[definition]["properties"]), "no longer needed"


# the endpoints the gateway uses, and the definitions DocuSign gives their bodies
ROUTES = [
    ("POST", f"{REST}/envelopes", 201, "Envelopes_PostEnvelopes", "envelopeDefinition", "envelopeSummary"),
    ("GET", f"{REST}/envelopes/{MISSING}", 200, "Envelopes_GetEnvelope", None, "envelope"),
    ("PUT", f"{REST}/envelopes/{MISSING}", 200, "Envelopes_PutEnvelope", "envelope", "envelopeUpdateSummary"),
    ("GET", f"{REST}/envelopes/{MISSING}/recipients", 200, "Recipients_GetRecipients", None, "recipients"),
    ("POST", f"{REST}/envelopes/{MISSING}/views/recipient", 201, "Views_PostEnvelopeRecipientView",
     "recipientViewRequest", "viewUrl"),
    ("GET", f"{REST}/envelopes", 200, "Envelopes_GetEnvelopes", None, "envelopesInformation"),
]


@pytest.mark.parametrize(("method", "path", "status", "operation", "request_def", "response_def"), ROUTES)
def test_routes_map_to_docusigns_operations(method: str, path: str, status: int, operation: str,
                                            request_def: str | None, response_def: str) -> None:
    op = openapi.match_operation(method, path)
    assert op is not None and op.operation_id == operation
    assert op.body == request_def
    assert op.response_definition(status) == response_def
    assert op.response_definition(404) == op.response_definition(429) == "errorDetails"


def test_an_unknown_route_or_query_parameter_is_reported() -> None:
    assert openapi.match_operation("GET", f"{REST}/envelopes/{MISSING}/documents") is None
    problems = openapi.check_exchange("GET", f"{REST}/envelopes/{MISSING}/documents", [], None, 200, {})
    assert problems and "route not in the OpenAPI subset" in problems[0]
    problems = openapi.check_exchange("GET", f"{REST}/envelopes", ["from_date", "statuses"], None, 200,
                                      {"resultSetSize": "0"})
    assert problems == [f"GET {REST}/envelopes -> 200 request: query parameter(s) ['statuses'] not "
                        "declared by Envelopes_GetEnvelopes"]


# --- the carried subset ------------------------------------------------------------------------


def test_the_subset_carries_its_licence_and_provenance() -> None:
    doc = openapi.document()
    assert doc["swagger"] == "2.0" and doc["info"]["version"] == "v2.1"
    notice = (DATA / "LICENSE").read_text()
    assert "MIT License" in notice and "DocuSign, Inc." in notice
    readme = (DATA / "README.md").read_text()
    assert doc["x-subset"]["sha256"] in readme and doc["x-subset"]["source"] in readme


@pytest.mark.skipif(not FULL_DOCUMENT.exists(), reason="DocuSign's full document is not on this machine")
def test_the_subset_is_what_the_generator_makes_from_the_full_document() -> None:
    from tests.fidelity.make_subset import OUT
    from tests.fidelity.make_subset import build_subset

    raw = FULL_DOCUMENT.read_bytes()
    made = build_subset(json.loads(raw), source=FULL_DOCUMENT.name,
                        sha256=hashlib.sha256(raw).hexdigest())
    assert made == json.loads(OUT.read_text(encoding="utf-8"))


# --- the emulator's answers -------------------------------------------------------------------


class Emulator:
    """A fresh emulator app and a JWT-grant token for it, through the Flask test client."""

    def __init__(self, private_pem: str, **config: t.Any) -> None:
        self.app = sandbox.create_app({"TESTING": True, **config})
        self.client = self.app.test_client()
        key = load_pem_private_key(private_pem.encode(), None)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        assert self.client.post("/_sandbox/keys", json={"integration_key": sandbox.DEMO_INTEGRATION_KEY,
                                                         "public_key_pem": public}).status_code == 201
        self.client.post("/_sandbox/consent", json={"integration_key": sandbox.DEMO_INTEGRATION_KEY,
                                                    "user_id": sandbox.DEMO_USER_ID, "granted": True})
        now = int(time.time())
        assertion = jwt.encode({"iss": sandbox.DEMO_INTEGRATION_KEY, "sub": sandbox.DEMO_USER_ID,
                                "aud": "account-d.docusign.com", "iat": now, "exp": now + 600,
                                "scope": "signature impersonation"}, private_pem, algorithm="RS256")
        token = self.client.post("/oauth/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
        self.headers = {"Authorization": f"Bearer {token.get_json()['access_token']}"}

    def call(self, method: str, path: str, body: t.Any = None, status: int | None = None,
             definition: str | None = None) -> t.Any:
        """One REST call; asserts its status and that its answer conforms to `definition`."""
        resp = self.client.open(REST + path, method=method, json=body, headers=self.headers)
        if status is not None:
            assert resp.status_code == status, resp.get_data(as_text=True)
        answer = resp.get_json()
        if definition is not None:
            assert validate(definition, answer) == [], f"{method} {path}"
        return answer

    def create(self, status: str = "created") -> str:
        body = json.loads(json.dumps(GOOD_DEFINITION)) | {"status": status}
        return t.cast(str, self.call("POST", "/envelopes", body, 201, "envelopeSummary")["envelopeId"])


@pytest.fixture
def ds(rsa_private_pem: str) -> Emulator:
    return Emulator(rsa_private_pem, SANDBOX_ENVELOPE_POLL_LIMIT=100)


VIEW = {"returnUrl": "https://partner.example/done", "authenticationMethod": "None",
        "userName": "Ada Lovelace", "email": "ada@example.com", "clientUserId": "c-1",
        "frameAncestors": ["https://partner.example"], "messageOrigins": ["https://partner.example"]}


def test_create_answers_an_envelope_summary(ds: Emulator) -> None:
    ds.create("created")
    ds.create("sent")


def test_get_envelope_answers_an_envelope(ds: Emulator) -> None:
    envelope_id = ds.create("sent")
    ds.call("GET", f"/envelopes/{envelope_id}", None, 200, "envelope")
    full = ds.call("GET", f"/envelopes/{envelope_id}?include=recipients,custom_fields,tabs", None, 200,
                   "envelope")
    assert full["recipients"]["signers"][0]["tabs"]["textTabs"]


def test_list_recipients_answers_recipients(ds: Emulator) -> None:
    envelope_id = ds.create("sent")
    ds.call("GET", f"/envelopes/{envelope_id}/recipients", None, 200, "recipients")
    ds.call("GET", f"/envelopes/{envelope_id}/recipients?include_tabs=true", None, 200, "recipients")


def test_update_answers_an_envelope_update_summary(ds: Emulator) -> None:
    envelope_id = ds.create("created")
    ds.call("PUT", f"/envelopes/{envelope_id}", {"emailSubject": "Renamed"}, 200, "envelopeUpdateSummary")
    ds.call("PUT", f"/envelopes/{envelope_id}", {"status": "sent"}, 200, "envelopeUpdateSummary")
    ds.call("PUT", f"/envelopes/{envelope_id}", {"status": "voided", "voidedReason": "test"}, 200,
            "envelopeUpdateSummary")
    ds.call("GET", f"/envelopes/{envelope_id}", None, 200, "envelope")


def test_recipient_view_answers_a_view_url(ds: Emulator) -> None:
    envelope_id = ds.create("sent")
    view = ds.call("POST", f"/envelopes/{envelope_id}/views/recipient", VIEW, 201, "viewUrl")
    assert set(view) == {"url"}


def test_list_status_changes_answers_envelopes_information(ds: Emulator) -> None:
    since = "2000-01-01T00:00:00Z"
    ds.call("GET", f"/envelopes?from_date={since}", None, 200, "envelopesInformation")  # none yet
    ds.create("sent")
    found = ds.call("GET", f"/envelopes?from_date={since}&include=custom_fields&custom_field=ref=x", None,
                    200, "envelopesInformation")
    assert found["envelopes"][0]["customFields"]["textCustomFields"]


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", f"/envelopes/{MISSING}", None, 404),
    ("POST", "/envelopes", {"templateId": MISSING, "status": "sent"}, 400),
    ("POST", "/envelopes", {}, 400),
    ("GET", "/envelopes", None, 400),  # no from_date
    ("GET", "/no-such-route", None, 404),
    ("DELETE", "/envelopes", None, 405),
])
def test_errors_answer_error_details(ds: Emulator, method: str, path: str, body: t.Any, status: int) -> None:
    answer = ds.call(method, path, body, status, "errorDetails")
    assert set(answer) == {"errorCode", "message"}


def test_unauthenticated_and_limited_calls_answer_error_details(ds: Emulator, rsa_private_pem: str) -> None:
    assert validate("errorDetails", ds.client.get(REST + "/envelopes?from_date=2000-01-01").get_json()) == []
    strict = Emulator(rsa_private_pem)  # one GET per envelope per 15 minutes
    envelope_id = strict.create("sent")
    strict.call("GET", f"/envelopes/{envelope_id}", None, 200, "envelope")
    limited = strict.call("GET", f"/envelopes/{envelope_id}", None, 429, "errorDetails")
    assert limited["errorCode"]


# --- the gateway's requests ---------------------------------------------------------------------


def test_the_gateways_requests_conform(app: t.Any, partner: t.Any) -> None:
    """Create, send, recipient view, status and listStatusChanges as the gateway sends them."""
    from gateway import upstream

    GUARD.recording = []
    created = partner.create()
    assert created.status_code == 201, created.get_json()
    envelope_id = created.get_json()["envelope_id"]
    assert partner.view(envelope_id).status_code == 201
    assert partner.status(envelope_id).status_code == 200
    with app.app_context():
        upstream.get_client().get_envelope(envelope_id)  # the status read (partner.status may be cached)
        upstream.get_client().find_envelopes(custom_field=("ref", "x"), since=time.time() - 60)
    seen = {}
    for method, path, query, body, status, answer in GUARD.recording:
        op = openapi.match_operation(method, path)
        assert op is not None, f"{method} {path}"
        seen[op.operation_id] = status
        assert set(query) <= op.query, f"{op.operation_id}: undeclared query parameters"
        if op.body is not None:
            assert validate(op.body, body) == [], f"{op.operation_id} request"
        assert validate(op.response_definition(status) or "", answer) == [], f"{op.operation_id} response"
    assert set(seen) == {"Envelopes_PostEnvelopes", "Envelopes_PutEnvelope",
                         "Views_PostEnvelopeRecipientView", "Envelopes_GetEnvelope",
                         "Envelopes_GetEnvelopes"}, seen


def test_the_suite_guard_catches_a_bad_request_and_fails_the_test(ds: Emulator) -> None:
    """What tests/fidelity/plugin.py does with a violation: collect it for the test's teardown."""
    GUARD.drain()
    body = json.loads(json.dumps(GOOD_DEFINITION)) | {"templateRoels": []}
    ds.client.post(REST + "/envelopes", json=body, headers=ds.headers)
    problems = GUARD.drain()  # taken here, so this test's own teardown stays green
    assert any("request $.templateRoels: property 'templateRoels' is not declared by envelopeDefinition"
               in p for p in problems), problems
