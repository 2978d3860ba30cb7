"""The current request as the metrics and the access log label it: partner, operation, time."""

from __future__ import annotations

import time

from flask import g
from flask import request


def request_labels() -> tuple[str, str]:
    """(partner, operation) of the request being answered; partner is "" until authenticated."""
    operation = g.get("operation") or request.endpoint or "unmatched"
    return str(g.get("partner") or ""), str(operation)


def elapsed_seconds() -> float:
    """Seconds since the request started (`audit` stamps `g.started` before anything else)."""
    started = g.get("started") or time.perf_counter()
    return time.perf_counter() - started
