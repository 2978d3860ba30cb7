"""The console's accounts (scrypt hashes in `admins`), their server-side sessions, and the cookie key.

Used by the console's views and by `gateway admin ...`; nothing here reads a request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask import current_app
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from gateway import store
from gateway.store.vault import PLACEHOLDERS
from gateway.store.vault import VaultError

log = logging.getLogger(__name__)

SECRET_KEY_SETTING = "admin_session_secret"
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
#: werkzeug's scrypt (n=2**15, r=8, p=1); `ADMIN_PASSWORD_METHOD` may raise the cost
PASSWORD_METHOD = "scrypt"


class AdminProblem(Exception):
    """A console account cannot be created or changed (bad name, weak password, exists...)."""


class SecretKeyUnsafe(VaultError):
    """SECRET_KEY is a placeholder: sessions could be forged by anyone who guesses it."""


def check_username(username: str) -> str:
    """`username` when it is 1 to 64 allowed characters, else `AdminProblem`."""
    if not USERNAME_RE.match(username or ""):
        raise AdminProblem("a username is 1 to 64 of A-Z a-z 0-9 _ . @ -")
    return username


def check_password(password: str) -> str:
    """`password` when its length is acceptable, else `AdminProblem`."""
    if len(password) < MIN_PASSWORD:
        raise AdminProblem(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AdminProblem(f"the password must have at most {MAX_PASSWORD} characters")
    return password


def _hash(password: str) -> str:
    method = current_app.config["ADMIN_PASSWORD_METHOD"]
    if method != PASSWORD_METHOD and not str(method).startswith(PASSWORD_METHOD + ":"):
        raise AdminProblem("ADMIN_PASSWORD_METHOD must be scrypt or scrypt:N:r:p")
    return generate_password_hash(password, method=method)


def create_admin(conn: sa.Connection, username: str, password: str) -> None:
    """A new console account; the password is kept only as a scrypt hash."""
    check_username(username)
    check_password(password)
    if admin_row(conn, username) is not None:
        raise AdminProblem(f"admin {username!r} already exists; use `gateway admin set-password`")
    conn.execute(store.admins.insert().values(
        username=username, password_hash=_hash(password), created_at=time.time()))


def set_password(conn: sa.Connection, username: str, password: str) -> None:
    """Replace an account's password; its open sessions end at once."""
    check_password(password)
    done = conn.execute(store.admins.update().where(store.admins.c.username == username).values(
        password_hash=_hash(password)))
    if done.rowcount == 0:
        raise AdminProblem(f"no admin named {username!r}")
    end_sessions(conn, username)


def delete_admin(conn: sa.Connection, username: str) -> None:
    """Remove an account and end its sessions; `AdminProblem` when there is none by that name."""
    end_sessions(conn, username)
    done = conn.execute(store.admins.delete().where(store.admins.c.username == username))
    if done.rowcount == 0:
        raise AdminProblem(f"no admin named {username!r}")


# --- server-side sessions ------------------------------------------------------------------


def _id_hash(session_id: str) -> str:
    # only the digest is stored: reading the table does not hand out live sessions
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def open_session(conn: sa.Connection, username: str, *, now: float, idle: float,
                 lifetime: float) -> str:
    """A new session for `username`; the returned id goes in the (signed) cookie only.

    Sessions that ended unseen (a closed browser) are swept here, so the table stays small.
    """
    sessions = store.admin_sessions
    conn.execute(sessions.delete().where(sa.or_(sessions.c.last_seen_at < now - idle,
                                                sessions.c.created_at < now - lifetime)))
    session_id = secrets.token_urlsafe(32)
    conn.execute(store.admin_sessions.insert().values(
        id_hash=_id_hash(session_id), username=username, created_at=now, last_seen_at=now))
    return session_id


