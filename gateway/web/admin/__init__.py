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

`access.py` is the cookie, the CSRF token and the guard every page passes; `login.py`
signing in and out; `pages.py` the pages.
"""

from __future__ import annotations

import pathlib
import time

from flask import Blueprint
from flask import Flask

# templates and static files live beside the other views, in gateway/web/
bp = Blueprint("admin", __name__, url_prefix="/admin", static_folder="static",
               static_url_path="/static", template_folder="templates",
               root_path=str(pathlib.Path(__file__).resolve().parent.parent))

from gateway.services.admin_accounts import refuse_placeholder  # noqa: E402
from gateway.web.admin import access  # noqa: E402 - the views register on `bp`
from gateway.web.admin import login  # noqa: E402,F401
from gateway.web.admin import pages  # noqa: E402,F401


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
    app.session_interface = access.ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="gateway_console",
        SESSION_COOKIE_PATH=bp.url_prefix,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE=app.config["ADMIN_COOKIE_SAMESITE"],
    )
    app.add_template_global(access.csrf_token, "csrf_token")
    app.register_blueprint(bp)
