"""The gateway's own database: one engine per app, a connection per request, settings rows.

SQLite in the instance folder by default, PostgreSQL through `DATABASE_URL`, with the
same code. The tables and the schema version are in `tables.py` (re-exported here, so
callers write `store.envelopes`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask import current_app
from flask import g
from flask import has_request_context

from gateway.store.tables import MIGRATIONS as MIGRATIONS
from gateway.store.tables import SCHEMA_VERSION as SCHEMA_VERSION
from gateway.store.tables import admin_sessions as admin_sessions
from gateway.store.tables import admins as admins
from gateway.store.tables import api_keys as api_keys
from gateway.store.tables import audit_anonymous as audit_anonymous
from gateway.store.tables import audit_events as audit_events
from gateway.store.tables import envelope_upstream as envelope_upstream
from gateway.store.tables import envelopes as envelopes
from gateway.store.tables import idempotency as idempotency
from gateway.store.tables import meta as meta
from gateway.store.tables import metadata as metadata
from gateway.store.tables import partners as partners
from gateway.store.tables import settings as settings
from gateway.store.tables import used_tokens as used_tokens
from gateway.store.tables import webhook_events as webhook_events


class SchemaMismatch(Exception):
    """The database was created by another version of the gateway, or not at all."""


def database_url(app: Flask) -> str:
    url = app.config.get("DATABASE_URL") or ""
    if url:
        if url.startswith("postgres://") or url.startswith("postgresql://"):
            # the psycopg 3 driver is the one installed
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    return "sqlite:///" + os.path.join(app.instance_path, "gateway.db")


def make_engine(url: str) -> sa.Engine:
    """The app's engine: no pre-ping round trip per checkout (see `_on_dropped_connection`)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: t.Any, _record: t.Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        # connections older than `pool_recycle` are replaced at checkout (servers and
        # proxies drop idle ones); a connection dropped sooner fails one statement, and
        # SQLAlchemy then invalidates the pool so the next checkout gets a fresh one
        engine = sa.create_engine(url, pool_size=5, max_overflow=10, pool_recycle=300)
    sa.event.listen(engine, "before_cursor_execute", _begin_before_first_write)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "after_cursor_execute", _after_write)
        sa.event.listen(engine, "handle_error", lambda _ctx: _after_write())
    return engine


def get_engine() -> sa.Engine:
    return current_app.extensions["store"]


# --- one connection per request -------------------------------------------------------------
#
# Inside a request every `transaction()` block shares the request's one connection, kept in
# autocommit mode: a read is one round trip, with no BEGIN and COMMIT around it (under READ
# COMMITTED each statement saw its own snapshot anyway). A block that writes opens a real
# transaction just before its first write and commits it when the block ends, so a
# multi-statement write stays atomic and no lock is held past its block (never across a
# DocuSign call). A status read is then: key lookup, envelope read, audit INSERT: three
# round trips, one transaction (the INSERT's own).

_READ_PREFIXES = ("SELECT", "WITH", "PRAGMA", "SHOW", "BEGIN", "COMMIT", "ROLLBACK")
#: SQLite has one writer at a time; its busy handler makes waiting writers sleep and retry,
#: which under threads becomes a convoy (p99 in the hundreds of ms). A request's writes take
#: this lock first, so the threads of a process queue here and hand over at once.
SQLITE_WRITES = threading.RLock()


def _begin_before_first_write(conn: sa.Connection, cursor: t.Any, statement: str, *_: t.Any) -> None:
    """Start the block's transaction before its first write (request connections only)."""
    info = conn.info
    if not has_request_context() or g.get("_store_conn") is not conn \
            or statement.lstrip().upper().startswith(_READ_PREFIXES):
        return
    if conn.dialect.name == "sqlite" and not g.get("_store_write_locked"):
        SQLITE_WRITES.acquire()
        g._store_write_locked = True
        # a single autocommitted statement releases it as soon as it ran
        g._store_write_release_after = not info.get("block")
    if info.get("block") and not info.get("began"):
        cursor.execute("BEGIN")
        info["began"] = True


def _after_write(*_: t.Any) -> None:
    if has_request_context() and g.pop("_store_write_release_after", False):
        _release_write_lock()


def _release_write_lock() -> None:
    if g.pop("_store_write_locked", False):
        SQLITE_WRITES.release()


def _request_connection() -> sa.Connection | None:
    """The request's connection (opened on first use), None outside a request."""
    if not has_request_context():
        return None
    conn: sa.Connection | None = g.get("_store_conn")
    if conn is None:
        conn = get_engine().connect().execution_options(isolation_level="AUTOCOMMIT")
        g._store_conn = conn
    return conn


def _end_block(conn: sa.Connection, ok: bool) -> None:
    began = conn.info.pop("began", False)
    conn.info["block"] = False
    try:
        if began:
            conn.exec_driver_sql("COMMIT" if ok else "ROLLBACK")
    finally:
        _release_write_lock()


@contextlib.contextmanager
def transaction() -> t.Iterator[sa.Connection]:
    """A connection inside one transaction: committed on success, rolled back on error.

    Outside a request (the CLI, background threads) a pooled connection in its own
    transaction. Inside one, the request's connection; the transaction starts at the
    block's first write. Blocks nest: an inner block is part of the outer one.
    """
    conn = _request_connection()
    if conn is None:
        with get_engine().begin() as own:
            yield own
        return
    if conn.info.get("block"):
        yield conn
        return
    conn.info["block"] = True
    try:
        yield conn
    except BaseException:
        if not conn.invalidated:
            _end_block(conn, ok=False)
        else:  # dropped (its info went with it): the next block checks out a fresh one
            g.pop("_store_conn", None)
            _release_write_lock()
            conn.close()
        raise
    _end_block(conn, ok=True)


