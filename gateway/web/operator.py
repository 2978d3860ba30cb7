"""What operators see: Prometheus metrics, one JSON log line per request, and health probes.

- `/metrics`: requests by partner, operation and status; DocuSign calls and latency by
  endpoint (through `DocuSignClient.on_call`); rate-limit rejections; token refreshes.
  With `PROMETHEUS_MULTIPROC_DIR` set (before the process starts) every gunicorn worker
  writes its samples there and `/metrics` sums them all.
- Logs: JSON, one object per line, with the request id of the request being served;
  every record passes `RedactingFilter` first, so keys, tokens, JWTs, PEM blocks and
  signers' emails never reach the log stream whoever logged them.
- `/healthz` (the process answers) and `/readyz` (database, policies, an upstream token
  held or obtainable), 503 problem+json when not ready.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import threading
import time
import typing as t

import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import has_request_context
from flask import request
from marshmallow import Schema
from marshmallow import fields
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import disable_created_metrics
from prometheus_client import generate_latest
from prometheus_client import multiprocess

from gateway import errors
from gateway import store
from gateway.policy import get_policies
from gateway.upstream import get_client

access_log = logging.getLogger("gateway.access")

bp = Blueprint("ops", __name__)

# --- redaction ------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@|%40)([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
#: (pattern, replacement), applied in order: PEM first (it contains base64 that looks like
#: anything), then credentials, then emails
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"-----BEGIN [A-Z0-9 ]{1,40}-----.*?(?:-----END [A-Z0-9 ]{1,40}-----|\Z)", re.S),
     "[PEM redacted]"),
    (re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)[A-Za-z0-9._~+/=-]+"), r"\1 ***"),
    (re.compile(r"pgw_[A-Za-z0-9_]+"), "pgw_***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[JWT redacted]"),
    # Fernet tokens: the vault's ciphertexts, useless alone but nobody's business
    (re.compile(r"gAAAAA[A-Za-z0-9_=-]{20,}"), "[ciphertext redacted]"),
    (re.compile(r"(?i)([\"']?\b(?:access_token|refresh_token|id_token|assertion|password|passwd|"
                r"client_secret|api_key|private_key|private_key_pem|gateway_token|csrf_token)\b"
                r"[\"']?\s*[=:]\s*[\"']?)[^\"'\s&,;}]+"), r"\1***"),
)
# LogRecord attributes that are not `extra=` fields
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


#: every pattern above needs one of these: text without any is returned as it is, so the
#: common case (a path, a status, a partner name) costs one scan instead of eight
_TRIGGERS = re.compile(r"(?i)-----BEGIN|bearer|basic|pgw_|eyJ|gAAAAA|[=:@]|%40")


def redact(text: str) -> str:
    """`text` without partner keys, bearer tokens, JWTs, PEM blocks or full email addresses.

    :param text: anything about to be logged
    """
    if not _TRIGGERS.search(text):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return _EMAIL_RE.sub(lambda m: f"{m.group(1)}***{m.group(2)}{m.group(3)}", text)


class RedactingFilter(logging.Filter):
    """Scrubs a record in place (message, arguments, traceback, extra fields); never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_ATTRS and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


# --- JSON logs -------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, t.Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is None and has_request_context():
            request_id = g.get("request_id")
        if request_id is not None:
            doc["request_id"] = request_id
        doc.update({k: v for k, v in vars(record).items()
                    if k not in _RECORD_ATTRS and k != "request_id" and not k.startswith("_")})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, default=str, ensure_ascii=False)


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the *current* `sys.stderr` (test runners swap it) unless given a stream."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)
        self._stream: t.IO[str] | None = None

    @property
    def stream(self) -> t.IO[str]:  # type: ignore[override]
        return self._stream or sys.stderr

    @stream.setter
    def stream(self, value: t.IO[str] | None) -> None:
        self._stream = value


_install_lock = threading.Lock()


def log_handler() -> LogHandler | None:
    """The gateway's handler on the root logger, once `init_app` installed it."""
    return next((h for h in logging.getLogger().handlers if isinstance(h, LogHandler)), None)


def configure_logging(app: Flask, *, level: str | None = None, fmt: str | None = None) -> LogHandler:
    """One redacting handler on the root logger, so every library's records go through it.

    Installed once per process (several apps in one process share it). `LOG_FORMAT`
    "json" (default) or "text" and `LOG_LEVEL` (default INFO) come from the config
    unless given: the owner's commands ask for text at WARNING, their output is for people.
    """
    with _install_lock:
        handler = log_handler()
        if handler is None:
            handler = LogHandler()
            handler.addFilter(RedactingFilter())
            logging.getLogger().addHandler(handler)
    if (fmt or app.config.get("LOG_FORMAT", "json")) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().setLevel(str(level or app.config.get("LOG_LEVEL", "INFO")).upper())
    return handler


