"""Internal envelope records rendered in DocuSign's JSON shapes (docs/docusign-facts.md §3, §6)."""

from __future__ import annotations

import typing as t

from . import constants as c
from .state import format_datetime

_ENVELOPE_DATES = (
    "createdDateTime",
    "sentDateTime",
    "initialSentDateTime",
    "deliveredDateTime",
    "completedDateTime",
    "declinedDateTime",
    "voidedDateTime",
    "lastModifiedDateTime",
    "expireDateTime",
)
_SIGNER_DATES = ("sentDateTime", "deliveredDateTime", "signedDateTime", "declinedDateTime")
_EMPTY_RECIPIENT_TYPES = (
    "certifiedDeliveries",
    "agents",
    "editors",
    "intermediaries",
    "inPersonSigners",
    "witnesses",
    "notaries",
    "seals",
    "participants",
)


def _date(value: float | None) -> str | None:
    return None if value is None else format_datetime(value)


def envelope_summary(envelope: dict[str, t.Any]) -> dict[str, t.Any]:
    """The EnvelopeSummary returned by create (docs/docusign-facts.md §3)."""
    return {
        "envelopeId": envelope["envelopeId"],
        "uri": f"/envelopes/{envelope['envelopeId']}",
        "statusDateTime": format_datetime(envelope["statusChangedDateTime"]),
        "status": envelope["status"],
    }


def envelope_json(
    envelope: dict[str, t.Any],
    *,
    recipients: bool = False,
    custom_fields: bool = False,
    tabs: bool = False,
) -> dict[str, t.Any]:
    """An Envelope as ``GET /envelopes/{id}`` returns it; absent dates are left out.

    :param recipients: add ``recipients`` (``?include=recipients``)
    :param custom_fields: add ``customFields`` (``?include=custom_fields``)
    :param tabs: add each signer's ``tabs`` inside ``recipients``
    """
    envelope_id = envelope["envelopeId"]
    out: dict[str, t.Any] = {
        "envelopeId": envelope_id,
        "status": envelope["status"],
        "emailSubject": envelope["emailSubject"],
        "statusChangedDateTime": format_datetime(envelope["statusChangedDateTime"]),
        "statusDateTime": format_datetime(envelope["statusChangedDateTime"]),
    }
    for key in _ENVELOPE_DATES:
        value = _date(envelope.get(key))
        if value is not None:
            out[key] = value
    if envelope.get("voidedReason"):
        out["voidedReason"] = envelope["voidedReason"]
    out["envelopeUri"] = f"/envelopes/{envelope_id}"
    out["recipientsUri"] = f"/envelopes/{envelope_id}/recipients"
    out["templatesUri"] = f"/envelopes/{envelope_id}/templates"
    if recipients:
        out["recipients"] = recipients_json(envelope, tabs=tabs)
    if custom_fields:
        out["customFields"] = custom_fields_json(envelope)
    return out


def custom_fields_json(envelope: dict[str, t.Any]) -> dict[str, t.Any]:
    """The envelope's ``customFields`` (text fields only)."""
    return {
        "textCustomFields": [dict(field) for field in envelope["customFields"]],
        "listCustomFields": [],
    }


def _text_tabs(recipient: dict[str, t.Any], values: dict[str, str]) -> list[dict[str, t.Any]]:
    """A recipient's ``textTabs``: label, value, and the template's tooltip / required."""
    tabs = []
    for i, tab in enumerate(recipient["tabDefs"], start=1):
        out: dict[str, t.Any] = {"tabLabel": tab["tabLabel"], "value": values.get(tab["tabLabel"], "")}
        if tab.get("tooltip"):
            out["tooltip"] = tab["tooltip"]
        out["required"] = tab["required"]
        out["tabType"] = "text"
        out["recipientId"] = recipient["recipientId"]
        out["tabId"] = f"{recipient.get('recipientIdGuid', recipient['recipientId'])}-{i}"
        tabs.append(out)
    return tabs


