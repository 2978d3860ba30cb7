"""The ``/_sandbox`` control API: setup and inspection for tests and the CLI (not DocuSign)."""

from __future__ import annotations

import copy
import typing as t
import uuid
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Blueprint
from flask import Flask
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.wrappers import Response

from . import constants as c
from . import routing
from .errors import ControlError
from .limits import get_sandbox
from .rest import base_uri
from .template import TemplateError
from .template import build_template

bp = Blueprint("control", __name__, url_prefix="/_sandbox")

MIN_RSA_BITS = 2048


def _body() -> dict[str, t.Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ControlError("expected a JSON object body")
    return data


def _string(body: dict[str, t.Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"'{key}' must be a non-empty string")
    return value


@bp.get("/info")
def info() -> Response:
    """Everything a client needs to wire itself to this emulator."""
    sandbox = get_sandbox()
    base = base_uri()
    return jsonify(
        {
            "integration_key": c.DEMO_INTEGRATION_KEY,
            "user_id": c.DEMO_USER_ID,
            "account_id": c.DEMO_ACCOUNT_ID,
            "audience": sandbox.config["SANDBOX_AUDIENCE"],
            "base_uri": base,
            "auth_base_url": (sandbox.config.get("SANDBOX_AUTH_BASE_URL") or base).rstrip("/"),
            "templates": sorted(sandbox.templates),
        }
    )


# --- keys and consent --------------------------------------------------------------


@bp.post("/keys")
def add_key() -> tuple[Response, int]:
    """Register an RSA public key (PEM) on an integration key; at most 5 per key."""
    body = _body()
    ik = _string(body, "integration_key")
    pem = _string(body, "public_key_pem")
    try:
        key = serialization.load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError) as exc:
        raise ControlError(f"public_key_pem is not a PEM public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise ControlError(f"public_key_pem must be an RSA key of at least {MIN_RSA_BITS} bits")
    canonical = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    sandbox = get_sandbox()
    with sandbox.lock:
        integration = sandbox.integration_keys.get(ik)
        if integration is None:
            raise ControlError("unknown integration_key", status=404)
        for key_id, entry in integration["keys"].items():
            if entry["pem"] == canonical:
                return jsonify({"key_id": key_id, "already_registered": True}), 200
        if len(integration["keys"]) >= c.MAX_KEYS_PER_INTEGRATION_KEY:
            raise ControlError(f"an integration key holds at most {c.MAX_KEYS_PER_INTEGRATION_KEY} RSA keys")
        key_id = str(uuid.uuid4())
        integration["keys"][key_id] = {"pem": canonical, "key": key}
    return jsonify({"key_id": key_id}), 201


@bp.get("/keys")
def list_keys() -> Response:
    """The key ids registered per integration key."""
    sandbox = get_sandbox()
    with sandbox.lock:
        return jsonify({ik: sorted(v["keys"]) for ik, v in sandbox.integration_keys.items()})


@bp.delete("/keys/<key_id>")
def delete_key(key_id: str) -> Response:
    """Remove one registered public key."""
    sandbox = get_sandbox()
    with sandbox.lock:
        for integration in sandbox.integration_keys.values():
            if integration["keys"].pop(key_id, None) is not None:
                return jsonify({"deleted": key_id})
    raise ControlError("unknown key_id", status=404)


@bp.post("/consent")
def consent() -> Response:
    """Grant or withdraw a user's consent for an integration key."""
    body = _body()
    ik = _string(body, "integration_key")
    user_id = _string(body, "user_id")
    granted = body.get("granted", True)
    if not isinstance(granted, bool):
        raise ControlError("'granted' must be true or false")
    sandbox = get_sandbox()
    with sandbox.lock:
        if ik not in sandbox.integration_keys:
            raise ControlError("unknown integration_key", status=404)
        if user_id not in sandbox.users:
            raise ControlError("unknown user_id", status=404)
        if granted:
            sandbox.consents.add((ik, user_id))
        else:
            sandbox.consents.discard((ik, user_id))
    return jsonify({"integration_key": ik, "user_id": user_id, "granted": granted})


# --- templates ----------------------------------------------------------------------


@bp.post("/templates")
def add_template() -> tuple[Response, int]:
    """Seed another server template: recipients in routing order (or roles + tab labels)."""
    try:
        template = build_template(_body())
    except TemplateError as exc:
        raise ControlError(str(exc)) from None
    sandbox = get_sandbox()
    with sandbox.lock:
        if template["templateId"] in sandbox.templates:
            raise ControlError("a template with this templateId exists", status=409)
        sandbox.templates[template["templateId"]] = template
        return jsonify(copy.deepcopy(template)), 201


@bp.get("/templates")
def list_templates() -> Response:
    """All templates, seeded and added."""
    sandbox = get_sandbox()
    with sandbox.lock:
        return jsonify(copy.deepcopy(list(sandbox.templates.values())))


# --- faults and calls -------------------------------------------------------------------


def _int(body: dict[str, t.Any], key: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ControlError(f"'{key}' must be an integer from {low} to {high}")
    return value


@bp.post("/faults")
def add_fault() -> tuple[Response, int]:
    """Make the next ``count`` matching calls fail, stall or drop their connection."""
    body = _body()
    mode = body.get("mode", "status")
    if mode not in c.FAULT_MODES:
        raise ControlError(f"'mode' must be one of {list(c.FAULT_MODES)}")
    name = body.get("endpoint")
    if name is not None and name not in c.ENDPOINT_NAMES:
        raise ControlError(f"'endpoint' must be null or one of {list(c.ENDPOINT_NAMES)}")
    error_code = body.get("error_code")
    if error_code is not None and not isinstance(error_code, str):
        raise ControlError("'error_code' must be a string")
    fault = {
        "mode": mode,
        "endpoint": name,
        "count": _int(body, "count", 1, 1, 1_000_000),
        "status": _int(body, "status", 503 if mode == "status" else None, 400, 599),
        "retry_after": _int(body, "retry_after", None, 0, 86_400),
        "delay_ms": _int(body, "delay_ms", 1000 if mode == "delay" else None, 0, 600_000),
        "error_code": error_code,
    }
    fault["remaining"] = fault["count"]
    sandbox = get_sandbox()
    with sandbox.lock:
        sandbox.faults.append(fault)
        return jsonify({"faults": sandbox.faults}), 201


@bp.get("/faults")
def list_faults() -> Response:
    """Faults still pending."""
    sandbox = get_sandbox()
    with sandbox.lock:
        return jsonify({"faults": sandbox.faults})


@bp.delete("/faults")
def clear_faults() -> Response:
    """Drop every pending fault."""
    sandbox = get_sandbox()
    with sandbox.lock:
        sandbox.faults.clear()
    return jsonify({"faults": []})


@bp.get("/calls")
def calls() -> Response:
    """How many calls reached each DocuSign endpoint (failed and faulted ones too)."""
    sandbox = get_sandbox()
    with sandbox.lock:
        counts = {name: sandbox.calls.get(name, 0) for name in c.ENDPOINT_NAMES}
    return jsonify({"counts": counts, "total": sum(counts.values())})


@bp.delete("/calls")
def reset_calls() -> Response:
    """Zero the call counters."""
    sandbox = get_sandbox()
    with sandbox.lock:
        sandbox.calls.clear()
    return jsonify({"counts": {name: 0 for name in c.ENDPOINT_NAMES}, "total": 0})


# --- Connect ---------------------------------------------------------------------------------


@bp.post("/connect")
def configure_connect() -> Response:
    """Point Connect at a listener, with the HMAC secrets to sign with."""
    body = _body()
    url = _string(body, "url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ControlError("'url' must be an absolute http(s) URL")
    secrets = body.get("hmac_secrets", [])
    if not isinstance(secrets, list) or not all(isinstance(s, str) and s for s in secrets):
        raise ControlError("'hmac_secrets' must be a list of non-empty strings")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ControlError("'enabled' must be true or false")
    sandbox = get_sandbox()
    assert sandbox.connect is not None
    with sandbox.lock:
        sandbox.connect.configure(url, secrets, enabled)
    return jsonify({"url": url, "enabled": enabled, "hmac_secret_count": len(secrets)})


@bp.get("/connect/deliveries")
def deliveries() -> Response:
    """Every delivery attempt so far: event, envelope_id, status_code or error, retry_count."""
    sandbox = get_sandbox()
    assert sandbox.connect is not None
    with sandbox.lock:
        return jsonify(list(sandbox.connect.deliveries))


@bp.delete("/connect/deliveries")
def clear_deliveries() -> Response:
    """Forget the delivery log."""
    sandbox = get_sandbox()
    assert sandbox.connect is not None
    with sandbox.lock:
        sandbox.connect.deliveries.clear()
    return jsonify([])


# --- clock, reset, envelopes ----------------------------------------------------------------


@bp.get("/clock")
def clock() -> Response:
    """The emulator's current time (epoch seconds)."""
    sandbox = get_sandbox()
    return jsonify({"now": sandbox.now(), "offset": sandbox.clock_offset})


@bp.post("/clock")
def advance_clock() -> Response:
    """Move the emulator clock forward by ``advance`` seconds."""
    advance = _body().get("advance")
    if not isinstance(advance, int | float) or isinstance(advance, bool) or advance < 0:
        raise ControlError("'advance' must be a non-negative number of seconds")
    sandbox = get_sandbox()
    now = sandbox.advance(advance)
    return jsonify({"now": now, "offset": sandbox.clock_offset})


@bp.post("/reset")
def reset() -> Response:
    """Back to the seeded state: no keys, no consent, no envelopes, clock at wall time."""
    get_sandbox().reset()
    return jsonify({"reset": True})


@bp.get("/envelopes")
def list_envelopes() -> Response:
    """Ids and statuses of all envelopes."""
    sandbox = get_sandbox()
    with sandbox.lock:
        return jsonify(
            [{"envelopeId": e["envelopeId"], "status": e["status"]} for e in sandbox.envelopes.values()]
        )


@bp.get("/envelopes/<envelope_id>")
def envelope_record(envelope_id: str) -> Response:
    """The full internal record of one envelope, with its signing URLs and sessions."""
    sandbox = get_sandbox()
    with sandbox.lock:
        envelope = sandbox.envelopes.get(envelope_id.lower())
        if envelope is None:
            raise ControlError("unknown envelope", status=404)
        record = copy.deepcopy(envelope)
        record["views"] = [copy.deepcopy(sandbox.signing_urls[token]) for token in envelope["views"]]
        record["sessions"] = [
            copy.deepcopy(s) for s in sandbox.sessions.values() if s["envelope_id"] == envelope["envelopeId"]
        ]
    return jsonify(record)


# --- the remote recipients (countersigner) ---------------------------------------------------


def _remote_action(envelope_id: str, recipient_id: str, action: str) -> Response:
    """Sign or decline as a remote (email) signer whose turn it is."""
    form = request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
    body: t.Mapping[str, t.Any] = request.form if form else {}
    if not form and request.get_data():
        body = _body()
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ControlError("'reason' must be a string")
    sandbox = get_sandbox()
    with sandbox.lock:
        envelope = sandbox.envelopes.get(envelope_id.lower())
        if envelope is None:
            raise ControlError("unknown envelope", status=404)
        recipient = next((r for r in envelope["recipients"] if r["recipientId"] == recipient_id), None)
        if recipient is None:
            raise ControlError("unknown recipient", status=404)
        if recipient["recipientType"] != "signer":
            raise ControlError("only a signer can sign or decline", status=409)
        if recipient["clientUserId"] is not None:
            raise ControlError(
                "this signer is embedded (clientUserId): it signs through a recipient view", status=409
            )
        if not routing.is_current(envelope, recipient):
            raise ControlError(
                f"not this recipient's turn (recipient {recipient['status']}, envelope {envelope['status']})",
                status=409,
            )
        now = sandbox.now()
        if action == "sign":
            routing.sign(sandbox, envelope, recipient, now)
        else:
            routing.decline(sandbox, envelope, recipient, (reason or "").strip() or None, now)
        result = {
            "envelopeId": envelope["envelopeId"],
            "recipientId": recipient["recipientId"],
            "status": recipient["status"],
            "envelopeStatus": envelope["status"],
        }
    if form:
        return redirect(url_for("control.home"), code=303)
    return jsonify(result)


@bp.post("/envelopes/<envelope_id>/recipients/<recipient_id>/sign")
def remote_sign(envelope_id: str, recipient_id: str) -> Response:
    """Act as a remote signer (no clientUserId) whose turn it is: open and sign."""
    return _remote_action(envelope_id, recipient_id, "sign")


@bp.post("/envelopes/<envelope_id>/recipients/<recipient_id>/decline")
def remote_decline(envelope_id: str, recipient_id: str) -> Response:
    """Act as a remote signer whose turn it is: open and decline (body ``{"reason"}``)."""
    return _remote_action(envelope_id, recipient_id, "decline")


@bp.get("/")
def home() -> Response:
    """An HTML page listing envelopes that wait for a remote signer, with buttons."""
    sandbox = get_sandbox()
    with sandbox.lock:
        waiting = []
        others = []
        for envelope in sandbox.envelopes.values():
            remote = [
                r
                for r in routing.signers(envelope)
                if r["clientUserId"] is None and routing.is_current(envelope, r)
            ]
            entry = {
                "envelopeId": envelope["envelopeId"],
                "emailSubject": envelope["emailSubject"],
                "status": envelope["status"],
                "recipients": copy.deepcopy(envelope["recipients"]),
                "remote": copy.deepcopy(remote),
            }
            (waiting if remote else others).append(entry)
        html = render_template("control.html", waiting=waiting, others=others)
    return Response(html, mimetype="text/html")


def init_app(app: Flask) -> None:
    """Register the control blueprint."""
    app.register_blueprint(bp)
