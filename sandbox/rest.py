"""The eSignature REST subset under ``/restapi/v2.1/accounts/<accountId>``."""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
import typing as t
from urllib.parse import urlsplit

from flask import Blueprint
from flask import Flask
from flask import g
from flask import jsonify
from flask import request
from werkzeug.wrappers import Response

from . import constants as c
from . import routing
from .errors import RestError
from .errors import invalid_body
from .errors import invalid_parameter
from .limits import charge
from .limits import check_poll
from .limits import endpoint
from .limits import get_sandbox
from .limits import limit_headers
from .limits import record_poll
from .render import envelope_json
from .render import envelope_summary
from .render import recipients_json
from .render import template_json
from .state import Sandbox
from .state import new_guid
from .template import EMAIL_RE

bp = Blueprint("rest", __name__, url_prefix="/restapi/v2.1/accounts/<account_id>")

# a bare origin: scheme://host[:port], nothing else (it ends up in a CSP header)
ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
# [U] DocuSign's limits on a few string fields
EMAIL_SUBJECT_MAX = 100
CLIENT_USER_ID_MAX = 100


def base_uri() -> str:
    """The emulator's REST base URI (``accounts[0].base_uri`` of userinfo)."""
    configured = get_sandbox().config.get("SANDBOX_BASE_URI")
    return (configured or request.host_url).rstrip("/")


# --- request glue ----------------------------------------------------------------


def authenticate(sandbox: Sandbox) -> dict[str, t.Any]:
    """The user behind the request's bearer token, or 401 ``USER_AUTHENTICATION_FAILED``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    with sandbox.lock:
        record = sandbox.tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if record is None or record["expires"] <= sandbox.now():
            raise RestError(
                c.AUTH_FAILED_CODE,
                "The access token provided is expired, revoked or malformed.",
                status=c.AUTH_FAILED_STATUS,
            )
        return sandbox.users[record["user_id"]]


def rest_endpoint(name: str) -> t.Callable[..., t.Any]:
    """Count + fault (``endpoint``), then token, rate limits and account membership.

    :param name: the endpoint name used by ``/_sandbox/calls`` and faults
    """

    def decorator(view: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        @endpoint(name)
        @functools.wraps(view)
        def wrapper(account_id: str, **kwargs: t.Any) -> t.Any:
            sandbox = get_sandbox()
            user = authenticate(sandbox)
            g.rate_account = user["account_id"]
            charge(sandbox, user["account_id"])
            if account_id.lower() != user["account_id"]:
                raise RestError(
                    c.ACCOUNT_MISMATCH_CODE,
                    "The UserID does not have a valid membership in this Account.",
                    status=c.ACCOUNT_MISMATCH_STATUS,
                )
            return view(sandbox, user, **kwargs)

        return wrapper

    return decorator


def read_body() -> dict[str, t.Any]:
    """The JSON object body, or 400 ``INVALID_REQUEST_BODY`` if missing/empty/unparseable."""
    if request.mimetype != "application/json":
        raise invalid_body()
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not data:
        raise invalid_body()
    return data


def find_envelope(sandbox: Sandbox, user: dict[str, t.Any], envelope_id: str) -> dict[str, t.Any]:
    """The envelope in the user's account, or ``ENVELOPE_DOES_NOT_EXIST`` (caller holds lock)."""
    envelope = sandbox.envelopes.get(envelope_id.lower())
    if envelope is None or envelope["accountId"] != user["account_id"]:
        raise RestError(
            c.ENVELOPE_NOT_FOUND_CODE,
            "The envelope specified either does not exist or you have no rights to it.",
            status=c.ENVELOPE_NOT_FOUND_STATUS,
        )
    return envelope


def _optional_str(body: dict[str, t.Any], key: str, *, where: str = "") -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_parameter(f"Value for '{where}{key}' must be a string.")
    return value


# --- create ------------------------------------------------------------------------


def _check_roles(template: dict[str, t.Any], roles: t.Any) -> dict[str, dict[str, t.Any]]:
    """Validate ``templateRoles`` against the template's recipients; return them by role."""
    if not isinstance(roles, list) or not all(isinstance(r, dict) for r in roles):
        raise invalid_body()
    known = {r["roleName"] for r in template["recipients"]}
    by_name: dict[str, dict[str, t.Any]] = {}
    for role in roles:
        name = role.get("roleName")
        if not isinstance(name, str) or name not in known:
            raise RestError(
                c.ROLE_MISMATCH_CODE,
                f"Role '{name}' does not exist on template {template['templateId']}.",
            )
        if name in by_name:
            raise RestError(c.ROLE_MISMATCH_CODE, f"Role '{name}' is given more than once.")
        by_name[name] = role
    missing = [
        r["roleName"] for r in template["recipients"] if not r["email"] and r["roleName"] not in by_name
    ]
    if missing and c.PLACEHOLDER_ROLE_REQUIRED:
        raise RestError(c.ROLE_MISMATCH_CODE, f"No recipient was given for template role(s): {missing}.")
    return by_name


