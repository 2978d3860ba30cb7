"""Verify the gateway's `gateway_token` the way any partner should: against the published JWKS.

The return URL's `event` and `envelope_id` are typed by the visitor's browser; only the
signed token is evidence. A token is accepted when its signature verifies with the key
named by its `kid` in `<gateway>/.well-known/jwks.json`, its algorithm is ES256, it was
issued by the gateway (`iss`), for this partner (`aud`), and has not expired (`exp`).
Its claims carry the envelope's `status` and, from gateways that send it, the partner's
own signer's `signer_status` (they differ while the envelope waits for a countersignature);
the returned claims always have `signer_status`, None when the token has none.

The key set is cached; an unknown `kid` triggers one refetch (the gateway rotates its
keys and publishes new ones first), but at most once per `min_refetch` seconds, so a
stream of made-up kids cannot turn the site into a JWKS-fetching loop.
"""

from __future__ import annotations

import threading
import time
import typing as t

import jwt
import requests

ALGORITHM = "ES256"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "envelope_id", "event", "status"]


class TokenRejected(Exception):
    """The token is not a valid gateway token for this partner (the reason is for logs)."""


class GatewayTokenVerifier:
    """Verifies gateway tokens for one partner against one gateway's JWKS."""

    def __init__(self, jwks_url: str, *, issuer: str, audience: str, timeout: float = 5.0,
                 min_refetch: float = 30.0, leeway: float = 30.0) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.timeout = timeout
        self.min_refetch = min_refetch
        self.leeway = leeway
        self._keys: dict[str, t.Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def verify(self, token: str) -> dict[str, t.Any]:
        """The token's claims, or TokenRejected."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"malformed token: {exc}") from None
        kid = header.get("kid")
        # the algorithm is pinned here, never taken from the token ("alg": "none" et al.)
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            raise TokenRejected("unexpected algorithm or missing kid")
        key = self._key(kid)
        try:
            claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=self.audience,
                                issuer=self.issuer, leeway=self.leeway,
                                options={"require": REQUIRED_CLAIMS})
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"invalid token: {exc}") from None
        claims.setdefault("signer_status", None)
        if not all(isinstance(claims[name], str) for name in ("envelope_id", "event", "status")):
            raise TokenRejected("envelope_id, event and status must be strings")
        if claims["signer_status"] is not None and not isinstance(claims["signer_status"], str):
            raise TokenRejected("signer_status must be a string")
        return t.cast(dict, claims)

    def _key(self, kid: str) -> t.Any:
        with self._lock:
            if kid not in self._keys and self._may_refetch():
                # stamped before the fetch: a failing JWKS is not hammered either
                self._fetched_at = time.monotonic()
                self._keys = self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise TokenRejected("unknown kid")
        return key

    def _may_refetch(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self.min_refetch

    def _fetch(self) -> dict[str, t.Any]:
        try:
            resp = requests.get(self.jwks_url, timeout=self.timeout)
            resp.raise_for_status()
            keys = resp.json()["keys"]
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise TokenRejected(f"cannot fetch the gateway's JWKS: {type(exc).__name__}") from None
        out = {}
        for jwk in keys:
            try:
                out[jwk["kid"]] = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
            except (jwt.PyJWKError, KeyError, TypeError):
                continue  # a key we cannot use cannot verify anything either
        return out
