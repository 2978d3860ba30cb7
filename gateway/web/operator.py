"""What operators see over HTTP: the health probes and `/metrics`, and the per-request hook.

- `/metrics`: requests by partner, operation and status; DocuSign calls and latency by
  endpoint (through `DocuSignClient.on_call`); rate-limit rejections; token refreshes
  (`gateway.observability.metrics`).
- Logs: JSON, one object per line, redacted (`gateway.observability.logging`), and one
  access-log line per request.
- `/healthz` (the process answers) and `/readyz` (database, policies, an upstream token
  held or obtainable), 503 problem+json when not ready.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import typing as t

import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from marshmallow import Schema
from marshmallow import fields
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import context
from gateway import errors
from gateway import store
from gateway.observability import metrics as obs_metrics
from gateway.observability.logging import configure_logging
from gateway.policy import get_policies
from gateway.upstream import get_client

bp = Blueprint("ops", __name__)


# --- health -------------------------------------------------------------------------


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"description": "Always `ok`."})


class ReadinessSchema(Schema):
    status = fields.String(required=True, metadata={"description": "Always `ready`."})
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True,
                         metadata={"description": "Each check (database, policies, upstream) "
                                                  "and its result."})


class NotReady(errors.GatewayError):
    """*503*: a dependency is missing; `errors` names each failing check and why."""

    code = 503
    error_code = "not_ready"
    title = "Not ready"
    description = "The gateway cannot serve partners yet."


class UpstreamProbe:
    """Gets a DocuSign token in the background when none is held, at most once per interval.

    A readiness probe must answer within its own timeout, and must not hammer DocuSign's
    token endpoint while consent or credentials are missing: the attempt runs in one
    thread, the probe waits for it only briefly, and a failure is remembered for
    `READYZ_UPSTREAM_RETRY` seconds.
    """

    def __init__(self, *, wait: float, retry: float) -> None:
        self.wait = wait
        self.retry = retry
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failure: tuple[float, str] | None = None

    def check(self) -> str | None:
        """None when a token is held or was just obtained, else a short reason code."""
        client = get_client()
        if client.token_status()["held"]:
            return None
        with self._lock:
            if self._failure is not None and time.monotonic() - self._failure[0] < self.retry:
                return self._failure[1]
            if self._thread is None or not self._thread.is_alive():
                self._failure = None
                self._thread = threading.Thread(target=self._obtain, args=(client,),
                                                name="readyz-upstream", daemon=True)
                self._thread.start()
            thread = self._thread
        thread.join(self.wait)
        if thread.is_alive():
            return "upstream_pending"
        return self._failure[1] if self._failure else None

    def _obtain(self, client: t.Any) -> None:
        try:
            client.check()
        except errors.GatewayError as exc:
            self._failure = (time.monotonic(), exc.error_code)
        except Exception:  # noqa: BLE001 - a probe reports, it does not crash
            logging.getLogger(__name__).exception("readiness: upstream check failed")
            self._failure = (time.monotonic(), "upstream_error")


def _check_database() -> str | None:
    try:
        with store.transaction() as conn:
            store.check_schema(conn)
    except store.SchemaMismatch:
        return "database_not_initialised"
    except sa.exc.SQLAlchemyError:
        return "database_unavailable"
    return None


def _check_policies() -> str | None:
    policies = get_policies()
    if not os.path.isdir(policies.directory):
        return "policy_dir_missing"
    # get() is one stat per file while nothing changed: cheap enough for every probe
    if not any(policies.get(name) is not None for name in policies.names()):
        return "no_valid_policy"
    return None


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and answering; nothing else is checked."""
    context.current().operation = "healthz"
    return jsonify(HealthSchema().dump({"status": "ok"}))


@bp.get("/readyz")
def readyz() -> Response:
    """Ready to serve partners: database, policies and DocuSign all usable."""
    context.current().operation = "readyz"
    probe: UpstreamProbe = current_app.extensions["upstream_probe"]
    results = {"database": _check_database(), "policies": _check_policies(), "upstream": probe.check()}
    failing = {name: [reason] for name, reason in results.items() if reason is not None}
    if failing:
        raise NotReady(errors=failing, retry_after=5)
    checks = {name: "ok" for name in results}
    return jsonify(ReadinessSchema().dump({"status": "ready", "checks": checks}))


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition."""
    context.current().operation = "metrics"
    return Response(obs_metrics.get_metrics().exposition(), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    """Metrics, JSON logging, the access log and the probes.

    The app factory hands `Metrics.observe_upstream` to the DocuSign client; the request
    pipeline (`web/pipeline.py`) calls the metrics and the access log for each answer.
    """
    configure_logging(app)
    obs_metrics.init_app(app)
    app.extensions["upstream_probe"] = UpstreamProbe(
        wait=float(app.config["READYZ_UPSTREAM_TIMEOUT"]),
        retry=float(app.config["READYZ_UPSTREAM_RETRY"]),
    )
    app.register_blueprint(bp)
