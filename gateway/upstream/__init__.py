"""The one module that talks to DocuSign: JWT Grant, userinfo and four eSignature REST calls.

Everything else in the gateway goes through `DocuSignClient` (one per app, shared by
every thread of the process). It holds:

- the DocuSign settings, read from the store (vault-encrypted) and re-read when the
  owner runs `gateway docusign configure` against a running server;
- one access token, refreshed ahead of expiry by one thread while the others wait;
- the account's REST base path, found once through `/oauth/userinfo`.

The token and the account are shared by the whole fleet through the store (the
`docusign_token` setting, vault-encrypted): a process without a usable token first
reads the shared one, and only the holder of a short lease row fetches a new one while
the others wait and read it. Several workers and instances thus make one token request
per token lifetime, not one each.

Calls run inside a total time budget. Idempotent calls (token, userinfo, GET envelope)
are retried with full-jitter backoff on connection errors, 5xx and rate limits;
calls that change state (create, send, recipient view) are not, because a retry after
DocuSign acted would double the action. DocuSign's failures become the gateway's
`Upstream*` errors, whose details never carry an account id, user id, template id,
token, assertion or key: they may reach partners and logs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import functools
import hashlib
import json
import logging
import math
import random
import re
import threading
import time
import typing as t
import uuid
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from dataclasses import fields
from urllib.parse import quote
from urllib.parse import urlencode
from urllib.parse import urlsplit

import jwt
import requests
import sqlalchemy as sa
import urllib3.exceptions
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask import current_app
from flask import has_app_context
from requests.adapters import HTTPAdapter

from gateway import errors
from gateway import store

log = logging.getLogger(__name__)

SETTING_NAME = "docusign"
DEMO_OAUTH_BASE_URL = "https://account-d.docusign.com"
PRODUCTION_OAUTH_BASE_URL = "https://account.docusign.com"
DEFAULT_CONSENT_REDIRECT = "https://developers.docusign.com/platform/auth/consent"
JWT_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = "signature impersonation"
# docusign.md §1: the SDK signs for the token lifetime; 1 h is accepted everywhere
ASSERTION_LIFETIME = 3600
# §1: DocuSign's tokens live an hour; used only when a response leaves expires_in out
DEFAULT_TOKEN_LIFETIME = 3600

# retries: attempts per call (first one included), full-jitter backoff base and cap
MAX_ATTEMPTS = 4
BACKOFF_BASE = 0.25
BACKOFF_CAP = 4.0
# a retry is pointless when less than this is left of the budget to make the call
MIN_ATTEMPT_SECONDS = 0.1
# how often a running client looks for new settings (one indexed SELECT)
DEFAULT_SETTINGS_RECHECK = 5.0
# the fleet-shared token (vault-encrypted) and the lease row that elects its one fetcher
SHARED_TOKEN_SETTING = "docusign_token"
TOKEN_LEASE_SETTING = "docusign_token_lease"
# how often a process waiting for another's token fetch looks at the store again
SHARED_POLL_FIRST = 0.02
SHARED_POLL_MAX = 0.2

_ID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_GUID_RE = re.compile(f"^{_ID_PATTERN}$")
# DocuSign error codes are identifiers; anything else is not echoed (it could be text with ids)
_CODE_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")
_ID_RE = re.compile(_ID_PATTERN)


class UpstreamSetupError(Exception):
    """Configuring DocuSign failed; the message is one line for the owner's terminal."""


# --- settings ---------------------------------------------------------------


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
    """The individual-consent URL the system sender opens once (docusign.md §1)."""
    return (
        f"{settings.oauth_base_url.rstrip('/')}/oauth/auth?response_type=code"
        f"&scope={quote(SCOPES, safe='')}"
        f"&client_id={quote(settings.integration_key, safe='')}"
        f"&redirect_uri={quote(redirect_uri, safe='')}"
    )


def _rsa_key_from_pem(pem: bytes, *, source: str) -> rsa.RSAPrivateKey:
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
        if not _GUID_RE.match(value or ""):
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
    _rsa_key_from_pem(pem, source=private_key_path)
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


