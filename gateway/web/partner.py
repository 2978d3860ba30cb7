"""The partner API (`/v1`): the only routes that can lead to a DocuSign call.

Each view runs behind `guards.partner_call` (key, policy, operation, rate limit),
validates its body, checks ownership, and makes its upstream call through
`upstream.get_client()`. Nothing here forwards a request: every upstream body is
built by the gateway from the policy and validated input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import typing as t
import uuid

import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import request
from marshmallow import Schema
from marshmallow import ValidationError

from gateway import errors
from gateway import store
from gateway.guards import partner_call
from gateway.services import idempotency
from gateway.store import vault
from gateway.upstream import get_client
from gateway.web import connect as webhooks
from gateway.web import relay as return_relay
from gateway.web import schemas

log = logging.getLogger(__name__)

bp = Blueprint("partner", __name__, url_prefix="/v1")

TERMINAL = frozenset({"completed", "declined", "voided"})
SIGNING_URL_TTL = 300  # DocuSign's recipient view URL lives about 5 minutes, once


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def load_body(schema: Schema) -> dict[str, t.Any]:
    """Parse and validate the JSON body: 400 if unparseable, 422 with per-field errors if invalid."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise errors.MalformedJSON()
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise errors.ValidationFailed(errors=t.cast(dict, exc.normalized_messages())) from None


#: built once: the hot path of every status read binds parameters only
_OWNED = sa.select(store.envelopes).where(
    store.envelopes.c.envelope_id == sa.bindparam("envelope_id"),
    store.envelopes.c.partner_id == sa.bindparam("partner_id"),
)


def owned_envelope(conn: sa.Connection, envelope_id: str) -> sa.Row[t.Any]:
    """The caller's own envelope; anyone else's, or an unknown one, is 404 alike."""
    g.envelope_id = envelope_id[:64]
    row = conn.execute(
        _OWNED, {"envelope_id": envelope_id, "partner_id": g.caller.partner_id}
    ).first()
    if row is None:
        raise errors.EnvelopeNotFound()
    return row


def status_body(row: t.Any) -> dict[str, t.Any]:
    return {
        "envelope_id": row.envelope_id,
        "status": row.status,
        "template": row.template_alias,
        "reference": row.reference,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "last_event": row.last_event,
    }


@bp.post("/envelopes")
@partner_call("create_draft")
def create_envelope() -> tuple[Response, int, dict[str, str]]:
    body = load_body(schemas.CreateEnvelopeSchema())
    template = g.policy.templates.get(body["template"])
    if template is None:
        raise errors.TemplateNotAllowed()
    problems = template.check_fields(body["fields"])
    if problems:
        raise errors.FieldInvalid(errors={"fields": problems})
    key = request.headers.get("Idempotency-Key")
    if key is None:
        status, answer = _create(body, template)
    else:
        status, answer = _create_once(key, body, template)
    location = f"{bp.url_prefix}/envelopes/{answer['envelope_id']}"
    return jsonify(answer), status, {"Location": location}


def _create_once(key: str, body: dict[str, t.Any], template: t.Any) -> tuple[int, dict[str, t.Any]]:
    """Create under an Idempotency-Key: one upstream envelope per key, whatever fails or dies."""
    idempotency.check_key(key)
    cfg = current_app.config
    outcome = idempotency.begin(
        g.caller.partner_id, key, idempotency.request_hash(body), ttl=cfg["IDEMPOTENCY_TTL"],
        lease=idempotency_lease(), wait=float(cfg["IDEMPOTENCY_WAIT"]),
    )
    if isinstance(outcome, idempotency.Replay):
        g.envelope_id = outcome.body.get("envelope_id")
        return outcome.status, outcome.body
    claim = outcome
    try:
        if claim.recovered:
            adopted = _adopt(claim, body, template)
            if adopted is not None:
                return adopted
        return _create(body, template, claim=claim)
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

#: DocuSign's clock and ours may differ: look this much further back when reconciling
RECONCILE_SKEW = 300.0


def idempotency_lease() -> float:
    """How long a pending claim is its holder's: longer than any create can take."""
    cfg = current_app.config
    return float(cfg.get("IDEMPOTENCY_LEASE") or cfg["DOCUSIGN_TOTAL_BUDGET"] + 5)


def _adopt(claim: idempotency.Claim, body: dict[str, t.Any],
           template: t.Any) -> tuple[int, dict[str, t.Any]] | None:
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
    return _record(oldest["envelopeId"], str(oldest.get("status") or "created"), body, template,
                   client_user_id=_client_user_id(claim), claim=claim)


def _client_user_id(claim: idempotency.Claim | None) -> str:
    """The embedded signer's id: random, or derived from the claim so an adoption knows it."""
    if claim is None:
        return uuid.uuid4().hex
    return hashlib.sha256(f"client_user_id\n{claim.marker}".encode()).hexdigest()[:32]


def _create(body: dict[str, t.Any], template: t.Any, *,
            claim: idempotency.Claim | None = None) -> tuple[int, dict[str, t.Any]]:
    signer = body["signer"]
    client_user_id = _client_user_id(claim)
    custom_fields = {"gateway_partner": g.caller.partner}
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
    return _record(summary["envelopeId"], "created", body, template,
                   client_user_id=client_user_id, claim=claim)


