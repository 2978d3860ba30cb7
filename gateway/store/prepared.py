"""Prebuilt statements run on the driver's own cursor: the three of every status read.

SQLAlchemy Core builds them, so they are the same statements on SQLite and PostgreSQL.
Each is compiled once per dialect; running it then skips SQLAlchemy's per-execution work
(an execution context, event dispatch, a result object), paid on every statement. Used
where that adds up: the key lookup, the envelope read and the audit INSERT, which every
partner request makes (`python -m bench.breakdown` times each inside a read).

Nothing else changes for the caller:

- the statement runs on the request's connection, in whatever state it is in;
- a write inside a transaction block goes through SQLAlchemy as usual (its hook starts
  the block's transaction); on SQLite a write queues on the process's write lock
  (`store.SQLITE_WRITES`) like every other;
- on any driver error the statement is run once more through SQLAlchemy, which then
  fails the same way and does what it always does (wraps the error, invalidates a dropped
  connection, so `errors.is_database_outage` and the pool see no difference). Repeating
  a read is harmless, and a write that raised did not happen (an autocommit INSERT on a
  connection that dropped after the server committed it fails again on the dead
  connection before anything is sent).
"""

from __future__ import annotations

import collections
import typing as t

import sqlalchemy as sa

from gateway import store

#: a row of a prepared read: a named tuple whose attributes are the statement's columns
Row = t.Any


class _Compiled(t.NamedTuple):
    sql: str
    #: the bind names in placeholder order (qmark drivers), None for named placeholders
    positions: tuple[str, ...] | None
    row: type | None


class Prepared:
    """One statement, compiled per dialect on first use, executed on the DBAPI cursor."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: sa.Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            built = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            positions = tuple(built.positiontup) if built.positional else None
            names = self.statement.selected_columns.keys() \
                if isinstance(self.statement, sa.Select) else None
            row_type = collections.namedtuple("Row", names) if names else None  # type: ignore[misc]
            compiled = self._compiled[dialect.name] = _Compiled(built.string, positions, row_type)
        return compiled

    def _run(self, conn: sa.Connection, params: t.Mapping[str, t.Any]) -> t.Any:
        compiled = self._for(conn.dialect)
        args: t.Any = params if compiled.positions is None else \
            tuple(params[name] for name in compiled.positions)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, args)
        except conn.dialect.loaded_dbapi.Error:
            cursor.close()
            return None
        return cursor

    def first(self, conn: sa.Connection, params: t.Mapping[str, t.Any]) -> Row | None:
        """The first row (a named tuple), or None."""
        cursor = self._run(conn, params)
        if cursor is None:
            return conn.execute(self.statement, params).first()
        try:
            values = cursor.fetchone()
        finally:
            cursor.close()
        row_type = self._for(conn.dialect).row
        return None if values is None else row_type._make(values)  # type: ignore[union-attr]

    def write(self, conn: sa.Connection, params: t.Mapping[str, t.Any]) -> None:
        """Run a write that is its own transaction (an autocommit connection, no block)."""
        if conn.info.get("block"):
            conn.execute(self.statement, params)
            return
        if conn.dialect.name == "sqlite":
            with store.SQLITE_WRITES:
                cursor = self._run(conn, params)
        else:
            cursor = self._run(conn, params)
        if cursor is None:
            conn.execute(self.statement, params)
            return
        cursor.close()
