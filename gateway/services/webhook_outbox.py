"""The partner-webhook outbox: events queued in the same transaction as the change.

An event is a row of `store.webhook_events`, written by the envelope state machine in the
transaction that changes the status, so it exists exactly when the change does: a
process killed after the commit leaves it queued, one killed before leaves neither. The
sender (`webhook_sender`) delivers it at least once; its `event_id` (the Standard
Webhooks `webhook-id`) is the same on every attempt, so receivers deduplicate by it.
Nothing in a payload names a DocuSign id other than the envelope's, or another partner.
"""

from __future__ import annotations

import json
import secrets
import time
import typing as t

import sqlalchemy as sa

from gateway import store
from gateway.policy import get_policies

if t.TYPE_CHECKING:
    from gateway.services.envelopes import Change

#: event types, in the order they are queued when one change causes several
SIGNER_EVENTS = {"completed": "envelope.signer_completed", "declined": "envelope.signer_declined"}
ENVELOPE_EVENTS = {"completed": "envelope.completed", "declined": "envelope.declined",
                   "voided": "envelope.voided"}
STATES = ("pending", "delivered", "failed", "held")


def event_types(change: Change) -> list[str]:
    """The partner-visible events a change causes (none for intermediate steps)."""
    (status_before, signer_before), (status_after, signer_after) = change.before, change.after
    types = []
    if signer_after != signer_before and signer_after in SIGNER_EVENTS:
        types.append(SIGNER_EVENTS[signer_after])
    if status_after != status_before and status_after in ENVELOPE_EVENTS:
        types.append(ENVELOPE_EVENTS[status_after])
    return types


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def enqueue(conn: sa.Connection, change: Change, *, now: float) -> int:
    """Queue the change's events if the partner's policy names a webhook_url; how many."""
    types = event_types(change)
    if not types:
        return 0
    env, partners = store.envelopes, store.partners
    row = conn.execute(
        sa.select(env.c.template_alias, env.c.reference, partners.c.name)
        .select_from(env.join(partners)).where(env.c.envelope_id == change.envelope_id)
    ).one()
    policy = get_policies().get(row.name)
    if policy is None or not policy.webhook_url:
        return 0
    status, signer_status = change.after
    data = {"envelope_id": change.envelope_id, "status": status, "signer_status": signer_status,
            "template": row.template_alias, "reference": row.reference}
    for kind in types:
        payload = json.dumps({"type": kind, "timestamp": _rfc3339(now), "data": data},
                             separators=(",", ":"))
        conn.execute(store.webhook_events.insert().values(
            event_id=f"msg_{secrets.token_hex(16)}", partner_id=change.partner_id,
            envelope_id=change.envelope_id, type=kind, payload=payload, created_at=now,
            state="pending", attempts=0, next_attempt_at=now,
        ))
    return len(types)


def list_events(conn: sa.Connection, *, partner: str | None = None,
                limit: int = 200) -> list[dict[str, t.Any]]:
    """Newest-first events with their partner's name and delivery state."""
    ev, partners = store.webhook_events, store.partners
    q = (sa.select(ev, partners.c.name.label("partner")).select_from(ev.join(partners))
         .order_by(ev.c.id.desc()).limit(limit))
    if partner:
        q = q.where(partners.c.name == partner)
    return [dict(r._mapping) for r in conn.execute(q).all()]


def replay(conn: sa.Connection, event_id: str, *, now: float) -> bool:
    """Queue one event again (any state), to be sent at once; False when unknown."""
    ev = store.webhook_events
    done = conn.execute(ev.update().where(ev.c.event_id == event_id).values(
        state="pending", next_attempt_at=now, attempts=0, delivered_at=None))
    return done.rowcount == 1


def oldest_pending_age(conn: sa.Connection, *, now: float) -> float:
    """Seconds the oldest pending event has waited (0 when none)."""
    ev = store.webhook_events
    oldest = conn.execute(sa.select(sa.func.min(ev.c.created_at))
                          .where(ev.c.state == "pending")).scalar()
    return max(0.0, now - oldest) if oldest is not None else 0.0
