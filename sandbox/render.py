"""Internal envelope records rendered in DocuSign's JSON shapes (docusign.md §3, §6)."""

from __future__ import annotations

import typing as t

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
    "carbonCopies",
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
    """The EnvelopeSummary returned by create (docusign.md §3)."""
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


def signer_json(signer: dict[str, t.Any], *, tabs: bool = False) -> dict[str, t.Any]:
    """One entry of ``signers``; numbers are strings, as the SDK types them (§6)."""
    out: dict[str, t.Any] = {
        "recipientId": signer["recipientId"],
        "recipientIdGuid": signer["recipientIdGuid"],
        "userId": signer["userId"],
        "email": signer["email"],
        "name": signer["name"],
        "roleName": signer["roleName"],
        "routingOrder": signer["routingOrder"],
        "recipientType": "signer",
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
    if tabs:
        out["tabs"] = {
            "textTabs": [
                {"tabLabel": label, "value": value, "tabId": f"{signer['recipientIdGuid']}-{i}"}
                for i, (label, value) in enumerate(signer["tabs"].items(), start=1)
            ]
        }
    return out


def recipients_json(envelope: dict[str, t.Any], *, tabs: bool = False) -> dict[str, t.Any]:
    """Recipients as ``GET /envelopes/{id}/recipients`` returns them (§6)."""
    signers = envelope["recipients"]
    pending = [int(s["routingOrder"]) for s in signers if s["status"] in ("sent", "delivered")]
    current = min(pending) if pending else max((int(s["routingOrder"]) for s in signers), default=1)
    out: dict[str, t.Any] = {"signers": [signer_json(s, tabs=tabs) for s in signers]}
    for key in _EMPTY_RECIPIENT_TYPES:
        out[key] = []
    out["recipientCount"] = str(len(signers))
    out["currentRoutingOrder"] = str(current)
    return out
