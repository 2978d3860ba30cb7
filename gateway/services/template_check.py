"""`gateway policies check --upstream`: each policy template against the account's template.

One read of DocuSign's `envelopeTemplate` per template id; every finding is a line for the
owner (ok, note, warning, error), nothing raises. DocuSign does not check that the tab
labels of a create request exist (docs/docusign-facts.md §18): this is where a misspelt
field is caught before partners use it.
"""

from __future__ import annotations

import difflib
import typing as t
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field

from gateway import errors
from gateway.policy.model import Policy
from gateway.policy.model import TemplatePolicy

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


def _role_problem(policy: TemplatePolicy, name: str,
                  everyone: list[tuple[str, dict[str, t.Any]]]) -> str:
    """Why the policy's role is not a signer of the template."""
    roles = [str(r.get("roleName")) for kind, r in everyone if kind == "signer" and r.get("roleName")]
    other = next((kind for kind, r in everyone if r.get("roleName") == policy.role), None)
    listed = ", ".join(roles) or "none"
    if other is not None:
        return (f"role {policy.role!r} is a {other}, not a signer, in template {name!r}; "
                f"its signer roles: {listed}")
    return (f"role {policy.role!r} is not a signer role of template {name!r}"
            f"{_suggest(policy.role, roles)}; its signer roles: {listed}")


def _field_findings(policy: TemplatePolicy, ours: dict[str, t.Any],
                    everyone: list[tuple[str, dict[str, t.Any]]]) -> list[tuple[str, str]]:
    """(level, text) for each policy field that is not an optional-compatible text tab."""
    tabs = _tabs_by_label(ours)
    text_labels = [label for label, (kind, _) in tabs.items() if kind == "textTabs"]
    out = []
    for field_name, rule in policy.fields.items():
        kind, tab = tabs.get(field_name, ("", {}))
        if kind == "textTabs":
            if _is_true(tab.get("required")) and not rule.required:
                out.append(("warning", f"field {field_name!r} is optional in the policy but its "
                            "tab is required in the template: when the partner leaves it out, "
                            "the signer must type it in on DocuSign's page"))
        elif kind:
            out.append(("error", f"field {field_name!r} is a {kind} tab of {policy.role}, not a "
                        "text tab; the gateway fills text tabs only"))
        else:
            elsewhere = next((str(r.get("roleName")) for _, r in everyone
                              if r is not ours and field_name in _tabs_by_label(r)), None)
            where = f"; it is a tab of {elsewhere!r}" if elsewhere else ""
            out.append(("error", f"field {field_name!r} is not a text tab of {policy.role}"
                        f"{_suggest(field_name, text_labels)}{where}; DocuSign would ignore its "
                        "value (docs/docusign-facts.md §18)"))
    for label, (kind, tab) in tabs.items():
        if kind == "textTabs" and _is_true(tab.get("required")) and label not in policy.fields:
            readable = f" ({tab['tooltip']!r})" if tab.get("tooltip") else ""
            out.append(("error", f"the required text tab {label!r}{readable} of {policy.role} is "
                        f"filled by no policy field: add a field {label!r} to the policy, or make "
                        "the tab optional in the template"))
    return out


def _routing_findings(policy: TemplatePolicy, ours: dict[str, t.Any],
                      everyone: list[tuple[str, dict[str, t.Any]]]) -> list[tuple[str, str]]:
    """Placeholders the gateway cannot fill, and recipients that would block the signer."""
    out = []
    for kind, recipient in everyone:
        if recipient is ours or recipient.get("name") or recipient.get("email"):
            continue
        out.append(("error", f"{_describe(kind, recipient)} is a placeholder (no name or e-mail) "
                    f"and the gateway fills only {policy.role}: preset its name and e-mail in "
                    "the template (docs/docusign-facts.md §11)"))
    blocking = [(k, r) for k, r in everyone
                if r is not ours and _order(r) < _order(ours) and k != "carbon copy"]
    if blocking:
        out.append(("error", "routed before the partner's signer: "
                    + ", ".join(_describe(k, r) for k, r in blocking)
                    + f"; {policy.role}'s signing session cannot open until they finish: "
                      f"give {policy.role} the lowest routing order"))
    return out


def _workflow_notes(ours: dict[str, t.Any],
                    everyone: list[tuple[str, dict[str, t.Any]]]) -> list[str]:
    """Who comes before, alongside and after the partner's signer (so the owner sees it)."""
    mine = _order(ours)
    groups = {
        "before": [(k, r) for k, r in everyone if r is not ours and _order(r) < mine],
        "alongside": [(k, r) for k, r in everyone if r is not ours and _order(r) == mine],
        "then": [(k, r) for k, r in everyone if r is not ours and _order(r) > mine],
    }
    return [f"{label}: " + ", ".join(_describe(k, r) for k, r in group)
            for label, group in groups.items() if group]


def check_template(subject: str, policy: TemplatePolicy,
                   template: Mapping[str, t.Any]) -> list[Finding]:
    """What the owner must know about one policy template against DocuSign's envelopeTemplate."""
    name = str(template.get("name") or policy.template_id)
    everyone = _recipients(template)
    ours = next((r for kind, r in everyone
                 if kind == "signer" and r.get("roleName") == policy.role), None)
    if ours is None:
        return [Finding("error", subject, _role_problem(policy, name, everyone))]
    found = _field_findings(policy, ours, everyone) + _routing_findings(policy, ours, everyone)
    out = [Finding(level, subject, text) for level, text in found]
    if all(level != "error" for level, _ in found):
        fields_ok = policy.fields and not any(
            level == "error" and text.startswith("field ") for level, text in found)
        filled = "are text tabs" if len(policy.fields) > 1 else "is a text tab"
        summary = (f"template {name!r} found; {policy.role} is a signer (routing {_order(ours)})"
                   + (f"; {', '.join(policy.fields)} {filled} of {policy.role}" if fields_ok else ""))
        out.insert(0, Finding("ok", subject, summary))
    out += [Finding("note", subject, text) for text in _workflow_notes(ours, everyone)]
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
