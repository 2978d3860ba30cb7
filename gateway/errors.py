"""Every error the gateway can answer with, each rendering itself as problem+json (RFC 9457).

Views and guards raise these; one handler (`init_app`) turns them, werkzeug's own
HTTP errors and any unexpected exception into the same envelope. Nothing here ever
echoes internals: details are written by the raiser for the partner's eyes.

Longer than most modules on purpose: it is the catalog, one small class per error, and a
reader looking for a code finds every one of them here.
"""

from __future__ import annotations

import logging
import typing as t

import click
from flask import Flask
from flask import Response
from flask import json
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import SecurityError

from gateway import context

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:partner-gateway:problem:"


class GatewayError(HTTPException):
    """Base of every error the gateway answers with: a status, a stable code and a title."""

    code: int = 500
    error_code: str = "internal_error"
    #: what the audit trail and logs record when it differs from what the caller is told
    audit_code: str | None = None
    title: str = "Internal server error"
    description = "The gateway could not complete the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: t.Mapping[str, t.Any] | None = None,
        retry_after: int | None = None,
        headers: t.Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description=detail or self.description)
        self.errors = dict(errors) if errors else None
        self.retry_after = retry_after
        self.extra_headers = dict(headers or {})

    def problem(self) -> dict[str, t.Any]:
        """The problem document, without the request id (added at render time)."""
        body: dict[str, t.Any] = {
            "type": PROBLEM_TYPE_PREFIX + self.error_code,
            "title": self.title,
            "status": self.code,
            "detail": self.description,
            "code": self.error_code,
        }
        if self.errors:
            body["errors"] = self.errors
        return body

    def get_headers(self, environ: t.Any = None, scope: t.Any = None) -> list[tuple[str, str]]:
        headers = [("Content-Type", PROBLEM_MIMETYPE)]
        if self.retry_after is not None:
            headers.append(("Retry-After", str(max(0, int(self.retry_after)))))
        headers.extend(self.extra_headers.items())
        return headers


# 400 / 422: the request itself


class MalformedJSON(GatewayError):
    """*400*: the body is not parseable JSON (or not a JSON object)."""

    code = 400
    error_code = "malformed_json"
    title = "Malformed JSON"
    description = "The request body must be a JSON object."


class UntrustedHost(GatewayError):
    """*400*: the request names a host the gateway does not serve (not PUBLIC_URL's)."""

    code = 400
    error_code = "untrusted_host"
    title = "Untrusted host"
    description = "This gateway does not answer for the host the request names."


class ValidationFailed(GatewayError):
    """*422*: the body is well-formed but breaks the schema; `errors` names each field."""

    code = 422
    error_code = "validation_failed"
    title = "Validation failed"
    description = "The request body is invalid."


class FieldInvalid(ValidationFailed):
    """*422*: a template field is unknown, missing or breaks the policy's constraints."""

    error_code = "field_invalid"
    title = "Field invalid"
    description = "One or more template fields are invalid."


class ReturnUrlNotAllowed(ValidationFailed):
    """*422*: the return URL is not one the partner's policy allows."""

    error_code = "return_url_not_allowed"
    title = "Return URL not allowed"
    description = "return_url does not match any of the partner's allowed return URLs."


# 401 / 403: who is calling and what they may do


class Unauthenticated(GatewayError):
    """*401*: base for every key problem; always carries `WWW-Authenticate: Bearer`."""

    code = 401
    error_code = "invalid_api_key"
    title = "Invalid API key"
    description = "A valid partner API key is required (Authorization: Bearer <key>)."

    def get_headers(self, environ: t.Any = None, scope: t.Any = None) -> list[tuple[str, str]]:
        challenge = f'Bearer realm="partner-gateway", error="invalid_token", code="{self.error_code}"'
        return [*super().get_headers(environ, scope), ("WWW-Authenticate", challenge)]


class MissingApiKey(Unauthenticated):
    """*401*: no bearer key at all."""

    error_code = "missing_api_key"
    title = "Missing API key"

    def get_headers(self, environ: t.Any = None, scope: t.Any = None) -> list[tuple[str, str]]:
        # RFC 6750 §3.1: no error attribute when the request carried no credentials
        return [*GatewayError.get_headers(self, environ, scope),
                ("WWW-Authenticate", 'Bearer realm="partner-gateway"')]


class InvalidApiKey(Unauthenticated):
    """*401*: malformed, bad checksum, unknown or wrong secret: deliberately indistinguishable."""


class IpNotAllowed(InvalidApiKey):
    """*401*: a valid key used from outside its policy's `allowed_ips`.

    Answered exactly like a bad key, so a caller learns nothing about the allowlist;
    only the audit trail and the logs carry its own code.
    """

    audit_code = "ip_not_allowed"


