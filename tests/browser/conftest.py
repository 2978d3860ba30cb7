"""Browser fixtures: the Debian Chromium driven by Playwright, and the demo stack on free ports."""

from __future__ import annotations

import os
import threading
import typing as t

import pytest

from gateway.cli.demo_stack import DemoStack
from tests.conftest import service_or_skip

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _chromium_present() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        raise FileNotFoundError(f"{CHROMIUM} (apt-get install -y chromium)")


@pytest.fixture(scope="session")
def chromium() -> t.Iterator[t.Any]:
    service_or_skip("chromium", _chromium_present)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def stack() -> t.Iterator[DemoStack]:
    with DemoStack(sandbox_port=0, gateway_port=0, site_port=0,
                   sandbox_config={"SANDBOX_CONNECT_RETRY_DELAYS": (0.05,)}) as running:
        yield running
        _stop_webhook_sender(running)


def _stop_webhook_sender(running: DemoStack) -> None:
    """Stop the gateway's webhook sender thread before the stack deletes its database.

    `DemoStack.stop` leaves it running, and its errors land in later tests' stderr
    (the CLI tests compare stderr).
    """
    app = running.gateway_app
    stop = app.extensions.get("webhook_sender_stop") if app is not None else None
    if stop is None:
        return
    stop.set()
    for thread in threading.enumerate():
        if thread.name == "webhook-sender":
            thread.join(timeout=5)


@pytest.fixture
def page(chromium: t.Any) -> t.Iterator[t.Any]:
    """A fresh browser profile (cookies, cache) per test."""
    context = chromium.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
