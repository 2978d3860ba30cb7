"""The fleet's share of the DocuSign account's hourly API calls, counted before each call.

The account budget holds the sum of all partners' upstream traffic below DocuSign's
hourly limit per account (docs/docusign-facts.md §8): `ACCOUNT_HOURLY_LIMIT` (default
3000, 0 turns the budget off) minus the `ACCOUNT_RESERVE` share (default 0.1) kept for
the owner's other integrations and for clock skew. Every REST attempt is counted,
retries included, before it is sent (the client's `before_call` hook): that is what
DocuSign counts. DocuSign resets its count at the top of each clock hour, so the counter
is keyed by the clock hour too; a refusal is 429 `account_budget_exhausted` with
Retry-After until then. The counter lives in the rate limiter's storage, so that
several workers and instances share it.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerHour
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

from gateway import errors


class AccountBudget:
    """The fleet's share of the DocuSign account's hourly API calls, in the limiter storage."""

    def __init__(self, storage: Storage, *, hourly_limit: int, reserve: float) -> None:
        if hourly_limit < 0 or not 0 <= reserve < 1:
            raise ValueError("ACCOUNT_HOURLY_LIMIT must be >= 0 and ACCOUNT_RESERVE in [0, 1)")
        self.allowed = math.floor(hourly_limit * (1 - reserve))
        self.enabled = hourly_limit > 0
        self._item = RateLimitItemPerHour(max(1, self.allowed))
        self._counter = FixedWindowRateLimiter(storage)

    def admit(self, endpoint: str) -> None:
        """Count one upstream API call, or refuse it when this clock hour's share is spent."""
        if not self.enabled:
            return
        now = time.time()
        hour = int(now // 3600)
        if self.allowed < 1 or not self._counter.hit(self._item, "pgw", "account", str(hour)):
            raise errors.AccountBudgetExhausted(retry_after=math.ceil((hour + 1) * 3600 - now))
