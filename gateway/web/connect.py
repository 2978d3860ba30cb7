"""Inbound DocuSign Connect (JSON SIM): `POST /webhooks/docusign`.

Nobody authenticates to this endpoint with a key: a message is believed only when its
HMAC signature checks out (`services.connect_messages`). Anything else gets one uniform
401 and changes nothing; the specific reason goes to the debug log only.

A verified message names an envelope by `data.envelopeId`. Envelopes the gateway did not
create are acknowledged (200, so DocuSign stops retrying) and ignored. For our own
envelopes the status goes through the one state machine (`services.envelopes`), which
applies it only if it is newer, on DocuSign's clock, than what the gateway last heard:
Connect delivers at least once and in no guaranteed order, so redeliveries and stale
events are no-ops. A final status (completed, declined, voided) never moves.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request

from gateway import context
from gateway import errors
from gateway import store
from gateway.guards.body import parse_json
from gateway.services import envelopes
from gateway.services.connect_messages import SignatureInvalid
from gateway.services.connect_messages import load_secrets
from gateway.services.connect_messages import read_message
from gateway.services.connect_messages import signature_headers
from gateway.services.connect_messages import verify

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

WEBHOOK_PATH = "/webhooks/docusign"


def _verified_body() -> bytes:
    """The raw body, if a signature header proves it came from DocuSign; else 401."""
    request.max_content_length = current_app.config["CONNECT_MAX_BYTES"]
    body = request.get_data(cache=True)
    with store.transaction() as conn:
        configured = [e["secret"] for e in load_secrets(conn)]
    if not configured:
        log.debug("connect message rejected: no Connect HMAC secret is configured")
        raise SignatureInvalid()
    if not signature_headers(request.headers):
        log.debug("connect message rejected: no X-DocuSign-Signature-N header")
        raise SignatureInvalid()
    if not verify(configured, body, request.headers):
        log.debug("connect message rejected: no signature matches a configured secret")
        raise SignatureInvalid()
    return body


def _ignored(reason: str) -> Response:
    context.current().error_code = reason
    return jsonify({"received": True, "applied": False})


@bp.post(WEBHOOK_PATH)
def docusign_connect() -> Response:
    """Accept one Connect JSON SIM message."""
    state = context.current()
    state.operation = "connect_event"
    body = _verified_body()
    # bounded parsing: a verified sender can still send a body too deep for json's recursion
    message = parse_json(body, what="The Connect message")
    if not isinstance(message, dict):
        raise errors.MalformedJSON("The Connect message is not a JSON object.")
    read = read_message(message)
    if read.envelope_id is None or read.status is None:
        return _ignored("ignored_event")
    env = store.envelopes
    with store.transaction() as conn:
        row = conn.execute(
            sa.select(store.partners.c.name, env.c.client_user_id)
            .select_from(env.join(store.partners)).where(env.c.envelope_id == read.envelope_id)
        ).first()
        if row is None:
            return _ignored("ignored_unknown_envelope")
        state.envelope_id = read.envelope_id
        state.partner = row.name
        reported = envelopes.Reported(read.status,
                                      envelopes.signer_status_in(read.summary, row.client_user_id),
                                      read.as_of)
        change = envelopes.record_upstream(conn, read.envelope_id, reported, source="connect",
                                           last_event=read.event, now=time.time())
    if change is None:
        return _ignored("ignored_stale")
    state.audit_detail = envelopes.describe(change.after)
    return jsonify({"received": True, "applied": True})


def init_app(app: Flask) -> None:
    """Register the Connect listener."""
    app.register_blueprint(bp)
