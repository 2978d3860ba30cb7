"""The console's pages: partners (traffic, revoke, rotate), their webhook deliveries, the audit trail."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import time
import typing as t

import sqlalchemy as sa
from flask import flash
from flask import g
from flask import redirect
from flask import request
from flask import session
from flask import url_for

from gateway import store
from gateway.policy import get_policies
from gateway.services import audit
from gateway.services import partner_keys as keys
from gateway.services import traffic

if t.TYPE_CHECKING:
    pass


from gateway.web.admin import bp
from gateway.web.admin.access import _page
from gateway.web.admin.access import require_admin
from gateway.web.admin.login import _record

log = logging.getLogger(__name__)

GRACE_CHOICES = {"0": 0, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
SINCE_CHOICES = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
AUDIT_PAGE = 200
_STATUS_FILTER_RE = re.compile(r"^[1-5](?:xx|[0-9]{2})$")

# --- partners ------------------------------------------------------------------------------


def partner_overview(conn: sa.Connection, *, now: float | None = None) -> list[dict[str, t.Any]]:
    """Every partner with its state, policy, live keys, last use and request counts (audit table)."""
    now = time.time() if now is None else now
    ev = store.audit_events.c
    partner_calls = ev.operation.notlike("admin%")
    stats = conn.execute(
        sa.select(
            ev.partner,
            sa.func.count().label("requests"),
            sa.func.sum(sa.case((ev.at >= now - 86400, 1), else_=0)).label("requests_24h"),
            sa.func.sum(sa.case((ev.status >= 400, 1), else_=0)).label("errors"),
            sa.func.max(ev.at).label("last_used"),
        ).where(ev.partner.is_not(None), partner_calls).group_by(ev.partner)
    )
    by_partner = {row.partner: row for row in stats}
    policies = get_policies()
    out = []
    for row in keys.list_partners(conn):
        s = by_partner.get(row["name"])
        out.append(row | {
            "state": "revoked" if row["revoked_at"] else "active",
            "policy_ok": policies.get(row["name"]) is not None,
            "requests": int(s.requests) if s else 0,
            "requests_24h": int(s.requests_24h or 0) if s else 0,
            "errors": int(s.errors or 0) if s else 0,
            "last_used": s.last_used if s else None,
        })
    return out


def _partner_or_404(conn: sa.Connection, name: str) -> dict[str, t.Any] | None:
    found = keys.list_partners(conn, name=name)
    return found[0] if found else None


@bp.get("/")
@require_admin
def partners() -> t.Any:
    with store.transaction() as conn:
        rows = partner_overview(conn)
        hourly = traffic.hourly(conn)
    return _page("partners.html", partners=rows, traffic=hourly)


@bp.get("/partners/<name>")
@require_admin
def partner_detail(name: str) -> t.Any:
    """One partner: its state, keys, counts and its requests and errors per hour this week."""
    with store.transaction() as conn:
        row = next((p for p in partner_overview(conn) if p["name"] == name), None)
        hourly = traffic.hourly(conn, partner=name) if row else None
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    return _page("partner.html", p=row, traffic=hourly)


@bp.route("/partners/<name>/revoke", methods=["GET", "POST"])
@require_admin
def revoke(name: str) -> t.Any:
    """GET asks for confirmation; POST revokes the partner and all its keys at once."""
    with store.transaction() as conn:
        row = _partner_or_404(conn, name)
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    if request.method == "GET":
        return _page("revoke.html", name=name, revoked=row["revoked_at"] is not None)
    try:
        with store.transaction() as conn:
            count = keys.revoke_partner(conn, name)
    except keys.KeyProblem as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.partners"), code=303)
    _record("admin_revoke", status=200, partner=name, detail=f"by {g.admin}; {count} key(s)")
    flash(f"Partner {name!r} revoked ({count} key(s)); its next request gets 401.", "ok")
    return redirect(url_for("admin.partners"), code=303)


@bp.route("/partners/<name>/rotate", methods=["GET", "POST"])
@require_admin
def rotate(name: str) -> t.Any:
    """GET offers a grace period; POST issues a new key and shows it once (never stored)."""
    with store.transaction() as conn:
        row = _partner_or_404(conn, name)
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    if request.method == "GET":
        session["rotate_once"] = secrets.token_urlsafe(16)
        return _page("rotate.html", name=name, choices=GRACE_CHOICES, once=session["rotate_once"])
    # a reloaded or replayed form must not rotate twice (and hide the first new key)
    once = session.pop("rotate_once", "")
    if not once or not hmac.compare_digest(once, request.form.get("once", "")):
        flash("That rotation form was already used; no new key was issued.", "error")
        return redirect(url_for("admin.partners"), code=303)
    grace = request.form.get("grace", "")
    if grace not in GRACE_CHOICES:
        flash("Pick a grace period; no new key was issued.", "error")
        return redirect(url_for("admin.partners"), code=303)
    try:
        with store.transaction() as conn:
            key = keys.rotate_key(conn, name, grace=GRACE_CHOICES[grace])
    except keys.KeyProblem as exc:
        flash(str(exc), "error")
        return redirect(url_for("admin.partners"), code=303)
    _record("admin_rotate_key", status=200, partner=name, detail=f"by {g.admin}; grace {grace}")
    return _page("key.html", name=name, key=key, grace=grace)


# --- partner webhooks ----------------------------------------------------------------------


@bp.get("/partners/<name>/webhooks")
@require_admin
def webhooks(name: str) -> t.Any:
    """The partner's webhook deliveries, newest first, each with a Replay button."""
    from gateway.services import webhook_outbox

    with store.transaction() as conn:
        row = _partner_or_404(conn, name)
        events = webhook_outbox.list_events(conn, partner=name, limit=200) if row else []
    if row is None:
        return _page("error.html", 404, message=f"No partner named {name!r}.")
    policy = get_policies().get(name)
    return _page("webhooks.html", name=name, events=events,
                 webhook_url=policy.webhook_url if policy else None)


