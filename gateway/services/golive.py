"""The owner's pre-flight checks: the DocuSign connection, the policies against the account's
templates, and the production requirements (`gateway docusign check`, `gateway policies check
--upstream`, `gateway docusign go-live-check`).

Everything here returns lines for a person; nothing raises for a finding. The DocuSign facts
cited are in docs/docusign-facts.md.
"""

from __future__ import annotations

import difflib
import os
import stat
import time
import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from urllib.parse import urlsplit

import sqlalchemy as sa

from gateway import errors
from gateway import store
from gateway.policy.model import Policy
from gateway.policy.model import TemplatePolicy
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

# DocuSign's recipient lists in an envelopeTemplate, with the name the owner reads
_RECIPIENT_TYPES = {
    "signers": "signer",
    "carbonCopies": "carbon copy",
    "certifiedDeliveries": "certified delivery",
    "inPersonSigners": "in-person signer",
    "agents": "agent",
    "editors": "editor",
    "intermediaries": "intermediary",
    "witnesses": "witness",
    "notaries": "notary",
    "seals": "seal",
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


# --- gateway policies check --upstream -----------------------------------------------------

@dataclass(frozen=True)
class Finding:
    """One line about one policy template: `level` is ok, note, warning or error."""

    level: str
    subject: str  # "partner/alias"
    text: str


@dataclass
class UpstreamReport:
    """Every finding of `check_policies_upstream`, in order."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def templates(self) -> int:
        return len({f.subject for f in self.findings})


def _is_true(value: t.Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _order(recipient: Mapping[str, t.Any]) -> int:
    try:
        return int(str(recipient.get("routingOrder") or "1"))
    except ValueError:
        return 1


def _recipients(template: Mapping[str, t.Any]) -> list[tuple[str, dict[str, t.Any]]]:
    """Every recipient of the template as (type name, recipient), in routing order."""
    recipients = template.get("recipients")
    found: list[tuple[str, dict[str, t.Any]]] = []
    if not isinstance(recipients, dict):
        return found
    for key, kind in _RECIPIENT_TYPES.items():
        listed = recipients.get(key)
        for recipient in listed if isinstance(listed, list) else ():
            if isinstance(recipient, dict):
                found.append((kind, recipient))
    return sorted(found, key=lambda item: _order(item[1]))


def _describe(kind: str, recipient: Mapping[str, t.Any]) -> str:
    role = recipient.get("roleName") or recipient.get("name") or "(no role)"
    name = recipient.get("name")
    preset = f": {name}" if name else ""
    return f"{role} ({kind}, routing {_order(recipient)}{preset})"


def _suggest(word: str, candidates: t.Iterable[str]) -> str:
    options = list(candidates)
    lowered = {c.lower(): c for c in options}
    if word.lower() in lowered:
        return f" (did you mean {lowered[word.lower()]!r}? names are case-sensitive)"
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _tabs_by_label(recipient: Mapping[str, t.Any]) -> dict[str, tuple[str, dict[str, t.Any]]]:
    """Every tab of a recipient by its tabLabel, with its tab type (textTabs, numberTabs, ...)."""
    tabs = recipient.get("tabs")
    found: dict[str, tuple[str, dict[str, t.Any]]] = {}
    if not isinstance(tabs, dict):
        return found
    for kind, listed in tabs.items():
        for tab in listed if isinstance(listed, list) else ():
            if isinstance(tab, dict) and isinstance(tab.get("tabLabel"), str):
                found.setdefault(tab["tabLabel"], (kind, tab))
    return found


def check_template(subject: str, policy: TemplatePolicy,
                   template: Mapping[str, t.Any]) -> list[Finding]:
    """What the owner must know about one policy template against DocuSign's envelopeTemplate."""
    out: list[Finding] = []

    def add(level: str, text: str) -> None:
        out.append(Finding(level, subject, text))

    name = template.get("name") or policy.template_id
    everyone = _recipients(template)
    signers = [r for kind, r in everyone if kind == "signer"]
    ours = next((r for r in signers if r.get("roleName") == policy.role), None)
    if ours is None:
        other = next((kind for kind, r in everyone if r.get("roleName") == policy.role), None)
        roles = [str(r.get("roleName")) for r in signers if r.get("roleName")]
        if other is not None:
            add("error", f"role {policy.role!r} is a {other}, not a signer, in template {name!r}; "
                         f"its signer roles: {', '.join(roles) or 'none'}")
        else:
            add("error", f"role {policy.role!r} is not a signer role of template {name!r}"
                         f"{_suggest(policy.role, roles)}; its signer roles: "
                         f"{', '.join(roles) or 'none'}")
        return out

    tabs = _tabs_by_label(ours)
    text_labels = [label for label, (kind, _) in tabs.items() if kind == "textTabs"]
    bad_fields = False
    for field_name, rule in policy.fields.items():
        kind, tab = tabs.get(field_name, ("", {}))
        if kind == "textTabs":
            if _is_true(tab.get("required")) and not rule.required:
                add("warning", f"field {field_name!r} is optional in the policy but its tab is "
                               "required in the template: when the partner leaves it out, the "
                               "signer must type it in on DocuSign's page")
            continue
        bad_fields = True
        if kind:
            add("error", f"field {field_name!r} is a {kind} tab of {policy.role}, not a text tab; "
                         "the gateway fills text tabs only")
            continue
        elsewhere = next((str(r.get("roleName")) for _, r in everyone
                          if r is not ours and field_name in _tabs_by_label(r)), None)
        where = f"; it is a tab of {elsewhere!r}" if elsewhere else ""
        add("error", f"field {field_name!r} is not a text tab of {policy.role}"
                     f"{_suggest(field_name, text_labels)}{where}; DocuSign would ignore its "
                     "value (docs/docusign-facts.md §18)")
    for label, (kind, tab) in tabs.items():
        if kind == "textTabs" and _is_true(tab.get("required")) and label not in policy.fields:
            readable = f" ({tab['tooltip']!r})" if tab.get("tooltip") else ""
            add("error", f"the required text tab {label!r}{readable} of {policy.role} is filled "
                         f"by no policy field: add a field {label!r} to the policy, or make the "
                         "tab optional in the template")

    mine = _order(ours)
    before = [(k, r) for k, r in everyone if r is not ours and _order(r) < mine]
    alongside = [(k, r) for k, r in everyone if r is not ours and _order(r) == mine]
    after = [(k, r) for k, r in everyone if r is not ours and _order(r) > mine]
    for kind, recipient in everyone:
        if recipient is ours or recipient.get("name") or recipient.get("email"):
            continue
        add("error", f"{_describe(kind, recipient)} is a placeholder (no name or e-mail) and the "
                     f"gateway fills only {policy.role}: preset its name and e-mail in the "
                     "template (docs/docusign-facts.md §11)")
    blocking = [(k, r) for k, r in before if k != "carbon copy"]
    if blocking:
        add("error", "routed before the partner's signer: "
                     + ", ".join(_describe(k, r) for k, r in blocking)
                     + f"; {policy.role}'s signing session cannot open until they finish: "
                       f"give {policy.role} the lowest routing order")

    if not out or all(f.level != "error" for f in out):
        fields = ", ".join(policy.fields) if policy.fields else "no fields"
        filled = "are text tabs" if len(policy.fields) > 1 else "is a text tab"
        summary = (f"template {name!r} found; {policy.role} is a signer (routing {mine})"
                   + (f"; {fields} {filled} of {policy.role}" if policy.fields and not bad_fields
                      else ""))
        out.insert(0, Finding("ok", subject, summary))
    others = [("before", before), ("alongside", alongside), ("then", after)]
    for label, group in others:
        if group:
            add("note", f"{label}: " + ", ".join(_describe(k, r) for k, r in group))
    return out


def _template_missing(exc: errors.GatewayError) -> bool:
    code = str(getattr(exc, "upstream_code", "") or "")
    status = getattr(exc, "upstream_status", None)
    return code.upper() in ("TEMPLATE_ID_INVALID", "TEMPLATE_NOT_FOUND") or status == 404


def check_policies_upstream(policies: Mapping[str, Policy],
                            fetch: Callable[[str], dict[str, t.Any]]) -> UpstreamReport:
    """Every template of every policy against the account (one read per template id)."""
    report = UpstreamReport()
    cache: dict[str, dict[str, t.Any] | errors.GatewayError] = {}
    for partner in sorted(policies):
        for alias, tp in policies[partner].templates.items():
            subject = f"{partner}/{alias}"
            if tp.template_id not in cache:
                try:
                    cache[tp.template_id] = fetch(tp.template_id)
                except errors.GatewayError as exc:
                    cache[tp.template_id] = exc
            got = cache[tp.template_id]
            if isinstance(got, errors.GatewayError):
                if _template_missing(got):
                    text = (f"template {tp.template_id} does not exist in this account, or is not "
                            "shared with the system sender "
                            f"({getattr(got, 'upstream_code', got.error_code)})")
                else:
                    text = (f"template {tp.template_id} could not be read: "
                            f"{getattr(got, 'upstream_code', None) or got.description}")
                report.findings.append(Finding("error", subject, text))
                continue
            report.findings.extend(check_template(subject, tp, got))
    return report


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
