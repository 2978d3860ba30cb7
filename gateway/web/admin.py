"""The account owner's console at `/admin`: partners, revocation, key rotation and the audit trail.

It has its own accounts (`gateway admin create`; `gateway.services.admin_accounts`),
stored as scrypt hashes in the `admins` table, and its own signed session cookie:
HttpOnly, SameSite=Strict, Secure unless the console is reached over plain http on a
loopback address, and scoped to `/admin`. A partner's Bearer key means nothing here.
The cookie only names a server-side session (`admin_sessions`), checked on every
request: sign-out, a password change and a deleted account end it at once, and it ends
after `ADMIN_IDLE_TIMEOUT` idle seconds. Every form carries a per-session CSRF token
(checked with `hmac.compare_digest`), and every sign-in attempt is counted per client
address and per username, atomically and before the password is checked. Pages are
server-rendered, with no external assets.

About 400 lines: the views and the guards every one of them passes (the cookie, the
CSRF check, the login throttle) are one blueprint's hooks and read best together.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import re
import secrets
import time
import typing as t
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import flash
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.sessions import SecureCookieSessionInterface
from flask_limiter.util import get_remote_address
from limits import parse_many
from werkzeug.exceptions import TooManyRequests

from gateway import context
from gateway import store
from gateway.guards.ratelimit import limiter
from gateway.policy import get_policies
from gateway.services import audit
from gateway.services import partner_keys as keys
from gateway.services import traffic

# the names aliased to themselves are re-exported: `gateway.cli` still imports them from here
from gateway.services.admin_accounts import AdminProblem as AdminProblem
from gateway.services.admin_accounts import check_password as check_password
from gateway.services.admin_accounts import check_username as check_username
from gateway.services.admin_accounts import create_admin as create_admin
from gateway.services.admin_accounts import delete_admin as delete_admin
from gateway.services.admin_accounts import end_session
from gateway.services.admin_accounts import ensure_secret_key
from gateway.services.admin_accounts import list_admins as list_admins
from gateway.services.admin_accounts import load_or_create_secret_key as load_or_create_secret_key
from gateway.services.admin_accounts import open_session
from gateway.services.admin_accounts import refuse_placeholder
from gateway.services.admin_accounts import session_user
from gateway.services.admin_accounts import set_password as set_password
from gateway.services.admin_accounts import verify_login

if t.TYPE_CHECKING:
    from flask.sessions import SecureCookieSession
    from flask.sessions import SessionMixin
    from flask.wrappers import Request
    from werkzeug.wrappers import Response as BaseResponse

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin", static_folder="static",
               static_url_path="/static", template_folder="templates")

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

GRACE_CHOICES = {"0": 0, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
SINCE_CHOICES = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
AUDIT_PAGE = 200
_STATUS_FILTER_RE = re.compile(r"^[1-5](?:xx|[0-9]{2})$")
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
    context.current().retry_after = retry  # kept by the request pipeline over the limiter's
    return (render_template("admin/login.html", error="Too many sign-in attempts; wait a minute "
                            "and try again.", username=""), 429, {"Retry-After": retry})


# --- login -----------------------------------------------------------------------------


def _login_budgets(username: str) -> list[tuple[str, str]]:
    """(limits, key) pairs a sign-in attempt spends: the client address, then the username."""
    return [(str(current_app.config["ADMIN_LOGIN_RATE_LIMIT_IP"]),
             "admin-ip:" + (get_remote_address() or "")),
            (str(current_app.config["ADMIN_LOGIN_RATE_LIMIT_USER"]),
             "admin-user:" + username.lower()[:64])]


def _spend_login_attempt(username: str) -> None:
    """Count the attempt, or raise 429 when a budget is spent, before any password is checked.

    `hit` takes one slot atomically in the limiter's storage (a lock in memory, one
    script in Redis), so many workers racing on one username get exactly the limit's
    number of checks: testing the count first and adding to it after would let every
    racer in.
    """
    strategy = limiter.limiter
    for rates, key in _login_budgets(username):
        for item in parse_many(rates):
            if not strategy.hit(item, "pgw", key):
                raise TooManyRequests()


def _refund_username(username: str) -> None:
    # a right password resets the username's count, so its owner is never locked out by
    # their own sign-ins; the address's count stays (one account must not reset it for others)
    rates, key = _login_budgets(username)[1]
    for item in parse_many(rates):
        limiter.limiter.clear(item, "pgw", key)


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


# --- partners ------------------------------------------------------------------------------


def partner_overview(conn: sa.Connection, *, now: float | None = None) -> list[dict[str, t.Any]]:
    """Every partner with its state, policy, live keys, last use and request counts (audit table)."""
    now = time.time() if now is None else now
    ev = store.audit_events.c
    partner_calls = ev.operation.notlike("admin%")
    stats = conn.execute(
        sa.select(
            ev.partner,
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((ev.at >= now - 86400, 1), else_=0)).label("requests_24h"),
            sa.func.sum(sa.case((ev.status >= 400, 1), else_=0)).label("errors"),
            sa.func.max(ev.at).label("last_used"),
        ).where(ev.partner.is_not(None), partner_calls).group_by(ev.partner)
    )
    by_partner = {row.partner: row for row in stats}
    policies = get_policies()
    out = []
    for row in keys.list_partners(conn):
        s = by_partner.get(row["name"])
        out.append(row | {
            "state": "revoked" if row["revoked_at"] else "active",
            "policy_ok": policies.get(row["name"]) is not None,
            "requests": int(s.requests) if s else 0,
            "requests_24h": int(s.requests_24h or 0) if s else 0,
            "errors": int(s.errors or 0) if s else 0,
            "last_used": s.last_used if s else None,
        })
    return out


def _partner_or_404(conn: sa.Connection, name: str) -> dict[str, t.Any] | None:
    found = keys.list_partners(conn, name=name)
    return found[0] if found else None


@bp.get("/")
@require_admin
def partners() -> t.Any:
    with store.transaction() as conn:
        rows = partner_overview(conn)
        hourly = traffic.hourly(conn)
    return _page("partners.html", partners=rows, traffic=hourly)


@bp.get("/partners/<name>")
@require_admin
def partner_detail(name: str) -> t.Any:
    """One partner: its state, keys, counts and its requests and errors per hour this week."""
    with store.transaction() as conn:
        row = next((p for p in partner_overview(conn) if p["name"] == name), None)
        hourly = traffic.hourly(conn, partner=name) if row else None
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    return _page("partner.html", p=row, traffic=hourly)


@bp.route("/partners/<name>/revoke", methods=["GET", "POST"])
@require_admin
def revoke(name: str) -> t.Any:
    """GET asks for confirmation; POST revokes the partner and all its keys at once."""
    with store.transaction() as conn:
        row = _partner_or_404(conn, name)
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    if request.method == "GET":
        return _page("revoke.html", name=name, revoked=row["revoked_at"] is not None)
    try:
        with store.transaction() as conn:
            count = keys.revoke_partner(conn, name)
    except keys.KeyProblem as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.partners"), code=303)
    _record("admin_revoke", status=200, partner=name, detail=f"by {g.admin}; {count} key(s)")
    flash(f"Partner {name!r} revoked ({count} key(s)); its next request gets 401.", "ok")
    return redirect(url_for("admin.partners"), code=303)


@bp.route("/partners/<name>/rotate", methods=["GET", "POST"])
@require_admin
def rotate(name: str) -> t.Any:
    """GET offers a grace period; POST issues a new key and shows it once (never stored)."""
    with store.transaction() as conn:
        row = _partner_or_404(conn, name)
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    if request.method == "GET":
        session["rotate_once"] = secrets.token_urlsafe(16)
        return _page("rotate.html", name=name, choices=GRACE_CHOICES, once=session["rotate_once"])
    # a reloaded or replayed form must not rotate twice (and hide the first new key)
    once = session.pop("rotate_once", "")
    if not once or not hmac.compare_digest(once, request.form.get("once", "")):
        flash("That rotation form was already used; no new key was issued.", "error")
        return redirect(url_for("admin.partners"), code=303)
    grace = request.form.get("grace", "")
    if grace not in GRACE_CHOICES:
        flash("Pick a grace period; no new key was issued.", "error")
        return redirect(url_for("admin.partners"), code=303)
    try:
        with store.transaction() as conn:
            key = keys.rotate_key(conn, name, grace=GRACE_CHOICES[grace])
    except keys.KeyProblem as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.partners"), code=303)
    _record("admin_rotate_key", status=200, partner=name, detail=f"by {g.admin}; grace {grace}")
    return _page("key.html", name=name, key=key, grace=grace)


# --- partner webhooks ----------------------------------------------------------------------


@bp.get("/partners/<name>/webhooks")
@require_admin
def webhooks(name: str) -> t.Any:
    """The partner's webhook deliveries, newest first, each with a Replay button."""
    from gateway.services import webhook_outbox

    with store.transaction() as conn:
        row = _partner_or_404(conn, name)
        events = webhook_outbox.list_events(conn, partner=name, limit=200) if row else []
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    policy = get_policies().get(name)
    return _page("webhooks.html", name=name, events=events,
                 webhook_url=policy.webhook_url if policy else None)


