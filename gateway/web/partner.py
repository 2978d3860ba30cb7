"""The partner API (`/v1`): the only routes that can lead to a DocuSign call.

Each view runs behind `guards.partner_call` (key, policy, operation, rate limit), then
the body, ownership and policy-rule guards, then one service call. Nothing here
forwards a request: every upstream body is built by a service from the policy and
validated input.
"""

from __future__ import annotations

import time

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import jsonify
from flask import request

from gateway import context
from gateway import store
from gateway.guards import partner_call
from gateway.guards.body import load_body
from gateway.guards.ownership import owned_envelope
from gateway.guards.return_url import check_return_url
from gateway.guards.template_fields import approved_template
from gateway.services import drafts
from gateway.services import envelopes
from gateway.services import signing_sessions
from gateway.services import status_reads
from gateway.web import schemas

bp = Blueprint("partner", __name__, url_prefix="/v1")


@bp.post("/envelopes")
@partner_call("create_draft")
def create_envelope() -> tuple[Response, int, dict[str, str]]:
    body = load_body(schemas.CreateEnvelopeSchema())
    template = approved_template(context.policy(), body["template"], body["fields"])
    status, answer = drafts.create(context.caller(), body, template,
                                   request.headers.get("Idempotency-Key"))
    context.current().envelope_id = answer.get("envelope_id")
    location = f"{bp.url_prefix}/envelopes/{answer['envelope_id']}"
    return jsonify(answer), status, {"Location": location}


@bp.post("/envelopes/<envelope_id>/recipient-view")
@partner_call("recipient_view")
def recipient_view(envelope_id: str) -> tuple[Response, int]:
    body = load_body(schemas.RecipientViewRequestSchema())
    with store.transaction() as conn:
        row = owned_envelope(conn, context.caller(), envelope_id)
    check_return_url(context.policy(), body["return_url"])
    url = signing_sessions.open_session(row, context.caller().partner_id, context.policy(),
                                        body["return_url"])
    expires_at = envelopes.iso(time.time() + signing_sessions.SIGNING_URL_TTL)
    return jsonify({"url": url, "expires_at": expires_at}), 201


@bp.get("/envelopes/<envelope_id>")
@partner_call("status")
def envelope_status(envelope_id: str) -> Response:
    with store.transaction() as conn:
        row = owned_envelope(conn, context.caller(), envelope_id)
    row = status_reads.refresh(row, context.caller().partner_id)
    context.current().audit_detail = envelopes.describe((row.status, row.signer_status))
    return jsonify(envelopes.status_body(row))


@bp.get("/templates")
@partner_call(None)
def list_templates() -> Response:
    return jsonify({"templates": [tpl.public() for tpl in context.policy().templates.values()]})


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
