"""DocuSign Connect messages: the HMAC check, the owner's Connect secrets, and reading a message.

A message is believed only when one of its `X-DocuSign-Signature-N` headers is
base64(HMAC-SHA256(secret, raw body)) for one of the Connect HMAC secrets the owner
configured (several at once, so a secret can rotate: DocuSign signs with every active
secret, one header each; docs/docusign-facts.md §9).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import typing as t
import uuid
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass

import requests
import sqlalchemy as sa

from gateway import errors
from gateway import store
from gateway.services import envelopes

SECRETS_SETTING = "connect_hmac_secrets"
# docs/docusign-facts.md §9: up to 100 active HMAC keys [U]; more headers than that are not looked at
MAX_SIGNATURE_HEADERS = 100
_SIGNATURE_HEADER_RE = re.compile(r"^x-docusign-signature-([0-9]{1,3})$", re.IGNORECASE)
_EVENT_STATUS = {f"envelope-{s}": s for s in ("sent", "delivered", "completed", "declined",
                                               "voided")}


class SignatureInvalid(errors.GatewayError):
    """*401*: the Connect message is unsigned or signed with no secret we hold (uniform)."""

    code = 401
    error_code = "invalid_signature"
    title = "Invalid signature"
    description = "The message signature is missing or invalid."


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
    body: dict[str, t.Any] = {"url": listener_url, "hmac_secrets": list(hmac_secrets),
                              "enabled": True}
    try:
        resp = requests.post(sandbox_url.rstrip("/") + "/_sandbox/connect", json=body,
                             timeout=timeout)
    except requests.RequestException:
        raise ValueError(f"no DocuSign emulator answers at {sandbox_url}") from None
    if resp.status_code >= 400:
        raise ValueError(f"the emulator at {sandbox_url} refused the Connect setup "
                         f"(HTTP {resp.status_code})")




@dataclass(frozen=True)
class ConnectMessage:
    """What the gateway reads from one JSON SIM message (None parts when absent)."""

    envelope_id: str | None
    status: str | None
    as_of: float | None
    event: str
    summary: Mapping[str, t.Any]


def read_message(message: Mapping[str, t.Any]) -> ConnectMessage:
    """The envelope, its status and DocuSign's time stamp from a JSON SIM message.

    Recipient events (`recipient-completed`, ...) carry the envelope summary too, with
    its recipients when the Connect configuration includes them (docs/docusign-facts.md
    §13): the signer's status is read from there by its clientUserId.
    """
    data = message.get("data")
    data = data if isinstance(data, dict) else {}
    summary = data.get("envelopeSummary")
    summary = summary if isinstance(summary, dict) else {}
    envelope_id = data.get("envelopeId")
    if not isinstance(envelope_id, str) or not 0 < len(envelope_id) <= 64:
        envelope_id = None
    status = summary.get("status")
    if status not in envelopes.KNOWN:
        status = _EVENT_STATUS.get(str(message.get("event")))
    as_of = envelopes.parse_time(summary.get("statusChangedDateTime")) or envelopes.parse_time(
        message.get("generatedDateTime"))
    event = str(message.get("event") or f"envelope-{status}")[:64]
    return ConnectMessage(envelope_id, status, as_of, event, summary)
