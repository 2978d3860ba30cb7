"""The return relay: where DocuSign sends the signer's browser, and the proof handed on.

DocuSign's `returnUrl` is `/v1/return/<relay token>`: an HS256 token the gateway signed,
naming the envelope, the partner and the partner's (already allow-listed) return URL,
with an expiry. The relay checks it, spends it (single use, fleet-wide through the
`used_tokens` table), records the event and answers 303 to the partner's page with
`envelope_id`, `event` and `gateway_token`: an ES256 JWT (with `kid`) that the partner
verifies against `/.well-known/jwks.json`.

Trust model. The `event` query parameter is typed by the signer's browser, so it is
recorded as `last_event` and passed on as `event`, but it never sets a status by itself.
On `signing_complete` and `decline` (the two events that claim an outcome) the relay
makes ONE read of DocuSign's envelope, unless a Connect event already recorded a final
status; the gateway token then carries both the browser's `event` and the gateway's
`status`, and partners act on `status`. One read rather than waiting for Connect: Connect
is asynchronous (seconds to minutes, retried for days) and may not be configured at all,
while the signer is waiting for a page now. The read is bounded: each relay token is
spent once and each one costs the partner an authenticated, rate-limited recipient-view
call. If the read fails the token says what the gateway knows (e.g. `delivered`) and
Connect or a later status call settles it.

Signing keys rotate: `rotate_signing_key` publishes a new key (optionally some time
before it starts signing, so verifiers with a cached JWKS already know it) and keeps
every old public key in the JWKS until every token it signed has expired.
"""

from __future__ import annotations

import math
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
from gateway.guards.ratelimit import relay_limit
from gateway.policy import get_policies
from gateway.upstream import get_client
from gateway.web import connect as webhooks

bp = Blueprint("return_relay", __name__)

RELAY_SECRET = "relay_secret"
SIGNING_KEYS = "gateway_signing_keys"
RELAY_AUDIENCE = "relay"
# DocuSign refuses a returnUrl over 500 characters ("'returnUrl' parameter must not exceed 500
# characters"); a margin below it, as a 480-character URL was once refused in demo [U]
MAX_RETURN_URL_LENGTH = 470
SIGNING_ALGORITHM = "ES256"
#: events DocuSign appends to returnUrl (docusign.md §5)
EVENTS = frozenset({
    "cancel", "decline", "exception", "fax_pending", "session_timeout", "signing_complete",
    "ttl_expired", "viewing_complete", "access_code_failed", "id_check_failed",
})
#: events that claim an outcome: confirmed with DocuSign before the partner hears of them
CONFIRMED_EVENTS = frozenset({"signing_complete", "decline"})
FINAL = webhooks.FINAL
#: how long a process trusts its copy of the keys; a rotation elsewhere shows within this
KEY_CACHE_SECONDS = 10
JWKS_MAX_AGE = 300


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
        store.put_setting(conn, SIGNING_KEYS, [_new_signing_key(now, now)], secret=True, now=now)
        created = True
    return created


