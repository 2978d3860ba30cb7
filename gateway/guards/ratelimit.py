"""Rate limits: per partner from its policy, per client address for the relay and for failures.

Partner limits are a GCRA (generic cell rate algorithm): one stored number per partner
(the theoretical arrival time), so memory is constant per partner, and one atomic Redis
script per request that both counts the hit and returns what the RateLimit headers need
(one round trip: the hit and the headers' figures together). A partner may
burst its whole limit at once, then one request per `period / limit`. Redis's clock (TIME)
is the only clock, so counts are exact across workers and instances; `memory://` keeps the
same algorithm in the process (one worker). Partner limits are keyed by the partner's
database id, never by the presented key, so rotating a key does not reset a budget.

Failed requests of nobody known (no key, an invalid key, no such route) count against a
per-address limit (`ANONYMOUS_RATE_LIMIT`); over it they are answered 429 `rate_limited`.
Partners never touch those counters.

The return relay, hit by signers' browsers, has a per-address GCRA of its own
(`RELAY_RATE_LIMIT`). The console's login limits (a moving window per address and per
username, `web/admin/login.py`) and the account-wide budget for DocuSign calls
(`gateway/upstream/budget.py`) are `limits` strategies over the same storage.

No per-request hook of a rate-limit extension runs: a request is counted by the one
guard that applies to it, and nothing else touches the storage. (flask-limiter, which
this module used before, checked its route table and read its storage around every
request, partner calls included: a sixth of a status read's CPU for nothing.)
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import typing as t
from dataclasses import dataclass

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request
from limits import parse
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.storage import Storage
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from gateway import context
from gateway import errors
from gateway.services import audit
from gateway.upstream.budget import AccountBudget

log = logging.getLogger(__name__)

# KEYS[1] the partner's TAT (ms, Redis clock); ARGV period (ms), limit.
# Returns {allowed, remaining, ms until the budget is whole again, ms until a retry may pass}.
_GCRA_LUA = """
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local emission = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
if now < new_tat - period then
  return {0, 0, math.ceil(tat - now), math.ceil(new_tat - period - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, math.floor((period - (new_tat - now)) / emission + 1e-6), math.ceil(new_tat - now), 0}
"""


@dataclass(frozen=True)
class Verdict:
    """One hit's outcome: everything the answer's headers need."""

    allowed: bool
    limit: int
    remaining: int
    #: seconds until the whole budget is back
    reset_in: float
    #: seconds until a refused request may pass (0 when allowed)
    retry_in: float


class Gcra:
    """The GCRA over the rate-limit storage: a Redis script, or a dict in the process."""

    def __init__(self, storage: t.Any) -> None:
        self._script = None
        if isinstance(storage, RedisStorage):
            self._script = storage.get_connection().register_script(_GCRA_LUA.encode("ascii"))
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, rate: str) -> Verdict:
        item = parse(rate)
        period_ms, limit = item.get_expiry() * 1000, item.amount
        if self._script is not None:
            try:
                allowed, remaining, reset_ms, retry_ms = self._script(
                    keys=[f"pgw:gcra:{key}"], args=[period_ms, limit])
            except Exception as exc:  # noqa: BLE001 - any client failure: fail closed (503)
                raise StorageError(exc) from exc
        else:
            allowed, remaining, reset_ms, retry_ms = self._local(key, period_ms, limit)
        return Verdict(bool(allowed), limit, int(remaining), reset_ms / 1000, retry_ms / 1000)

    def _local(self, key: str, period: float, limit: int) -> tuple[int, int, float, float]:
        now = time.time() * 1000
        emission = period / limit
        with self._lock:
            tat = max(self._tats.get(key, now), now)
            new_tat = tat + emission
            if now < new_tat - period:
                return 0, 0, tat - now, new_tat - period - now
            self._tats[key] = new_tat
        return 1, math.floor((period - (new_tat - now)) / emission + 1e-6), new_tat - now, 0


def _gcra() -> Gcra:
    return t.cast(Gcra, current_app.extensions["partner_gcra"])


F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def partner_limit(view: F) -> F:
    """Count the call against the partner's policy limit; 429 `rate_limited` over it."""

    @functools.wraps(view)
    def limited(*args: t.Any, **kwargs: t.Any) -> t.Any:
        verdict = _gcra().hit(f"partner:{context.caller().partner_id}", context.policy().rate_limit)
        g.rate_limit = verdict
        if not verdict.allowed:
            raise errors.RateLimited(retry_after=max(1, math.ceil(verdict.retry_in)))
        return view(*args, **kwargs)

    return t.cast(F, limited)


def relay_limit(view: F) -> F:
    """Count the call against the client address's relay limit; 429 `rate_limited` over it."""

    @functools.wraps(view)
    def limited(*args: t.Any, **kwargs: t.Any) -> t.Any:
        verdict = _gcra().hit(f"relay:{request.remote_addr or '-'}",
                              current_app.config["RELAY_RATE_LIMIT"])
        g.rate_limit = verdict
        if not verdict.allowed:
            raise errors.RateLimited(retry_after=max(1, math.ceil(verdict.retry_in)))
        return view(*args, **kwargs)

    return t.cast(F, limited)


def rate_limit_headers(response: Response) -> Response:
    """The RateLimit headers of the partner's hit, from the hit's own result."""
    verdict: Verdict | None = g.get("rate_limit")
    if verdict is not None:
        response.headers["X-RateLimit-Limit"] = str(verdict.limit)
        response.headers["X-RateLimit-Remaining"] = str(verdict.remaining)
        response.headers["X-RateLimit-Reset"] = str(math.ceil(time.time() + verdict.reset_in))
    return response


def anonymous_gate(response: Response) -> Response:
    """Count a failure of nobody known against its address; 429 once the address is over."""
    if not audit.is_anonymous_failure(context.current()):
        return response
    try:
        verdict = _gcra().hit(f"anon:{request.remote_addr or '-'}",
                              current_app.config["ANONYMOUS_RATE_LIMIT"])
    except StorageError:
        # the answer is a refusal already: the counter being down must not make it a 503
        log.error("rate-limit storage unreachable (anonymous limit not applied)")
        return response
    if verdict.allowed:
        return response
    return errors.render(errors.RateLimited(retry_after=max(1, math.ceil(verdict.retry_in))))


def _storage_down(exc: StorageError) -> Response:
    log.error("rate-limit storage unreachable: %s", type(exc.storage_error).__name__)
    return errors.render(errors.RateLimitUnavailable(retry_after=5))


def login_limiter() -> MovingWindowRateLimiter:
    """The console's sign-in limits: a moving window, checked and counted in one step."""
    return t.cast(MovingWindowRateLimiter, current_app.extensions["login_limiter"])


def init_app(app: Flask) -> None:
    """The storage, the partner GCRA, the login limiter and the account budget (`app.extensions`)."""
    # RATELIMIT_STORAGE_OPTIONS wraps storage failures in StorageError, answered 503: fail closed
    app.register_error_handler(StorageError, _storage_down)
    uri = app.config["RATELIMIT_STORAGE_URI"] = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    storage = t.cast(Storage, storage_from_string(uri, **app.config["RATELIMIT_STORAGE_OPTIONS"]))
    app.extensions["partner_gcra"] = Gcra(storage)
    app.extensions["login_limiter"] = MovingWindowRateLimiter(storage)
    budget = AccountBudget(
        storage,
        hourly_limit=int(app.config["ACCOUNT_HOURLY_LIMIT"]),
        reserve=float(app.config["ACCOUNT_RESERVE"]),
    )
    # the app factory hands `budget.admit` to the DocuSign client (`upstream.init_app`)
    app.extensions["account_budget"] = budget
