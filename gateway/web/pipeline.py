"""What happens around every view, in one visible order.

Before the view: stamp the request id and the start time (`context.current()`).
After the view, in this order:

1. the anonymous limit: a failure of nobody known (no key, a bad key, no such route)
   counts against its client address, and becomes a 429 over the limit
   (`guards.ratelimit.anonymous_gate`);
2. headers: `X-Request-ID`; the partner's RateLimit headers from its own hit;
   `Retry-After` only where it belongs (the rate limiter's own refusal, or the
   Retry-After the error was raised with);
3. metrics (`observability.metrics.observe`);
4. the access log line (`observability.logging.access_log`);
5. the audit row, or the anonymous count (`services.audit.record_request`).

The browser's own `/favicon.ico` and `/robots.txt` are answered here too, unaudited.

flask-limiter injects its RateLimit headers in an after-request hook of its own; this
pipeline is registered before the limiter (`init_app` refuses otherwise), and Flask runs
after-request hooks in reverse order, so the pipeline sees the limiter's headers.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask
from flask import Response
from flask import request

from gateway import context
from gateway import errors
from gateway.guards import ratelimit
from gateway.observability import metrics
from gateway.observability.logging import access_log
from gateway.services import audit

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def start() -> None:
    """The request's id (the caller's X-Request-ID when it is safe to echo) and start time."""
    incoming = request.headers.get("X-Request-ID", "")
    context.current().request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


def set_headers(response: Response) -> Response:
    """X-Request-ID always; Retry-After only on the limiter's refusal or the error's own.

    flask-limiter puts its window's reset in Retry-After on every response (the later of
    it and any Retry-After already there). A success carries none, and any other error
    keeps the one it was raised with (DocuSign's hint, the idempotency lease, the account
    budget's hour).
    """
    state = context.current()
    response.headers["X-Request-ID"] = state.request_id
    if response.status_code < 400:
        response.headers.pop("Retry-After", None)
    elif state.error_code != errors.RateLimited.error_code:
        if state.retry_after is None:
            response.headers.pop("Retry-After", None)
        else:
            response.headers["Retry-After"] = state.retry_after
    return response


def finish(response: Response) -> Response:
    """The after-request steps, in their order."""
    response = ratelimit.anonymous_gate(response)
    response = set_headers(response)
    response = ratelimit.rate_limit_headers(response)
    response = metrics.observe(response)
    response = access_log(response)
    return audit.record_request(response)


ROBOTS_TXT = "User-agent: *\nDisallow: /\n"


def favicon() -> Response:
    """No icon: 204, so browsers stop asking, and no audit row (an operator path)."""
    return Response(status=204)


def robots() -> Response:
    """Nothing here is for crawlers."""
    return Response(ROBOTS_TXT, mimetype="text/plain")


def init_app(app: Flask) -> None:
    """Register the pipeline; must come before the rate limiter's own header hook."""
    if "limiter" in app.extensions:
        raise RuntimeError("register the request pipeline before the rate limiter")
    app.before_request(start)
    app.after_request(finish)
    app.add_url_rule("/favicon.ico", "favicon", favicon, methods=["GET"])
    app.add_url_rule("/robots.txt", "robots", robots, methods=["GET"])
