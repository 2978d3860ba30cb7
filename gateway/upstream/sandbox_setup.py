"""Wiring the gateway to the DocuSign emulator: a new key pair, registered, and consent."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.upstream.settings import DocuSignSettings
from gateway.upstream.settings import UpstreamSetupError
from gateway.upstream.settings import rsa_key_from_pem


def configure_sandbox(
    sandbox_url: str, *, private_key_pem: str | None = None, timeout: float = 5
) -> DocuSignSettings:
    """Wire the gateway to a running emulator: register a key pair and grant consent."""
    base = sandbox_url.rstrip("/")
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).hostname:
        raise UpstreamSetupError(f"{sandbox_url} is not an http(s) URL")
    pem = private_key_pem or _new_private_key_pem()
    key = rsa_key_from_pem(pem.encode("ascii"), source="the given private key")
    with requests.Session() as http:
        info = _sandbox_call(http, "GET", f"{base}/_sandbox/info", timeout=timeout, base=base)
        required = ("integration_key", "user_id", "account_id", "audience")
        if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in required):
            raise UpstreamSetupError(f"{base} does not look like the DocuSign emulator")
        _sandbox_call(http, "POST", f"{base}/_sandbox/keys", timeout=timeout, base=base,
                      body={"integration_key": info["integration_key"],
                            "public_key_pem": _public_key_pem(key)})
        _sandbox_call(http, "POST", f"{base}/_sandbox/consent", timeout=timeout, base=base,
                      body={"integration_key": info["integration_key"],
                            "user_id": info["user_id"], "granted": True})
    return DocuSignSettings(
        integration_key=info["integration_key"],
        user_id=info["user_id"],
        account_id=info["account_id"],
        private_key_pem=pem,
        oauth_base_url=(info.get("auth_base_url") or base).rstrip("/"),
        audience=info["audience"],
        base_uri=info.get("base_uri"),
        sandbox=True,
    )


def _new_private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _public_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _sandbox_call(
    http: requests.Session, method: str, url: str, *, timeout: float, base: str,
    body: Mapping[str, t.Any] | None = None,
) -> t.Any:
    try:
        resp = http.request(method, url, json=body, timeout=timeout)
    except requests.RequestException:
        raise UpstreamSetupError(f"no DocuSign emulator answers at {base}") from None
    path = urlsplit(url).path
    if resp.status_code >= 400:
        raise UpstreamSetupError(f"the emulator at {base} refused {method} {path} "
                                 f"(HTTP {resp.status_code})")
    try:
        return resp.json()
    except ValueError:
        raise UpstreamSetupError(f"{base} does not look like the DocuSign emulator") from None
