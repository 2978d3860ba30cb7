"""The partner-webhook sender against a real receiver on loopback."""

from __future__ import annotations

import json
import socket
import time
import typing as t

import pytest
import requests
import standardwebhooks

from gateway.services import webhook_destinations
from gateway.services import webhook_sender
from gateway.settings import DEFAULTS
from tests.webhooks.conftest import Receiver
from tests.webhooks.conftest import deliver
from tests.webhooks.conftest import events
from tests.webhooks.conftest import new_envelope
from tests.webhooks.conftest import report
from tests.webhooks.conftest import rotate_secret
from tests.webhooks.conftest import write_policy

LATER = 10 * 24 * 3600  # far past every retry's next_attempt_at


def test_signature_verifies_as_a_receiver_would(hooked: t.Any, receiver: Receiver) -> None:
    secret = rotate_secret(hooked)
    assert secret.startswith("whsec_")
    envelope_id = new_envelope(hooked)
    report(hooked, envelope_id, "completed")
    counts = deliver(hooked)
    assert counts["delivered"] == 2
    assert len(receiver.requests) == 2
    for (headers, body), event in zip(receiver.requests, events(hooked), strict=True):
        assert headers["content-type"] == "application/json"
        assert headers["webhook-id"] == event["event_id"]
        assert body == event["payload"].encode()  # the stored bytes, exactly
        data = standardwebhooks.Webhook(secret).verify(body, headers)
        assert data["data"]["envelope_id"] == envelope_id
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            standardwebhooks.Webhook("whsec_" + "A" * 32).verify(body, headers)
    assert [e["state"] for e in events(hooked)] == ["delivered", "delivered"]
    assert [json.loads(b)["type"] for _, b in receiver.requests] == [
        "envelope.signer_completed", "envelope.completed"]


def test_rotation_with_grace_sends_both_signatures(hooked: t.Any, receiver: Receiver) -> None:
    old = rotate_secret(hooked)
    new = rotate_secret(hooked, grace=3600)
    assert new != old
    report(hooked, new_envelope(hooked), "voided")
    assert deliver(hooked)["delivered"] == 1
    headers, body = receiver.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    standardwebhooks.Webhook(old).verify(body, headers)
    standardwebhooks.Webhook(new).verify(body, headers)
    # once the grace is over, only the new secret signs
    newest = rotate_secret(hooked, grace=0)
    report(hooked, new_envelope(hooked), "voided")
    deliver(hooked)
    headers, body = receiver.requests[1]
    assert len(headers["webhook-signature"].split(" ")) == 1
    standardwebhooks.Webhook(newest).verify(body, headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(new).verify(body, headers)


def test_receiver_down_then_up_delivers_every_event_once(hooked: t.Any, receiver: Receiver) -> None:
    rotate_secret(hooked)
    port = receiver.port
    receiver.stop()  # down: connection refused
    for _ in range(3):
        report(hooked, new_envelope(hooked), "completed")
    counts = deliver(hooked)
    assert counts["delivered"] == 0 and counts["retry"] == 3  # one head event per envelope
    assert {e["last_result"] for e in events(hooked) if e["attempts"]} == {"connection error"}
    assert all(e["state"] == "pending" for e in events(hooked))
    up = Receiver(port)
    try:
        for _ in range(5):
            deliver(hooked, now=time.time() + LATER)
        stored = {e["event_id"] for e in events(hooked)}
        assert all(e["state"] == "delivered" for e in events(hooked))
        assert set(up.ids()) == stored and len(stored) == 6
        assert len(up.ids()) == len(set(up.ids()))  # each webhook-id once (nothing to dedup)
    finally:
        up.stop()


def test_receiver_500_is_retried_later(hooked: t.Any, receiver: Receiver) -> None:
    rotate_secret(hooked)
    receiver.answers = [500]
    report(hooked, new_envelope(hooked), "voided")
    before = time.time()
    assert deliver(hooked)["retry"] == 1
    (event,) = events(hooked)
    assert event["state"] == "pending" and event["attempts"] == 1
    assert event["last_result"] == "HTTP 500"
    assert event["next_attempt_at"] > before
    deliver(hooked)  # not due yet: nothing sent
    assert len(receiver.requests) == 1
    receiver.answers = [200]
    deliver(hooked, now=time.time() + LATER)
    (event,) = events(hooked)
    assert event["state"] == "delivered" and event["attempts"] == 2
    assert receiver.ids() == [event["event_id"]] * 2  # the same webhook-id on every attempt


def test_retries_give_up_after_the_schedule(app: t.Any, receiver: Receiver) -> None:
    from tests.conftest import add_partner

    app.config.update(WEBHOOK_RETRY_SCHEDULE=(1, 1), WEBHOOK_RETRY_WINDOW=0)
    add_partner(app, "example")
    write_policy(app, receiver.url)
    rotate_secret(app)
    receiver.answers = [503]
    report(app, new_envelope(app), "voided")
    for i in range(5):
        deliver(app, now=time.time() + LATER * (i + 1))
    (event,) = events(app)
    assert event["state"] == "failed" and event["attempts"] == 3
    assert "retries exhausted" in event["last_result"]


def test_default_schedule_spans_a_day() -> None:
    assert sum(DEFAULTS["WEBHOOK_RETRY_SCHEDULE"]) > 24 * 3600


def test_410_fails_without_retry(hooked: t.Any, receiver: Receiver) -> None:
    rotate_secret(hooked)
    receiver.answers = [410]
    report(hooked, new_envelope(hooked), "voided")
    assert deliver(hooked)["failed"] == 1
    deliver(hooked, now=time.time() + LATER)
    (event,) = events(hooked)
    assert event["state"] == "failed" and event["last_result"] == "HTTP 410: receiver gone"
    assert len(receiver.requests) == 1


def test_redirect_is_not_followed(hooked: t.Any, receiver: Receiver) -> None:
    rotate_secret(hooked)
    receiver.answers = [302]
    receiver.location = receiver.url.replace("/hooks", "/elsewhere")
    report(hooked, new_envelope(hooked), "voided")
    assert deliver(hooked)["retry"] == 1
    (event,) = events(hooked)
    assert event["state"] == "pending" and "redirect not followed" in event["last_result"]
    assert [h.get("method", "POST") for h, _ in receiver.requests] == ["POST"]  # no GET follow-up


def test_host_resolving_to_private_address_is_refused(app: t.Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import add_partner

    add_partner(app, "example")
    write_policy(app, "https://hooks.partner.example/in")
    rotate_secret(app)
    report(app, new_envelope(app), "voided")
    resolved: list[str] = []

    def fake_getaddrinfo(host: str, port: t.Any, *args: t.Any, **kw: t.Any) -> list[t.Any]:
        resolved.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))]

    def no_connect(*args: t.Any, **kw: t.Any) -> t.NoReturn:
        raise AssertionError("must not connect")

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(requests.Session, "post", no_connect)
    assert deliver(app)["retry"] == 1
    (event,) = events(app)
    assert resolved == ["hooks.partner.example"]
    assert event["state"] == "pending" and event["last_result"] == "refused: private address"
    assert event["next_attempt_at"] > time.time() - 1


