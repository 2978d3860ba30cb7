"""The owner's workflow: the member signs on the partner's site, the owner's countersigner
finishes the envelope. The partner sees both the signer's outcome and the envelope's.

Driven through the public surface: the partner API, the signing page, the return relay,
and DocuSign Connect posting to the gateway's listener (the emulator acts as the remote
countersigner through its control API).
"""

from __future__ import annotations

import typing as t

import pytest
import requests

from gateway.services import connect_messages
from tests.conftest import PartnerActions
from tests.conftest import SandboxControl
from tests.conftest import as_public_host
from tests.embedded import act
from tests.embedded import path_and_query
from tests.embedded import query
from tests.embedded import wait_for
from tests.test_return_relay import verify

SECRET = "connect-secret-countersign-0123"
PATH = "/webhooks/docusign"


@pytest.fixture
def listening(app: t.Any, sandbox: SandboxControl) -> t.Iterator[None]:
    """Connect configured on both sides and delivered to the gateway over a real socket."""
    from gateway import store
    from sandbox.server import BackgroundServer

    with app.app_context(), store.transaction() as conn:
        connect_messages.add_secret(conn, SECRET, now=0.0)
    with BackgroundServer(as_public_host(app)) as server:
        sandbox.post("/_sandbox/connect", {"url": server.url + PATH, "hmac_secrets": [SECRET]})
        yield


def countersigner(sandbox: SandboxControl, env_id: str) -> str:
    """The recipient id of the template's preset countersigner."""
    record = sandbox.envelope(env_id)
    return next(r["recipientId"] for r in record["recipients"] if r["roleName"] == "Countersigner")


def connect_settled(sandbox: SandboxControl, env_id: str, event: str) -> t.Callable[[], bool]:
    def done() -> bool:
        log = requests.get(sandbox.url + "/_sandbox/connect/deliveries", timeout=5).json()
        return any(d["event"] == event and d["envelope_id"] == env_id
                   and d.get("status_code") == 200 for d in log)
    return done


def member_signs(client: t.Any, partner: PartnerActions) -> tuple[str, dict[str, t.Any]]:
    """Create a membership envelope, sign it in the signing page, follow the relay."""
    env_id = partner.create().get_json()["envelope_id"]
    url = partner.view(env_id).get_json()["url"]
    resp = client.get(path_and_query(act(url, "sign")))
    assert resp.status_code == 303
    return env_id, verify(client, query(resp.headers["Location"])["gateway_token"])


def test_signed_then_waiting_for_countersignature_then_completed(
        client, partner, sandbox, listening) -> None:
    env_id, claims = member_signs(client, partner)
    # the relay's confirming read sees the member's recipient completed, the envelope not
    assert (claims["status"], claims["signer_status"]) == ("sent", "completed")
    body = partner.status(env_id).get_json()
    assert (body["status"], body["signer_status"]) == ("sent", "completed")

    sandbox.post(f"/_sandbox/envelopes/{env_id}/recipients/{countersigner(sandbox, env_id)}/sign")
    wait_for(connect_settled(sandbox, env_id, "envelope-completed"))
    body = partner.status(env_id).get_json()
    assert (body["status"], body["signer_status"]) == ("completed", "completed")


def test_countersigner_declines_after_the_member_signed(client, partner, sandbox,
                                                         listening) -> None:
    env_id, _ = member_signs(client, partner)
    sandbox.post(f"/_sandbox/envelopes/{env_id}/recipients/{countersigner(sandbox, env_id)}"
                 "/decline", {"reason": "wrong plan"})
    wait_for(connect_settled(sandbox, env_id, "envelope-declined"))
    body = partner.status(env_id).get_json()
    assert (body["status"], body["signer_status"]) == ("declined", "completed")


def test_member_declines(client, partner, sandbox, listening) -> None:
    env_id = partner.create().get_json()["envelope_id"]
    url = partner.view(env_id).get_json()["url"]
    resp = client.get(path_and_query(act(url, "decline")))
    claims = verify(client, query(resp.headers["Location"])["gateway_token"])
    assert (claims["status"], claims["signer_status"]) == ("declined", "declined")
    record = sandbox.envelope(env_id)
    assert next(r for r in record["recipients"] if r["roleName"] == "Countersigner")["status"] in (
        "created", None)
    body = partner.status(env_id).get_json()
    assert (body["status"], body["signer_status"]) == ("declined", "declined")


def test_status_answers_the_signer_status_of_a_fresh_draft(partner) -> None:
    env_id = partner.create().get_json()["envelope_id"]
    body = partner.status(env_id).get_json()
    assert (body["status"], body["signer_status"]) == ("created", "created")
