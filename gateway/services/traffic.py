"""Partner traffic per hour (requests and errors) over the last days, from the audit trail."""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa

from gateway import store

HOUR = 3600
WEEK_HOURS = 7 * 24


@dataclass(frozen=True)
class HourlyTraffic:
    """One count per UTC hour, oldest first; the last hour is the one `now` falls in."""

    start: float  # the first hour's start, epoch seconds
    requests: tuple[int, ...]
    errors: tuple[int, ...]

    @property
    def hours(self) -> int:
        return len(self.requests)

    @property
    def peak(self) -> int:
        return max(self.requests, default=0)

    @property
    def total(self) -> int:
        return sum(self.requests)

    @property
    def total_errors(self) -> int:
        return sum(self.errors)

    @property
    def top(self) -> int:
        """The y axis' top value (see `axis_max`)."""
        return axis_max(self.peak)

    @property
    def days(self) -> list[tuple[int, str]]:
        return day_marks(self)

    def hour_start(self, index: int) -> float:
        return self.start + index * HOUR

    def hour_label(self, index: int) -> str:
        return time.strftime("%a %d %b %H:00 UTC", time.gmtime(self.hour_start(index)))


def _hour_of(conn: sa.Connection, at: sa.ColumnElement[t.Any]) -> sa.ColumnElement[t.Any]:
    # CAST truncates on SQLite but rounds on PostgreSQL; floor() is not in every SQLite build
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.floor(at / HOUR), sa.BigInteger)
    return sa.cast(at / HOUR, sa.BigInteger)


def hourly(conn: sa.Connection, *, partner: str | None = None, now: float | None = None,
           hours: int = WEEK_HOURS) -> HourlyTraffic:
    """Requests and errors (status >= 400) per hour: one partner's, or every partner's together.

    Counted like the console's partner table: calls a partner made (its name is known),
    not the console's own actions.
    """
    now = time.time() if now is None else now
    first_hour = int(now // HOUR) - hours + 1
    ev = store.audit_events.c
    bucket = _hour_of(conn, ev.at).label("hour")
    query = (sa.select(bucket, sa.func.count().label("requests"),
                       sa.func.sum(sa.case((ev.status >= 400, 1), else_=0)).label("errors"))
             .where(ev.at >= first_hour * HOUR, ev.at < (first_hour + hours) * HOUR,
                    ev.partner.is_not(None), ev.operation.notlike("admin%"))
             .group_by(bucket))
    if partner is not None:
        query = query.where(ev.partner == partner)
    requests = [0] * hours
    errors = [0] * hours
    for row in conn.execute(query):
        index = int(row.hour) - first_hour
        if 0 <= index < hours:
            requests[index] = int(row.requests)
            errors[index] = int(row.errors or 0)
    return HourlyTraffic(start=float(first_hour * HOUR), requests=tuple(requests),
                         errors=tuple(errors))


def axis_max(peak: int) -> int:
    """The chart's top: the smallest 1, 2 or 5 times a power of ten at or above `peak` (min 4)."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= max(peak, 4):
                return top * step
        top *= 10


def day_marks(traffic: HourlyTraffic) -> list[tuple[int, str]]:
    """(hour index, "Mon 30") for every UTC midnight inside the window, for the x axis."""
    marks = []
    for index in range(traffic.hours):
        start = traffic.hour_start(index)
        if start % 86400 == 0:
            marks.append((index, time.strftime("%a %d", time.gmtime(start))))
    return marks
