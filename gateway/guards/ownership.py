"""Ownership: an envelope belongs to the partner that created it through the gateway.

Anyone else's envelope, and any envelope the gateway did not create, is 404 alike:
existence is not disclosed.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway import context
from gateway import errors
from gateway.context import Caller
from gateway.services import envelopes
from gateway.store import prepared


def owned_envelope(conn: sa.Connection, caller: Caller, envelope_id: str) -> prepared.Row:
    """The caller's own envelope, else 404."""
    context.current().envelope_id = envelope_id[:64]
    row = envelopes.find_owned(conn, envelope_id, caller.partner_id)
    if row is None:
        raise errors.EnvelopeNotFound()
    return row
