"""The example partner site: against a real gateway and emulator, then a fake gateway (no browser)."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import json
import re
import threading
import time
import typing as t
import urllib.parse
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask import abort as flask_abort
from flask import redirect as flask_redirect
from flask import request as flask_request
from standardwebhooks import Webhook
from werkzeug.serving import make_server

from examples.partner_site import create_app as create_site
from examples.partner_site.hooks import StatusBook
from examples.partner_site.verify import GatewayTokenVerifier
from examples.partner_site.verify import TokenRejected
from gateway.cli.demo_stack import DemoStack
from gateway.services import relay_tokens
from tests.embedded import act
from tests.embedded import query
from tests.embedded import wait_for

_IFRAME_RE = re.compile(r'<iframe id="signing-frame" title="Signing" src="([^"]+)"')


@pytest.fixture(scope="module")
def stack() -> t.Iterator[DemoStack]:
    with DemoStack(sandbox_port=0, gateway_port=0, site_port=0,
                   sandbox_config={"SANDBOX_CONNECT_RETRY_DELAYS": (0.05,)}) as running:
        yield running


@pytest.fixture
def browser() -> t.Iterator[requests.Session]:
    """A visitor's browser: cookies, redirects followed."""
    with requests.Session() as session:
        yield session


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, name
    return match.group(1)


def start(stack: DemoStack, browser: requests.Session, **overrides: str) -> requests.Response:
    form = browser.get(stack.site_url + "/", timeout=10).text
    data = {"csrf": hidden(form, "csrf"), "submission": hidden(form, "submission"),
            "name": "Grace Hopper", "email": "grace@example.com", "member_number": "4711",
            "plan": "family"} | overrides
    return browser.post(stack.site_url + "/sign", data=data, timeout=30)


def signing_url(page: requests.Response) -> str:
    assert page.status_code == 200, page.text
    match = _IFRAME_RE.search(page.text)
    assert match
    return match.group(1).replace("&amp;", "&")


def finish(browser: requests.Session, back: str) -> requests.Response:
    """Follow DocuSign's redirect: the relay, then the site's return page."""
    return browser.get(back, timeout=30)


def outcome(page: requests.Response) -> str:
    match = re.search(r'data-outcome="([a-z]+)"', page.text)
    assert match, page.text
    return match.group(1)


def key(stack: DemoStack) -> str:
    assert stack.site_app is not None
    return str(stack.site_app.config["GATEWAY_KEY"])


def test_sign_and_see_the_verified_completion(stack, browser) -> None:
    page = start(stack, browser)
    assert [r.status_code for r in page.history] == [303]  # post/redirect/get
    assert page.request.method == "GET"
    url = signing_url(page)
    assert url.startswith(stack.sandbox_url + "/Signing/")
    csp = page.headers["Content-Security-Policy"]
    assert f"frame-src 'self' {stack.gateway_url} {stack.sandbox_url}" in csp
    result = finish(browser, act(url, "sign"))
    assert result.status_code == 200
    assert result.url.startswith(stack.site_url + "/signed?")
    # the membership agreement waits for the owner's countersignature
    assert outcome(result) == "waiting"
    assert "Signed, waiting for our countersignature" in result.text
    assert "Verified" in result.text
    assert result.headers["Referrer-Policy"] == "no-referrer"
    env_id = query(result.url)["envelope_id"]
    record = requests.get(f"{stack.sandbox_url}/_sandbox/envelopes/{env_id}", timeout=5).json()
    counter = next(r["recipientId"] for r in record["recipients"] if r["roleName"] == "Countersigner")
    requests.post(f"{stack.sandbox_url}/_sandbox/envelopes/{env_id}/recipients/{counter}/sign",
                  json={}, timeout=5).raise_for_status()

    def completed() -> bool:
        status = browser.get(f"{stack.site_url}/status/{env_id}", timeout=10).json()
        return status["status"] == "completed" and status["signer_status"] == "completed"

    wait_for(completed, timeout=15)


