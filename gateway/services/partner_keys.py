"""Partner API keys: format, issue, verify, revoke and rotate.

A key reads `pgw_<key id>_<secret>_<checksum>`:
- `pgw_` lets secret scanners recognise a leak;
- the key id (12 base32 chars, 60 bits) is public and indexes the stored row;
- the secret is 32 base62 chars (~190 bits) from `secrets`;
- the checksum (CRC32 of the rest, base62) rejects typos without a database hit.
Only HMAC-SHA256(pepper, key) is stored; the pepper is a random secret kept
vault-encrypted in the settings table (not derived from the master key, so the
master key can rotate without invalidating every partner key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
import time
import typing as t

import sqlalchemy as sa
from flask import current_app
from flask import has_request_context

from gateway import context
from gateway import errors
from gateway import store
from gateway.context import Caller
from gateway.store import prepared

PREFIX = "pgw_"
KEY_ID_LEN = 12
SECRET_LEN = 32
CHECKSUM_LEN = 6
_BASE62 = string.digits + string.ascii_letters
_KEY_RE = re.compile(
    rf"^pgw_([a-z2-7]{{{KEY_ID_LEN}}})_([0-9A-Za-z]{{{SECRET_LEN}}})_([0-9A-Za-z]{{{CHECKSUM_LEN}}})$"
)
PEPPER_SETTING = "key_pepper"


class KeyProblem(Exception):
    """A CLI-level problem with a partner or key (unknown partner, already revoked...)."""


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_BASE62[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(binascii.crc32(body.encode("ascii")), CHECKSUM_LEN)


def generate() -> tuple[str, str]:
    """A new (key id, full key)."""
    key_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()[:KEY_ID_LEN]
    secret = "".join(secrets.choice(_BASE62) for _ in range(SECRET_LEN))
    body = f"{PREFIX}{key_id}_{secret}"
    return key_id, f"{body}_{_checksum(body)}"


def parse(presented: str) -> str | None:
    """The key id of a well-formed key with a valid checksum, else None."""
    m = _KEY_RE.match(presented)
    if m is None:
        return None
    body = presented[: -(CHECKSUM_LEN + 1)]
    if not hmac.compare_digest(_checksum(body), m.group(3)):
        return None
    return m.group(1)


def ensure_pepper(conn: sa.Connection) -> bool:
    """Create the keyed-hash pepper if missing (`gateway init`); True when it was created."""
    if store.get_setting(conn, PEPPER_SETTING) is not None:
        return False
    store.put_setting(conn, PEPPER_SETTING, secrets.token_hex(32), secret=True, now=time.time())
    return True


def _pepper(conn: sa.Connection) -> bytes:
    """The keyed-hash pepper, read once and cached for the app's life."""
    cached = current_app.extensions.get("key_pepper")
    if cached is None:
        value = store.get_setting(conn, PEPPER_SETTING)
        if value is None:
            raise store.SchemaMismatch("no key pepper in the database; run `gateway init`")
        cached = current_app.extensions["key_pepper"] = bytes.fromhex(value)
    return cached


def hash_key(conn: sa.Connection, key: str) -> str:
    return hmac.new(_pepper(conn), key.encode("ascii"), hashlib.sha256).hexdigest()


_LOOKUP = prepared.Prepared(
    sa.select(
        store.api_keys.c.secret_hash,
        store.api_keys.c.expires_at,
        store.api_keys.c.revoked_at,
        store.partners.c.id.label("partner_id"),
        store.partners.c.name,
        store.partners.c.revoked_at.label("partner_revoked_at"),
    )
    .select_from(store.api_keys.join(store.partners))
    # a bound parameter, not a literal: the statement is built and its cache key made once
    .where(store.api_keys.c.key_id == sa.bindparam("key_id"))
)


def authenticate(conn: sa.Connection, presented: str | None, *, now: float | None = None) -> Caller:
    """Verify a presented key against the store on every call: revocation bites at once.

    Malformed, unknown and wrong-secret keys all raise the same `InvalidApiKey`, so a
    caller learns nothing about which key ids exist.
    """
    if not presented:
        raise errors.MissingApiKey()
    key_id = parse(presented)
    if key_id is None:
        raise errors.InvalidApiKey()
    row = _LOOKUP.first(conn, {"key_id": key_id})
    expected = row.secret_hash if row is not None else "0" * 64
    # hash even for an unknown key id, so timing does not tell known ids apart
    if not hmac.compare_digest(hash_key(conn, presented), expected) or row is None:
        raise errors.InvalidApiKey()
    now = time.time() if now is None else now
    if has_request_context():
        # refused below, but whose key it is is known: the audit row names the partner
        context.current().partner = row.name
    if row.revoked_at is not None or row.partner_revoked_at is not None:
        raise errors.KeyRevoked()
    if row.expires_at is not None and row.expires_at <= now:
        raise errors.KeyExpired()
    return Caller(partner_id=row.partner_id, partner=row.name)


