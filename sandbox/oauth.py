"""The account server: JWT grant, userinfo and the consent page (docs/docusign-facts.md §1-2)."""

from __future__ import annotations

import base64
import binascii
import secrets
import typing as t
from urllib.parse import urlencode
from urllib.parse import urlsplit

import jwt
from flask import Blueprint
from flask import Flask
from flask import jsonify
from flask import render_template
from flask import request
from werkzeug.wrappers import Response

from . import constants as c
from .errors import OAuthError
from .errors import PageError
from .errors import invalid_grant
from .limits import endpoint
from .limits import get_sandbox
from .rest import base_uri
from .state import Sandbox
from .state import format_datetime

bp = Blueprint("oauth", __name__, url_prefix="/oauth")

NO_VALID_KEYS = "no_valid_keys_or_signatures"

# every check PyJWT would do by itself is off: the emulator checks each claim
# against its own clock and answers with DocuSign's specific reason
_SIGNATURE_ONLY = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


def _number(value: t.Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _canonical_segments(assertion: str) -> bool:
    """Three base64url segments, each in its one canonical (re-encodable) form.

    Base64 decoders ignore the spare bits of the last character, so without this
    check a changed character could still carry the same signature.
    """
    segments = assertion.split(".")
    if len(segments) != 3:
        return False
    for segment in segments:
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (ValueError, binascii.Error):
            return False
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
            return False
    return True


def verify_assertion(sandbox: Sandbox, assertion: str) -> dict[str, t.Any]:
    """Check a JWT-grant assertion the way DocuSign does; return its claims.

    :param assertion: the compact JWT from the ``assertion`` form field
    :raises OAuthError: ``invalid_grant`` with the reason in ``error_description``,
        ``invalid_scope`` or ``consent_required``
    """
    if not _canonical_segments(assertion):
        raise invalid_grant(NO_VALID_KEYS)
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid_grant(NO_VALID_KEYS) from None
    if header.get("alg") != c.JWT_ALGORITHM:
        raise invalid_grant(NO_VALID_KEYS)
    issuer = unverified.get("iss")
    with sandbox.lock:
        integration = sandbox.integration_keys.get(issuer) if isinstance(issuer, str) else None
        if integration is None:
            raise invalid_grant("issuer_not_found")
        keys = [entry["key"] for entry in integration["keys"].values()]
    claims = None
    for key in keys:
        try:
            claims = jwt.decode(assertion, key, algorithms=[c.JWT_ALGORITHM], options=_SIGNATURE_ONLY)
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            raise invalid_grant(NO_VALID_KEYS) from None
    if claims is None:
        raise invalid_grant(NO_VALID_KEYS)
    if claims.get("aud") != sandbox.config["SANDBOX_AUDIENCE"]:
        raise invalid_grant(NO_VALID_KEYS)
    now = sandbox.now()
    exp = claims.get("exp")
    if not _number(exp):
        raise invalid_grant(NO_VALID_KEYS)
    if exp <= now - c.CLOCK_SKEW_LEEWAY:
        raise invalid_grant("expired_grant")
    nbf = claims.get("nbf")
    if nbf is not None and (not _number(nbf) or nbf > now + c.CLOCK_SKEW_LEEWAY):
        raise invalid_grant(NO_VALID_KEYS)
    if exp - now > c.MAX_ASSERTION_LIFETIME:
        raise invalid_grant(c.ASSERTION_TOO_LONG_DESCRIPTION)
    subject = claims.get("sub")
    with sandbox.lock:
        if not isinstance(subject, str) or subject not in sandbox.users:
            raise invalid_grant("user_not_found")
        scope = claims.get("scope")
        scopes = scope.split() if isinstance(scope, str) else []
        if not all(required in scopes for required in c.REQUIRED_SCOPES):
            raise OAuthError(
                c.SCOPE_MISSING_ERROR,
                "The scope must include: " + " ".join(c.REQUIRED_SCOPES) + ".",
            )
        if (issuer, subject) not in sandbox.consents:
            raise OAuthError("consent_required", "consent_required")
    return claims


@bp.post("/token")
@endpoint("token")
def token() -> Response:
    """``POST /oauth/token`` with the JWT-bearer grant; answers an opaque access token."""
    sandbox = get_sandbox()
    grant_type = request.form.get("grant_type")
    assertion = request.form.get("assertion")
    if not grant_type:
        raise OAuthError(c.MISSING_PARAMETER_ERROR, "grant_type is required.")
    if grant_type != c.JWT_BEARER_GRANT_TYPE:
        raise OAuthError("unsupported_grant_type", "The grant type is not supported.")
    if not assertion:
        raise OAuthError(c.MISSING_PARAMETER_ERROR, "assertion is required.")
    claims = verify_assertion(sandbox, assertion)
    ttl = sandbox.config["SANDBOX_TOKEN_TTL"]
    access_token = secrets.token_urlsafe(48)
    with sandbox.lock:
        sandbox.tokens[access_token] = {
            "user_id": claims["sub"],
            "integration_key": claims["iss"],
            "expires": sandbox.now() + ttl,
        }
    resp = jsonify({"access_token": access_token, "token_type": "Bearer", "expires_in": ttl})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/userinfo")
@endpoint("userinfo")
def userinfo() -> Response:
    """``GET /oauth/userinfo``: the token user and its account with ``base_uri`` (§2)."""
    sandbox = get_sandbox()
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    with sandbox.lock:
        record = sandbox.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if record is None or record["expires"] <= sandbox.now():
            raise OAuthError(
                c.USERINFO_AUTH_ERROR,
                "The access token is missing, expired or unknown.",
                status=c.USERINFO_AUTH_ERROR_STATUS,
            )
        user = sandbox.users[record["user_id"]]
        account = sandbox.accounts[user["account_id"]]
    base = base_uri()
    return jsonify(
        {
            "sub": user["user_id"],
            "name": user["name"],
            "given_name": user["given_name"],
            "family_name": user["family_name"],
            "created": format_datetime(user["created"]),
            "email": user["email"],
            "accounts": [
                {
                    "account_id": account["account_id"],
                    "is_default": c.USERINFO_IS_DEFAULT,
                    "account_name": account["account_name"],
                    "base_uri": base,
                    "organization": {
                        "organization_id": account["organization_id"],
                        "links": [
                            {
                                "rel": "self",
                                "href": f"{base}/organizations/{account['organization_id']}",
                            }
                        ],
                    },
                }
            ],
        }
    )


def _consent_request(sandbox: Sandbox, args: t.Mapping[str, str]) -> dict[str, str]:
    """Validate the consent URL's query (§1 "Individual consent URL")."""
    if args.get("response_type") != "code":
        raise PageError("response_type must be 'code'.")
    client_id = args.get("client_id", "")
    if client_id not in sandbox.integration_keys:
        raise PageError("Unknown client_id (integration key).")
    scopes = args.get("scope", "").replace("+", " ").split()
    if not all(required in scopes for required in c.REQUIRED_SCOPES):
        raise PageError("scope must include 'signature impersonation'.")
    redirect_uri = args.get("redirect_uri", "")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PageError("redirect_uri must be an absolute http(s) URL.")
    return {
        "client_id": client_id,
        "scope": " ".join(scopes),
        "redirect_uri": redirect_uri,
        "state": args.get("state", ""),
    }


@bp.route("/auth", methods=["GET", "POST"])
def consent() -> Response | str:
    """A tiny consent page: "Allow" grants consent for the demo user (the one signed in)."""
    sandbox = get_sandbox()
    req = _consent_request(sandbox, request.args)
    if request.method == "GET":
        return render_template("consent.html", req=req, user=sandbox.users[c.DEMO_USER_ID])
    allowed = request.form.get("decision") == "allow"
    if allowed:
        with sandbox.lock:
            sandbox.consents.add((req["client_id"], c.DEMO_USER_ID))
        query = {"code": secrets.token_urlsafe(16)}
    else:
        query = {"error": "access_denied"}
    if req["state"]:
        query["state"] = req["state"]
    sep = "&" if urlsplit(req["redirect_uri"]).query else "?"
    return render_template(
        "consent_done.html",
        allowed=allowed,
        next_url=req["redirect_uri"] + sep + urlencode(query),
    )


def init_app(app: Flask) -> None:
    """Register the account-server blueprint."""
    app.register_blueprint(bp)