def _new_signing_key(now: float, activates_at: float) -> dict[str, t.Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    return {"kid": uuid.uuid4().hex[:16], "private_pem": pem, "created_at": now,
            "activates_at": activates_at}


def _activates_at(key: t.Mapping[str, t.Any]) -> float:
    return float(key.get("activates_at", key["created_at"]))


def _lifecycle(keys: t.Iterable[t.Mapping[str, t.Any]], now: float
               ) -> list[tuple[t.Mapping[str, t.Any], float | None]]:
    """Each key with the time it stopped signing (None: pending or active), newest first.

    A key stops signing when the next newer key becomes active.
    """
    ordered = sorted(keys, key=_activates_at, reverse=True)
    out = []
    newer_start: float | None = None
    for key in ordered:
        retired = newer_start if newer_start is not None and newer_start <= now else None
        out.append((key, retired))
        newer_start = _activates_at(key)
    return out


def active_key(keys: t.Iterable[t.Mapping[str, t.Any]], now: float) -> t.Mapping[str, t.Any]:
    """The key that signs now: the newest one whose activation time has come."""
    for key, retired in _lifecycle(keys, now):
        if retired is None and _activates_at(key) <= now:
            return key
    raise errors.InternalError("No gateway signing key is active; run `gateway init`.")


def published_keys(keys: t.Iterable[t.Mapping[str, t.Any]], now: float,
                   token_ttl: float) -> list[t.Mapping[str, t.Any]]:
    """Keys whose public half belongs in the JWKS: pending, active, or retired less than
    one token lifetime ago (a token it signed may still be valid)."""
    return [key for key, retired in _lifecycle(keys, now)
            if retired is None or retired + token_ttl > now]


def rotate_signing_key(conn: sa.Connection, *, activate_in: float = 0.0,
                       drop_old: bool = False) -> str:
    """Add a new signing key; returns its kid.

    `activate_in` seconds: the new key is published at once but signs only after that,
    so verifiers that cache the JWKS know it before they meet it. Old keys stay published
    until every token they signed has expired, unless `drop_old` (a leaked key), which
    unpublishes them at once: tokens they signed stop verifying.
    """
    now = time.time()
    ttl = current_app.config["GATEWAY_TOKEN_TTL"]
    keys = store.get_setting(conn, SIGNING_KEYS) or []
    new = _new_signing_key(now, now + max(0.0, activate_in))
    keys = [] if drop_old else published_keys(keys, now, ttl)
    store.put_setting(conn, SIGNING_KEYS, [new, *keys], secret=True, now=now)
    current_app.extensions.pop("relay_keys", None)
    return str(new["kid"])


def signing_key_summary(conn: sa.Connection) -> list[dict[str, t.Any]]:
    """kid, state and times of every stored key (never the private half), newest first."""
    now = time.time()
    ttl = current_app.config["GATEWAY_TOKEN_TTL"]
    out = []
    for key, retired in _lifecycle(store.get_setting(conn, SIGNING_KEYS) or [], now):
        if retired is not None:
            state = "retired" if retired + ttl > now else "expired"
        else:
            state = "active" if _activates_at(key) <= now else "pending"
        out.append({"kid": key["kid"], "state": state, "activates_at": _activates_at(key),
                    "retired_at": retired})
    return out


def _keys() -> tuple[bytes, list[dict[str, t.Any]]]:
    """(relay secret, signing keys), cached briefly so a rotation elsewhere propagates."""
    cached = current_app.extensions.get("relay_keys")
    if cached and cached[0] > time.monotonic():
        return cached[1], cached[2]
    with store.transaction() as conn:
        secret = store.get_setting(conn, RELAY_SECRET)
        signing = store.get_setting(conn, SIGNING_KEYS)
    if not secret or not signing:
        raise errors.InternalError("The gateway's signing keys are missing; run `gateway init`.")
    value = bytes.fromhex(secret)
    current_app.extensions["relay_keys"] = (time.monotonic() + KEY_CACHE_SECONDS, value, signing)
    return value, signing


def jwks() -> dict[str, t.Any]:
    """Public keys of every signing key whose tokens may still be valid (and the next one)."""
    out = []
    for key in published_keys(_keys()[1], time.time(), current_app.config["GATEWAY_TOKEN_TTL"]):
        public = serialization.load_pem_private_key(key["private_pem"].encode(), None).public_key()
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        out.append(jwk | {"kid": key["kid"], "use": "sig", "alg": SIGNING_ALGORITHM})
    return {"keys": out}


# --- tokens ----------------------------------------------------------------


def public_url() -> str:
    """The gateway's own base URL: PUBLIC_URL, else the URL of the current request."""
    return (current_app.config.get("PUBLIC_URL") or request.host_url).rstrip("/")


def relay_url(envelope_id: str, partner_id: int, return_url: str) -> str:
    """The `returnUrl` handed to DocuSign for one signing session.

    Kept compact (no `typ` header, no `iat`, short claim names) because DocuSign refuses a
    returnUrl over 500 characters and the partner's return URL rides inside the token.
    """
    secret, _ = _keys()
    token = jwt.encode(
        {"env": envelope_id, "ptn": partner_id, "ret": return_url,
         "exp": int(time.time()) + current_app.config["RETURN_TOKEN_TTL"],
         "jti": secrets.token_urlsafe(9), "aud": RELAY_AUDIENCE},
        secret, algorithm="HS256", headers={"typ": None},
    )
    url = f"{public_url()}/v1/return/{token}"
    if len(url) > MAX_RETURN_URL_LENGTH:
        # each character of return_url costs about 4/3 in the base64 payload
        fits = len(return_url) - math.ceil((len(url) - MAX_RETURN_URL_LENGTH) * 3 / 4) - 1
        raise errors.ReturnUrlNotAllowed(
            f"return_url is too long: DocuSign accepts a returnUrl of at most 500 characters, "
            f"and the gateway's relay URL carrying this one would have {len(url)}. Keep "
            f"return_url under about {max(fits, 0)} characters.",
            errors={"return_url": ["too long"]})
    return url


def _read_relay_token(token: str) -> dict[str, t.Any]:
    secret, _ = _keys()
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=RELAY_AUDIENCE,
                            options={"require": ["exp", "jti", "env", "ptn", "ret", "aud"]})
    except jwt.ExpiredSignatureError:
        raise RelayRejected("This signing link has expired.") from None
    except jwt.InvalidTokenError:
        raise RelayRejected("This signing link is not valid.") from None
    if not (isinstance(claims["env"], str) and isinstance(claims["ptn"], int)
            and isinstance(claims["ret"], str) and isinstance(claims["jti"], str)):
        raise RelayRejected("This signing link is not valid.")
    return claims


