"""The admin console in a real headless Chromium: sign in, revoke, rotate, and a forged form refused."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
import requests

from gateway import store
from gateway.services import admin_accounts as admin
from sandbox.server import BackgroundServer
from tests.conftest import add_partner
from tests.conftest import make_gateway

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery staple"
TIMEOUT_MS = 10_000


@pytest.fixture
def app(tmp_path: Path, sandbox: t.Any, rsa_private_pem: str, loopback_port: int) -> t.Any:
    """The gateway whose public URL is the loopback socket the browser opens."""
    return make_gateway(tmp_path, sandbox.url, rsa_private_pem,
                        PUBLIC_URL=f"http://127.0.0.1:{loopback_port}")


@pytest.fixture
def console_url(app: t.Any, loopback_port: int) -> t.Iterator[str]:
    """The gateway behind a real HTTP server on loopback, with one admin account."""
    app.config["ADMIN_PASSWORD_METHOD"] = "scrypt:1024:8:1"
    with app.app_context(), store.transaction() as conn:
        admin.create_admin(conn, "root", PASSWORD)
    server = BackgroundServer(app, port=loopback_port).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def partner_key(app: t.Any) -> str:
    return add_partner(app, "example")


def call(base: str, key: str) -> requests.Response:
    return requests.get(f"{base}/v1/templates", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def sign_in(page: t.Any, base: str) -> None:
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base + "/admin/")
    assert page.url.endswith("/admin/login")  # signed out: the console sends you to sign in
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin/")
    assert page.locator("h1").inner_text() == "Partners"


def test_revoke_from_the_console_bites_on_the_next_call(page, console_url, partner_key):
    assert call(console_url, partner_key).status_code == 200
    sign_in(page, console_url)
    cookie = next(c for c in page.context.cookies() if c["name"] == "gateway_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    page.click("#partner-example >> text=Revoke…")
    assert page.locator("h1").inner_text() == "Revoke example?"
    assert call(console_url, partner_key).status_code == 200  # the confirmation page changes nothing
    page.click("button.danger")
    page.wait_for_url(console_url + "/admin/")
    assert "revoked (1 key(s))" in page.locator(".flash.ok").inner_text()
    assert page.locator("#partner-example .pill").inner_text() == "revoked"
    refused = call(console_url, partner_key)
    assert refused.status_code == 401
    assert refused.json()["code"] == "key_revoked"


def test_rotate_shows_the_new_key_once(page, console_url, partner_key):
    sign_in(page, console_url)
    page.click("#partner-example >> text=Rotate key…")
    page.select_option("select[name=grace]", "0")
    page.click("button[type=submit] >> text=Issue new key")
    new_key = page.locator("#new-key").inner_text().strip()
    assert new_key.startswith("pgw_") and new_key != partner_key
    assert call(console_url, new_key).status_code == 200
    assert call(console_url, partner_key).json()["code"] == "key_expired"
    page.click("text=Back to partners")
    page.wait_for_url(console_url + "/admin/")
    assert new_key not in page.content()
    page.goto(console_url + "/admin/audit")
    assert new_key not in page.content()
    assert "admin_rotate_key" in page.content()


def test_a_forged_form_is_refused(page, console_url, partner_key):
    sign_in(page, console_url)
    # same origin, with the signed-in cookie, but no CSRF token
    forged = page.context.request.post(console_url + "/admin/partners/example/revoke", form={"x": "1"})
    assert forged.status == 403
    assert "did not come from the console" in forged.text()
    # another page in the same browser posting the console's form (a classic CSRF)
    attacker = page.context.new_page()
    target = console_url + "/admin/partners/example/revoke"
    attacker.set_content(f'<form method="post" action="{target}"><button id="go">win</button></form>')
    with attacker.expect_navigation():
        attacker.click("#go")
    assert "did not come from the console" in attacker.locator("body").inner_text()
    assert call(console_url, partner_key).status_code == 200
    page.goto(console_url + "/admin/")
    assert page.locator("#partner-example .pill").inner_text() == "active"
