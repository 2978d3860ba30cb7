"""The return relay: where DocuSign sends the signer's browser, and the proof handed on.

DocuSign's `returnUrl` is `/v1/return/<relay token>`: a short-lived HS256 token the
gateway signed, naming the envelope, the partner and the partner's (already
allow-listed) return URL. The relay checks it, spends it (single use), records the
event and answers 303 to the partner's page with `envelope_id`, `event` and
`gateway_token`: an ES256 JWT (with `kid`) that the partner verifies against
`/.well-known/jwks.json`.

The `event` query parameter is typed by the signer's browser, so on
`signing_complete` the relay confirms with ONE read of DocuSign's envelope status
(unless a Connect event already recorded a final status); the gateway token carries
both the browser's `event` and the gateway's `status`, and partners act on `status`.
"""

from __future__ import annotations

import secrets
import time
import typing as t
import urllib.parse
import uuid

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import request
from markupsafe import escape

from gateway import errors
from gateway import store
from gateway.ratelimit import relay_limit
from gateway.upstream import get_client

bp = Blueprint("return_relay", __name__)

RELAY_SECRET = "relay_secret"
SIGNING_KEYS = "gateway_signing_keys"
RELAY_AUDIENCE = "gateway-return-relay"
#: events DocuSign appends to returnUrl (docusign.md §5)
EVENTS = frozenset({
    "cancel", "decline", "exception", "fax_pending", "session_timeout", "signing_complete",
    "ttl_expired", "viewing_complete", "access_code_failed", "id_check_failed",
})
_EVENT_STATUS = {"decline": "declined"}


class RelayRejected(Exception):
    """The relay token is bad, expired or already used: the browser gets a plain page."""


# --- keys ------------------------------------------------------------------


def ensure_keys(conn: sa.Connection) -> bool:
    """Create the relay secret and the first signing key if missing (`gateway init`)."""
    created = False
    now = time.time()
    if store.get_setting(conn, RELAY_SECRET) is None:
        store.put_setting(conn, RELAY_SECRET, secrets.token_hex(32), secret=True, now=now)
        created = True
    if not store.get_setting(conn, SIGNING_KEYS):
        store.put_setting(conn, SIGNING_KEYS, [_new_signing_key(now)], secret=True, now=now)
        created = True
    return created


