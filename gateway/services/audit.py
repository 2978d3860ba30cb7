"""The audit trail: one row per partner-facing request, allowed or not, and the request id.

Operator endpoints (health, metrics, docs, keys) are not audited; everything under
`/v1`, the webhooks, and every unknown path (a blocked attempt) is. A row never holds
a key, a token or a signer's email: only who, what, which envelope, the outcome code
and the latency.

The trail is tamper-evident: each row carries `prev_hash` (the previous row's hash) and
`row_hash` = HMAC-SHA256(chain key, prev_hash + the row's fields). The chain key is a
random secret kept vault-encrypted in the settings table, so rewriting a row (and every
row after it) needs the master key, not just write access to the database. The chain
head (last id and hash) is a settings row too; every append locks it first (an UPDATE,
a row lock on PostgreSQL, the write lock on SQLite), so concurrent writers on every
worker and instance append one after another, in three statements. `verify` walks the
chain and names the first edited or missing record; deleting the newest rows shows as a
head that points past the last row. (Rolling back the head row together with them can
only be seen against a head exported earlier: `gateway audit --verify` prints it.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Response
from flask import current_app
from flask import request

from gateway import context
from gateway import errors
from gateway import store

log = logging.getLogger(__name__)

NOT_AUDITED = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/.well-known/", "/docs",
               "/admin", "/static/")


CHAIN_KEY_SETTING = "audit_chain_key"
CHAIN_HEAD_SETTING = "audit_chain_head"
GENESIS_HASH = "0" * 64
#: the hashed fields, in this order; `id` is not one (it is assigned by the database)
CHAIN_FIELDS = ("at", "request_id", "partner", "operation", "method", "path", "envelope_id",
                "status", "code", "latency_ms", "detail")

_settings = store.settings
# prebuilt statements with bound parameters: built and cached once, not per request
_LOCK_HEAD = (_settings.update().where(_settings.c.name == CHAIN_HEAD_SETTING)
              .values(updated_at=sa.bindparam("locked_at")).returning(_settings.c.value))
_SET_HEAD = (_settings.update().where(_settings.c.name == CHAIN_HEAD_SETTING)
             .values(value=sa.bindparam("head")))
_INSERT = store.audit_events.insert()


def row_hash(key: bytes, prev_hash: str, row: t.Mapping[str, t.Any]) -> str:
    """HMAC of the previous hash and the row's fields, as JSON (floats round-trip exactly)."""
    canonical = json.dumps([prev_hash, *(row[name] for name in CHAIN_FIELDS)],
                           separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode("ascii"), hashlib.sha256).hexdigest()


def _fit(value: str | None, column: str) -> str | None:
    """Cut a string to its column's length, so what is hashed is exactly what is stored."""
    length = getattr(store.audit_events.c[column].type, "length", None)
    return value[:length] if value is not None and length else value


def _ensure_setting(name: str, value: t.Any, *, secret: bool) -> None:
    """Create a setting unless it exists; the first of several concurrent creators wins.

    An INSERT only, never an update: a second creator must not replace the key the first
    one's rows are already hashed with.
    """
    from gateway.store.vault import get_vault

    text = json.dumps(value)
    if secret:
        text = get_vault().encrypt(text.encode("utf-8"))
    try:
        with store.transaction() as conn:
            conn.execute(store.settings.insert().values(
                name=name, value=text, encrypted=secret, updated_at=time.time()))
    except sa.exc.IntegrityError:
        pass


def ensure_chain() -> None:
    """The chain key and head, created on first use (or by `gateway init`)."""
    _ensure_setting(CHAIN_KEY_SETTING, secrets.token_hex(32), secret=True)
    with store.transaction() as read:
        last = read.execute(sa.select(sa.func.max(store.audit_events.c.id))).scalar()
    # rows written before the chain existed stay outside it; the head says where it starts
    head = {"id": last, "hash": GENESIS_HASH, "start_after": last or 0}
    _ensure_setting(CHAIN_HEAD_SETTING, head, secret=False)


def _chain_key() -> bytes:
    cached = current_app.extensions.get("audit_chain_key")
    if cached is None:
        with store.transaction() as conn:
            value = store.get_setting(conn, CHAIN_KEY_SETTING)
        if value is None:
            ensure_chain()
            return _chain_key()
        cached = current_app.extensions["audit_chain_key"] = bytes.fromhex(value)
    return cached


