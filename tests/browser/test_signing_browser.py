"""A visitor signs inside the example site's iframe, in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import typing as t
import urllib.parse
from pathlib import Path

import pytest
import requests

from gateway.cli.demo_stack import DemoStack

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TIMEOUT_MS = 15_000


def fill_form(page: t.Any, stack: DemoStack) -> None:
    page.goto(stack.site_url + "/")
    page.fill("#name", "Ada Lovelace")
    page.fill("#email", "ada@example.com")
    page.fill("#member_number", "1815")
    page.select_option("#plan", "plus")
    page.click("#start-signing")


def press_in_iframe(page: t.Any, button: str) -> None:
    frame = page.frame_locator("#signing-frame")
    frame.locator(f"#{button}").click(timeout=TIMEOUT_MS)
    # the return page breaks out of the iframe: the whole window shows the result
    page.wait_for_url(re.compile(r"/signed\?"), timeout=TIMEOUT_MS)


def outcome(page: t.Any) -> str:
    return str(page.locator("#outcome").get_attribute("data-outcome", timeout=TIMEOUT_MS))


def countersign(stack: DemoStack, envelope_id: str) -> None:
    """Act as the owner's countersigner through the emulator's control API."""
    record = requests.get(f"{stack.sandbox_url}/_sandbox/envelopes/{envelope_id}", timeout=10).json()
    counter = next(r["recipientId"] for r in record["recipients"] if r["roleName"] == "Countersigner")
    requests.post(f"{stack.sandbox_url}/_sandbox/envelopes/{envelope_id}/recipients/{counter}/sign",
                  json={}, timeout=10).raise_for_status()


def gateway_status(stack: DemoStack, envelope_id: str) -> dict[str, t.Any]:
    assert stack.site_app is not None
    key = stack.site_app.config["GATEWAY_KEY"]
    resp = requests.get(f"{stack.gateway_url}/v1/envelopes/{envelope_id}",
                        headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert resp.status_code == 200
    return t.cast(dict, resp.json())


def test_sign_inside_the_iframe_and_see_the_verified_completion(page, stack) -> None:
    fill_form(page, stack)
    frame = page.frame_locator("#signing-frame")
    assert frame.locator("#signer-name").inner_text(timeout=TIMEOUT_MS) == "Ada Lovelace"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "signing-in-iframe.png"), full_page=True)
    press_in_iframe(page, "sign")
    # the membership agreement routes on to the owner's countersigner
    assert outcome(page) == "waiting"
    assert "waiting for our countersignature" in page.locator("#outcome").inner_text()
    assert page.locator("#verified-note").is_visible()
    page.screenshot(path=str(ARTIFACTS / "signed-waiting.png"), full_page=True)
    envelope_id = page.locator("#result-envelope").inner_text()
    countersign(stack, envelope_id)
    # the page turns without a reload (the site polls its own server)
    page.wait_for_selector('#outcome[data-outcome="completed"]', timeout=40_000)
    assert page.locator("#result-status").inner_text() == "completed"
    page.screenshot(path=str(ARTIFACTS / "signed.png"), full_page=True)
    assert gateway_status(stack, envelope_id)["status"] == "completed"
    assert stack.site_app is not None
    assert stack.site_app.config["GATEWAY_KEY"].split("_")[2] not in page.content()


def test_decline_inside_the_iframe(page, stack) -> None:
    fill_form(page, stack)
    press_in_iframe(page, "decline")
    assert outcome(page) == "declined"
    envelope_id = page.locator("#result-envelope").inner_text()
    assert gateway_status(stack, envelope_id)["status"] == "declined"


def test_cancel_inside_the_iframe(page, stack) -> None:
    fill_form(page, stack)
    press_in_iframe(page, "cancel")
    assert outcome(page) == "cancelled"
    envelope_id = page.locator("#result-envelope").inner_text()
    status = gateway_status(stack, envelope_id)
    assert status["status"] in ("sent", "delivered")
    assert status["last_event"] in ("cancel", "envelope-delivered")


def test_tampered_gateway_token_is_refused_by_the_site(page, stack) -> None:
    fill_form(page, stack)
    press_in_iframe(page, "cancel")
    parts = urllib.parse.urlsplit(page.url)
    params = dict(urllib.parse.parse_qsl(parts.query))
    head, payload, sig = params["gateway_token"].split(".")
    # claim a completion the gateway never signed
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded |= {"status": "completed", "event": "signing_complete"}
    forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    params["gateway_token"] = f"{head}.{forged}.{sig}"
    params["event"] = "signing_complete"
    response = page.goto(parts._replace(query=urllib.parse.urlencode(params)).geturl())
    assert response.status == 400
    assert outcome(page) == "unverified"
    assert "could not be verified" in page.locator("#outcome").inner_text()
