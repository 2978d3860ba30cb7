"""The audit trail's hash chain: one sealer across the fleet chains the rows requests insert.

Requests only INSERT their row (`audit.py`); it is durable before the answer leaves. The
sealer, the holder of a lease row in `settings` (renewed per batch, like the webhook
sender's), takes the rows not yet sealed (`seal_seq IS NULL`) oldest id first, gives each
the next seal number, `prev_hash` (the previous sealed row's hash) and `row_hash` =
HMAC-SHA256(chain key, prev_hash + the row's fields), and moves the chain head (last seal
number and hash, a `settings` row) in the same transaction. The head moves by compare and
set, so even two sealers at once cannot fork the chain. Rows are picked by "not yet
sealed", never "after the last id": a row whose id was taken from the sequence earlier but
that committed later is sealed by the next batch, not skipped.

The chain key is a random secret kept vault-encrypted in the settings table, so rewriting a
sealed row (and every one after it) needs the master key, not just write access to the
database. `verify` walks the chain in seal order, names the first edited or missing record,
and counts the rows not yet sealed. Deleting the newest sealed rows shows as a head that
points past the last row (rolling the head back with them only shows against a head
exported earlier: `gateway audit --verify` prints it). What stays unsealed (for at most a
sealer interval while a sealer runs) can be edited or deleted without trace.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import typing as t
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask

from gateway import store
from gateway.services import background
from gateway.services.audit import CHAIN_FIELDS
from gateway.store import leases

log = logging.getLogger(__name__)

CHAIN_KEY_SETTING = "audit_chain_key"
CHAIN_HEAD_SETTING = "audit_chain_head"
LEASE_SETTING = "audit_sealer_lease"
GENESIS_HASH = "0" * 64
LEASE_SECONDS = 30.0
#: this process's lease owner id
OWNER = uuid.uuid4().hex

_ev = store.audit_events
_settings = store.settings
_UNSEALED = (sa.select(_ev).where(_ev.c.seal_seq.is_(None)).order_by(_ev.c.id)
             .limit(sa.bindparam("batch")))
_SEAL_ROW = (_ev.update()
             .where(_ev.c.id == sa.bindparam("row_id"), _ev.c.seal_seq.is_(None))
             .values(seal_seq=sa.bindparam("seq"), prev_hash=sa.bindparam("prev"),
                     row_hash=sa.bindparam("digest")))
_MOVE_HEAD = (_settings.update()
              .where(_settings.c.name == CHAIN_HEAD_SETTING, _settings.c.value == sa.bindparam("old"))
              .values(value=sa.bindparam("new"), updated_at=sa.bindparam("now")))


def row_hash(key: bytes, prev_hash: str, row: t.Mapping[str, t.Any]) -> str:
    """HMAC of the previous hash and the row's fields, as JSON (floats round-trip exactly)."""
    canonical = json.dumps([prev_hash, *(row[name] for name in CHAIN_FIELDS)],
                           separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode("ascii"), hashlib.sha256).hexdigest()


def _ensure_setting(name: str, value: t.Any, *, secret: bool) -> None:
    """Create a setting unless it exists: an INSERT only, so the first creator's key stays."""
    from gateway.store.vault import get_vault

    text = json.dumps(value)
    if secret:
        text = get_vault().encrypt(text.encode("utf-8"))
    try:
        with store.transaction() as conn:
            conn.execute(_settings.insert().values(name=name, value=text, encrypted=secret,
                                                   updated_at=time.time()))
    except sa.exc.IntegrityError:
        pass


def ensure_chain() -> None:
    """The chain key and head, created on first use (or by `gateway init`)."""
    _ensure_setting(CHAIN_KEY_SETTING, secrets.token_hex(32), secret=True)
    _ensure_setting(CHAIN_HEAD_SETTING, {"seq": 0, "hash": GENESIS_HASH}, secret=False)


def _head_seq(head: dict[str, t.Any]) -> int:
    # a head of the old in-request chain names the last id; those rows' seal number is their id
    return int(head.get("seq", head.get("id") or 0))


def seal(batch: int = 1000) -> int:
    """Seal up to `batch` rows in one transaction; how many (0 if another sealer moved first)."""
    with store.transaction() as conn:
        key_hex = store.get_setting(conn, CHAIN_KEY_SETTING)
        old = conn.execute(sa.select(_settings.c.value)
                           .where(_settings.c.name == CHAIN_HEAD_SETTING)).scalar()
    if key_hex is None or old is None:
        ensure_chain()
        return seal(batch)
    key = bytes.fromhex(key_hex)
    with store.transaction() as conn:
        rows = conn.execute(_UNSEALED, {"batch": batch}).all()
        if not rows:
            return 0
        head = json.loads(old)
        seq, prev = _head_seq(head), head["hash"]
        sealed = []
        for row in rows:
            seq += 1
            digest = row_hash(key, prev, t.cast(t.Mapping[str, t.Any], row._mapping))
            sealed.append({"row_id": row.id, "seq": seq, "prev": prev, "digest": digest})
            prev = digest
        # the head first: a second sealer blocks here, then finds the head moved and stops
        new = json.dumps({"seq": seq, "hash": prev})
        if conn.execute(_MOVE_HEAD, {"old": old, "new": new, "now": time.time()}).rowcount != 1:
            raise _Raced()
        conn.execute(_SEAL_ROW, sealed)
    return len(sealed)


