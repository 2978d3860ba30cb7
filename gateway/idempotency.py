"""Idempotency-Key for envelope creation: one upstream envelope per key, replayed answers.

The first request with a key inserts a `pending` row (the primary key makes the
insert the lock, across workers and instances); it becomes `done` with the response
kept for `IDEMPOTENCY_TTL`. A repeat with the same body gets that response again; a
repeat with another body gets 409; a repeat while the first is still running gets 409
`idempotency_in_progress`. If the first attempt fails before DocuSign answered, the
row is released so the partner can retry.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa

from gateway import errors
from gateway import store

KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class Replay:
    status: int
    body: dict[str, t.Any]


def request_hash(body: t.Mapping[str, t.Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def check_key(key: str) -> None:
    if not KEY_RE.match(key):
        raise errors.ValidationFailed(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            errors={"Idempotency-Key": ["Invalid header value."]},
        )


def _row(conn: sa.Connection, partner_id: int, key: str) -> sa.Row[t.Any] | None:
    idem = store.idempotency
    return conn.execute(
        sa.select(idem).where(idem.c.partner_id == partner_id, idem.c.key == key)
    ).first()


def _answer_existing(row: sa.Row[t.Any], digest: str) -> Replay:
    if row.request_hash != digest:
        raise errors.IdempotencyConflict()
    if row.state != "done":
        raise errors.IdempotencyInProgress(retry_after=1)
    return Replay(status=row.response_status, body=json.loads(row.response_body))


def begin(partner_id: int, key: str, digest: str, *, ttl: float) -> Replay | None:
    """Claim the key (None: go ahead) or return the earlier answer to replay."""
    now = time.time()
    idem = store.idempotency
    with store.transaction() as conn:
        conn.execute(idem.delete().where(idem.c.partner_id == partner_id, idem.c.key == key,
                                         idem.c.expires_at <= now))
    try:
        with store.transaction() as conn:
            conn.execute(idem.insert().values(
                partner_id=partner_id, key=key, request_hash=digest, state="pending",
                created_at=now, expires_at=now + ttl,
            ))
        return None
    except sa.exc.IntegrityError:
        with store.transaction() as conn:
            row = _row(conn, partner_id, key)
        if row is None:  # released between our insert and read: the caller may retry
            raise errors.IdempotencyInProgress(retry_after=1) from None
        return _answer_existing(row, digest)


def complete(conn: sa.Connection, partner_id: int, key: str, status: int,
             body: t.Mapping[str, t.Any]) -> None:
    """Keep the answer (call inside the transaction that records the envelope)."""
    idem = store.idempotency
    conn.execute(
        idem.update()
        .where(idem.c.partner_id == partner_id, idem.c.key == key)
        .values(state="done", response_status=status, response_body=json.dumps(body))
    )


def release(partner_id: int, key: str) -> None:
    """Forget a pending claim whose request failed, so a retry can run."""
    idem = store.idempotency
    with store.transaction() as conn:
        conn.execute(idem.delete().where(idem.c.partner_id == partner_id, idem.c.key == key,
                                         idem.c.state == "pending"))
