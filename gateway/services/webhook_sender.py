"""The partner-webhook sender: delivers the outbox (`webhook_events`) at least once.

`deliver_due()` sends the due pending events, oldest first and in order per envelope
(an event waits while an older one of its envelope is still pending), each signed with
every active secret of its partner (Standard Webhooks). A row's state changes only
after the receiver answered, so a process killed mid-delivery leaves it pending and it
is sent again (receivers deduplicate by `webhook-id`). One sender runs across the
fleet: a lease row in `settings` (like the token fetcher's) is claimed before, and
renewed during, each batch. `run_forever()` is the loop of `gateway webhooks run` and
of the daemon thread `start_sender()` starts in a serving process.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import typing as t
import uuid

import requests
import sqlalchemy as sa
from flask import Flask
from flask import current_app
from standardwebhooks import Webhook

from gateway import store
from gateway.policy import get_policies
from gateway.services import background
from gateway.services import webhook_destinations
from gateway.services import webhook_outbox
from gateway.services import webhook_secrets
from gateway.settings import DEFAULTS
from gateway.store import leases

log = logging.getLogger(__name__)

LEASE_SETTING = "webhook_sender_lease"
USER_AGENT = "docusign-partner-gateway-webhooks/1"

#: this process's lease owner id
OWNER = uuid.uuid4().hex


# --- configuration ------------------------------------------------------------------------


def _timeout() -> float:
    return float(current_app.config["WEBHOOK_TIMEOUT"])


def _schedule() -> tuple[float, ...]:
    value = current_app.config["WEBHOOK_RETRY_SCHEDULE"]
    if isinstance(value, str):  # from the environment: "5,30,120"
        value = [v for v in value.replace(" ", "").split(",") if v]
    return tuple(float(v) for v in value) or tuple(DEFAULTS["WEBHOOK_RETRY_SCHEDULE"])


def _window() -> float:
    return float(current_app.config["WEBHOOK_RETRY_WINDOW"])


def retry_delay(attempts: int, schedule: t.Sequence[float]) -> float:
    """Full jitter: a random delay up to the schedule's step for this attempt (at least 1 s)."""
    cap = schedule[min(attempts, len(schedule)) - 1]
    return max(1.0, random.uniform(0.0, cap))  # noqa: S311 - jitter, not a secret


# --- the lease ------------------------------------------------------------------------------


def claim_lease(owner: str, *, lease: float, now: float | None = None) -> bool:
    """Hold (or keep holding) the fleet's one sender lease for `lease` seconds."""
    return leases.claim(LEASE_SETTING, owner, lease=lease, renew=True, now=now)


def release_lease(owner: str) -> None:
    """End this owner's lease now, so another sender need not wait it out."""
    leases.release(LEASE_SETTING, owner)


# --- one delivery -----------------------------------------------------------------------


def signature_header(secrets_: t.Sequence[str], event_id: str, timestamp: int, payload: str) -> str:
    """`v1,<sig>` for each secret, space-separated, as the Standard Webhooks libraries make it."""
    when = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return " ".join(Webhook(s).sign(event_id, when, payload) for s in secrets_)


def _post(url: str, event_id: str, payload: str, secrets_: t.Sequence[str]) -> tuple[str, str]:
    """Send one event; (outcome, last_result) with outcome delivered | retry | failed."""
    try:
        target = webhook_destinations.check_destination(url)
    except webhook_destinations.Refused as exc:
        return "retry", str(exc)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, event_id, timestamp, payload),
        "host": target.host_header,
    }
    try:
        with webhook_destinations.pinned_session(target) as http:
            resp = http.post(target.pinned_url, data=payload.encode("utf-8"), headers=headers,
                             timeout=_timeout(), allow_redirects=False, stream=True)
            resp.close()  # the body is never read, nor recorded
    except requests.Timeout:
        return "retry", "timeout"
    except requests.ConnectionError:
        return "retry", "connection error"
    except requests.RequestException as exc:
        return "retry", f"request failed: {type(exc).__name__}"
    code = resp.status_code
    if 200 <= code < 300:
        return "delivered", f"HTTP {code}"
    if code == 410:
        return "failed", "HTTP 410: receiver gone"
    if 300 <= code < 400:
        return "retry", f"HTTP {code}: redirect not followed"
    return "retry", f"HTTP {code}"