# --- metrics ---------------------------------------------------------------------------

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own (one per app).

    Labels are bounded: partner names (few), operation names and endpoint names (fixed
    sets), status codes. Never key ids, envelope ids or paths.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter("gateway_requests", "HTTP requests served, by partner, operation "
                                "and status", ["partner", "operation", "status"], registry=reg)
        self.request_seconds = Histogram("gateway_request_duration_seconds", "Time to answer a "
                                         "request, by operation", ["operation"], registry=reg,
                                         buckets=_LATENCY_BUCKETS)
        self.rate_limited = Counter("gateway_rate_limit_rejections", "Requests refused with 429, "
                                    "by partner and operation", ["partner", "operation"], registry=reg)
        self.upstream_calls = Counter("gateway_upstream_calls", "HTTP attempts to DocuSign (retries "
                                      "included), by endpoint and status or failure kind",
                                      ["endpoint", "status"], registry=reg)
        self.upstream_seconds = Histogram("gateway_upstream_duration_seconds", "Time of one HTTP "
                                          "attempt to DocuSign, by endpoint", ["endpoint"],
                                          registry=reg, buckets=_LATENCY_BUCKETS)
        self.token_refreshes = Counter("gateway_upstream_token_refreshes", "DocuSign access token "
                                       "requests (JWT grant), by outcome", ["outcome"], registry=reg)

    def observe_request(self, *, partner: str, operation: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(partner, operation, str(status)).inc()
        self.request_seconds.labels(operation).observe(seconds)
        if status == 429:
            self.rate_limited.labels(partner, operation).inc()

    def observe_upstream(self, endpoint: str, status: int | str, seconds: float) -> None:
        """`DocuSignClient.on_call`: one HTTP attempt to DocuSign."""
        self.upstream_calls.labels(endpoint, str(status)).inc()
        self.upstream_seconds.labels(endpoint).observe(seconds)
        if endpoint == "token":
            self.token_refreshes.labels("ok" if status == 200 else "failed").inc()

    def exposition(self) -> bytes:
        """The text format: this process's registry, or every worker's when multiprocess."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def get_metrics() -> Metrics:
    """The current app's metrics."""
    return t.cast(Metrics, current_app.extensions["metrics"])


# --- per-request hooks ---------------------------------------------------------------


def _labels() -> tuple[str, str]:
    operation = g.get("operation") or request.endpoint or "unmatched"
    return str(g.get("partner") or ""), str(operation)


def _after_request(response: Response) -> Response:
    started = g.get("started") or time.perf_counter()
    seconds = time.perf_counter() - started
    partner, operation = _labels()
    get_metrics().observe_request(partner=partner, operation=operation,
                                  status=response.status_code, seconds=seconds)
    access_log.info(
        "%s %s -> %s in %.1f ms", request.method, request.path, response.status_code, seconds * 1000,
        extra={"method": request.method, "path": request.path, "status": response.status_code,
               "duration_ms": round(seconds * 1000, 1), "partner": partner or None,
               "operation": operation, "code": g.get("error_code"),
               "remote_addr": request.remote_addr},
    )
    return response


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
    g.operation = "healthz"
    return current_app.json.response(HealthSchema().dump({"status": "ok"}))


@bp.get("/readyz")
def readyz() -> Response:
    """Ready to serve partners: database, policies and DocuSign all usable."""
    g.operation = "readyz"
    probe: UpstreamProbe = current_app.extensions["upstream_probe"]
    results = {"database": _check_database(), "policies": _check_policies(), "upstream": probe.check()}
    failing = {name: [reason] for name, reason in results.items() if reason is not None}
    if failing:
        raise NotReady(errors=failing, retry_after=5)
    checks = {name: "ok" for name in results}
    return current_app.json.response(ReadinessSchema().dump({"status": "ready", "checks": checks}))


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition."""
    g.operation = "metrics"
    return Response(get_metrics().exposition(), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    """Metrics, JSON logging, the access log and the probes.

    Must run after `audit.init_app` (it reads the request id and start time audit sets);
    the app factory hands `Metrics.observe_upstream` to the DocuSign client.
    """
    configure_logging(app)
    # the *_created series double the output and no dashboard here reads them
    disable_created_metrics()
    app.extensions["metrics"] = Metrics()
    app.extensions["upstream_probe"] = UpstreamProbe(
        wait=float(app.config.get("READYZ_UPSTREAM_TIMEOUT", 2.0)),
        retry=float(app.config.get("READYZ_UPSTREAM_RETRY", 10.0)),
    )
    app.after_request(_after_request)
    app.register_blueprint(bp)