def _record(envelope_id: str, status: str, body: dict[str, t.Any], template: t.Any, *,
            client_user_id: str, claim: idempotency.Claim | None) -> tuple[int, dict[str, t.Any]]:
    """Keep the envelope (and the claim's answer, in the same transaction)."""
    signer = body["signer"]
    g.envelope_id = envelope_id
    now = time.time()
    answer = {
        "envelope_id": envelope_id,
        "status": "created",
        "template": template.alias,
        "reference": body["reference"],
        "created_at": iso(now),
    }
    sealed = vault.get_vault().encrypt(
        current_app.json.dumps({"name": signer["name"], "email": signer["email"]}).encode("utf-8")
    )
    with store.transaction() as conn:
        conn.execute(store.envelopes.insert().values(
            envelope_id=envelope_id, partner_id=g.caller.partner_id, template_alias=template.alias,
            reference=body["reference"], client_user_id=client_user_id, signer_enc=sealed,
            status=status, created_at=now, updated_at=now,
        ))
        if claim is not None and not idempotency.complete(conn, claim, 201, answer):
            log.warning("idempotency lease lost before the create finished; answering anyway")
    return 201, answer


@bp.post("/envelopes/<envelope_id>/recipient-view")
@partner_call("recipient_view")
def recipient_view(envelope_id: str) -> tuple[Response, int]:
    body = load_body(schemas.RecipientViewRequestSchema())
    with store.transaction() as conn:
        row = owned_envelope(conn, envelope_id)
    if not g.policy.return_url_allowed(body["return_url"]):
        raise errors.ReturnUrlNotAllowed()
    if row.status in TERMINAL:
        raise errors.EnvelopeNotSignable()
    # built first: a return URL too long for DocuSign is refused before anything is sent
    relay = return_relay.relay_url(envelope_id, g.caller.partner_id, body["return_url"])
    client = get_client()
    if row.status == "created":
        client.send_envelope(envelope_id)
        _set_status(envelope_id, "sent")
    signer = current_app.json.loads(vault.get_vault().decrypt(row.signer_enc))
    url = client.recipient_view(
        envelope_id,
        return_url=relay,
        user_name=signer["name"],
        email=signer["email"],
        client_user_id=row.client_user_id,
        frame_ancestors=g.policy.frame_ancestors,
        message_origins=g.policy.message_origins,
    )
    return jsonify({"url": url, "expires_at": iso(time.time() + SIGNING_URL_TTL)}), 201


def _set_status(envelope_id: str, status: str, **extra: t.Any) -> None:
    with store.transaction() as conn:
        conn.execute(store.envelopes.update()
                     .where(store.envelopes.c.envelope_id == envelope_id)
                     .values(status=status, updated_at=time.time(), **extra))


@bp.get("/envelopes/<envelope_id>")
@partner_call("status")
def envelope_status(envelope_id: str) -> Response:
    with store.transaction() as conn:
        row = owned_envelope(conn, envelope_id)
    claimed_at = _claim_poll(envelope_id) if _may_poll(row) else None
    if claimed_at is not None:
        try:
            upstream = get_client().get_envelope(envelope_id)
        except errors.UpstreamRateLimited:
            raise  # DocuSign asked for fewer polls: the claim stands, retries get the record
        except errors.GatewayError:
            # the partner gets the error; its retry may ask again instead of being served
            # the record this poll failed to refresh
            _unclaim_poll(envelope_id, claimed_at, row.upstream_checked_at)
            raise
        # conditional on DocuSign's own clock: a Connect event that landed during the read wins
        with store.transaction() as conn:
            webhooks.record_upstream_status(
                conn, envelope_id, upstream.get("status", row.status), source="poll",
                last_event=None, now=time.time(),
                as_of=webhooks.parse_time(upstream.get("statusChangedDateTime")))
            row = owned_envelope(conn, envelope_id)
    return jsonify(status_body(row))


def _may_poll(row: t.Any) -> bool:
    """Cheap pre-check on the row just read: a final or fresh record needs no claim (no write)."""
    if row.status in TERMINAL:
        return False
    cutoff = time.time() - current_app.config["STATUS_MIN_POLL_INTERVAL"]
    return row.updated_at <= cutoff and (row.upstream_checked_at or 0) <= cutoff


def _claim_poll(envelope_id: str) -> float | None:
    """Atomically claim the right to ask DocuSign (at most once per interval, fleet-wide).

    The gateway's record is fresh while nothing could have changed unseen: since the
    envelope was created, last updated (return relay, Connect) or last polled less than
    `STATUS_MIN_POLL_INTERVAL` ago. The conditional UPDATE is the lock. Returns the
    claim's time stamp, None when the record is fresh or another request claimed it.
    """
    now = time.time()
    cutoff = now - current_app.config["STATUS_MIN_POLL_INTERVAL"]
    env = store.envelopes.c
    with store.transaction() as conn:
        claimed = conn.execute(
            store.envelopes.update()
            .where(env.envelope_id == envelope_id, env.updated_at <= cutoff,
                   sa.or_(env.upstream_checked_at.is_(None), env.upstream_checked_at <= cutoff))
            .values(upstream_checked_at=now)
        )
    return now if claimed.rowcount == 1 else None


def _unclaim_poll(envelope_id: str, claimed_at: float, previous: float | None) -> None:
    """Give a failed poll's claim back, unless another poll has claimed since."""
    env = store.envelopes.c
    with store.transaction() as conn:
        conn.execute(store.envelopes.update()
                     .where(env.envelope_id == envelope_id, env.upstream_checked_at == claimed_at)
                     .values(upstream_checked_at=previous))


@bp.get("/templates")
@partner_call(None)
def list_templates() -> Response:
    return jsonify({"templates": [tpl.public() for tpl in g.policy.templates.values()]})



def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
