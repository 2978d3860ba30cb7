"""`gateway serve`: gunicorn in front of the app factory, after a preflight check.

Each worker is a process that builds its own app, database pool and DocuSign client
after the fork (no preloading), so nothing with a socket is shared between workers;
what they must agree on lives in the database (keys, idempotency, the shared upstream
token, the audit chain) and in the rate-limit storage (Redis). Forwarded headers are
handled by `gateway.web.proxy` alone (`PROXY_HOPS`): gunicorn is told to trust none, so
a loopback client cannot claim https with X-Forwarded-Proto.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settle_public_url(app: Flask, *, host: str, port: int) -> str:
    """The public URL the workers will use, decided once, at startup, never from a request.

    Set: it must be a valid http(s)://host[:port]. Unset: refused unless the bind is
    loopback, where it is http://HOST:PORT, handed to the workers in the environment.
    """
    from gateway.web.proxy import parse_public_url

    configured = app.config.get("PUBLIC_URL") or ""
    if configured:
        try:
            parse_public_url(configured)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        return str(configured)
    if not _is_loopback(host):
        raise CLIError(f"GATEWAY_PUBLIC_URL is required to serve on {host}: set it to the "
                       "URL signers' browsers reach the gateway at, e.g. https://gateway.example")
    # werkzeug's trusted-host check cannot match an IPv6 literal: name it instead
    name = host if ":" not in host else "localhost"
    public = f"http://{name}:{port}"
    os.environ["GATEWAY_PUBLIC_URL"] = public
    return public


#: threads per worker when `--threads` is not given. SQLite has one writer: a request's
#: writes queue on an in-process lock (`store.SQLITE_WRITES`), so a few threads keep
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
        # X-Forwarded-* is believed only through PROXY_HOPS (gateway.web.proxy); gunicorn's
        # default would trust any loopback client's X-Forwarded-Proto
        "forwarded_allow_ips": "",
        "secure_scheme_headers": {},
    }).run()
