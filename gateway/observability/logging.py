"""JSON log lines, redacted before they are written, and the one access-log line per request.

Every record passes `RedactingFilter` first, so keys, tokens, JWTs, PEM blocks and
signers' emails never reach the log stream whoever logged them. Each line carries the
request id of the request being served.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import threading
import typing as t

from flask import Flask
from flask import Response
from flask import has_request_context
from flask import request

from gateway import context
from gateway.observability.labels import elapsed_seconds
from gateway.observability.labels import request_labels

_access = logging.getLogger("gateway.access")

# --- redaction ------------------------------------------------------------------------

# Every form of address (RFC 5322 dot-atoms, RFC 6531 non-ASCII local parts, quoted local
# parts, JSON-escaped quotes, IDN and bare-host domains, address literals). Group 1 is the
# first character of the local part (kept), group 2 the `@`, group 3 the domain (kept); the
# rest of the local part is replaced. `= & ? /` are legal in a local part but far more often
# delimit one (`?to=ada%40x.org`, `/users/ada@x.org`): they end it, so the key or path stays
# readable. Lengths are bounded (RFC 5321: 64 and 255), so a long line costs linear time.
_LOCAL_CHAR = r"[\w!#$%'*+^`{|}~.\-\u0080-\U0010ffff]"
_DOMAIN_LABEL = r"[\w\-\u0080-\U0010ffff]{1,63}"
_EMAIL_RE = re.compile(
    r"(\\?\"|" + _LOCAL_CHAR + r")"
    # a quoted local part holds at least one character: `""` would let a string's own
    # delimiter and an escaped quote pass for one, and leave the real local part showing
    r"(?:(?<=\")(?:[^\"\\\r\n]|\\[^\r\n]){1,255}?\\?\"|(?<!\")" + _LOCAL_CHAR + r"{0,255})"
    r"(@|%40)"
    r"(\[[^\]\s]{1,64}\]|" + _DOMAIN_LABEL + r"(?:\." + _DOMAIN_LABEL + r"){0,126})"
)
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
    if "@" not in text and "%40" not in text:
        return text  # no address without its separator: most lines skip the costlier scan
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
            request_id = context.current().request_id or None
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
    if (fmt or app.config["LOG_FORMAT"]) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().setLevel(str(level or app.config["LOG_LEVEL"]).upper())
    return handler



def access_log(response: Response) -> Response:
    """One `gateway.access` line for the request being answered (method, path, status, time)."""
    seconds = elapsed_seconds()
    partner, operation = request_labels()
    _access.info(
        "%s %s -> %s in %.1f ms", request.method, request.path, response.status_code, seconds * 1000,
        extra={"method": request.method, "path": request.path, "status": response.status_code,
               "duration_ms": round(seconds * 1000, 1), "partner": partner or None,
               "operation": operation, "code": context.current().error_code,
               "remote_addr": request.remote_addr},
    )
    return response
