"""`check_template` on envelopeTemplate shapes the emulator does not make."""

from __future__ import annotations

import re

from gateway.policy.model import FieldRule
from gateway.policy.model import TemplatePolicy
from gateway.services.template_check import check_template


def policy(role: str = "Buyer", **fields: bool) -> TemplatePolicy:
    return TemplatePolicy(
        alias="deal", template_id="00000000-0000-4000-8000-000000000000", role=role,
        email_subject="Deal",
        fields={name: FieldRule(name, required, 100, None, None, None)
                for name, required in fields.items()})


def template(*recipients: tuple[str, dict[str, object]]) -> dict[str, object]:
    grouped: dict[str, list[dict[str, object]]] = {}
    for kind, recipient in recipients:
        grouped.setdefault(kind, []).append(recipient)
    return {"name": "Deal", "recipients": grouped}


def texts(findings: list) -> list[str]:
    return [f"{f.level}: {f.text}" for f in findings]


BUYER = {"roleName": "Buyer", "routingOrder": "2", "tabs": {
    "textTabs": [{"tabLabel": "price", "required": "true"}],
    "numberTabs": [{"tabLabel": "quantity", "required": "false"}]}}


def test_signer_routed_before_and_placeholder_are_errors() -> None:
    found = texts(check_template("p/deal", policy(price=True), template(
        ("signers", {"roleName": "Broker", "routingOrder": "1", "name": "Bo", "email": "b@x"}),
        ("signers", BUYER),
        ("carbonCopies", {"roleName": "Archive", "routingOrder": "3", "name": "", "email": ""}))))
    assert any(re.match(r"error: Archive \(carbon copy, routing 3\) is a placeholder", t)
               for t in found), found
    assert any(t.startswith("error: routed before the partner's signer: Broker (signer, routing 1: "
                            "Bo)") for t in found), found
    assert "note: before: Broker (signer, routing 1: Bo)" in found


def test_field_of_another_tab_type_or_role_and_optional_field_on_required_tab() -> None:
    found = texts(check_template("p/deal", policy(price=False, quantity=True, notes=False),
                                 template(("signers", BUYER), ("signers", {
                                     "roleName": "Seller", "routingOrder": "3", "name": "S",
                                     "email": "s@x", "tabs": {"textTabs": [{"tabLabel": "notes"}]}}))))
    assert "error: field 'quantity' is a numberTabs tab of Buyer, not a text tab; the gateway " \
           "fills text tabs only" in found
    assert any(t.startswith("error: field 'notes' is not a text tab of Buyer; it is a tab of "
                            "'Seller'") for t in found), found
    assert any(t.startswith("warning: field 'price' is optional in the policy but its tab is "
                            "required") for t in found), found


def test_role_of_a_carbon_copy_and_case() -> None:
    found = texts(check_template("p/deal", policy(role="Archive"), template(
        ("signers", BUYER),
        ("carbonCopies", {"roleName": "Archive", "routingOrder": "3", "name": "A", "email": "a@x"}))))
    assert found == ["error: role 'Archive' is a carbon copy, not a signer, in template 'Deal'; "
                     "its signer roles: Buyer"]
    found = texts(check_template("p/deal", policy(role="buyer"), template(("signers", BUYER))))
    assert "did you mean 'Buyer'? names are case-sensitive" in found[0]