def _check_tabs(
    template: dict[str, t.Any], recipient: dict[str, t.Any], role: dict[str, t.Any]
) -> dict[str, str]:
    """The role's tab values, keyed by label, with every tab of the template recipient present."""
    values = {tab["tabLabel"]: "" for tab in recipient["textTabs"]}
    tabs = role.get("tabs")
    if tabs is None:
        return values
    if not isinstance(tabs, dict):
        raise invalid_body()
    for kind, entries in tabs.items():
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise invalid_body()
        for entry in entries:
            label = entry.get("tabLabel")
            if kind != "textTabs" or not isinstance(label, str) or label not in values:
                raise RestError(
                    c.UNKNOWN_TAB_LABEL_CODE,
                    f"Tab label '{label}' ({kind}) does not exist on template {template['templateId']}.",
                )
            value = entry.get("value", "")
            if not isinstance(value, str):
                raise invalid_parameter(f"Value for tab '{label}' must be a string.")
            values[label] = value
    return values


def client_user_id(value: t.Any, where: str) -> str | None:
    """A ``clientUserId`` as DocuSign reads it: a string, or a JSON integer made a string.

    DocuSign's own code examples send ``1000`` as a JSON number; its deserializer turns it
    into the string ``"1000"``.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is not None and not isinstance(value, str):
        raise invalid_parameter(f"Value for '{where}clientUserId' must be a string.")
    if value is not None and not 0 < len(value) <= CLIENT_USER_ID_MAX:
        raise invalid_parameter(f"Value for 'clientUserId' must be 1 to {CLIENT_USER_ID_MAX} characters.")
    return value


def _make_recipient(
    template: dict[str, t.Any], recipient: dict[str, t.Any], role: dict[str, t.Any] | None, number: int
) -> dict[str, t.Any]:
    """One envelope recipient: the template's recipient, filled in or overridden by its role."""
    if role is None:
        email, name, cuid = recipient["email"], recipient["name"], None
    else:
        email = role.get("email")
        if not isinstance(email, str) or not EMAIL_RE.match(email):
            raise RestError(c.INVALID_EMAIL_CODE, "The email address for the recipient is invalid.")
        name = role.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RestError(c.INVALID_NAME_CODE, "The user name for the recipient is not specified.")
        cuid = client_user_id(role.get("clientUserId"), "templateRoles.")
    return {
        "recipientId": str(number),
        "recipientIdGuid": new_guid(),
        "userId": new_guid(),
        "recipientType": recipient["recipientType"],
        "email": email,
        "name": name,
        "roleName": recipient["roleName"],
        "routingOrder": recipient["routingOrder"],
        "clientUserId": cuid,
        "status": "created",
        "tabs": _check_tabs(template, recipient, role or {}),
        "tabDefs": [dict(tab) for tab in recipient["textTabs"]],
    }


def _check_custom_fields(body: dict[str, t.Any]) -> list[dict[str, str]]:
    custom = body.get("customFields")
    if custom is None:
        return []
    if not isinstance(custom, dict):
        raise invalid_body()
    fields = custom.get("textCustomFields") or []
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise invalid_body()
    out = []
    for field in fields:
        name, value = field.get("name"), field.get("value", "")
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise invalid_parameter("Each textCustomFields entry needs a string name and value.")
        entry = {"name": name, "value": value}
        for flag in ("show", "required"):
            if flag in field:
                entry[flag] = str(field[flag]).lower()
        out.append(entry)
    return out


def send_envelope(sandbox: Sandbox, envelope: dict[str, t.Any]) -> None:
    """Draft to sent: the first routing order is sent (see :mod:`sandbox.routing`)."""
    routing.send(sandbox, envelope, sandbox.now())


