"""Rate limits: per partner from its policy, per client address for the return relay.

Counters live in flask-limiter's storage (`RATELIMIT_STORAGE_URI`): memory for one
process, Redis for several workers and instances (Redis's atomic scripts make the
counts exact across nodes). Partner limits are keyed by the partner's database id,
never by the presented key, so rotating a key does not reset a partner's budget. The
account-wide budget for DocuSign calls shares this storage and lives in
`gateway/upstream/budget.py`.
"""

from __future__ import annotations

import logging
import typing as t

from flask import Flask
from flask import Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.errors import StorageError

from gateway import context
from gateway import errors
from gateway.upstream.budget import AccountBudget

log = logging.getLogger(__name__)

limiter = Limiter(
    key_func=get_remote_address,
    key_prefix="pgw",
    headers_enabled=True,
    strategy="moving-window",
)


def _partner_key() -> str:
    return f"partner:{context.caller().partner_id}"


def _partner_rate() -> str:
    return context.policy().rate_limit


#: one budget per partner, shared by every partner endpoint
partner_limit = limiter.shared_limit(_partner_rate, scope="partner", key_func=_partner_key)

#: the return relay is hit by signers' browsers: limited per client address
relay_limit = limiter.limit("60/minute", key_func=get_remote_address)


def _storage_down(exc: StorageError) -> Response:
    log.error("rate-limit storage unreachable: %s", type(exc.storage_error).__name__)
    return errors.render(errors.RateLimitUnavailable(retry_after=5))


def _headers_or_nothing(hook: t.Callable[[Response], Response]) -> t.Callable[[Response], Response]:
    """flask-limiter's RateLimit-header hook, minus its 500 when the storage is down.

    The hook reads the storage again after the view, where no error handler reaches. By
    then the answer is decided (a create may have committed upstream): it goes out as it
    is, without the headers, and the outage is one log line.
    """
    def inject(response: Response) -> Response:
        try:
            return hook(response)
        except StorageError as exc:
            log.error("rate-limit storage unreachable: %s (RateLimit headers left out)",
                      type(exc.storage_error).__name__)
            return response
    return inject


def _guard_header_hook(app: Flask) -> None:
    hooks = app.after_request_funcs.setdefault(None, [])
    inject = getattr(Limiter, "_Limiter__inject_headers", None)
    for i, hook in enumerate(hooks):
        if inject is not None and getattr(hook, "func", None) is inject:
            hooks[i] = _headers_or_nothing(t.cast(t.Callable[[Response], Response], hook))
            return
    raise RuntimeError("flask-limiter's header hook was not found; its storage errors would be 500s")


def init_app(app: Flask) -> None:
    """The limiter, and the account budget (`app.extensions["account_budget"]`)."""
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # storage failures surface as limits' StorageError, answered 503 below: fail closed
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"wrap_exceptions": True})
    app.register_error_handler(StorageError, _storage_down)
    app.config["RATELIMIT_STORAGE_URI"] = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    limiter.init_app(app)
    _guard_header_hook(app)
    budget = AccountBudget(
        limiter.storage,
        hourly_limit=int(app.config["ACCOUNT_HOURLY_LIMIT"]),
        reserve=float(app.config["ACCOUNT_RESERVE"]),
    )
    # the app factory hands `budget.admit` to the DocuSign client (`upstream.init_app`)
    app.extensions["account_budget"] = budget
