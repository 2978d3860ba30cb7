"""The example partner site against a real gateway and emulator (HTTP, no browser)."""

from __future__ import annotations

import re
import time
import typing as t

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from examples.partner_site.verify import GatewayTokenVerifier
from examples.partner_site.verify import TokenRejected
from gateway.cli.demo_stack import DemoStack
from gateway.services import relay_tokens
from tests.embedded import act
from tests.embedded import query

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
    url = signing_url(page)
    assert url.startswith(stack.sandbox_url + "/Signing/")
    csp = page.headers["Content-Security-Policy"]
    assert f"frame-src 'self' {stack.gateway_url} {stack.sandbox_url}" in csp
    result = finish(browser, act(url, "sign"))
    assert result.status_code == 200
    assert result.url.startswith(stack.site_url + "/signed?")
    assert outcome(result) == "completed"
    assert 'data-status="completed"' in result.text
    assert "Verified" in result.text
    assert result.headers["Referrer-Policy"] == "no-referrer"
    env_id = query(result.url)["envelope_id"]
    status = browser.get(f"{stack.site_url}/status/{env_id}", timeout=10).json()
    assert status["status"] == "completed"


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