@bp.post("/envelopes")
@rest_endpoint("create_envelope")
def create_envelope(sandbox: Sandbox, user: dict[str, t.Any]) -> tuple[Response, int]:
    """Create an envelope from a template, as a draft or sent (docs/docusign-facts.md §3)."""
    body = read_body()
    with sandbox.lock:
        template_id = body.get("templateId")
        template = sandbox.templates.get(template_id.lower()) if isinstance(template_id, str) else None
        if template is None:
            raise RestError(c.TEMPLATE_NOT_FOUND_CODE, f"The template ID '{template_id}' is invalid.")
        status = body.get("status")
        if status is None and not c.CREATE_STATUS_REQUIRED:
            status = "created"
        if status not in ("created", "sent"):
            raise invalid_parameter("Value for 'status' must be 'created' or 'sent'.")
        subject = _optional_str(body, "emailSubject")
        if subject is not None and not 0 < len(subject) <= EMAIL_SUBJECT_MAX:
            raise invalid_parameter(f"Value for 'emailSubject' must be 1 to {EMAIL_SUBJECT_MAX} characters.")
        roles = _check_roles(template, body.get("templateRoles"))
        recipients = [
            _make_recipient(template, recipient, roles.get(recipient["roleName"]), 0)
            for recipient in template["recipients"]
            if recipient["email"] or recipient["roleName"] in roles
        ]
        for number, recipient in enumerate(recipients, start=1):
            recipient["recipientId"] = str(number)
        custom_fields = _check_custom_fields(body)
        now = sandbox.now()
        envelope_id = new_guid()
        envelope: dict[str, t.Any] = {
            "envelopeId": envelope_id,
            "accountId": user["account_id"],
            "senderUserId": user["user_id"],
            "templateId": template["templateId"],
            "status": "created",
            "emailSubject": subject or template["emailSubject"],
            "createdDateTime": now,
            "statusChangedDateTime": now,
            "lastModifiedDateTime": now,
            "recipients": recipients,
            "customFields": custom_fields,
            "views": [],
        }
        sandbox.envelopes[envelope_id] = envelope
        if status == "sent":
            send_envelope(sandbox, envelope)
        return jsonify(envelope_summary(envelope)), c.CREATE_ENVELOPE_STATUS


# --- read ----------------------------------------------------------------------------


@bp.get("/envelopes/<envelope_id>")
@rest_endpoint("get_envelope")
def get_envelope(sandbox: Sandbox, user: dict[str, t.Any], envelope_id: str) -> Response:
    """The envelope; ``?include=recipients,custom_fields`` adds those parts (§6)."""
    include = {part.strip() for part in request.args.get("include", "").split(",")}
    with sandbox.lock:
        envelope = find_envelope(sandbox, user, envelope_id)
        check_poll(sandbox, envelope["envelopeId"])
        out = envelope_json(
            envelope,
            recipients="recipients" in include,
            custom_fields="custom_fields" in include,
            tabs="tabs" in include,
        )
        record_poll(sandbox, envelope["envelopeId"])
    return jsonify(out)


@bp.get("/envelopes/<envelope_id>/recipients")
@rest_endpoint("list_recipients")
def list_recipients(sandbox: Sandbox, user: dict[str, t.Any], envelope_id: str) -> Response:
    """The envelope's recipients; ``?include_tabs=true`` adds tab values (§6)."""
    tabs = request.args.get("include_tabs", "").lower() == "true"
    with sandbox.lock:
        envelope = find_envelope(sandbox, user, envelope_id)
        check_poll(sandbox, envelope["envelopeId"])
        out = recipients_json(envelope, tabs=tabs)
        record_poll(sandbox, envelope["envelopeId"])
    return jsonify(out)


@bp.get("/envelopes")
@rest_endpoint("list_status_changes")
def list_status_changes(sandbox: Sandbox, user: dict[str, t.Any]) -> Response:
    """listStatusChanges: envelopes changed since ``from_date``, optionally by custom field.

    Supports ``from_date`` / ``to_date`` (ISO 8601; naive times are UTC), ``envelope_ids``
    (comma-separated), ``status`` (comma-separated current statuses, ``any`` for all),
    ``custom_field=<name>=<value>`` and ``include=custom_fields,recipients``. Not a
    per-envelope poll: DocuSign recommends this call for polling, so only the account's
    hourly and burst budgets are charged.
    """
    args = request.args
    envelope_ids = {e.strip().lower() for e in args.get("envelope_ids", "").split(",") if e.strip()}
    if "from_date" not in args and not envelope_ids and not args.get("transaction_ids"):
        raise invalid_parameter(c.LIST_FROM_DATE_REQUIRED_MESSAGE)
    since = _query_time(args, "from_date")
    until = _query_time(args, "to_date")
    wanted = _custom_field_filter(args.get("custom_field"))
    statuses = _status_filter(args.get("status"))
    include = {part.strip() for part in args.get("include", "").split(",")}
    with sandbox.lock:
        found = [
            envelope_json(
                e,
                recipients="recipients" in include,
                custom_fields="custom_fields" in include,
            )
            for e in sorted(sandbox.envelopes.values(), key=lambda e: e["statusChangedDateTime"])
            if e["accountId"] == user["account_id"]
            and (statuses is None or e["status"] in statuses)
            and (not envelope_ids or e["envelopeId"] in envelope_ids)
            and (since is None or e["statusChangedDateTime"] >= since)
            and (until is None or e["statusChangedDateTime"] <= until)
            and (wanted is None or wanted in {(f["name"], f["value"]) for f in e["customFields"]})
        ]
    out: dict[str, t.Any] = {
        "resultSetSize": str(len(found)),
        "totalSetSize": str(len(found)),
        "startPosition": "0",
        "endPosition": str(len(found) - 1),
        "nextUri": "",
        "previousUri": "",
    }
    if found or not c.LIST_OMITS_EMPTY_ENVELOPES:
        out["envelopes"] = found
    return jsonify(out)


