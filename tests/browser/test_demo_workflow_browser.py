"""The demo's whole signing workflow in a real headless Chromium, nothing faked.

A member fills the example site's form and signs inside its iframe (the emulator's
signing page, through the gateway's recipient view and return relay); the site says
"Signed, waiting for our countersignature". The owner's countersigner then signs on the
emulator's control page (a click, as the owner would), Connect tells the gateway, the
gateway's sender posts the signed `envelope.completed` webhook to the site, and the
member's page, still open, turns "Completed" without a reload.
"""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

import pytest
from playwright.sync_api import expect

from gateway import store
from gateway.cli.demo_stack import DemoStack
from gateway.services import webhook_outbox

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
TIMEOUT_MS = 15_000
#: the page polls with a growing delay (at most 10 s) and Connect retries: room for both
COMPLETED_TIMEOUT_MS = 45_000


@pytest.fixture(scope="module")
def workflow() -> t.Iterator[DemoStack]:
    # the site asks the gateway's status API once an hour at most: a "completed" it shows
    # can then only have come from the gateway's webhook
    with DemoStack(sandbox_port=0, gateway_port=0, site_port=0,
                   sandbox_config={"SANDBOX_CONNECT_RETRY_DELAYS": (0.05,)},
                   gateway_config={"WEBHOOK_INTERVAL": 0.2},
                   site_config={"STATUS_FALLBACK_SECONDS": 3600.0}) as running:
        yield running


def sign_as_member(page: t.Any, stack: DemoStack) -> str:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(stack.site_url + "/")
    page.fill("#name", "Ada Lovelace")
    page.fill("#email", "ada@example.com")
    page.fill("#member_number", "1815")
    page.select_option("#plan", "plus")
    page.click("#start-signing")
    page.wait_for_url(re.compile(r"/sign/[0-9a-f-]+$"), timeout=TIMEOUT_MS)
    envelope_id = str(page.locator("#envelope-id").inner_text())
    page.frame_locator("#signing-frame").locator("#sign").click(timeout=TIMEOUT_MS)
    page.wait_for_url(re.compile(r"/signed\?"), timeout=TIMEOUT_MS)
    return envelope_id


def countersign_on_control_page(page: t.Any, stack: DemoStack, envelope_id: str) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(stack.control_url)
    section = page.locator(f'section.envelope[data-envelope-id="{envelope_id}"]')
    expect(section).to_contain_text("Countersigner", timeout=TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "demo-workflow-control-page.png"), full_page=True)
    section.locator("button.countersign").click(timeout=TIMEOUT_MS)
    page.wait_for_url(stack.control_url, timeout=TIMEOUT_MS)
    # countersigned: nobody remote is left to act on this envelope
    expect(page.locator(f'section.envelope[data-envelope-id="{envelope_id}"]')).to_have_count(0)


def outbox(stack: DemoStack, envelope_id: str) -> list[dict[str, t.Any]]:
    assert stack.gateway_app is not None
    with stack.gateway_app.app_context(), store.transaction() as conn:
        rows = webhook_outbox.list_events(conn, partner="example")
    return [r for r in reversed(rows) if r["envelope_id"] == envelope_id]


def test_member_signs_owner_countersigns_page_completes_from_the_webhook(chromium, workflow) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    context = chromium.new_context()
    try:
        member = context.new_page()
        envelope_id = sign_as_member(member, workflow)
        outcome = member.locator("#outcome")
        expect(outcome).to_have_attribute("data-outcome", "waiting", timeout=TIMEOUT_MS)
        expect(member.locator("#outcome-title")).to_have_text(
            "Signed, waiting for our countersignature")
        member.screenshot(path=str(ARTIFACTS / "demo-workflow-waiting.png"), full_page=True)
        # a mark in this very document: it is gone if the page is ever reloaded
        member.evaluate("window.__notReloaded = true")
        # the site's one status-API read for the hour happens now, before the countersignature
        first = member.request.get(f"{workflow.site_url}/envelopes/{envelope_id}/status.json")
        assert first.ok and first.json()["status"] != "completed"

        owner = chromium.new_context().new_page()
        try:
            countersign_on_control_page(owner, workflow, envelope_id)
        finally:
            owner.context.close()

        expect(outcome).to_have_attribute("data-outcome", "completed",
                                          timeout=COMPLETED_TIMEOUT_MS)
        expect(member.locator("#outcome-title")).to_have_text("Completed")
        assert member.evaluate("window.__notReloaded === true")
        member.screenshot(path=str(ARTIFACTS / "demo-workflow-completed.png"), full_page=True)

        known = member.request.get(f"{workflow.site_url}/envelopes/{envelope_id}/status.json")
        assert known.ok
        body = known.json()
        assert (body["status"], body["signer_status"]) == ("completed", "completed")
        assert body["source"] == "webhook"
    finally:
        context.close()

    sent = outbox(workflow, envelope_id)
    assert [e["type"] for e in sent] == ["envelope.signer_completed", "envelope.completed"]
    assert all(e["state"] == "delivered" for e in sent)
