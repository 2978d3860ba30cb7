"""What happens around every view, in one visible order.

Before the view: stamp the request id and the start time (`context.current()`).
After the view, in this order:

1. the anonymous limit: a failure of nobody known (no key, a bad key, no such route)
   counts against its client address, and becomes a 429 over the limit
   (`guards.ratelimit.anonymous_gate`);
2. headers: `X-Request-ID`; the RateLimit headers from the request's own hit (an
   error's `Retry-After` is rendered with the error, `gateway/errors.py`);
3. metrics (`observability.metrics.observe`);
4. the access log line (`observability.logging.access_log`);
5. the audit row, or the anonymous count (`services.audit.record_request`).

The browser's own `/favicon.ico` and `/robots.txt` are answered here too, unaudited.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask
from flask import Response
from flask import request

from gateway import context
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
    """X-Request-ID on every answer, the caller's own when it was safe to echo."""
    response.headers["X-Request-ID"] = context.current().request_id
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
    """Register the pipeline's before- and after-request steps and its two unaudited routes."""
    app.before_request(start)
    app.after_request(finish)
    app.add_url_rule("/favicon.ico", "favicon", favicon, methods=["GET"])
    app.add_url_rule("/robots.txt", "robots", robots, methods=["GET"])