@bp.post("/partners/<name>/webhooks/<event_id>/replay")
@require_admin
def webhook_replay(name: str, event_id: str) -> t.Any:
    """Queue one of the partner's events again (CSRF-checked like every console POST)."""
    from gateway.services import webhook_outbox

    ev = store.webhook_events
    with store.transaction() as conn:
        owned = conn.execute(
            sa.select(ev.c.id).select_from(ev.join(store.partners))
            .where(ev.c.event_id == event_id, store.partners.c.name == name)).first()
        done = owned is not None and webhook_outbox.replay(conn, event_id, now=time.time())
    if not done:
        flash(f"No webhook event {event_id!r} for {name!r}.", "error")
    else:
        _record("admin_webhook_replay", status=200, partner=name, detail=f"by {g.admin}; {event_id}")
        flash(f"Event {event_id} queued again.", "ok")
    return redirect(url_for("admin.webhooks", name=name), code=303)


# --- audit ---------------------------------------------------------------------------------


@bp.get("/audit")
@require_admin
def audit_trail() -> t.Any:
    partner = request.args.get("partner", "").strip()[:63] or None
    since_choice = request.args.get("since", "")
    status = request.args.get("status", "").strip().lower()
    problems = []
    if since_choice and since_choice not in SINCE_CHOICES:
        problems.append("Unknown period; showing all.")
        since_choice = ""
    if status and not _STATUS_FILTER_RE.match(status):
        problems.append("Status must look like 401 or 4xx; ignored.")
        status = ""
    since = time.time() - SINCE_CHOICES[since_choice] if since_choice else None
    with store.transaction() as conn:
        # newest first: the console shows what just happened at the top
        rows = audit.query(conn, partner=partner, since=since, status=status or None,
                           limit=AUDIT_PAGE)[::-1]
        names = [p["name"] for p in keys.list_partners(conn)]
    return _page("audit.html", rows=rows, names=names, partner=partner or "", since=since_choice,
                 status=status, since_choices=SINCE_CHOICES, problems=problems, limit=AUDIT_PAGE)