def gateway_token(*, partner: str, envelope_id: str, event: str, status: str,
                  reference: str | None = None) -> str:
    """The proof for the partner: ES256 with `kid`, verifiable with the published JWKS."""
    _, signing = _keys()
    now = time.time()
    key = active_key(signing, now)
    issued = int(now)
    claims = {
        "iss": public_url(), "aud": partner, "sub": envelope_id, "envelope_id": envelope_id,
        "event": event, "status": status, "reference": reference, "iat": issued,
        "exp": issued + current_app.config["GATEWAY_TOKEN_TTL"], "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key["private_pem"], algorithm=SIGNING_ALGORITHM,
                      headers={"kid": key["kid"]})


# --- the relay -------------------------------------------------------------


class _Recorded(t.NamedTuple):
    partner: str
    status: str
    reference: str | None


def _record(claims: dict[str, t.Any], event: str) -> _Recorded:
    """Spend the token and record the browser's event, all or nothing.

    The primary key on `used_tokens.jti` makes a second spend fail on every instance; a
    token whose envelope, partner or return URL is no longer good rolls back unspent.
    """
    env = store.envelopes
    now = time.time()
    try:
        with store.transaction() as conn:
            conn.execute(store.used_tokens.insert().values(jti=claims["jti"],
                                                           expires_at=claims["exp"]))
            row = conn.execute(
                sa.select(env.c.status, env.c.reference, store.partners.c.name,
                          store.partners.c.revoked_at)
                .select_from(env.join(store.partners))
                .where(env.c.envelope_id == claims["env"], env.c.partner_id == claims["ptn"])
            ).first()
            if row is None or row.revoked_at is not None:
                raise RelayRejected("This signing link is not valid.")
            policy = get_policies().get(row.name)
            if policy is None or not policy.return_url_allowed(claims["ret"]):
                # the owner withdrew this return URL (or the whole policy) since the session began
                raise RelayRejected("This signing link is no longer valid.")
            conn.execute(env.update().where(env.c.envelope_id == claims["env"])
                         .values(last_event=event, updated_at=now))
    except sa.exc.IntegrityError:
        raise RelayRejected("This signing link was already used.") from None
    return _Recorded(row.name, row.status, row.reference)


def _confirm(envelope_id: str, status: str) -> str:
    """One upstream read to confirm a claimed outcome; the browser's word is not enough."""
    if status in FINAL:
        return status  # Connect (or an earlier read) already settled it
    try:
        upstream = get_client().get_envelope(
            envelope_id, budget=current_app.config["RETURN_CONFIRM_BUDGET"])
    except errors.GatewayError:
        return status  # unconfirmed: the token says what we know, Connect will settle it
    claimed = upstream.get("status")
    now = time.time()
    env = store.envelopes
    with store.transaction() as conn:
        if claimed in webhooks.KNOWN_STATUSES:
            webhooks.record_upstream_status(
                conn, envelope_id, claimed, source="read", last_event=None, now=now,
                as_of=webhooks.parse_time(upstream.get("statusChangedDateTime")),
            )
        conn.execute(env.update().where(env.c.envelope_id == envelope_id)
                     .values(upstream_checked_at=now))
        current = conn.execute(sa.select(env.c.status)
                               .where(env.c.envelope_id == envelope_id)).scalar_one()
    return str(current)


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
    g.error_code = "relay_rejected"
    return Response(html, status=status, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                             "Content-Security-Policy": "default-src 'none'"})


@bp.get("/v1/return/<token>")
@relay_limit
def relay(token: str) -> Response:
    """Check and spend the relay token, record the event, hand the partner its proof."""
    g.operation = "return_relay"
    event = request.args.get("event", "")
    if event not in EVENTS:
        return _error_page("DocuSign did not say how the signing session ended.")
    try:
        claims = _read_relay_token(token)
        g.envelope_id = claims["env"]
        recorded = _record(claims, event)
    except RelayRejected as exc:
        return _error_page(str(exc))
    g.partner = recorded.partner
    status = recorded.status
    if event in CONFIRMED_EVENTS:
        status = _confirm(claims["env"], status)
    proof = gateway_token(partner=recorded.partner, envelope_id=claims["env"], event=event,
                          status=status, reference=recorded.reference)
    target = with_query(claims["ret"], {"envelope_id": claims["env"], "event": event,
                                        "gateway_token": proof})
    resp = redirect(target, code=303)
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
