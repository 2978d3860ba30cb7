"""Leases: one holder across the whole fleet for a job that must not run twice at once.

A lease is a `settings` row whose value is the holder's id and whose `updated_at` is the
time the lease ends. A conditional UPDATE claims it, so it works the same on SQLite and
PostgreSQL, and a holder that dies frees it when its lease runs out. Used by the fleet's
DocuSign token fetcher and the partner-webhook sender.
"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from gateway import store


def claim(name: str, owner: str, *, lease: float, renew: bool = False,
          now: float | None = None) -> bool:
    """Take the lease `name` for `lease` seconds if it is free (or, with `renew`, already ours)."""
    now = time.time() if now is None else now
    rows = store.settings.c
    mine = json.dumps(owner)
    free = rows.updated_at <= now
    with store.transaction() as conn:
        taken = conn.execute(
            store.settings.update()
            .where(rows.name == name, sa.or_(free, rows.value == mine) if renew else free)
            .values(value=mine, updated_at=now + lease, encrypted=False)
        ).rowcount
        exists = taken or conn.execute(sa.select(rows.name).where(rows.name == name)).first()
    if taken or exists:
        return bool(taken)
    try:
        with store.transaction() as conn:
            conn.execute(store.settings.insert().values(
                name=name, value=mine, encrypted=False, updated_at=now + lease))
    except sa.exc.IntegrityError:  # another process created it first, and holds it
        return False
    return True


def release(name: str, owner: str) -> None:
    """End `owner`'s lease now, so the next holder need not wait it out."""
    rows = store.settings.c
    with store.transaction() as conn:
        conn.execute(store.settings.update()
                     .where(rows.name == name, rows.value == json.dumps(owner))
                     .values(updated_at=0.0))