def test_the_partner_key_never_reaches_the_browser(stack, browser) -> None:
    pages = [browser.get(stack.site_url + "/", timeout=10), start(stack, browser)]
    pages.append(finish(browser, act(signing_url(pages[-1]), "cancel")))
    secret_part = key(stack).split("_")[2]
    for page in pages:
        assert secret_part not in page.text
        assert secret_part not in str(page.headers)
        assert "pgw_" not in page.text


def test_decline_and_cancel_outcomes(stack, browser) -> None:
    declined = finish(browser, act(signing_url(start(stack, browser)), "decline"))
    assert outcome(declined) == "declined"
    cancelled = finish(browser, act(signing_url(start(stack, browser)), "cancel"))
    assert outcome(cancelled) == "cancelled"
    assert 'data-event="cancel"' in cancelled.text


def test_tampered_tokens_are_refused(stack, browser) -> None:
    result = finish(browser, act(signing_url(start(stack, browser)), "cancel"))
    params = query(result.url)
    token = params["gateway_token"]
    head, payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    forged_payload = jwt.utils.base64url_encode(
        jwt.utils.base64url_encode(b"") + payload.encode()).decode()  # garbled payload
    upgraded = jwt.encode(claims | {"status": "completed", "event": "signing_complete"},
                          ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                          headers={"kid": kid})
    cases = {
        "signature flipped": f"{head}.{payload}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}",
        "payload swapped": f"{head}.{forged_payload}.{sig}",
        "re-signed by someone else": upgraded,
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "HS256 with the public key": jwt.encode(claims, "x" * 32, algorithm="HS256",
                                                headers={"kid": kid}),
        "not a token": "hello",
    }
    for name, forged in cases.items():
        page = browser.get(stack.site_url + "/signed", params={
            "envelope_id": params["envelope_id"], "event": "signing_complete",
            "gateway_token": forged}, timeout=10)
        assert page.status_code == 400, name
        assert outcome(page) == "unverified", name
    # a genuine token presented for another envelope id is refused too
    other = browser.get(stack.site_url + "/signed", params={
        "envelope_id": "someone-else", "event": "cancel", "gateway_token": token}, timeout=10)
    assert outcome(other) == "unverified"


def test_tokens_for_another_partner_or_expired_are_refused(stack, browser) -> None:

    assert stack.gateway_app is not None
    with stack.gateway_app.test_request_context(base_url=stack.gateway_url):
        other = relay_tokens.gateway_token(partner="other", envelope_id="e", event="cancel",
                                           status="sent")
        stack.gateway_app.config["GATEWAY_TOKEN_TTL"] = -120
        expired = relay_tokens.gateway_token(partner="example", envelope_id="e", event="cancel",
                                             status="sent")
        stack.gateway_app.config["GATEWAY_TOKEN_TTL"] = 900
    for token in (other, expired):
        page = browser.get(stack.site_url + "/signed", params={
            "envelope_id": "e", "event": "cancel", "gateway_token": token}, timeout=10)
        assert outcome(page) == "unverified"


def test_form_needs_its_csrf_token(stack, browser) -> None:
    browser.get(stack.site_url + "/", timeout=10)
    resp = browser.post(stack.site_url + "/sign", data={"csrf": "forged", "name": "x"}, timeout=10)
    assert resp.status_code == 400


def test_invalid_fields_come_back_from_the_gateway(stack, browser) -> None:
    page = start(stack, browser, member_number="12ab")
    assert page.status_code == 422
    assert 'id="problem"' in page.text
    assert "Field invalid" in page.text


def test_double_submission_makes_one_envelope(stack, browser) -> None:
    form = browser.get(stack.site_url + "/", timeout=10).text
    data = {"csrf": hidden(form, "csrf"), "submission": hidden(form, "submission"),
            "name": "Grace Hopper", "email": "grace@example.com", "member_number": "1",
            "plan": "basic"}
    first = browser.post(stack.site_url + "/sign", data=data, timeout=30)
    second = browser.post(stack.site_url + "/sign", data=data, timeout=30)
    envelope = re.compile(r'id="envelope-id">([^<]+)<')
    assert envelope.search(first.text).group(1) == envelope.search(second.text).group(1)


