"""The return relay (`/v1/return/<token>`), where DocuSign sends the signer's browser, and
the JWKS partners verify the gateway's proof with.

The relay checks and spends the relay token (`services.relay_tokens`, single use
fleet-wide), records the event and, for an outcome the browser claims, confirms it with
DocuSign (`services.signing_sessions`), then answers 303 to the partner's page with
`envelope_id`, `event` and `gateway_token`.

Only `GET` spends a relay token: `HEAD` (link checkers, mail scanners, prefetchers) gets
the headers of a page and nothing else, so it cannot burn a signer's way back. No answer
of the relay, nor a 404/405 on its path, repeats the token.
"""

from __future__ import annotations

import typing as t
import urllib.parse

from flask import Blueprint
from flask import Flask
from flask import Response
from flask import jsonify
from flask import redirect
from flask import request
from markupsafe import escape

from gateway import context
from gateway.guards.ratelimit import relay_limit
from gateway.services import envelopes
from gateway.services import signing_sessions
from gateway.services.relay_tokens import RelayRejected
from gateway.services.relay_tokens import gateway_token
from gateway.services.relay_tokens import read_relay_token
from gateway.services.signing_keys import jwks

bp = Blueprint("return_relay", __name__)

JWKS_MAX_AGE = 300


def with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` set in its query (replacing any of the same name)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in params] + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _error_page(message: str, status: int = 400) -> Response:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>Signing link problem</title></head><body><h1>Signing link problem</h1>"
        "<p id='problem'>" + str(escape(message)) + "</p>"
        "<p>Please return to the website you came from and start again.</p></body></html>"
    )
    context.current().error_code = "relay_rejected"
    return Response(html, status=status, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                             "Content-Security-Policy": "default-src 'none'"})


def _head_answer() -> Response:
    """A HEAD answers like a page that exists, without reading or spending the token."""
    return Response(status=200, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@bp.get("/v1/return/<token>")
@relay_limit
def relay(token: str) -> Response:
    """Check and spend the relay token, record the event, hand the partner its proof."""
    state = context.current()
    state.operation = "return_relay"
    if request.method == "HEAD":
        return _head_answer()
    event = request.args.get("event", "")
    if event not in signing_sessions.EVENTS:
        return _error_page("DocuSign did not say how the signing session ended.")
    try:
        claims = read_relay_token(token)
        state.envelope_id = claims["env"]
        recorded = signing_sessions.spend(claims, event)
    except RelayRejected as exc:
        return _error_page(str(exc))
    state.partner = recorded.partner
    status, signer_status = recorded.status, recorded.signer_status
    if event in signing_sessions.CONFIRMED_EVENTS:
        status, signer_status = signing_sessions.confirm(claims["env"], recorded)
    state.audit_detail = envelopes.describe((status, signer_status))
    proof = gateway_token(partner=recorded.partner, envelope_id=claims["env"], event=event,
                          status=status, signer_status=signer_status,
                          reference=recorded.reference)
    target = with_query(claims["ret"], {"envelope_id": claims["env"], "event": event,
                                        "gateway_token": proof})
    resp = t.cast(Response, redirect(target, code=303))
    resp.headers["Cache-Control"] = "no-store"
    # the partner's page must not leak the token onward in a Referer
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@bp.get("/.well-known/jwks.json")
def jwks_view() -> Response:
    """The public keys partners verify `gateway_token` with."""
    resp = jsonify(jwks())
    resp.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return resp


def init_app(app: Flask) -> None:
    """Register the relay and the JWKS."""
    app.register_blueprint(bp)
