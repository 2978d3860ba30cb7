"""Signing in and out of the console; every attempt counted before the password is checked."""

from __future__ import annotations

import logging
import secrets
import time
import typing as t

from flask import current_app
from flask import redirect
from flask import request
from flask import session
from flask import url_for
from limits import parse_many
from werkzeug.exceptions import TooManyRequests

from gateway import context
from gateway import store
from gateway.guards.ratelimit import login_limiter
from gateway.services import audit
from gateway.services.admin_accounts import end_session
from gateway.services.admin_accounts import open_session
from gateway.services.admin_accounts import verify_login

if t.TYPE_CHECKING:
    from werkzeug.wrappers import Response as BaseResponse


from gateway.web.admin import bp
from gateway.web.admin.access import _loopback
from gateway.web.admin.access import _page

log = logging.getLogger(__name__)

# --- login -----------------------------------------------------------------------------


def _login_budgets(username: str) -> list[tuple[str, str]]:
    """(limits, key) pairs a sign-in attempt spends: the client address, then the username."""
    return [(str(current_app.config["ADMIN_LOGIN_RATE_LIMIT_IP"]),
             "admin-ip:" + (request.remote_addr or "")),
            (str(current_app.config["ADMIN_LOGIN_RATE_LIMIT_USER"]),
             "admin-user:" + username.lower()[:64])]


def _spend_login_attempt(username: str) -> None:
    """Count the attempt, or raise 429 when a budget is spent, before any password is checked.

    `hit` takes one slot atomically in the limiter's storage (a lock in memory, one
    script in Redis), so many workers racing on one username get exactly the limit's
    number of checks: testing the count first and adding to it after would let every
    racer in.
    """
    strategy = login_limiter()
    for rates, key in _login_budgets(username):
        for item in parse_many(rates):
            if not strategy.hit(item, "pgw", key):
                raise TooManyRequests()


def _refund_username(username: str) -> None:
    # a right password resets the username's count, so its owner is never locked out by
    # their own sign-ins; the address's count stays (one account must not reset it for others)
    rates, key = _login_budgets(username)[1]
    for item in parse_many(rates):
        login_limiter().clear(item, "pgw", key)


def _record(operation: str, *, status: int, partner: str | None = None, detail: str | None = None) -> None:
    audit.record(operation=operation, partner=partner, status=status, method=request.method,
                 path=request.path, request_id=context.current().request_id, detail=detail)
    log.info("admin console: %s%s (%s)", operation, f" {partner}" if partner else "", detail or "",
             extra={"admin_action": operation})


@bp.route("/login", methods=["GET", "POST"])
def login() -> t.Any:
    if request.method == "GET":
        return _page("login.html", insecure=not (request.is_secure or _loopback(request.host)))
    username = request.form.get("username", "").strip()
    _spend_login_attempt(username)
    verdict = verify_login(username, request.form.get("password", ""))
    if not verdict:
        # people type passwords into the username box: a name that is no account is not kept
        typed = f"username {username[:64]!r}" if verdict is False else "unknown username"
        _record("admin_login_failed", status=401, detail=typed)
        return _page("login.html", 401, error="Wrong username or password.", username=username[:64])
    _refund_username(username)
    now = time.time()
    with store.transaction() as conn:
        session_id = open_session(conn, username, now=now,
                                  idle=float(current_app.config["ADMIN_IDLE_TIMEOUT"]),
                                  lifetime=float(current_app.config["ADMIN_SESSION_LIFETIME"]))
    # a new session on sign-in: nothing planted before it (fixation) survives
    session.clear()
    session.update(sid=session_id, at=now, csrf=secrets.token_urlsafe(32))
    _record("admin_login", status=303, detail=f"admin {username}")
    return redirect(url_for("admin.partners"), code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    session_id = session.get("sid")
    if isinstance(session_id, str):
        with store.transaction() as conn:
            end_session(conn, session_id)
    session.clear()
    return redirect(url_for("admin.login"), code=303)