@pytest.mark.parametrize(("url", "address", "ok"), [
    ("https://hooks.example/x", "169.254.169.254", False),
    ("https://hooks.example/x", "127.0.0.1", False),  # a public name must not reach loopback
    ("https://hooks.example/x", "::1", False),
    ("https://hooks.example/x", "fd00:ec2::254", False),
    ("https://hooks.example/x", "224.0.0.1", False),
    ("https://hooks.example/x", "0.0.0.0", False),  # noqa: S104
    ("https://hooks.example/x", "::ffff:192.168.1.1", False),
    ("https://hooks.example/x", "93.184.216.34", True),
    ("http://127.0.0.1:9/x", "127.0.0.1", True),  # the policy itself names loopback
    ("http://localhost:9/x", "127.0.0.1", True),
])
def test_check_destination(monkeypatch: pytest.MonkeyPatch, url: str, address: str, ok: bool) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(family, socket.SOCK_STREAM, 6, "",
                                                                  (address, 443))])
    if ok:
        webhook_destinations.check_destination(url)
    else:
        with pytest.raises(webhook_destinations.Refused):
            webhook_destinations.check_destination(url)


def test_the_request_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name is resolved once, and the connection uses that answer."""
    answers = iter(["93.184.216.34", "10.0.0.7"])
    lookups: list[str] = []

    def getaddrinfo(host: str, *a: t.Any, **k: t.Any) -> list[t.Any]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 443))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    target = webhook_destinations.check_destination("https://hooks.example:8443/in?x=1")
    assert target.pinned_url == "https://93.184.216.34:8443/in?x=1"
    assert (target.host_header, target.hostname) == ("hooks.example:8443", "hooks.example")
    assert lookups == ["hooks.example"]
    with webhook_destinations.pinned_session(target) as http:
        adapter = http.get_adapter(target.pinned_url)
        assert adapter.poolmanager.connection_pool_kw["server_hostname"] == "hooks.example"
        assert adapter.poolmanager.connection_pool_kw["assert_hostname"] == "hooks.example"


def test_policy_without_webhook_url_holds_and_replay_requeues(hooked: t.Any, receiver: Receiver) -> None:
    from gateway import store
    from gateway.services import webhook_outbox

    rotate_secret(hooked)
    report(hooked, new_envelope(hooked), "voided")
    write_policy(hooked, None)
    assert deliver(hooked)["held"] == 1
    (event,) = events(hooked)
    assert event["state"] == "held" and receiver.requests == []
    write_policy(hooked, receiver.url)
    deliver(hooked, now=time.time() + LATER)
    assert events(hooked)[0]["state"] == "held"  # held stays held until replayed
    with hooked.app_context(), store.transaction() as conn:
        assert webhook_outbox.replay(conn, event["event_id"], now=time.time())
    assert events(hooked)[0]["state"] == "pending"
    assert deliver(hooked)["delivered"] == 1
    assert receiver.ids() == [event["event_id"]]


def test_per_envelope_order_is_kept(hooked: t.Any, receiver: Receiver) -> None:
    rotate_secret(hooked)
    first, second = new_envelope(hooked), new_envelope(hooked)
    report(hooked, first, "completed")  # two events: signer_completed, then completed
    report(hooked, second, "voided")
    a1, a2, b1 = events(hooked)
    receiver.answers = [500, 204]  # the first envelope's first event fails once
    deliver(hooked)
    assert receiver.ids() == [a1["event_id"], b1["event_id"]]  # a2 waits behind a1
    assert [e["state"] for e in events(hooked)] == ["pending", "pending", "delivered"]
    deliver(hooked, now=time.time() + LATER)
    assert receiver.ids() == [a1["event_id"], b1["event_id"], a1["event_id"], a2["event_id"]]
    assert all(e["state"] == "delivered" for e in events(hooked))


def test_one_sender_per_fleet(hooked: t.Any, receiver: Receiver) -> None:
    rotate_secret(hooked)
    report(hooked, new_envelope(hooked), "voided")
    assert deliver(hooked, owner="other-process")["lease"] is True
    report(hooked, new_envelope(hooked), "voided")
    assert deliver(hooked)["lease"] is False  # the other holds the lease
    assert len(receiver.requests) == 1
    with hooked.app_context():
        webhook_sender.release_lease("other-process")
    assert deliver(hooked)["delivered"] == 1


def test_killed_mid_delivery_stays_pending(hooked: t.Any, receiver: Receiver,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rotate_secret(hooked)
    report(hooked, new_envelope(hooked), "voided")
    real_post = requests.Session.post

    def post_then_die(self: requests.Session, *args: t.Any, **kw: t.Any) -> t.NoReturn:
        real_post(self, *args, **kw).close()  # the receiver got it...
        raise KeyboardInterrupt  # ...and the process died before recording the answer

    monkeypatch.setattr(requests.Session, "post", post_then_die)
    with pytest.raises(KeyboardInterrupt):
        deliver(hooked)
    assert events(hooked)[0]["state"] == "pending"
    monkeypatch.setattr(requests.Session, "post", real_post)
    with hooked.app_context():
        webhook_sender.release_lease(webhook_sender.OWNER)
    deliver(hooked)
    assert events(hooked)[0]["state"] == "delivered"
    ids = receiver.ids()
    assert len(ids) == 2 and len(set(ids)) == 1  # at least once; dedup by webhook-id leaves one


def test_no_secret_is_retried_not_sent_unsigned(hooked: t.Any, receiver: Receiver) -> None:
    report(hooked, new_envelope(hooked), "voided")
    assert deliver(hooked)["retry"] == 1
    assert receiver.requests == []
    assert "webhook-secret" in events(hooked)[0]["last_result"]


def test_metrics_count_outcomes_and_oldest_age(hooked: t.Any, receiver: Receiver) -> None:
    rotate_secret(hooked)
    receiver.answers = [500]
    report(hooked, new_envelope(hooked), "voided")
    deliver(hooked)
    text = hooked.extensions["metrics"].exposition().decode()
    assert 'gateway_webhook_deliveries_total{outcome="retry"} 1.0' in text
    assert "gateway_webhook_oldest_pending_age_seconds" in text
    line = [x for x in text.splitlines() if x.startswith("gateway_webhook_oldest_pending_age_seconds ")]
    assert float(line[0].split()[1]) >= 0.0


def test_sender_thread_starts_on_first_request_when_enabled(tmp_path: t.Any, sandbox: t.Any,
                                                            rsa_private_pem: str,
                                                            receiver: Receiver) -> None:
    from tests.conftest import add_partner
    from tests.conftest import make_gateway

    (tmp_path / "on").mkdir()
    app = make_gateway(tmp_path / "on", sandbox.url, rsa_private_pem, WEBHOOK_SENDER=True,
                       WEBHOOK_INTERVAL=0.05)
    add_partner(app, "example")
    write_policy(app, receiver.url)
    rotate_secret(app)
    report(app, new_envelope(app), "voided")
    assert "webhook_sender_stop" not in app.extensions
    app.test_client().get("/healthz")
    stop = app.extensions["webhook_sender_stop"]
    try:
        deadline = time.monotonic() + 10
        while events(app)[0]["state"] != "delivered" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events(app)[0]["state"] == "delivered"
    finally:
        stop.set()
    (tmp_path / "off").mkdir()
    off = make_gateway(tmp_path / "off", sandbox.url, rsa_private_pem)  # TESTING: off by default
    off.test_client().get("/healthz")
    assert "webhook_sender_stop" not in off.extensions