def configure_sandbox(
    sandbox_url: str, *, private_key_pem: str | None = None, timeout: float = 5
) -> DocuSignSettings:
    """Wire the gateway to a running emulator: register a key pair and grant consent."""
    base = sandbox_url.rstrip("/")
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).hostname:
        raise UpstreamSetupError(f"{sandbox_url} is not an http(s) URL")
    pem = private_key_pem or _new_private_key_pem()
    key = _rsa_key_from_pem(pem.encode("ascii"), source="the given private key")
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


# --- the client ---------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    authorization: str  # the whole Authorization header value: "<token_type> <access_token>"
    expires_at: float  # on the client's clock
    refresh_at: float  # from here on it is replaced before use
    settings: DocuSignSettings  # what it was issued for: new settings invalidate it


@dataclass(frozen=True)
class _Account:
    base_path: str  # <base_uri>/restapi/v2.1/accounts/<account_id>
    base_uri: str
    account_name: str
    user_name: str
    settings: DocuSignSettings


@dataclass(frozen=True)
class _CachedSettings:
    settings: DocuSignSettings
    updated_at: float


class _TransportFailure(Exception):
    """No HTTP answer: `kind` is "timeout" or "connection"; `sent` False when provably unsent."""

    def __init__(self, kind: str, *, sent: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.sent = sent

    def as_error(self) -> errors.GatewayError:
        if self.kind == "timeout":
            return errors.UpstreamTimeout()
        return errors.UpstreamUnavailable()


class DocuSignClient:
    """DocuSign for the whole process: one session, one token, one cached account."""

    def __init__(
        self, app: Flask | None = None, *, session: requests.Session | None = None
    ) -> None:
        self._http = session or _default_session()
        self._app: Flask | None = None
        self.connect_timeout = 3.05
        self.read_timeout = 15.0
        self.total_budget = 25.0
        self.refresh_margin = 300.0
        self.settings_recheck = DEFAULT_SETTINGS_RECHECK
        # every timing decision reads this clock: tests move it to reach token expiry
        self.clock: t.Callable[[], float] = time.monotonic
        self._auth_lock = threading.Lock()
        self._settings_lock = threading.Lock()
        self._token: _Token | None = None
        self._account: _Account | None = None
        self._cached: _CachedSettings | None = None
        self._checked_at: float | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register as `app.extensions["docusign"]` and take the timeouts from the config."""
        self._app = app
        cfg = app.config
        self.connect_timeout = float(cfg.get("DOCUSIGN_CONNECT_TIMEOUT", self.connect_timeout))
        self.read_timeout = float(cfg.get("DOCUSIGN_READ_TIMEOUT", self.read_timeout))
        self.total_budget = float(cfg.get("DOCUSIGN_TOTAL_BUDGET", self.total_budget))
        self.refresh_margin = float(cfg.get("DOCUSIGN_TOKEN_REFRESH_MARGIN", self.refresh_margin))
        self.settings_recheck = float(cfg.get("DOCUSIGN_SETTINGS_RECHECK", self.settings_recheck))
        app.extensions["docusign"] = self
        _install_log_redaction()

    def on_call(self, endpoint: str, status: int | str, seconds: float) -> None:
        """Metrics hook, called once per HTTP attempt; replace it (e.g. with Prometheus)."""

    def before_call(self, endpoint: str) -> None:
        """Admission hook, called before each REST attempt (retries too); raise to refuse it.

        The account-wide budget plugs in here (`ratelimit.init_app`): it counts what
        DocuSign counts, one API call per attempt; the account server is not counted.
        """

    # --- the four envelope operations --------------------------------------

    def create_envelope(
        self,
        *,
        template_id: str,
        email_subject: str,
        role: str,
        signer_name: str,
        signer_email: str,
        client_user_id: str,
        tabs: Mapping[str, str],
        custom_fields: Mapping[str, str],
    ) -> dict[str, t.Any]:
        """Create a draft ("created") from a template; returns DocuSign's EnvelopeSummary."""
        signer: dict[str, t.Any] = {
            "email": signer_email,
            "name": signer_name,
            "roleName": role,
            # clientUserId makes the recipient embedded: DocuSign sends no signing email
            "clientUserId": client_user_id,
        }
        if tabs:
            signer["tabs"] = {"textTabs": [{"tabLabel": k, "value": v} for k, v in tabs.items()]}
        body: dict[str, t.Any] = {
            "templateId": template_id,
            "emailSubject": email_subject,
            "status": "created",
            "templateRoles": [signer],
        }
        if custom_fields:
            body["customFields"] = {"textCustomFields": [
                {"name": k, "value": v, "show": "false", "required": "false"}
                for k, v in custom_fields.items()
            ]}
        summary = self._rest("create_envelope", "POST", "/envelopes", body=body, idempotent=False)
        if not isinstance(summary.get("envelopeId"), str):
            raise errors.UpstreamUnavailable("DocuSign answered without an envelope id.")
        return summary

    def send_envelope(self, envelope_id: str) -> None:
        """Move a draft to "sent" (a recipient view needs a sent envelope)."""
        self._rest("update_envelope", "PUT", f"/envelopes/{_path_id(envelope_id)}",
                   body={"status": "sent"}, idempotent=False)

    def recipient_view(
        self,
        envelope_id: str,
        *,
        return_url: str,
        user_name: str,
        email: str,
        client_user_id: str,
        frame_ancestors: Sequence[str],
        message_origins: Sequence[str],
    ) -> str:
        """The embedded signing URL (single use, about 5 minutes) for the envelope's signer."""
        body: dict[str, t.Any] = {
            "returnUrl": return_url,
            "authenticationMethod": "None",
            "email": email,
            "userName": user_name,
            "clientUserId": client_user_id,
        }
        if frame_ancestors:
            body["frameAncestors"] = list(frame_ancestors)
        if message_origins:
            body["messageOrigins"] = list(message_origins)
        view = self._rest("recipient_view", "POST",
                          f"/envelopes/{_path_id(envelope_id)}/views/recipient",
                          body=body, idempotent=False)
        url = view.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise errors.UpstreamUnavailable("DocuSign answered without a signing URL.")
        return url

    def get_envelope(self, envelope_id: str, *, budget: float | None = None) -> dict[str, t.Any]:
        """DocuSign's Envelope object (status, timestamps and recipients with their statuses).

        :param budget: seconds for the whole call, retries included, when shorter than the
            client's total budget (the return relay keeps a signer's browser waiting)
        """
        return self._rest("get_envelope", "GET",
                          f"/envelopes/{_path_id(envelope_id)}?include=recipients",
                          idempotent=True, budget=budget)

    def find_envelopes(self, *, custom_field: tuple[str, str], since: float) -> list[dict[str, t.Any]]:
        """Envelopes changed since `since` (epoch) that carry the text custom field `(name, value)`.

        DocuSign's listStatusChanges (`GET /envelopes?from_date=...&custom_field=name=value`),
        a read, so retried like one. Used to find what an interrupted create made.
        """
        name, value = custom_field
        query = urlencode({
            "from_date": dt.datetime.fromtimestamp(since, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "custom_field": f"{name}={value}",
            "include": "custom_fields",
        })
        body = self._rest("list_status_changes", "GET", f"/envelopes?{query}", idempotent=True)
        found = body.get("envelopes") or []
        return [e for e in found if isinstance(e, dict) and isinstance(e.get("envelopeId"), str)
                and _carries_field(e, name, value)]

    # --- operator checks ---------------------------------------------------

    def check(self, *, fresh: bool = False) -> dict[str, str]:
        """Token and userinfo (cached ones unless `fresh`): for `gateway docusign check`."""
        deadline = self.clock() + self.total_budget
        settings = self._settings()
        if fresh:
            with self._acquire(self._auth_lock, deadline):
                self._token = None
                self._account = None
        _, account = self._auth(settings, deadline, fresh=fresh)
        return {"user_name": account.user_name, "account_name": account.account_name,
                "base_uri": account.base_uri}

    def token_status(self) -> dict[str, t.Any]:
        """Whether a token is held and for how long: no network, no database (for /readyz)."""
        token = self._token
        if token is None:
            return {"held": False, "expires_in": None}
        remaining = max(0.0, token.expires_at - self.clock())
        return {"held": remaining > 0, "expires_in": int(remaining)}

    def reload_settings(self) -> None:
        """Look for new settings on the next call instead of within `settings_recheck`."""
        with self._settings_lock:
            self._checked_at = None

    # --- settings cache ------------------------------------------------------

    def _settings(self) -> DocuSignSettings:
        with self._settings_lock:
            now = self.clock()
            fresh = self._checked_at is not None and now - self._checked_at < self.settings_recheck
            if not (fresh and self._cached is not None):
                self._refresh_settings()
                self._checked_at = now
            if self._cached is None:
                raise errors.UpstreamNotConfigured()
            return self._cached.settings

    def _refresh_settings(self) -> None:
        # only the timestamp is read on each check; the row is decrypted when it changed
        with self._app_context():
            with store.get_engine().connect() as conn:
                updated_at = conn.execute(
                    sa.select(store.settings.c.updated_at)
                    .where(store.settings.c.name == SETTING_NAME)
                ).scalar()
                if updated_at is None:
                    self._replace_settings(None)
                    return
                if self._cached is not None and self._cached.updated_at == updated_at:
                    return
                settings = load_settings(conn)
        self._replace_settings(_CachedSettings(settings, updated_at) if settings else None)

    def _replace_settings(self, cached: _CachedSettings | None) -> None:
        old = self._cached.settings if self._cached else None
        self._cached = cached
        if (cached.settings if cached else None) != old:
            # other credentials, maybe another account: nothing held so far is valid
            self._token = None
            self._account = None
            if old is not None:
                log.info("docusign settings changed; token and account dropped")

    def _app_context(self) -> t.ContextManager[t.Any]:
        # worker threads (and the CLI) may call without a Flask context of their own
        if has_app_context() or self._app is None:
            return contextlib.nullcontext()
        return self._app.app_context()

    # --- token and account ----------------------------------------------------

    def _auth(self, settings: DocuSignSettings, deadline: float, *,
              fresh: bool = False) -> tuple[_Token, _Account]:
        token, account = self._token, self._account
        if self._usable(token, settings) and account is not None and account.settings == settings:
            return token, account  # type: ignore[return-value]
        # one refresh per process at a time: the other threads wait here and then reuse it
        with self._acquire(self._auth_lock, deadline):
            token, account = self._token, self._account
            if not (self._usable(token, settings) and account is not None
                    and account.settings == settings):
                self._token, self._account = self._fleet_auth(settings, deadline, fresh=fresh)
            return self._token, self._account  # type: ignore[return-value]

    def _fleet_auth(self, settings: DocuSignSettings, deadline: float, *,
                    fresh: bool) -> tuple[_Token, _Account]:
        """The fleet's shared token, or a new one fetched by whoever holds the lease.

        `fresh` (`check(fresh=True)`) skips the shared token but still takes
        the lease, so a check never races a worker's refresh.
        """
        shared = _SharedToken(self, settings)
        pause = SHARED_POLL_FIRST
        while True:
            found = None if fresh else shared.read()
            if found is not None:
                return found
            if shared.claim(lease=max(1.0, deadline - self.clock())):
                try:
                    found = None if fresh else shared.read()
                    if found is not None:  # written while we were claiming
                        return found
                    self._token = self._fetch_token(settings, deadline)
                    account = self._fetch_account(settings, deadline)
                    shared.write(self._token, account)
                    return self._token, account
                finally:
                    shared.release()
            if self.clock() + pause > deadline:
                raise errors.UpstreamTimeout()
            time.sleep(pause)
            pause = min(SHARED_POLL_MAX, pause * 2)

    def wall_time(self) -> float:
        """Epoch seconds as this client sees them: follows `clock` when a test moves it."""
        return time.time() + (self.clock() - time.monotonic())

    def _usable(self, token: _Token | None, settings: DocuSignSettings) -> bool:
        return token is not None and token.settings == settings and self.clock() < token.refresh_at

    def _drop_token(self, token: _Token, deadline: float) -> None:
        with self._acquire(self._auth_lock, deadline):
            # another thread may already have replaced it: keep the newer one
            if self._token is token:
                self._token = None
                # DocuSign refused it, so it is dead for the whole fleet
                _SharedToken(self, token.settings).forget(token.authorization)

    @contextlib.contextmanager
    def _acquire(self, lock: threading.Lock, deadline: float) -> t.Iterator[None]:
        if not lock.acquire(timeout=max(0.0, deadline - self.clock())):
            raise errors.UpstreamTimeout()
        try:
            yield
        finally:
            lock.release()

    def _fetch_token(self, settings: DocuSignSettings, deadline: float) -> _Token:
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
            assertion = jwt.encode(claims, settings.private_key_pem, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError):
            raise errors.UpstreamAuthFailed(
                "The stored DocuSign private key is unusable.") from None
        url = settings.oauth_base_url.rstrip("/") + "/oauth/token"
        started = self.clock()
        send = functools.partial(
            self._send, "token", "POST", url, deadline=deadline,
            data={"grant_type": JWT_GRANT_TYPE, "assertion": assertion},
        )
        resp = self._with_retries(send, idempotent=True, deadline=deadline)
        if resp.status_code != 200:
            raise _token_error(resp, settings)
        body = _json_object(resp)
        access, token_type = body.get("access_token"), body.get("token_type") or "Bearer"
        if not isinstance(access, str) or not access or not isinstance(token_type, str):
            raise errors.UpstreamUnavailable("DocuSign answered without an access token.")
        lifetime = _number(body.get("expires_in")) or DEFAULT_TOKEN_LIFETIME
        # measured from the request: the token may have aged in flight and in retries; a margin
        # as long as the lifetime would fetch a token per call, so it is capped at half
        margin = min(self.refresh_margin, lifetime / 2)
        return _Token(f"{token_type} {access}", started + lifetime, started + lifetime - margin,
                      settings)

    def _fetch_account(self, settings: DocuSignSettings, deadline: float) -> _Account:
        url = settings.oauth_base_url.rstrip("/") + "/oauth/userinfo"
        for reauth in (False, True):
            token = self._token
            assert token is not None
            send = functools.partial(self._send, "userinfo", "GET", url, deadline=deadline,
                                     headers={"Authorization": token.authorization})
            resp = self._with_retries(send, idempotent=True, deadline=deadline)
            if resp.status_code == 401 and not reauth:
                # revoked or expired early on DocuSign's side: one new token, one more try
                self._token = self._fetch_token(settings, deadline)
                continue
            break
        if resp.status_code == 401:
            raise errors.UpstreamAuthFailed()
        if resp.status_code >= 400:
            raise _rest_error(resp)
        return _pick_account(_json_object(resp), settings)

    # --- REST ---------------------------------------------------------------

    def _rest(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        idempotent: bool,
        body: Mapping[str, t.Any] | None = None,
        budget: float | None = None,
    ) -> dict[str, t.Any]:
        deadline = self.clock() + min(self.total_budget, budget or self.total_budget)
        settings = self._settings()
        for reauth in (False, True):
            token, account = self._auth(settings, deadline)
            send = functools.partial(
                self._send, endpoint, method, account.base_path + path, deadline=deadline,
                headers={"Authorization": token.authorization}, json_body=body, admit=True,
            )
            resp = self._with_retries(send, idempotent=idempotent, deadline=deadline)
            if resp.status_code == 401 and not reauth:
                # DocuSign did nothing with an unauthenticated call, so even a create may
                # go again, once, with a new token
                self._drop_token(token, deadline)
                continue
            break
        if resp.status_code >= 400:
            raise _rest_error(resp)
        return _json_object(resp) if resp.content else {}

    def _with_retries(
        self, send: t.Callable[[], requests.Response], *, idempotent: bool, deadline: float
    ) -> requests.Response:
        """One call with its retries; returns the last response, raises on no response."""
        attempt = 0
        while True:
            try:
                resp = send()
            except _TransportFailure as failure:
                # a request that provably never left may go again, whatever it does
                if (idempotent or not failure.sent) and self._backoff(attempt, None, deadline):
                    attempt += 1
                    continue
                raise failure.as_error() from None
            if not (idempotent and _retryable(resp)):
                return resp
            hint = _retry_after(resp)
            if not self._backoff(attempt, hint, deadline):
                return resp
            attempt += 1

    def _backoff(self, attempt: int, hint: float | None, deadline: float) -> bool:
        """Sleep before another attempt; False when none is left or it would not fit."""
        if attempt + 1 >= MAX_ATTEMPTS:
            return False
        # full jitter (AWS architecture blog): spreads the retries of many workers apart
        delay = hint if hint is not None else random.uniform(
            0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
        if self.clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
            return False
        time.sleep(delay)
        return True

    def _send(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        json_body: Mapping[str, t.Any] | None = None,
        data: Mapping[str, str] | None = None,
        admit: bool = False,
    ) -> requests.Response:
        """One HTTP attempt within what is left of the budget; logged by endpoint name only.

        `admit`: a REST call, which DocuSign counts against the account's hourly limit.
        """
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise _TransportFailure("timeout", sent=False)
        if admit:
            self.before_call(endpoint)
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        started = time.perf_counter()
        try:
            resp = self._http.request(
                method, url, headers={"Accept": "application/json", **(headers or {})},
                json=json_body, data=data, timeout=timeout,
            )
        except requests.RequestException as exc:
            failure = _classify(exc)
            self._record(endpoint, failure.kind, time.perf_counter() - started,
                         detail=type(exc).__name__)
            raise failure from None
        self._record(endpoint, resp.status_code, time.perf_counter() - started,
                     detail=_error_code(resp) if resp.status_code >= 400 else None)
        return resp

    def _record(self, endpoint: str, status: int | str, seconds: float, *,
                detail: str | None) -> None:
        level = logging.INFO if isinstance(status, int) and status < 500 else logging.WARNING
        log.log(level, "docusign %s -> %s in %.0f ms%s", endpoint, status, seconds * 1000,
                f" ({detail})" if detail else "",
                extra={"upstream_endpoint": endpoint, "upstream_status": status,
                       "upstream_ms": round(seconds * 1000, 1)})
        try:
            self.on_call(endpoint, status, seconds)
        except Exception:  # a metrics failure must not fail the call
            log.exception("docusign on_call hook failed")


class _SharedToken:
    """The fleet's token in the store: one vault-encrypted setting plus a lease row.

    The lease is a `settings` row whose `updated_at` is the time the lease ends; a
    conditional UPDATE claims it, so it works the same on SQLite and PostgreSQL and
    a holder that dies frees it when its lease (its own upstream deadline) runs out.
    Times are stored as epoch seconds and turned into the client's clock on reading.
    """

    def __init__(self, client: DocuSignClient, settings: DocuSignSettings) -> None:
        self.client = client
        self.settings = settings
        self.owner = uuid.uuid4().hex
        # a digest of everything the token was issued for: new settings, new token
        self.fingerprint = hashlib.sha256(
            json.dumps(asdict(settings), sort_keys=True).encode("utf-8")).hexdigest()

    def read(self) -> tuple[_Token, _Account] | None:
        """The shared token and account, when they are for these settings and still fresh."""
        with self.client._app_context(), store.transaction() as conn:
            value = store.get_setting(conn, SHARED_TOKEN_SETTING)
        if not isinstance(value, dict) or value.get("fingerprint") != self.fingerprint:
            return None
        offset = self.client.clock() - self.client.wall_time()
        try:
            if self.client.wall_time() >= float(value["refresh_at"]):
                return None
            token = _Token(value["authorization"], float(value["expires_at"]) + offset,
                           float(value["refresh_at"]) + offset, self.settings)
            account = _Account(settings=self.settings, **value["account"])
        except (KeyError, TypeError, ValueError):
            return None
        return token, account

    def write(self, token: _Token, account: _Account) -> None:
        offset = self.client.wall_time() - self.client.clock()
        value = {
            "fingerprint": self.fingerprint,
            "authorization": token.authorization,
            "expires_at": token.expires_at + offset,
            "refresh_at": token.refresh_at + offset,
            "account": {"base_path": account.base_path, "base_uri": account.base_uri,
                        "account_name": account.account_name, "user_name": account.user_name},
        }
        try:
            with self.client._app_context(), store.transaction() as conn:
                store.put_setting(conn, SHARED_TOKEN_SETTING, value, secret=True, now=time.time())
        except sa.exc.IntegrityError:
            # a holder whose lease ran out wrote its (equally good) token first: keep that one
            pass

    def forget(self, authorization: str) -> None:
        """Delete the shared token if it is this one (not a newer one another process wrote)."""
        rows = store.settings.c
        with self.client._app_context(), store.transaction() as conn:
            stamp = conn.execute(sa.select(rows.updated_at)
                                 .where(rows.name == SHARED_TOKEN_SETTING)).scalar()
            value = store.get_setting(conn, SHARED_TOKEN_SETTING)
            if isinstance(value, dict) and value.get("authorization") == authorization:
                conn.execute(store.settings.delete().where(
                    rows.name == SHARED_TOKEN_SETTING, rows.updated_at == stamp))

    def claim(self, *, lease: float) -> bool:
        """Become the one process that fetches a token, for at most `lease` seconds."""
        now = time.time()
        rows = store.settings.c
        with self.client._app_context():
            with store.transaction() as conn:
                taken = conn.execute(
                    store.settings.update()
                    .where(rows.name == TOKEN_LEASE_SETTING, rows.updated_at <= now)
                    .values(value=json.dumps(self.owner), updated_at=now + lease)
                ).rowcount
                exists = taken or conn.execute(
                    sa.select(rows.name).where(rows.name == TOKEN_LEASE_SETTING)).first()
            if taken or exists:
                return bool(taken)
            try:
                with store.transaction() as conn:
                    conn.execute(store.settings.insert().values(
                        name=TOKEN_LEASE_SETTING, value=json.dumps(self.owner), encrypted=False,
                        updated_at=now + lease))
            except sa.exc.IntegrityError:  # another process created it first, and holds it
                return False
        return True

    def release(self) -> None:
        rows = store.settings.c
        with self.client._app_context(), store.transaction() as conn:
            conn.execute(store.settings.update()
                         .where(rows.name == TOKEN_LEASE_SETTING,
                                rows.value == json.dumps(self.owner))
                         .values(updated_at=0.0))


def _carries_field(envelope: Mapping[str, t.Any], name: str, value: str) -> bool:
    """Whether a listed envelope carries the custom field; trust DocuSign's filter if absent."""
    custom = envelope.get("customFields")
    if not isinstance(custom, dict):
        return True
    text = custom.get("textCustomFields")
    return isinstance(text, list) and any(
        isinstance(f, dict) and f.get("name") == name and f.get("value") == value for f in text)


def _default_session() -> requests.Session:
    http = requests.Session()
    # every worker thread shares this session; size the pool so none throws connections away
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    return http


def _classify(exc: requests.RequestException) -> _TransportFailure:
    reason = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else None
    # refused / unresolvable: the request never left, so DocuSign cannot have acted on it
    # (checked first: urllib3's NewConnectionError is also a ConnectTimeoutError)
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return _TransportFailure("connection", sent=False)
    if isinstance(exc, requests.ConnectTimeout):
        return _TransportFailure("timeout", sent=False)
    if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.TimeoutError):
        return _TransportFailure("timeout", sent=True)
    return _TransportFailure("connection", sent=True)


def _path_id(envelope_id: str) -> str:
    # ids go into the URL path: refuse anything that could change the path
    if not _GUID_RE.match(envelope_id or ""):
        raise errors.UpstreamRejected("The envelope id is not a DocuSign envelope id.")
    return envelope_id


def _number(value: t.Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _json_object(resp: requests.Response) -> dict[str, t.Any]:
    try:
        body = resp.json()
    except ValueError:
        raise errors.UpstreamUnavailable("DocuSign answered with an unreadable response.") from None
    if not isinstance(body, dict):
        raise errors.UpstreamUnavailable("DocuSign answered with an unexpected response.")
    return body


def _error_code(resp: requests.Response) -> str:
    """DocuSign's errorCode (or OAuth `error`), only when it is a plain identifier."""
    try:
        body = resp.json()
    except ValueError:
        return "unknown"
    if not isinstance(body, dict):
        return "unknown"
    code = body.get("errorCode") or body.get("error")
    return code if isinstance(code, str) and _CODE_RE.match(code) else "unknown"


def _is_limit_code(code: str) -> bool:
    # HOURLY_/BURST_APIINVOCATION_LIMIT_EXCEEDED, Hourly_Envelope_Polling_Limit_Exceeded and
    # the per-envelope update companion (docusign.md §8) all end this way
    return code.upper().endswith("_LIMIT_EXCEEDED")


def _retryable(resp: requests.Response) -> bool:
    status = resp.status_code
    return status == 429 or status >= 500 or (status >= 400 and _is_limit_code(_error_code(resp)))


def _retry_after(resp: requests.Response) -> float | None:
    """Seconds DocuSign asks us to wait: Retry-After, else the hourly reset when it is spent."""
    value = resp.headers.get("Retry-After", "").strip()
    if value:
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, when.timestamp() - time.time())
    # every REST answer carries X-RateLimit-Reset; it only says when to come back when the
    # hourly budget is what ran out (a 5xx or a burst limit would clear much sooner)
    reset = _number(resp.headers.get("X-RateLimit-Reset"))
    spent = resp.headers.get("X-RateLimit-Remaining", "").strip() == "0"
    if reset is not None and (spent or _error_code(resp).upper().startswith("HOURLY_API")):
        # an epoch timestamp per docusign.md §8; small values can only be a delay
        return max(0.0, reset - time.time()) if reset > 1e9 else reset
    return None


def _retry_after_header(resp: requests.Response) -> int | None:
    wait = _retry_after(resp)
    return math.ceil(wait) if wait is not None else None


def _rest_error(resp: requests.Response) -> errors.GatewayError:
    """The gateway error for a final DocuSign error response (REST or userinfo)."""
    code = _error_code(resp)
    status = resp.status_code
    if status == 429 or _is_limit_code(code):
        err: errors.GatewayError = errors.UpstreamRateLimited(
            retry_after=_retry_after_header(resp))
    elif status >= 500:
        err = errors.UpstreamUnavailable(retry_after=_retry_after_header(resp))
    elif status == 401:
        err = errors.UpstreamAuthFailed()
    else:
        # the errorCode only: DocuSign's message can quote ids back
        err = errors.UpstreamRejected(f"DocuSign rejected the request ({code}).")
    # for callers that branch on the cause (e.g. ENVELOPE_DOES_NOT_EXIST); not rendered
    err.upstream_status = status  # type: ignore[attr-defined]
    err.upstream_code = code  # type: ignore[attr-defined]
    return err


def _token_error(resp: requests.Response, settings: DocuSignSettings) -> errors.GatewayError:
    status = resp.status_code
    if status == 429 or status >= 500:
        return _rest_error(resp)
    code = _error_code(resp)
    if code == "consent_required":
        err: errors.GatewayError = errors.UpstreamConsentRequired()
        # for the owner's CLI only: the URL names the integration key
        err.consent_url = consent_url(settings)  # type: ignore[attr-defined]
        return err
    reason = code
    try:
        description = resp.json().get("error_description")
    except (ValueError, AttributeError):
        description = None
    if isinstance(description, str) and _CODE_RE.match(description):
        # invalid_grant's real cause, e.g. no_valid_keys_or_signatures (docusign.md §1)
        reason = f"{code}: {description}"
    err = errors.UpstreamAuthFailed(f"DocuSign refused the gateway's credentials ({reason}).")
    err.upstream_code = reason  # type: ignore[attr-defined]
    return err


def _pick_account(info: Mapping[str, t.Any], settings: DocuSignSettings) -> _Account:
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
        return _Account(
            base_path=f"{base_uri}/restapi/v2.1/accounts/{quote(settings.account_id, safe='')}",
            base_uri=base_uri,
            account_name=str(account.get("account_name") or ""),
            user_name=str(info.get("name") or ""),
            settings=settings,
        )
    raise errors.UpstreamAuthFailed(
        "The DocuSign user has no access to the configured account."
    )


class _RedactIds(logging.Filter):
    """urllib3 logs request lines at DEBUG, and DocuSign paths carry the account id."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _ID_RE.search(message):
            record.msg, record.args = _ID_RE.sub("<id>", message), ()
        return True


_redaction_installed = threading.Lock()


def _install_log_redaction() -> None:
    pool_log = logging.getLogger("urllib3.connectionpool")
    with _redaction_installed:
        if not any(isinstance(f, _RedactIds) for f in pool_log.filters):
            pool_log.addFilter(_RedactIds())


def get_client() -> DocuSignClient:
    """The app's DocuSign client."""
    return current_app.extensions["docusign"]


def init_app(app: Flask) -> None:
    """Give the app its DocuSign client."""
    DocuSignClient(app)
