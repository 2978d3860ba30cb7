"""The mission's floor: the cheapest status read that still does the I/O the mission requires.

Every gateway status read must: check the presented key against the store (so a revoked
key is refused at once), count one exact, fleet-wide rate-limit hit, read the envelope,
and write a durable audit row before the answer leaves. This app does exactly that and
nothing else, in Python, with the raw drivers: one psycopg connection per thread in
autocommit (key row joined to its partner; HMAC-SHA256 of the key compared in constant
time), one EVALSHA of the gateway's own GCRA script with redis-py, the envelope row by id
and partner, one INSERT into `floor_audit` with the columns the gateway fills, then a
small JSON body from `jsonify`.

`floor_audit` is `audit_events`' twin (`CREATE TABLE floor_audit (LIKE audit_events
INCLUDING ALL)`, made by bench/fleet.py in the run's schema): same columns, same indexes,
the same id sequence, so an insert costs what the gateway's costs. It is a table of its
own so that the floor can run beside a serving gateway: the gateway's audit sealer chains
every unsealed row of `audit_events`, and would otherwise chain, and be slowed by, the
floor's rows too.

It is a yardstick, not a gateway. A target the floor itself misses on this machine cannot
be met by any design change within the mission (only by dropping a requirement, or by
leaving Python); and the gateway's own cost is what it spends above the floor.

Served like the bare route (`bench/bare.py`), e.g. `gunicorn -k gthread -w 1 --threads 8
bench.floor:app`, with `FLOOR_DATABASE_URL` (libpq form; a SQLAlchemy `+psycopg` is
stripped; `options=-csearch_path=...` selects the schema holding the gateway's tables
and `floor_audit`) and `FLOOR_REDIS_URL`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import typing as t
import uuid
from datetime import UTC
from datetime import datetime

import psycopg
import redis
from flask import Flask
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue

from gateway.guards.ratelimit import _GCRA_LUA

DATABASE_URL = os.environ.get("FLOOR_DATABASE_URL", "").replace("postgresql+psycopg://", "postgresql://")
#: the floor does not know the gateway's pepper: the HMAC is computed and compared all the
#: same, and its verdict ignored (the cost is the point, not the answer)
PEPPER = b"floor-pepper-not-the-gateway's"
PERIOD_MS, LIMIT = 60000, 100000

KEY_ROW = ("SELECT k.secret_hash, k.expires_at, k.revoked_at, p.id, p.name, p.revoked_at "
           "FROM api_keys k JOIN partners p ON p.id = k.partner_id WHERE k.key_id = %s")
ENVELOPE_ROW = ("SELECT envelope_id, status, signer_status, template_alias, reference, created_at, "
                "updated_at, last_event FROM envelopes WHERE envelope_id = %s AND partner_id = %s")
AUDIT_ROW = ("INSERT INTO floor_audit (at, request_id, partner, operation, method, path, "
             "envelope_id, status, code, latency_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")

app = Flask(__name__)
_local = threading.local()
_redis = redis.Redis.from_url(os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0"))
_gcra = _redis.register_script(_GCRA_LUA.encode("ascii"))


def _conn() -> psycopg.Connection[t.Any]:
    """This thread's connection (gthread's threads live as long as the worker)."""
    conn: psycopg.Connection[t.Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(DATABASE_URL, autocommit=True)
    return conn


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _audit(conn: psycopg.Connection[t.Any], started: float, request_id: str, partner: str,
           envelope_id: str, status: int, code: str | None) -> None:
    conn.execute(AUDIT_ROW, (time.time(), request_id, partner, "status", request.method,
                             request.path, envelope_id, status, code,
                             (time.perf_counter() - started) * 1000))


@app.get("/v1/envelopes/<envelope_id>")
def status(envelope_id: str) -> ResponseReturnValue:
    """Key row + HMAC, one GCRA hit, the envelope row, one audit row, the answer."""
    started = time.perf_counter()
    request_id = uuid.uuid4().hex
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
    parts = presented.split("_")
    if len(parts) != 4:
        return jsonify({"error": {"code": "invalid_api_key"}}), 401
    conn = _conn()
    key = conn.execute(KEY_ROW, (parts[1],)).fetchone()
    digest = hmac.new(PEPPER, presented.encode("ascii", "replace"), hashlib.sha256).hexdigest()
    hmac.compare_digest(digest, key[0] if key is not None else "0" * 64)  # the work, not the verdict
    if key is None:
        return jsonify({"error": {"code": "invalid_api_key"}}), 401
    partner_id, partner = key[3], key[4]
    allowed = _gcra(keys=[f"floor:{partner_id}"], args=[PERIOD_MS, LIMIT])[0]
    if not allowed:
        _audit(conn, started, request_id, partner, envelope_id, 429, "rate_limited")
        return jsonify({"error": {"code": "rate_limited"}}), 429
    row = conn.execute(ENVELOPE_ROW, (envelope_id, partner_id)).fetchone()
    if row is None:
        _audit(conn, started, request_id, partner, envelope_id, 404, "envelope_not_found")
        return jsonify({"error": {"code": "envelope_not_found"}}), 404
    _audit(conn, started, request_id, partner, envelope_id, 200, None)
    return jsonify({"envelope_id": row[0], "status": row[1], "signer_status": row[2],
                    "template": row[3], "reference": row[4], "created_at": _iso(row[5]),
                    "updated_at": _iso(row[6]), "last_event": row[7]})
