"""The owner's pre-flight checks: the DocuSign connection (`gateway docusign check`) and the
production requirements (`gateway docusign go-live-check`); the policies against the
account's templates are `template_check`.

Everything here returns lines for a person; nothing raises for a finding. The DocuSign facts
cited are in docs/docusign-facts.md.
"""

from __future__ import annotations

import os
import stat
import time
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa

from gateway import errors
from gateway import store
from gateway.upstream.client import CheckFailed
from gateway.upstream.settings import DEFAULT_CONSENT_REDIRECT
from gateway.upstream.settings import PRODUCTION_OAUTH_BASE_URL
from gateway.upstream.settings import DocuSignSettings

#: the production account server's host (docs/docusign-facts.md §1); tests move it
PRODUCTION_AUTH_HOST = urlsplit(PRODUCTION_OAUTH_BASE_URL).hostname or "account.docusign.com"

# what invalid_grant's error_description usually means (docs/docusign-facts.md §1)
_GRANT_CAUSES = {
    "no_valid_keys_or_signatures": "the private key is wrong, or its public key is not registered "
                                   "on the integration key (Apps and Keys > RSA keypairs)",
    "issuer_not_found": "the integration key is wrong, or it does not exist in this environment "
                        "(a demo key used with --production before go-live)",
    "user_not_found": "the user id is wrong: it must be the system sender's User ID GUID "
                      "in this environment",
    "invalid_subject": "the user id is wrong: it must be the system sender's User ID GUID "
                       "in this environment",
    "expired_grant": "the assertion had expired when it arrived: this machine's clock is wrong "
                     "(synchronise it, e.g. with NTP)",
}

# --- gateway docusign check ---------------------------------------------------------------

def _no_answer(exc: errors.GatewayError) -> bool:
    """True when no attempt got an HTTP answer (the transport's own errors carry no status)."""
    return (isinstance(exc, (errors.UpstreamUnavailable, errors.UpstreamTimeout))
            and getattr(exc, "upstream_status", None) is None
            and exc.description == type(exc).description)


def explain_check_failure(failure: CheckFailed) -> str:
    """One line naming the step that failed and what usually fixes it."""
    exc, settings = failure.error, failure.settings
    host = settings.oauth_base_url.rstrip("/")
    if failure.step == "account":
        return _account_missing(failure)
    step = "JWT grant" if failure.step == "grant" else "userinfo"
    if _no_answer(exc):
        if settings.sandbox:
            return (f"{step}: the emulator at {host} does not answer; it may have restarted: "
                    f"run `gateway docusign configure --sandbox {host}` again")
        return (f"{step}: {host} does not answer (host unreachable or timed out); check this "
                "machine's network, DNS and proxy settings")
    if isinstance(exc, errors.UpstreamConsentRequired):
        url = getattr(exc, "consent_url", "")
        return (f"{step}: consent required: the system sender must open {url} (signed in as that "
                "user) and allow access; the redirect URI in it "
                f"({DEFAULT_CONSENT_REDIRECT}) must be registered on the integration key "
                "(Apps and Keys > Redirect URIs), else DocuSign shows an error instead")
    code = getattr(exc, "upstream_code", None)
    if failure.step == "grant" and isinstance(exc, errors.UpstreamAuthFailed):
        if not code:
            return f"{step}: {exc.description}"
        reason = code.split(": ", 1)[-1]
        cause = _GRANT_CAUSES.get(reason, "see docs/docusign-facts.md §1")
        hint = ""
        if settings.sandbox and reason == "no_valid_keys_or_signatures":
            hint = (f"; the emulator forgets keys and consent when it restarts: run "
                    f"`gateway docusign configure --sandbox {host}` again")
        return f"{step}: DocuSign refused the assertion ({code}): usually {cause}{hint}"
    status = getattr(exc, "upstream_status", None)
    if status is not None:
        return f"{step}: DocuSign answered HTTP {status} ({code or exc.error_code}); try again later"
    return f"{step}: {exc.description}"


def _account_missing(failure: CheckFailed) -> str:
    info = failure.userinfo or {}
    accounts = info.get("accounts") if isinstance(info.get("accounts"), list) else []
    listed = ", ".join(
        f"{a.get('account_name')!r} ({a.get('account_id')})" for a in t.cast(list[t.Any], accounts)
        if isinstance(a, dict)) or "none"
    return (f"account: the configured account {failure.settings.account_id} is not among "
            f"{info.get('name') or 'the user'}'s accounts ({listed}); run `gateway docusign "
            "configure` again with the API Account ID of the account the gateway should use")


