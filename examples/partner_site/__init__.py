"""An example partner website: a visitor signs inside this site's page, through the gateway.

It is a separate, ordinary web app that knows the gateway only by URL and API key:

- `GET /` shows a membership form;
- `POST /sign` calls the gateway server-to-server with the partner key (which never
  reaches the browser) to create the envelope and open a signing session, and shows
  the signing URL in an iframe;
- `GET /status/<envelope_id>` asks the gateway (server-side) for the status of an
  envelope this browser started;
- `GET /signed` is the return URL: the gateway's relay sends the visitor here with
  `gateway_token`, which is verified against the gateway's JWKS before anything is
  shown; a token that does not verify is refused.

Run it with `python -m examples.partner_site --gateway URL --key-file FILE`, or let
`gateway demo` start it.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import typing as t
import urllib.parse
import uuid

import requests
from flask import Flask
from flask import Response
from flask import abort
from flask import current_app
from flask import g
from flask import render_template
from flask import request
from flask import session

from examples.partner_site.verify import GatewayTokenVerifier
from examples.partner_site.verify import TokenRejected

log = logging.getLogger(__name__)

PLANS = ("basic", "plus", "family")
MAX_TRACKED = 20
# real DocuSign moves the signer between its own hosts inside the iframe
DOCUSIGN_FRAME_SOURCES = ("https://*.docusign.com", "https://*.docusign.net")


class GatewayCallFailed(Exception):
    """The gateway answered with a problem (its title and detail are safe to show)."""

    def __init__(self, status: int, problem: dict[str, t.Any]) -> None:
        super().__init__(problem.get("code", "error"))
        self.status = status
        self.problem = problem


def create_app(config: t.Mapping[str, t.Any]) -> Flask:
    """The site. `config` needs GATEWAY_URL and GATEWAY_KEY; the rest have defaults."""
    app = Flask(__name__, static_folder=None)
    app.config.update(
        PARTNER="example",
        # the gateway's public base URL (the `iss` of its tokens); default GATEWAY_URL
        GATEWAY_ISSUER=None,
        # this site's public base URL (return_url is SITE_URL + /signed); default: the request's
        SITE_URL=None,
        TEMPLATE="membership",
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        GATEWAY_TIMEOUT=30.0,
    )
    app.config.update(config)
    for required in ("GATEWAY_URL", "GATEWAY_KEY"):
        if not app.config.get(required):
            raise ValueError(f"{required} is required")
    app.config["GATEWAY_URL"] = app.config["GATEWAY_URL"].rstrip("/")
    issuer = (app.config["GATEWAY_ISSUER"] or app.config["GATEWAY_URL"]).rstrip("/")
    app.config["GATEWAY_ISSUER"] = issuer
    app.extensions["verifier"] = GatewayTokenVerifier(
        issuer + "/.well-known/jwks.json", issuer=issuer, audience=app.config["PARTNER"])
    app.before_request(_nonce)
    app.after_request(_security_headers)
    app.add_url_rule("/", view_func=index, methods=["GET"])
    app.add_url_rule("/sign", view_func=sign, methods=["POST"])
    app.add_url_rule("/signed", view_func=signed, methods=["GET"])
    app.add_url_rule("/status/<envelope_id>", view_func=status, methods=["GET"])
    return app


# --- talking to the gateway (server-side only) -----------------------------------


def call_gateway(method: str, path: str, body: dict[str, t.Any] | None = None,
                 idempotency_key: str | None = None) -> dict[str, t.Any]:
    """One partner API call with the site's key; the key stays on the server."""
    cfg = current_app.config
    headers = {"Authorization": f"Bearer {cfg['GATEWAY_KEY']}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    try:
        resp = requests.request(method, cfg["GATEWAY_URL"] + path, json=body, headers=headers,
                                timeout=(3.05, cfg["GATEWAY_TIMEOUT"]))
    except requests.RequestException:
        raise GatewayCallFailed(503, {"title": "Signing service unreachable",
                                      "detail": "Please try again in a minute."}) from None
    try:
        answer = resp.json()
    except ValueError:
        answer = {}
    if resp.status_code >= 400:
        raise GatewayCallFailed(resp.status_code, answer if isinstance(answer, dict) else {})
    return t.cast(dict, answer)


def site_url() -> str:
    return (current_app.config["SITE_URL"] or request.host_url).rstrip("/")


# --- pages -----------------------------------------------------------------------


def _nonce() -> None:
    g.nonce = secrets.token_urlsafe(16)


def _security_headers(resp: Response) -> Response:
    frames = " ".join(["'self'", _origin(current_app.config["GATEWAY_ISSUER"]),
                       *g.get("frame_sources", ()), *DOCUSIGN_FRAME_SOURCES])
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{g.nonce}'; style-src 'nonce-{g.nonce}'; "
        f"frame-src {frames}; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
    )
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return str(session["csrf"])


