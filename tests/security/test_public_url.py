"""Issue 16 finding 1: nothing that goes out is built from the request's Host.

The relay URL handed to DocuSign and the `iss` of `gateway_token` come from PUBLIC_URL;
the gateway answers only for PUBLIC_URL's host; forwarded headers count only through
PROXY_HOPS proxies; no slash redirect builds a Location from the request.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import jwt
import pytest

from tests.conftest import PartnerActions
from tests.conftest import SandboxControl
from tests.conftest import add_partner
from tests.conftest import make_gateway

EVIL = "phish.evil.example"
PROBLEM = "application/problem+json"


def problem(resp: t.Any, status: int, code: str) -> dict[str, t.Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    body = resp.get_json()
    assert body["code"] == code
    return t.cast(dict[str, t.Any], body)


def gateway(tmp_path: Path, sandbox: SandboxControl, pem: str,
            **config: t.Any) -> tuple[t.Any, PartnerActions]:
    app = make_gateway(tmp_path, sandbox.url, pem, **config)
    return app, PartnerActions(app.test_client(), "example", add_partner(app, "example"))


def returned_url(sandbox: SandboxControl, env_id: str) -> str:
    return str(sandbox.envelope(env_id)["views"][-1]["return_url"])


def test_recipient_view_for_another_host_is_refused_and_never_reaches_docusign(
        tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str) -> None:
    _, partner = gateway(tmp_path, sandbox, rsa_private_pem)
    env_id = partner.create().get_json()["envelope_id"]
    resp = partner.client.post(f"/v1/envelopes/{env_id}/recipient-view",
                               json={"return_url": "http://127.0.0.1:8070/signed"},
                               headers=partner.headers | {"Host": EVIL})
    body = problem(resp, 400, "untrusted_host")
    assert EVIL not in resp.get_data(as_text=True)
    assert body["request_id"]
    assert sandbox.envelope(env_id).get("views", []) == []


def test_without_public_url_no_relay_url_is_built_from_the_request(
        tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str) -> None:
    # the default (PUBLIC_URL unset): loopback names only, and no signing session at all
    _, partner = gateway(tmp_path, sandbox, rsa_private_pem, PUBLIC_URL="")
    env_id = partner.create().get_json()["envelope_id"]
    problem(partner.view(env_id), 503, "public_url_not_configured")
    assert sandbox.envelope(env_id).get("views", []) == []
    evil = partner.client.get(f"/v1/envelopes/{env_id}", headers=partner.headers | {"Host": EVIL})
    problem(evil, 400, "untrusted_host")


def test_forwarded_host_is_ignored_without_proxy_hops(
        tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str) -> None:
    _, partner = gateway(tmp_path, sandbox, rsa_private_pem)
    env_id = partner.create().get_json()["envelope_id"]
    forged = {"X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "https", "X-Forwarded-Port": "443"}
    resp = partner.client.post(f"/v1/envelopes/{env_id}/recipient-view",
                               json={"return_url": "http://127.0.0.1:8070/signed"},
                               headers=partner.headers | forged)
    assert resp.status_code == 201, resp.get_json()
    assert returned_url(sandbox, env_id).startswith("http://gateway.test/v1/return/")


def test_forwarded_host_through_trusted_proxy_must_be_the_public_one(
        tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str) -> None:
    _, partner = gateway(tmp_path, sandbox, rsa_private_pem, PROXY_HOPS=1,
                         PUBLIC_URL="https://gateway.example")
    env_id = partner.create(headers={"Host": "gateway.example"}).get_json()["envelope_id"]
    via_proxy = partner.headers | {"X-Forwarded-Host": EVIL, "X-Forwarded-Proto": "https"}
    problem(partner.client.get(f"/v1/envelopes/{env_id}", headers=via_proxy), 400, "untrusted_host")
    ok = partner.client.post(f"/v1/envelopes/{env_id}/recipient-view",
                             json={"return_url": "http://127.0.0.1:8070/signed"},
                             headers=partner.headers | {"X-Forwarded-Host": "gateway.example"})
    assert ok.status_code == 201, ok.get_json()
    assert returned_url(sandbox, env_id).startswith("https://gateway.example/v1/return/")


def test_gateway_token_iss_is_the_public_url(tmp_path: Path, sandbox: SandboxControl,
                                             rsa_private_pem: str) -> None:
    app, partner = gateway(tmp_path, sandbox, rsa_private_pem, PUBLIC_URL="https://gw.example/")
    client = partner.client
    env_id = partner.create(headers={"Host": "gw.example"}).get_json()["envelope_id"]
    assert partner.view(env_id).status_code == 201
    relay = returned_url(sandbox, env_id)
    assert relay.startswith("https://gw.example/v1/return/")
    answer = client.get(relay.replace("https://gw.example", "") + "?event=cancel")
    assert answer.status_code == 303
    token = answer.headers["Location"].split("gateway_token=")[1]
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == "https://gw.example"


@pytest.mark.parametrize("path", ["//v1//envelopes/x", "/v1//templates", "//healthz", "/admin",
                                  "/v1/templates/", "/v1/envelopes//recipient-view"])
def test_no_redirect_builds_a_location_from_the_host(client: t.Any, path: str) -> None:
    resp = client.get(path, headers={"Host": "gateway.test"})
    assert resp.status_code not in (301, 302, 307, 308) or not resp.headers["Location"].startswith(
        ("http:", "https:", "//")), resp.headers
    assert resp.status_code != 308
    if resp.status_code >= 400:
        assert resp.mimetype == PROBLEM


def test_public_url_must_be_a_bare_origin(tmp_path: Path, sandbox: SandboxControl,
                                          rsa_private_pem: str) -> None:
    for bad in ("gateway.example", "ftp://gateway.example", "https://gateway.example/base",
                "https://user@gateway.example"):
        with pytest.raises(ValueError, match="PUBLIC_URL"):
            make_gateway(tmp_path, sandbox.url, rsa_private_pem, PUBLIC_URL=bad)


def test_probes_answer_for_any_host_and_nothing_else_does(client: t.Any) -> None:
    # orchestrators probe by address (compose's healthcheck: 127.0.0.1, Kubernetes: the pod IP)
    for path in ("/healthz", "/metrics"):
        assert client.get(path, headers={"Host": "10.1.2.3:8080"}).status_code == 200
    for path in ("/v1/templates", "/openapi.json", "/admin/login", "/.well-known/jwks.json"):
        problem(client.get(path, headers={"Host": "10.1.2.3:8080"}), 400, "untrusted_host")