class KeyRevoked(Unauthenticated):
    """*401*: the key was revoked by the account owner."""

    error_code = "key_revoked"
    title = "API key revoked"
    description = "This API key has been revoked."


class KeyExpired(Unauthenticated):
    """*401*: the key passed its expiry (or the end of its rotation grace period)."""

    error_code = "key_expired"
    title = "API key expired"
    description = "This API key has expired."


class Forbidden(GatewayError):
    """*403*: base for policy denials."""

    code = 403
    error_code = "forbidden"
    title = "Forbidden"
    description = "The partner's policy does not allow this."


class PolicyUnavailable(Forbidden):
    """*403*: the partner has a key but no valid policy file: fail closed."""

    error_code = "policy_unavailable"
    title = "Policy unavailable"
    description = "No valid policy is loaded for this partner; nothing is allowed."


class OperationNotAllowed(Forbidden):
    """*403*: the operation is not listed in the partner's policy."""

    error_code = "operation_not_allowed"
    title = "Operation not allowed"
    description = "The partner's policy does not allow this operation."


class TemplateNotAllowed(Forbidden):
    """*403*: the template alias is not approved in the partner's policy."""

    error_code = "template_not_allowed"
    title = "Template not allowed"
    description = "The template is not approved for this partner."


# 404 / 405 / 409 / 429


class NotFound(GatewayError):
    """*404*: no such route. There is no generic proxy."""

    code = 404
    error_code = "not_found"
    title = "Not found"
    description = "No such endpoint."


class EnvelopeNotFound(NotFound):
    """*404*: unknown envelope, or one that belongs to someone else (existence not disclosed)."""

    error_code = "envelope_not_found"
    title = "Envelope not found"
    description = "No such envelope."


class MethodNotAllowed(GatewayError):
    """*405*: the route exists but not for this method."""

    code = 405
    error_code = "method_not_allowed"
    title = "Method not allowed"
    description = "The method is not allowed for this endpoint."


class IdempotencyConflict(GatewayError):
    """*409*: the Idempotency-Key was already used with a different body."""

    code = 409
    error_code = "idempotency_conflict"
    title = "Idempotency conflict"
    description = "This Idempotency-Key was already used with a different request body."


class IdempotencyInProgress(GatewayError):
    """*409*: a request with this Idempotency-Key is still being processed."""

    code = 409
    error_code = "idempotency_in_progress"
    title = "Request in progress"
    description = "A request with this Idempotency-Key is still in progress; retry shortly."


class EnvelopeNotSignable(GatewayError):
    """*409*: the envelope is completed, declined or voided; no signing session can open."""

    code = 409
    error_code = "envelope_not_signable"
    title = "Envelope not signable"
    description = "The envelope is already completed, declined or voided."


class PayloadTooLarge(GatewayError):
    """*413*: the body exceeds the gateway's limit."""

    code = 413
    error_code = "payload_too_large"
    title = "Payload too large"
    description = "The request body is too large."


class UnsupportedMediaType(GatewayError):
    """*415*: bodies must be JSON."""

    code = 415
    error_code = "unsupported_media_type"
    title = "Unsupported media type"
    description = "The request body must be sent as application/json."


class RateLimited(GatewayError):
    """*429*: the partner's (or the account's) budget is spent for now."""

    code = 429
    error_code = "rate_limited"
    title = "Rate limited"
    description = "Too many requests; retry after the time given in Retry-After."


class AccountBudgetExhausted(RateLimited):
    """*429*: all partners together reached the share of the DocuSign account's hourly limit."""

    error_code = "account_budget_exhausted"
    title = "Account budget exhausted"
    description = "The gateway's share of the DocuSign account's hourly API limit is spent."


# 5xx: upstream and the gateway itself


class RateLimitUnavailable(GatewayError):
    """*503*: the rate-limit store (Redis) cannot be reached: refuse rather than run unlimited."""

    code = 503
    error_code = "rate_limit_unavailable"
    title = "Rate limiting unavailable"
    description = "The gateway cannot count requests right now; retry shortly."


class DatabaseUnavailable(GatewayError):
    """*503*: the database cannot be reached or dropped the connection: retry shortly."""

    code = 503
    error_code = "database_unavailable"
    title = "Database unavailable"
    description = "The gateway cannot reach its database right now; retry shortly."


class PublicUrlNotConfigured(GatewayError):
    """*503*: a signing session needs PUBLIC_URL, and this process was started without one."""

    code = 503
    error_code = "public_url_not_configured"
    title = "Public URL not configured"
    description = "The gateway's public URL is not configured, so it cannot open signing sessions."


class InternalError(GatewayError):
    """*500*: a bug; the details are in the log under the request id, never in the response."""