def _query_time(args: t.Mapping[str, str], name: str) -> float | None:
    """An ISO 8601 query parameter as epoch seconds, or 400 ``INVALID_REQUEST_PARAMETER``."""
    value = args.get(name)
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise invalid_parameter(f"Value for '{name}' is not a valid date/time.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _status_filter(value: str | None) -> set[str] | None:
    """The ``status`` parameter as a set of statuses; None when absent or ``any``."""
    if value is None or not value.strip():
        return None
    wanted = {part.strip().lower() for part in value.split(",") if part.strip()}
    unknown = sorted(wanted - set(c.LIST_STATUS_VALUES))
    if unknown:
        raise invalid_parameter(f"Value for 'status' is not valid: {', '.join(unknown)}.")
    return None if "any" in wanted else wanted


def _custom_field_filter(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    name, sep, wanted = value.partition(c.LIST_CUSTOM_FIELD_SEPARATOR)
    if not sep or not name:
        raise invalid_parameter("Value for 'custom_field' must read <name>=<value>.")
    return name, wanted


# --- templates ---------------------------------------------------------------------------


@bp.get("/templates/<template_id>")
@rest_endpoint("get_template")
def get_template(sandbox: Sandbox, user: dict[str, t.Any], template_id: str) -> Response:
    """Templates_GetTemplate: the envelopeTemplate with its recipients; ``?include=tabs``
    adds each recipient's tabs (the OpenAPI ``include`` values: powerforms, tabs,
    documents, favorite_template_status; the emulator has only tabs)."""
    include = {part.strip().lower() for part in request.args.get("include", "").split(",")}
    with sandbox.lock:
        template = sandbox.templates.get(template_id.lower())
        if template is None:
            raise RestError(
                c.TEMPLATE_NOT_FOUND_CODE,
                f"The template ID '{template_id}' is invalid.",
                status=c.TEMPLATE_NOT_FOUND_STATUS,
            )
        out = template_json(template, tabs="tabs" in include)
    return jsonify(out)


# --- update ----------------------------------------------------------------------------


@bp.put("/envelopes/<envelope_id>")
@rest_endpoint("update_envelope")
def update_envelope(sandbox: Sandbox, user: dict[str, t.Any], envelope_id: str) -> tuple[Response, int]:
    """Send a draft, void a sent envelope, or keep a draft a draft (docs/docusign-facts.md §4)."""
    body = read_body()
    with sandbox.lock:
        envelope = find_envelope(sandbox, user, envelope_id)
        status = body.get("status")
        if status is not None and status not in ("created", "sent", "voided"):
            raise invalid_parameter("Value for 'status' must be 'created', 'sent' or 'voided'.")
        subject = _optional_str(body, "emailSubject")
        if subject is not None:
            if envelope["status"] != "created":
                raise RestError(
                    c.UPDATE_INVALID_STATUS_CODE,
                    "Invalid envelope status. Envelope status is not one of: created.",
                )
            if not 0 < len(subject) <= EMAIL_SUBJECT_MAX:
                raise invalid_parameter(
                    f"Value for 'emailSubject' must be 1 to {EMAIL_SUBJECT_MAX} characters."
                )
        if status == "voided":
            _void(sandbox, envelope, body.get("voidedReason"))
        elif status in ("sent", "created") and envelope["status"] != "created":
            raise RestError(
                c.UPDATE_INVALID_STATUS_CODE,
                "Invalid envelope status. Envelope status is not one of: created.",
            )
        if subject is not None:
            envelope["emailSubject"] = subject
            envelope["lastModifiedDateTime"] = sandbox.now()
        if status == "sent":
            send_envelope(sandbox, envelope)
        return jsonify({"envelopeId": envelope["envelopeId"]}), c.UPDATE_ENVELOPE_STATUS


def _void(sandbox: Sandbox, envelope: dict[str, t.Any], reason: t.Any) -> None:
    if not isinstance(reason, str) or not reason.strip():
        raise invalid_parameter("Value for 'voidedReason' must be specified when voiding an envelope.")
    if envelope["status"] not in c.VIEWABLE_STATUSES:
        raise RestError(
            c.VOID_INVALID_STATUS_CODE,
            f"Only envelopes in the 'sent' or 'delivered' status can be voided; "
            f"this one is '{envelope['status']}'.",
        )
    envelope["voidedReason"] = reason
    sandbox.set_envelope_status(envelope, "voided")


# --- recipient view ---------------------------------------------------------------------


def _origins(body: dict[str, t.Any], key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and ORIGIN_RE.match(v) for v in value):
        raise invalid_parameter(f"Value for '{key}' must be a list of origins (scheme://host).")
    return [v.rstrip("/") for v in value]


@bp.post("/envelopes/<envelope_id>/views/recipient")
@rest_endpoint("recipient_view")
def recipient_view(sandbox: Sandbox, user: dict[str, t.Any], envelope_id: str) -> tuple[Response, int]:
    """A single-use embedded signing URL for an embedded recipient (docs/docusign-facts.md §5)."""
    body = read_body()
    body["clientUserId"] = client_user_id(body.get("clientUserId"), "")
    for key in ("returnUrl", "authenticationMethod", "userName", "email", "clientUserId"):
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            raise invalid_parameter(f"A value was not found for parameter '{key}'.")
    return_url = body["returnUrl"]
    parts = urlsplit(return_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_parameter("Value for 'returnUrl' must be an absolute http(s) URL.")
    if len(return_url) > c.RETURN_URL_MAX:
        if c.RETURN_URL_TOO_LONG_REFUSED:
            raise invalid_parameter(f"Value for 'returnUrl' must be at most {c.RETURN_URL_MAX} characters.")
        return_url = return_url[: c.RETURN_URL_MAX]
    frame_ancestors = _origins(body, "frameAncestors")
    message_origins = _origins(body, "messageOrigins")
    with sandbox.lock:
        envelope = find_envelope(sandbox, user, envelope_id)
        if envelope["status"] not in c.VIEWABLE_STATUSES:
            raise RestError(
                c.VIEW_INVALID_STATUS_CODE,
                "Invalid envelope status. Envelope status is not one of: "
                + ", ".join(c.VIEWABLE_STATUSES)
                + ".",
            )
        signer = next(
            (
                s
                for s in routing.signers(envelope)
                if s["clientUserId"] is not None
                and s["clientUserId"] == body["clientUserId"]
                and s["name"] == body["userName"]
                and s["email"].lower() == body["email"].lower()
            ),
            None,
        )
        if signer is None:
            raise RestError(
                c.UNKNOWN_RECIPIENT_CODE,
                "The recipient you have identified is not a valid recipient of the specified envelope.",
            )
        if signer["status"] == "created":
            raise RestError(c.RECIPIENT_NOT_IN_SEQUENCE_CODE, c.RECIPIENT_NOT_IN_SEQUENCE_MESSAGE)
        if signer["status"] not in c.VIEWABLE_STATUSES:
            raise RestError(
                c.VIEW_INVALID_STATUS_CODE,
                f"The recipient has already finished ({signer['status']}).",
            )
        token = secrets.token_urlsafe(32)
        now = sandbox.now()
        sandbox.signing_urls[token] = {
            "token": token,
            "envelope_id": envelope["envelopeId"],
            "recipient_id": signer["recipientId"],
            "return_url": return_url,
            "frame_ancestors": frame_ancestors,
            "message_origins": message_origins,
            "authentication_method": body["authenticationMethod"],
            "created": now,
            "expires": now + sandbox.config["SANDBOX_SIGNING_URL_TTL"],
            "redeemed": None,
            "session_id": None,
        }
        envelope["views"].append(token)
    return jsonify({"url": f"{base_uri()}{c.SIGNING_PATH_PREFIX}{token}"}), c.RECIPIENT_VIEW_STATUS


def _add_limit_headers(response: Response) -> Response:
    """Every REST response (errors and unknown routes too) reports the account budget."""
    if request.path.startswith("/restapi/"):
        account = g.get("rate_account") or c.DEMO_ACCOUNT_ID
        response.headers.update(limit_headers(get_sandbox(), account))
    return response


def init_app(app: Flask) -> None:
    """Register the REST blueprint and the rate-limit header hook."""
    app.register_blueprint(bp)
    app.after_request(_add_limit_headers)