def test_status_page_only_for_this_browsers_envelopes(stack, browser) -> None:
    result = finish(browser, act(signing_url(start(stack, browser)), "cancel"))
    env_id = query(result.url)["envelope_id"]
    with requests.Session() as stranger:
        assert stranger.get(f"{stack.site_url}/status/{env_id}", timeout=10).status_code == 404


# --- the verifier on its own ------------------------------------------------------------


def test_verifier_refetches_once_for_an_unknown_kid(stack, monkeypatch) -> None:
    verifier = GatewayTokenVerifier(stack.gateway_url + "/.well-known/jwks.json",
                                    issuer=stack.gateway_url, audience="example", min_refetch=60)
    fetches = []
    real_fetch = verifier._fetch
    monkeypatch.setattr(verifier, "_fetch", lambda: fetches.append(1) or real_fetch())
    unknown = jwt.encode({"sub": "e"}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                         headers={"kid": "nope"})
    for _ in range(3):
        with pytest.raises(TokenRejected, match="unknown kid"):
            verifier.verify(unknown)
    assert len(fetches) == 1
    with pytest.raises(TokenRejected, match="algorithm"):
        verifier.verify(jwt.encode({"sub": "e"}, "k" * 32, algorithm="HS256"))


def test_verifier_refuses_when_the_jwks_is_unreachable() -> None:
    verifier = GatewayTokenVerifier("http://127.0.0.1:9/.well-known/jwks.json", issuer="x",
                                    audience="example", timeout=0.5)
    token = jwt.encode({"sub": "e", "exp": int(time.time()) + 60},
                       ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                       headers={"kid": "k"})
    with pytest.raises(TokenRejected, match="JWKS"):
        verifier.verify(token)


# --- the site's own surface, against a fake gateway ---------------------------------------
#
# The real gateway above shows the site works with it; the fake below plays the parts the
# real one may not have yet (signer_status, a countersigner, webhooks) and counts calls.


