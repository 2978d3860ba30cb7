"""An example partner website: a visitor signs inside this site's page, through the gateway.

It is a separate, ordinary web app that knows the gateway only by URL and API key:

- `GET /` shows a membership form;
- `POST /sign` calls the gateway server-to-server with the partner key (which never
  reaches the browser) to create the envelope (idempotently: the form's one-time
  submission id is the Idempotency-Key), then answers `303` to `GET /sign/<envelope_id>`
  (post/redirect/get: Back and reload never resubmit the form);
- `GET /sign/<envelope_id>` opens a fresh signing session (the gateway's recipient view;
  DocuSign's URLs are single-use) and shows it in an iframe. It is also "Resume signing"
  after a cancel or a timeout, and for a finished envelope it shows the outcome instead;
- `GET /signed` is the return URL: the gateway's relay sends the visitor here with
  `gateway_token`, which is verified against the gateway's JWKS before anything is
  shown; a token that does not verify is refused;
- `POST /hooks/signing` receives the gateway's webhooks (Standard Webhooks signatures,
  verified with the partner's `whsec_...` secret) and records each envelope's status;
- `GET /envelopes/<envelope_id>/status.json` is what the outcome page polls: the
  recorded status, refreshed from the gateway's status API at most every
  STATUS_FALLBACK_SECONDS; `GET /status/<envelope_id>` is the gateway's answer as is.

Only envelopes this browser started can be resumed or asked about.

Run it with `python -m examples.partner_site --gateway URL --key-file FILE`, or let
`gateway demo` start it.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import time
import typing as t
import urllib.parse
import uuid

import requests
from flask import Flask
from flask import Response
from flask import abort
from flask import current_app
from flask import g
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for

from examples.partner_site import hooks
from examples.partner_site import outcomes
from examples.partner_site.outcomes import Outcome
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
    """The site. `config` needs GATEWAY_URL and GATEWAY_KEY; the rest have defaults.

    WEBHOOK_SECRET is the partner's `whsec_...` webhook secret (several, space or comma
    separated, while rolling over); when absent, $PARTNER_WEBHOOK_SECRET; when neither,
    the webhook endpoint answers 503 and the status comes from the gateway's API alone.
    """
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
        WEBHOOK_SECRET=None,
        # status.json asks the gateway's status API at most this often per envelope
        STATUS_FALLBACK_SECONDS=15.0,
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
    secret = app.config["WEBHOOK_SECRET"] or os.environ.get(hooks.SECRET_ENV, "")
    app.extensions["webhooks"] = hooks.webhooks_from_secrets(secret)
    app.extensions["status_book"] = hooks.StatusBook()
    app.before_request(_nonce)
    app.after_request(_security_headers)
    app.add_url_rule("/", view_func=index, methods=["GET"])
    app.add_url_rule("/sign", view_func=sign, methods=["POST"])
    app.add_url_rule("/sign/<envelope_id>", view_func=signing, methods=["GET"])
    app.add_url_rule("/signed", view_func=signed, methods=["GET"])
    app.add_url_rule("/status/<envelope_id>", view_func=status, methods=["GET"])
    app.add_url_rule("/envelopes/<envelope_id>/status.json", view_func=status_json,
                     methods=["GET"])
    app.add_url_rule(hooks.HOOK_PATH, view_func=receive_webhook, methods=["POST"])
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
        f"connect-src 'self'; frame-src {frames}; form-action 'self'; frame-ancestors 'self'; base-uri 'none'"
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
    except GatewayCallFailed as exc:
        status = 422 if exc.status in (400, 422) else 502
        return render_template("index.html", csrf=_csrf_token(), submission=uuid.uuid4().hex,
                               plans=PLANS, form=form, problem=exc.problem,
                               errors=exc.problem.get("errors") or {}), status
    envelope_id = str(created["envelope_id"])
    # this browser may later resume or ask about the envelopes it started, and no others
    if envelope_id not in _mine():
        session["envelopes"] = [*_mine()[-(MAX_TRACKED - 1):], envelope_id]
    # post/redirect/get: the signing page is a GET, so Back and reload never resubmit
    return redirect(url_for("signing", envelope_id=envelope_id), 303)


def _mine() -> list[str]:
    return list(session.get("envelopes", []))


def _book() -> hooks.StatusBook:
    return t.cast(hooks.StatusBook, current_app.extensions["status_book"])


def signing(envelope_id: str) -> tuple[str, int] | str:
    """A fresh signing session for one of this browser's envelopes (also "Resume signing")."""
    if envelope_id not in _mine():
        abort(404)
    known = _book().get(envelope_id)
    finished = known and outcomes.from_status(known.status, known.signer_status)
    if finished:
        return _outcome_page(finished, envelope_id, known.status, known.signer_status)
    try:
        view = call_gateway("POST", f"/v1/envelopes/{envelope_id}/recipient-view",
                            {"return_url": site_url() + "/signed"})
    except GatewayCallFailed as exc:
        if exc.status == 409:  # completed, declined or voided meanwhile: say which
            known = _refresh(envelope_id, force=True)
            finished = known and outcomes.from_status(known.status, known.signer_status)
            if finished:
                return _outcome_page(finished, envelope_id, known.status, known.signer_status)
        log.info("recipient view refused: %s %s", exc.status, exc.problem.get("code"))
        return _outcome_page(outcomes.ERROR, envelope_id, None, None,
                             problem=exc.problem), 502
    g.frame_sources = [_origin(view["url"])]
    return render_template("signing.html", url=view["url"], envelope_id=envelope_id)


