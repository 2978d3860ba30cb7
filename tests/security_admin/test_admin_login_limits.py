"""Issue 16 #3: sign-in attempts are counted before the password is checked, exactly, under load."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography.fernet import Fernet

from gateway import store
from gateway.services import admin_accounts
from sandbox.server import BackgroundServer
from tests.conftest import make_gateway
from tests.services.fleet import REDIS_URL
from tests.services.fleet import redis_prefix

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


def test_two_workers_sharing_redis_give_exactly_the_limit(tmp_path, password_checks):
    """Two gateway apps (workers) on one Redis: attempts spread over both still add up exactly."""
    from tests.security_admin.conftest import FAST_SCRYPT
    from tests.security_admin.conftest import PASSWORD

    with redis_prefix() as prefix:
        config = {"RATELIMIT_STORAGE_URI": REDIS_URL, "ADMIN_PASSWORD_METHOD": FAST_SCRYPT,
                  "PUBLIC_URL": "http://127.0.0.1",
                  "MASTER_KEY": Fernet.generate_key().decode("ascii"),
                  "RATELIMIT_STORAGE_OPTIONS": {"key_prefix": prefix, "wrap_exceptions": True},
                  "ADMIN_LOGIN_RATE_LIMIT_USER": "5/minute", "ADMIN_LOGIN_RATE_LIMIT_IP": "1000/minute"}
        workers = [make_gateway(tmp_path, None, None, **config) for _ in range(2)]
        with workers[0].app_context(), store.transaction() as conn:
            admin_accounts.create_admin(conn, "root", PASSWORD)
        with BackgroundServer(workers[0]) as one, BackgroundServer(workers[1]) as two, \
                ThreadPoolExecutor(max_workers=40) as pool:
            urls = [one.url, two.url]
            statuses = list(pool.map(lambda i: _attempt(urls[i % 2], "root", f"wrong {i}"), range(40)))
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
