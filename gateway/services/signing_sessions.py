"""A signer's session: opening it (recipient view) and closing it (the return relay).

Trust model. The `event` query parameter is typed by the signer's browser, so it is
recorded as `last_event` and passed on as `event`, but it never sets a status by itself.
On `signing_complete` and `decline` (the two events that claim an outcome) the relay
makes ONE read of DocuSign's envelope, unless a Connect event already recorded a final
status; the gateway token then carries both the browser's `event` and the gateway's
`status`, and partners act on `status`. One read rather than waiting for Connect: Connect
is asynchronous (seconds to minutes, retried for days) and may not be configured at all,
while the signer is waiting for a page now. The read is bounded: each relay token is
spent once and each one costs the partner an authenticated, rate-limited recipient-view
call. If the read fails the token says what the gateway knows (e.g. `delivered`) and
Connect or a later status call settles it.
"""

from __future__ import annotations

import time
import typing as t

import sqlalchemy as sa
from flask import current_app

from gateway import errors
from gateway import store
from gateway.policy import Policy
from gateway.policy import get_policies
from gateway.services import envelopes
from gateway.services.relay_tokens import RelayRejected
from gateway.services.relay_tokens import relay_url
from gateway.store.vault import get_vault
from gateway.upstream import get_client

#: DocuSign's recipient view URL lives about 5 minutes, once (docs/docusign-facts.md §5)
SIGNING_URL_TTL = 300
#: events DocuSign appends to returnUrl (docs/docusign-facts.md §5)
EVENTS = frozenset({
    "cancel", "decline", "exception", "fax_pending", "session_timeout", "signing_complete",
    "ttl_expired", "viewing_complete", "access_code_failed", "id_check_failed",
})
#: events that claim an outcome: confirmed with DocuSign before the partner hears of them
CONFIRMED_EVENTS = frozenset({"signing_complete", "decline"})


def open_session(row: t.Any, partner_id: int, policy: Policy, return_url: str) -> str:
    """Send the draft if it still is one, then ask DocuSign for the signer's URL."""
    if row.status in envelopes.FINAL:
        raise errors.EnvelopeNotSignable()
    # built first: a return URL too long for DocuSign is refused before anything is sent
    relay = relay_url(row.envelope_id, partner_id, return_url)
    client = get_client()
    if row.status == "created":
        client.send_envelope(row.envelope_id)
        envelopes.mark_sent(row.envelope_id)
    signer = current_app.json.loads(get_vault().decrypt(row.signer_enc))
    return client.recipient_view(
        row.envelope_id,
        return_url=relay,
        user_name=signer["name"],
        email=signer["email"],
        client_user_id=row.client_user_id,
        frame_ancestors=policy.frame_ancestors,
        message_origins=policy.message_origins,
    )


class Recorded(t.NamedTuple):
    partner: str
    status: str
    signer_status: str | None
    reference: str | None
    client_user_id: str


def spend(claims: dict[str, t.Any], event: str) -> Recorded:
    """Spend the token and record the browser's event, all or nothing.

    The primary key on `used_tokens.jti` makes a second spend fail on every instance; a
    token whose envelope, partner or return URL is no longer good rolls back unspent.
    """
    env = store.envelopes
    now = time.time()
    try:
        with store.transaction() as conn:
            conn.execute(store.used_tokens.insert().values(jti=claims["jti"],
                                                           expires_at=claims["exp"]))
            row = conn.execute(
                sa.select(env.c.status, env.c.signer_status, env.c.reference,
                          env.c.client_user_id, store.partners.c.name, store.partners.c.revoked_at)
                .select_from(env.join(store.partners))
                .where(env.c.envelope_id == claims["env"], env.c.partner_id == claims["ptn"])
            ).first()
            if row is None or row.revoked_at is not None:
                raise RelayRejected("This signing link is not valid.")
            policy = get_policies().get(row.name)
            if policy is None or not policy.return_url_allowed(claims["ret"]):
                # the owner withdrew this return URL (or the whole policy) since the session began
                raise RelayRejected("This signing link is no longer valid.")
            envelopes.record_event(conn, claims["env"], event, now=now)
    except sa.exc.IntegrityError:
        raise RelayRejected("This signing link was already used.") from None
    return Recorded(row.name, row.status, row.signer_status, row.reference, row.client_user_id)


def confirm(envelope_id: str, recorded: Recorded) -> tuple[str, str | None]:
    """(status, signer_status) after one upstream read that confirms a claimed outcome.

    The browser's word is not enough: DocuSign's envelope, with its recipients, says
    whether the partner's signer really signed (or declined), even while the envelope
    waits for a countersignature.
    """
    known = (recorded.status, recorded.signer_status)
    if recorded.status in envelopes.FINAL or recorded.signer_status in envelopes.SIGNER_FINAL:
        return known  # Connect (or an earlier read) already settled it
    try:
        upstream = get_client().get_envelope(
            envelope_id, budget=current_app.config["RETURN_CONFIRM_BUDGET"])
    except errors.GatewayError:
        return known  # unconfirmed: the token says what we know, Connect will settle it
    reported = envelopes.Reported(
        upstream.get("status"), envelopes.signer_status_in(upstream, recorded.client_user_id),
        envelopes.parse_time(upstream.get("statusChangedDateTime")))
    now = time.time()
    with store.transaction() as conn:
        envelopes.record_upstream(conn, envelope_id, reported, source="read", last_event=None,
                                  now=now)
        envelopes.mark_checked(conn, envelope_id, now=now)
        return envelopes.current_statuses(conn, envelope_id)
