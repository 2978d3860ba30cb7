"""Envelope records and the one status state machine every view goes through.

The gateway keeps a row per envelope it created (`store.envelopes`) and, beside it, what
DocuSign itself last said (`store.envelope_upstream`), stamped on DocuSign's clock.
Status changes come from three places (a Connect event, the return relay's confirming
read, a status poll) and all of them call `record_upstream_status`, which applies a
status only when it is news: Connect delivers at least once and in no guaranteed order,
so the newer `as_of` wins, and a final status never moves. The gateway's own step (a
draft it sent) goes through `mark_sent`. Nothing else writes a status.

Two statuses per envelope: `status`, the envelope's, and `signer_status`, the partner's
own signer's recipient status. They differ when the template routes the envelope on to
the owner's people after the partner's signer: the signer is `completed` while the
envelope waits for the countersignature. The envelope status is ordered by DocuSign's
clock (`as_of`); the signer's status only ever moves forward (`SIGNER_RANK`), since a
recipient never goes back from signed to sent. Every change that a partner may want to
hear of is queued as a webhook event in the same transaction (`webhook_outbox`).

Vocabulary: DocuSign's envelope and recipient statuses (docs/docusign-facts.md §6, §11).
The states and transitions are tabled in docs/embedded-signing.md.
"""

from __future__ import annotations

import datetime as dt
import time
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa

from gateway import store
from gateway.services import webhook_outbox
from gateway.store import prepared

#: every envelope status the gateway stores and answers with
STATUSES = ("created", "sent", "delivered", "signed", "completed", "declined", "voided")
#: statuses after which nothing changes: no signing session, no poll, no later event applies
FINAL = frozenset({"completed", "declined", "voided"})
KNOWN = frozenset(STATUSES)
#: the signer's recipient status, in the order it can move (equal ranks never replace each
#: other); completed and declined are final
SIGNER_RANK = {"created": 0, "sent": 1, "autoresponded": 1, "delivered": 2, "faxpending": 2,
               "signed": 3, "completed": 4, "declined": 4}
SIGNER_FINAL = frozenset({"completed", "declined"})


@dataclass(frozen=True)
class Reported:
    """What DocuSign said about one envelope: either part may be unknown (None)."""

    status: str | None
    signer_status: str | None
    as_of: float | None


@dataclass(frozen=True)
class Change:
    """A change the state machine applied: the statuses before and after."""

    envelope_id: str
    partner_id: int
    before: tuple[str, str | None]
    after: tuple[str, str | None]

#: built once: the hot path of every status read binds parameters only
_OWNED = prepared.Prepared(sa.select(store.envelopes).where(
    store.envelopes.c.envelope_id == sa.bindparam("envelope_id"),
    store.envelopes.c.partner_id == sa.bindparam("partner_id"),
))


