"""Rate limits: per partner from its policy, per client address for the return relay.

Counters live in flask-limiter's storage (`RATELIMIT_STORAGE_URI`): memory for one
process, Redis for several workers and instances. Partner limits are keyed by the
partner's database id, never by the presented key, so rotating a key does not reset
a partner's budget.
"""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import g
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(
    key_func=get_remote_address,
    key_prefix="pgw",
    headers_enabled=True,
    strategy="moving-window",
)


def _partner_key() -> str:
    return f"partner:{g.caller.partner_id}"


def _partner_rate() -> str:
    return g.policy.rate_limit


#: one budget per partner, shared by every partner endpoint
partner_limit = limiter.shared_limit(_partner_rate, scope="partner", key_func=_partner_key)

#: the return relay is hit by signers' browsers: limited per client address
relay_limit = limiter.limit("60/minute", key_func=get_remote_address)


def _retry_after_only_when_limited(response: Response) -> Response:
    """flask-limiter sends Retry-After on every response; it only means something on a refusal."""
    if response.status_code < 400:
        response.headers.pop("Retry-After", None)
    return response


def init_app(app: Flask) -> None:
    # after_request hooks run in reverse order: registered first, this one sees the limiter's headers
    app.after_request(_retry_after_only_when_limited)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config["RATELIMIT_STORAGE_URI"] = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    limiter.init_app(app)
