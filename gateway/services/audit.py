"""The audit trail: one row per partner-facing request, allowed or not, and the request id.

Operator endpoints (health, metrics, docs, keys, the console's pages, the browser's own
favicon and robots.txt) are not audited, matched by exact path or at a `/` boundary;
everything under `/v1`, the webhooks, and every request that matched no route is. A row
never holds a key, a token or a signer's email: every field passes through the log
redaction, and every path under `/v1/return/` is kept as `/v1/return/<token>`.

Failures of nobody known (no key, an invalid key, no such route) are not a row each: they
are counted per client address, minute and code in `audit_anonymous`, so a flood adds to
a counter (one row lock per address) instead of growing the trail.

Writing a row is one plain INSERT (one round trip on the request's connection, before the
answer leaves), with no lock shared between requests. The rows are chained into the
tamper-evident hash chain afterwards by the fleet's one sealer (`audit_seal.py`).
"""

from __future__ import annotations

import logging
import time
import typing as t

import sqlalchemy as sa
from flask import Response
from flask import request
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from gateway import context
from gateway import errors
from gateway import store
from gateway.observability.logging import redact
from gateway.store import prepared

log = logging.getLogger(__name__)

#: operator endpoints that are not audited: exact paths ...
NOT_AUDITED = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/admin",
                         "/favicon.ico", "/robots.txt"})
#: ... and folders (a prefix only up to a `/`, so `/adminXYZ` or `/metricsfoo` are audited)
NOT_AUDITED_UNDER = ("/.well-known/", "/admin/", "/static/", "/docs/")
#: the answers of nobody known, counted in `audit_anonymous` rather than a row each
ANONYMOUS_CODES = frozenset({"missing_api_key", "invalid_api_key", "not_found",
                             "method_not_allowed", "rate_limited"})
RELAY_PREFIX = "/v1/return/"

#: the hashed fields, in this order (see `audit_seal.row_hash`)
CHAIN_FIELDS = ("at", "request_id", "partner", "operation", "method", "path", "envelope_id",
                "status", "code", "latency_ms", "detail")

_INSERT = prepared.Prepared(store.audit_events.insert().values(
    {name: sa.bindparam(name) for name in CHAIN_FIELDS}))
_anon = store.audit_anonymous


def _anonymous_upsert(dialect: str) -> t.Any:
    """INSERT ... ON CONFLICT DO UPDATE count + 1: one statement, locks one address's row."""
    insert = postgresql.insert(_anon) if dialect == "postgresql" else sqlite.insert(_anon)
    return insert.on_conflict_do_update(
        index_elements=[_anon.c.address, _anon.c.minute, _anon.c.code],
        set_={"count": _anon.c.count + insert.excluded.count,
              "last_path": insert.excluded.last_path})


_UPSERTS = {name: _anonymous_upsert(name) for name in ("postgresql", "sqlite")}


def _fit(value: str | None, column: str, table: sa.Table = store.audit_events) -> str | None:
    """Redact, then cut to the column's length, so what is hashed is exactly what is stored."""
    if value is None:
        return None
    value = redact(value)
    length = getattr(table.c[column].type, "length", None)
    return value[:length] if length else value


def audit_path(path: str) -> str:
    """The path as recorded: a relay path holds a bearer token, so only its route is kept."""
    return RELAY_PREFIX + "<token>" if path.startswith(RELAY_PREFIX) else path


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
    """Insert one audit row, not yet sealed (a statement that is its own transaction)."""
    row = {
        "at": time.time(),
        "request_id": _fit(request_id, "request_id"),
        "partner": _fit(partner, "partner"),
        "operation": _fit(operation, "operation"),
        "method": _fit(method, "method"),
        "path": _fit(audit_path(path) if path is not None else None, "path"),
        "envelope_id": _fit(envelope_id, "envelope_id"),
        "status": status,
        "code": _fit(code, "code"),
        "latency_ms": latency_ms,
        "detail": _fit(detail, "detail"),
    }
    with store.autocommit() as conn:
        _INSERT.write(conn, row)


def count_anonymous(address: str, code: str, path: str, *, now: float | None = None) -> None:
    """Add one to the address's counter for this minute and outcome."""
    now = time.time() if now is None else now
    values = {"address": _fit(address, "address", _anon) or "-", "minute": int(now // 60 * 60),
              "code": _fit(code, "code", _anon), "count": 1,
              "last_path": _fit(audit_path(path), "last_path", _anon)}
    with store.autocommit() as conn:
        conn.execute(_UPSERTS[conn.dialect.name], values)


def audited(path: str) -> bool:
    """False for the operator endpoints (exact paths, or under their folders)."""
    return path not in NOT_AUDITED and not path.startswith(NOT_AUDITED_UNDER)


def is_anonymous_failure(state: context.RequestState) -> bool:
    """A failed request of nobody known: no route matched, or no valid key was shown."""
    if state.partner is not None:
        return False
    return request.url_rule is None or state.error_code in ANONYMOUS_CODES


def record_request(response: Response) -> Response:
    """The audit row (or the anonymous count) of the request being answered."""
    if request.url_rule is not None and not audited(request.path):
        return response
    state = context.current()
    try:
        if is_anonymous_failure(state):
            count_anonymous(request.remote_addr or "-", state.error_code or str(response.status_code),
                            request.path)
            return response
        latency_ms = (time.perf_counter() - state.started) * 1000
        record(
            operation=str(state.operation or request.endpoint or "blocked"),
            partner=state.partner,
            envelope_id=state.envelope_id,
            status=response.status_code,
            code=state.error_code or ("ok" if response.status_code < 400 else None),
            method=request.method,
            path=request.path,
            latency_ms=round(latency_ms, 3),
            request_id=state.request_id,
            detail=state.audit_detail,
        )
    except sa.exc.SQLAlchemyError as exc:
        # an audit write failing must be loud in the logs, but the answer is already decided;
        # a database outage is one line per request (its cause), not a traceback each
        if errors.is_database_outage(exc):
            log.error("audit write failed: database unavailable: %s",
                      type(getattr(exc, "orig", None) or exc).__name__,
                      extra={"request_id": state.request_id})
        else:
            log.exception("audit write failed", extra={"request_id": state.request_id})
    return response


def query(
    conn: sa.Connection, *, partner: str | None = None, since: float | None = None,
    status: str | None = None, limit: int = 1000,
) -> list[dict[str, t.Any]]:
    """Newest-last audit rows, optionally for one partner, after a time, with a status.

    :param status: one status (`401`) or a class of them (`4xx`)
    """
    ev = store.audit_events
    q = sa.select(ev).order_by(ev.c.id.desc()).limit(limit)
    if partner:
        q = q.where(ev.c.partner == partner)
    if since is not None:
        q = q.where(ev.c.at >= since)
    if status and status.endswith("xx"):
        low = int(status[0]) * 100
        q = q.where(ev.c.status >= low, ev.c.status < low + 100)
    elif status:
        q = q.where(ev.c.status == int(status))
    return [dict(r._mapping) for r in reversed(conn.execute(q).all())]


def anonymous(conn: sa.Connection, *, since: float | None = None) -> list[dict[str, t.Any]]:
    """The anonymous failure counts, oldest minute first."""
    q = sa.select(_anon).order_by(_anon.c.minute, _anon.c.address, _anon.c.code)
    if since is not None:
        q = q.where(_anon.c.minute >= int(since // 60 * 60))
    return [dict(r._mapping) for r in conn.execute(q).all()]
