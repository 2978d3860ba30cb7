"""Who may use the console: the session cookie, the CSRF token, and the guard every page passes."""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import secrets
import time
import typing as t
from urllib.parse import urlsplit

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import TooManyRequests

from gateway import store
from gateway.services.admin_accounts import ensure_secret_key
from gateway.services.admin_accounts import session_user

if t.TYPE_CHECKING:
    from flask.sessions import SecureCookieSession
    from flask.sessions import SessionMixin
    from flask.wrappers import Request


from gateway.web.admin import bp

log = logging.getLogger(__name__)

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")



# --- the session cookie ------------------------------------------------------------


def _is_console(path: str) -> bool:
    return path == bp.url_prefix or path.startswith(f"{bp.url_prefix}/")


def _loopback(host: str) -> bool:
    """Whether a Host header names this machine: `localhost`, `127.0.0.1:8080`, `[::1]`..."""
    try:
        name = urlsplit(f"//{host}").hostname or ""
    except ValueError:
        return False
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, opened only under /admin, Secure unless on loopback over http."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not _is_console(request.path):
            # partner traffic never reads or writes the console's cookie (nor its key)
            return self.session_class()
        ensure_secret_key(app)
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if _is_console(request.path):
            super().save_session(app, session, response)

    def get_cookie_secure(self, app: Flask) -> bool:
        configured = app.config.get("ADMIN_COOKIE_SECURE")
        if configured is not None:
            return bool(configured)
        return request.is_secure or not _loopback(request.host)


# --- CSRF and access -----------------------------------------------------------------


def csrf_token() -> str:
    """This session's CSRF token (made on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return t.cast(str, session["csrf"])


def _csrf_ok() -> bool:
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    return bool(sent and expected) and hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


def current_admin() -> str | None:
    """The signed-in admin: the cookie's session must be live in the database (every request)."""
    session_id = session.get("sid")
    if not isinstance(session_id, str):
        return None
    now = time.time()
    lifetime = float(current_app.config["ADMIN_SESSION_LIFETIME"])
    # the signed cookie's own clock too: a cookie outliving its lifetime is refused unread
    if now - float(session.get("at", 0)) > lifetime:
        return None
    with store.transaction() as conn:
        return session_user(conn, session_id, now=now, lifetime=lifetime,
                            idle=float(current_app.config["ADMIN_IDLE_TIMEOUT"]))


def require_admin(view: F) -> F:
    """Only a signed-in admin passes; anyone else (partner keys included) gets the login page."""

    @functools.wraps(view)
    def guarded(*args: t.Any, **kwargs: t.Any) -> t.Any:
        admin = current_admin()
        if admin is None:
            session.pop("sid", None)
            if request.method in ("GET", "HEAD"):
                return redirect(url_for("admin.login"), code=303)
            return _page("login.html", 401, error="Please sign in.")
        g.admin = admin
        return view(*args, **kwargs)

    return t.cast(F, guarded)


def _page(template: str, code: int = 200, **context: t.Any) -> tuple[str, int]:
    return render_template(f"admin/{template}", **context), code


@bp.before_request
def _guard() -> t.Any:
    if not current_app.secret_key:
        return _page("error.html", 503, message="The console is unavailable: its session key "
                                                "cannot be read. Check the logs and the database.")
    if request.method not in ("GET", "HEAD", "OPTIONS") and not _csrf_ok():
        log.warning("admin console: form refused (missing or wrong CSRF token)")
        return _page("error.html", 403, message="This form has expired or did not come from the "
                                                "console. Reload the page and try again.")
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@bp.errorhandler(TooManyRequests)
def _too_many(exc: TooManyRequests) -> tuple[str, int, dict[str, str]]:
    retry = str(current_app.config["ADMIN_LOGIN_RETRY_AFTER"])
    return (render_template("admin/login.html", error="Too many sign-in attempts; wait a minute "
                            "and try again.", username=""), 429, {"Retry-After": retry})
