"""Inbound DocuSign Connect (JSON SIM): `POST /webhooks/docusign`.

Nobody authenticates to this endpoint with a key: a message is believed only when one of
its `X-DocuSign-Signature-N` headers is base64(HMAC-SHA256(secret, raw body)) for one of
the Connect HMAC secrets the owner configured (several at once, so a secret can rotate:
DocuSign signs with every active secret, one header each). Anything else gets one uniform
401 and changes nothing; the specific reason goes to the debug log only.

A verified message names an envelope by `data.envelopeId`. Envelopes the gateway did not
create are acknowledged (200, so DocuSign stops retrying) and ignored. For our own
envelopes the new status is applied only if it is newer, on DocuSign's clock, than what
the gateway last heard from DocuSign (`store.envelope_upstream`): Connect delivers at
least once and in no guaranteed order, so redeliveries and stale events are no-ops. A
final status (completed, declined, voided) never moves.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import typing as t
import uuid
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence

import requests
import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import request

from gateway import errors
from gateway import store

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

SECRETS_SETTING = "connect_hmac_secrets"
WEBHOOK_PATH = "/webhooks/docusign"
# docusign.md §9: up to 100 active HMAC keys [U]; more headers than that are not looked at
MAX_SIGNATURE_HEADERS = 100
_SIGNATURE_HEADER_RE = re.compile(r"^x-docusign-signature-([0-9]{1,3})$", re.IGNORECASE)
# a JSON SIM message with the envelope summary and recipients is a few KiB; documents
# are never asked for, so anything near this size is not a message we want
DEFAULT_MAX_BYTES = 256 * 1024

FINAL = frozenset({"completed", "declined", "voided"})
KNOWN_STATUSES = frozenset({"created", "sent", "delivered", "signed", "completed", "declined",
                            "voided"})
_EVENT_STATUS = {f"envelope-{s}": s for s in ("sent", "delivered", "completed", "declined",
                                               "voided")}


class SignatureInvalid(errors.GatewayError):
    """*401*: the Connect message is unsigned or signed with no secret we hold (uniform)."""

    code = 401
    error_code = "invalid_signature"
    title = "Invalid signature"
    description = "The message signature is missing or invalid."


# --- HMAC (pure) -----------------------------------------------------------------


def sign(secret: str, body: bytes) -> str:
    """base64(HMAC-SHA256(key = the secret's UTF-8 bytes, msg = the raw body)), as DocuSign signs."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """The values of every `X-DocuSign-Signature-N` header (at most MAX_SIGNATURE_HEADERS)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found = [value for name, value in pairs if _SIGNATURE_HEADER_RE.match(name)]
    return found[:MAX_SIGNATURE_HEADERS]


def verify(secrets_: Sequence[str], body: bytes,
           headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> bool:
    """Whether any signature header matches any secret, comparing in constant time.

    Every pair is compared (no early exit), so the time taken says nothing about which
    secret or header came close.
    """
    provided = [value.strip().encode("ascii", "replace") for value in signature_headers(headers)]
    ok = False
    for secret in secrets_:
        expected = sign(secret, body).encode("ascii")
        for value in provided:
            ok |= hmac.compare_digest(expected, value)
    return ok


# --- secrets (vault-encrypted setting) ----------------------------------------------


def load_secrets(conn: sa.Connection) -> list[dict[str, t.Any]]:
    """The stored secrets: `[{"id", "secret", "added_at"}]`, newest first."""
    return list(store.get_setting(conn, SECRETS_SETTING) or [])


def add_secret(conn: sa.Connection, value: str | None = None, *, now: float) -> tuple[str, str]:
    """Store a Connect HMAC secret (a fresh random one unless given); returns (id, secret)."""
    value = value or secrets.token_urlsafe(32)
    if len(value) < 16:
        raise ValueError("a Connect HMAC secret needs at least 16 characters")
    entries = load_secrets(conn)
    if any(hmac.compare_digest(e["secret"], value) for e in entries):
        raise ValueError("this secret is already configured")
    secret_id = uuid.uuid4().hex[:8]
    entries.insert(0, {"id": secret_id, "secret": value, "added_at": now})
    store.put_setting(conn, SECRETS_SETTING, entries, secret=True, now=now)
    return secret_id, value


def remove_secret(conn: sa.Connection, secret_id: str, *, now: float) -> bool:
    """Forget one secret by id; messages signed only with it are rejected from now on."""
    entries = load_secrets(conn)
    kept = [e for e in entries if e["id"] != secret_id]
    if len(kept) == len(entries):
        return False
    store.put_setting(conn, SECRETS_SETTING, kept, secret=True, now=now)
    return True


def configure_sandbox_connect(sandbox_url: str, listener_url: str, hmac_secrets: Sequence[str],
                              *, timeout: float = 5) -> None:
    """Point the emulator's Connect at the gateway's listener, signing with these secrets."""
    body = {"url": listener_url, "hmac_secrets": list(hmac_secrets), "enabled": True}
    try:
        resp = requests.post(sandbox_url.rstrip("/") + "/_sandbox/connect", json=body,
                             timeout=timeout)
    except requests.RequestException:
        raise ValueError(f"no DocuSign emulator answers at {sandbox_url}") from None
    if resp.status_code >= 400:
        raise ValueError(f"the emulator at {sandbox_url} refused the Connect setup "
                         f"(HTTP {resp.status_code})")


# --- applying what DocuSign says -----------------------------------------------------


def parse_time(value: t.Any) -> float | None:
    """DocuSign's `2019-11-05T11:01:37.5966414Z` as epoch seconds; None when absent or odd."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _ensure_upstream_row(conn: sa.Connection, envelope_id: str, now: float) -> None:
    """Insert the envelope's (empty) upstream row if missing, race-free on both backends."""
    up = store.envelope_upstream
    values = {"envelope_id": envelope_id, "received_at": now}
    if conn.dialect.name in ("sqlite", "postgresql"):
        if conn.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        conn.execute(insert(up).values(**values).on_conflict_do_nothing())
        return
    exists = conn.execute(sa.select(up.c.envelope_id).where(up.c.envelope_id == envelope_id)).first()
    if exists is None:
        conn.execute(up.insert().values(**values))


def record_upstream_status(conn: sa.Connection, envelope_id: str, status: str, *,
                           as_of: float | None, source: str, last_event: str | None,
                           now: float) -> bool:
    """Apply a status DocuSign reported, if it is news; True when the envelope row changed.

    Both decisions are conditional UPDATEs, so two deliveries racing each other cannot
    undo one another: the newer `as_of` wins, and a final status never moves. A status
    with no date at all cannot be ordered, so only a final one (which nothing overrides)
    is taken.
    """
    up = store.envelope_upstream
    _ensure_upstream_row(conn, envelope_id, now)
    newer = up.c.envelope_id == envelope_id
    if as_of is not None:
        newer = sa.and_(newer, sa.or_(up.c.as_of.is_(None), up.c.as_of < as_of))
    elif status not in FINAL:
        return False
    fresh = conn.execute(up.update().where(newer).values(
        status=status, as_of=as_of if as_of is not None else up.c.as_of, source=source,
        received_at=now,
    ))
    if fresh.rowcount != 1:
        return False
    env = store.envelopes
    values: dict[str, t.Any] = {"status": status, "updated_at": now}
    if last_event is not None:
        values["last_event"] = last_event
    changed = conn.execute(env.update()
                           .where(env.c.envelope_id == envelope_id, env.c.status.not_in(FINAL))
                           .values(**values))
    return changed.rowcount == 1


def _status_of(message: Mapping[str, t.Any]) -> tuple[str | None, str | None, float | None]:
    """(envelope id, status, as_of) from a JSON SIM message; None parts when absent."""
    data = message.get("data")
    data = data if isinstance(data, dict) else {}
    summary = data.get("envelopeSummary")
    summary = summary if isinstance(summary, dict) else {}
    envelope_id = data.get("envelopeId")
    if not isinstance(envelope_id, str) or not 0 < len(envelope_id) <= 64:
        envelope_id = None
    status = summary.get("status")
    if status not in KNOWN_STATUSES:
        status = _EVENT_STATUS.get(str(message.get("event")))
    as_of = parse_time(summary.get("statusChangedDateTime")) or parse_time(
        message.get("generatedDateTime"))
    return envelope_id, status, as_of


# --- the endpoint --------------------------------------------------------------------


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
    g.error_code = reason
    return jsonify({"received": True, "applied": False})


@bp.post(WEBHOOK_PATH)
def docusign_connect() -> Response:
    """Accept one Connect JSON SIM message."""
    g.operation = "connect_event"
    body = _verified_body()
    try:
        message = json.loads(body)
    except ValueError:
        raise errors.MalformedJSON("The Connect message is not JSON.") from None
    if not isinstance(message, dict):
        raise errors.MalformedJSON("The Connect message is not a JSON object.")
    envelope_id, status, as_of = _status_of(message)
    if envelope_id is None or status is None:
        return _ignored("ignored_event")
    env = store.envelopes
    now = time.time()
    with store.transaction() as conn:
        row = conn.execute(
            sa.select(store.partners.c.name).select_from(env.join(store.partners))
            .where(env.c.envelope_id == envelope_id)
        ).first()
        if row is None:
            return _ignored("ignored_unknown_envelope")
        g.envelope_id = envelope_id
        g.partner = row.name
        event = str(message.get("event") or f"envelope-{status}")[:64]
        applied = record_upstream_status(conn, envelope_id, status, as_of=as_of, source="connect",
                                         last_event=event, now=now)
    if not applied:
        return _ignored("ignored_stale")
    return jsonify({"received": True, "applied": True})


def init_app(app: Flask) -> None:
    """Register the Connect listener."""
    app.config.setdefault("CONNECT_MAX_BYTES", DEFAULT_MAX_BYTES)
    app.register_blueprint(bp)
