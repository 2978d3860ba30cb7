"""Fixtures for the console's security tests: a gateway without DocuSign, one admin account."""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

import pytest

from gateway import store
from gateway.services import admin_accounts
from tests.conftest import make_gateway

PASSWORD = "correct horse battery staple"
#: a cheaper scrypt for speed (the full cost is checked in tests/web/test_admin.py)
FAST_SCRYPT = "scrypt:1024:8:1"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(tmp_path: Path) -> t.Any:
    # a loopback console: its session cookie is not Secure, so the plain-http test client keeps it
    app = make_gateway(tmp_path, None, None, ADMIN_PASSWORD_METHOD=FAST_SCRYPT,
                       PUBLIC_URL="http://127.0.0.1")
    with app.app_context(), store.transaction() as conn:
        admin_accounts.create_admin(conn, "root", PASSWORD)
    return app


def _login(client: t.Any, username: str = "root", password: str = PASSWORD) -> t.Any:
    page = client.get("/admin/login").get_data(as_text=True)
    token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    return client.post("/admin/login", data={"csrf_token": token, "username": username,
                                             "password": password})


@pytest.fixture
def login() -> t.Callable[..., t.Any]:
    """Sign in through the form, CSRF token and all, with Flask's test client."""
    return _login