@bp.post("/partners/<name>/webhooks/<event_id>/replay")
@require_admin
def webhook_replay(name: str, event_id: str) -> t.Any:
    """Queue one of the partner's events again (CSRF-checked like every console POST)."""
    from gateway.services import webhook_outbox

    ev = store.webhook_events
    with store.transaction() as conn:
        owned = conn.execute(
            sa.select(ev.c.id).select_from(ev.join(store.partners))
            .where(ev.c.event_id == event_id, store.partners.c.name == name)).first()
        done = owned is not None and webhook_outbox.replay(conn, event_id, now=time.time())
    if not done:
        flash(f"No webhook event {event_id!r} for {name!r}.", "error")
    else:
        _record("admin_webhook_replay", status=200, partner=name, detail=f"by {g.admin}; {event_id}")
        flash(f"Event {event_id} queued again.", "ok")
    return redirect(url_for("admin.webhooks", name=name), code=303)


# --- audit ---------------------------------------------------------------------------------


@bp.get("/audit")
@require_admin
def audit_trail() -> t.Any:
    partner = request.args.get("partner", "").strip()[:63] or None
    since_choice = request.args.get("since", "")
    status = request.args.get("status", "").strip().lower()
    problems = []
    if since_choice and since_choice not in SINCE_CHOICES:
        problems.append("Unknown period; showing all.")
        since_choice = ""
    if status and not _STATUS_FILTER_RE.match(status):
        problems.append("Status must look like 401 or 4xx; ignored.")
        status = ""
    since = time.time() - SINCE_CHOICES[since_choice] if since_choice else None
    with store.transaction() as conn:
        # newest first: the console shows what just happened at the top
        rows = audit.query(conn, partner=partner, since=since, status=status or None,
                           limit=AUDIT_PAGE)[::-1]
        names = [p["name"] for p in keys.list_partners(conn)]
    return _page("audit.html", rows=rows, names=names, partner=partner or "", since=since_choice,
                 status=status, since_choices=SINCE_CHOICES, problems=problems, limit=AUDIT_PAGE)


@bp.app_template_filter("when")
def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


@bp.app_template_filter("short_when")
def _short_when(ts: float | None) -> str:
    """`12-01 15:06:13`: fits a table cell on one line; the full time goes in its title."""
    return "never" if ts is None else time.strftime("%m-%d %H:%M:%S", time.gmtime(ts))


def init_app(app: Flask) -> None:
    """Refuse a placeholder SECRET_KEY, install the console's session cookie, mount `/admin`."""
    refuse_placeholder(app)
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="gateway_console",
        SESSION_COOKIE_PATH=bp.url_prefix,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE=app.config["ADMIN_COOKIE_SAMESITE"],
    )
    app.add_template_global(csrf_token, "csrf_token")
    app.register_blueprint(bp)