class FakeGateway:
    """The partner API, JWKS, and a one-button signing page, on a real loopback port."""

    KEY = "pgw_fake_partnerkey"

    def __init__(self) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.kid = "fake-1"
        self.envelopes: dict[str, dict[str, t.Any]] = {}
        self.idempotency: dict[str, str] = {}
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.site_url = ""  # where the fake signing page's buttons send the browser back
        self.app = self._build()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_status(self, envelope_id: str, status: str, signer_status: str | None) -> None:
        self.envelopes[envelope_id].update(status=status, signer_status=signer_status)

    def token(self, envelope_id: str, event: str, status: str, signer_status: str | None = None,
              *, audience: str = "example", **extra: t.Any) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": audience, "sub": envelope_id, "envelope_id": envelope_id,
                  "event": event, "status": status, "reference": "ref-1", "iat": now,
                  "exp": now + 300, "jti": uuid.uuid4().hex} | extra
        if signer_status is not None:
            claims["signer_status"] = signer_status
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.kid})

    def _build(self) -> Flask:
        app = Flask("fake_gateway")

        def authorized() -> None:
            if flask_request.headers.get("Authorization") != f"Bearer {self.KEY}":
                flask_abort(401)

        @app.get("/.well-known/jwks.json")
        def jwks() -> t.Any:
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key()))
            return {"keys": [jwk | {"kid": self.kid, "alg": "ES256", "use": "sig"}]}

        @app.post("/v1/envelopes")
        def create() -> t.Any:
            authorized()
            self.calls["create", ""] += 1
            body = flask_request.get_json()
            if not body["fields"]["member_number"].isdigit():
                return {"code": "field_invalid", "title": "Field invalid",
                        "detail": "member_number does not match the pattern",
                        "errors": {"fields": {"member_number": ["must be digits"]}}}, 422
            key = flask_request.headers.get("Idempotency-Key", "")
            if key not in self.idempotency:
                envelope_id = str(uuid.uuid4())
                self.envelopes[envelope_id] = {"status": "created", "signer_status": "created",
                                               "reference": body["reference"]}
                self.idempotency[key] = envelope_id
            return {"envelope_id": self.idempotency[key], "status": "created"}, 201

        @app.post("/v1/envelopes/<envelope_id>/recipient-view")
        def view(envelope_id: str) -> t.Any:
            authorized()
            self.calls["view", envelope_id] += 1
            env = self.envelopes[envelope_id]
            if env["status"] in ("completed", "declined", "voided"):
                return {"code": "envelope_not_signable", "title": "Envelope not signable"}, 409
            env["status"] = "sent" if env["status"] == "created" else env["status"]
            n = self.calls["view", envelope_id]
            return {"url": f"{self.url}/signing/{envelope_id}/{n}"}, 201

        @app.get("/v1/envelopes/<envelope_id>")
        def status(envelope_id: str) -> t.Any:
            authorized()
            self.calls["status", envelope_id] += 1
            env = self.envelopes[envelope_id]
            return {"envelope_id": envelope_id, "status": env["status"],
                    "signer_status": env["signer_status"], "template": "membership",
                    "reference": env["reference"], "last_event": None,
                    "updated_at": "2030-01-01T00:00:00Z"}

        @app.get("/signing/<envelope_id>/<int:n>")
        def signing_page(envelope_id: str, n: int) -> str:
            return (f'<p id="signer-name">Session {n}</p>'
                    f'<a id="sign" href="/act/{envelope_id}/sign">Sign</a> '
                    f'<a id="cancel" href="/act/{envelope_id}/cancel">Cancel</a>')

        @app.get("/act/<envelope_id>/<action>")
        def act_(envelope_id: str, action: str) -> t.Any:
            # like the relay: record, then 303 to the partner with a signed token; the fake
            # template has a countersigner, so signing leaves the envelope "sent"
            if action == "sign":
                self.set_status(envelope_id, "sent", "completed")
                event = "signing_complete"
            else:
                event = "cancel"
            env = self.envelopes[envelope_id]
            token = self.token(envelope_id, event, env["status"], env["signer_status"])
            query = urllib.parse.urlencode({"envelope_id": envelope_id, "event": event,
                                            "gateway_token": token})
            return flask_redirect(f"{self.site_url}/signed?{query}", 303)

        return app


WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


@pytest.fixture(scope="module")
def fake() -> t.Iterator[FakeGateway]:
    with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