def signer_json(signer: dict[str, t.Any], *, tabs: bool = False) -> dict[str, t.Any]:
    """One entry of ``signers`` or ``carbonCopies``; numbers are strings, as the SDK
    types them (§6)."""
    out: dict[str, t.Any] = {
        "recipientId": signer["recipientId"],
        "recipientIdGuid": signer["recipientIdGuid"],
        "userId": signer["userId"],
        "email": signer["email"],
        "name": signer["name"],
        "roleName": signer["roleName"],
        "routingOrder": signer["routingOrder"],
        "recipientType": signer["recipientType"],
        "status": signer["status"],
    }
    if signer.get("clientUserId") is not None:
        out["clientUserId"] = signer["clientUserId"]
    for key in _SIGNER_DATES:
        value = _date(signer.get(key))
        if value is not None:
            out[key] = value
    if signer.get("declinedReason"):
        out["declinedReason"] = signer["declinedReason"]
    if tabs and signer["recipientType"] == "signer":
        out["tabs"] = {"textTabs": _text_tabs(signer, signer["tabs"])}
    return out


def current_routing_order(recipients: list[dict[str, t.Any]]) -> int:
    """The lowest routing order with a recipient still to act (the highest once all did)."""
    orders = [
        int(r["routingOrder"])
        for r in recipients
        if (r["status"] != "completed" if r["recipientType"] == "signer" else r["status"] == "created")
    ]
    if orders:
        return min(orders)
    return max((int(r["routingOrder"]) for r in recipients), default=1)


def recipients_json(envelope: dict[str, t.Any], *, tabs: bool = False) -> dict[str, t.Any]:
    """Recipients as ``GET /envelopes/{id}/recipients`` returns them (§6)."""
    recipients = envelope["recipients"]
    out: dict[str, t.Any] = {}
    for kind, key in c.RECIPIENT_TYPES.items():
        out[key] = [signer_json(r, tabs=tabs) for r in recipients if r["recipientType"] == kind]
    for key in _EMPTY_RECIPIENT_TYPES:
        out[key] = []
    out["recipientCount"] = str(len(recipients))
    out["currentRoutingOrder"] = str(current_routing_order(recipients))
    return out


def template_json(template: dict[str, t.Any], *, tabs: bool = False) -> dict[str, t.Any]:
    """An envelopeTemplate as ``GET /templates/{templateId}`` returns it.

    Placeholder roles have an empty ``name`` and ``email``; template recipients are
    ``created``.

    :param tabs: add each signer's ``tabs`` (``?include=tabs``)
    """
    recipients: dict[str, t.Any] = {key: [] for key in c.RECIPIENT_TYPES.values()}
    for number, recipient in enumerate(template["recipients"], start=1):
        entry: dict[str, t.Any] = {
            "recipientId": str(number),
            "name": recipient["name"],
            "email": recipient["email"],
            "roleName": recipient["roleName"],
            "routingOrder": recipient["routingOrder"],
            "recipientType": recipient["recipientType"],
            "status": "created",
            "templateLocked": "false",
            "templateRequired": "false",
        }
        if tabs and recipient["recipientType"] == "signer":
            entry["tabs"] = {
                "textTabs": _text_tabs({"tabDefs": recipient["textTabs"], "recipientId": str(number)}, {})
            }
        recipients[c.RECIPIENT_TYPES[recipient["recipientType"]]].append(entry)
    for key in _EMPTY_RECIPIENT_TYPES:
        recipients[key] = []
    recipients["recipientCount"] = str(len(template["recipients"]))
    template_id = template["templateId"]
    return {
        "templateId": template_id,
        "uri": f"/templates/{template_id}",
        "name": template["name"],
        "description": "",
        "shared": "false",
        "emailSubject": template["emailSubject"],
        "emailBlurb": "",
        "status": "created",
        "recipients": recipients,
    }