def _outcome_page(outcome: Outcome, envelope_id: str | None, status: str | None,
                  signer_status: str | None, *, event: str | None = None,
                  claims: dict[str, t.Any] | None = None,
                  problem: dict[str, t.Any] | None = None) -> str:
    mine = envelope_id is not None and envelope_id in _mine()
    return render_template(
        "result.html", outcome=outcome, envelope_id=envelope_id, status=status,
        signer_status=signer_status, event=event, claims=claims, problem=problem,
        resume=outcome.resume and mine,
        poll_url=(url_for("status_json", envelope_id=envelope_id)
                  if outcome.poll and mine else None))


def signed() -> tuple[str, int] | str:
    token = request.args.get("gateway_token", "")
    verifier: GatewayTokenVerifier = current_app.extensions["verifier"]
    try:
        claims = verifier.verify(token)
        if claims["envelope_id"] != request.args.get("envelope_id"):
            raise TokenRejected("envelope_id in the URL does not match the token")
    except TokenRejected as exc:
        log.info("gateway token refused: %s", exc)
        return _outcome_page(outcomes.UNVERIFIED, None, None, None), 400
    envelope_id = claims["envelope_id"]
    # the token is the gateway's word at the relay; a webhook may already know more
    known = _book().record(envelope_id, claims["status"], claims.get("signer_status"),
                           at=float(claims["iat"]), source="return")
    outcome = outcomes.outcome(known.status, known.signer_status, claims["event"])
    return _outcome_page(outcome, envelope_id, known.status, known.signer_status,
                         event=claims["event"], claims=claims)


def status(envelope_id: str) -> Response:
    """The gateway's status of one of this browser's envelopes (JSON, for the page and tests)."""
    if envelope_id not in _mine():
        abort(404)
    try:
        answer = call_gateway("GET", f"/v1/envelopes/{envelope_id}")
    except GatewayCallFailed as exc:
        return _json({"error": exc.problem.get("code", "error")}, 502)
    _remember(envelope_id, answer)
    keys = ("envelope_id", "status", "signer_status", "last_event", "updated_at")
    return _json({k: answer.get(k) for k in keys})


def status_json(envelope_id: str) -> Response:
    """What the outcome page polls: the recorded status (webhooks first), in words too."""
    if envelope_id not in _mine():
        abort(404)
    known = _refresh(envelope_id)
    body: dict[str, t.Any] = {"envelope_id": envelope_id, "status": None,
                              "signer_status": None, "source": None, "outcome": None}
    if known is not None:
        body |= known.as_json()
        finished = outcomes.from_status(known.status, known.signer_status)
        body["outcome"] = finished.as_json() if finished else None
    return _json(body)


def _refresh(envelope_id: str, *, force: bool = False) -> hooks.Known | None:
    """The record, first refreshed from the gateway unless final or asked within the interval."""
    book = _book()
    known = book.get(envelope_id)
    if known is not None and known.status in outcomes.TERMINAL:
        return known
    interval = 0.0 if force else float(current_app.config["STATUS_FALLBACK_SECONDS"])
    if not book.claim_poll(envelope_id, interval):
        return known
    try:
        answer = call_gateway("GET", f"/v1/envelopes/{envelope_id}")
    except GatewayCallFailed as exc:
        log.info("status fallback failed: %s", exc.status)
        return known
    return _remember(envelope_id, answer)


def _remember(envelope_id: str, answer: dict[str, t.Any]) -> hooks.Known:
    status, signer_status = answer.get("status"), answer.get("signer_status")
    return _book().record(
        envelope_id, status if isinstance(status, str) else None,
        signer_status if isinstance(signer_status, str) else None,
        at=hooks.parse_time(answer.get("updated_at"), time.time()), source="gateway")


def receive_webhook() -> tuple[Response, int] | Response:
    """The gateway's webhook: verified, applied once per webhook-id, never moving backwards."""
    webhooks = current_app.extensions["webhooks"]
    if not webhooks:
        log.warning("a webhook arrived but no webhook secret is configured (%s)",
                    hooks.SECRET_ENV)
        return _json({"error": "webhooks not configured"}, 503)
    request.max_content_length = hooks.MAX_BODY
    body = request.get_data(cache=False)
    try:
        payload = hooks.verify(webhooks, body, request.headers)
    except hooks.WebhookRefused as exc:
        log.info("webhook refused: %s", exc)
        return _json({"error": "invalid webhook"}, exc.status)
    fields = hooks.event_fields(payload)
    if fields is None:
        return _json({"error": "unexpected payload"}, 400)
    kind, envelope_id, status, signer_status = fields
    if kind not in hooks.EVENT_TYPES:  # a newer gateway's event: acknowledged, not applied
        return _json({"ok": True, "ignored": kind})
    at = hooks.parse_time(payload.get("timestamp"),
                          float(request.headers["webhook-timestamp"]))
    applied = _book().apply_webhook(request.headers["webhook-id"], envelope_id, status,
                                    signer_status, at=at)
    return _json({"ok": True, "duplicate": not applied})


def _json(body: dict[str, t.Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")
