"""DocuSign's answers read and mapped to the gateway's `Upstream*` errors.

The errors' details never carry an account id, user id, template id, token, assertion
or key: they may reach partners and logs. DocuSign's own messages can quote ids back,
so only its error code is echoed, and only when it is a plain identifier.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
import typing as t

import requests

from gateway import errors
from gateway.upstream.settings import DocuSignSettings
from gateway.upstream.settings import consent_url

# DocuSign error codes are identifiers; anything else is not echoed (it could be text with ids)
_CODE_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


def positive_number(value: t.Any) -> float | None:
    """`value` as a finite number above zero, else None (for headers and expires_in)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def json_object(resp: requests.Response) -> dict[str, t.Any]:
    """The response's JSON object, or UpstreamUnavailable when it is anything else."""
    try:
        body = resp.json()
    except ValueError:
        raise errors.UpstreamUnavailable("DocuSign answered with an unreadable response.") from None
    if not isinstance(body, dict):
        raise errors.UpstreamUnavailable("DocuSign answered with an unexpected response.")
    return body


def error_code(resp: requests.Response) -> str:
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
    # the per-envelope update companion (docs/docusign-facts.md §8) all end this way
    return code.upper().endswith("_LIMIT_EXCEEDED")


def retryable(resp: requests.Response) -> bool:
    """Whether another attempt may get a better answer: rate limits and server errors."""
    status = resp.status_code
    return status == 429 or status >= 500 or (status >= 400 and _is_limit_code(error_code(resp)))


#: how long to wait after DocuSign's per-envelope polling limit (docs/docusign-facts.md §8)
POLLING_LIMIT_WAIT = 900.0


def retry_after(resp: requests.Response) -> float | None:
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
    if "ENVELOPE_POLLING_LIMIT" in error_code(resp).upper():
        # DocuSign sends no Retry-After on its limits (docs/docusign-facts.md §14); the
        # per-envelope polling limit is one poll per 15 minutes (§8)
        return POLLING_LIMIT_WAIT
    # every REST answer carries X-RateLimit-Reset; it only says when to come back when the
    # hourly budget is what ran out (a 5xx or a burst limit would clear much sooner)
    reset = positive_number(resp.headers.get("X-RateLimit-Reset"))
    spent = resp.headers.get("X-RateLimit-Remaining", "").strip() == "0"
    if reset is not None and (spent or error_code(resp).upper().startswith("HOURLY_API")):
        # an epoch timestamp per docs/docusign-facts.md §8; small values can only be a delay
        return max(0.0, reset - time.time()) if reset > 1e9 else reset
    return None


def _retry_after_header(resp: requests.Response) -> int | None:
    wait = retry_after(resp)
    return math.ceil(wait) if wait is not None else None


def rest_error(resp: requests.Response) -> errors.GatewayError:
    """The gateway error for a final DocuSign error response (REST or userinfo)."""
    code = error_code(resp)
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


def token_error(resp: requests.Response, settings: DocuSignSettings) -> errors.GatewayError:
    """The gateway error for a refused JWT grant: consent, credentials, or DocuSign's state."""
    status = resp.status_code
    if status == 429 or status >= 500:
        return rest_error(resp)
    code = error_code(resp)
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
        # invalid_grant's real cause, e.g. no_valid_keys_or_signatures (docs/docusign-facts.md §1)
        reason = f"{code}: {description}"
    err = errors.UpstreamAuthFailed(f"DocuSign refused the gateway's credentials ({reason}).")
    err.upstream_code = reason  # type: ignore[attr-defined]
    return err
