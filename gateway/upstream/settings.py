"""DocuSign settings: who the system sender is, stored vault-encrypted, and their cache."""

from __future__ import annotations

import logging
import re
import threading
import typing as t
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from urllib.parse import quote
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway import errors
from gateway import store

log = logging.getLogger(__name__)

SETTING_NAME = "docusign"
DEMO_OAUTH_BASE_URL = "https://account-d.docusign.com"
PRODUCTION_OAUTH_BASE_URL = "https://account.docusign.com"
DEFAULT_CONSENT_REDIRECT = "https://developers.docusign.com/platform/auth/consent"
SCOPES = "signature impersonation"

ID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
GUID_RE = re.compile(f"^{ID_PATTERN}$")


class UpstreamSetupError(Exception):
    """Configuring DocuSign failed; the message is one line for the owner's terminal."""


@dataclass(frozen=True)
class DocuSignSettings:
    """Everything needed to act as the system sender; stored vault-encrypted."""

    integration_key: str
    user_id: str
    account_id: str
    private_key_pem: str
    oauth_base_url: str
    audience: str
    base_uri: str | None = None
    sandbox: bool = False
    production: bool = False

    def __repr__(self) -> str:
        # a repr lands in tracebacks and debuggers: keep the key and the ids out of it
        return (f"DocuSignSettings(oauth_base_url={self.oauth_base_url!r}, "
                f"sandbox={self.sandbox}, production={self.production})")


def save_settings(conn: sa.Connection, settings: DocuSignSettings, *, now: float) -> None:
    """Store the settings encrypted (the PEM never sits in the database in clear)."""
    store.put_setting(conn, SETTING_NAME, asdict(settings), secret=True, now=now)


def load_settings(conn: sa.Connection) -> DocuSignSettings | None:
    """The stored settings, None when DocuSign was never configured."""
    value = store.get_setting(conn, SETTING_NAME)
    if value is None:
        return None
    known = {f.name for f in fields(DocuSignSettings)}
    try:
        return DocuSignSettings(**{k: v for k, v in value.items() if k in known})
    except (TypeError, AttributeError):
        raise UpstreamSetupError(
            "the stored DocuSign settings are incomplete; run `gateway docusign configure`"
        ) from None


def consent_url(settings: DocuSignSettings, *, redirect_uri: str = DEFAULT_CONSENT_REDIRECT) -> str:
    """The individual-consent URL the system sender opens once (docs/docusign-facts.md §1)."""
    return (
        f"{settings.oauth_base_url.rstrip('/')}/oauth/auth?response_type=code"
        f"&scope={quote(SCOPES, safe='')}"
        f"&client_id={quote(settings.integration_key, safe='')}"
        f"&redirect_uri={quote(redirect_uri, safe='')}"
    )


def rsa_key_from_pem(pem: bytes, *, source: str) -> rsa.RSAPrivateKey:
    """Parse an unencrypted RSA private key (PKCS#8 or PKCS#1), or say clearly why not."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise UpstreamSetupError(
            f"{source} is encrypted; export the key without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise UpstreamSetupError(f"{source} is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UpstreamSetupError(f"{source} is not an RSA private key (DocuSign signs with RS256)")
    return key


def settings_from_files(
    *,
    integration_key: str,
    user_id: str,
    account_id: str,
    private_key_path: str,
    production: bool,
) -> DocuSignSettings:
    """Settings for a real DocuSign account, checked before anything is stored."""
    for label, value in (("integration key", integration_key), ("user id", user_id),
                         ("account id", account_id)):
        # the value itself is not echoed: one-line errors end up in shell histories and logs
        if not GUID_RE.match(value or ""):
            raise UpstreamSetupError(
                f"the {label} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
            )
    try:
        with open(private_key_path, "rb") as fh:
            pem = fh.read()
    except OSError as exc:
        raise UpstreamSetupError(
            f"cannot read the private key file {private_key_path}: {exc.strerror or exc}"
        ) from None
    rsa_key_from_pem(pem, source=private_key_path)
    oauth = PRODUCTION_OAUTH_BASE_URL if production else DEMO_OAUTH_BASE_URL
    return DocuSignSettings(
        integration_key=integration_key.lower(),
        user_id=user_id.lower(),
        account_id=account_id.lower(),
        private_key_pem=pem.decode("ascii", errors="replace"),
        oauth_base_url=oauth,
        audience=urlsplit(oauth).hostname or "",
        production=production,
    )


@dataclass(frozen=True)
class _Cached:
    settings: DocuSignSettings
    updated_at: float


class SettingsCache:
    """The settings a running client uses, re-read when the owner stores new ones.

    Every `recheck` seconds one indexed SELECT reads the row's timestamp; the row is
    decrypted only when that changed. `on_change` runs (under the cache's lock) when the
    settings differ from the ones held, so that nothing issued for the old ones is kept.
    """

    def __init__(self, *, app_context: t.Callable[[], t.ContextManager[t.Any]],
                 on_change: t.Callable[[], None]) -> None:
        self._app_context = app_context
        self._on_change = on_change
        self._lock = threading.Lock()
        self._cached: _Cached | None = None
        self._checked_at: float | None = None

    def current(self, now: float, *, recheck: float) -> DocuSignSettings:
        """The settings, read again when the last look is `recheck` seconds old."""
        with self._lock:
            fresh = self._checked_at is not None and now - self._checked_at < recheck
            if not (fresh and self._cached is not None):
                self._refresh()
                self._checked_at = now
            if self._cached is None:
                raise errors.UpstreamNotConfigured()
            return self._cached.settings

    def _refresh(self) -> None:
        # only the timestamp is read on each check; the row is decrypted when it changed
        with self._app_context():
            with store.get_engine().connect() as conn:
                updated_at = conn.execute(
                    sa.select(store.settings.c.updated_at)
                    .where(store.settings.c.name == SETTING_NAME)
                ).scalar()
                if updated_at is None:
                    self._replace(None)
                    return
                if self._cached is not None and self._cached.updated_at == updated_at:
                    return
                settings = load_settings(conn)
        self._replace(_Cached(settings, updated_at) if settings else None)

    def _replace(self, cached: _Cached | None) -> None:
        old = self._cached.settings if self._cached else None
        self._cached = cached
        if (cached.settings if cached else None) != old:
            # other credentials, maybe another account: nothing held so far is valid
            self._on_change()
            if old is not None:
                log.info("docusign settings changed; token and account dropped")
