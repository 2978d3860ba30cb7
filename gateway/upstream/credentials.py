"""The process's access token and account: refreshed by one thread, shared with the fleet."""

from __future__ import annotations

import contextlib
import threading
import time
import typing as t

from gateway import errors
from gateway.upstream.auth import Account
from gateway.upstream.auth import Token
from gateway.upstream.auth import fetch_account
from gateway.upstream.auth import fetch_token
from gateway.upstream.fleet_token import SharedToken
from gateway.upstream.settings import DocuSignSettings
from gateway.upstream.transport import Transport

# how often a process waiting for another's token fetch looks at the store again
SHARED_POLL_FIRST = 0.02
SHARED_POLL_MAX = 0.2


@contextlib.contextmanager
def _hold(lock: threading.Lock, deadline: float, clock: t.Callable[[], float]) -> t.Iterator[None]:
    """Hold `lock`, waiting no later than `deadline`; UpstreamTimeout when it is not free."""
    if not lock.acquire(timeout=max(0.0, deadline - clock())):
        raise errors.UpstreamTimeout()
    try:
        yield
    finally:
        lock.release()


class Credentials:
    """One token and one account for every thread of the process.

    A thread without a usable token takes the lock; the others wait there and then reuse
    what it got. The getter looks for the fleet's shared token first (`SharedToken`).
    """

    def __init__(self, transport: Transport, *,
                 app_context: t.Callable[[], t.ContextManager[t.Any]]) -> None:
        self.transport = transport
        self.app_context = app_context
        self.refresh_margin = 300.0
        self.token: Token | None = None
        self.account: Account | None = None
        self._lock = threading.Lock()

    def get(self, settings: DocuSignSettings, deadline: float, *,
            fresh: bool = False) -> tuple[Token, Account]:
        """A usable token and the account for `settings`, fetched only when needed."""
        token, account = self.token, self.account
        if self._usable(token, account, settings):
            return token, account  # type: ignore[return-value]
        # one refresh per process at a time: the other threads wait here and then reuse it
        with self._acquire(deadline):
            if not self._usable(self.token, self.account, settings):
                self.token, self.account = self._from_fleet(settings, deadline, fresh=fresh)
            return self.token, self.account  # type: ignore[return-value]

    def clear(self) -> None:
        """Forget token and account (the settings changed: neither is valid any more)."""
        self.token = None
        self.account = None

    def reset(self, deadline: float) -> None:
        """Forget token and account once no other thread is refreshing them."""
        with self._acquire(deadline):
            self.clear()

    def drop(self, token: Token, deadline: float) -> None:
        """DocuSign refused `token`: forget it here and in the fleet."""
        with self._acquire(deadline):
            # another thread may already have replaced it: keep the newer one
            if self.token is token:
                self.token = None
                # DocuSign refused it, so it is dead for the whole fleet
                self._shared(token.settings).forget(token.authorization)

    def _usable(self, token: Token | None, account: Account | None,
                settings: DocuSignSettings) -> bool:
        return (token is not None and token.settings == settings
                and self.transport.clock() < token.refresh_at
                and account is not None and account.settings == settings)

    def _from_fleet(self, settings: DocuSignSettings, deadline: float, *,
                    fresh: bool) -> tuple[Token, Account]:
        """The fleet's shared token, or a new one fetched by whoever holds the lease.

        `fresh` (`check(fresh=True)`) skips the shared token but still takes
        the lease, so a check never races a worker's refresh.
        """
        shared = self._shared(settings)
        pause = SHARED_POLL_FIRST
        while True:
            found = None if fresh else shared.read()
            if found is not None:
                return found
            if shared.claim(lease=max(1.0, deadline - self.transport.clock())):
                try:
                    found = None if fresh else shared.read()
                    if found is not None:  # written while we were claiming
                        return found
                    return self._fetch_and_share(shared, deadline)
                finally:
                    shared.release()
            if self.transport.clock() + pause > deadline:
                raise errors.UpstreamTimeout()
            time.sleep(pause)
            pause = min(SHARED_POLL_MAX, pause * 2)

    def _fetch_and_share(self, shared: SharedToken, deadline: float) -> tuple[Token, Account]:
        self.token = self._new_token(shared.settings, deadline)
        self.token, account = fetch_account(
            self.transport, self.token, deadline,
            renew=lambda: self._new_token(shared.settings, deadline))
        shared.write(self.token, account)
        return self.token, account

    def _new_token(self, settings: DocuSignSettings, deadline: float) -> Token:
        self.token = fetch_token(self.transport, settings, deadline,
                                 refresh_margin=self.refresh_margin)
        return self.token

    def _shared(self, settings: DocuSignSettings) -> SharedToken:
        return SharedToken(settings, clock=self.transport.clock, app_context=self.app_context)

    def _acquire(self, deadline: float) -> t.ContextManager[None]:
        return _hold(self._lock, deadline, self.transport.clock)
