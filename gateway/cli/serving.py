"""`gateway serve`: gunicorn in front of the app factory, after a preflight check.

Each worker is a process that builds its own app, database pool and DocuSign client
after the fork (no preloading), so nothing with a socket is shared between workers;
what they must agree on lives in the database (keys, idempotency, the shared upstream
token, the audit chain) and in the rate-limit storage (Redis). Forwarded headers are
handled by `gateway.web.proxy`.
"""

from __future__ import annotations

import errno
import logging
import socket
import typing as t

from flask import Flask
from gunicorn.app.base import BaseApplication

from gateway.errors import CLIError

log = logging.getLogger(__name__)


def preflight(app: Flask, *, workers: int) -> None:
    """Refuse a configuration that would silently break a guarantee."""
    from gateway.store.vault import VaultError
    from gateway.store.vault import get_vault

    try:
        get_vault()
    except VaultError as exc:
        raise CLIError(str(exc)) from None
    if workers > 1 and app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        raise CLIError("several workers need shared rate-limit counters: set "
                       "RATELIMIT_STORAGE_URI=redis://... (memory:// counts per worker)")


#: threads per worker when `--threads` is not given. SQLite has one writer: a request's
#: writes queue on an in-process lock (`store._SQLITE_WRITES`), so a few threads keep
#: reads parallel without a long write queue. PostgreSQL writes do not serialise: more
#: threads overlap the waits on DocuSign and the database.
DEFAULT_THREADS = {"sqlite": 4, "postgresql": 8}


def default_threads(backend: str) -> int:
    """The thread count per worker for a database backend (`sqlite`, `postgresql`)."""
    return DEFAULT_THREADS.get(backend, 8)


def check_port_free(host: str, port: int) -> None:
    """Fail in one line when the address cannot be bound, before gunicorn tries (and retries).

    The test socket is closed again at once; SO_REUSEADDR matches gunicorn's own bind, so a
    port only held by connections in TIME_WAIT still counts as free.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CLIError(f"port {port} is in use; stop what uses it or pick "
                               "another with --port") from None
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, t.Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from gateway import create_app

        return create_app()


def run(*, host: str, port: int, workers: int, threads: int) -> None:
    """Serve until interrupted; each worker builds its own app (and its own DB pool)."""
    _Gunicorn({
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": None,
        "graceful_timeout": 10,
        "timeout": 60,
    }).run()
