"""A screenshot of every page a user sees, each checked for the words the user must see.

The pictures go to tests/artifacts/ (git-ignored): the example site's form, its signing
iframe and each outcome, and the console's login, partners, partner (with its traffic
chart) and audit pages, all at 1280 x 800.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
import requests

from examples.partner_site.outcomes import BY_KEY
from tests.browser.test_admin_browser import PASSWORD
from tests.browser.test_admin_browser import app  # noqa: F401 - a fixture: PUBLIC_URL is its socket
from tests.browser.test_admin_browser import call
from tests.browser.test_admin_browser import console_url  # noqa: F401 - a fixture
from tests.browser.test_admin_browser import partner_key  # noqa: F401 - a fixture
from tests.browser.test_signing_browser import fill_form
from tests.browser.test_signing_browser import press_in_iframe

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TIMEOUT_MS = 15_000
WIDE = {"width": 1280, "height": 800}


def shoot(page: t.Any, name: str, *words: str) -> None:
    """Check the words are on the page (as rendered text), then save its picture."""
    text = page.locator("body").inner_text()
    for word in words:
        assert word in text, f"{name}: {word!r} not on the page"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# --- the example site ------------------------------------------------------------------------


def test_site_form_and_signing_iframe(page, stack) -> None:
    page.set_viewport_size(WIDE)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(stack.site_url + "/")
    shoot(page, "site-form", "Member number", "Plan")
    fill_form(page, stack)
    frame = page.frame_locator("#signing-frame")
    assert frame.locator("#signer-name").inner_text() == "Ada Lovelace"
    assert frame.locator("#sign").is_visible() and frame.locator("#decline").is_visible()
    shoot(page, "site-signing-iframe")


@pytest.mark.parametrize("button", ["sign", "decline", "cancel"])
def test_site_outcome_pages(page, stack, button) -> None:
    page.set_viewport_size(WIDE)
    page.set_default_timeout(TIMEOUT_MS)
    fill_form(page, stack)
    press_in_iframe(page, button)
    key = str(page.locator("#outcome").get_attribute("data-outcome"))
    expected = {"sign": ("completed", "waiting", "signed"), "decline": ("declined",),
                "cancel": ("cancelled",)}[button]
    assert key in expected
    shoot(page, f"site-outcome-{key}", BY_KEY[key].headline, BY_KEY[key].message.split(".")[0])


# --- the console -----------------------------------------------------------------------------


def _sign_in(page: t.Any, base: str) -> None:
    page.set_viewport_size(WIDE)
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base + "/admin/")
    shoot(page, "console-login", "Sign in", "Username", "Password")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/admin/")


def _traffic(base: str, key: str) -> tuple[int, int]:
    """Three good calls and two refused ones (an unknown envelope), all by the partner."""
    for _ in range(3):
        assert call(base, key).status_code == 200
    for _ in range(2):
        resp = requests.get(f"{base}/v1/envelopes/00000000-0000-0000-0000-000000000000",
                            headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert resp.status_code == 404
    return 5, 2


def _chart(page: t.Any) -> t.Any:
    chart = page.locator("#traffic svg.chart")
    assert chart.get_attribute("data-hours") == "168"
    assert chart.locator(".series.requests rect").count() == 168
    assert chart.locator(".series.errors rect").count() == 168
    words = chart.locator("text").all_text_contents()
    for word in ("Requests", "Errors (4xx/5xx)", "requests per hour", "hour (UTC), last 7 days", "0"):
        assert word in words
    assert len([w for w in words if len(w) == 6 and w[:3].isalpha()]) >= 6  # day labels: "Tue 01"
    return chart


def test_console_pages(page, console_url, partner_key) -> None:  # noqa: F811
    requests_made, errors_made = _traffic(console_url, partner_key)
    _sign_in(page, console_url)
    chart = _chart(page)
    # this hour's bars are the last ones, and they are drawn
    assert float(chart.locator(".series.requests rect").last.get_attribute("height")) > 0
    assert float(chart.locator(".series.errors rect").last.get_attribute("height")) > 0
    shoot(page, "console-partners", "Partners", "example", "active", "Revoke…",
          f"{requests_made} requests, {errors_made} errors in the last 7 days (all partners)")

    page.click("#partner-example >> text=example")
    page.wait_for_url(console_url + "/admin/partners/example")
    _chart(page)
    last = page.locator("#traffic .series.requests rect").last
    assert last.locator("title").text_content().endswith(f": {requests_made} requests, {errors_made} errors")
    shoot(page, "console-partner", "Partner example", "Live keys", "Last use",
          f"{requests_made} requests, {errors_made} errors in the last 7 days (example)")

    page.click("text=Audit trail >> nth=-1")
    page.wait_for_url(console_url + "/admin/audit?partner=example")
    rows = page.locator("table.audit tbody tr")
    assert rows.count() >= requests_made
    for i in range(requests_made):  # the partner's own calls: newest first
        assert rows.nth(i).locator("td").nth(1).inner_text() == "example"
    # no cell but the code/detail one spreads over more than one line at 1280 px
    lines = page.evaluate("""() => Array.from(document.querySelectorAll('table.audit tbody td:not(.detail)'))
        .map(td => { const r = document.createRange(); r.selectNodeContents(td);
                     const line = parseFloat(getComputedStyle(td).lineHeight);
                     const height = r.getBoundingClientRect().height;
                     return [td.cellIndex, Math.round(height / line), td.innerText]; })""")
    assert lines and all(n <= 1 for _, n, _ in lines), [cell for cell in lines if cell[1] > 1]
    first_id = rows.first.locator("td").nth(8)
    assert len(first_id.inner_text()) == 8 and len(first_id.get_attribute("title")) > 8
    shoot(page, "console-audit", "Audit trail", "Time (UTC)", "Partner", "envelope_not_found", "example")
