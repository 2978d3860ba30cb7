"""Issue 16 #4 and #6: console sessions end server-side; a failed sign-in keeps no typed non-account name."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway import cli
from gateway import store
from gateway.services import admin_accounts

CONSOLE = "/admin/"
HOST = "127.0.0.1"  # the console's PUBLIC_URL host (tests/security_admin/conftest.py)


def _cookie(client: t.Any) -> str:
    cookie = client.get_cookie("gateway_console", domain=HOST, path="/admin")
    assert cookie is not None
    return t.cast(str, cookie.value)


def _replay(app: t.Any, cookie: str) -> int:
    """A second browser presenting a captured cookie: the console's status for it."""
    other = app.test_client()
    other.set_cookie("gateway_console", cookie, domain=HOST, path="/admin")
    return t.cast(int, other.get(CONSOLE).status_code)


def _logout(client: t.Any) -> None:
    page = client.get(CONSOLE).get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 303


@pytest.fixture
def captured(app, client, login) -> str:
    """The cookie of a signed-in admin, as an attacker would have copied it."""
    assert login(client).status_code == 303
    cookie = _cookie(client)
    assert _replay(app, cookie) == 200
    return cookie


def test_a_cookie_captured_before_logout_is_dead_after_it(app, client, captured):
    _logout(client)
    assert _replay(app, captured) == 303


def test_a_password_change_ends_every_session(app, captured):
    with app.app_context(), store.transaction() as conn:
        admin_accounts.set_password(conn, "root", "another long passphrase")
    assert _replay(app, captured) == 303


@pytest.fixture
def gateway_env(app: t.Any, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("GATEWAY_MASTER_KEY", app.config["MASTER_KEY"])
    monkeypatch.setenv("GATEWAY_POLICY_DIR", app.config["POLICY_DIR"])
    return CliRunner()


def test_gateway_admin_delete_ends_the_accounts_sessions(app, captured, gateway_env):
    result = gateway_env.invoke(cli.cli, ["admin", "delete", "root"])
    assert result.exit_code == 0, result.output
    with app.app_context(), store.transaction() as conn:
        admin_accounts.create_admin(conn, "root", "a different passphrase")
    # a new account by the same name does not inherit the old one's sessions
    assert _replay(app, captured) == 303


def test_an_idle_session_ends(app, client, login, monkeypatch):
    app.config["ADMIN_IDLE_TIMEOUT"] = 600
    assert login(client).status_code == 303
    with app.app_context(), store.transaction() as conn:
        conn.execute(store.admin_sessions.update().values(
            last_seen_at=store.admin_sessions.c.last_seen_at - 601))
    assert client.get(CONSOLE).status_code == 303
    with app.app_context(), store.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.admin_sessions)).scalar() == 0


def test_activity_keeps_a_session_alive(app, client, login):
    app.config["ADMIN_IDLE_TIMEOUT"] = 600
    assert login(client).status_code == 303
    with app.app_context(), store.transaction() as conn:
        conn.execute(store.admin_sessions.update().values(
            last_seen_at=store.admin_sessions.c.last_seen_at - 599,
            created_at=store.admin_sessions.c.created_at - 3000))
    assert client.get(CONSOLE).status_code == 200
    assert client.get(CONSOLE).status_code == 200


def test_the_session_table_holds_no_usable_session_id(app, client, login):
    assert login(client).status_code == 303
    with client.session_transaction("/admin/") as sess:
        session_id = sess["sid"]
    with app.app_context(), store.transaction() as conn:
        stored = conn.execute(sa.select(store.admin_sessions.c.id_hash)).scalars().all()
    assert len(stored) == 1 and session_id not in stored[0]


def _failed_details(app: t.Any) -> list[str]:
    ev = store.audit_events.c
    with app.app_context(), store.transaction() as conn:
        return list(conn.execute(sa.select(ev.detail).where(ev.operation == "admin_login_failed"))
                    .scalars())


def test_a_failed_login_keeps_no_typed_name_that_is_no_account(app, client, login):
    typed = "hunter2-my-real-passphrase"
    assert login(client, username=typed).status_code == 401
    assert login(client, username="root", password="wrong wrong wrong").status_code == 401
    details = _failed_details(app)
    assert len(details) == 2
    assert not any(typed in (d or "") for d in details)
    # an existing account's name is still worth keeping: it is what is under attack
    assert any("root" in (d or "") for d in details)


def test_sessions_that_ended_unseen_are_swept_at_the_next_sign_in(app, login):
    app.config["ADMIN_IDLE_TIMEOUT"] = 600
    assert login(app.test_client()).status_code == 303
    with app.app_context(), store.transaction() as conn:
        conn.execute(store.admin_sessions.update().values(
            last_seen_at=store.admin_sessions.c.last_seen_at - 601))
    assert login(app.test_client()).status_code == 303
    with app.app_context(), store.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.admin_sessions)).scalar() == 1
