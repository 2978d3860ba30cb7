"""Per-partner Standard Webhooks secrets (`whsec_...`), vault-encrypted, rotatable with grace.

Each partner has one setting, `webhook_secrets:<partner id>`, holding a list newest
first: `[{"secret", "created_at", "expires_at"}]`. The newest has no `expires_at`; a
rotation stamps the one it replaces with `now + grace`, and while that is in the future
the sender signs with both, so a receiver can switch secrets without losing a message.
"""

from __future__ import annotations

import base64
import secrets
import typing as t

import sqlalchemy as sa

from gateway import store

PREFIX = "whsec_"


def setting_name(partner_id: int) -> str:
    """The `settings` row holding one partner's secrets."""
    return f"webhook_secrets:{partner_id}"


def new_secret() -> str:
    """A fresh `whsec_` secret: base64 of 24 random bytes."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def load(conn: sa.Connection, partner_id: int) -> list[dict[str, t.Any]]:
    """The stored entries, newest first (empty when never rotated)."""
    return list(store.get_setting(conn, setting_name(partner_id)) or [])


def rotate(conn: sa.Connection, partner_id: int, grace_seconds: float, now: float) -> str:
    """Issue a new secret; the current ones keep signing for at most `grace_seconds`."""
    value = new_secret()
    kept = []
    for entry in load(conn, partner_id):
        expires = entry.get("expires_at")
        expires = now + grace_seconds if expires is None else min(expires, now + grace_seconds)
        if expires > now:  # drop the ones already out of their grace
            kept.append(entry | {"expires_at": expires})
    entries = [{"secret": value, "created_at": now, "expires_at": None}, *kept]
    store.put_setting(conn, setting_name(partner_id), entries, secret=True, now=now)
    return value


def active(conn: sa.Connection, partner_id: int, now: float) -> list[str]:
    """The secrets to sign with now: the newest plus any still inside its grace."""
    return [e["secret"] for e in load(conn, partner_id)
            if e.get("expires_at") is None or e["expires_at"] > now]