class UpstreamNotConfigured(GatewayError):
    """*503*: the owner has not configured DocuSign credentials yet."""

    code = 503
    error_code = "upstream_not_configured"
    title = "Upstream not configured"
    description = "The gateway is not connected to DocuSign yet."


class UpstreamConsentRequired(GatewayError):
    """*503*: the system sender has not granted consent to the integration key."""

    code = 503
    error_code = "upstream_consent_required"
    title = "Upstream consent required"
    description = "The account owner must grant consent before the gateway can reach DocuSign."


class UpstreamAuthFailed(GatewayError):
    """*502*: DocuSign refused the gateway's credentials."""

    code = 502
    error_code = "upstream_auth_failed"
    title = "Upstream authentication failed"
    description = "DocuSign refused the gateway's credentials."


class UpstreamUnavailable(GatewayError):
    """*502*: DocuSign failed, dropped the connection or answered nonsense."""

    code = 502
    error_code = "upstream_unavailable"
    title = "Upstream unavailable"
    description = "DocuSign could not be reached or failed; retry later."


class UpstreamRejected(GatewayError):
    """*502*: DocuSign rejected a request the gateway built; the partner cannot fix it."""

    code = 502
    error_code = "upstream_rejected"
    title = "Upstream rejected the request"
    description = "DocuSign rejected the request."


class UpstreamRateLimited(GatewayError):
    """*503*: DocuSign's own limits are reached."""

    code = 503
    error_code = "upstream_rate_limited"
    title = "Upstream rate limited"
    description = "DocuSign's API limits are reached; retry later."


class UpstreamTimeout(GatewayError):
    """*504*: DocuSign did not answer within the gateway's time budget."""

    code = 504
    error_code = "upstream_timeout"
    title = "Upstream timeout"
    description = "DocuSign did not answer in time; retry later."


class CLIError(click.ClickException):
    """One clear line on stderr and exit code 1, for every owner's command."""

    exit_code = 1

    def show(self, file: t.IO[t.Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


_WERKZEUG_MAP: dict[int, type[GatewayError]] = {
    400: MalformedJSON,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
}


def as_gateway_error(exc: HTTPException) -> GatewayError:
    """Turn werkzeug's own errors (routing 404/405, 413, ...) into ours, keeping Allow headers."""
    if isinstance(exc, GatewayError):
        return exc
    cls = _WERKZEUG_MAP.get(exc.code or 500)
    if cls is None:
        err = GatewayError()
        err.code = exc.code or 500
        err.title = exc.name
        err.error_code = exc.name.lower().replace(" ", "_").replace("'", "")
        err.description = exc.description or exc.name
        return err
    err = cls()
    if exc.code == 405:
        allow = dict(exc.get_headers()).get("Allow")
        if allow:
            err.extra_headers["Allow"] = allow
    return err


def render(err: GatewayError) -> Response:
    """The one place a problem+json response is built."""
    body = err.problem()
    state = context.current()
    body["request_id"] = state.request_id or None
    resp = Response(json.dumps(body), status=err.code, headers=err.get_headers())
    state.error_code = err.audit_code or err.error_code
    return resp


def _handle_http(exc: HTTPException) -> Response:
    if isinstance(exc, SecurityError):
        # werkzeug's own TRUSTED_HOSTS check; the host guard (web/proxy.py) normally answers first
        return render(UntrustedHost())
    return render(as_gateway_error(exc))


#: seconds a client is asked to wait when a dependency (database, Redis) is down
DEPENDENCY_RETRY_AFTER = 5


def is_database_outage(exc: BaseException) -> bool:
    """Whether a database error means "cannot talk to the database", not a bug in a query.

    OperationalError is the DBAPI's class for connection refused, server gone, dropped in
    mid-transaction, and (SQLite) a locked or unopenable file; an invalidated connection
    and an exhausted pool mean the same for the request at hand.
    """
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.TimeoutError)) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)


def _handle_database(exc: sa_exc.SQLAlchemyError) -> Response:
    if not is_database_outage(exc):
        return _handle_unexpected(exc)
    cause = getattr(exc, "orig", None) or exc
    # one line per request, no traceback: the outage is the news, not the stack
    log.error("database unavailable: %s", type(cause).__name__,
              extra={"request_id": context.current().request_id})
    return render(DatabaseUnavailable(retry_after=DEPENDENCY_RETRY_AFTER))


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": context.current().request_id})
    return render(InternalError())


def init_app(app: Flask) -> None:
    """Register the single error envelope for every HTTP error and every unexpected one."""
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(sa_exc.SQLAlchemyError, _handle_database)
    app.register_error_handler(Exception, _handle_unexpected)