def _append(row: dict[str, t.Any]) -> bool:
    """Chain and insert one row; False when there is no chain head yet."""
    key = _chain_key()
    with store.transaction() as conn:
        # the lock first: a write, so SQLite takes its write lock before reading anything
        head = conn.execute(_LOCK_HEAD, {"locked_at": row["at"]}).first()
        if head is None:
            return False
        state = json.loads(head.value)
        digest = row_hash(key, state["hash"], row)
        inserted = conn.execute(_INSERT, {**row, "prev_hash": state["hash"], "row_hash": digest}
                                ).inserted_primary_key
        assert inserted is not None
        new_id = inserted[0]
        state.update(id=new_id, hash=digest)
        conn.execute(_SET_HEAD, {"head": json.dumps(state)})
    return True


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
    """Append one audit row to the chain (its own short transaction)."""
    row = {
        "at": time.time(),
        "request_id": _fit(request_id, "request_id"),
        "partner": _fit(partner, "partner"),
        "operation": _fit(operation, "operation"),
        "method": _fit(method, "method"),
        "path": _fit(path, "path"),
        "envelope_id": _fit(envelope_id, "envelope_id"),
        "status": status,
        "code": _fit(code, "code"),
        "latency_ms": latency_ms,
        "detail": detail,
    }
    if not _append(row):
        ensure_chain()
        _append(row)


@dataclass(frozen=True)
class Verdict:
    """What `verify` found: `problem` is None when the chain is intact."""

    checked: int
    head_id: int | None
    head_hash: str
    problem: str | None = None


def verify(conn: sa.Connection) -> Verdict:
    """Walk the chain oldest first; name the first edited or missing record."""
    key_hex = store.get_setting(conn, CHAIN_KEY_SETTING)
    head = store.get_setting(conn, CHAIN_HEAD_SETTING)
    if key_hex is None or not isinstance(head, dict):
        rows = conn.execute(sa.select(sa.func.count()).select_from(store.audit_events)).scalar()
        if not rows:
            return Verdict(0, None, GENESIS_HASH)  # nothing written yet, nothing to check
        return Verdict(0, None, GENESIS_HASH, "the audit chain has not been started (no key or head)")
    key = bytes.fromhex(key_hex)
    ev = store.audit_events.c
    cursor = conn.execution_options(yield_per=1000).execute(
        sa.select(store.audit_events).where(ev.id > head.get("start_after", 0)).order_by(ev.id))
    prev_hash, prev_id, checked = GENESIS_HASH, None, 0
    try:
        for row in cursor:
            found = _check_link(key, row, prev_hash, prev_id)
            if found is not None:
                return Verdict(checked, head["id"], head["hash"], found)
            prev_hash, prev_id, checked = row.row_hash, row.id, checked + 1
    finally:
        cursor.close()  # a server-side cursor on PostgreSQL: do not leave it to the GC
    if (head["id"], head["hash"]) != (prev_id, prev_hash):
        after = f"after record {prev_id}" if prev_id is not None else "from the start"
        return Verdict(checked, head["id"], head["hash"],
                       f"record(s) missing {after}: the chain head names record {head['id']}")
    return Verdict(checked, head["id"], head["hash"])


def _check_link(key: bytes, row: sa.Row[t.Any], prev_hash: str, prev_id: int | None) -> str | None:
    fields = t.cast(t.Mapping[str, t.Any], row._mapping)
    intact = row.row_hash is not None and hmac.compare_digest(
        row_hash(key, row.prev_hash or "", fields), row.row_hash)
    if row.prev_hash == prev_hash:
        return None if intact else f"record {row.id} was edited"
    if intact:
        # the row is as written, but it was chained to a row that is no longer there
        before = f"between record {prev_id} and" if prev_id is not None else "before"
        return f"record(s) missing {before} record {row.id}"
    return f"record {row.id} was edited"


def _audited(path: str) -> bool:
    return not any(path == p or path.startswith(p) for p in NOT_AUDITED)


def record_request(response: Response) -> Response:
    """The audit row of the request being answered (operator endpoints are not audited)."""
    if not _audited(request.path):
        return response
    state = context.current()
    latency_ms = (time.perf_counter() - state.started) * 1000
    operation = state.operation or ("blocked" if request.url_rule is None else request.endpoint)
    try:
        record(
            operation=str(operation),
            partner=state.partner,
            envelope_id=state.envelope_id,
            status=response.status_code,
            code=state.error_code or ("ok" if response.status_code < 400 else None),
            method=request.method,
            # the relay's path holds a bearer token: record the route, not the token
            path=(request.url_rule.rule if request.url_rule is not None
                  and request.endpoint == "return_relay.relay" else request.path),
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