def _partner_row(conn: sa.Connection, name: str) -> sa.Row[t.Any]:
    row = conn.execute(sa.select(store.partners).where(store.partners.c.name == name)).first()
    if row is None:
        raise KeyProblem(f"no partner named {name!r}")
    return row


def _insert_key(conn: sa.Connection, partner_id: int, now: float, expires_at: float | None) -> str:
    key_id, key = generate()
    conn.execute(
        store.api_keys.insert().values(
            key_id=key_id,
            partner_id=partner_id,
            secret_hash=hash_key(conn, key),
            created_at=now,
            expires_at=expires_at,
        )
    )
    return key


def add_partner(conn: sa.Connection, name: str, *, expires_at: float | None = None) -> str:
    """Create the partner (or re-enable a revoked one) with a fresh key; returns the key once.

    Like every writer here, it runs inside the caller's `store.transaction()`.
    """
    now = time.time()
    row = conn.execute(sa.select(store.partners).where(store.partners.c.name == name)).first()
    if row is not None and row.revoked_at is None:
        raise KeyProblem(f"partner {name!r} already exists; use `gateway partners rotate-key`")
    if row is None:
        inserted = conn.execute(
            store.partners.insert().values(name=name, created_at=now)
        ).inserted_primary_key
        assert inserted is not None
        partner_id = inserted[0]
    else:
        partner_id = row.id
        conn.execute(
            store.partners.update().where(store.partners.c.id == partner_id).values(revoked_at=None)
        )
    return _insert_key(conn, partner_id, now, expires_at)


def revoke_partner(conn: sa.Connection, name: str) -> int:
    """Revoke the partner and every key it holds; returns how many keys were live."""
    now = time.time()
    row = _partner_row(conn, name)
    if row.revoked_at is not None:
        raise KeyProblem(f"partner {name!r} is already revoked")
    conn.execute(store.partners.update().where(store.partners.c.id == row.id).values(revoked_at=now))
    live = conn.execute(
        store.api_keys.update()
        .where(store.api_keys.c.partner_id == row.id, store.api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return live.rowcount


def rotate_key(conn: sa.Connection, name: str, *, grace: float, expires_at: float | None = None) -> str:
    """Issue a new key; live old keys keep working for `grace` seconds (never past their own expiry)."""
    now = time.time()
    row = _partner_row(conn, name)
    if row.revoked_at is not None:
        raise KeyProblem(f"partner {name!r} is revoked; use `gateway partners add` to re-enable it")
    cutoff = now + max(0.0, grace)
    keys = store.api_keys.c
    conn.execute(
        store.api_keys.update()
        .where(keys.partner_id == row.id, keys.revoked_at.is_(None),
               sa.or_(keys.expires_at.is_(None), keys.expires_at > cutoff))
        .values(expires_at=cutoff)
    )
    return _insert_key(conn, row.id, now, expires_at)


def list_partners(conn: sa.Connection, *, name: str | None = None) -> list[dict[str, t.Any]]:
    """Every partner (or only the one called `name`): created, revoked, live key count."""
    now = time.time()
    keys = store.api_keys.c
    live = sa.func.sum(
        sa.case(
            (sa.and_(keys.revoked_at.is_(None),
                     sa.or_(keys.expires_at.is_(None), keys.expires_at > now)), 1),
            else_=0,
        )
    )
    query = (
        sa.select(
            store.partners.c.name,
            store.partners.c.created_at,
            store.partners.c.revoked_at,
            live.label("live_keys"),
        )
        .select_from(store.partners.outerjoin(store.api_keys))
        .group_by(store.partners.c.id)
        .order_by(store.partners.c.name)
    )
    if name is not None:
        query = query.where(store.partners.c.name == name)
    return [dict(r._mapping) | {"live_keys": int(r.live_keys or 0)} for r in conn.execute(query)]
