"""Keeps DocuSign ids out of urllib3's request log lines (they sit in the URL paths)."""

from __future__ import annotations

import logging
import re
import threading

from gateway.upstream.settings import ID_PATTERN

_ID_RE = re.compile(ID_PATTERN)


class RedactIds(logging.Filter):
    """urllib3 logs request lines at DEBUG, and DocuSign paths carry the account id."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _ID_RE.search(message):
            record.msg, record.args = _ID_RE.sub("<id>", message), ()
        return True


_installing = threading.Lock()


def install_log_redaction() -> None:
    """Put one `RedactIds` filter on urllib3's connection pool logger (idempotent)."""
    pool_log = logging.getLogger("urllib3.connectionpool")
    with _installing:
        if not any(isinstance(f, RedactIds) for f in pool_log.filters):
            pool_log.addFilter(RedactIds())
