"""JWT Grant and userinfo: an access token for the system sender, and the account to use."""

from __future__ import annotations

import time
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote
from urllib.parse import urlsplit

import jwt
import requests

from gateway import errors
from gateway.upstream.errors import json_object
from gateway.upstream.errors import positive_number
from gateway.upstream.errors import rest_error
from gateway.upstream.errors import token_error
from gateway.upstream.settings import SCOPES
from gateway.upstream.settings import DocuSignSettings
from gateway.upstream.transport import Transport

JWT_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# docs/docusign-facts.md §1: the SDK signs for the token lifetime; 1 h is accepted everywhere
ASSERTION_LIFETIME = 3600
# §1: DocuSign's tokens live an hour; used only when a response leaves expires_in out
DEFAULT_TOKEN_LIFETIME = 3600


@dataclass(frozen=True)
class Token:
    """An access token, with its times on the transport's clock."""

    authorization: str  # the whole Authorization header value: "<token_type> <access_token>"
    expires_at: float
    refresh_at: float  # from here on it is replaced before use
    settings: DocuSignSettings  # what it was issued for: new settings invalidate it


@dataclass(frozen=True)
class Account:
    """The configured account as userinfo describes it."""

    base_path: str  # <base_uri>/restapi/v2.1/accounts/<account_id>
    base_uri: str
    account_name: str
    user_name: str
    settings: DocuSignSettings


def fetch_token(transport: Transport, settings: DocuSignSettings, deadline: float, *,
                refresh_margin: float) -> Token:
    """A new access token by JWT Grant (retried: asking for a token changes nothing)."""
    url = settings.oauth_base_url.rstrip("/") + "/oauth/token"
    started = transport.clock()
    resp = transport.call("token", "POST", url, deadline=deadline, idempotent=True,
                          data={"grant_type": JWT_GRANT_TYPE, "assertion": _assertion(settings)})
    if resp.status_code != 200:
        raise token_error(resp, settings)
    body = json_object(resp)
    access, token_type = body.get("access_token"), body.get("token_type") or "Bearer"
    if not isinstance(access, str) or not access or not isinstance(token_type, str):
        raise errors.UpstreamUnavailable("DocuSign answered without an access token.")
    lifetime = positive_number(body.get("expires_in")) or DEFAULT_TOKEN_LIFETIME
    # measured from the request: the token may have aged in flight and in retries; a margin
    # as long as the lifetime would fetch a token per call, so it is capped at half
    margin = min(refresh_margin, lifetime / 2)
    return Token(f"{token_type} {access}", started + lifetime, started + lifetime - margin,
                 settings)


def _assertion(settings: DocuSignSettings) -> str:
    now = int(time.time())
    claims = {
        "iss": settings.integration_key,
        "sub": settings.user_id,
        "aud": settings.audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
        "scope": SCOPES,
    }
    try:
        return jwt.encode(claims, settings.private_key_pem, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError):
        raise errors.UpstreamAuthFailed("The stored DocuSign private key is unusable.") from None


def fetch_account(transport: Transport, token: Token, deadline: float, *,
                  renew: t.Callable[[], Token]) -> tuple[Token, Account]:
    """The account from userinfo, and the token that got it.

    A 401 means the token was revoked or expired early on DocuSign's side: `renew`
    gives one new token for one more try.
    """
    settings = token.settings
    url = settings.oauth_base_url.rstrip("/") + "/oauth/userinfo"
    resp = _userinfo(transport, url, token, deadline)
    if resp.status_code == 401:
        token = renew()
        resp = _userinfo(transport, url, token, deadline)
    if resp.status_code == 401:
        raise errors.UpstreamAuthFailed()
    if resp.status_code >= 400:
        raise rest_error(resp)
    return token, pick_account(json_object(resp), settings)


def _userinfo(transport: Transport, url: str, token: Token,
              deadline: float) -> requests.Response:
    return transport.call("userinfo", "GET", url, deadline=deadline, idempotent=True,
                          headers={"Authorization": token.authorization})


def pick_account(info: Mapping[str, t.Any], settings: DocuSignSettings) -> Account:
    """The userinfo account that matches the settings: the user may belong to several."""
    accounts = info.get("accounts")
    for account in accounts if isinstance(accounts, list) else ():
        if not isinstance(account, dict):
            continue
        if str(account.get("account_id", "")).lower() != settings.account_id.lower():
            continue
        base_uri = str(account.get("base_uri") or "").rstrip("/")
        if urlsplit(base_uri).scheme not in ("http", "https"):
            raise errors.UpstreamUnavailable("DocuSign's userinfo has no usable base URI.")
        return Account(
            base_path=f"{base_uri}/restapi/v2.1/accounts/{quote(settings.account_id, safe='')}",
            base_uri=base_uri,
            account_name=str(account.get("account_name") or ""),
            user_name=str(info.get("name") or ""),
            settings=settings,
        )
    raise errors.UpstreamAuthFailed(
        "The DocuSign user has no access to the configured account."
    )
