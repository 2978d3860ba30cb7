"""`gateway serve`: gunicorn in front of the app factory, after a preflight check.

Each worker is a process that builds its own app, database pool and DocuSign client
after the fork (no preloading), so nothing with a socket is shared between workers;
what they must agree on lives in the database (keys, idempotency, the shared upstream
token, the audit chain) and in the rate-limit storage (Redis). Behind a reverse proxy,
`GATEWAY_PROXY_HOPS=N` trusts the last N proxies' X-Forwarded-* headers, so the
return relay's per-address limit sees signers' addresses and not the proxy's.
"""

from __future__ import annotations

import logging
import typing as t

from flask import Flask
from gunicorn.app.base import BaseApplication
from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.errors import CLIError

log = logging.getLogger(__name__)


def preflight(app: Flask, *, workers: int) -> None:
    """Refuse a configuration that would silently break a guarantee."""
    from gateway.vault import VaultError
    from gateway.vault import get_vault

    try:
        get_vault()
    except VaultError as exc:
        raise CLIError(str(exc)) from None
    if workers > 1 and app.config["RATELIMIT_STORAGE_URI"].startswith("memory://"):
        raise CLIError("several workers need shared rate-limit counters: set "
                       "RATELIMIT_STORAGE_URI=redis://... (memory:// counts per worker)")


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


def behind_proxy(app: Flask) -> Flask:
    """Trust `PROXY_HOPS` reverse proxies' X-Forwarded-For/-Proto/-Host/-Port (0: none)."""
    hops = int(app.config.get("PROXY_HOPS") or 0)
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops, x_port=hops)
    return app


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
