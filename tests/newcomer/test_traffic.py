"""The console's traffic chart: hourly requests and errors per partner (gateway.services.traffic)."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from gateway.services import traffic
from tests.conftest import make_gateway
from tests.services.conftest import pg_url  # noqa: F401 - the fixture, for the PostgreSQL run

HOUR = 3600
# Tuesday 1 December 2026, 15:20:00 UTC: the window's last hour starts at 15:00
NOW = 1796138400.0


def _rows(app: t.Any, rows: list[tuple[float, str | None, str, int]]) -> None:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        conn.execute(store.audit_events.insert(), [
            {"at": at, "partner": partner, "operation": op, "status": status}
            for at, partner, op, status in rows])


def _hourly(app: t.Any, **kwargs: t.Any) -> traffic.HourlyTraffic:
    from gateway import store

    with app.app_context(), store.transaction() as conn:
        return traffic.hourly(conn, now=NOW, **kwargs)


SAMPLE = [
    (NOW, "example", "status", 200),                     # this hour
    (NOW - 20 * 60, "example", "create_draft", 201),     # 15:00:00 exactly: still this hour
    (NOW - 20 * 60 - 1, "example", "status", 401),       # 14:59:59: the hour before
    (NOW - 3 * HOUR, "other", "status", 503),
    (NOW - 3 * HOUR, "example", "admin_revoke", 200),    # the console's own action: not traffic
    (NOW - 2 * HOUR, None, "unknown_path", 404),         # no partner known: not a partner's call
    (NOW - 167 * HOUR, "example", "status", 429),        # the window's first hour
    (NOW - 168 * HOUR, "example", "status", 200),        # eight days ago minus a bit: outside
    (NOW + HOUR, "example", "status", 200),              # a clock ahead: outside
]


def _check(app: t.Any) -> None:
    _rows(app, SAMPLE)
    week = _hourly(app, partner="example")
    assert week.hours == 168
    assert week.start == (NOW // HOUR - 167) * HOUR
    assert week.requests[-1] == 2 and week.errors[-1] == 0
    assert week.requests[-2] == 1 and week.errors[-2] == 1
    assert week.requests[0] == 1 and week.errors[0] == 1
    assert week.total == 4 and week.total_errors == 2
    everyone = _hourly(app)
    assert everyone.total == 5 and everyone.requests[-4] == 1 and everyone.errors[-4] == 1
    assert _hourly(app, partner="nobody").total == 0
    day = _hourly(app, partner="example", hours=24)
    assert day.hours == 24 and day.total == 3


def test_hourly_counts_on_sqlite(tmp_path: Path) -> None:
    _check(make_gateway(tmp_path, None, None))


@pytest.mark.services
def test_hourly_counts_on_postgresql(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    from gateway import store

    app = make_gateway(tmp_path, None, None, DATABASE_URL=pg_url)
    try:
        _check(app)
    finally:
        with app.app_context():
            store.get_engine().dispose()


def test_axis_and_day_marks() -> None:
    assert [traffic.axis_max(n) for n in (0, 3, 4, 7, 10, 11, 20, 21, 51, 999)] == \
        [5, 5, 5, 10, 10, 20, 20, 50, 100, 1000]
    week = traffic.HourlyTraffic(start=(NOW // HOUR - 167) * HOUR, requests=(0,) * 168, errors=(0,) * 168)
    marks = week.days
    assert len(marks) == 7  # seven UTC midnights in 168 hours that do not start at midnight
    assert marks[-1] == (167 - 15, "Tue 01")
    assert all(week.hour_start(i) % 86400 == 0 for i, _ in marks)