def _due(conn: sa.Connection, now: float, limit: int, skip: set[int]) -> list[t.Any]:
    """Pending events due now whose envelope has no older pending event, oldest first."""
    ev = store.webhook_events
    older = ev.alias("older")
    blocked = (sa.select(older.c.id)
               .where(older.c.envelope_id == ev.c.envelope_id, older.c.state == "pending",
                      older.c.id < ev.c.id).exists())
    q = (sa.select(ev, store.partners.c.name.label("partner"),
                   store.partners.c.revoked_at.label("revoked_at"))
         .select_from(ev.join(store.partners))
         .where(ev.c.state == "pending", ev.c.next_attempt_at <= now, ~blocked)
         .order_by(ev.c.id).limit(limit))
    if skip:
        q = q.where(ev.c.id.not_in(skip))
    return list(conn.execute(q).all())


def _finish(row: t.Any, outcome: str, result: str, now: float) -> str:
    """Record an attempt's outcome (only if nobody replayed the row meanwhile)."""
    ev = store.webhook_events
    attempts = row.attempts + (0 if outcome == "held" else 1)
    values: dict[str, t.Any] = {"attempts": attempts, "last_attempt_at": now,
                                "last_result": result[:128]}
    if outcome == "delivered":
        values |= {"state": "delivered", "delivered_at": now}
    elif outcome in ("failed", "held"):
        values |= {"state": outcome}
    else:
        schedule = _schedule()
        if attempts > len(schedule) and now - row.created_at >= _window():
            outcome = "failed"
            values |= {"state": "failed", "last_result": f"{result}; retries exhausted"[:128]}
        else:
            values |= {"next_attempt_at": now + retry_delay(attempts, schedule)}
    with store.transaction() as conn:
        conn.execute(ev.update().where(ev.c.id == row.id, ev.c.state == "pending",
                                       ev.c.attempts == row.attempts).values(**values))
    return outcome


def _attempt(row: t.Any, policies: t.Any, at: float) -> tuple[str, str]:
    """Send one due event, or say why it is held or must wait: (outcome, last_result)."""
    policy = policies.get(row.partner)
    if row.revoked_at is not None or policy is None or not policy.webhook_url:
        why = "partner revoked" if row.revoked_at is not None else "no webhook_url in policy"
        return "held", f"held: {why}"
    with store.transaction() as conn:
        secrets_ = webhook_secrets.active(conn, row.partner_id, at)
    if not secrets_:
        return "retry", "no webhook secret: run `gateway partners webhook-secret`"
    return _post(policy.webhook_url, row.event_id, row.payload, secrets_)


def _record_metrics(counts: dict[str, t.Any], now: float) -> None:
    metrics = current_app.extensions.get("metrics")
    if metrics is None:
        return
    for outcome in ("delivered", "retry", "failed", "held"):
        if counts[outcome]:
            metrics.webhook_deliveries.labels(outcome).inc(counts[outcome])
    with store.transaction() as conn:
        metrics.webhook_oldest_pending.set(webhook_outbox.oldest_pending_age(conn, now=now))


def deliver_due(now: float | None = None, *, limit: int = 50, owner: str | None = None) -> dict[str, t.Any]:
    """Send the due events (needs an app context); counts by outcome.

    Returns `{"lease": False}` when another sender of the fleet holds the lease; the lease
    is renewed before each event, and a lost lease stops the batch at once.
    """
    owner = owner or OWNER
    lease = _timeout() + 30.0
    clock: t.Callable[[], float] = (lambda: now) if now is not None else time.time
    counts: dict[str, t.Any] = {"lease": True, "delivered": 0, "retry": 0, "failed": 0, "held": 0}
    policies = get_policies()
    seen: set[int] = set()
    while len(seen) < limit:
        with store.transaction() as conn:
            rows = _due(conn, clock(), limit - len(seen), seen)
        if not rows:
            break
        for row in rows:
            seen.add(row.id)
            if not claim_lease(owner, lease=lease):
                counts["lease"] = False
                return counts
            outcome, result = _attempt(row, policies, clock())
            counts[_finish(row, outcome, result, clock())] += 1
    _record_metrics(counts, clock())
    return counts


# --- running it -------------------------------------------------------------------------


def _round(app: Flask) -> None:
    deliver_due()


#: the sender thread of a serving process (`background`); `WEBHOOK_SENDER` turns it on
JOB = background.Job(name="webhook-sender", switch="WEBHOOK_SENDER", interval="WEBHOOK_INTERVAL",
                     step=_round, lease=LEASE_SETTING, owner=OWNER)


def init_app(app: Flask) -> None:
    """With `WEBHOOK_SENDER` on (None: unless TESTING), deliver in a thread of each serving process."""
    background.init_app(app, JOB)
