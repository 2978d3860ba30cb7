"""Creating a draft envelope from an approved template, at most once per Idempotency-Key.

Every upstream body is built here from the policy and the validated input; nothing the
partner sends is forwarded. The gateway, not the partner, chooses the embedded signer's
`clientUserId` and the template role.
"""

from __future__ import annotations

import hashlib
import logging
import time
import typing as t
import uuid

from flask import current_app

from gateway import errors
from gateway import store
from gateway.context import Caller
from gateway.policy import TemplatePolicy
from gateway.services import envelopes
from gateway.services import idempotency
from gateway.store.vault import get_vault
from gateway.upstream import get_client

log = logging.getLogger(__name__)

#: DocuSign's clock and ours may differ: look this much further back when reconciling
RECONCILE_SKEW = 300.0

Answer = tuple[int, dict[str, t.Any]]


def create(caller: Caller, body: dict[str, t.Any], template: TemplatePolicy,
           key: str | None) -> Answer:
    """Create the draft; with an Idempotency-Key, the first answer again on a repeat."""
    if key is None:
        return _create(caller, body, template)
    return _create_once(caller, key, body, template)


def _create_once(caller: Caller, key: str, body: dict[str, t.Any],
                 template: TemplatePolicy) -> Answer:
    """Create under an Idempotency-Key: one upstream envelope per key, whatever fails or dies."""
    idempotency.check_key(key)
    cfg = current_app.config
    outcome = idempotency.begin(
        caller.partner_id, key, idempotency.request_hash(body), ttl=cfg["IDEMPOTENCY_TTL"],
        lease=idempotency_lease(), wait=float(cfg["IDEMPOTENCY_WAIT"]),
    )
    if isinstance(outcome, idempotency.Replay):
        return outcome.status, outcome.body
    claim = outcome
    try:
        if claim.recovered:
            adopted = _adopt(caller, claim, body, template)
            if adopted is not None:
                return adopted
        envelope_id, client_user_id = _make(caller, body, template, claim)
    except (errors.UpstreamTimeout, errors.UpstreamUnavailable) as exc:
        if getattr(exc, "upstream_status", None) is None:
            # no answer: DocuSign may still be making the envelope. Keep the lease, so the
            # retry reconciles once this attempt can no longer land
            exc.retry_after = max(exc.retry_after or 0, claim.lease_left())
        else:
            # DocuSign answered 5xx: it most likely made nothing, but the retry checks first
            idempotency.expire(claim)
        raise
    except BaseException:
        if claim.recovered:
            # an earlier attempt may still have made one: the next retry looks again at once
            idempotency.expire(claim)
        else:
            idempotency.release(claim)
        raise
    try:
        return _record(caller, envelope_id, "created", body, template,
                       client_user_id=client_user_id, claim=claim)
    except BaseException:
        # DocuSign made the envelope but the gateway could not keep it (the database went
        # away): the retry must find and adopt it by its marker, never make a second one
        idempotency.expire(claim)
        raise


def idempotency_lease() -> float:
    """How long a pending claim is its holder's: longer than any create can take."""
    cfg = current_app.config
    return float(cfg.get("IDEMPOTENCY_LEASE") or cfg["DOCUSIGN_TOTAL_BUDGET"] + 5)


def _adopt(caller: Caller, claim: idempotency.Claim, body: dict[str, t.Any],
           template: TemplatePolicy) -> Answer | None:
    """Take over the envelope an abandoned attempt made, found by its marker; None if none."""
    found = get_client().find_envelopes(
        custom_field=(idempotency.MARKER_FIELD, claim.marker),
        since=claim.first_claimed - RECONCILE_SKEW,
    )
    if not found:
        return None
    if len(found) > 1:
        log.warning("%d envelopes carry one idempotency marker; adopting the oldest", len(found))
    oldest = min(found, key=lambda e: str(e.get("createdDateTime") or ""))
    log.info("idempotent create recovered: adopting the envelope an earlier attempt made")
    return _record(caller, oldest["envelopeId"], str(oldest.get("status") or "created"), body,
                   template, client_user_id=_client_user_id(claim), claim=claim)


def _client_user_id(claim: idempotency.Claim | None) -> str:
    """The embedded signer's id: random, or derived from the claim so an adoption knows it."""
    if claim is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"client_user_id\n{claim.marker}".encode()).hexdigest()[:32]


def _create(caller: Caller, body: dict[str, t.Any], template: TemplatePolicy) -> Answer:
    envelope_id, client_user_id = _make(caller, body, template, None)
    return _record(caller, envelope_id, "created", body, template,
                   client_user_id=client_user_id, claim=None)


def _make(caller: Caller, body: dict[str, t.Any], template: TemplatePolicy,
          claim: idempotency.Claim | None) -> tuple[str, str]:
    """Create the draft upstream; (envelope id, the embedded signer's clientUserId)."""
    signer = body["signer"]
    client_user_id = _client_user_id(claim)
    custom_fields = {"gateway_partner": caller.partner}
    if claim is not None:
        custom_fields[idempotency.MARKER_FIELD] = claim.marker
    summary = get_client().create_envelope(
        template_id=template.template_id,
        email_subject=template.email_subject,
        role=template.role,
        signer_name=signer["name"],
        signer_email=signer["email"],
        client_user_id=client_user_id,
        tabs={name: str(value) for name, value in body["fields"].items()},
        custom_fields=custom_fields,
    )
    return str(summary["envelopeId"]), client_user_id


def _record(caller: Caller, envelope_id: str, status: str, body: dict[str, t.Any],
            template: TemplatePolicy, *, client_user_id: str,
            claim: idempotency.Claim | None) -> Answer:
    """Keep the envelope (and the claim's answer, in the same transaction)."""
    signer = body["signer"]
    now = time.time()
    answer = {
        "envelope_id": envelope_id,
        "status": "created",
        "template": template.alias,
        "reference": body["reference"],
        "created_at": envelopes.iso(now),
    }
    sealed = get_vault().encrypt(
        current_app.json.dumps({"name": signer["name"], "email": signer["email"]}).encode("utf-8")
    )
    with store.transaction() as conn:
        envelopes.insert(conn, envelope_id=envelope_id, partner_id=caller.partner_id,
                         template_alias=template.alias, reference=body["reference"],
                         client_user_id=client_user_id, signer_enc=sealed, status=status, now=now)
        if claim is not None and not idempotency.complete(conn, claim, 201, answer):
            log.warning("idempotency lease lost before the create finished; answering anyway")
    return 201, answer
