"""`/openapi.json`, built with apispec from the marshmallow schemas the views validate with, and `/docs`.

The request and response bodies come from `gateway.web.schemas` (the partner API) and
`gateway.web.operator` (the probes), so the documented contract cannot drift from the
enforced one. Only routes the app really registered are documented: a module that is
not installed (e.g. webhooks) leaves no phantom path behind. Every error is the one
problem+json envelope (`ProblemSchema`). `/docs` is a self-contained page (no CDN) that
renders the document in the browser.
"""

from __future__ import annotations

import typing as t

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from flask import send_from_directory
from marshmallow import INCLUDE
from marshmallow import Schema
from marshmallow import fields

from gateway import context
from gateway.web import schemas
from gateway.web.operator import HealthSchema
from gateway.web.operator import ReadinessSchema

bp = Blueprint("openapi", __name__, static_folder="static", static_url_path="/docs/static")

PROBLEM = "application/problem+json"
JSON = "application/json"
#: self only: the page, its script and its style come from here, and nothing else does
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class JwkSchema(Schema):
    """One public key of the gateway (RFC 7517), for verifying `gateway_token`."""

    class Meta:
        unknown = INCLUDE

    kty = fields.String(required=True, metadata={"description": "`EC`."})
    crv = fields.String(metadata={"description": "`P-256`."})
    x = fields.String()
    y = fields.String()
    kid = fields.String(required=True)
    use = fields.String(metadata={"description": "`sig`."})
    alg = fields.String(metadata={"description": "`ES256`."})


class JwksSchema(Schema):
    keys = fields.List(fields.Nested(JwkSchema), required=True)


_PROBLEMS: dict[str, tuple[int, str]] = {
    "MalformedJSON": (400, "The body is not a JSON object."),
    "Unauthenticated": (401, "Missing, malformed, unknown, revoked or expired key "
                             "(`missing_api_key`, `invalid_api_key`, `key_revoked`, `key_expired`)."),
    "Forbidden": (403, "The partner's policy does not allow this (`operation_not_allowed`, "
                       "`template_not_allowed`, `policy_unavailable`)."),
    "NotFound": (404, "No such envelope for this partner (`envelope_not_found`): "
                      "existence is not disclosed."),
    "Conflict": (409, "`idempotency_conflict`, `idempotency_in_progress` or `envelope_not_signable`."),
    "PayloadTooLarge": (413, "The body is larger than the gateway accepts."),
    "Invalid": (422, "The body breaks the schema or the policy (`validation_failed`, "
                     "`field_invalid`, `return_url_not_allowed`); `errors` names each field."),
    "RateLimited": (429, "The partner's budget (or the account's) is spent; see Retry-After."),
    "InternalError": (500, "A bug; the details are logged under the request id."),
    "UpstreamFailed": (502, "DocuSign failed or refused the gateway's request."),
    "UpstreamUnavailable": (503, "DocuSign is over its limits, or not configured or consented yet."),
    "UpstreamTimeout": (504, "DocuSign did not answer in time."),
}
_STATUS_TO_PROBLEM = {status: name for name, (status, _) in _PROBLEMS.items()}

_REQUEST_ID = {"description": "The request id: the caller's `X-Request-ID` when it is 1-64 of "
                              "`[A-Za-z0-9._:-]`, else a new one.", "schema": {"type": "string"}}
_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_RATE_HEADERS = {
    "X-RateLimit-Limit": {"description": "The partner's budget in the current window.",
                          "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "What is left of it.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "When it refills (Unix time).", "schema": {"type": "integer"}},
}
_PARTNER = (401, 403, 429, 500)
_UPSTREAM = (502, 503, 504)


def _problem_response(status: int, description: str) -> dict[str, t.Any]:
    headers: dict[str, t.Any] = {"X-Request-ID": _REQUEST_ID}
    if status == 401:
        headers["WWW-Authenticate"] = {"description": "`Bearer realm=\"partner-gateway\"...`",
                                       "required": True, "schema": {"type": "string"}}
    if status in (429, 503):
        headers["Retry-After"] = _RETRY_AFTER
    return {"description": description, "headers": headers, "content": {PROBLEM: {"schema": "Problem"}}}


def _ok(description: str, schema: str | dict[str, t.Any], *, media: str = JSON,
        headers: dict[str, t.Any] | None = None) -> dict[str, t.Any]:
    return {"description": description, "content": {media: {"schema": schema}},
            "headers": {"X-Request-ID": _REQUEST_ID, **(headers or {})}}


