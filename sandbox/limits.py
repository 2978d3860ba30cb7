"""Call counting, injected faults, and DocuSign's hourly / burst / polling limits."""

from __future__ import annotations

import functools
import math
import socket
import time
import typing as t
from collections import deque

from flask import current_app
from flask import request
from werkzeug.wrappers import Response

from . import constants as c
from .errors import OAuthError
from .errors import RestError
from .state import Sandbox

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


def get_sandbox() -> Sandbox:
    """The state of the current app."""
    return t.cast(Sandbox, current_app.extensions["sandbox"])


# --- endpoint entry: count, then maybe fault -----------------------------------


def endpoint(name: str) -> t.Callable[[F], F]:
    """Mark a view as the DocuSign endpoint ``name``: count each call, apply faults.

    :param name: one of :data:`sandbox.constants.ENDPOINT_NAMES`
    """
    assert name in c.ENDPOINT_NAMES, name

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            sandbox = get_sandbox()
            with sandbox.lock:
                sandbox.calls[name] += 1
                fault = _take_fault(sandbox, name)
            if fault is not None:
                dropped = _apply_fault(fault, name)
                if dropped is not None:
                    return dropped
            return view(*args, **kwargs)

        return t.cast(F, wrapper)

    return decorator


def _take_fault(sandbox: Sandbox, name: str) -> dict[str, t.Any] | None:
    """Consume one use of the first fault that matches ``name`` (caller holds the lock)."""
    for fault in sandbox.faults:
        if fault["endpoint"] in (None, name):
            fault["remaining"] -= 1
            if fault["remaining"] <= 0:
                sandbox.faults.remove(fault)
            return dict(fault)
    return None


def _apply_fault(fault: dict[str, t.Any], name: str) -> Response | None:
    """Sleep (then go on), drop the connection, or raise the configured error.

    :returns: a placeholder response for a dropped connection, else ``None``
    """
    mode = fault["mode"]
    if mode == "delay":
        time.sleep(fault["delay_ms"] / 1000)
        return None
    if mode == "drop":
        return drop_connection()
    status = fault["status"]
    headers = {}
    if fault.get("retry_after") is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    if name in c.OAUTH_ENDPOINTS:
        error = {429: "too_many_requests", 503: "temporarily_unavailable"}.get(
            status, "server_error" if status >= 500 else "invalid_request"
        )
        raise OAuthError(error, f"sandbox fault: HTTP {status}", status=status, headers=headers)
    code = fault.get("error_code") or {
        429: c.BURST_LIMIT_CODE,
    }.get(status, c.UNSPECIFIED_ERROR_CODE)
    raise RestError(code, f"Sandbox fault injected: HTTP {status}.", status=status, headers=headers)


class ConnectionDropped(ConnectionResetError):
    """Raised when a ``drop`` fault hits a request that has no real socket (test client)."""


def drop_connection() -> Response:
    """Close the client's TCP connection without sending any response.

    Under a real werkzeug server the socket is shut down and a placeholder
    response returned: writing it fails, which werkzeug treats (quietly) as a
    dropped connection. Under the Flask test client there is no socket, so
    :class:`ConnectionDropped` is raised instead.
    """
    sock = request.environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        raise ConnectionDropped("sandbox fault: connection dropped")
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    return Response(b"", status=500)


# --- account-wide limits -----------------------------------------------------


def _hour_start(now: float) -> int:
    return int(now // 3600) * 3600


def _burst_window(sandbox: Sandbox, account_id: str, now: float) -> deque[float]:
    window = sandbox.burst.setdefault(account_id, deque())
    horizon = now - sandbox.config["SANDBOX_BURST_WINDOW"]
    while window and window[0] <= horizon:
        window.popleft()
    return window


def _hourly_used(sandbox: Sandbox, account_id: str, now: float) -> int:
    start, used = sandbox.hourly.get(account_id, (0, 0))
    return used if start == _hour_start(now) else 0


def _retry_after(seconds: float) -> dict[str, str]:
    if not c.RATE_LIMIT_SENDS_RETRY_AFTER:
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


def charge(sandbox: Sandbox, account_id: str) -> None:
    """Count one API call against the account, or raise the limit error.

    Rejected calls are not counted, so a client that backs off recovers.

    :param account_id: the account of the token's user
    """
    with sandbox.lock:
        now = sandbox.now()
        used = _hourly_used(sandbox, account_id, now)
        window = _burst_window(sandbox, account_id, now)
        if used >= sandbox.config["SANDBOX_HOURLY_LIMIT"]:
            raise RestError(
                c.HOURLY_LIMIT_CODE,
                "The maximum number of hourly API invocations has been exceeded.",
                status=c.RATE_LIMIT_STATUS,
                headers=_retry_after(_hour_start(now) + 3600 - now),
            )
        if len(window) >= sandbox.config["SANDBOX_BURST_LIMIT"]:
            raise RestError(
                c.BURST_LIMIT_CODE,
                "The maximum number of burst API invocations has been exceeded.",
                status=c.RATE_LIMIT_STATUS,
                headers=_retry_after(window[0] + sandbox.config["SANDBOX_BURST_WINDOW"] - now),
            )
        sandbox.hourly[account_id] = (_hour_start(now), used + 1)
        window.append(now)


def limit_headers(sandbox: Sandbox, account_id: str) -> dict[str, str]:
    """The five rate-limit headers every REST response carries (docs/docusign-facts.md §8).

    :param account_id: the account whose budget is reported
    """
    with sandbox.lock:
        now = sandbox.now()
        hourly = sandbox.config["SANDBOX_HOURLY_LIMIT"]
        burst = sandbox.config["SANDBOX_BURST_LIMIT"]
        used = _hourly_used(sandbox, account_id, now)
        in_window = len(_burst_window(sandbox, account_id, now))
        return {
            "X-RateLimit-Limit": str(hourly),
            "X-RateLimit-Remaining": str(max(0, hourly - used)),
            "X-RateLimit-Reset": str(_hour_start(now) + 3600),
            "X-BurstLimit-Limit": str(burst),
            "X-BurstLimit-Remaining": str(max(0, burst - in_window)),
        }


# --- per-envelope polling ------------------------------------------------------


def _poll_window(sandbox: Sandbox, envelope_id: str, now: float) -> deque[float]:
    window = sandbox.polls.setdefault(envelope_id, deque())
    horizon = now - sandbox.config["SANDBOX_ENVELOPE_POLL_WINDOW"]
    while window and window[0] <= horizon:
        window.popleft()
    return window


def check_poll(sandbox: Sandbox, envelope_id: str) -> None:
    """Raise the polling-limit error if this envelope was read too often lately.

    :param envelope_id: the envelope about to be read
    """
    with sandbox.lock:
        now = sandbox.now()
        window = _poll_window(sandbox, envelope_id, now)
        if len(window) >= sandbox.config["SANDBOX_ENVELOPE_POLL_LIMIT"]:
            wait = window[0] + sandbox.config["SANDBOX_ENVELOPE_POLL_WINDOW"] - now
            raise RestError(
                c.POLL_LIMIT_CODE,
                "The maximum number of hourly status requests for this envelope has been exceeded.",
                status=c.RATE_LIMIT_STATUS,
                headers=_retry_after(wait),
            )


def record_poll(sandbox: Sandbox, envelope_id: str) -> None:
    """Remember one successful read of the envelope (or its recipients)."""
    with sandbox.lock:
        _poll_window(sandbox, envelope_id, sandbox.now()).append(sandbox.now())
