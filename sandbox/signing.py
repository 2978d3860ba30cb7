"""The embedded signing page behind a recipient-view URL (docs/docusign-facts.md §5)."""

from __future__ import annotations

import secrets
import typing as t
from urllib.parse import urlencode
from urllib.parse import urlsplit
from urllib.parse import urlunsplit

from flask import Blueprint
from flask import Flask
from flask import redirect
from flask import render_template
from flask import request
from werkzeug.wrappers import Response

from . import constants as c
from . import routing
from .errors import PageError
from .errors import frame_ancestors_policy
from .limits import get_sandbox
from .state import Sandbox

bp = Blueprint("signing", __name__, url_prefix="/Signing")

# [U] an opened signing session times out after this much inactivity; the
# next action then sends the signer back with event=session_timeout
SIGNING_SESSION_TTL = 20 * 60


def with_event(url: str, event: str) -> str:
    """``url`` with ``event=<event>`` appended, keeping any query it already has.

    :param url: the view request's ``returnUrl``
    :param event: e.g. ``signing_complete``
    """
    parts = urlsplit(url)
    extra = urlencode({"event": event})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def signing_fields(signer: dict[str, t.Any]) -> list[dict[str, str]]:
    """The fields the signing page shows: each tab's readable text (its ``tooltip``, else
    its label) and value, leaving out empty optional tabs."""
    fields = []
    for tab in signer["tabDefs"]:
        value = signer["tabs"].get(tab["tabLabel"], "")
        if not value and tab["required"] != "true":
            continue
        fields.append(
            {
                "label": tab["tabLabel"],
                "text": tab.get("tooltip") or tab["tabLabel"],
                "value": value,
                "required": tab["required"],
            }
        )
    return fields


def _signer(envelope: dict[str, t.Any], recipient_id: str) -> dict[str, t.Any]:
    return next(s for s in envelope["recipients"] if s["recipientId"] == recipient_id)


def _page(html: str, frame_ancestors: t.Sequence[str]) -> Response:
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = frame_ancestors_policy(frame_ancestors)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@bp.get("/MTRedeem/v1/<token>")
def redeem(token: str) -> Response:
    """Redeem a signing URL once: mark the signer delivered and show the document."""
    sandbox = get_sandbox()
    with sandbox.lock:
        view = sandbox.signing_urls.get(token)
        if view is None:
            raise PageError("This signing link is not valid.", status=404)
        ancestors = view["frame_ancestors"]
        if view["redeemed"] is not None:
            raise PageError("This signing link has already been used.", status=410, frame_ancestors=ancestors)
        now = sandbox.now()
        if now >= view["expires"]:
            raise PageError("This signing link has expired.", status=410, frame_ancestors=ancestors)
        envelope = sandbox.envelopes[view["envelope_id"]]
        signer = _signer(envelope, view["recipient_id"])
        if envelope["status"] not in c.VIEWABLE_STATUSES or signer["status"] in (
            "completed",
            "declined",
        ):
            raise PageError(
                f"This envelope can no longer be signed ({envelope['status']}).",
                status=409,
                frame_ancestors=ancestors,
            )
        view["redeemed"] = now
        session_id = secrets.token_urlsafe(24)
        view["session_id"] = session_id
        sandbox.sessions[session_id] = {
            "session_id": session_id,
            "token": token,
            "envelope_id": envelope["envelopeId"],
            "recipient_id": signer["recipientId"],
            "return_url": view["return_url"],
            "frame_ancestors": ancestors,
            "expires": now + SIGNING_SESSION_TTL,
            "closed": None,
        }
        routing.deliver(sandbox, envelope, signer, now)
        html = render_template(
            "signing.html",
            envelope=envelope,
            signer=signer,
            fields=signing_fields(signer),
            next_signers=routing.next_signers(envelope, signer),
            session_id=session_id,
            actions=tuple(c.SIGNING_EVENTS),
        )
    return _page(html, ancestors)


@bp.post("/session/<session_id>/<action>")
def act(session_id: str, action: str) -> Response:
    """Sign, decline or cancel, then send the browser to ``returnUrl?event=...``."""
    sandbox = get_sandbox()
    with sandbox.lock:
        session = sandbox.sessions.get(session_id)
        if session is None or action not in c.SIGNING_EVENTS:
            raise PageError("This signing session does not exist.", status=404)
        ancestors = session["frame_ancestors"]
        if session["closed"] is not None:
            raise PageError("This signing session has ended.", status=410, frame_ancestors=ancestors)
        envelope = sandbox.envelopes[session["envelope_id"]]
        signer = _signer(envelope, session["recipient_id"])
        if envelope["status"] in c.TERMINAL_STATUSES or signer["status"] in (
            "completed",
            "declined",
        ):
            raise PageError(
                f"This envelope can no longer be signed ({envelope['status']}).",
                status=409,
                frame_ancestors=ancestors,
            )
        now = sandbox.now()
        session["closed"] = now
        if now >= session["expires"]:
            return redirect(with_event(session["return_url"], "session_timeout"), code=302)
        _apply(sandbox, envelope, signer, action, request.form.get("reason", "").strip())
        target = with_event(session["return_url"], c.SIGNING_EVENTS[action])
    return redirect(target, code=302)


def _apply(
    sandbox: Sandbox,
    envelope: dict[str, t.Any],
    signer: dict[str, t.Any],
    action: str,
    reason: str,
) -> None:
    """The status transitions of one signer action (caller holds the lock)."""
    now = sandbox.now()
    if action == "sign":
        routing.sign(sandbox, envelope, signer, now)
    elif action == "decline":
        routing.decline(sandbox, envelope, signer, reason, now)


def init_app(app: Flask) -> None:
    """Register the signing blueprint."""
    app.register_blueprint(bp)