def _responses(ok: dict[str, dict[str, t.Any]], *statuses: int) -> dict[str, t.Any]:
    out: dict[str, t.Any] = dict(ok)
    for status in sorted(set(statuses)):
        out[str(status)] = _STATUS_TO_PROBLEM[status]
    return out


def _body(schema: str) -> dict[str, t.Any]:
    return {"required": True, "content": {JSON: {"schema": schema}}}


_ENVELOPE_ID = {"name": "envelope_id", "in": "path", "required": True,
                "description": "An envelope id the gateway returned to this partner.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 64}}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Same key and body within 24 h: the first answer again, no second envelope. "
                   "Same key, other body: 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}
_PARTNER_SECURITY: list[dict[str, list[str]]] = [{"partnerKey": []}]

#: (path, method, operation): every route the gateway may expose, documented once
OPERATIONS: tuple[tuple[str, str, dict[str, t.Any]], ...] = (
    ("/v1/envelopes", "post", {
        "tags": ["Partner API"], "operationId": "createEnvelope", "security": _PARTNER_SECURITY,
        "summary": "Create a draft envelope from an approved template",
        "description": "`template` is an alias from the partner's policy; `fields` are checked "
                       "against the policy's constraints. The gateway picks the recipient role and "
                       "the embedded recipient id.",
        "parameters": [_IDEMPOTENCY_KEY],
        "requestBody": _body("CreateEnvelope"),
        "responses": _responses(
            {"201": _ok("The draft was created.", "EnvelopeCreated", headers={
                "Location": {"description": "The envelope's status URL.", "schema": {"type": "string"}},
                **_RATE_HEADERS})},
            *_PARTNER, 400, 409, 413, 422, *_UPSTREAM),
    }),
    ("/v1/envelopes/{envelope_id}/recipient-view", "post", {
        "tags": ["Partner API"], "operationId": "createRecipientView", "security": _PARTNER_SECURITY,
        "summary": "Open an embedded signing session for the envelope's signer",
        "description": "Sends the draft first when needed. The URL is single-use and lives about "
                       "5 minutes; DocuSign returns the signer through the gateway's return relay.",
        "parameters": [_ENVELOPE_ID],
        "requestBody": _body("RecipientViewRequest"),
        "responses": _responses({"201": _ok("The signing URL.", "RecipientView", headers=_RATE_HEADERS)},
                                *_PARTNER, 400, 404, 409, 413, 422, *_UPSTREAM),
    }),
    ("/v1/envelopes/{envelope_id}", "get", {
        "tags": ["Partner API"], "operationId": "getEnvelope", "security": _PARTNER_SECURITY,
        "summary": "Status of one of the partner's envelopes",
        "parameters": [_ENVELOPE_ID],
        "responses": _responses({"200": _ok("The envelope's status.", "EnvelopeStatus",
                                            headers=_RATE_HEADERS)},
                                *_PARTNER, 404, *_UPSTREAM),
    }),
    ("/v1/templates", "get", {
        "tags": ["Partner API"], "operationId": "listTemplates", "security": _PARTNER_SECURITY,
        "summary": "The template aliases (and their fields) this partner may use",
        "responses": _responses({"200": _ok("The partner's templates.", "TemplateList",
                                            headers=_RATE_HEADERS)}, *_PARTNER),
    }),
    ("/v1/return/{token}", "get", {
        "tags": ["Signer"], "operationId": "returnRelay", "security": [],
        "summary": "Return relay: DocuSign sends the signer's browser here",
        "description": "Answers 303 to the partner's return URL with `envelope_id`, `event` and "
                       "`gateway_token` (an ES256 JWT; keys at `/.well-known/jwks.json`).",
        "parameters": [
            {"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "The relay token the gateway handed to DocuSign."},
            {"name": "event", "in": "query", "required": True, "description": "DocuSign's event.",
             "schema": {"type": "string", "enum": ["cancel", "decline", "exception", "fax_pending",
                                                   "session_timeout", "signing_complete",
                                                   "ttl_expired", "viewing_complete",
                                                   "access_code_failed", "id_check_failed"]}},
        ],
        "responses": _responses({
            "303": {"description": "On to the partner's page.", "headers": {
                "Location": {"required": True, "schema": {"type": "string"},
                             "description": "The partner's return URL with the proof."}}},
            "400": {"description": "A plain page for the signer: the link is bad, expired or used.",
                    "content": {"text/html": {"schema": {"type": "string"}}}},
        }, 429, 500, *_UPSTREAM),
    }),
    ("/.well-known/jwks.json", "get", {
        "tags": ["Signer"], "operationId": "jwks", "security": [],
        "summary": "Public keys that sign `gateway_token`",
        "responses": _responses({"200": _ok("A JWK set.", "Jwks")}, 500),
    }),
    ("/webhooks/docusign", "post", {
        "tags": ["DocuSign"], "operationId": "connectWebhook", "security": [],
        "summary": "DocuSign Connect events (JSON SIM), accepted only with a valid HMAC signature",
        "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {"2XX": {"description": "Accepted."},
                      "default": {"description": "Refused.", "content": {PROBLEM: {"schema": "Problem"}}}},
    }),
    ("/healthz", "get", {
        "tags": ["Operations"], "operationId": "healthz", "security": [],
        "summary": "The process is up",
        "responses": _responses({"200": _ok("Up.", "Health")}, 500),
    }),
    ("/readyz", "get", {
        "tags": ["Operations"], "operationId": "readyz", "security": [],
        "summary": "Ready: database reachable, policies loaded, an upstream token held or obtainable",
        "responses": {"200": _ok("Ready.", "Readiness"),
                      "503": _problem_response(503, "Not ready; `errors` names each failing check."),
                      "500": "InternalError"},
    }),
    ("/metrics", "get", {
        "tags": ["Operations"], "operationId": "metrics", "security": [],
        "summary": "Prometheus metrics (text exposition format)",
        "responses": _responses({"200": _ok("Metrics.", {"type": "string"}, media="text/plain")}, 500),
    }),
    ("/openapi.json", "get", {
        "tags": ["Operations"], "operationId": "openapi", "security": [],
        "summary": "This document",
        "responses": _responses({"200": _ok("OpenAPI 3.", {"type": "object"})}, 500),
    }),
)


def _registered(app: Flask) -> set[tuple[str, str]]:
    """(OpenAPI-style path, lowercase method) of every route the app really serves."""
    out: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for arg in rule.arguments:
            path = path.replace(f"<{arg}>", "{" + arg + "}").replace(f"<string:{arg}>", "{" + arg + "}")
        out.update((path, method.lower()) for method in rule.methods or ())
    return out


def build_spec(app: Flask) -> APISpec:
    """The OpenAPI document for `app`'s routes (only those it registered)."""
    spec = APISpec(
        title="DocuSign partner gateway", version="1.0.0", openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "A partner can create a draft from an approved template, open a "
                             "signing session for its own envelope and read its status; nothing "
                             "else. Every error is `application/problem+json` (RFC 9457)."},
    )
    spec.components.security_scheme("partnerKey", {
        "type": "http", "scheme": "bearer", "bearerFormat": "pgw_<key id>_<secret>_<checksum>",
        "description": "The partner's API key, issued once by the account owner."})
    for name, schema in (
        ("Problem", schemas.ProblemSchema), ("CreateEnvelope", schemas.CreateEnvelopeSchema),
        ("EnvelopeCreated", schemas.EnvelopeCreatedSchema),
        ("RecipientViewRequest", schemas.RecipientViewRequestSchema),
        ("RecipientView", schemas.RecipientViewSchema), ("EnvelopeStatus", schemas.EnvelopeStatusSchema),
        ("TemplateList", schemas.TemplateListSchema), ("Jwks", JwksSchema),
        ("Health", HealthSchema), ("Readiness", ReadinessSchema),
    ):
        spec.components.schema(name, schema=schema)
    for name, (status, description) in _PROBLEMS.items():
        spec.components.response(name, _problem_response(status, description))
    served = _registered(app)
    for path, method, operation in OPERATIONS:
        if (path, method) in served:
            spec.path(path=path, operations={method: operation})
    return spec


def get_spec() -> dict[str, t.Any]:
    """The current app's document, built on first use (every blueprint is registered by then)."""
    cached = current_app.extensions.get("openapi")
    if cached is None:
        cached = current_app.extensions["openapi"] = build_spec(current_app).to_dict()
    return t.cast(dict[str, t.Any], cached)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    context.current().operation = "openapi"
    return jsonify(get_spec())


@bp.get("/docs")
def docs() -> Response:
    """A page that renders `/openapi.json` with a small local script."""
    context.current().operation = "docs"
    resp = send_from_directory(t.cast(str, bp.static_folder), "docs.html", max_age=0)
    resp.headers["Content-Security-Policy"] = DOCS_CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