def index() -> str:
    return render_template("index.html", csrf=_csrf_token(), submission=uuid.uuid4().hex,
                           plans=PLANS, form={}, errors={})


def sign() -> tuple[str, int] | str:
    form = request.form
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(str(expected), form.get("csrf", "")):
        abort(400)
    fields = {"member_number": form.get("member_number", "").strip(),
              "plan": form.get("plan", "")}
    # the form's one-time submission id makes a double-click create one envelope: it is both
    # the Idempotency-Key and (so the retried body is identical) our reference
    submission = form.get("submission", "")
    if not re.fullmatch(r"[0-9a-f]{32}", submission):
        abort(400)
    body = {
        "template": current_app.config["TEMPLATE"],
        "signer": {"name": form.get("name", "").strip(), "email": form.get("email", "").strip()},
        "fields": fields,
        "reference": "site-" + submission[:12],
    }
    try:
        created = call_gateway("POST", "/v1/envelopes", body, idempotency_key=submission)
        view = call_gateway("POST", f"/v1/envelopes/{created['envelope_id']}/recipient-view",
                            {"return_url": site_url() + "/signed"})
    except GatewayCallFailed as exc:
        status = 422 if exc.status in (400, 422) else 502
        return render_template("index.html", csrf=_csrf_token(), submission=uuid.uuid4().hex,
                               plans=PLANS, form=form, problem=exc.problem,
                               errors=exc.problem.get("errors") or {}), status
    # this browser may later ask for the status of the envelopes it started, and no others
    session["envelopes"] = [*session.get("envelopes", [])[-(MAX_TRACKED - 1):],
                            created["envelope_id"]]
    g.frame_sources = [_origin(view["url"])]
    return render_template("signing.html", url=view["url"], envelope_id=created["envelope_id"])


def _outcome(claims: dict[str, t.Any]) -> tuple[str, str]:
    """(outcome key, sentence) from the VERIFIED token: status first, the event second."""
    status, event = claims["status"], claims["event"]
    if status == "completed":
        return "completed", "Signed. DocuSign confirms the agreement is completed."
    if status == "declined":
        return "declined", "You declined to sign. DocuSign has recorded the decline."
    if status == "voided":
        return "voided", "This agreement was withdrawn."
    if event == "signing_complete":
        return "pending", f"Signing reported; waiting for DocuSign to confirm (now: {status})."
    if event == "cancel":
        return "cancelled", "You left without signing. You can start again at any time."
    return "ended", f"The signing session ended ({event}) without a signature."


def signed() -> tuple[str, int] | str:
    token = request.args.get("gateway_token", "")
    verifier: GatewayTokenVerifier = current_app.extensions["verifier"]
    try:
        claims = verifier.verify(token)
        if claims["envelope_id"] != request.args.get("envelope_id"):
            raise TokenRejected("envelope_id in the URL does not match the token")
    except TokenRejected as exc:
        log.info("gateway token refused: %s", exc)
        return render_template("result.html", outcome="unverified", claims=None,
                               message="This return could not be verified; nothing was "
                                       "recorded. Please start again."), 400
    outcome, message = _outcome(claims)
    return render_template("result.html", outcome=outcome, claims=claims, message=message)


def status(envelope_id: str) -> Response:
    """The gateway's status of one of this browser's envelopes (JSON, for the page and tests)."""
    if envelope_id not in session.get("envelopes", []):
        abort(404)
    try:
        answer = call_gateway("GET", f"/v1/envelopes/{envelope_id}")
    except GatewayCallFailed as exc:
        return Response(json.dumps({"error": exc.problem.get("code", "error")}), status=502,
                        mimetype="application/json")
    body = {k: answer.get(k) for k in ("envelope_id", "status", "last_event", "updated_at")}
    return Response(json.dumps(body), mimetype="application/json")
