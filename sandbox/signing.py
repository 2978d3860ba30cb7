"""The embedded signing page behind a recipient-view URL (docusign.md §5)."""

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
        if signer["status"] == "sent":
            signer["status"] = "delivered"
            signer["deliveredDateTime"] = now
        if envelope["status"] == "sent":
            sandbox.set_envelope_status(envelope, "delivered", now=now)
        html = render_template(
            "signing.html",
            envelope=envelope,
            signer=signer,
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
        signer["status"] = "completed"
        signer["signedDateTime"] = now
        if all(s["status"] == "completed" for s in envelope["recipients"]):
            sandbox.set_envelope_status(envelope, "completed", now=now)
    elif action == "decline":
        signer["status"] = "declined"
        signer["declinedDateTime"] = now
        signer["declinedReason"] = reason or None
        sandbox.set_envelope_status(envelope, "declined", now=now)


def init_app(app: Flask) -> None:
    """Register the signing blueprint."""
    app.register_blueprint(bp)