def iso(ts: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC (`2026-01-02T03:04:05Z`)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: t.Any) -> float | None:
    """DocuSign's `2019-11-05T11:01:37.5966414Z` as epoch seconds; None when absent or odd."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def find_owned(conn: sa.Connection, envelope_id: str, partner_id: int) -> prepared.Row | None:
    """The envelope if this partner created it through the gateway, else None."""
    return _OWNED.first(conn, {"envelope_id": envelope_id, "partner_id": partner_id})


def insert(conn: sa.Connection, *, envelope_id: str, partner_id: int, template_alias: str,
           reference: str | None, client_user_id: str, signer_enc: str, status: str,
           now: float) -> None:
    """Keep a new envelope the gateway created (or adopted after a lost answer)."""
    conn.execute(store.envelopes.insert().values(
        envelope_id=envelope_id, partner_id=partner_id, template_alias=template_alias,
        reference=reference, client_user_id=client_user_id, signer_enc=signer_enc,
        status=status, signer_status="created" if status == "created" else None,
        created_at=now, updated_at=now,
    ))


def mark_sent(envelope_id: str) -> None:
    """The gateway sent its draft (draft → sent) before opening the first signing session."""
    env = store.envelopes
    with store.transaction() as conn:
        conn.execute(env.update()
                     .where(env.c.envelope_id == envelope_id, env.c.status == "created")
                     .values(status="sent", signer_status="sent", updated_at=time.time()))


def record_event(conn: sa.Connection, envelope_id: str, event: str, *, now: float) -> None:
    """Note the signing event the browser reported; it never sets a status by itself."""
    env = store.envelopes
    conn.execute(env.update().where(env.c.envelope_id == envelope_id)
                 .values(last_event=event, updated_at=now))


def mark_checked(conn: sa.Connection, envelope_id: str, *, now: float) -> None:
    """DocuSign was just asked about this envelope (the poll interval counts from here)."""
    env = store.envelopes
    conn.execute(env.update().where(env.c.envelope_id == envelope_id)
                 .values(upstream_checked_at=now))


def current_statuses(conn: sa.Connection, envelope_id: str) -> tuple[str, str | None]:
    """(status, signer_status) as the gateway's record has them now."""
    env = store.envelopes
    row = conn.execute(sa.select(env.c.status, env.c.signer_status)
                       .where(env.c.envelope_id == envelope_id)).one()
    return str(row.status), row.signer_status


def _ensure_upstream_row(conn: sa.Connection, envelope_id: str, now: float) -> None:
    """Insert the envelope's (empty) upstream row if missing, race-free on both backends."""
    up = store.envelope_upstream
    values = {"envelope_id": envelope_id, "received_at": now}
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(up).values(**values).on_conflict_do_nothing())
    elif conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(up).values(**values).on_conflict_do_nothing())
    else:
        exists = conn.execute(sa.select(up.c.envelope_id)
                              .where(up.c.envelope_id == envelope_id)).first()
        if exists is None:
            conn.execute(up.insert().values(**values))


def signer_status_in(envelope: t.Mapping[str, t.Any], client_user_id: str) -> str | None:
    """The embedded signer's recipient status in an envelope (or a Connect summary)."""
    recipients = envelope.get("recipients")
    signers = recipients.get("signers") if isinstance(recipients, dict) else None
    for signer in signers if isinstance(signers, list) else ():
        if isinstance(signer, dict) and str(signer.get("clientUserId") or "") == client_user_id:
            status = signer.get("status")
            return status if status in SIGNER_RANK else None
    return None


def _apply_envelope_status(conn: sa.Connection, envelope_id: str, status: str,
                           as_of: float | None, source: str, now: float) -> bool:
    """Record DocuSign's envelope status in `envelope_upstream` if it is newer; True if so."""
    up = store.envelope_upstream
    _ensure_upstream_row(conn, envelope_id, now)
    newer = up.c.envelope_id == envelope_id
    if as_of is not None:
        # on a tie (one DocuSign action can stamp two statuses with the same time) the
        # status further along the lifecycle wins
        rank = sa.case({name: i for i, name in enumerate(STATUSES)}, value=up.c.status, else_=-1)
        newer = sa.and_(newer, sa.or_(
            up.c.as_of.is_(None), up.c.as_of < as_of,
            sa.and_(up.c.as_of == as_of, rank < STATUSES.index(status))))
    elif status not in FINAL:
        return False
    fresh = conn.execute(up.update().where(newer).values(
        status=status, as_of=as_of if as_of is not None else up.c.as_of, source=source,
        received_at=now,
    ))
    return fresh.rowcount == 1


def _signer_moves(current: str | None, new: str | None) -> bool:
    if new is None or current in SIGNER_FINAL:
        return False
    return SIGNER_RANK[new] > SIGNER_RANK.get(current or "", -1)


#: the row as the state machine reads it before a conditional update
_READ_STATE = sa.select(store.envelopes.c.partner_id, store.envelopes.c.status,
                        store.envelopes.c.signer_status).where(
    store.envelopes.c.envelope_id == sa.bindparam("envelope_id"))


