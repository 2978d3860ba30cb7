"""The two tokens of a signing session: the relay token DocuSign carries, and the partner's proof.

DocuSign's `returnUrl` is `/v1/return/<relay token>`: an HS256 token the gateway signed,
naming the envelope, the partner and the partner's (already allow-listed) return URL,
with an expiry. The proof handed on to the partner is `gateway_token`: an ES256 JWT
(with `kid`) that the partner verifies against `/.well-known/jwks.json`.
"""

from __future__ import annotations

import math
import secrets
import time
import typing as t
import uuid

import jwt
from flask import current_app

from gateway import errors
from gateway.services import signing_keys
from gateway.services.signing_keys import SIGNING_ALGORITHM

RELAY_AUDIENCE = "relay"
# docs/docusign-facts.md §15: DocuSign's recipientViewRequest documents a returnUrl of at
# most 470 characters
MAX_RETURN_URL_LENGTH = 470


class RelayRejected(Exception):
    """The relay token is bad, expired or already used: the browser gets a plain page."""


def public_url() -> str:
    """The gateway's own base URL: PUBLIC_URL, never anything a request says.

    A request's Host (or X-Forwarded-Host) is the caller's to choose: a relay URL built
    from it would send a signer, with a live relay token, wherever the caller likes.
    """
    configured = current_app.config.get("PUBLIC_URL")
    if not configured:
        raise errors.PublicUrlNotConfigured()
    return str(configured).rstrip("/")


def relay_url(envelope_id: str, partner_id: int, return_url: str) -> str:
    """The `returnUrl` handed to DocuSign for one signing session.

    Kept compact (no `typ` header, no `iat`, short claim names) because DocuSign refuses a
    returnUrl over 500 characters and the partner's return URL rides inside the token.
    """
    secret, _ = signing_keys.load()
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


def read_relay_token(token: str) -> dict[str, t.Any]:
    secret, _ = signing_keys.load()
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
                  signer_status: str | None = None, reference: str | None = None) -> str:
    """The proof for the partner: ES256 with `kid`, verifiable with the published JWKS."""
    _, signing = signing_keys.load()
    now = time.time()
    key = signing_keys.active_key(signing, now)
    issued = int(now)
    claims = {
        "iss": public_url(), "aud": partner, "sub": envelope_id, "envelope_id": envelope_id,
        "event": event, "status": status, "signer_status": signer_status,
        "reference": reference, "iat": issued,
        "exp": issued + current_app.config["GATEWAY_TOKEN_TTL"], "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key["private_pem"], algorithm=SIGNING_ALGORITHM,
                      headers={"kid": key["kid"]})
