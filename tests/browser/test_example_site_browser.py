"""The example site's outcome pages in a real headless Chromium, against a fake gateway.

The fake plays a template with a countersigner (not yet in the emulator): after the
member signs, the page says "Signed, waiting for our countersignature" and turns into
"Completed" by itself when the gateway's webhook arrives, without a reload.
"""

from __future__ import annotations

import re
import threading
import typing as t
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect
from werkzeug.serving import make_server

from examples.partner_site import create_app as create_site
from tests.test_example_site import WEBHOOK_SECRET
from tests.test_example_site import FakeGateway
from tests.test_example_site import event
from tests.test_example_site import webhook

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TIMEOUT_MS = 15_000


class Site:
    def __init__(self, fake: FakeGateway) -> None:
        self._server = make_server("127.0.0.1", 0, _Late(self), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.port}"
        self.app = create_site({"GATEWAY_URL": fake.url, "GATEWAY_KEY": FakeGateway.KEY,
                                "SITE_URL": self.url, "WEBHOOK_SECRET": WEBHOOK_SECRET,
                                "STATUS_FALLBACK_SECONDS": 3600.0})
        fake.site_url = self.url
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Late:
    def __init__(self, site: Site) -> None:
        self.site = site

    def __call__(self, environ: t.Any, start_response: t.Any) -> t.Any:
        return self.site.app(environ, start_response)


@pytest.fixture(scope="module")
def site() -> t.Iterator[tuple[Site, FakeGateway]]:
    with FakeGateway() as fake:
        running = Site(fake)
        try:
            yield running, fake
        finally:
            running.close()


def start_signing(page: t.Any, site: Site) -> str:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(site.url + "/")
    page.fill("#name", "Ada Lovelace")
    page.fill("#email", "ada@example.com")
    page.fill("#member_number", "1815")
    page.click("#start-signing")
    page.wait_for_url(re.compile(r"/sign/[0-9a-f-]+$"), timeout=TIMEOUT_MS)
    return str(page.locator("#envelope-id").inner_text())


def press(page: t.Any, button: str) -> None:
    page.frame_locator("#signing-frame").locator(f"#{button}").click(timeout=TIMEOUT_MS)
    page.wait_for_url(re.compile(r"/signed\?"), timeout=TIMEOUT_MS)


def no_horizontal_scroll(page: t.Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_waiting_for_countersignature_turns_completed_without_a_reload(page, site) -> None:
    running, fake = site
    envelope_id = start_signing(page, running)
    assert no_horizontal_scroll(page)
    press(page, "sign")
    outcome = page.locator("#outcome")
    assert outcome.get_attribute("data-outcome") == "waiting"
    assert page.locator("#outcome-title").inner_text() == "Signed, waiting for our countersignature"
    assert no_horizontal_scroll(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "example-site-waiting.png"), full_page=True)
    page.evaluate("window.__samePage = true")
    body, headers = webhook(event("envelope.completed", envelope_id, "completed", "completed"))
    resp = requests.post(running.url + "/hooks/signing", data=body, headers=headers, timeout=10)
    assert resp.status_code == 200
    # the page's own polling, not a reload (wait_for_function would need 'unsafe-eval')
    expect(outcome).to_have_attribute("data-outcome", "completed", timeout=TIMEOUT_MS)
    assert page.locator("#outcome-title").inner_text() == "Completed"
    assert "completed" in (outcome.get_attribute("class") or "").split()
    assert page.locator("#result-status").inner_text() == "completed"
    assert page.evaluate("window.__samePage") is True  # updated in place, not reloaded
    assert page.locator("#live-note").count() == 0
    page.screenshot(path=str(ARTIFACTS / "example-site-completed.png"), full_page=True)


def test_cancel_then_resume_signing(page, site) -> None:
    running, fake = site
    envelope_id = start_signing(page, running)
    press(page, "cancel")
    assert page.locator("#outcome").get_attribute("data-outcome") == "cancelled"
    assert page.locator("#outcome-title").inner_text() == "Not signed yet"
    assert no_horizontal_scroll(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "example-site-cancelled.png"), full_page=True)
    views = fake.calls["view", envelope_id]
    page.click("#resume-signing")
    page.wait_for_url(re.compile(rf"/sign/{envelope_id}$"), timeout=TIMEOUT_MS)
    assert page.locator("#resume-signing").count() == 0
    frame = page.frame_locator("#signing-frame")
    assert frame.locator("#signer-name").inner_text(timeout=TIMEOUT_MS) == f"Session {views + 1}"


def test_back_to_the_signing_page_never_resubmits_the_form(page, site) -> None:
    running, fake = site
    envelope_id = start_signing(page, running)
    creates = fake.calls["create", ""]
    page.goto(running.url + "/")
    back = page.go_back(timeout=TIMEOUT_MS)
    # post/redirect/get: the history entry is the GET page, so no "Confirm Form Resubmission"
    assert back is not None and back.request.method == "GET" and back.status == 200
    assert page.url == f"{running.url}/sign/{envelope_id}"
    frame = page.frame_locator("#signing-frame")
    assert frame.locator("#signer-name").inner_text(timeout=TIMEOUT_MS).startswith("Session ")
    assert fake.calls["create", ""] == creates