def _new_values(row: t.Any, status: str | None, newest: bool, reported: Reported,
                last_event: str | None, now: float) -> dict[str, t.Any]:
    """The columns a report changes on this row ({} when it changes nothing)."""
    values: dict[str, t.Any] = {}
    if newest and row.status not in FINAL:
        values["status"] = status
    if _signer_moves(row.signer_status, reported.signer_status):
        values["signer_status"] = reported.signer_status
    if values:
        values["updated_at"] = now
        if last_event is not None:
            values["last_event"] = last_event
    return values


def _update_if_unchanged(conn: sa.Connection, envelope_id: str, row: t.Any,
                         values: dict[str, t.Any]) -> bool:
    """UPDATE conditional on what was read: a concurrent writer's change is not overwritten."""
    env = store.envelopes
    same_signer = (env.c.signer_status.is_(None) if row.signer_status is None
                   else env.c.signer_status == row.signer_status)
    changed = conn.execute(env.update().where(
        env.c.envelope_id == envelope_id, env.c.status == row.status, same_signer,
    ).values(**values))
    return changed.rowcount == 1


def record_upstream(conn: sa.Connection, envelope_id: str, reported: Reported, *,
                    source: str, last_event: str | None, now: float) -> Change | None:
    """Apply what DocuSign reported, if it is news; the change made, None when none.

    The envelope status: the newer `as_of` wins (a conditional UPDATE, so two deliveries
    racing cannot undo one another), a final status never moves, and a status with no
    date at all is taken only when final. The signer status only moves forward. A
    change is queued for the partner's webhook in this same transaction.
    """
    row = conn.execute(_READ_STATE, {"envelope_id": envelope_id}).first()
    if row is None:
        return None
    status = reported.status
    if status == "completed" and reported.signer_status is None:
        # DocuSign completes an envelope only when every signer has signed
        reported = Reported(status, "completed", reported.as_of)
    newest = status in KNOWN and _apply_envelope_status(conn, envelope_id, status,
                                                         reported.as_of, source, now)
    # A concurrent report may commit between our read of the row and our UPDATE (e.g. a
    # recipient event moving only the signer while the relay's read brings `declined`):
    # then read again and apply ours on top of theirs. Giving up instead would leave
    # `envelope_upstream` (already advanced above) ahead of the envelope, whose status
    # then no later report could move.
    for attempt in range(3):
        if attempt:
            row = conn.execute(_READ_STATE, {"envelope_id": envelope_id}).one()
        values = _new_values(row, status, newest, reported, last_event, now)
        if not values:
            return None
        if _update_if_unchanged(conn, envelope_id, row, values):
            break
    else:
        return None
    change = Change(envelope_id, row.partner_id, (row.status, row.signer_status),
                    (values.get("status", row.status), values.get("signer_status", row.signer_status)))
    if change.before != change.after:
        webhook_outbox.enqueue(conn, change, now=now)
    return change


def record_upstream_status(conn: sa.Connection, envelope_id: str, status: str, *,
                           as_of: float | None, source: str, last_event: str | None,
                           now: float) -> bool:
    """Apply an envelope status alone (no signer status known); True when the row changed."""
    change = record_upstream(conn, envelope_id, Reported(status, None, as_of), source=source,
                             last_event=last_event, now=now)
    return change is not None


def describe(statuses: tuple[str, str | None]) -> str:
    """`status=sent signer_status=completed`: the audit trail's note of a status."""
    return f"status={statuses[0]} signer_status={statuses[1] or '-'}"


def status_body(row: t.Any) -> dict[str, t.Any]:
    """The partner's view of one envelope (GET /v1/envelopes/{id})."""
    return {
        "envelope_id": row.envelope_id,
        "status": row.status,
        "signer_status": row.signer_status,
        "template": row.template_alias,
        "reference": row.reference,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "last_event": row.last_event,
    }