def _new_signing_key(now: float) -> dict[str, t.Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    return {"kid": uuid.uuid4().hex[:16], "private_pem": pem, "created_at": now, "retired_at": None}


def rotate_signing_key(conn: sa.Connection) -> str:
    """Make a new active signing key; the old ones stay published until their tokens expire."""
    now = time.time()
    keys = store.get_setting(conn, SIGNING_KEYS) or []
    ttl = current_app.config["GATEWAY_TOKEN_TTL"]
    for k in keys:
        k["retired_at"] = k["retired_at"] or now
    keys = [k for k in keys if k["retired_at"] + ttl > now]
    new = _new_signing_key(now)
    store.put_setting(conn, SIGNING_KEYS, [new, *keys], secret=True, now=now)
    current_app.extensions.pop("relay_keys", None)
    return new["kid"]


def _keys() -> tuple[bytes, list[dict[str, t.Any]]]:
    """(relay secret, signing keys newest first), cached briefly so rotation propagates."""
    cached = current_app.extensions.get("relay_keys")
    if cached and cached[0] > time.monotonic():
        return cached[1], cached[2]
    with store.transaction() as conn:
        secret = store.get_setting(conn, RELAY_SECRET)
        signing = store.get_setting(conn, SIGNING_KEYS)
    if not secret or not signing:
        raise errors.InternalError("The gateway's signing keys are missing; run `gateway init`.")
    value = bytes.fromhex(secret)
    current_app.extensions["relay_keys"] = (time.monotonic() + 30, value, signing)
    return value, signing


def jwks() -> dict[str, t.Any]:
    """Public keys of every signing key whose tokens may still be valid."""
    now = time.time()
    ttl = current_app.config["GATEWAY_TOKEN_TTL"]
    out = []
    for k in _keys()[1]:
        if k["retired_at"] is not None and k["retired_at"] + ttl <= now:
            continue
        public = serialization.load_pem_private_key(k["private_pem"].encode(), None).public_key()
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        out.append(jwk | {"kid": k["kid"], "use": "sig", "alg": "ES256"})
    return {"keys": out}


# --- tokens ----------------------------------------------------------------


def public_url() -> str:
    return (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")


def relay_url(envelope_id: str, partner_id: int, return_url: str) -> str:
    """The `returnUrl` handed to DocuSign for one signing session."""
    secret, _ = _keys()
    now = int(time.time())
    token = jwt.encode(
        {"env": envelope_id, "ptn": partner_id, "ret": return_url, "iat": now,
         "exp": now + current_app.config["RETURN_TOKEN_TTL"], "jti": uuid.uuid4().hex,
         "aud": RELAY_AUDIENCE},
        secret, algorithm="HS256",
    )
    return f"{public_url()}/v1/return/{token}"


def _read_relay_token(token: str) -> dict[str, t.Any]:
    secret, _ = _keys()
    try:
        return jwt.decode(token, secret, algorithms=["HS256"], audience=RELAY_AUDIENCE,
                          options={"require": ["exp", "jti", "env", "ptn", "ret"]})
    except jwt.ExpiredSignatureError:
        raise RelayRejected("This signing link has expired.") from None
    except jwt.InvalidTokenError:
        raise RelayRejected("This signing link is not valid.") from None


def gateway_token(*, partner: str, envelope_id: str, event: str, status: str) -> str:
    """The proof for the partner: ES256, verifiable with the published JWKS."""
    _, signing = _keys()
    active = signing[0]
    now = int(time.time())
    claims = {
        "iss": public_url(), "aud": partner, "sub": envelope_id, "envelope_id": envelope_id,
        "event": event, "status": status, "iat": now,
        "exp": now + current_app.config["GATEWAY_TOKEN_TTL"], "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, active["private_pem"], algorithm="ES256",
                      headers={"kid": active["kid"]})


# --- the relay -------------------------------------------------------------


def _spend(jti: str, expires_at: float) -> None:
    """Single use: the primary key on `jti` makes a second spend fail on every instance."""
    try:
        with store.transaction() as conn:
            conn.execute(store.used_tokens.insert().values(jti=jti, expires_at=expires_at))
    except sa.exc.IntegrityError:
        raise RelayRejected("This signing link was already used.") from None


def _record(claims: dict[str, t.Any], event: str) -> tuple[str, str]:
    """Spend the token and record the event; returns (partner name, envelope status)."""
    env = store.envelopes
    _spend(claims["jti"], claims["exp"])
    with store.transaction() as conn:
        row = conn.execute(
            sa.select(env.c.status, store.partners.c.name)
            .select_from(env.join(store.partners))
            .where(env.c.envelope_id == claims["env"], env.c.partner_id == claims["ptn"])
        ).first()
        if row is None:
            raise RelayRejected("This signing link is not valid.")
        status = _EVENT_STATUS.get(event, row.status)
        conn.execute(env.update().where(env.c.envelope_id == claims["env"])
                     .values(last_event=event, status=status, updated_at=time.time()))
    return row.name, status


def _confirm(envelope_id: str, status: str) -> str:
    """One upstream read to confirm a claimed completion; the browser's word is not enough."""
    if status in ("completed", "declined", "voided"):
        return status
    try:
        upstream = get_client().get_envelope(envelope_id)
    except errors.GatewayError:
        return status  # unconfirmed: the token says so, and Connect will settle it
    confirmed = upstream.get("status", status)
    env = store.envelopes
    with store.transaction() as conn:
        conn.execute(env.update().where(env.c.envelope_id == envelope_id)
                     .values(status=confirmed, updated_at=time.time(),
                             upstream_checked_at=time.time()))
    return confirmed


def with_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k not in params] + list(params.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _error_page(message: str, status: int = 400) -> Response:
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Signing link problem</title>"
        "</head><body><h1>Signing link problem</h1><p>" + str(escape(message)) + "</p>"
        "<p>Please return to the website you came from and start again.</p></body></html>"
    )
    g.error_code = "relay_rejected"
    return Response(html, status=status, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@bp.get("/v1/return/<token>")
@relay_limit
def relay(token: str) -> Response:
    g.operation = "return_relay"
    event = request.args.get("event", "")
    if event not in EVENTS:
        return _error_page("DocuSign did not say how the signing session ended.")
    try:
        claims = _read_relay_token(token)
        g.envelope_id = claims["env"]
        partner, status = _record(claims, event)
    except RelayRejected as exc:
        return _error_page(str(exc))
    g.partner = partner
    if event == "signing_complete":
        status = _confirm(claims["env"], status)
    proof = gateway_token(partner=partner, envelope_id=claims["env"], event=event, status=status)
    target = with_query(claims["ret"], {"envelope_id": claims["env"], "event": event,
                                        "gateway_token": proof})
    resp = redirect(target, code=303)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@bp.get("/.well-known/jwks.json")
def jwks_view() -> Response:
    resp = jsonify(jwks())
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
