"""The gateway's own keys: the relay secret (HS256) and the ES256 keys that sign `gateway_token`.

Signing keys rotate: `rotate_signing_key` publishes a new key (optionally some time
before it starts signing, so verifiers with a cached JWKS already know it) and keeps
every old public key in the JWKS until every token it signed has expired. These are
not partner API keys (those are `partner_keys`).
"""

from __future__ import annotations

import secrets
import time
import typing as t
import uuid

import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app

from gateway import errors
from gateway import store

RELAY_SECRET = "relay_secret"
SIGNING_KEYS = "gateway_signing_keys"
SIGNING_ALGORITHM = "ES256"
#: how long a process trusts its copy of the keys; a rotation elsewhere shows within this
KEY_CACHE_SECONDS = 10


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


def load() -> tuple[bytes, list[dict[str, t.Any]]]:
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
    for key in published_keys(load()[1], time.time(), current_app.config["GATEWAY_TOKEN_TTL"]):
        private = serialization.load_pem_private_key(key["private_pem"].encode(), None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        public = private.public_key()
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        out.append(jwk | {"kid": key["kid"], "use": "sig", "alg": SIGNING_ALGORITHM})
    return {"keys": out}
