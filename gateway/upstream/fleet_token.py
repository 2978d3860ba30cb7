"""The fleet's one access token, shared through the store, and the lease that elects its fetcher.

A process without a usable token first reads the shared one (the `docusign_token`
setting, vault-encrypted), and only the holder of a short lease row fetches a new one
while the others wait and read it. Several workers and instances thus make one token
request per token lifetime, not one each.
"""

from __future__ import annotations

import hashlib
import json
import time
import typing as t
import uuid
from dataclasses import asdict

import sqlalchemy as sa

from gateway import store
from gateway.store import leases
from gateway.upstream.auth import Account
from gateway.upstream.auth import Token
from gateway.upstream.settings import DocuSignSettings

# the fleet-shared token (vault-encrypted) and the lease row that elects its one fetcher
SHARED_TOKEN_SETTING = "docusign_token"
TOKEN_LEASE_SETTING = "docusign_token_lease"

Clock = t.Callable[[], float]


def wall_time(clock: Clock) -> float:
    """Epoch seconds as `clock` sees them: follows it when a test moves it."""
    return time.time() + (clock() - time.monotonic())


class SharedToken:
    """The fleet's token in the store: one vault-encrypted setting plus a lease row.

    The lease is a `settings` row whose `updated_at` is the time the lease ends; a
    conditional UPDATE claims it, so it works the same on SQLite and PostgreSQL and
    a holder that dies frees it when its lease (its own upstream deadline) runs out.
    Times are stored as epoch seconds and turned into `clock`'s on reading.
    """

    def __init__(self, settings: DocuSignSettings, *, clock: Clock,
                 app_context: t.Callable[[], t.ContextManager[t.Any]]) -> None:
        self.settings = settings
        self.clock = clock
        self.app_context = app_context
        self.owner = uuid.uuid4().hex
        # a digest of everything the token was issued for: new settings, new token
        self.fingerprint = hashlib.sha256(
            json.dumps(asdict(settings), sort_keys=True).encode("utf-8")).hexdigest()

    def read(self) -> tuple[Token, Account] | None:
        """The shared token and account, when they are for these settings and still fresh."""
        with self.app_context(), store.transaction() as conn:
            value = store.get_setting(conn, SHARED_TOKEN_SETTING)
        if not isinstance(value, dict) or value.get("fingerprint") != self.fingerprint:
            return None
        offset = self.clock() - wall_time(self.clock)
        try:
            if wall_time(self.clock) >= float(value["refresh_at"]):
                return None
            token = Token(value["authorization"], float(value["expires_at"]) + offset,
                          float(value["refresh_at"]) + offset, self.settings)
            account = Account(settings=self.settings, **value["account"])
        except (KeyError, TypeError, ValueError):
            return None
        return token, account

    def write(self, token: Token, account: Account) -> None:
        """Share a token and its account with the fleet."""
        offset = wall_time(self.clock) - self.clock()
        value = {
            "fingerprint": self.fingerprint,
            "authorization": token.authorization,
            "expires_at": token.expires_at + offset,
            "refresh_at": token.refresh_at + offset,
            "account": {"base_path": account.base_path, "base_uri": account.base_uri,
                        "account_name": account.account_name, "user_name": account.user_name},
        }
        try:
            with self.app_context(), store.transaction() as conn:
                store.put_setting(conn, SHARED_TOKEN_SETTING, value, secret=True, now=time.time())
        except sa.exc.IntegrityError:
            # a holder whose lease ran out wrote its (equally good) token first: keep that one
            pass

    def forget(self, authorization: str) -> None:
        """Delete the shared token if it is this one (not a newer one another process wrote)."""
        rows = store.settings.c
        with self.app_context(), store.transaction() as conn:
            stamp = conn.execute(sa.select(rows.updated_at)
                                 .where(rows.name == SHARED_TOKEN_SETTING)).scalar()
            value = store.get_setting(conn, SHARED_TOKEN_SETTING)
            if isinstance(value, dict) and value.get("authorization") == authorization:
                conn.execute(store.settings.delete().where(
                    rows.name == SHARED_TOKEN_SETTING, rows.updated_at == stamp))

    def claim(self, *, lease: float) -> bool:
        """Become the one process that fetches a token, for at most `lease` seconds."""
        with self.app_context():
            return leases.claim(TOKEN_LEASE_SETTING, self.owner, lease=lease)

    def release(self) -> None:
        """End this process's lease now, so a waiting process need not wait it out."""
        with self.app_context():
            leases.release(TOKEN_LEASE_SETTING, self.owner)
