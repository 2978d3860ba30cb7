"""Connect JSON SIM deliveries to a real listener, with HMAC and retries (docs/docusign-facts.md §9)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time

from sandbox import constants as c

SECRETS = ["first-secret", "zweites-Geheimnis-ü"]


def expected_signature(secret: str, body: bytes) -> str:
    """An implementation independent of the emulator's: base64(HMAC-SHA256(secret, body))."""
    mac = hmac.new(secret.encode("utf-8"), msg=body, digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def connect(ds, url, secrets=SECRETS, enabled=True):
    ds.control("/connect", {"url": url, "hmac_secrets": secrets, "enabled": enabled})


def sign_through(ds, eid):
    page = ds.client.get(ds.signing_path(eid))
    action = page.get_data(as_text=True).split('action="', 1)[1].split('"', 1)[0]
    assert action.endswith("/sign")
    assert ds.client.post(action).status_code == 302


def test_status_changes_are_delivered_signed(ds, listener):
    hook, url = listener
    connect(ds, url)
    eid = ds.create().get_json()["envelopeId"]  # a draft: no event
    ds.rest("PUT", f"/envelopes/{eid}", json={"status": "sent"})
    sign_through(ds, eid)
    ds.control(f"/envelopes/{eid}/recipients/2/sign")  # the membership countersigner
    assert ds.state.connect.wait_idle(5)
    events = []
    for headers, body in hook.posts:
        assert headers["Content-Type"] == "application/json"
        for n, secret in enumerate(SECRETS, start=1):
            assert hmac.compare_digest(headers[f"X-Docusign-Signature-{n}"], expected_signature(secret, body))
        assert "X-Docusign-Signature-3" not in headers
        message = json.loads(body)
        events.append(message["event"])
        assert message["apiVersion"] == "v2.1"
        assert message["uri"] == f"/restapi/v2.1/accounts/{c.DEMO_ACCOUNT_ID}/envelopes/{eid}"
        assert message["retryCount"] == 0
        assert isinstance(message["configurationId"], int)
        assert message["generatedDateTime"].endswith("Z")
        data = message["data"]
        assert data["envelopeId"] == eid
        assert data["accountId"] == c.DEMO_ACCOUNT_ID
        assert data["userId"] == c.DEMO_USER_ID
        summary = data["envelopeSummary"]
        if message["event"].startswith("recipient-"):
            continue  # see test_sandbox_routing.py
        assert summary["status"] == message["event"].removeprefix("envelope-")
        assert "statusChangedDateTime" in summary
        assert summary["recipients"]["signers"][0]["email"] == "ada@example.com"
    events = [e for e in events if e.startswith("envelope-")]
    assert events == ["envelope-sent", "envelope-delivered", "envelope-completed"]
    deliveries = ds.control("/connect/deliveries", method="GET")
    deliveries = [d for d in deliveries if d["event"].startswith("envelope-")]
    assert [(d["event"], d["status_code"], d["retry_count"]) for d in deliveries] == [
        ("envelope-sent", 200, 0),
        ("envelope-delivered", 200, 0),
        ("envelope-completed", 200, 0),
    ]
    assert all(d["envelope_id"] == eid for d in deliveries)


def test_body_is_raw_bytes_to_verify(ds, listener):
    """The signature covers the exact bytes; re-serialised JSON would not match."""
    hook, url = listener
    connect(ds, url, secrets=["s"])
    role = ds.role(name="Zoë Ünïcode")
    ds.create(status="sent", templateRoles=[role], emailSubject="Grüße")
    assert ds.state.connect.wait_idle(5)
    # recipient-sent, then envelope-sent
    (_, (headers, body)) = hook.posts
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert compact != body
    assert headers["X-Docusign-Signature-1"] == expected_signature("s", body)
    assert headers["X-Docusign-Signature-1"] != expected_signature("s", compact)
    assert "Zoë Ünïcode".encode() in body


def test_declined_and_voided_events(ds, listener):
    hook, url = listener
    connect(ds, url)
    declined = ds.sent_envelope()
    page = ds.client.get(ds.signing_path(declined))
    decline = page.get_data(as_text=True).split('action="')[2].split('"')[0]
    assert decline.endswith("/decline")
    ds.client.post(decline)
    voided = ds.sent_envelope()
    ds.rest("PUT", f"/envelopes/{voided}", json={"status": "voided", "voidedReason": "x"})
    assert ds.state.connect.wait_idle(5)
    events = [(json.loads(b)["data"]["envelopeId"], json.loads(b)["event"]) for _, b in hook.posts]
    assert (declined, "envelope-declined") in events
    assert (voided, "envelope-voided") in events
    voided_summary = [
        json.loads(b)["data"]["envelopeSummary"]
        for _, b in hook.posts
        if json.loads(b)["event"] == "envelope-voided"
    ][0]
    assert voided_summary["voidedReason"] == "x"


def test_retry_on_500(ds, listener):
    hook, url = listener
    hook.fail_next = 2
    connect(ds, url)
    eid = ds.sent_envelope()
    assert ds.state.connect.wait_idle(5)
    deliveries = ds.control("/connect/deliveries", method="GET")
    # the first message (recipient-sent) takes the two failures; envelope-sent then goes through
    assert [(d["status_code"], d["retry_count"]) for d in deliveries] == [
        (500, 0),
        (500, 1),
        (200, 2),
        (200, 0),
    ]
    retry_counts = [json.loads(body)["retryCount"] for _, body in hook.posts]
    assert retry_counts == [0, 1, 2, 0]
    # each attempt is signed over its own body
    for headers, body in hook.posts:
        assert headers["X-Docusign-Signature-1"] == expected_signature(SECRETS[0], body)
    assert all(d["envelope_id"] == eid for d in deliveries)


def test_gives_up_after_the_schedule(ds, listener):
    hook, url = listener
    hook.fail_next = 10
    connect(ds, url)
    ds.sent_envelope()
    assert ds.state.connect.wait_idle(5)
    deliveries = ds.control("/connect/deliveries", method="GET")
    # first try plus one retry per configured delay (0.05, 0.1), for each of the two
    # messages (recipient-sent, envelope-sent)
    assert [d["retry_count"] for d in deliveries] == [0, 1, 2, 0, 1, 2]


def test_retry_on_connection_error(ds):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connect(ds, f"http://127.0.0.1:{port}/hook")
    ds.sent_envelope()
    assert ds.state.connect.wait_idle(5)
    deliveries = ds.control("/connect/deliveries", method="GET")
    assert [d["retry_count"] for d in deliveries] == [0, 1, 2, 0, 1, 2]
    assert all("error" in d and "status_code" not in d for d in deliveries)


def test_delivery_does_not_block_the_request(ds, listener):
    hook, url = listener
    hook.fail_next = 10
    ds.app.config["SANDBOX_CONNECT_RETRY_DELAYS"] = (0.5,)
    connect(ds, url)
    started = time.monotonic()
    assert ds.create(status="sent").status_code == 201
    assert time.monotonic() - started < 0.4
    assert ds.state.connect.wait_idle(5)


def test_disabled_or_unconfigured_sends_nothing(ds, listener):
    hook, url = listener
    ds.sent_envelope()
    connect(ds, url, enabled=False)
    ds.sent_envelope()
    assert ds.state.connect.wait_idle(5)
    assert hook.posts == []
    assert ds.control("/connect/deliveries", method="GET") == []


def test_bad_connect_config(client):
    for body in [{"url": "ftp://x"}, {"url": "http://x", "hmac_secrets": "s"}, {}]:
        assert client.post("/_sandbox/connect", json=body).status_code == 400
