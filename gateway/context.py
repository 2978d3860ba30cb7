"""The state of the request being answered: one typed object, read and written by every layer.

Guards fill in who is calling (`caller`, `partner`, `policy`), views and services what
it is about (`operation`, `envelope_id`, `audit_detail`), the error handler how it ended
(`error_code`); the after-request pipeline (`gateway/web/pipeline.py`)
reads it all to set headers, count metrics, log and audit. Outside a request (the CLI,
background threads) there is no state and nothing reads it.
"""

from __future__ import annotations

import time
import typing as t
from dataclasses import dataclass
from dataclasses import field

from flask import g

if t.TYPE_CHECKING:
    from gateway.policy import Policy


@dataclass(frozen=True)
class Caller:
    """Who an authenticated request comes from (`guards.authenticate` finds out)."""

    partner_id: int
    partner: str


@dataclass
class RequestState:
    """Everything the gateway learns about one request while answering it."""

    request_id: str = ""
    started: float = field(default_factory=time.perf_counter)
    #: what the request does, for metrics, logs and the audit trail (e.g. "create_draft")
    operation: str | None = None
    caller: Caller | None = None
    partner: str | None = None
    policy: Policy | None = None
    envelope_id: str | None = None
    #: the stable code of the error answered, or why a message was ignored
    error_code: str | None = None
    #: a short note for the audit row (e.g. the statuses after the request)
    audit_detail: str | None = None


def current() -> RequestState:
    """The state of the request being answered (created on first use)."""
    state = g.get("_request_state")
    if state is None:
        state = g._request_state = RequestState()
    return t.cast(RequestState, state)


def caller() -> Caller:
    """The authenticated partner; only inside a view behind `guards.partner_call`."""
    who = current().caller
    if who is None:
        raise RuntimeError("no authenticated caller: the view is not behind partner_call")
    return who


def policy() -> Policy:
    """The caller's policy; only inside a view behind `guards.partner_call`."""
    rules = current().policy
    if rules is None:
        raise RuntimeError("no policy: the view is not behind partner_call")
    return rules
