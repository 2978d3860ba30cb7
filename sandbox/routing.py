"""Recipient routing: who is sent when, and what each recipient action does to the envelope.

Recipients are sent by routing order: those of the lowest order not yet finished are
``sent``; a later order is sent only once every signer of the earlier orders has
completed (a carbon copy never holds routing up). The envelope is ``delivered`` once
every signer has opened it (the later ones cannot have yet, so a routed envelope stays
``sent``), ``completed`` when every signer has signed (carbon copies then complete too)
and ``declined`` as soon as anyone declines.

Every function takes the lock-holding caller's envelope record, changes it, and queues
the Connect messages in order: each recipient event before the envelope event it causes.
"""

from __future__ import annotations

import typing as t

from . import constants as c
from . import render
from .state import Sandbox

Recipient = dict[str, t.Any]


def signers(envelope: dict[str, t.Any]) -> list[Recipient]:
    """The envelope's signers, in recipient order."""
    return [r for r in envelope["recipients"] if r["recipientType"] == "signer"]


def current_routing_order(envelope: dict[str, t.Any]) -> int:
    """The lowest routing order not yet finished (the highest one once all are)."""
    return render.current_routing_order(envelope["recipients"])


def is_current(envelope: dict[str, t.Any], recipient: Recipient) -> bool:
    """Is it this recipient's turn (sent or delivered, envelope still open)?"""
    return envelope["status"] in c.VIEWABLE_STATUSES and recipient["status"] in c.VIEWABLE_STATUSES


def next_signers(envelope: dict[str, t.Any], recipient: Recipient) -> list[Recipient]:
    """The signers of later routing orders than ``recipient`` (for the signing page)."""
    order = int(recipient["routingOrder"])
    return [s for s in signers(envelope) if int(s["routingOrder"]) > order]


def _set(sandbox: Sandbox, envelope: dict[str, t.Any], recipient: Recipient, status: str, now: float) -> None:
    recipient["status"] = status
    stamp = {
        "sent": "sentDateTime",
        "delivered": "deliveredDateTime",
        "completed": "signedDateTime" if recipient["recipientType"] == "signer" else None,
        "declined": "declinedDateTime",
    }.get(status)
    if stamp:
        recipient[stamp] = now
    envelope["lastModifiedDateTime"] = now
    sandbox.notify(envelope, f"recipient-{status}", recipient["recipientId"])


def _route(sandbox: Sandbox, envelope: dict[str, t.Any], now: float) -> None:
    """Send the next routing order(s), or complete the envelope when every signer signed."""
    while not all(s["status"] == "completed" for s in signers(envelope)):
        order = current_routing_order(envelope)
        batch = [
            r for r in envelope["recipients"] if int(r["routingOrder"]) == order and r["status"] == "created"
        ]
        for recipient in batch:
            _set(sandbox, envelope, recipient, "sent", now)
            if recipient["recipientType"] != "signer" and c.CARBON_COPY_COMPLETES_WHEN_SENT:
                _set(sandbox, envelope, recipient, "completed", now)
        if (
            any(r["recipientType"] == "signer" and int(r["routingOrder"]) == order for r in batch)
            or not batch
        ):
            return
    for recipient in envelope["recipients"]:
        if recipient["status"] != "completed":
            if recipient["status"] == "created":
                _set(sandbox, envelope, recipient, "sent", now)
            _set(sandbox, envelope, recipient, "completed", now)
    sandbox.set_envelope_status(envelope, "completed", now=now)


def send(sandbox: Sandbox, envelope: dict[str, t.Any], now: float) -> None:
    """Draft to sent: the first routing order is sent, then ``envelope-sent``."""
    envelope["expireDateTime"] = now + c.ENVELOPE_EXPIRE_DAYS * 86400
    sandbox.set_envelope_status(envelope, "sent", now=now, notify=False)
    _route(sandbox, envelope, now)
    sandbox.notify(envelope, "envelope-sent")


def deliver(sandbox: Sandbox, envelope: dict[str, t.Any], recipient: Recipient, now: float) -> None:
    """The recipient opened the envelope: ``delivered``, and the envelope too once every
    signer has."""
    if recipient["status"] != "sent":
        return
    _set(sandbox, envelope, recipient, "delivered", now)
    if envelope["status"] == "sent" and all(
        s["status"] in ("delivered", "completed") for s in signers(envelope)
    ):
        sandbox.set_envelope_status(envelope, "delivered", now=now)


def sign(sandbox: Sandbox, envelope: dict[str, t.Any], recipient: Recipient, now: float) -> None:
    """The signer signed: ``completed``; route on, or complete the envelope."""
    deliver(sandbox, envelope, recipient, now)
    _set(sandbox, envelope, recipient, "completed", now)
    _route(sandbox, envelope, now)


def decline(
    sandbox: Sandbox, envelope: dict[str, t.Any], recipient: Recipient, reason: str | None, now: float
) -> None:
    """The signer declined: ``declined``, and the whole envelope with it."""
    deliver(sandbox, envelope, recipient, now)
    recipient["declinedReason"] = reason or None
    _set(sandbox, envelope, recipient, "declined", now)
    sandbox.set_envelope_status(envelope, "declined", now=now)