class _Raced(Exception):
    """Another sealer moved the head during this batch (its transaction is rolled back)."""


def seal_all(batch: int = 1000) -> int:
    """Seal until nothing is left; how many rows were sealed."""
    total = 0
    while True:
        try:
            done = seal(batch)
        except _Raced:
            continue
        total += done
        if done < batch:
            return total


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: `problem` is None when the chain is intact."""

    checked: int
    head_seq: int | None
    head_hash: str
    unsealed: int = 0
    #: how long the oldest row not yet sealed has waited, in seconds
    oldest_unsealed_age: float | None = None
    problem: str | None = None


def _unsealed(conn: sa.Connection) -> tuple[int, float | None]:
    count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(_ev.c.at))
                                 .where(_ev.c.seal_seq.is_(None))).one()
    return int(count), (time.time() - oldest if oldest is not None else None)


def verify(conn: sa.Connection) -> Verdict:
    """Walk the chain in seal order; name the first edited or missing record."""
    key_hex = store.get_setting(conn, CHAIN_KEY_SETTING)
    head = store.get_setting(conn, CHAIN_HEAD_SETTING)
    unsealed, age = _unsealed(conn)
    if key_hex is None or not isinstance(head, dict):
        sealed = conn.execute(sa.select(sa.func.count()).where(_ev.c.seal_seq.is_not(None))).scalar()
        problem = "the audit chain has not been started (no key or head)" if sealed else None
        return Verdict(0, None, GENESIS_HASH, unsealed, age, problem)
    key = bytes.fromhex(key_hex)
    head_seq = _head_seq(head) or None
    cursor = conn.execution_options(yield_per=1000).execute(
        sa.select(_ev).where(_ev.c.seal_seq.is_not(None)).order_by(_ev.c.seal_seq))
    prev_hash, prev_seq, checked = GENESIS_HASH, None, 0
    try:
        for row in cursor:
            found = _check_link(key, row, prev_hash, prev_seq)
            if found is not None:
                return Verdict(checked, head_seq, head["hash"], unsealed, age, found)
            prev_hash, prev_seq, checked = row.row_hash, row.seal_seq, checked + 1
    finally:
        cursor.close()  # a server-side cursor on PostgreSQL: do not leave it to the GC
    if (head_seq, head["hash"]) != (prev_seq, prev_hash):
        after = f"after sealed record {prev_seq}" if prev_seq is not None else "from the start"
        return Verdict(checked, head_seq, head["hash"], unsealed, age,
                       f"record(s) missing {after}: the chain head names sealed record {head_seq}")
    return Verdict(checked, head_seq, head["hash"], unsealed, age)


def _check_link(key: bytes, row: sa.Row[t.Any], prev_hash: str, prev_seq: int | None) -> str | None:
    fields = t.cast(t.Mapping[str, t.Any], row._mapping)
    intact = row.row_hash is not None and hmac.compare_digest(
        row_hash(key, row.prev_hash or "", fields), row.row_hash)
    if row.prev_hash == prev_hash:
        return None if intact else f"sealed record {row.seal_seq} (id {row.id}) was edited"
    if intact:
        # the row is as written, but it was chained to a row that is no longer there
        before = f"between sealed record {prev_seq} and" if prev_seq is not None else "before"
        return f"record(s) missing {before} sealed record {row.seal_seq} (id {row.id})"
    return f"sealed record {row.seal_seq} (id {row.id}) was edited"


# --- the fleet's one sealer -----------------------------------------------------------------


def claim_lease(owner: str, *, lease: float = LEASE_SECONDS, now: float | None = None) -> bool:
    """Hold (or keep holding) the fleet's one sealer lease for `lease` seconds."""
    return leases.claim(LEASE_SETTING, owner, lease=lease, renew=True, now=now)


def release_lease(owner: str) -> None:
    """End this owner's lease now, so another sealer need not wait it out."""
    leases.release(LEASE_SETTING, owner)


def seal_if_leader(owner: str = OWNER, batch: int = 1000) -> int | None:
    """One round of the sealer: None when another process holds the lease."""
    if not claim_lease(owner):
        return None
    return seal_all(batch)


def _round(app: Flask) -> None:
    seal_if_leader(batch=int(app.config["AUDIT_SEAL_BATCH"]))


#: the sealer thread of a serving process (`background`); `AUDIT_SEALER` turns it on
JOB = background.Job(name="audit-sealer", switch="AUDIT_SEALER", interval="AUDIT_SEAL_INTERVAL",
                     step=_round, lease=LEASE_SETTING, owner=OWNER)


def init_app(app: Flask) -> None:
    """With `AUDIT_SEALER` on (None: unless TESTING), seal in a thread of each serving process."""
    background.init_app(app, JOB)
