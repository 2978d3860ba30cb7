"""The audit trail: one row per partner-facing request, allowed or not, and the request id.

Operator endpoints (health, metrics, docs, keys) are not audited; everything under
`/v1`, the webhooks, and every unknown path (a blocked attempt) is. A row never holds
a key, a token or a signer's email: only who, what, which envelope, the outcome code
and the latency.
"""

from __future__ import annotations

import logging
import re
import time
import typing as t
import uuid

import sqlalchemy as sa
from flask import Flask
from flask import Response
from flask import g
from flask import request

from gateway import store

log = logging.getLogger(__name__)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
NOT_AUDITED = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/.well-known/", "/docs",
               "/admin", "/static/")


def _start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


_INSERT = store.audit_events.insert()


def record(
    *,
    operation: str,
    partner: str | None = None,
    envelope_id: str | None = None,
    status: int | None = None,
    code: str | None = None,
    method: str | None = None,
    path: str | None = None,
    latency_ms: float | None = None,
    request_id: str | None = None,
    detail: str | None = None,
) -> None:
    """Append one audit row (its own transaction)."""
    row = {
        "at": time.time(),
        "request_id": request_id,
        "partner": partner,
        "operation": operation,
        "method": method,
        "path": path[:512] if path else path,
        "envelope_id": envelope_id,
        "status": status,
        "code": code,
        "latency_ms": latency_ms,
        "detail": detail,
    }
    with store.transaction() as conn:
        # one prebuilt INSERT with bound parameters: built and cached once, not per request
        conn.execute(_INSERT, row)


def _audited(path: str) -> bool:
    return not any(path == p or path.startswith(p) for p in NOT_AUDITED)


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    if not _audited(request.path):
        return response
    latency_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    operation = g.get("operation") or ("blocked" if request.url_rule is None else request.endpoint)
    try:
        record(
            operation=str(operation),
            partner=g.get("partner"),
            envelope_id=g.get("envelope_id"),
            status=response.status_code,
            code=g.get("error_code") or ("ok" if response.status_code < 400 else None),
            method=request.method,
            path=request.path,
            latency_ms=round(latency_ms, 3),
            request_id=g.get("request_id"),
        )
    except sa.exc.SQLAlchemyError:
        # an audit write failing must be loud in the logs, but the answer is already decided
        log.exception("audit write failed", extra={"request_id": g.get("request_id")})
    return response


def query(
    conn: sa.Connection, *, partner: str | None = None, since: float | None = None,
    limit: int = 1000,
) -> list[dict[str, t.Any]]:
    """Newest-last audit rows, optionally for one partner and after a time."""
    ev = store.audit_events
    q = sa.select(ev).order_by(ev.c.id.desc()).limit(limit)
    if partner:
        q = q.where(ev.c.partner == partner)
    if since is not None:
        q = q.where(ev.c.at >= since)
    return [dict(r._mapping) for r in reversed(conn.execute(q).all())]


def init_app(app: Flask) -> None:
    app.before_request(_start_request)
    app.after_request(_finish_request)
