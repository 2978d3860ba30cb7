"""Issue 16 findings 6, 7 and 9 (in the app): the relay token is spent by GET alone and
never echoed; OPTIONS and every error answer without HTML."""

from __future__ import annotations

import typing as t
import urllib.parse

import pytest

from tests.conftest import PartnerActions
from tests.conftest import SandboxControl


def relay_path(partner: PartnerActions, sandbox: SandboxControl) -> str:
    env_id = partner.create().get_json()["envelope_id"]
    assert partner.view(env_id).status_code == 201
    url = sandbox.envelope(env_id)["views"][-1]["return_url"]
    return urllib.parse.urlsplit(url).path


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def test_head_does_not_spend_the_token(partner: PartnerActions, sandbox: SandboxControl) -> None:
    path = relay_path(partner, sandbox)
    for _ in range(3):  # a link checker, a mail scanner, a prefetching browser
        head = partner.client.head(path + "?event=cancel")
        assert head.status_code == 200
        assert head.get_data() == b""
        assert head.headers["Cache-Control"] == "no-store"
    resp = partner.client.get(path + "?event=cancel")
    assert resp.status_code == 303, resp.get_data(as_text=True)
    assert "gateway_token=" in resp.headers["Location"]
    assert partner.client.get(path + "?event=cancel").status_code == 400  # GET spends it


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_405_on_the_relay_neither_spends_nor_echoes(partner: PartnerActions,
                                                    sandbox: SandboxControl, method: str) -> None:
    path = relay_path(partner, sandbox)
    resp = partner.client.open(path + "?event=cancel", method=method)
    assert resp.status_code == 405
    assert resp.mimetype == "application/problem+json"
    assert token_of(path) not in resp.get_data(as_text=True)
    assert token_of(path) not in str(resp.headers)
    assert partner.client.get(path + "?event=cancel").status_code == 303


@pytest.mark.parametrize("suffix", ["/extra", "x", "/x/y"])
def test_404_near_the_relay_does_not_echo(partner: PartnerActions, sandbox: SandboxControl,
                                          suffix: str) -> None:
    path = relay_path(partner, sandbox)
    resp = partner.client.get(path + suffix + "?event=cancel")
    assert resp.status_code in (400, 404)
    assert token_of(path) not in resp.get_data(as_text=True)
    assert token_of(path) not in str(resp.headers)
    assert partner.client.get(path + "?event=cancel").status_code == 303


def test_relay_rejections_do_not_echo_the_token(partner: PartnerActions,
                                                sandbox: SandboxControl) -> None:
    path = relay_path(partner, sandbox)
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    for url in (tampered + "?event=cancel", path + "?event=bogus"):
        resp = partner.client.get(url)
        assert resp.status_code == 400
        assert token_of(path)[-40:] not in resp.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/v1/envelopes", "/v1/templates", "/healthz",
                                  "/.well-known/jwks.json", "/webhooks/docusign",
                                  "/v1/return/anything"])
def test_options_is_204_with_allow_and_no_body(client: t.Any, path: str) -> None:
    resp = client.options(path)
    assert resp.status_code == 204
    assert resp.get_data() == b""
    assert "text/html" not in resp.headers.get("Content-Type", "")
    assert "OPTIONS" in resp.headers["Allow"]


def test_options_on_nothing_is_a_problem(client: t.Any) -> None:
    resp = client.options("/nothing/here")
    assert resp.status_code == 404
    assert resp.mimetype == "application/problem+json"


def test_options_spends_no_relay_token(partner: PartnerActions, sandbox: SandboxControl) -> None:
    path = relay_path(partner, sandbox)
    assert partner.client.options(path + "?event=cancel").status_code == 204
    assert partner.client.get(path + "?event=cancel").status_code == 303