def site(fake: FakeGateway) -> Flask:
    return create_site({"GATEWAY_URL": fake.url, "GATEWAY_KEY": FakeGateway.KEY,
                        "SITE_URL": "http://site.test", "WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "STATUS_FALLBACK_SECONDS": 60.0})


@pytest.fixture
def client(site: Flask) -> t.Any:
    return site.test_client()


def submit(client: t.Any, **overrides: str) -> t.Any:
    """The member fills in the form and presses the button (no redirect followed)."""
    form = client.get("/").get_data(as_text=True)
    data = {"csrf": hidden(form, "csrf"), "submission": hidden(form, "submission"),
            "name": "Grace Hopper", "email": "grace@example.com", "member_number": "4711",
            "plan": "family"} | overrides
    return client.post("/sign", data=data)


def started(client: t.Any) -> str:
    """An envelope this browser started; its id."""
    resp = submit(client)
    assert resp.status_code == 303, resp.get_data(as_text=True)
    return resp.headers["Location"].rsplit("/", 1)[1]


def visible_text(html: str) -> str:
    html = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", html)
    return " ".join(re.sub(r"(?s)<[^>]*>", " ", html).split())


def returned(client: t.Any, fake: FakeGateway, envelope_id: str, event: str, status: str,
             signer_status: str | None = None) -> t.Any:
    token = fake.token(envelope_id, event, status, signer_status)
    return client.get("/signed", query_string={"envelope_id": envelope_id, "event": event,
                                               "gateway_token": token})


def webhook(payload: dict[str, t.Any], *, secret: str = WEBHOOK_SECRET, msg_id: str | None = None,
            timestamp: dt.datetime | None = None) -> tuple[bytes, dict[str, str]]:
    """A webhook as the gateway sends it, signed by the standardwebhooks library."""
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    timestamp = timestamp or dt.datetime.now(tz=dt.UTC)
    body = json.dumps(payload)
    signature = Webhook(secret).sign(msg_id, timestamp, body)
    return body.encode(), {"webhook-id": msg_id, "webhook-signature": signature,
                           "webhook-timestamp": str(int(timestamp.timestamp())),
                           "Content-Type": "application/json"}


def event(kind: str, envelope_id: str, status: str, signer_status: str,
          at: str = "2030-01-01T00:00:01Z") -> dict[str, t.Any]:
    return {"type": kind, "timestamp": at,
            "data": {"envelope_id": envelope_id, "status": status, "signer_status": signer_status,
                     "template": "membership", "reference": "site-1"}}


def deliver(client: t.Any, payload: dict[str, t.Any], **kwargs: t.Any) -> t.Any:
    body, headers = webhook(payload, **kwargs)
    return client.post("/hooks/signing", data=body, headers=headers)


def status_json(client: t.Any, envelope_id: str) -> dict[str, t.Any]:
    resp = client.get(f"/envelopes/{envelope_id}/status.json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return t.cast(dict, resp.get_json())


def test_the_form_post_redirects_to_a_get_signing_page(client, fake) -> None:
    resp = submit(client)
    assert resp.status_code == 303
    envelope_id = resp.headers["Location"].rsplit("/", 1)[1]
    assert resp.headers["Location"].endswith(f"/sign/{envelope_id}")
    assert "signing-frame" not in resp.get_data(as_text=True)
    assert fake.calls["view", envelope_id] == 0  # the session opens on the GET
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'src="{fake.url}/signing/{envelope_id}/1"' in html
    assert f'id="envelope-id">{envelope_id}<' in html
    assert f"frame-src 'self' {fake.url}" in page.headers["Content-Security-Policy"]
    # a reload (or Back) is a GET: a fresh single-use signing URL, never a new envelope
    creates = fake.calls["create", ""]
    again = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert f'src="{fake.url}/signing/{envelope_id}/2"' in again
    assert fake.calls["create", ""] == creates


def test_a_double_submission_redirects_to_the_same_envelope(client, fake) -> None:
    form = client.get("/").get_data(as_text=True)
    data = {"csrf": hidden(form, "csrf"), "submission": hidden(form, "submission"),
            "name": "Grace Hopper", "email": "grace@example.com", "member_number": "1",
            "plan": "basic"}
    first, second = client.post("/sign", data=data), client.post("/sign", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    with client.session_transaction() as session:
        assert session["envelopes"].count(first.headers["Location"].rsplit("/", 1)[1]) == 1


def test_invalid_fields_show_the_form_again(client) -> None:
    resp = submit(client, member_number="12ab")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert "Field invalid" in html and "must be digits" in html
    assert 'value="12ab"' in html


OUTCOME_CASES = [
    # (event, status, signer_status, outcome key, words the member reads, resume button)
    ("signing_complete", "completed", "completed", "completed", "Completed", False),
    ("signing_complete", "sent", "completed", "waiting",
     "Signed, waiting for our countersignature", False),
    ("signing_complete", "sent", None, "signed", "We are confirming your signature", False),
    ("decline", "declined", "declined", "declined", "You declined to sign", False),
    ("decline", "sent", "declined", "declined", "Declined", False),
    ("cancel", "sent", "delivered", "cancelled", "Not signed yet", True),
    ("session_timeout", "sent", "delivered", "timeout", "Session timed out", True),
    ("ttl_expired", "sent", "sent", "timeout", "Session timed out", True),
    ("exception", "sent", "delivered", "error", "Something went wrong", True),
    ("id_check_failed", "sent", "delivered", "error", "Identity check failed", True),
    ("cancel", "voided", "sent", "voided", "Withdrawn", False),
]


@pytest.mark.parametrize(("event_", "status", "signer_status", "key", "words", "resume"),
                         OUTCOME_CASES, ids=[c[3] + "-" + c[0] for c in OUTCOME_CASES])
def test_each_outcome_has_its_words_and_style(client, fake, event_, status, signer_status, key,
                                              words, resume) -> None:
    envelope_id = started(client)
    page = returned(client, fake, envelope_id, event_, status, signer_status)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'class="outcome {key}" data-outcome="{key}"' in html
    assert re.search(rf"\.outcome\.{key}\b[^{{]*\{{[^}}]*background", html)  # its own style
    text = visible_text(html)
    assert words in text
    assert ('id="resume-signing"' in html) is resume
    for code in ("signing_complete", "session_timeout", "ttl_expired", "id_check_failed",
                 "exception", "delivered", "signer_status"):
        assert code not in text, code


def test_a_token_without_signer_status_still_verifies(client, fake) -> None:
    envelope_id = started(client)
    page = returned(client, fake, envelope_id, "signing_complete", "completed")
    assert 'data-outcome="completed"' in page.get_data(as_text=True)
    assert 'id="result-status">completed<' in page.get_data(as_text=True)


def test_a_forged_return_is_refused_in_words(client, fake) -> None:
    envelope_id = started(client)
    token = fake.token(envelope_id, "signing_complete", "completed", "completed")
    for forged in (token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"),
                   fake.token(envelope_id, "signing_complete", "completed", audience="other")):
        page = client.get("/signed", query_string={"envelope_id": envelope_id,
                                                   "event": "signing_complete",
                                                   "gateway_token": forged})
        assert page.status_code == 400
        html = page.get_data(as_text=True)
        assert 'data-outcome="unverified"' in html
        assert "could not be verified" in visible_text(html)
        assert "Completed" not in visible_text(html)


def test_resume_signing_opens_a_new_session_for_the_same_envelope(client, fake) -> None:
    envelope_id = started(client)
    first = client.get(f"/sign/{envelope_id}").get_data(as_text=True)
    assert f"/signing/{envelope_id}/1" in first
    cancelled = returned(client, fake, envelope_id, "cancel", "sent", "delivered")
    form = re.search(r'<a class="button" id="resume-signing"\s+href="([^"]+)">Resume signing</a>',
                     cancelled.get_data(as_text=True))
    assert form and form.group(1) == f"/sign/{envelope_id}"
    resumed = client.get(form.group(1))
    assert resumed.status_code == 200
    assert f"/signing/{envelope_id}/2" in resumed.get_data(as_text=True)
    assert fake.calls["view", envelope_id] == 2
    assert fake.calls["create", ""] >= 1
    # only the browser that started it can resume it
    stranger = client.application.test_client()
    assert stranger.get(form.group(1)).status_code == 404
    assert fake.calls["view", envelope_id] == 2


def test_resuming_a_finished_envelope_shows_its_outcome(client, fake) -> None:
    envelope_id = started(client)
    fake.set_status(envelope_id, "completed", "completed")
    page = client.get(f"/sign/{envelope_id}")  # the gateway answers 409: not signable
    html = page.get_data(as_text=True)
    assert 'data-outcome="completed"' in html
    assert "signing-frame" not in html


def test_a_verified_webhook_updates_status_json(client, fake) -> None:
    envelope_id = started(client)
    page = returned(client, fake, envelope_id, "signing_complete", "sent", "completed")
    html = page.get_data(as_text=True)
    assert f'data-poll="/envelopes/{envelope_id}/status.json"' in html
    assert "connect-src 'self'" in page.headers["Content-Security-Policy"]
    before = status_json(client, envelope_id)
    assert before["outcome"]["headline"] == "Signed, waiting for our countersignature"
    resp = deliver(client, event("envelope.completed", envelope_id, "completed", "completed"))
    assert resp.status_code == 200
    assert resp.get_json() == {"ok": True, "duplicate": False}
    calls = fake.calls["status", envelope_id]
    after = status_json(client, envelope_id)
    assert (after["status"], after["source"]) == ("completed", "webhook")
    assert after["outcome"]["key"] == "completed"
    assert after["outcome"]["headline"] == "Completed"
    assert after["outcome"]["poll"] is False
    assert fake.calls["status", envelope_id] == calls  # a final record needs no gateway call


def test_webhooks_accept_the_secret_from_the_environment(fake, monkeypatch) -> None:
    monkeypatch.setenv("PARTNER_WEBHOOK_SECRET", WEBHOOK_SECRET)
    app = create_site({"GATEWAY_URL": fake.url, "GATEWAY_KEY": FakeGateway.KEY})
    body, headers = webhook(event("envelope.voided", "e-env", "voided", "sent"))
    assert app.test_client().post("/hooks/signing", data=body, headers=headers).status_code == 200
    assert app.extensions["status_book"].get("e-env").status == "voided"


def test_bad_webhooks_are_refused_and_change_nothing(client, site) -> None:
    payload = event("envelope.completed", "env-x", "completed", "completed")
    body, headers = webhook(payload)
    tampered = body.replace(b'"completed"', b'"declined"', 1)
    assert tampered != body
    other = "whsec_" + base64.b64encode(b"another secret, 32 bytes long!!!").decode()
    old = dt.datetime.now(tz=dt.UTC) - dt.timedelta(minutes=10)
    cases = {
        "tampered body": (tampered, headers, 401),
        "wrong secret": (*webhook(payload, secret=other), 401),
        "old timestamp": (*webhook(payload, timestamp=old), 401),
        "future timestamp": (*webhook(payload, timestamp=old + dt.timedelta(minutes=30)), 401),
        "timestamp changed": (body, headers | {"webhook-timestamp": str(int(time.time()) - 1)},
                              401),
        "no signature": (body, {k: v for k, v in headers.items() if k != "webhook-signature"},
                         400),
        "garbled signature": (body, headers | {"webhook-signature": "v1"}, 401),
    }
    for name, (data, hdrs, expected) in cases.items():
        resp = client.post("/hooks/signing", data=data, headers=hdrs)
        assert resp.status_code == expected, name
    assert site.extensions["status_book"].get("env-x") is None
    # the untouched original is accepted: the refusals above were about the changes
    assert client.post("/hooks/signing", data=body, headers=headers).status_code == 200
    assert site.extensions["status_book"].get("env-x").status == "completed"


def test_a_webhook_id_is_applied_once(client, site) -> None:
    first = event("envelope.signer_completed", "env-d", "sent", "completed")
    assert deliver(client, first, msg_id="msg_dup").get_json()["duplicate"] is False
    # the same id again, whatever it says, is acknowledged and not applied
    later = event("envelope.completed", "env-d", "completed", "completed",
                  at="2030-01-01T00:00:09Z")
    resp = deliver(client, later, msg_id="msg_dup")
    assert resp.status_code == 200
    assert resp.get_json()["duplicate"] is True
    assert site.extensions["status_book"].get("env-d").status == "sent"
    assert deliver(client, later, msg_id="msg_new").get_json()["duplicate"] is False
    assert site.extensions["status_book"].get("env-d").status == "completed"


def test_late_webhooks_never_move_the_status_backwards(client, site) -> None:
    assert deliver(client, event("envelope.completed", "env-o", "completed", "completed",
                                 at="2030-01-01T00:00:05Z")).status_code == 200
    assert deliver(client, event("envelope.signer_completed", "env-o", "sent", "completed",
                                 at="2030-01-01T00:00:01Z")).status_code == 200
    assert site.extensions["status_book"].get("env-o").status == "completed"


def test_webhooks_without_a_configured_secret_are_refused(fake, monkeypatch) -> None:
    monkeypatch.delenv("PARTNER_WEBHOOK_SECRET", raising=False)
    app = create_site({"GATEWAY_URL": fake.url, "GATEWAY_KEY": FakeGateway.KEY})
    body, headers = webhook(event("envelope.completed", "env-n", "completed", "completed"))
    assert app.test_client().post("/hooks/signing", data=body, headers=headers).status_code == 503
    with pytest.raises(ValueError, match="whsec_"):
        create_site({"GATEWAY_URL": fake.url, "GATEWAY_KEY": "k", "WEBHOOK_SECRET": "whsec_!!"})


def test_a_genuine_webhook_with_a_strange_body_is_refused(client) -> None:
    for payload in ({"type": "envelope.completed"}, {"type": "envelope.completed",
                                                     "data": {"envelope_id": 7}}):
        assert deliver(client, payload).status_code == 400
    unknown = deliver(client, event("envelope.archived", "env-u", "completed", "completed"))
    assert unknown.status_code == 200 and unknown.get_json()["ignored"] == "envelope.archived"


def test_status_json_falls_back_to_the_gateway_at_most_every_interval(fake) -> None:
    now = [1000.0]
    app = create_site({"GATEWAY_URL": fake.url, "GATEWAY_KEY": FakeGateway.KEY,
                       "STATUS_FALLBACK_SECONDS": 15.0})
    app.extensions["status_book"] = StatusBook(clock=lambda: now[0])
    client = app.test_client()
    envelope_id = started(client)
    fake.set_status(envelope_id, "sent", "completed")
    assert status_json(client, envelope_id)["outcome"]["key"] == "waiting"
    assert fake.calls["status", envelope_id] == 1
    fake.set_status(envelope_id, "completed", "completed")
    now[0] += 10
    answer = status_json(client, envelope_id)
    assert (answer["status"], fake.calls["status", envelope_id]) == ("sent", 1)
    now[0] += 6
    answer = status_json(client, envelope_id)
    assert (answer["status"], answer["source"]) == ("completed", "gateway")
    assert answer["outcome"]["headline"] == "Completed"
    assert fake.calls["status", envelope_id] == 2
    now[0] += 60
    status_json(client, envelope_id)
    assert fake.calls["status", envelope_id] == 2  # final: never asked again


def test_status_json_only_for_this_browsers_envelopes(client, site, fake) -> None:
    envelope_id = started(client)
    stranger = site.test_client()
    assert stranger.get(f"/envelopes/{envelope_id}/status.json").status_code == 404
    assert stranger.get(f"/status/{envelope_id}").status_code == 404
    assert fake.calls["status", envelope_id] == 0


def test_the_verifier_reads_signer_status(fake) -> None:
    verifier = GatewayTokenVerifier(fake.url + "/.well-known/jwks.json", issuer=fake.url,
                                    audience="example")
    assert verifier.verify(fake.token("e", "signing_complete", "sent", "completed"))[
        "signer_status"] == "completed"
    assert verifier.verify(fake.token("e", "cancel", "sent"))["signer_status"] is None
    with pytest.raises(TokenRejected, match="signer_status"):
        verifier.verify(fake.token("e", "cancel", "sent", signer_status={"x": 1}))


def test_an_oversized_webhook_is_refused_unread(client, site) -> None:
    payload = event("envelope.completed", "env-big", "completed", "completed")
    payload["padding"] = "x" * 100_000
    assert deliver(client, payload).status_code == 413
    assert site.extensions["status_book"].get("env-big") is None
