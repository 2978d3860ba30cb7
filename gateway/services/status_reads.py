"""A partner's status read: from the gateway's record when fresh, else one fleet-wide poll.

DocuSign asks integrations to poll an envelope at most once per 15 minutes
(docs/docusign-facts.md §8). The record is fresh while nothing could have changed unseen:
since the envelope was created, last updated (return relay, Connect) or last polled less
than `STATUS_MIN_POLL_INTERVAL` ago. Otherwise one request, fleet-wide, claims the poll
with a conditional UPDATE (the claim is the lock) and asks DocuSign.
"""

from __future__ import annotations

import time
import typing as t

import sqlalchemy as sa
from flask import current_app

from gateway import errors
from gateway import store
from gateway.services import envelopes
from gateway.upstream import get_client


def may_poll(row: t.Any) -> bool:
    """Cheap pre-check on the row just read: a final or fresh record needs no claim (no write)."""
    if row.status in envelopes.FINAL:
        return False
    cutoff = time.time() - current_app.config["STATUS_MIN_POLL_INTERVAL"]
    return row.updated_at <= cutoff and (row.upstream_checked_at or 0) <= cutoff


def claim_poll(envelope_id: str) -> float | None:
    """Atomically claim the right to ask DocuSign; the claim's time stamp, or None when the
    record is fresh or another request claimed it."""
    now = time.time()
    cutoff = now - current_app.config["STATUS_MIN_POLL_INTERVAL"]
    env = store.envelopes.c
    with store.transaction() as conn:
        claimed = conn.execute(
            store.envelopes.update()
            .where(env.envelope_id == envelope_id, env.updated_at <= cutoff,
                   sa.or_(env.upstream_checked_at.is_(None), env.upstream_checked_at <= cutoff))
            .values(upstream_checked_at=now)
        )
    return now if claimed.rowcount == 1 else None


def unclaim_poll(envelope_id: str, claimed_at: float, previous: float | None) -> None:
    """Give a failed poll's claim back, unless another poll has claimed since."""
    env = store.envelopes.c
    with store.transaction() as conn:
        conn.execute(store.envelopes.update()
                     .where(env.envelope_id == envelope_id, env.upstream_checked_at == claimed_at)
                     .values(upstream_checked_at=previous))


def refresh(row: t.Any, partner_id: int) -> t.Any:
    """The row after one poll of DocuSign if this request may make it, else the row as is."""
    if not may_poll(row):
        return row
    claimed_at = claim_poll(row.envelope_id)
    if claimed_at is None:
        return row
    try:
        upstream = get_client().get_envelope(row.envelope_id)
    except errors.UpstreamRateLimited:
        raise  # DocuSign asked for fewer polls: the claim stands, retries get the record
    except errors.GatewayError:
        # the partner gets the error; its retry may ask again instead of being served
        # the record this poll failed to refresh
        unclaim_poll(row.envelope_id, claimed_at, row.upstream_checked_at)
        raise
    # conditional on DocuSign's own clock: a Connect event that landed during the read wins
    reported = envelopes.Reported(
        upstream.get("status", row.status), envelopes.signer_status_in(upstream, row.client_user_id),
        envelopes.parse_time(upstream.get("statusChangedDateTime")))
    with store.transaction() as conn:
        envelopes.record_upstream(conn, row.envelope_id, reported, source="poll",
                                  last_event=None, now=time.time())
        return envelopes.find_owned(conn, row.envelope_id, partner_id)
