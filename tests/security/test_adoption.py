"""Issue 16 finding 10: idempotency recovery adopts only an envelope that shows the marker."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa

from gateway.upstream import client as upstream_client
from tests.conftest import PartnerActions

BODY = {"template": "membership", "signer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "fields": {"member_number": "12345", "plan": "plus"}, "reference": "order-778"}


def abandon(app: t.Any, key: str) -> None:
    """What a worker killed mid-create leaves: a pending claim whose lease has run out."""
    from gateway import store
    from gateway.services import idempotency
    from gateway.web import schemas

    with app.app_context():
        with store.transaction() as conn:
            partner_id = conn.execute(sa.select(store.partners.c.id)
                                      .where(store.partners.c.name == "example")).scalar_one()
        digest = idempotency.request_hash(schemas.CreateEnvelopeSchema().load(BODY))
        claim = idempotency.begin(partner_id, key, digest, ttl=3600, lease=30, wait=0)
        assert isinstance(claim, idempotency.Claim)
        with store.transaction() as conn:
            conn.execute(store.idempotency.update().values(created_at=claim.started - 60))


def test_a_listed_envelope_without_custom_fields_is_not_adopted(
        app: t.Any, partner: PartnerActions, other_partner: PartnerActions, sandbox: t.Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = other_partner.create(reference="theirs").get_json()["envelope_id"]
    abandon(app, "order-abandoned")
    real_rest = upstream_client.DocuSignClient._rest

    def listing_without_custom_fields(self: t.Any, endpoint: str, *args: t.Any, **kw: t.Any) -> t.Any:
        answer = real_rest(self, endpoint, *args, **kw)
        if endpoint == "list_status_changes":
            # DocuSign ignoring the filter: another envelope, and no customFields to check
            return {"envelopes": [{"envelopeId": stranger, "status": "created",
                                   "createdDateTime": "2020-01-01T00:00:00Z"}]}
        return answer

    monkeypatch.setattr(upstream_client.DocuSignClient, "_rest", listing_without_custom_fields)
    resp = partner.create(headers={"Idempotency-Key": "order-abandoned"})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["envelope_id"] != stranger
    assert sandbox.calls()["create_envelope"] == 2  # the stranger's, and a new one of ours
    assert partner.status(stranger).status_code == 404


@pytest.mark.parametrize("listed, carries", [
    ({"envelopeId": "x"}, False),
    ({"envelopeId": "x", "customFields": None}, False),
    ({"envelopeId": "x", "customFields": {}}, False),
    ({"envelopeId": "x", "customFields": {"textCustomFields": [{"name": "m", "value": "other"}]}},
     False),
    ({"envelopeId": "x", "customFields": {"textCustomFields": [{"name": "m", "value": "v"}]}}, True),
])
def test_carries_field_fails_closed(listed: dict[str, t.Any], carries: bool) -> None:
    assert upstream_client._carries_field(listed, "m", "v") is carries
