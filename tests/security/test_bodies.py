"""Issue 16 finding 5: JSON bodies are parsed with their depth bounded: 400, never a 500."""

from __future__ import annotations

import json
import typing as t

import pytest

from gateway.services import connect_messages
from gateway.services.connect_messages import sign
from tests.conftest import PartnerActions

SECRET = "connect-secret-one-0123456789"


def malformed(resp: t.Any) -> str:
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    body = resp.get_json()
    assert body["code"] == "malformed_json"
    return str(body["detail"])


@pytest.mark.parametrize("raw", ["[" * 60_000, '{"a":' * 10_000 + "1" + "}" * 10_000,
                                 '{"fields": ' + "[" * 5000 + "]" * 5000 + "}"])
def test_deep_create_body_is_400(partner: PartnerActions, raw: str) -> None:
    resp = partner.client.post("/v1/envelopes", data=raw, content_type="application/json",
                               headers=partner.headers)
    assert "deeper" in malformed(resp)


def test_wrong_content_type_is_named(partner: PartnerActions) -> None:
    resp = partner.client.post("/v1/envelopes", data=json.dumps({"template": "membership"}),
                               content_type="text/plain", headers=partner.headers)
    detail = malformed(resp)
    assert "Content-Type" in detail and "text/plain" in detail


def test_not_json_and_not_an_object(partner: PartnerActions) -> None:
    assert "not valid JSON" in malformed(partner.client.post(
        "/v1/envelopes", data="{nope", content_type="application/json", headers=partner.headers))
    assert "JSON object" in malformed(partner.client.post(
        "/v1/envelopes", data="[]", content_type="application/json", headers=partner.headers))


def test_deep_connect_message_after_a_valid_hmac_is_400(app: t.Any, client: t.Any) -> None:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        connect_messages.add_secret(conn, SECRET, now=0.0)
    body = ('{"event": "envelope-completed", "data": ' + "[" * 50_000 + "]" * 50_000 + "}").encode()
    resp = client.post("/webhooks/docusign", data=body, content_type="application/json",
                       headers={"X-DocuSign-Signature-1": sign(SECRET, body)})
    assert "Connect message" in malformed(resp)


def test_parse_json_bounds() -> None:
    from gateway.guards.body import MAX_JSON_DEPTH
    from gateway.guards.body import parse_json

    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(nested.encode()) is not None
    # brackets inside strings do not count, escaped quotes do not end a string
    assert parse_json(json.dumps({"s": "[" * 10_000, "t": '\\"[[[['}).encode())["s"] == "[" * 10_000
    with pytest.raises(Exception, match="deeper"):
        parse_json(("[" + nested + "]").encode())