# --- gateway docusign go-live-check --------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """One production requirement: `ok`, and the detail (when ok) or the fix."""

    name: str
    ok: bool
    text: str


def production_host(settings: DocuSignSettings | None) -> Requirement:
    name = "production auth host"
    if settings is None:
        return Requirement(name, False, "DocuSign is not configured: run `gateway docusign "
                                        "configure ... --production`")
    host = urlsplit(settings.oauth_base_url).hostname
    if settings.sandbox:
        return Requirement(name, False, "the gateway is wired to the emulator: run `gateway "
                                        "docusign configure --integration-key IK --user-id UID "
                                        "--account-id AID --private-key ds-prod.pem --production`")
    if not settings.production or host != PRODUCTION_AUTH_HOST:
        return Requirement(name, False, f"the auth host is {host} (demo): configure the "
                                        "production user, account and key with `gateway docusign "
                                        "configure ... --production`")
    return Requirement(name, True, f"{host}")


def public_url(value: str) -> Requirement:
    name = "GATEWAY_PUBLIC_URL"
    if not value:
        return Requirement(name, False, "not set: set it to the https URL signers' browsers "
                                        "reach the gateway at")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        return Requirement(name, False, f"{value} is not https: set it to the https URL "
                                        "signers' browsers reach the gateway at (DocuSign sends "
                                        "them back there)")
    return Requirement(name, True, value)


def connect_received(conn: sa.Connection, *, days: int, now: float | None = None) -> Requirement:
    from gateway.services import connect_messages

    name = "Connect"
    if not connect_messages.load_secrets(conn):
        return Requirement(name, False, "no HMAC secret: add DocuSign's with `gateway docusign "
                                        "connect-secret add` and turn HMAC on in the Connect "
                                        "configuration")
    now = time.time() if now is None else now
    a = store.audit_events
    count, last = conn.execute(
        sa.select(sa.func.count(), sa.func.max(a.c.at))
        .where(a.c.operation == "connect_event", a.c.status == 200, a.c.at >= now - days * 86400)
    ).one()
    if not count:
        return Requirement(name, False, f"no signed Connect message received in the last {days} "
                                        "days: point the account's Connect configuration at "
                                        "GATEWAY_PUBLIC_URL/webhooks/docusign, then sign a test "
                                        "envelope")
    return Requirement(name, True, f"secret configured; {count} signed message(s) in the last "
                                   f"{days} days, the latest {_ago(now - float(last))} ago")


def _ago(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def master_key(configured: str, instance_path: str) -> Requirement:
    from gateway.store.vault import master_key_path

    name = "master key"
    if configured:
        return Requirement(name, True, "from GATEWAY_MASTER_KEY (not a file)")
    path = master_key_path(instance_path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        return Requirement(name, False, f"cannot read {path} ({exc.strerror}): run `gateway init` "
                                        "or set GATEWAY_MASTER_KEY")
    if mode & 0o077:
        return Requirement(name, False, f"{path} has mode {mode:04o}, readable by others: "
                                        f"`chmod 600 {path}`")
    return Requirement(name, True, f"{path} mode {mode:04o}")


def shared_state(database_url: str, ratelimit_uri: str, *, workers: int) -> list[Requirement]:
    if workers <= 1:
        return [Requirement("workers", True, "one worker: SQLite and memory:// will do")]
    backend = sa.engine.make_url(database_url).get_backend_name() if database_url else "sqlite"
    db = (Requirement("database", True, backend) if backend != "sqlite" else
          Requirement("database", False, f"SQLite cannot be shared by {workers} workers: set "
                                         "DATABASE_URL to PostgreSQL (docs/production.md)"))
    limiter = (Requirement("rate limit storage", True, ratelimit_uri.split(":", 1)[0])
               if not ratelimit_uri.startswith("memory://") else
               Requirement("rate limit storage", False, f"memory:// counts per worker, so "
                                                        f"{workers} workers allow {workers}x the "
                                                        "limits: set RATELIMIT_STORAGE_URI to "
                                                        "Redis (docs/production.md)"))
    return [db, limiter]
