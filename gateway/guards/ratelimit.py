"""Rate limits: per partner from its policy, per client address for the relay and for failures.

Partner limits are a GCRA (generic cell rate algorithm): one stored number per limit of
the policy's rate (the theoretical arrival time; "60/minute;1000/hour" is two), so memory
is constant per partner, and one atomic Redis script per request that checks every limit,
counts the hit against all of them only when all have room, and returns what the
RateLimit headers need (one round trip). A partner may burst a whole limit at once, then
one request per `period / limit`. Redis's clock (TIME)
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
request, partner calls included, though no partner limit was its own any more.)
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
from limits import parse_many
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

# One GCRA per limit of the rate ("60/minute;1000/hour" is two): KEYS[i] is limit i's TAT
# (ms, Redis clock), ARGV[2i-1], ARGV[2i] its period (ms) and amount. The hit passes only
# when every limit has room, and then counts against all of them (none is spent on a
# refused hit). Returns {allowed, the limit reported (1-based), remaining, ms until that
# limit's budget is whole again, ms until a retry may pass}: when allowed the limit with
# the least room left, when refused the one that frees up last.
_GCRA_LUA = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local new_tats, refused, report, report_retry, report_reset = {}, false, 1, -1, 0
for i = 1, #KEYS do
  local period, limit = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  new_tats[i] = tat + period / limit
  local retry = new_tats[i] - period - now
  if retry > 0 then
    refused = true
    if retry > report_retry then report, report_retry, report_reset = i, retry, tat - now end
  end
end
if refused then
  return {0, report, 0, math.ceil(report_reset), math.ceil(report_retry)}
end
local least = -1
for i = 1, #KEYS do
  local period, limit = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local left = new_tats[i] - now
  redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]), 'PX', math.ceil(left))
  local remaining = math.floor((period - left) / (period / limit) + 1e-6)
  if least < 0 or remaining < least then least, report, report_reset = remaining, i, left end
end
return {1, report, least, math.ceil(report_reset), 0}
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


#: `memory://` keeps one number per limit and key; past this many, the spent ones are dropped
_LOCAL_PRUNE_AT = 10_000


class Gcra:
    """The GCRA over the rate-limit storage: a Redis script, or a dict in the process."""

    def __init__(self, storage: t.Any) -> None:
        self._script = None
        if isinstance(storage, RedisStorage):
            self._script = storage.get_connection().register_script(_GCRA_LUA.encode("ascii"))
        self._tats: dict[str, float] = {}
        self._prune_at = _LOCAL_PRUNE_AT
        self._lock = threading.Lock()

    def hit(self, key: str, rate: str) -> Verdict:
        """Count one hit against every limit of `rate` ("60/minute;1000/hour"), or refuse it."""
        items = _limits(rate)
        # one hash tag per counted thing: a Redis Cluster keeps all its limits in one slot
        keys = [f"pgw:gcra:{{{key}}}:{limit}/{period:.0f}" for period, limit in items]
        if self._script is not None:
            try:
                allowed, index, remaining, reset_ms, retry_ms = self._script(
                    keys=keys, args=[n for item in items for n in item])
            except Exception as exc:  # noqa: BLE001 - any client failure: fail closed (503)
                raise StorageError(exc) from exc
        else:
            allowed, index, remaining, reset_ms, retry_ms = self._local(keys, items)
        return Verdict(bool(allowed), items[int(index) - 1][1], int(remaining), reset_ms / 1000,
                       retry_ms / 1000)

    def _local(self, keys: list[str], items: list[tuple[float, int]]) -> tuple[int, int, int, float, float]:
        """The script's algorithm in the process (`memory://`: one worker)."""
        now = time.time() * 1000
        spans = range(len(items))
        with self._lock:
            tats = [max(self._tats.get(keys[i], now), now) for i in spans]
            new_tats = [tats[i] + items[i][0] / items[i][1] for i in spans]
            retries = [new_tats[i] - items[i][0] - now for i in spans]
            worst = max(spans, key=lambda i: retries[i])
            if retries[worst] > 0:
                return 0, worst + 1, 0, tats[worst] - now, retries[worst]
            if len(self._tats) >= self._prune_at:  # a TAT in the past counts as no entry
                self._tats = {k: v for k, v in self._tats.items() if v > now}
                # many live entries: prune again only once as many more came, not every hit
                self._prune_at = max(_LOCAL_PRUNE_AT, 2 * len(self._tats))
            self._tats.update({keys[i]: new_tats[i] for i in spans})
        left = [math.floor((items[i][0] - (new_tats[i] - now)) / (items[i][0] / items[i][1]) + 1e-6)
                for i in spans]
        least = min(spans, key=lambda i: left[i])
        return 1, least + 1, left[least], new_tats[least] - now, 0


@functools.lru_cache(maxsize=256)
def _limits(rate: str) -> list[tuple[float, int]]:
    """(period in ms, amount) of each limit in a rate string, parsed once per string."""
    return [(item.get_expiry() * 1000, item.amount) for item in parse_many(rate)]


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
