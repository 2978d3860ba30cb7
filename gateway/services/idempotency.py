"""Idempotency-Key for envelope creation: one upstream envelope per key, replayed answers.

The first request with a key inserts a `pending` row (the primary key makes the insert
the lock, across workers and instances); it becomes `done` with the response kept for
`IDEMPOTENCY_TTL`. A repeat with the same body gets that response again, a repeat with
another body gets 409. A repeat while the first still runs waits for it (up to
`IDEMPOTENCY_WAIT`) and then answers the same, so concurrent retries see one answer.

A pending row is a lease that starts at `created_at` and lasts `IDEMPOTENCY_LEASE`,
longer than any create can take (the upstream budget). A worker killed mid-create, or a
create whose outcome is unknown (timeout, dropped connection), leaves a pending row
behind; the first repeat after the lease ran out takes it over (a conditional UPDATE,
so exactly one does) and must reconcile before creating: DocuSign is asked for an
envelope carrying this claim's marker (a custom field), and that envelope is adopted if
it exists. A claim is deleted only when the create provably did not happen.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa

from gateway import errors
from gateway import store

KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
#: the envelope custom field that tags a keyed create, so a retry can find it upstream
MARKER_FIELD = "gateway_request"
# how often a repeat looks at a running claim: starts short (most creates take ~100 ms)
_POLL_FIRST = 0.05
_POLL_MAX = 0.25


@dataclass(frozen=True)
class Replay:
    """The stored answer of an earlier request with the same key and body."""

    status: int
    body: dict[str, t.Any]


@dataclass(frozen=True)
class Claim:
    """The right to run the create for a key, held until `started + lease`."""

    partner_id: int
    key: str
    started: float
    lease: float
    #: when the key was first claimed: envelopes made for it are not older than this
    first_claimed: float
    #: taken over from an abandoned attempt: DocuSign may already hold its envelope
    recovered: bool

    @property
    def marker(self) -> str:
        return marker(self.partner_id, self.key)

    def lease_left(self, now: float | None = None) -> int:
        """Whole seconds until the lease runs out (at least 1): a useful Retry-After."""
        now = time.time() if now is None else now
        return max(1, math.ceil(self.started + self.lease - now))


def request_hash(body: t.Mapping[str, t.Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def marker(partner_id: int, key: str) -> str:
    """The value of the `gateway_request` custom field for this partner's key.

    A hash, so DocuSign never sees the partner's key itself; the partner id in it keeps
    two partners' equal keys apart.
    """
    return hashlib.sha256(f"{partner_id}\n{key}".encode()).hexdigest()


def check_key(key: str) -> None:
    if not KEY_RE.match(key):
        raise errors.ValidationFailed(
            "Idempotency-Key must be 1 to 255 printable ASCII characters.",
            errors={"Idempotency-Key": ["Invalid header value."]},
        )


def _where(partner_id: int, key: str) -> sa.ColumnElement[bool]:
    idem = store.idempotency.c
    return sa.and_(idem.partner_id == partner_id, idem.key == key)


def _row(partner_id: int, key: str) -> sa.Row[t.Any] | None:
    with store.transaction() as conn:
        return conn.execute(sa.select(store.idempotency).where(_where(partner_id, key))).first()


def _insert(partner_id: int, key: str, digest: str, now: float, ttl: float) -> bool:
    try:
        with store.transaction() as conn:
            conn.execute(store.idempotency.insert().values(
                partner_id=partner_id, key=key, request_hash=digest, state="pending",
                created_at=now, expires_at=now + ttl,
            ))
    except sa.exc.IntegrityError:
        return False
    return True


def _take_over(row: sa.Row[t.Any], now: float) -> bool:
    """Move an expired lease to us; the old `created_at` in the WHERE makes it exclusive."""
    idem = store.idempotency
    with store.transaction() as conn:
        moved = conn.execute(
            idem.update()
            .where(_where(row.partner_id, row.key), idem.c.state == "pending",
                   idem.c.created_at == row.created_at)
            .values(created_at=now)
        )
    return moved.rowcount == 1


def begin(partner_id: int, key: str, digest: str, *, ttl: float, lease: float,
          wait: float) -> Replay | Claim:
    """Claim the key (a `Claim`: go ahead) or return the earlier answer to replay.

    Raises 409 `idempotency_conflict` for another body under the same key, and 409
    `idempotency_in_progress` (Retry-After: until the lease ends) when the first request
    is still running after `wait` seconds.
    """
    now = time.time()
    with store.transaction() as conn:
        conn.execute(store.idempotency.delete().where(
            _where(partner_id, key), store.idempotency.c.expires_at <= now))
    deadline = now + wait
    pause = _POLL_FIRST
    while True:
        now = time.time()
        if _insert(partner_id, key, digest, now, ttl):
            return Claim(partner_id, key, now, lease, first_claimed=now, recovered=False)
        row = _row(partner_id, key)
        if row is None:  # released between our insert and read: try again at once
            continue
        if row.request_hash != digest:
            raise errors.IdempotencyConflict()
        if row.state == "done":
            return Replay(status=row.response_status, body=json.loads(row.response_body))
        if row.created_at + lease <= now and _take_over(row, now):
            return Claim(partner_id, key, now, lease, first_claimed=row.expires_at - ttl,
                         recovered=True)
        if now >= deadline:
            left = max(1, math.ceil(row.created_at + lease - now))
            raise errors.IdempotencyInProgress(retry_after=min(left, math.ceil(lease)))
        time.sleep(min(pause, deadline - now))
        pause = min(_POLL_MAX, pause * 2)


def _ours(claim: Claim) -> sa.ColumnElement[bool]:
    idem = store.idempotency.c
    return sa.and_(_where(claim.partner_id, claim.key), idem.state == "pending",
                   idem.created_at == claim.started)


def complete(conn: sa.Connection, claim: Claim, status: int, body: t.Mapping[str, t.Any]) -> bool:
    """Keep the answer (call inside the transaction that records the envelope).

    False when the lease was lost to another request meanwhile (this one outlived its
    lease: only possible past the upstream budget); the row is then left to that one.
    """
    done = conn.execute(
        store.idempotency.update().where(_ours(claim))
        .values(state="done", response_status=status, response_body=json.dumps(body))
    )
    return done.rowcount == 1


def release(claim: Claim) -> None:
    """Forget a claim whose create provably did not happen, so a retry runs afresh."""
    with store.transaction() as conn:
        conn.execute(store.idempotency.delete().where(_ours(claim)))


def expire(claim: Claim) -> None:
    """End the lease now: the next repeat reconciles at once instead of waiting it out.

    For a failure after DocuSign was asked and the answer is known to be "nothing made"
    only for this attempt, while an earlier (abandoned) attempt may still have made one.
    """
    with store.transaction() as conn:
        conn.execute(store.idempotency.update().where(_ours(claim))
                     .values(created_at=time.time() - claim.lease))
