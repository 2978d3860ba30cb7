"""store/prepared: the hot path's statements on the driver's cursor, same answers and errors."""

from __future__ import annotations

import threading
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import errors
from gateway import store
from gateway.store import prepared

_ROW = sa.select(store.partners.c.id, store.partners.c.name.label("partner"),
                 store.partners.c.revoked_at).where(store.partners.c.name == sa.bindparam("name"))
_INSERT = store.partners.insert().values(name=sa.bindparam("name"), created_at=sa.bindparam("at"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> t.Iterator[sa.Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    engine = store.make_engine(url)
    store.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _autocommit(engine: sa.Engine) -> sa.Connection:
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def test_a_prepared_read_answers_as_sqlalchemy_does(engine: sa.Engine) -> None:
    with _autocommit(engine) as conn:
        prepared.Prepared(_INSERT).write(conn, {"name": "acme", "at": 1.5})
        row = prepared.Prepared(_ROW).first(conn, {"name": "acme"})
        expected = conn.execute(_ROW, {"name": "acme"}).first()
        assert expected is not None and row is not None
        assert tuple(row) == tuple(expected)
        assert (row.partner, row.revoked_at) == ("acme", None)
        assert prepared.Prepared(_ROW).first(conn, {"name": "nobody"}) is None


def test_a_prepared_write_is_committed_at_once(engine: sa.Engine) -> None:
    with _autocommit(engine) as conn:
        prepared.Prepared(_INSERT).write(conn, {"name": "acme", "at": 1.0})
        with engine.connect() as other:  # another connection sees it: nothing left open
            assert other.execute(sa.select(store.partners.c.name)).scalars().all() == ["acme"]


def test_a_prepared_sqlite_write_queues_on_the_process_write_lock(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    store.metadata.create_all(engine)
    done = threading.Event()

    def write() -> None:
        with _autocommit(engine) as conn:
            prepared.Prepared(_INSERT).write(conn, {"name": "acme", "at": 1.0})
        done.set()

    with store.SQLITE_WRITES:
        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)
        assert not done.is_set()  # waits for the holder, like every other SQLite write
    writer.join(5)
    assert done.is_set()


def test_a_dropped_connection_fails_as_sqlalchemy_fails_it(pg_url: str) -> None:
    """The driver's error goes back through SQLAlchemy: wrapped, invalidated, an outage (503)."""
    engine = store.make_engine(pg_url)
    store.metadata.create_all(engine)
    with _autocommit(engine) as conn:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        time.sleep(0.2)
        with pytest.raises(sa.exc.OperationalError) as raised:
            prepared.Prepared(_ROW).first(conn, {"name": "acme"})
        assert raised.value.connection_invalidated
        assert errors.is_database_outage(raised.value)
    with _autocommit(engine) as fresh:  # the pool hands out a working connection again
        assert prepared.Prepared(_ROW).first(fresh, {"name": "acme"}) is None
    engine.dispose()
