"""The current request as the metrics and the access log label it: partner, operation, time."""

from __future__ import annotations

import time

from flask import request

from gateway import context


def request_labels() -> tuple[str, str]:
    """(partner, operation) of the request being answered; partner is "" until authenticated."""
    state = context.current()
    operation = state.operation or request.endpoint or "unmatched"
    return str(state.partner or ""), str(operation)


def elapsed_seconds() -> float:
    """Seconds since the request started (the pipeline stamps it before anything else)."""
    return time.perf_counter() - context.current().started
