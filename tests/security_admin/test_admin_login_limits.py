"""Issue 16 #3: sign-in attempts are counted before the password is checked, exactly, under load."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from gateway.services import admin_accounts
from sandbox.server import BackgroundServer

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password-hash check the gateway makes, each made slow so racing requests overlap."""
    checks: list[str] = []
    lock = threading.Lock()
    real = admin_accounts.check_password_hash

    def counted(pwhash: str, password: str) -> bool:
        with lock:
            checks.append(password)
        time.sleep(0.05)  # widens the window between "is there budget" and "count it"
        return real(pwhash, password)

    monkeypatch.setattr(admin_accounts, "check_password_hash", counted)
    return checks


def _attempt(base: str, username: str, password: str) -> int:
    with requests.Session() as browser:
        page = browser.get(base + "/admin/login", timeout=30)
        token = CSRF_RE.search(page.text).group(1)  # type: ignore[union-attr]
        return browser.post(base + "/admin/login", timeout=30, allow_redirects=False,
                            data={"csrf_token": token, "username": username,
                                  "password": password}).status_code


@pytest.mark.parametrize("budget", ["user", "ip"])
def test_parallel_wrong_passwords_get_exactly_the_limit_of_checks(app, password_checks, budget):
    if budget == "user":
        app.config.update(ADMIN_LOGIN_RATE_LIMIT_USER="5/minute", ADMIN_LOGIN_RATE_LIMIT_IP="1000/minute")
    else:
        app.config.update(ADMIN_LOGIN_RATE_LIMIT_USER="1000/minute", ADMIN_LOGIN_RATE_LIMIT_IP="5/minute")
    with BackgroundServer(app) as server, ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(lambda i: _attempt(server.url, "root", f"wrong password {i}"),
                                 range(40)))
    assert len(password_checks) == 5
    assert sorted(statuses) == [401] * 5 + [429] * 35


def test_a_refused_attempt_checks_no_password(app, client, login, password_checks):
    app.config["ADMIN_LOGIN_RATE_LIMIT_USER"] = "2/minute"
    assert [login(client, password="wrong wrong wrong").status_code for _ in range(3)] == [401, 401, 429]
    # the right password is refused too, unchecked: the username's budget is spent
    assert login(client).status_code == 429
    assert len(password_checks) == 2


def test_a_right_password_resets_the_username_but_not_the_address(app, client, login):
    app.config.update(ADMIN_LOGIN_RATE_LIMIT_USER="2/minute", ADMIN_LOGIN_RATE_LIMIT_IP="4/minute")
    assert login(client, password="wrong wrong wrong").status_code == 401
    assert login(client).status_code == 303
    assert [login(client, password="wrong wrong wrong").status_code for _ in range(2)] == [401, 401]
    # four attempts from this address so far: the fifth is refused whatever it is
    assert login(client, username="someone").status_code == 429
