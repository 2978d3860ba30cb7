"""Server templates: the control API's body shape, checked and turned into records.

A template record is ``{"templateId", "name", "emailSubject", "recipients": [...]}``;
each recipient is ``{"roleName", "recipientType" ("signer" | "carbonCopy"),
"routingOrder" (a numeric string), "name", "email" ("" for a placeholder role),
"textTabs": [{"tabLabel", "tooltip", "required" ("true" | "false")}]}``. Two derived
keys, ``roles`` and ``textTabs`` (every role name, every tab label), keep the older
control shape readable.
"""

from __future__ import annotations

import re
import typing as t
import uuid

from . import constants as c

# deliberately simple: one "@", no spaces, a dot in the domain
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
MAX_ROUTING_ORDER = 999


class TemplateError(ValueError):
    """A template body the control API refuses (400)."""


def _flag(value: t.Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower()
    raise TemplateError(f"'{where}' must be true or false")


def _tabs(value: t.Any) -> list[dict[str, str]]:
    """Text tabs from ``["label" | {"tabLabel", "tooltip"?, "required"?}]``."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TemplateError("'textTabs' must be a list")
    tabs = []
    for item in value:
        entry = item if isinstance(item, dict) else {"tabLabel": item}
        label = entry.get("tabLabel")
        if not isinstance(label, str) or not label:
            raise TemplateError('each textTabs entry must be a label or {"tabLabel": label, ...}')
        tooltip = entry.get("tooltip", "")
        if not isinstance(tooltip, str):
            raise TemplateError("'tooltip' must be a string")
        required = _flag(entry.get("required", "true"), "required")
        tabs.append({"tabLabel": label, "tooltip": tooltip, "required": required})
    labels = [tab["tabLabel"] for tab in tabs]
    if len(set(labels)) != len(labels):
        raise TemplateError("duplicate tab label")
    return tabs


def _routing_order(value: t.Any) -> str:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_ROUTING_ORDER:
        raise TemplateError(f"'routingOrder' must be a number from 1 to {MAX_ROUTING_ORDER}")
    return str(value)


def _recipient(item: t.Any) -> dict[str, t.Any]:
    if not isinstance(item, dict):
        raise TemplateError("each recipient must be an object")
    role = item.get("roleName")
    if not isinstance(role, str) or not role:
        raise TemplateError("each recipient needs a non-empty 'roleName'")
    kind = item.get("type", item.get("recipientType", "signer"))
    if kind not in c.RECIPIENT_TYPES:
        raise TemplateError(f"'type' must be one of {list(c.RECIPIENT_TYPES)}")
    name = item.get("name") or ""
    email = item.get("email") or ""
    if not isinstance(name, str) or not isinstance(email, str):
        raise TemplateError("'name' and 'email' must be strings")
    if bool(name.strip()) != bool(email):
        raise TemplateError(f"role '{role}': give both 'name' and 'email' (preset) or neither (placeholder)")
    if email and not EMAIL_RE.match(email):
        raise TemplateError(f"role '{role}': 'email' is not an email address")
    tabs = _tabs(item.get("textTabs"))
    if kind == "carbonCopy" and tabs:
        raise TemplateError(f"role '{role}': a carbon copy has no tabs")
    return {
        "roleName": role,
        "recipientType": kind,
        "routingOrder": _routing_order(item.get("routingOrder", 1)),
        "name": name,
        "email": email,
        "textTabs": tabs,
    }


def build_template(body: dict[str, t.Any]) -> dict[str, t.Any]:
    """A template record from a control API body.

    Either ``recipients`` (the full shape) or the older ``roles`` + ``textTabs``: every
    role a placeholder signer at routing order 1 that carries every tab.

    :param body: the JSON body of ``POST /_sandbox/templates`` (or a seed template)
    :raises TemplateError: when the body is not acceptable
    """
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise TemplateError("'name' must be a non-empty string")
    if body.get("recipients") is not None:
        items = body["recipients"]
        if not isinstance(items, list) or not items:
            raise TemplateError("'recipients' must be a non-empty list")
        recipients = [_recipient(item) for item in items]
    else:
        roles = body.get("roles")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and r for r in roles):
            raise TemplateError("'roles' must be a non-empty list of distinct role names")
        tabs = _tabs(body.get("textTabs"))
        recipients = [_recipient({"roleName": role, "textTabs": tabs}) for role in roles]
    role_names = [r["roleName"] for r in recipients]
    if len(set(role_names)) != len(role_names):
        raise TemplateError("'roles' must be a non-empty list of distinct role names")
    if not any(r["recipientType"] == "signer" for r in recipients):
        raise TemplateError("a template needs at least one signer")
    template_id = body.get("templateId") or str(uuid.uuid4())
    try:
        template_id = str(uuid.UUID(str(template_id)))
    except ValueError:
        raise TemplateError("'templateId' must be a GUID") from None
    subject = body.get("emailSubject") or f"Please sign: {name}"
    if not isinstance(subject, str):
        raise TemplateError("'emailSubject' must be a string")
    # a stable order: by routing order, then as given
    recipients.sort(key=lambda r: int(r["routingOrder"]))
    labels: list[str] = []
    for recipient in recipients:
        labels += [tab["tabLabel"] for tab in recipient["textTabs"] if tab["tabLabel"] not in labels]
    return {
        "templateId": template_id,
        "name": name,
        "emailSubject": subject,
        "recipients": recipients,
        "roles": [r["roleName"] for r in recipients],
        "textTabs": labels,
    }
