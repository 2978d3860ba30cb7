"""HTTP to DocuSign: one attempt within a time budget, retries with backoff, failure kinds.

Idempotent calls (token, userinfo, GET envelope) are retried with full-jitter backoff on
connection errors, 5xx and rate limits; calls that change state (create, send, recipient
view) are not, because a retry after DocuSign acted would double the action. A request
that provably never left (refused connection, connect timeout) may go again, whatever it does.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import typing as t
from collections.abc import Mapping

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from gateway import errors
from gateway.upstream.errors import error_code
from gateway.upstream.errors import retry_after
from gateway.upstream.errors import retryable

log = logging.getLogger(__name__)

# retries: attempts per call (first one included), full-jitter backoff base and cap
MAX_ATTEMPTS = 4
BACKOFF_BASE = 0.25
BACKOFF_CAP = 4.0
# a retry is pointless when less than this is left of the budget to make the call
MIN_ATTEMPT_SECONDS = 0.1

#: admission hook, called before each REST attempt (retries too); raises to refuse it
BeforeCall = t.Callable[[str], None]
#: metrics hook, called once per HTTP attempt with the endpoint, status (or failure kind), seconds
OnCall = t.Callable[[str, "int | str", float], None]


class TransportFailure(Exception):
    """No HTTP answer: `kind` is "timeout" or "connection"; `sent` False when provably unsent."""

    def __init__(self, kind: str, *, sent: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.sent = sent

    def as_error(self) -> errors.GatewayError:
        """The gateway error a caller sees when no attempt got an answer."""
        if self.kind == "timeout":
            return errors.UpstreamTimeout()
        return errors.UpstreamUnavailable()


def default_session() -> requests.Session:
    """A session sized for every worker thread of the process sharing it."""
    http = requests.Session()
    # every worker thread shares this session; size the pool so none throws connections away
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32)
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    return http


def classify(exc: requests.RequestException) -> TransportFailure:
    """What kind of failure a requests exception is, and whether the request may have left."""
    reason = getattr(exc.args[0], "reason", exc.args[0]) if exc.args else None
    # refused / unresolvable: the request never left, so DocuSign cannot have acted on it
    # (checked first: urllib3's NewConnectionError is also a ConnectTimeoutError)
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return TransportFailure("connection", sent=False)
    if isinstance(exc, requests.ConnectTimeout):
        return TransportFailure("timeout", sent=False)
    if isinstance(exc, requests.Timeout) or isinstance(reason, urllib3.exceptions.TimeoutError):
        return TransportFailure("timeout", sent=True)
    return TransportFailure("connection", sent=True)


def _admit_all(endpoint: str) -> None:
    """No admission control (an app without an account budget)."""


def _observe_nothing(endpoint: str, status: int | str, seconds: float) -> None:
    """No metrics."""


class Transport:
    """The process's HTTP session to DocuSign, its timeouts, its clock and its two hooks."""

    def __init__(self, session: requests.Session, *, before_call: BeforeCall | None = None,
                 on_call: OnCall | None = None) -> None:
        self.session = session
        self.connect_timeout = 3.05
        self.read_timeout = 15.0
        # every timing decision reads this clock: tests move it to reach token expiry
        self.clock: t.Callable[[], float] = time.monotonic
        self.before_call: BeforeCall = before_call or _admit_all
        self.on_call: OnCall = on_call or _observe_nothing

    def call(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        deadline: float,
        idempotent: bool,
        headers: Mapping[str, str] | None = None,
        json_body: Mapping[str, t.Any] | None = None,
        data: Mapping[str, str] | None = None,
        admit: bool = False,
    ) -> requests.Response:
        """One call with its retries; returns the last response, raises on no response."""
        send = functools.partial(self.send, endpoint, method, url, deadline=deadline,
                                 headers=headers, json_body=json_body, data=data, admit=admit)
        attempt = 0
        while True:
            try:
                resp = send()
            except TransportFailure as failure:
                # a request that provably never left may go again, whatever it does
                if (idempotent or not failure.sent) and self._backoff(attempt, None, deadline):
                    attempt += 1
                    continue
                raise failure.as_error() from None
            if not (idempotent and retryable(resp)):
                return resp
            if not self._backoff(attempt, retry_after(resp), deadline):
                return resp
            attempt += 1

    def _backoff(self, attempt: int, hint: float | None, deadline: float) -> bool:
        """Sleep before another attempt; False when none is left or it would not fit."""
        if attempt + 1 >= MAX_ATTEMPTS:
            return False
        # full jitter (AWS architecture blog): spreads the retries of many workers apart
        delay = hint if hint is not None else random.uniform(
            0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
        if self.clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
            return False
        time.sleep(delay)
        return True

    def send(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        deadline: float,
        headers: Mapping[str, str] | None = None,
        json_body: Mapping[str, t.Any] | None = None,
        data: Mapping[str, str] | None = None,
        admit: bool = False,
    ) -> requests.Response:
        """One HTTP attempt within what is left of the budget; logged by endpoint name only.

        `admit`: a REST call, which DocuSign counts against the account's hourly limit.
        """
        remaining = deadline - self.clock()
        if remaining <= 0:
            raise TransportFailure("timeout", sent=False)
        if admit:
            self.before_call(endpoint)
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        started = time.perf_counter()
        try:
            resp = self.session.request(
                method, url, headers={"Accept": "application/json", **(headers or {})},
                json=json_body, data=data, timeout=timeout,
            )
        except requests.RequestException as exc:
            failure = classify(exc)
            self._record(endpoint, failure.kind, time.perf_counter() - started,
                         detail=type(exc).__name__)
            raise failure from None
        self._record(endpoint, resp.status_code, time.perf_counter() - started,
                     detail=error_code(resp) if resp.status_code >= 400 else None)
        return resp

    def _record(self, endpoint: str, status: int | str, seconds: float, *,
                detail: str | None) -> None:
        level = logging.INFO if isinstance(status, int) and status < 500 else logging.WARNING
        log.log(level, "docusign %s -> %s in %.0f ms%s", endpoint, status, seconds * 1000,
                f" ({detail})" if detail else "",
                extra={"upstream_endpoint": endpoint, "upstream_status": status,
                       "upstream_ms": round(seconds * 1000, 1)})
        try:
            self.on_call(endpoint, status, seconds)
        except Exception:  # a metrics failure must not fail the call
            log.exception("docusign on_call hook failed")