def session_user(conn: sa.Connection, session_id: str, *, now: float, idle: float,
                 lifetime: float) -> str | None:
    """The account behind a live session, touching it; None (and the row gone) once it ended.

    A session ends after `idle` seconds without a request or `lifetime` seconds after
    sign-in, whichever comes first, and with its account.
    """
    sessions = store.admin_sessions
    key = _id_hash(session_id)
    row = conn.execute(sa.select(sessions).where(sessions.c.id_hash == key)).first()
    if row is None:
        return None
    if now - row.last_seen_at > idle or now - row.created_at > lifetime \
            or admin_row(conn, row.username) is None:
        conn.execute(sessions.delete().where(sessions.c.id_hash == key))
        return None
    conn.execute(sessions.update().where(sessions.c.id_hash == key).values(last_seen_at=now))
    return t.cast(str, row.username)


def end_session(conn: sa.Connection, session_id: str) -> None:
    """End one session (sign-out)."""
    conn.execute(store.admin_sessions.delete().where(
        store.admin_sessions.c.id_hash == _id_hash(session_id)))


def end_sessions(conn: sa.Connection, username: str) -> int:
    """End every session of `username`; how many there were."""
    done = conn.execute(store.admin_sessions.delete().where(
        store.admin_sessions.c.username == username))
    return int(done.rowcount or 0)


def list_admins(conn: sa.Connection) -> list[dict[str, t.Any]]:
    """Every account's username and creation time, by username."""
    query = sa.select(store.admins.c.username, store.admins.c.created_at).order_by(store.admins.c.username)
    return [dict(r._mapping) for r in conn.execute(query)]


def admin_row(conn: sa.Connection, username: str) -> sa.Row[t.Any] | None:
    """The account's row (with its password hash), or None."""
    return conn.execute(sa.select(store.admins).where(store.admins.c.username == username)).first()


_dummy_hash: str | None = None


def verify_login(username: str, password: str) -> bool | None:
    """True when the credentials are right, False for a wrong password, None for no such account.

    An unknown username costs the same scrypt work as a wrong password, so timing does
    not tell which usernames exist; the caller must not show the difference either (it
    only keeps a typed name out of the audit trail when it is no account's).
    """
    global _dummy_hash
    with store.transaction() as conn:
        row = admin_row(conn, username) if USERNAME_RE.match(username) else None
    if row is None:
        _dummy_hash = _dummy_hash or _hash(secrets.token_hex(8))
        check_password_hash(_dummy_hash, password)
        return None
    return check_password_hash(row.password_hash, password)


def load_or_create_secret_key(conn: sa.Connection) -> str:
    """The stored session key, or a new one stored now (`gateway init` calls this too)."""
    value = store.get_setting(conn, SECRET_KEY_SETTING)
    if value is None:
        value = secrets.token_urlsafe(48)
        store.put_setting(conn, SECRET_KEY_SETTING, value, secret=True, now=time.time())
    return t.cast(str, value)


_key_lock = threading.Lock()


def ensure_secret_key(app: Flask) -> None:
    """Load the session-signing key from the settings table, creating it on first use.

    It is random, generated once, vault-encrypted at rest, and shared by every worker
    and instance through the database. When the database cannot be read the console
    stays closed (no key, no session) rather than falling back to something guessable.
    """
    if app.secret_key:
        return
    with _key_lock:
        for _ in range(2):
            if app.secret_key:
                return
            try:
                with store.transaction() as conn:
                    app.config["SECRET_KEY"] = load_or_create_secret_key(conn)
            except sa.exc.IntegrityError:
                continue  # another worker stored one first: read theirs
            except (sa.exc.SQLAlchemyError, VaultError, store.SchemaMismatch):
                log.exception("admin console: cannot load the session key")
                return


def refuse_placeholder(app: Flask) -> None:
    """Raise `SecretKeyUnsafe` when a configured SECRET_KEY is guessable (tests may use any)."""
    configured = app.config.get("SECRET_KEY")
    if configured is None or app.config.get("TESTING"):
        return
    text = configured.decode("latin-1") if isinstance(configured, bytes) else str(configured)
    if text.strip().lower() in PLACEHOLDERS or len(text) < 32:
        raise SecretKeyUnsafe("SECRET_KEY (GATEWAY_SECRET_KEY) is a placeholder or shorter than 32 "
                              "characters; unset it and the gateway keeps a random one in its database")