@contextlib.contextmanager
def autocommit() -> t.Iterator[sa.Connection]:
    """A connection for one statement that is its own transaction (the audit INSERT).

    Inside a request, the request's connection as it is: one round trip, no BEGIN or
    COMMIT. Outside, a short transaction of its own.
    """
    conn = _request_connection()
    if conn is None or conn.info.get("block"):
        with transaction() as own:
            yield own
        return
    try:
        yield conn
    finally:
        if conn.invalidated:
            g.pop("_store_conn", None)


def _close_request_connection(_exc: BaseException | None) -> None:
    conn = g.pop("_store_conn", None)
    if conn is None:
        _release_write_lock()
        return
    if not conn.invalidated:
        if conn.info.get("began"):  # a block left open by an exception mid-teardown
            _end_block(conn, ok=False)
        conn.info.pop("block", None)
    _release_write_lock()
    conn.close()


def init_db(engine: sa.Engine) -> bool:
    """Create missing tables and record the schema version; True when it created the schema."""
    with engine.begin() as conn:
        existing = sa.inspect(conn).has_table("meta")
        if existing:
            _migrate(conn)
            check_schema(conn)
        metadata.create_all(conn)
        if not existing:
            conn.execute(meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))
    return not existing


def _migrate(conn: sa.Connection) -> None:
    """Bring an older schema up to SCHEMA_VERSION, one version at a time."""
    row = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).first()
    version = int(row[0]) if row is not None else SCHEMA_VERSION
    while version < SCHEMA_VERSION:
        for statement in MIGRATIONS[version]:
            conn.execute(sa.text(statement))
        version += 1
        conn.execute(meta.update().where(meta.c.name == "schema_version")
                     .values(value=str(version)))


def check_schema(conn: sa.Connection) -> None:
    """Refuse a database of another schema version."""
    try:
        row = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).first()
    except sa.exc.DBAPIError:
        raise SchemaMismatch("the database is not initialised; run `gateway init`") from None
    if row is None:
        raise SchemaMismatch("the database is not initialised; run `gateway init`")
    if int(row[0]) < SCHEMA_VERSION:
        raise SchemaMismatch(f"the database has schema version {row[0]}; run `gateway init` "
                             f"to upgrade it to {SCHEMA_VERSION}")
    if int(row[0]) != SCHEMA_VERSION:
        raise SchemaMismatch(
            f"the database has schema version {row[0]}, this gateway needs {SCHEMA_VERSION}"
        )


def put_setting(conn: sa.Connection, name: str, value: t.Any, *, secret: bool, now: float) -> None:
    """Store a JSON-serialisable setting, vault-encrypted when `secret`."""
    from gateway.store.vault import get_vault

    text = json.dumps(value)
    if secret:
        text = get_vault().encrypt(text.encode("utf-8"))
    row = {"value": text, "encrypted": secret, "updated_at": now}
    updated = conn.execute(settings.update().where(settings.c.name == name).values(**row))
    if updated.rowcount == 0:
        conn.execute(settings.insert().values(name=name, **row))


def get_setting(conn: sa.Connection, name: str) -> t.Any:
    """The decoded (and decrypted) setting, None when unset."""
    from gateway.store.vault import get_vault

    row = conn.execute(
        sa.select(settings.c.value, settings.c.encrypted).where(settings.c.name == name)
    ).first()
    if row is None:
        return None
    text = get_vault().decrypt(row.value).decode("utf-8") if row.encrypted else row.value
    return json.loads(text)


def trace_round_trips(engine: sa.Engine, folder: str) -> None:
    """Bench mode (`DB_TRACE_DIR`): libpq's protocol trace of every new PostgreSQL connection,
    one file per connection in `folder`; each `ReadyForQuery` the server sends ends one round
    trip. Slow: for counting, never for timing."""
    if engine.dialect.name != "postgresql":
        return

    @sa.event.listens_for(engine, "connect")
    def _trace(dbapi_conn: t.Any, _record: t.Any) -> None:
        from psycopg import pq

        sink = open(os.path.join(folder, f"pg-{os.getpid()}-{id(dbapi_conn)}.trace"), "w")  # noqa: SIM115
        dbapi_conn.pgconn.trace(sink.fileno())
        dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        sink_of[id(dbapi_conn)] = sink  # kept open as long as the connection

    sink_of: dict[int, t.IO[str]] = {}

    @sa.event.listens_for(engine, "close")
    def _untrace(dbapi_conn: t.Any, _record: t.Any) -> None:
        sink = sink_of.pop(id(dbapi_conn), None)
        if sink is not None:
            dbapi_conn.pgconn.untrace()
            sink.close()


def init_app(app: Flask) -> None:
    """One engine per app, disposed of with the process; a request's connection ends with it."""
    engine = app.extensions["store"] = make_engine(database_url(app))
    if app.config.get("DB_TRACE_DIR"):
        trace_round_trips(engine, app.config["DB_TRACE_DIR"])
    app.teardown_request(_close_request_connection)
